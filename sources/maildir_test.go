package sources

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/mailhaul/mailhaul/migrate"
)

// listAll returns folder name -> message IDs.
func listAll(t *testing.T, s migrate.Source) map[string][]string {
	t.Helper()
	ctx := context.Background()
	mbs, err := s.Mailboxes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for _, mb := range mbs {
		if mb.NoSelect {
			out[mb.Name] = nil
			continue
		}
		if _, dup := out[mb.Name]; dup {
			t.Errorf("folder %q listed twice", mb.Name)
		}
		out[mb.Name] = []string{}
		if err := s.List(ctx, mb, func(m migrate.Message) error {
			out[mb.Name] = append(out[mb.Name], m.ID+" "+strings.Join(m.Flags, ","))
			return nil
		}); err != nil {
			t.Fatalf("list %s: %v", mb.Name, err)
		}
	}
	return out
}

// TestMaildirWithoutNewOrCur reads testdata/maildir-git, a Maildir++ tree
// as git stores it (no empty directories): INBOX has cur/ only, Archive
// new/ only, Sent cur/ only. Every folder and message is there.
func TestMaildirWithoutNewOrCur(t *testing.T) {
	s, err := OpenMaildir(filepath.Join("..", "testdata", "maildir-git"))
	if err != nil {
		t.Fatal(err)
	}
	got := listAll(t, s)
	want := map[string][]string{
		"INBOX":   {`1559548800.M1P1.archive \Seen`},
		"Archive": {"1559635200.M2P1.archive "},
		"Sent":    {`1559721600.M3P1.archive \Answered,\Seen`},
	}
	if len(got) != len(want) {
		t.Errorf("folders %v", got)
	}
	for f, w := range want {
		if strings.Join(got[f], "|") != strings.Join(w, "|") {
			t.Errorf("%s: %q, want %q", f, got[f], w)
		}
	}
}

