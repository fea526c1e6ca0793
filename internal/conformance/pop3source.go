package conformance

import (
	"context"
	"fmt"
	"net"
	"testing"

	"github.com/mailhaul/mailhaul/internal/pop3conn"
	"github.com/mailhaul/mailhaul/internal/testserver"
	"github.com/mailhaul/mailhaul/migrate"
	"github.com/mailhaul/mailhaul/sources"
)

// POP3 sources. A maildrop has one folder and no flags: the cases expect
// every message in INBOX (SourceTarget.OneFolder), in its CRLF form (the
// protocol's), and flags and dates are not asked.

// seedDovecotPOP3 stores msgs in the INBOX of a real Dovecot account
// (through IMAP: a maildrop has no other way in) and reads it over POP3.
// The snapshot is the account as IMAP sees it, flags included: reading
// over POP3 must not mark Dovecot's messages \Seen (Forget's RSET).
func seedDovecotPOP3(t *testing.T, msgs []Msg) (func(*testing.T) migrate.Source, func(*testing.T) string) {
	inbox := make([]Msg, len(msgs))
	for i, m := range msgs {
		m.Folder, m.Flags = "INBOX", nil
		inbox[i] = m
	}
	d := startSeededDovecot(t, inbox)
	return pop3Source(d.POP3Addr, "src", "src-Secret-9"), imapSnapshot(d.IMAPAddr, "src", "src-Secret-9")
}

// seedFakePOP3 serves msgs, in CRLF form, from the fake POP3 server; the
// snapshot is its maildrop and what clients deleted.
func seedFakePOP3(t *testing.T, msgs []Msg) (func(*testing.T) migrate.Source, func(*testing.T) string) {
	var fm []testserver.FakeMessage
	for i, m := range msgs {
		fm = append(fm, testserver.FakeMessage{UIDL: fmt.Sprintf("uidl-%03d", i), Body: CRLF(m.Body)})
	}
	f := testserver.StartFakePOP3(t, testserver.FakePOP3Options{User: "src", Password: "src-Secret-9"}, fm)
	return pop3Source(f.Addr, "src", "src-Secret-9"), func(*testing.T) string {
		return fmt.Sprintf("maildrop %v, %d deleted", f.UIDLs(), f.Stats().Deleted)
	}
}

func pop3Source(addr, user, pw string) func(*testing.T) migrate.Source {
	return func(t *testing.T) migrate.Source {
		host, port, _ := net.SplitHostPort(addr)
		cfg := &pop3conn.Config{Endpoint: pop3conn.Endpoint{Host: host, Port: port, User: user}, InsecurePlaintext: true, Password: pw}
		s, err := sources.OpenPOP3(context.Background(), cfg, sources.POP3Options{Warn: func(err error) { t.Logf("source warning: %v", err) }})
		if err != nil {
			t.Fatalf("open POP3 source %s: %v", addr, err)
		}
		return s
	}
}
