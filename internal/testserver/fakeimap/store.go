package fakeimap

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
)

// The store: users, folders, messages, all guarded by Server.mu. Message
// bodies are never modified once stored, so they are shared with readers
// (FETCH writes them after the lock is released).

type user struct {
	name, password string
	folders        map[string]*folder // by visible name
	sorted         []*folder          // folders in LIST order; nil when stale
	dangling       map[string]bool    // subscribed names without a folder (Options.SubscribeAnyName)
}

type folder struct {
	name        string // as created (any bytes)
	visible     string // what clients see and send: name with each non-UTF-8 byte as U+FFFD
	specialUse  []imap.MailboxAttr
	noselect    bool // exists only as structure (NoSelectParents)
	subscribed  bool
	uidValidity uint32
	uidNext     imap.UID
	msgs        []*message // in UID order; sequence number = index+1
	tracker     *imapserver.MailboxTracker
}

type message struct {
	uid   imap.UID
	flags []imap.Flag
	date  time.Time
	body  []byte
}

// Message is a stored message as tests read it back.
type Message struct {
	UID   imap.UID
	Flags []imap.Flag
	Date  time.Time
	Body  []byte // a copy
}

// FolderInfo describes a folder as tests read it back.
type FolderInfo struct {
	Name        string             // as created (server syntax, raw bytes)
	Attrs       []imap.MailboxAttr // \Noselect for structure-only parents, then special-use attributes
	UIDValidity uint32             // 0 for a \Noselect parent
	UIDNext     imap.UID
	Messages    int
	Subscribed  bool
}

var (
	errNoUser      = errors.New("no such user")
	errNoFolder    = errors.New("no such folder")
	errNotSelect   = errors.New("folder is \\Noselect")
	errExists      = errors.New("folder already exists")
	errNameCollide = errors.New("folder name collides with an existing one once non-UTF-8 bytes are replaced")
)

