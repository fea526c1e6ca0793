package sources_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/mailhaul/mailhaul/internal/imapconn"
	"github.com/mailhaul/mailhaul/internal/testserver/fakeimap"
	"github.com/mailhaul/mailhaul/migrate"
	"github.com/mailhaul/mailhaul/sources"
)

// TestIMAPFetchLargeResumes: a 21 MB message whose connection is cut in
// the middle of each of its first three ranges arrives whole and exact,
// and each range after a cut starts where the cut was, not at byte 0.
func TestIMAPFetchLargeResumes(t *testing.T) {
	var mu sync.Mutex
	var offsets []int64
	cuts := 0
	o := fakeimap.Options{}
	o.Hooks.Fetch = func(ev fakeimap.FetchEvent) fakeimap.FetchAction {
		if ev.Section == nil || ev.Section.Specifier != imap.PartSpecifierNone || len(ev.Section.Part) > 0 {
			return fakeimap.FetchAction{}
		}
		mu.Lock()
		defer mu.Unlock()
		var off int64
		if ev.Section.Partial != nil {
			off = ev.Section.Partial.Offset
		}
		offsets = append(offsets, off)
		if cuts < 3 && ev.Size > 1<<20 {
			cuts++
			return fakeimap.FetchAction{Cut: true, After: ev.Size / 2}
		}
		return fakeimap.FetchAction{}
	}
	srv := fakeimap.Start(t, o)
	srv.AddUser("u", "p")
	body := []byte("Subject: big\r\nMessage-ID: <big@x>\r\n\r\n" + strings.Repeat("0123456789abcdef\r\n", 21<<20/18))
	if _, err := srv.Append("u", "INBOX", body, nil, time.Now()); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	src := openFake(t, srv)
	defer src.Close()
	mbs, err := src.Mailboxes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var msgs []migrate.Message
	src.List(ctx, mbs[0], func(m migrate.Message) error { msgs = append(msgs, m); return nil })
	var out bytes.Buffer
	if err := src.Fetch(ctx, msgs[0], &out); err != nil {
		t.Fatalf("fetch: %v", err)
	}
	if sha256.Sum256(out.Bytes()) != sha256.Sum256(body) {
		t.Fatalf("got %d bytes, want %d, not the same", out.Len(), len(body))
	}
	mu.Lock()
	defer mu.Unlock()
	if cuts != 3 {
		t.Fatalf("%d cuts", cuts)
	}
	var fetched int64
	for i, off := range offsets {
		if i > 0 && off == 0 {
			t.Errorf("range %d started again at byte 0 (offsets %v)", i, offsets)
		}
		if i > 0 && off <= offsets[i-1] {
			t.Errorf("offsets go back: %v", offsets)
		}
		_ = fetched
	}
}

// openFake opens an IMAP source on srv's account "u" (password "p"), one
// connection, plaintext.
func openFake(t *testing.T, srv *fakeimap.Server) *sources.IMAP {
	t.Helper()
	host, port, _ := net.SplitHostPort(srv.Addr())
	src, err := sources.OpenIMAP(context.Background(), &imapconn.Config{Endpoint: imapconn.Endpoint{Host: host, Port: port, User: "u"}, InsecurePlaintext: true, Password: "p"}, 1)
	if err != nil {
		t.Fatal(err)
	}
	return src
}
