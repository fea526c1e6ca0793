package conformance

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/mailhaul/mailhaul/checkpoint"
	"github.com/mailhaul/mailhaul/internal/imapconn"
	"github.com/mailhaul/mailhaul/internal/testserver"
	"github.com/mailhaul/mailhaul/internal/testserver/fakeimap"
	"github.com/mailhaul/mailhaul/migrate"
	"github.com/mailhaul/mailhaul/sources"
)

// A SourceTarget is one source backend on one server, seeded by the case.
type SourceTarget struct {
	Name string
	// Seed writes msgs into a fresh store and returns how to open it
	// (each call: a new run) and a snapshot function whose result changes
	// whenever anything in the store changes.
	Seed func(t *testing.T, msgs []Msg) (open func(t *testing.T) migrate.Source, snapshot func(t *testing.T) string)
	// Flags and Dates say what the store can hold; CRLF that it serves
	// messages in CRLF form whatever they were stored with (Dovecot);
	// OneFolder that it has one folder, INBOX, holding every message
	// (POP3).
	Flags, Dates, CRLF, OneFolder bool
}

// SourceTargets is the matrix of sources.
func SourceTargets() []SourceTarget {
	return []SourceTarget{
		{Name: "maildir@local", Seed: seedMaildir, Flags: true, Dates: true},
		{Name: "mbox@local", Seed: seedMbox, Dates: true},
		{Name: "imap@dovecot", Seed: seedDovecot, Flags: true, Dates: true, CRLF: true},
		{Name: "imap@courier-like", Seed: func(t *testing.T, msgs []Msg) (func(*testing.T) migrate.Source, func(*testing.T) string) {
			return seedFake(t, msgs, fakeimap.Options{Delim: '.', Prefix: "INBOX.", UIDValidity: fakeimap.Shared, NoSelectParents: true})
		}, Flags: true, Dates: true},
		{Name: "imap@minimal", Seed: func(t *testing.T, msgs []Msg) (func(*testing.T) migrate.Source, func(*testing.T) string) {
			return seedFake(t, msgs, fakeimap.Options{NoUIDPlus: true, NoSpecialUse: true, NoLiteralPlus: true, NoNamespace: true, NoListStatus: true})
		}, Flags: true, Dates: true},
		// Sends each FETCH response's UID after its body, which go-imap
		// routes to no command (imapconn/orphans.go).
		{Name: "imap@uid-last", Seed: func(t *testing.T, msgs []Msg) (func(*testing.T) migrate.Source, func(*testing.T) string) {
			return seedFake(t, msgs, fakeimap.Options{UIDLast: true})
		}, Flags: true, Dates: true},
		{Name: "pop3@dovecot", Seed: seedDovecotPOP3, CRLF: true, OneFolder: true},
		{Name: "pop3@fake", Seed: seedFakePOP3, CRLF: true, OneFolder: true},
	}
}

// sourceCorpus: varied messages in nested and non-ASCII folders.
func sourceCorpus() []Msg {
	msgs := CrashCorpus(24, 1500)
	for i := range msgs {
		if i%5 == 1 {
			msgs[i].Folder = "Projekte/Büro"
		}
		msgs[i].Flags = [][]string{{`\Seen`}, nil, {`\Seen`, `\Flagged`}, {`\Answered`, `\Seen`}}[i%4]
	}
	return msgs
}

// RunSources runs every source case against every target.
func RunSources(t *testing.T, targets []SourceTarget) {
	cases := []struct {
		name string
		run  func(t *testing.T, st SourceTarget)
	}{
		{"read-only", ReadOnlyCase},
		{"content", ContentCase},
		{"stable-ids", StableIDsCase},
		{"batch-fetch", BatchFetchCase},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for _, st := range targets {
				t.Run(st.Name, func(t *testing.T) { c.run(t, st) })
			}
		})
	}
}

// memSink keeps what it is given, for the source cases.
type memSink struct {
	mu   sync.Mutex
	msgs []Msg
}