// Create makes a folder for user, named in server syntax (Options.Delim,
// Options.Prefix), with the given special-use attributes. Any bytes are
// allowed in the name ("../x", non-UTF-8, NUL, 300 bytes, the delimiter:
// which makes a hierarchy); parents are made as an IMAP CREATE would.
// Prefix and ForbiddenChars are not enforced here. It fails if the user
// is unknown, the folder exists, or an attribute is not of the form
// \Atom.
func (s *Server) Create(userName, name string, specialUse ...imap.MailboxAttr) error {
	for _, a := range specialUse {
		if !validAttr(string(a)) {
			return fmt.Errorf("fakeimap: create %q: invalid attribute %q", name, a)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.users[userName]
	if u == nil {
		return fmt.Errorf("fakeimap: create %q: %w %q", name, errNoUser, userName)
	}
	if err := s.createLocked(u, name, specialUse); err != nil {
		return fmt.Errorf("fakeimap: create %q: %w", name, err)
	}
	return nil
}

// createLocked makes a folder and its missing parents.
func (s *Server) createLocked(u *user, name string, specialUse []imap.MailboxAttr) error {
	name = s.canon(name)
	key := visible(name)
	if f := u.folders[key]; f != nil {
		if f.name != name {
			return errNameCollide
		}
		if !f.noselect {
			return errExists
		}
		f.noselect = false
		f.uidValidity = s.newUIDValidity()
		f.specialUse = specialUse
		u.sorted = nil
		return nil
	}
	for _, p := range s.parents(name) {
		if u.folders[visible(p)] != nil {
			continue
		}
		pf := s.newFolder(p)
		if s.o.NoSelectParents {
			pf.noselect, pf.uidValidity = true, 0
		}
		u.folders[pf.visible] = pf
	}
	f := s.newFolder(name)
	f.specialUse = specialUse
	u.folders[key] = f
	u.sorted = nil
	return nil
}

func (s *Server) newFolder(name string) *folder {
	return &folder{
		name:        name,
		visible:     visible(name),
		uidValidity: s.newUIDValidity(),
		uidNext:     1,
		subscribed:  true,
		tracker:     imapserver.NewMailboxTracker(0),
	}
}

func (s *Server) newUIDValidity() uint32 {
	switch s.o.UIDValidity {
	case Shared:
		return s.sharedUIDV
	case PerSecond:
		return uint32(s.now().Unix())
	default:
		s.nextUIDV++
		return s.nextUIDV
	}
}

// canon spells INBOX (and an INBOX<delim> prefix) in upper case: the name
// INBOX is case-insensitive.
func (s *Server) canon(name string) string {
	if strings.EqualFold(name, "INBOX") {
		return "INBOX"
	}
	d := string(s.delim)
	if len(name) > 5+len(d) && strings.EqualFold(name[:5], "INBOX") && strings.HasPrefix(name[5:], d) {
		return "INBOX" + name[5:]
	}
	return name
}

// parents returns the non-empty prefixes of name that end before a
// delimiter, shortest first ("a/b/c" -> "a", "a/b").
func (s *Server) parents(name string) []string {
	var ps []string
	d := string(s.delim)
	for i := 0; ; {
		j := strings.Index(name[i:], d)
		if j < 0 {
			return ps
		}
		if p := name[:i+j]; p != "" && i+j+len(d) < len(name) {
			ps = append(ps, p)
		}
		i += j + len(d)
	}
}

// visible is the name clients see: imapserver's encoder turns each byte
// that is not UTF-8 into U+FFFD, and clients send that back.
func visible(name string) string {
	if utf8.ValidString(name) {
		return name
	}
	var sb strings.Builder
	for _, r := range name { // an invalid byte ranges as one RuneError
		sb.WriteRune(r)
	}
	return sb.String()
}

// folderLocked finds a folder by the name a client (or a test) gives.
func (s *Server) folderLocked(u *user, name string) *folder {
	return u.folders[visible(s.canon(name))]
}

// sortedLocked returns the user's folders, INBOX first, then by name.
func (u *user) sortedLocked() []*folder {
	if u.sorted == nil {
		u.sorted = make([]*folder, 0, len(u.folders))
		for _, f := range u.folders {
			u.sorted = append(u.sorted, f)
		}
		sort.Slice(u.sorted, func(i, j int) bool {
			a, b := u.sorted[i].visible, u.sorted[j].visible
			if (a == "INBOX") != (b == "INBOX") {
				return a == "INBOX"
			}
			return a < b
		})
	}
	return u.sorted
}

// Append stores a message in user's folder directly (no hooks, no
// refusals: RefuseBareLF, RefuseNUL, AppendLimit and PermanentFlags do not
// apply) and returns its UID. A zero date means now. Sessions with the
// folder selected see it as EXISTS on their next command.
func (s *Server) Append(userName, folderName string, body []byte, flags []imap.Flag, date time.Time) (imap.UID, error) {
	for _, f := range flags {
		if !validFlag(string(f)) {
			return 0, fmt.Errorf("fakeimap: append to %q: invalid flag %q", folderName, f)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	f, err := s.lookupLocked(userName, folderName)
	if err != nil {
		return 0, fmt.Errorf("fakeimap: append to %q: %w", folderName, err)
	}
	if f.noselect {
		return 0, fmt.Errorf("fakeimap: append to %q: %w", folderName, errNotSelect)
	}
	return s.appendLocked(f, append([]byte(nil), body...), flags, date), nil
}

func (s *Server) lookupLocked(userName, folderName string) (*folder, error) {
	u := s.users[userName]
	if u == nil {
		return nil, fmt.Errorf("%w %q", errNoUser, userName)
	}
	f := s.folderLocked(u, folderName)
	if f == nil {
		return nil, errNoFolder
	}
	return f, nil
}

// appendLocked stores body (which the store now owns).
func (s *Server) appendLocked(f *folder, body []byte, flags []imap.Flag, date time.Time) imap.UID {
	if date.IsZero() {
		date = s.now().Truncate(time.Second)
	}
	m := &message{uid: f.uidNext, flags: dedupFlags(flags), date: date, body: body}
	f.uidNext++
	f.msgs = append(f.msgs, m)
	f.tracker.QueueNumMessages(uint32(len(f.msgs)))
	return m.uid
}

// Messages returns the messages of user's folder in UID order (nil if
// there is no such folder), with copies of their bodies.
func (s *Server) Messages(userName, folderName string) []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	f, err := s.lookupLocked(userName, folderName)
	if err != nil {
		return nil
	}
	out := make([]Message, len(f.msgs))
	for i, m := range f.msgs {
		out[i] = Message{UID: m.uid, Flags: append([]imap.Flag(nil), m.flags...), Date: m.date, Body: append([]byte(nil), m.body...)}
	}
	return out
}

// Folders returns user's folders, INBOX first, then sorted by name.
func (s *Server) Folders(userName string) []FolderInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.users[userName]
	if u == nil {
		return nil
	}
	var out []FolderInfo
	for _, f := range u.sortedLocked() {
		fi := FolderInfo{Name: f.name, UIDValidity: f.uidValidity, UIDNext: f.uidNext, Messages: len(f.msgs), Subscribed: f.subscribed}
		if f.noselect {
			fi.Attrs = append(fi.Attrs, imap.MailboxAttrNoSelect)
		}
		fi.Attrs = append(fi.Attrs, f.specialUse...)
		out = append(out, fi)
	}
	return out
}

// Dangling returns the names userName is subscribed to that are no folder
// (with Options.SubscribeAnyName), sorted.
func (s *Server) Dangling(userName string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.users[userName]
	if u == nil {
		return nil
	}
	var out []string
	for n := range u.dangling {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// SetUIDValidity simulates a server rebuild of a folder: it gets
// UIDVALIDITY v and its messages are renumbered from UID 1 (UIDNEXT is then
// the count + 1). Sessions that have the folder selected are not told; a
// real server would usually drop them (CloseAll).
func (s *Server) SetUIDValidity(userName, folderName string, v uint32) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	f, err := s.lookupLocked(userName, folderName)
	if err != nil {
		return fmt.Errorf("fakeimap: set uidvalidity of %q: %w", folderName, err)
	}
	if f.noselect {
		return fmt.Errorf("fakeimap: set uidvalidity of %q: %w", folderName, errNotSelect)
	}
	f.uidValidity = v
	for i, m := range f.msgs {
		m.uid = imap.UID(i + 1)
	}
	f.uidNext = imap.UID(len(f.msgs) + 1)
	return nil
}

// Flags.

var systemFlags = map[string]imap.Flag{
	`\seen`: imap.FlagSeen, `\answered`: imap.FlagAnswered, `\flagged`: imap.FlagFlagged,
	`\deleted`: imap.FlagDeleted, `\draft`: imap.FlagDraft, `\recent`: `\Recent`,
}

// canonFlag spells system flags the standard way (flags are case-insensitive).
func canonFlag(f imap.Flag) imap.Flag {
	if c, ok := systemFlags[strings.ToLower(string(f))]; ok {
		return c
	}
	return f
}

func hasFlag(l []imap.Flag, f imap.Flag) bool {
	for _, x := range l {
		if strings.EqualFold(string(x), string(f)) {
			return true
		}
	}
	return false
}

// dedupFlags drops repeated flags (compared case-insensitively), in time
// linear in len(l): a test may give a message thousands of keywords.
func dedupFlags(l []imap.Flag) []imap.Flag {
	out := make([]imap.Flag, 0, len(l))
	seen := make(map[string]bool, len(l))
	for _, f := range l {
		f = canonFlag(f)
		if k := strings.ToLower(string(f)); !seen[k] {
			seen[k] = true
			out = append(out, f)
		}
	}
	return out
}

// permitted drops the flags a client may not store: \Recent, and those
// outside PERMANENTFLAGS.
func (s *Server) permitted(l []imap.Flag) []imap.Flag {
	wild := hasFlag(s.permanent, imap.FlagWildcard)
	var out []imap.Flag
	for _, f := range dedupFlags(l) {
		switch {
		case f == `\Recent`:
		case hasFlag(s.permanent, f):
			out = append(out, f)
		case wild && !strings.HasPrefix(string(f), `\`):
			out = append(out, f)
		}
	}
	return out
}

// validFlag: a keyword atom or \atom, as imapserver's encoder accepts.
func validFlag(s string) bool {
	s = strings.TrimPrefix(s, `\`)
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`(){%*"\]`, c) >= 0 {
			return false
		}
	}
	return true
}

func validAttr(s string) bool { return strings.HasPrefix(s, `\`) && validFlag(s) }
