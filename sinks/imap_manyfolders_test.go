package sinks_test

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/mailhaul/mailhaul/internal/imapconn"
	"github.com/mailhaul/mailhaul/internal/testserver/fakeimap"
	"github.com/mailhaul/mailhaul/migrate"
	"github.com/mailhaul/mailhaul/sinks"
)

// TestIMAPPrepareManyFolders: creating n folders costs n CREATEs and no
// LIST after the first (a LIST after every CREATE read n²/2 lines: for
// 100,000 folders, 5 billion); the folders created are known to the sink
// without asking again, and a sink opened afterwards finds them all and
// creates none again.
func TestIMAPPrepareManyFolders(t *testing.T) {
	const n = 2000
	ctx := context.Background()
	srv := fakeimap.Start(t, fakeimap.Options{})
	srv.AddUser("u", "p")
	open := fakeSinkOpener(t, "imap://u@"+srv.Addr())
	s := open()
	lists := srv.Stats().Commands["LIST"]
	sent := migrate.Mailbox{Name: "Sent Messages", SpecialUse: migrate.UseSent}
	if d, err := s.Prepare(ctx, sent, sent.Name); err != nil || d != "Sent Messages" {
		t.Fatalf("Prepare %q: %q, %v", sent.Name, d, err)
	}
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("a%02d/b%04d", i%50, i)
		if d, err := s.Prepare(ctx, migrate.Mailbox{Name: name}, name); err != nil || d != name {
			t.Fatalf("Prepare %q: %q, %v", name, d, err)
		}
	}
	// A second source folder of the same use goes where the first went.
	if d, err := s.Prepare(ctx, migrate.Mailbox{Name: "Sent", SpecialUse: migrate.UseSent}, "Sent"); err != nil || d != "Sent" {
		t.Errorf("second Sent folder: %q, %v (the first has the use: it goes to a folder of its own name)", d, err)
	}
	st := srv.Stats()
	if got := st.Commands["LIST"] - lists; got != 0 {
		t.Errorf("%d LISTs while creating %d folders, want none", got, n+2)
	}
	if got := st.Commands["CREATE"]; got != n+2 {
		t.Errorf("%d CREATEs for %d folders", got, n+2)
	}
	s2 := open()
	for _, name := range []string{"a07/b0007", "Sent Messages", fmt.Sprintf("a%02d/b%04d", (n-1)%50, n-1)} {
		if d, err := s2.Resolve(ctx, migrate.Mailbox{Name: name}, name); err != nil || d != name {
			t.Errorf("a new sink resolves %q to %q, %v", name, d, err)
		}
	}
	before := st.Commands["CREATE"]
	for _, name := range []string{"a07/b0007", "Sent Messages"} {
		if _, err := s2.Prepare(ctx, migrate.Mailbox{Name: name}, name); err != nil {
			t.Fatal(err)
		}
	}
	if got := srv.Stats().Commands["CREATE"] - before; got != 0 {
		t.Errorf("a new sink created %d folders that exist", got)
	}
}

// TestIMAPPrepareEmptyFolders: a folder the source found empty is created
// without a SELECT (an account of 100,000 folders, most of them empty,
// was selected folder by folder), and a message that arrives in it after
// the listing is still copied: Mark asks STATUS for the position, the
// first Append selects the folder and keeps the flags it allows.
func TestIMAPPrepareEmptyFolders(t *testing.T) {
	const n = 200
	ctx := context.Background()
	srv := fakeimap.Start(t, fakeimap.Options{})
	srv.AddUser("u", "p")
	s := fakeSinkOpener(t, "imap://u@"+srv.Addr())()
	before := srv.Stats().Commands
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("e%03d", i)
		if d, err := s.Prepare(ctx, migrate.Mailbox{Name: name, Empty: true}, name); err != nil || d != name {
			t.Fatalf("Prepare %q: %q, %v", name, d, err)
		}
	}
	if _, err := s.Prepare(ctx, migrate.Mailbox{Name: "full"}, "full"); err != nil {
		t.Fatal(err)
	}
	after := srv.Stats().Commands
	if got := after["CREATE"] - before["CREATE"]; got != n+1 {
		t.Errorf("%d CREATEs for %d folders", got, n+1)
	}
	if got := after["SELECT"] - before["SELECT"]; got != 1 {
		t.Errorf("%d SELECTs preparing %d empty folders and one that is not, want 1", got, n)
	}
	dest := "e007"
	mark, err := s.Mark(ctx, dest)
	if err != nil {
		t.Fatalf("Mark %q: %v", dest, err)
	}
	var uv uint32
	for _, f := range srv.Folders("u") {
		if f.Name == dest {
			uv = f.UIDValidity
		}
	}
	if want := fmt.Sprintf("%d:1", uv); mark != want {
		t.Errorf("Mark %q: %q, want %q", dest, mark, want)
	}
	m := migrate.Message{Mailbox: "e007", ID: "1", Flags: []string{`\Seen`, `\Flagged`}, Date: time.Unix(1500000000, 0)}
	ref, err := s.Append(ctx, dest, m, newBody(t, "Message-ID: <late@x>\r\n\r\narrived after the listing\r\n"))
	if err != nil {
		t.Fatalf("Append to %q: %v", dest, err)
	}
	if want := fmt.Sprintf("%d:1:%s", uv, dest); ref != want {
		t.Errorf("Append ref %q, want %q", ref, want)
	}
	got := srv.Messages("u", dest)
	if len(got) != 1 || !strings.Contains(string(got[0].Body), "arrived after the listing") {
		t.Fatalf("%q holds %d messages, want the one appended", dest, len(got))
	}
	if flags := fmt.Sprint(got[0].Flags); !strings.Contains(flags, `\Seen`) || !strings.Contains(flags, `\Flagged`) {
		t.Errorf("flags %s, want \\Seen and \\Flagged", flags)
	}
	if !got[0].Date.Equal(m.Date) {
		t.Errorf("internal date %v, want %v", got[0].Date, m.Date)
	}
	if sel := srv.Stats().Commands["SELECT"] - after["SELECT"]; sel != 1 {
		t.Errorf("%d SELECTs for the first Append to a folder prepared empty, want 1", sel)
	}
}