func mkMaildir(t *testing.T, dir string, msgs ...string) {
	t.Helper()
	for _, sub := range []string{"cur", "new", "tmp"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	for _, m := range msgs {
		if err := os.WriteFile(filepath.Join(dir, "cur", m+":2,S"), []byte("Subject: "+m+"\n\nx\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// TestMaildirSymlinkLoops: symbolic links to a parent in a nested tree
// (one gave 64 bogus folders and 29 copies of a message; two made the walk
// grow without bound) are read once: no duplicate folder, every message
// once, and the loops are reported. A link to a folder elsewhere is
// followed. A cancelled context stops the walk.
func TestMaildirSymlinkLoops(t *testing.T) {
	root := t.TempDir()
	mkMaildir(t, root, "inbox1")
	mkMaildir(t, filepath.Join(root, "A"), "a1")
	mkMaildir(t, filepath.Join(root, "A", "B"), "b1")
	os.MkdirAll(filepath.Join(root, "Only", "Structure"), 0o700)
	mkMaildir(t, filepath.Join(root, "Only", "Structure", "Deep"), "d1")
	for link, target := range map[string]string{"A/up": "..", "A/B/up2": "../..", "A/B/self": ".", "A/again": "B"} {
		if err := os.Symlink(target, filepath.Join(root, link)); err != nil {
			t.Fatal(err)
		}
	}
	elsewhere := t.TempDir()
	mkMaildir(t, filepath.Join(elsewhere, "Far"), "f1")
	os.Symlink(filepath.Join(elsewhere, "Far"), filepath.Join(root, "Far"))

	s, err := OpenMaildir(root)
	if err != nil {
		t.Fatal(err)
	}
	var warns []string
	s.Warn = func(err error) { warns = append(warns, err.Error()) }
	got := listAll(t, s)
	var names []string
	for n := range got {
		names = append(names, n)
	}
	sort.Strings(names)
	if strings.Join(names, ",") != "A,A/B,Far,INBOX,Only,Only/Structure,Only/Structure/Deep" {
		t.Errorf("folders %v", names)
	}
	if len(got["INBOX"]) != 1 || len(got["A/B"]) != 1 || len(got["Far"]) != 1 {
		t.Errorf("messages %v", got)
	}
	if len(warns) != 4 || !strings.Contains(strings.Join(warns, "\n"), "the same directory as folder") {
		t.Errorf("warnings %q", warns)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	s2, _ := OpenMaildir(root)
	if _, err := s2.Mailboxes(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled walk: %v", err)
	}
}

// TestMaildirCopiedWithoutMtimes: a maildir copied without its mtimes
// (every file dated the day of the copy) keeps each message's delivery
// day, which its file name holds, as the copy's date.
func TestMaildirCopiedWithoutMtimes(t *testing.T) {
	root := t.TempDir()
	delivered := time.Date(2011, 6, 5, 4, 3, 2, 0, time.UTC)
	os.MkdirAll(filepath.Join(root, "cur"), 0o700)
	p := filepath.Join(root, "cur", fmt.Sprintf("%d.M1P2.oldlaptop:2,S", delivered.Unix()))
	if err := os.WriteFile(p, []byte("Message-ID: <old@x>\nSubject: old\n\nbody\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := OpenMaildir(root)
	if err != nil {
		t.Fatal(err)
	}
	dst, state := t.TempDir(), t.TempDir()
	if rep := runCopy(t, s, dst, state, migrate.Options{}); rep.Copied != 1 {
		t.Fatalf("copied %d, want 1", rep.Copied)
	}
	got := readMaildir(t, dst)["INBOX"]["old@x"]
	if !got.mtime.Equal(delivered) {
		t.Errorf("copy dated %v, want the delivery's %v", got.mtime, delivered)
	}
}

// TestMaildirFileManagerLeftovers: Thumbs.db and desktop.ini, which
// Windows leaves in a directory it showed, are no messages.
func TestMaildirFileManagerLeftovers(t *testing.T) {
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "cur"), 0o700)
	os.WriteFile(filepath.Join(root, "cur", "1300000000.M1P2.host:2,S"), []byte("Message-ID: <m@x>\n\nbody\n"), 0o600)
	os.WriteFile(filepath.Join(root, "cur", "Thumbs.db"), []byte{0xd0, 0xcf, 0x11, 0xe0}, 0o600)
	os.WriteFile(filepath.Join(root, "cur", "desktop.ini"), []byte("[.ShellClassInfo]\r\n"), 0o600)
	s, err := OpenMaildir(root)
	if err != nil {
		t.Fatal(err)
	}
	dst, state := t.TempDir(), t.TempDir()
	if rep := runCopy(t, s, dst, state, migrate.Options{}); rep.Copied != 1 || len(rep.Skipped) != 0 {
		t.Errorf("copied %d, skipped %v; want 1, none", rep.Copied, rep.Skipped)
	}
}

// TestMaildirListsInDeliveryOrder: messages are listed in the order they
// were delivered (the time their names start with, compared as numbers),
// new/ and cur/ together, so that an IMAP destination's UIDs follow it.
func TestMaildirListsInDeliveryOrder(t *testing.T) {
	root := t.TempDir()
	for _, p := range []string{"new/1500000000.M3.host", "cur/1400000000.M2.host:2,S", "cur/999000000.M1.host:2,S", "cur/notime:2,S"} {
		os.MkdirAll(filepath.Join(root, filepath.Dir(p)), 0o700)
		if err := os.WriteFile(filepath.Join(root, p), []byte("Subject: x\n\nx\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	s, err := OpenMaildir(root)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Mailboxes(t.Context()); err != nil {
		t.Fatal(err)
	}
	var ids []string
	if err := s.List(t.Context(), migrate.Mailbox{Name: "INBOX"}, func(m migrate.Message) error { ids = append(ids, m.ID); return nil }); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(ids, " "); got != "999000000.M1.host 1400000000.M2.host 1500000000.M3.host notime" {
		t.Errorf("listed %s", got)
	}
}

// TestMaildirDanglingSymlink: a message file that is a symbolic link to
// nothing is skipped with a reason that says so.
func TestMaildirDanglingSymlink(t *testing.T) {
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "cur"), 0o700)
	os.WriteFile(filepath.Join(root, "cur", "1300000000.M1.h:2,S"), []byte("Message-ID: <a@x>\n\nbody\n"), 0o600)
	if err := os.Symlink("/nonexistent/mail", filepath.Join(root, "cur", "1300000001.M2.h:2,S")); err != nil {
		t.Fatal(err)
	}
	s, err := OpenMaildir(root)
	if err != nil {
		t.Fatal(err)
	}
	rep := runCopy(t, s, t.TempDir(), t.TempDir(), migrate.Options{})
	if rep.Copied != 1 || len(rep.Skipped) != 1 || !strings.Contains(rep.Skipped[0].Reason, "a symbolic link to /nonexistent/mail, which does not exist") {
		t.Errorf("copied %d, skipped %+v", rep.Copied, rep.Skipped)
	}
}