func (s *memSink) Prepare(_ context.Context, _ migrate.Mailbox, name string) (string, error) {
	return name, nil
}
func (s *memSink) Append(_ context.Context, folder string, m migrate.Message, b *migrate.Body) (string, error) {
	data, err := io.ReadAll(b.Reader())
	if err != nil {
		return "", err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.msgs = append(s.msgs, Msg{Folder: folder, Body: data, Flags: m.Flags, Date: m.Date})
	return fmt.Sprint(len(s.msgs)), nil
}
func (s *memSink) Limits() migrate.Limits { return migrate.Limits{} }
func (s *memSink) Close() error           { return nil }

func copyFrom(t *testing.T, src migrate.Source, dry bool) (*memSink, migrate.Report) {
	t.Helper()
	sink := &memSink{}
	o := migrate.Options{Source: src, Sink: sink, DryRun: dry}
	if !dry {
		cp, err := checkpoint.Open(filepath.Join(t.TempDir(), "cp.db"), "s", "d")
		if err != nil {
			t.Fatal(err)
		}
		defer cp.Close()
		o.Checkpoint = cp
	}
	r, err := migrate.Run(context.Background(), o)
	if err != nil {
		t.Fatalf("copy: %v", err)
	}
	return sink, r
}

// ReadOnlyCase: a dry run and a full copy change nothing in the source
// (not a flag, not a file, not a name).
func ReadOnlyCase(t *testing.T, st SourceTarget) {
	open, snap := st.Seed(t, sourceCorpus())
	before := snap(t)
	src := open(t)
	copyFrom(t, src, true)
	copyFrom(t, src, false)
	src.Close()
	if after := snap(t); after != before {
		t.Errorf("%s: the source changed:\nbefore %s\nafter  %s", st.Name, before, after)
	}
}

// ContentCase: every message is read with its exact bytes, in its folder,
// with its flags and internal date (as far as the store holds them).
func ContentCase(t *testing.T, st SourceTarget) {
	msgs := sourceCorpus()
	open, _ := st.Seed(t, msgs)
	src := open(t)
	defer src.Close()
	sink, r := copyFrom(t, src, false)
	if len(r.Skipped) != 0 {
		t.Errorf("%s: skipped %v", st.Name, r.Skipped)
	}
	type key struct{ folder, body string }
	want := map[key][]Msg{}
	for _, m := range msgs {
		b := m.Body
		if st.CRLF {
			b = CRLF(b)
		}
		if st.OneFolder {
			m.Folder = "INBOX"
		}
		want[key{m.Folder, string(b)}] = append(want[key{m.Folder, string(b)}], m)
	}
	got := map[key][]Msg{}
	for _, m := range sink.msgs {
		got[key{m.Folder, string(m.Body)}] = append(got[key{m.Folder, string(m.Body)}], m)
	}
	for k, w := range want {
		g := got[k]
		if len(g) != len(w) {
			t.Errorf("%s: folder %q: %d copies of %s, want %d", st.Name, k.folder, len(g), firstLine(k.body), len(w))
			continue
		}
		// Identical messages may differ in flags: compare them as sets.
		var gf, wf []string
		for i := range g {
			gf, wf = append(gf, flagSet(g[i].Flags)), append(wf, flagSet(w[i].Flags))
		}
		sort.Strings(gf)
		sort.Strings(wf)
		if st.Flags && strings.Join(gf, "|") != strings.Join(wf, "|") {
			t.Errorf("%s: %s flags %v, want %v", st.Name, firstLine(k.body), gf, wf)
		}
		for i := range g {
			if d := g[i].Date.Sub(w[i].Date); st.Dates && (d < -time.Second || d > time.Second) {
				t.Errorf("%s: %s date %v, want %v", st.Name, firstLine(k.body), g[i].Date.UTC(), w[i].Date)
			}
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("%s: unexpected message in %q: %s", st.Name, k.folder, firstLine(k.body))
		}
	}
}

func flagSet(fs []string) string {
	var out []string
	for _, f := range fs {
		out = append(out, strings.ToLower(f))
	}
	sort.Strings(out)
	return strings.Join(out, " ")
}

// StableIDsCase: two opens of the store list the same messages under the
// same IDs (the checkpoint key), so a second run copies nothing.
func StableIDsCase(t *testing.T, st SourceTarget) {
	open, _ := st.Seed(t, sourceCorpus())
	ids := func() []string {
		src := open(t)
		defer src.Close()
		mbs, err := src.Mailboxes(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, mb := range mbs {
			if mb.NoSelect {
				continue
			}
			src.List(context.Background(), mb, func(m migrate.Message) error {
				out = append(out, mb.Name+"\x00"+mb.Epoch+"\x00"+m.ID)
				return nil
			})
		}
		sort.Strings(out)
		return out
	}
	a, b := ids(), ids()
	if strings.Join(a, "\n") != strings.Join(b, "\n") || len(a) != len(sourceCorpus()) {
		t.Errorf("%s: IDs differ between opens (%d and %d messages, want %d)", st.Name, len(a), len(b), len(sourceCorpus()))
	}
}

// BatchFetchCase: a source with FetchBatch gives, for every folder's
// messages fetched at once, exactly the bytes Fetch gives for each; a
// message that is not there (an ID listed nowhere) is not reported done
// and nothing is written for it. Sources without FetchBatch pass.
func BatchFetchCase(t *testing.T, st SourceTarget) {
	open, _ := st.Seed(t, sourceCorpus())
	src := open(t)
	defer src.Close()
	bf, ok := src.(migrate.BatchFetcher)
	if !ok {
		return
	}
	ctx := context.Background()
	mbs, err := src.Mailboxes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, mb := range mbs {
		if mb.NoSelect {
			continue
		}
		var msgs []migrate.Message
		if err := src.List(ctx, mb, func(m migrate.Message) error { msgs = append(msgs, m); return nil }); err != nil {
			t.Fatalf("%s: list %q: %v", st.Name, mb.Name, err)
		}
		if len(msgs) == 0 {
			continue
		}
		ghost := msgs[0]
		ghost.ID = "4000000000"
		msgs = append(msgs, ghost)
		ws := make([]io.Writer, len(msgs))
		bufs := make([]*bytes.Buffer, len(msgs))
		for i := range msgs {
			bufs[i] = &bytes.Buffer{}
			ws[i] = bufs[i]
		}
		done := bf.FetchBatch(ctx, msgs, ws)
		if len(done) != len(msgs) {
			t.Fatalf("%s: FetchBatch gave %d results for %d messages", st.Name, len(done), len(msgs))
		}
		if last := len(msgs) - 1; done[last] || bufs[last].Len() != 0 {
			t.Errorf("%s: %q: a message that is not there was delivered (%v) or written to (%d bytes)", st.Name, mb.Name, done[last], bufs[last].Len())
		}
		for i, m := range msgs[:len(msgs)-1] {
			var one bytes.Buffer
			if err := src.Fetch(ctx, m, &one); err != nil {
				t.Fatalf("%s: fetch %s in %q: %v", st.Name, m.ID, mb.Name, err)
			}
			switch {
			case !done[i]:
				t.Errorf("%s: %q message %s not delivered by FetchBatch", st.Name, mb.Name, m.ID)
			case !bytes.Equal(bufs[i].Bytes(), one.Bytes()):
				t.Errorf("%s: %q message %s: FetchBatch gave %d bytes, Fetch %d", st.Name, mb.Name, m.ID, bufs[i].Len(), one.Len())
			}
			total++
		}
	}
	if total != len(sourceCorpus()) {
		t.Errorf("%s: %d messages checked, want %d", st.Name, total, len(sourceCorpus()))
	}
}

// treeSnapshot hashes every path, mode, size, mtime and content under root.
func treeSnapshot(root string) string {
	h := sha256.New()
	filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return nil
		}
		fmt.Fprintf(h, "%s %v %d %d\n", p, fi.Mode(), fi.Size(), fi.ModTime().UnixNano())
		if fi.Mode().IsRegular() {
			b, _ := os.ReadFile(p)
			h.Write(b)
		}
		return nil
	})
	return hex.EncodeToString(h.Sum(nil))
}

