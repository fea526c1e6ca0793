package conformance

import (
	"context"
	"fmt"
	"io"
	"sort"

	"github.com/mailhaul/mailhaul/migrate"
)

// MemSource is an in-memory migrate.Source over a corpus, for the sink
// cases: it lists the folders of msgs (parents it does not hold are
// \Noselect structure), each message's ID is its position in its folder.
type MemSource struct {
	// IDPrefix is put before every message ID (another source's IDs).
	IDPrefix string
	boxes    []migrate.Mailbox
	msgs     map[string][]Msg
}

// NewMemSource returns a source of msgs; uses gives special-use attributes
// of folders ("Sent" -> `\Sent`); other folders' uses are guessed from
// their names, as real sources do.
func NewMemSource(msgs []Msg, uses map[string]string) *MemSource {
	s := &MemSource{msgs: map[string][]Msg{}}
	seen := map[string]bool{}
	for _, m := range msgs {
		if !seen[m.Folder] {
			seen[m.Folder] = true
			mb := migrate.Mailbox{Name: m.Folder, SpecialUse: uses[m.Folder]}
			migrate.GuessSpecialUse(&mb) // as real sources do
			s.boxes = append(s.boxes, mb)
		}
		s.msgs[m.Folder] = append(s.msgs[m.Folder], m)
	}
	migrate.SortMailboxes(s.boxes)
	return s
}

// Mailboxes implements migrate.Source.
func (s *MemSource) Mailboxes(context.Context) ([]migrate.Mailbox, error) {
	out := append([]migrate.Mailbox{}, s.boxes...)
	sort.SliceStable(out, func(i, j int) bool { return migrate.MailboxLess(out[i].Name, out[j].Name) })
	return out, nil
}

// List implements migrate.Source.
func (s *MemSource) List(ctx context.Context, mb migrate.Mailbox, fn func(migrate.Message) error) error {
	for i, m := range s.msgs[mb.Name] {
		msg := migrate.Message{Mailbox: mb.Name, ID: s.IDPrefix + fmt.Sprint(i), Size: int64(len(m.Body)), Flags: m.Flags, Date: m.Date}
		if err := fn(msg); err != nil {
			return err
		}
	}
	return nil
}

// Fetch implements migrate.Source.
func (s *MemSource) Fetch(ctx context.Context, msg migrate.Message, w io.Writer) error {
	var i int
	fmt.Sscan(msg.ID[len(s.IDPrefix):], &i)
	ms := s.msgs[msg.Mailbox]
	if i < 0 || i >= len(ms) {
		return migrate.SkipMessage(fmt.Errorf("no message %s in %q", msg.ID, msg.Mailbox))
	}
	_, err := w.Write(ms[i].Body)
	return err
}

// Limits implements migrate.Source.
func (s *MemSource) Limits() migrate.Limits { return migrate.Limits{Connections: 4} }

// Close implements migrate.Source.
func (s *MemSource) Close() error { return nil }

var _ migrate.Source = (*MemSource)(nil)
