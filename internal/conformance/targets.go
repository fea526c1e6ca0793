package conformance

import (
	"context"
	"crypto/tls"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/mailhaul/mailhaul/internal/faultproxy"
	"github.com/mailhaul/mailhaul/internal/imapconn"
	"github.com/mailhaul/mailhaul/internal/maildir"
	"github.com/mailhaul/mailhaul/internal/testserver"
	"github.com/mailhaul/mailhaul/internal/testserver/fakeimap"
	"github.com/mailhaul/mailhaul/migrate"
	"github.com/mailhaul/mailhaul/sinks"
)

// A Target is one destination the sink cases run against: a backend on a
// server, fresh and empty.
type Target struct {
	Name string // "<backend>@<server>"
	// Endpoint, Env and Args are the destination as the mailhaul binary
	// takes it, its secrets, and the flags it needs.
	Endpoint string
	Env      []string
	Args     []string
	// Open returns a new sink on the destination (each call: a new run).
	Open func(t *testing.T) migrate.Sink
	// Read returns every message the destination holds.
	Read func(t *testing.T) []Stored
	// Via returns the endpoint reached through a fault proxy, for
	// network targets ("" otherwise).
	Via func(t *testing.T, c faultproxy.Config) string
	// Fake is the emulated server behind the target, if any (its hooks).
	Fake *fakeimap.Server
	Q    Quirks
}

// Quirks are what a target legitimately does differently.
type Quirks struct {
	CRLF       bool // holds the CRLF form of what it is given (IMAP)
	NoKeywords bool // keeps system flags only (PERMANENTFLAGS without \*)
	// NUL is what becomes of a NUL byte: "" kept, "0x80" stored as 0x80
	// (Dovecot, given a BINARY literal8), "refused" the message is skipped
	// with a reason naming BINARY (a server without it).
	NUL       string
	NoRemove  bool // cannot remove one message (no UIDPLUS)
	Immediate bool // nothing can appear after the writer died (Maildir)
	NoOrder   bool // keeps no storage order (Maildir: file names)
	// SameName: a copy's name derives from its source id and content
	// (Maildir), so the same message written again by a run without the
	// checkpoint lands on the first copy instead of beside it.
	SameName bool
}

// Stored is one message read back from a destination.
type Stored struct {
	Folder string // the destination's own name for the folder (raw)
	Body   []byte
	Flags  []string
	Date   time.Time
}

// TargetFunc makes a fresh Target for one test.
type TargetFunc struct {
	Name string
	New  func(t *testing.T) Target
	// Fake, for an emulated server, is its configuration, so that cases
	// can start one with hooks of their own.
	Fake *fakeimap.Options
}

func fakeFunc(name string, o fakeimap.Options) TargetFunc {
	return TargetFunc{Name: name, Fake: &o, New: func(t *testing.T) Target { return FakeTarget(t, name, o) }}
}

// SinkTargets is the matrix of destinations: every sink on every server
// the suite can run.
func SinkTargets() []TargetFunc {
	return []TargetFunc{
		{Name: "maildir++@local", New: func(t *testing.T) Target { return MaildirTarget(t, maildir.PlusPlus) }},
		{Name: "maildir-fs@local", New: func(t *testing.T) Target { return MaildirTarget(t, maildir.Nested) }},
		{Name: "imap@dovecot", New: DovecotTarget},
		// INBOX. namespace with ".", one UIDVALIDITY for every folder,
		// structure-only parents \Noselect.
		fakeFunc("imap@courier-like", fakeimap.Options{Delim: '.', Prefix: "INBOX.", UIDValidity: fakeimap.Shared, NoSelectParents: true}),
		// Refuses bare LF; folders created in one second share their
		// UIDVALIDITY; "." separator under INBOX.
		fakeFunc("imap@cyrus-like", fakeimap.Options{Delim: '.', Prefix: "INBOX.", UIDValidity: fakeimap.PerSecond, RefuseBareLF: true}),
		// IMAP4rev1 and nothing else: no UIDPLUS, SPECIAL-USE, LITERAL+,
		// NAMESPACE, LIST-STATUS; only system flags kept; "." refused in
		// names (as Dovecot's Maildir++ layout).
		fakeFunc("imap@minimal", fakeimap.Options{NoUIDPlus: true, NoSpecialUse: true, NoLiteralPlus: true, NoNamespace: true, NoListStatus: true,
			ForbiddenChars: ".", PermanentFlags: []imap.Flag{imap.FlagSeen, imap.FlagAnswered, imap.FlagFlagged, imap.FlagDeleted, imap.FlagDraft}}),
		// Sends each FETCH response's UID after its body: the copies
		// recovery looks for are found all the same.
		fakeFunc("imap@uid-last", fakeimap.Options{UIDLast: true}),
	}
}

