package sinks

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mailhaul/mailhaul/internal/maildir"
	"github.com/mailhaul/mailhaul/migrate"
)

// TestMaildirIndexBodies: the body length read from files agrees with the
// spool's, for a file bigger than the header buffer with a CRLF split at
// the buffer boundary, and for LF files; Folders lists the tree.
func TestMaildirIndexBodies(t *testing.T) {
	root := t.TempDir()
	s, err := OpenMaildir(root, maildir.PlusPlus)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, f := range []string{"INBOX", "Archive/2019"} {
		if _, err := s.Prepare(ctx, migrate.Mailbox{Name: f}, f); err != nil {
			t.Fatal(err)
		}
	}
	big := "Message-ID: <big@x>\r\n\r\n" + strings.Repeat("y", 256<<10-len("Message-ID: <big@x>\r\n\r\n")-1) + "\r\n" + strings.Repeat("z\r\n", 1000)
	lf := "Message-ID: <lf@x>\nX-Mozilla-Status: 0001\n\nbody\nmore\n"
	want := map[string]int64{}
	for i, m := range []string{big, lf} {
		b, err := migrate.NewBody(strings.NewReader(m), 1<<20, "")
		if err != nil {
			t.Fatal(err)
		}
		want[b.MessageID()] = b.BodyLen()
		dir := filepath.Join(root, ".Archive.2019", "cur")
		if i == 0 {
			dir = filepath.Join(root, "cur")
		}
		os.WriteFile(filepath.Join(dir, b.MessageID()+":2,"), []byte(m), 0o600)
	}
	got := map[string]int64{}
	for _, f := range []string{"INBOX", "Archive/2019"} {
		err := s.IndexBodies(ctx, f, func(mid string, size, body int64) error {
			got[mid] = body
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if got["<big@x>"] != want["<big@x>"] || got["<lf@x>"] != want["<lf@x>"] || want["<lf@x>"] != int64(len("body\r\nmore\r\n")) {
		t.Errorf("body lengths %v, want %v", got, want)
	}
	fs, err := s.Folders(ctx)
	if err != nil || !bytes.Contains([]byte(strings.Join(fs, ",")), []byte("Archive/2019")) {
		t.Errorf("Folders = %v, %v", fs, err)
	}
}