func seedMaildir(t *testing.T, msgs []Msg) (func(*testing.T) migrate.Source, func(*testing.T) string) {
	root := writeMaildirSource(t, msgs)
	return func(t *testing.T) migrate.Source {
			s, err := sources.OpenMaildir(root)
			if err != nil {
				t.Fatal(err)
			}
			return s
		}, func(*testing.T) string {
			return treeSnapshot(root)
		}
}

var fromLine = regexp.MustCompile(`(?m)^(>*From )`)

// seedMbox writes msgs as a Thunderbird-style tree of mboxrd files
// ("Inbox", "Work.sbd/Clients"), From_ lines carrying the dates.
func seedMbox(t *testing.T, msgs []Msg) (func(*testing.T) migrate.Source, func(*testing.T) string) {
	root := filepath.Join(t.TempDir(), "Local Folders")
	files := map[string]*bytes.Buffer{}
	var order []string
	for _, m := range msgs {
		parts := strings.Split(m.Folder, "/")
		if parts[0] == "INBOX" {
			parts[0] = "Inbox"
		}
		for i := 0; i < len(parts)-1; i++ {
			parts[i] += ".sbd"
		}
		p := filepath.Join(append([]string{root}, parts...)...)
		if files[p] == nil {
			files[p] = &bytes.Buffer{}
			order = append(order, p)
		}
		b := files[p]
		fmt.Fprintf(b, "From alice@example.org %s\n", m.Date.UTC().Format("Mon Jan _2 15:04:05 2006"))
		b.Write(fromLine.ReplaceAll(m.Body, []byte(">$1")))
		b.WriteString("\n")
	}
	for _, p := range order {
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, files[p].Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return func(t *testing.T) migrate.Source {
			s, err := sources.OpenMbox(root, sources.MboxOptions{Location: time.UTC})
			if err != nil {
				t.Fatal(err)
			}
			return s
		}, func(*testing.T) string {
			return treeSnapshot(root)
		}
}

func seedDovecot(t *testing.T, msgs []Msg) (func(*testing.T) migrate.Source, func(*testing.T) string) {
	d := startSeededDovecot(t, msgs)
	return imapSource(d.IMAPAddr, "src", "src-Secret-9"), imapSnapshot(d.IMAPAddr, "src", "src-Secret-9")
}

// startSeededDovecot starts a Dovecot whose account "src" holds msgs, in
// their folders, with their flags and dates.
func startSeededDovecot(t *testing.T, msgs []Msg) *testserver.Dovecot {
	d := testserver.StartDovecot(t, testserver.WithUser("src", "src-Secret-9"))
	c, err := imapclient.DialInsecure(d.IMAPAddr, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Login("src", "src-Secret-9").Wait(); err != nil {
		t.Fatal(err)
	}
	made := map[string]bool{"INBOX": true}
	for _, m := range msgs {
		if !made[m.Folder] {
			c.Create(m.Folder, nil).Wait()
			made[m.Folder] = true
		}
		var flags []imap.Flag
		for _, f := range m.Flags {
			flags = append(flags, imap.Flag(f))
		}
		cmd := c.Append(m.Folder, int64(len(m.Body)), &imap.AppendOptions{Flags: flags, Time: m.Date})
		cmd.Write(m.Body)
		cmd.Close()
		if _, err := cmd.Wait(); err != nil {
			t.Fatal(err)
		}
	}
	c.Close()
	return d
}

func seedFake(t *testing.T, msgs []Msg, o fakeimap.Options) (func(*testing.T) migrate.Source, func(*testing.T) string) {
	s := fakeimap.Start(t, o)
	s.AddUser("src", "src-Secret-9")
	delim := o.Delim
	if delim == 0 {
		delim = '/'
	}
	made := map[string]bool{"INBOX": true}
	server := func(name string) string {
		if name == "INBOX" {
			return name
		}
		return o.Prefix + strings.ReplaceAll(name, "/", string(delim))
	}
	for _, m := range msgs {
		if !made[m.Folder] {
			parts := strings.Split(m.Folder, "/")
			for i := range parts {
				n := strings.Join(parts[:i+1], "/")
				if !made[n] {
					if err := s.Create("src", server(n)); err != nil {
						t.Fatal(err)
					}
					made[n] = true
				}
			}
		}
		var flags []imap.Flag
		for _, f := range m.Flags {
			flags = append(flags, imap.Flag(f))
		}
		if _, err := s.Append("src", server(m.Folder), m.Body, flags, m.Date); err != nil {
			t.Fatal(err)
		}
	}
	return imapSource(s.Addr(), "src", "src-Secret-9"), imapSnapshot(s.Addr(), "src", "src-Secret-9")
}

func imapSource(addr, user, pw string) func(*testing.T) migrate.Source {
	return func(t *testing.T) migrate.Source {
		host, port, _ := net.SplitHostPort(addr)
		cfg := &imapconn.Config{Endpoint: imapconn.Endpoint{Host: host, Port: port, User: user}, InsecurePlaintext: true, Password: pw}
		s, err := sources.OpenIMAP(context.Background(), cfg, 2)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
}

// imapSnapshot describes every folder (name, UIDVALIDITY) and message
// (UID, flags, size, date, body hash) of the account.
func imapSnapshot(addr, user, pw string) func(*testing.T) string {
	return func(t *testing.T) string {
		c, err := imapclient.DialInsecure(addr, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := c.Login(user, pw).Wait(); err != nil {
			t.Fatal(err)
		}
		list, err := c.List("", "*", nil).Collect()
		if err != nil {
			t.Fatal(err)
		}
		var lines []string
		sec := &imap.FetchItemBodySection{Peek: true}
		sort.Slice(list, func(i, j int) bool { return list[i].Mailbox < list[j].Mailbox })
		for _, l := range list {
			if imapconn.HasAttr(l, imap.MailboxAttrNoSelect) {
				lines = append(lines, "noselect "+l.Mailbox)
				continue
			}
			sd, err := c.Select(l.Mailbox, &imap.SelectOptions{ReadOnly: true}).Wait()
			if err != nil {
				t.Fatal(err)
			}
			lines = append(lines, fmt.Sprintf("folder %s %d %d", l.Mailbox, sd.UIDValidity, sd.NumMessages))
			if sd.NumMessages == 0 {
				continue
			}
			ms, err := c.Fetch(imap.SeqSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{UID: true, Flags: true, RFC822Size: true, InternalDate: true,
				BodySection: []*imap.FetchItemBodySection{sec}}).Collect()
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range ms {
				var fl []string
				for _, f := range m.Flags {
					if !strings.EqualFold(string(f), `\Recent`) { // session state, not the store's
						fl = append(fl, string(f))
					}
				}
				sort.Strings(fl)
				h := sha256.Sum256(m.FindBodySection(sec))
				lines = append(lines, fmt.Sprintf("  %d %v %d %d %x", m.UID, fl, m.RFC822Size, m.InternalDate.Unix(), h[:6]))
			}
		}
		return strings.Join(lines, "\n")
	}
}