// MaildirTarget is an empty Maildir tree of layout in a temporary
// directory, deep enough that escaping it is noticed (see NamesCase).
func MaildirTarget(t *testing.T, layout maildir.Layout) Target {
	root := filepath.Join(t.TempDir(), "a", "dest")
	name := "maildir++@local"
	arg := "maildir++"
	if layout == maildir.Nested {
		name, arg = "maildir-fs@local", "fs"
	}
	return Target{
		Name: name, Endpoint: "maildir:" + root, Args: []string{"--maildir-layout", arg},
		Open: func(t *testing.T) migrate.Sink {
			s, err := sinks.OpenMaildir(root, layout)
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
		Read: func(t *testing.T) []Stored { return readMaildir(t, root) },
		Q:    Quirks{Immediate: true, NoOrder: true, SameName: true},
	}
}

// DovecotTarget is a new account on a real Dovecot started for the test.
func DovecotTarget(t *testing.T) Target {
	d := testserver.StartDovecot(t, testserver.WithUser("dst", "dst-Secret-42"))
	cfg := func(addr string) *imapconn.Config {
		host, port, _ := net.SplitHostPort(addr)
		return &imapconn.Config{Endpoint: imapconn.Endpoint{Host: host, Port: port, User: "dst"}, InsecurePlaintext: true,
			Password: "dst-Secret-42", IdleTimeout: 20 * time.Second}
	}
	return Target{
		Name: "imap@dovecot", Endpoint: "imap://dst@" + d.IMAPAddr, Env: []string{"MAILHAUL_DST_PASSWORD=dst-Secret-42"},
		Args: []string{"--insecure-plaintext"},
		Open: func(t *testing.T) migrate.Sink { return openIMAPSink(t, cfg(d.IMAPAddr)) },
		Read: func(t *testing.T) []Stored {
			return readIMAP(t, d.IMAPSAddr, d.TLSConfig(), "dst", "dst-Secret-42")
		},
		Via: func(t *testing.T, c faultproxy.Config) string { return "imap://dst@" + proxy(t, d.IMAPAddr, c) },
		Q:   Quirks{CRLF: true, NUL: "0x80"},
	}
}

// FakeTarget is a new account on an emulated server with options o.
func FakeTarget(t *testing.T, name string, o fakeimap.Options) Target {
	s := fakeimap.Start(t, o)
	s.AddUser("dst", "dst-Secret-42")
	host, port, _ := net.SplitHostPort(s.Addr())
	cfg := &imapconn.Config{Endpoint: imapconn.Endpoint{Host: host, Port: port, User: "dst"}, InsecurePlaintext: true,
		Password: "dst-Secret-42", IdleTimeout: 20 * time.Second}
	return Target{
		Name: name, Endpoint: "imap://dst@" + s.Addr(), Env: []string{"MAILHAUL_DST_PASSWORD=dst-Secret-42"},
		Args: []string{"--insecure-plaintext"},
		Open: func(t *testing.T) migrate.Sink { return openIMAPSink(t, cfg) },
		Read: func(t *testing.T) []Stored { return readIMAP(t, s.Addr(), nil, "dst", "dst-Secret-42") },
		Via:  func(t *testing.T, c faultproxy.Config) string { return "imap://dst@" + proxy(t, s.Addr(), c) },
		Fake: s,
		Q: Quirks{CRLF: true, NoRemove: o.NoUIDPlus, NoKeywords: o.PermanentFlags != nil && !slices.Contains(o.PermanentFlags, imap.FlagWildcard),
			NUL: "refused"}, // fakeimap has no BINARY
	}
}

func openIMAPSink(t *testing.T, cfg *imapconn.Config) migrate.Sink {
	t.Helper()
	s, err := sinks.OpenIMAP(context.Background(), cfg, 4, func(err error) { t.Logf("sink warning: %v", err) })
	if err != nil {
		t.Fatalf("open IMAP sink: %v", err)
	}
	return s
}

func proxy(t *testing.T, target string, c faultproxy.Config) string {
	p, err := faultproxy.Start(target, c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p.Addr()
}

// readIMAP reads every message of every selectable folder (EXAMINE,
// BODY.PEEK[]: nothing changes).
func readIMAP(t *testing.T, addr string, tcfg *tls.Config, user, pw string) []Stored {
	t.Helper()
	var c *imapclient.Client
	var err error
	if tcfg != nil {
		c, err = imapclient.DialTLS(addr, &imapclient.Options{TLSConfig: tcfg})
	} else {
		c, err = imapclient.DialInsecure(addr, nil)
	}
	if err != nil {
		t.Fatalf("read back: dial %s: %v", addr, err)
	}
	defer c.Close()
	if err := c.Login(user, pw).Wait(); err != nil {
		t.Fatalf("read back: login: %v", err)
	}
	list, err := c.List("", "*", nil).Collect()
	if err != nil {
		t.Fatalf("read back: LIST: %v", err)
	}
	var out []Stored
	sec := &imap.FetchItemBodySection{Peek: true}
	for _, l := range list {
		if imapconn.HasAttr(l, imap.MailboxAttrNoSelect) || imapconn.HasAttr(l, imap.MailboxAttrNonExistent) {
			continue
		}
		sd, err := c.Select(l.Mailbox, &imap.SelectOptions{ReadOnly: true}).Wait()
		if err != nil {
			t.Fatalf("read back: EXAMINE %q: %v", l.Mailbox, err)
		}
		if sd.NumMessages == 0 {
			continue
		}
		msgs, err := c.Fetch(imap.SeqSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{Flags: true, InternalDate: true,
			BodySection: []*imap.FetchItemBodySection{sec}}).Collect()
		if err != nil {
			t.Fatalf("read back: FETCH %q: %v", l.Mailbox, err)
		}
		for _, m := range msgs {
			st := Stored{Folder: l.Mailbox, Body: m.FindBodySection(sec), Date: m.InternalDate}
			for _, f := range m.Flags {
				if !strings.EqualFold(string(f), `\Recent`) {
					st.Flags = append(st.Flags, string(f))
				}
			}
			out = append(out, st)
		}
	}
	return out
}

// readMaildir reads every message file under root (any cur/ or new/),
// flags from the ":2," info and dovecot-keywords, dates from the mtime.
func readMaildir(t *testing.T, root string) []Stored {
	t.Helper()
	var out []Stored
	filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil || fi.IsDir() {
			return nil
		}
		dir := filepath.Dir(p)
		if sub := filepath.Base(dir); sub != "cur" && sub != "new" {
			return nil
		}
		body, err := os.ReadFile(p)
		if err != nil {
			t.Fatalf("read back %s: %v", p, err)
		}
		folder, _ := filepath.Rel(root, filepath.Dir(dir))
		kw, _ := maildir.ReadKeywords(filepath.Dir(dir))
		_, info := maildir.SplitName(fi.Name())
		out = append(out, Stored{Folder: folder, Body: body, Flags: maildir.FlagsFromInfo(info, kw), Date: fi.ModTime()})
		return nil
	})
	return out
}
