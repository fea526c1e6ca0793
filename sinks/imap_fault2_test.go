package sinks_test

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"

	"github.com/mailhaul/mailhaul/internal/imapconn"
	"github.com/mailhaul/mailhaul/internal/testserver"
	"github.com/mailhaul/mailhaul/migrate"
	"github.com/mailhaul/mailhaul/sinks"
)

// strictSession allows only the system flags \Seen and \Flagged to be
// stored (no keywords, no \*), like servers with a fixed flag set.
type strictSession struct {
	imapserver.Session
}

func (s strictSession) Select(mailbox string, o *imap.SelectOptions) (*imap.SelectData, error) {
	d, err := s.Session.Select(mailbox, o)
	if d != nil {
		d.PermanentFlags = []imap.Flag{imap.FlagSeen, imap.FlagFlagged}
	}
	return d, err
}

func startMem(t *testing.T, caps imap.CapSet, wrap func(imapserver.Session) imapserver.Session) (string, *imapmemserver.User) {
	t.Helper()
	mem := imapmemserver.New()
	u := imapmemserver.NewUser("u", "p")
	u.Create("INBOX", nil)
	mem.AddUser(u)
	srv := imapserver.New(&imapserver.Options{
		NewSession: func(*imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			return wrap(mem.NewSession()), nil, nil
		},
		Caps:         caps,
		InsecureAuth: true,
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String(), u
}

func memSink(t *testing.T, addr string, warn func(error)) *sinks.IMAP {
	t.Helper()
	host, port, _ := net.SplitHostPort(addr)
	cfg := &imapconn.Config{Endpoint: imapconn.Endpoint{Host: host, Port: port, User: "u"}, InsecurePlaintext: true, Password: "p", IdleTimeout: 10 * time.Second}
	sink, err := sinks.OpenIMAP(context.Background(), cfg, 1, warn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sink.Close() })
	return sink
}

func newBody(t *testing.T, s string) *migrate.Body {
	t.Helper()
	b, err := migrate.NewBody(strings.NewReader(s), 0, "")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// A keyword the folder cannot store is dropped and reported; the
// message is still appended with the flags that can be stored.
func TestIMAPSinkPermanentFlags(t *testing.T) {
	addr, _ := startMem(t, imap.CapSet{imap.CapIMAP4rev1: {}, imap.CapUIDPlus: {}}, func(s imapserver.Session) imapserver.Session { return strictSession{s} })
	var warns []string
	sink := memSink(t, addr, nil)
	sink.SetDropped(func(dest string, m migrate.Message, flags []string, why string) {
		warns = append(warns, dest+": "+strings.Join(flags, " ")+" "+why)
	})
	ctx := context.Background()
	dest, err := sink.Prepare(ctx, migrate.Mailbox{Name: "INBOX"}, "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	m := migrate.Message{Mailbox: "INBOX", ID: "1", Flags: []string{`\Seen`, `\Flagged`, "$Label1", `\Answered`}}
	if _, err := sink.Append(ctx, dest, m, newBody(t, "Message-ID: <p@x>\r\n\r\nhi\r\n")); err != nil {
		t.Fatalf("append with a refused keyword failed: %v", err)
	}
	if !strings.Contains(strings.Join(warns, "\n"), "$Label1") {
		t.Errorf("no warning about the dropped keyword: %v", warns)
	}
	c, err := imapclient.DialInsecure(addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Login("u", "p").Wait()
	c.Select("INBOX", nil).Wait()
	msgs, err := c.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{Flags: true}).Collect()
	if err != nil || len(msgs) != 1 {
		t.Fatalf("fetch: %v", err)
	}
	got := map[imap.Flag]bool{}
	for _, f := range msgs[0].Flags {
		got[f] = true
	}
	if !got[imap.FlagSeen] || !got[imap.FlagFlagged] || got["$Label1"] {
		t.Errorf("stored flags %v", msgs[0].Flags)
	}
}

// [TRYCREATE]: a folder deleted after Prepare is created again and the
// append retried.
func TestIMAPSinkTryCreate(t *testing.T) {
	addr, user := startMem(t, imap.CapSet{imap.CapIMAP4rev1: {}, imap.CapUIDPlus: {}}, func(s imapserver.Session) imapserver.Session { return s })
	sink := memSink(t, addr, nil)
	ctx := context.Background()
	dest, err := sink.Prepare(ctx, migrate.Mailbox{Name: "Work"}, "Work")
	if err != nil {
		t.Fatal(err)
	}
	if err := user.Delete("Work"); err != nil {
		t.Fatal(err)
	}
	m := migrate.Message{Mailbox: "Work", ID: "1"}
	if _, err := sink.Append(ctx, dest, m, newBody(t, "Message-ID: <t@x>\r\n\r\nhi\r\n")); err != nil {
		t.Fatalf("append after the folder vanished: %v", err)
	}
	st, err := user.Status("Work", &imap.StatusOptions{NumMessages: true})
	if err != nil || *st.NumMessages != 1 {
		t.Fatalf("Work after TRYCREATE: %+v %v", st, err)
	}
}

// APPENDLIMIT: a Dovecot advertising APPENDLIMIT=1000: a bigger message is
// skipped (and listed) without being sent; the others are copied.
func TestIMAPSinkAppendLimit(t *testing.T) {
	d := testserver.StartDovecot(t, testserver.WithConfig("imap_capability = +APPENDLIMIT=1000\n"))
	ctx := context.Background()
	sink, err := sinks.OpenIMAP(ctx, cfgFor(t, d, "alice"), 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	dest, err := sink.Prepare(ctx, migrate.Mailbox{Name: "INBOX"}, "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	m := migrate.Message{Mailbox: "INBOX", ID: "1"}
	_, err = sink.Append(ctx, dest, m, newBody(t, "Subject: big\r\n\r\n"+strings.Repeat("x", 2000)))
	if migrate.Classify(err) != migrate.Skip || !strings.Contains(err.Error(), "APPENDLIMIT") {
		t.Fatalf("over APPENDLIMIT: %v", err)
	}
	if _, err := sink.Append(ctx, dest, m, newBody(t, "Message-ID: <small@x>\r\n\r\nhi\r\n")); err != nil {
		t.Fatalf("small message: %v", err)
	}
	if n := len(dump(t, client(t, d, "alice"))["INBOX"]); n != 1 {
		t.Errorf("INBOX holds %d messages, want 1", n)
	}
}