// TestIMAPPrepareSubscribes: a folder Prepare creates is subscribed (mail
// clients such as Thunderbird show only subscribed folders) unless the
// source says it is not subscribed there; a folder that existed already,
// unsubscribed (as Dovecot creates its special folders), is subscribed
// when a subscribed source folder goes into it, and stays as it was when
// an unsubscribed one does.
func TestIMAPPrepareSubscribes(t *testing.T) {
	ctx := context.Background()
	srv := fakeimap.Start(t, fakeimap.Options{})
	srv.AddUser("u", "p")
	for _, f := range []string{"Existing", "Hidden"} {
		if err := srv.Create("u", f); err != nil {
			t.Fatal(err)
		}
	}
	// Unsubscribed on the server by its user, before the copy.
	c := dialFake(t, srv)
	for _, f := range []string{"Existing", "Hidden"} {
		if err := c.Unsubscribe(f).Wait(); err != nil {
			t.Fatal(err)
		}
	}
	s := fakeSinkOpener(t, "imap://u@"+srv.Addr())()
	for _, mb := range []migrate.Mailbox{{Name: "Local"}, {Name: "Lists/Quiet", Unsubscribed: true}, {Name: "Existing"}, {Name: "Hidden", Unsubscribed: true}, {Name: "Lists/Loud"}} {
		if _, err := s.Prepare(ctx, mb, mb.Name); err != nil {
			t.Fatalf("Prepare %q: %v", mb.Name, err)
		}
	}
	got := map[string]bool{}
	for _, f := range srv.Folders("u") {
		got[f.Name] = f.Subscribed
	}
	for name, want := range map[string]bool{"Local": true, "Lists/Quiet": false, "Existing": true, "Hidden": false, "Lists/Loud": true} {
		if got[name] != want {
			t.Errorf("%s subscribed %v, want %v (all: %v)", name, got[name], want, got)
		}
	}
}

