package sources

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/mailhaul/mailhaul/migrate"
)

// TestLocalHeaders: Maildir and mbox sources hand out each message's
// header without its body, leave out what cannot be read (a vanished
// file, a FIFO, junk), and never block on a FIFO.
func TestLocalHeaders(t *testing.T) {
	root := t.TempDir()
	for _, d := range []string{"cur", "new", "tmp"} {
		os.MkdirAll(filepath.Join(root, d), 0o700)
	}
	long := "Subject: " + strings.Repeat("x", 9000) + "\n"
	files := map[string]string{
		"1.M1.h:2,S": "Message-ID: <a@x>\nFrom: A <a@x>\n\nbody a\n",
		"2.M2.h:2,":  "Message-ID: <b@x>\r\n" + long + "\r\nbody b\r\n",
		"3.M3.h:2,":  "no header end at all",
	}
	for n, b := range files {
		os.WriteFile(filepath.Join(root, "cur", n), []byte(b), 0o600)
	}
	if err := syscall.Mkfifo(filepath.Join(root, "cur", "4.M4.h:2,"), 0o600); err != nil {
		t.Fatal(err)
	}
	md, err := OpenMaildir(root)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	mbs, _ := md.Mailboxes(ctx)
	var msgs []migrate.Message
	md.List(ctx, mbs[0], func(m migrate.Message) error { msgs = append(msgs, m); return nil })
	msgs = append(msgs, migrate.Message{Mailbox: "INBOX", ID: "9.M9.h", Loc: filepath.Join(root, "cur", "9.M9.h:2,")})
	got := map[string]string{}
	if err := md.Headers(ctx, msgs, func(i int, h []byte) error { got[msgs[i].ID] = string(h); return nil }); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"1.M1.h": "Message-ID: <a@x>\nFrom: A <a@x>\n\n",
		"2.M2.h": "Message-ID: <b@x>\r\n" + long + "\r\n",
		"3.M3.h": "no header end at all",
	}
	if len(got) != len(want) {
		t.Errorf("got headers of %d messages, want %d: %q", len(got), len(want), got)
	}
	for id, w := range want {
		if got[id] != w {
			t.Errorf("%s: header %.80q, want %.80q", id, got[id], w)
		}
	}

	mb := filepath.Join(t.TempDir(), "box")
	os.WriteFile(mb, []byte("From a@x Mon Jan  3 10:00:00 2022\nMessage-ID: <m1@x>\nSubject: one\n\n>From the body\n\nFrom b@x Mon Jan  3 11:00:00 2022\nSubject: two\n\nbody two\n"), 0o600)
	mx, err := OpenMbox(mb, MboxOptions{})
	if err != nil {
		t.Fatal(err)
	}
	mbs, _ = mx.Mailboxes(ctx)
	msgs = nil
	mx.List(ctx, mbs[0], func(m migrate.Message) error { msgs = append(msgs, m); return nil })
	var hs []string
	if err := mx.Headers(ctx, msgs, func(i int, h []byte) error { hs = append(hs, string(h)); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(hs) != 2 || hs[0] != "Message-ID: <m1@x>\nSubject: one\n\n" || hs[1] != "Subject: two\n\n" {
		t.Errorf("mbox headers %q", hs)
	}
}
