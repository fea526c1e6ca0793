package sources_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/mailhaul/mailhaul/internal/imapconn"
	"github.com/mailhaul/mailhaul/internal/testserver"
	"github.com/mailhaul/mailhaul/migrate"
	"github.com/mailhaul/mailhaul/sources"
)

func login(t *testing.T, d *testserver.Dovecot) *imapclient.Client {
	t.Helper()
	c, err := imapclient.DialTLS(d.IMAPSAddr, &imapclient.Options{TLSConfig: d.TLSConfig()})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Login("alice", d.Password("alice")).Wait(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func appendMsg(t *testing.T, c *imapclient.Client, folder, body string, flags ...imap.Flag) {
	t.Helper()
	cmd := c.Append(folder, int64(len(body)), &imap.AppendOptions{Flags: flags, Time: time.Date(2020, 5, 5, 5, 5, 5, 0, time.UTC)})
	cmd.Write([]byte(body))
	cmd.Close()
	if _, err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
}

// TestIMAPSourceReadOnly: listing and fetching never change the account
// (no \Seen set, nothing expunged), parents that only exist as structure
// are \Noselect mailboxes, and a message expunged between List and Fetch
// is a skipped message, not a failed run.
func TestIMAPSourceReadOnly(t *testing.T) {
	d := testserver.StartDovecot(t)
	c := login(t, d)
	if err := c.Create("Projects/2024", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	appendMsg(t, c, "INBOX", "Message-ID: <unread@x>\r\nSubject: unread\r\n\r\nhi\r\n")
	appendMsg(t, c, "INBOX", "Message-ID: <gone@x>\r\nSubject: will vanish\r\n\r\nbye\r\n")
	appendMsg(t, c, "Projects/2024", "Message-ID: <p@x>\r\nSubject: nested\r\n\r\nx\r\n", imap.FlagFlagged)

	e, err := imapconn.ParseURL("imaps://alice@" + d.IMAPSAddr)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	src, err := sources.OpenIMAP(ctx, &imapconn.Config{Endpoint: e, CAFile: d.CAFile, Password: d.Password("alice")}, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	mbs, err := src.Mailboxes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]migrate.Mailbox{}
	for _, mb := range mbs {
		byName[mb.Name] = mb
	}
	if mb, ok := byName["Projects/2024"]; !ok || mb.NoSelect || mb.Epoch == "" {
		t.Errorf("Projects/2024: %+v (all: %v)", mb, mbs)
	}
	if p, ok := byName["Projects"]; ok && !p.NoSelect {
		t.Errorf("structure-only parent Projects listed as selectable: %+v", p)
	}
	var msgs []migrate.Message
	if err := src.List(ctx, byName["INBOX"], func(m migrate.Message) error { msgs = append(msgs, m); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 2 || msgs[0].MessageID != "<unread@x>" || msgs[0].Date.IsZero() || msgs[0].Size <= 0 {
		t.Fatalf("listed %+v", msgs)
	}
	var b bytes.Buffer
	if err := src.Fetch(ctx, msgs[0], &b); err != nil || !strings.Contains(b.String(), "Subject: unread") {
		t.Fatalf("fetch: %v %q", err, b.String())
	}
	// Expunge the second message behind the source's back.
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if err := c.Store(imap.SeqSetNum(2), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagDeleted}, Silent: true}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Expunge().Close(); err != nil {
		t.Fatal(err)
	}
	// A source whose connection still shows the message may be served
	// it (it existed when listed); one that examines the folder afresh is
	// not, and skips it.
	b.Reset()
	fresh, err := sources.OpenIMAP(ctx, &imapconn.Config{Endpoint: e, CAFile: d.CAFile, Password: d.Password("alice")}, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	if _, err := fresh.Mailboxes(ctx); err != nil {
		t.Fatal(err)
	}
	err = fresh.Fetch(ctx, msgs[1], &b)
	if migrate.Classify(err) != migrate.Skip {
		t.Fatalf("fetch of an expunged message: %v (class %v), want a skip", err, migrate.Classify(err))
	}
	// Nothing was marked read.
	fl, err := c.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{Flags: true}).Collect()
	if err != nil || len(fl) != 1 {
		t.Fatal(err)
	}
	for _, f := range fl[0].Flags {
		if f == imap.FlagSeen {
			t.Errorf("the source set \\Seen on a message it fetched")
		}
	}
}