// dialFake logs in to srv as u, as a user's mail client would.
func dialFake(t *testing.T, srv *fakeimap.Server) *imapclient.Client {
	t.Helper()
	c, err := imapclient.DialInsecure(srv.Addr(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Login("u", "p").Wait(); err != nil {
		t.Fatal(err)
	}
	return c
}

// TestIMAPPrepareRefusedNameSubscribes: Prepare sends CREATE, SUBSCRIBE
// and SELECT together. When the server refuses the CREATE (a "." in the
// name, as Dovecot's Maildir++ layout does):
//   - a SUBSCRIBE that failed with it (Dovecot refuses to subscribe a name
//     that is no folder) is not taken for a server that refuses SUBSCRIBE:
//     the escaped folder and every later one are subscribed, no warning;
//   - a SUBSCRIBE the server accepted for the refused name (Cyrus, Courier
//     and UW-IMAP keep subscriptions to names) is taken back;
//   - a folder that is there after all (made after the copy started, and a
//     server that refuses CREATE of an existing name without
//     ALREADYEXISTS) keeps the subscription its user gave it.
func TestIMAPPrepareRefusedNameSubscribes(t *testing.T) {
	for _, anyName := range []bool{false, true} {
		ctx := context.Background()
		o := fakeimap.Options{ForbiddenChars: ".", SubscribeAnyName: anyName}
		o.Hooks.Command = func(ev fakeimap.CommandEvent) fakeimap.Action {
			if ev.Name == "CREATE" && strings.Contains(ev.Line, "Meanwhile") {
				return fakeimap.Refuse("", "Mailbox exists")
			}
			return fakeimap.Action{}
		}
		srv := fakeimap.Start(t, o)
		srv.AddUser("u", "p")
		var warns []error
		host, port, _ := net.SplitHostPort(srv.Addr())
		s, err := sinks.OpenIMAP(ctx, &imapconn.Config{Endpoint: imapconn.Endpoint{Host: host, Port: port, User: "u"}, InsecurePlaintext: true, Password: "p"}, 2,
			func(err error) { warns = append(warns, err) })
		if err != nil {
			t.Fatal(err)
		}
		// Made by the user after the copy started, and subscribed.
		if err := srv.Create("u", "Meanwhile"); err != nil {
			t.Fatal(err)
		}
		c := dialFake(t, srv)
		if err := c.Subscribe("Meanwhile").Wait(); err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, mb := range []migrate.Mailbox{{Name: "Dotted.Name"}, {Name: "Later"}} {
			dest, err := s.Prepare(ctx, mb, mb.Name)
			if err != nil {
				t.Fatalf("Prepare %q: %v", mb.Name, err)
			}
			names = append(names, dest)
		}
		if _, err := s.Prepare(ctx, migrate.Mailbox{Name: "Meanwhile"}, "Meanwhile"); err == nil {
			t.Fatal("Prepare Meanwhile: the refused CREATE was not reported")
		}
		s.Close()
		if names[0] == "Dotted.Name" || names[1] != "Later" {
			t.Fatalf("prepared as %q", names)
		}
		got := map[string]bool{}
		for _, f := range srv.Folders("u") {
			got[f.Name] = f.Subscribed
		}
		for _, name := range append(names, "Meanwhile") {
			if !got[name] {
				t.Errorf("any name %v: %s not subscribed (all: %v)", anyName, name, got)
			}
		}
		if d := srv.Dangling("u"); len(d) != 0 {
			t.Errorf("any name %v: subscribed to names that are no folder: %q", anyName, d)
		}
		for _, w := range warns {
			if strings.Contains(w.Error(), "SUBSCRIBE") {
				t.Errorf("any name %v: warning: %v", anyName, w)
			}
		}
	}
}

// TestIMAPRefusedNameFoundAgain: a folder an earlier run had to create
// under an escaped name (the server refused "Release 1.2") is found by
// the next run's sink, which has not learned the refusal: Resolve (what
// check uses) names it, and Prepare uses it without asking to create the
// refused name again or warning again.
func TestIMAPRefusedNameFoundAgain(t *testing.T) {
	ctx := context.Background()
	var creates atomic.Int32
	o := fakeimap.Options{ForbiddenChars: "."}
	o.Hooks.Command = func(ev fakeimap.CommandEvent) fakeimap.Action {
		if ev.Name == "CREATE" {
			creates.Add(1)
		}
		return fakeimap.Action{}
	}
	srv := fakeimap.Start(t, o)
	srv.AddUser("u", "p")
	host, port, _ := net.SplitHostPort(srv.Addr())
	open := func(warns *[]error) *sinks.IMAP {
		s, err := sinks.OpenIMAP(ctx, &imapconn.Config{Endpoint: imapconn.Endpoint{Host: host, Port: port, User: "u"}, InsecurePlaintext: true, Password: "p"}, 1,
			func(err error) { *warns = append(*warns, err) })
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	var warns []error
	s := open(&warns)
	mb := migrate.Mailbox{Name: "Lists/Release 1.2"}
	first, err := s.Prepare(ctx, mb, mb.Name)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if first == mb.Name || len(warns) != 1 {
		t.Fatalf("first run: prepared as %q, warnings %v", first, warns)
	}
	warns = nil
	creates.Store(0)
	s = open(&warns)
	defer s.Close()
	if got, err := s.Resolve(ctx, mb, mb.Name); err != nil || got != first {
		t.Fatalf("next run: Resolve = %q, %v; want %q", got, err, first)
	}
	if got, err := s.Prepare(ctx, mb, mb.Name); err != nil || got != first {
		t.Fatalf("next run: Prepare = %q, %v; want %q", got, err, first)
	}
	if creates.Load() != 0 || len(warns) != 0 {
		t.Fatalf("next run: %d CREATEs, warnings %v", creates.Load(), warns)
	}
	// A folder the server accepts is not taken for another's twin.
	if got, err := s.Resolve(ctx, migrate.Mailbox{Name: "Lists/Release 1"}, "Lists/Release 1"); err != nil || got != "Lists/Release 1" {
		t.Fatalf("Resolve of an unrelated name = %q, %v", got, err)
	}
}
