package sinks_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"

	"github.com/mailhaul/mailhaul/internal/imapconn"
	"github.com/mailhaul/mailhaul/migrate"
	"github.com/mailhaul/mailhaul/sinks"
)

// faultySession refuses big messages with [TOOBIG], messages containing
// "QUOTA" with [OVERQUOTA], and never returns APPENDUID (no UIDPLUS).
type faultySession struct {
	imapserver.Session
}

func (s faultySession) Append(mailbox string, r imap.LiteralReader, o *imap.AppendOptions) (*imap.AppendData, error) {
	var buf bytes.Buffer
	io.Copy(&buf, r)
	if buf.Len() > 1000 {
		return nil, &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeTooBig, Text: "message too big"}
	}
	if strings.Contains(buf.String(), "SERVERBUG") {
		return nil, &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeServerBug, Text: "Internal error occurred. Refer to server log for more information."}
	}
	if strings.Contains(buf.String(), "DISKFULL") {
		return nil, &imap.Error{Type: imap.StatusResponseTypeNo, Text: "Error writing message: No space left on device"}
	}
	if strings.Contains(buf.String(), "QUOTA") {
		return nil, &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeOverQuota, Text: "quota exceeded"}
	}
	if _, err := s.Session.Append(mailbox, literal{bytes.NewReader(buf.Bytes()), int64(buf.Len())}, o); err != nil {
		return nil, err
	}
	return nil, nil
}

type literal struct {
	*bytes.Reader
	n int64
}

func (l literal) Size() int64 { return l.n }

func startFaulty(t *testing.T) string {
	mem := imapmemserver.New()
	u := imapmemserver.NewUser("u", "p")
	u.Create("INBOX", nil)
	mem.AddUser(u)
	srv := imapserver.New(&imapserver.Options{
		NewSession: func(*imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			return faultySession{mem.NewSession()}, nil, nil
		},
		Caps:         imap.CapSet{imap.CapIMAP4rev1: {}},
		InsecureAuth: true,
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

func TestIMAPSinkFaults(t *testing.T) {
	addr := startFaulty(t)
	host, port, _ := net.SplitHostPort(addr)
	cfg := &imapconn.Config{Endpoint: imapconn.Endpoint{Host: host, Port: port, User: "u"}, InsecurePlaintext: true, Password: "p", IdleTimeout: 10 * time.Second}
	ctx := context.Background()
	var warns []string
	sink, err := sinks.OpenIMAP(ctx, cfg, 1, func(err error) { warns = append(warns, err.Error()) })
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	// No SPECIAL-USE on this server: a \Sent source folder goes to a folder
	// created with the source's name.
	dest, err := sink.Prepare(ctx, migrate.Mailbox{Name: "Sent Items", SpecialUse: migrate.UseSent}, "Sent Items")
	if err != nil || dest != "Sent Items" {
		t.Fatalf("prepare: %q %v", dest, err)
	}
	body := func(s string) *migrate.Body {
		b, err := migrate.NewBody(strings.NewReader(s), 0, "")
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	m := migrate.Message{Mailbox: "Sent Items", ID: "1", Date: time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC), Flags: []string{`\Seen`, `\Recent`}}

	// No UIDPLUS: the ref is still non-empty (found by Message-ID search).
	ref, err := sink.Append(ctx, dest, m, body("Message-ID: <a@b>\r\nSubject: ok\r\n\r\nhi\r\n"))
	if err != nil || ref == "" || migrate.Unverified(ref) {
		t.Fatalf("append without UIDPLUS: ref %q, %v", ref, err)
	}
	// [TOOBIG] skips the message.
	_, err = sink.Append(ctx, dest, m, body("Subject: big\r\n\r\n"+strings.Repeat("x", 2000)))
	if err == nil || migrate.Classify(err) != migrate.Skip || !strings.Contains(err.Error(), "too big") {
		t.Fatalf("TOOBIG: %v (class %v)", err, migrate.Classify(err))
	}
	// [OVERQUOTA] stops the run.
	_, err = sink.Append(ctx, dest, m, body("Subject: QUOTA\r\n\r\nx\r\n"))
	if err == nil || migrate.Classify(err) != migrate.Fatal || !strings.Contains(err.Error(), "over quota") {
		t.Fatalf("OVERQUOTA: %v (class %v)", err, migrate.Classify(err))
	}
	// The connection survives NO replies.
	if _, err := sink.Append(ctx, dest, m, body("Message-ID: <c@b>\r\nSubject: after\r\n\r\nhi\r\n")); err != nil {
		t.Fatalf("append after NO: %v", err)
	}
	// A refusal that says the disk is full stops the run.
	_, err = sink.Append(ctx, dest, m, body("Subject: DISKFULL\r\n\r\nx\r\n"))
	if err == nil || migrate.Classify(err) != migrate.Fatal || !strings.Contains(err.Error(), "out of disk space") {
		t.Fatalf("disk full: %v (class %v)", err, migrate.Classify(err))
	}
	// [SERVERBUG] skips a message; ten in a row, in two folders, with
	// nothing stored in between, stop the run. Within one folder (its
	// index broken) they all skip.
	other, err := sink.Prepare(ctx, migrate.Mailbox{Name: "Other"}, "Other")
	if err != nil {
		t.Fatal(err)
	}
	bug := func(folder string, i int) error {
		_, err := sink.Append(ctx, folder, m, body(fmt.Sprintf("Subject: SERVERBUG %d\r\n\r\nx\r\n", i)))
		return err
	}
	for i := 0; i < 8; i++ {
		if err := bug(dest, i); migrate.Classify(err) != migrate.Skip {
			t.Fatalf("SERVERBUG %d: %v (class %v), want a skip", i, err, migrate.Classify(err))
		}
	}
	if err := bug(other, 8); migrate.Classify(err) != migrate.Skip {
		t.Fatalf("ninth SERVERBUG, another folder: %v (class %v), want a skip", err, migrate.Classify(err))
	}
	if _, err := sink.Append(ctx, dest, m, body("Message-ID: <d@b>\r\nSubject: stored\r\n\r\nhi\r\n")); err != nil {
		t.Fatalf("append between refusals: %v", err)
	}
	for i := 0; i < 15; i++ {
		if err := bug(dest, i); migrate.Classify(err) != migrate.Skip {
			t.Fatalf("SERVERBUG %d in one folder after a stored message: %v (class %v), want a skip", i, err, migrate.Classify(err))
		}
	}
	if err := bug(other, 15); migrate.Classify(err) != migrate.Fatal || !strings.Contains(err.Error(), "refused the last 16 messages, in more than one folder, with [SERVERBUG]") {
		t.Fatalf("SERVERBUG in a second folder after 15 in a row: %v (class %v), want fatal", err, migrate.Classify(err))
	}
}
