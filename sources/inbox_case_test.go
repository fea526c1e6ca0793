package sources

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mailhaul/mailhaul/migrate"
)

// inboxMbox is an mbox file of n messages whose Message-IDs name tag.
func inboxMbox(t *testing.T, path, tag string, n int) {
	t.Helper()
	var b strings.Builder
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "From x@example.org Sat Jan  1 00:00:0%d 2000\nMessage-ID: <%s-%d@example.org>\nSubject: %s %d\n\nbody\n\n", i, tag, i, tag, i)
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
}

// inboxMaildir is a maildir at dir of n messages whose Message-IDs name
// tag, in cur/ only (as mutt leaves one).
func inboxMaildir(t *testing.T, dir, tag string, n int) {
	t.Helper()
	os.MkdirAll(filepath.Join(dir, "cur"), 0o700)
	for i := 0; i < n; i++ {
		body := fmt.Sprintf("Message-ID: <%s-%d@example.org>\nSubject: %s %d\n\nbody\n", tag, i, tag, i)
		if err := os.WriteFile(filepath.Join(dir, "cur", fmt.Sprintf("100%d.%s%d.host:2,S", i, tag, i)), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// copiedOnce copies src into a new Maildir and checks that its INBOX holds
// every message of tags (tag -> count) once — the folders that all read as
// INBOX merged there, none read twice or left out — and that a second run
// copies nothing.
func copiedOnce(t *testing.T, src migrate.Source, tags map[string]int) {
	t.Helper()
	dst, state := t.TempDir(), t.TempDir()
	want := 0
	for _, n := range tags {
		want += n
	}
	if rep := runCopy(t, src, dst, state, migrate.Options{}); rep.Copied != want || len(rep.Skipped) != 0 {
		t.Errorf("copied %d, skipped %v; want %d", rep.Copied, rep.Skipped, want)
	}
	got := readMaildir(t, dst)
	for tag, n := range tags {
		for i := 0; i < n; i++ {
			if _, ok := got["INBOX"][fmt.Sprintf("%s-%d@example.org", tag, i)]; !ok {
				t.Errorf("message %d of %s is not in the destination INBOX", i, tag)
			}
		}
	}
	if len(got["INBOX"]) != want {
		t.Errorf("destination INBOX holds %d messages, want %d", len(got["INBOX"]), want)
	}
	if rep := runCopy(t, src, dst, state, migrate.Options{}); rep.Copied != 0 || rep.Already != want {
		t.Errorf("second run copied %d, already %d", rep.Copied, rep.Already)
	}
}

// TestMboxInboxCaseVariants: Pine's "INBOX", Thunderbird's "Inbox" (with
// its "Inbox.sbd") and an "inbox" in one directory are three folders,
// each read once; a destination merges them into its INBOX.
func TestMboxInboxCaseVariants(t *testing.T) {
	dir := t.TempDir()
	inboxMbox(t, filepath.Join(dir, "INBOX"), "pine", 1)
	inboxMbox(t, filepath.Join(dir, "Inbox"), "tb", 3)
	inboxMbox(t, filepath.Join(dir, "inbox"), "lower", 2)
	os.MkdirAll(filepath.Join(dir, "Inbox.sbd"), 0o700)
	inboxMbox(t, filepath.Join(dir, "Inbox.sbd", "Sub"), "sub", 1)
	var warned []string
	s, err := OpenMbox(dir, MboxOptions{Warn: func(err error) { warned = append(warned, err.Error()) }})
	if err != nil {
		t.Fatal(err)
	}
	mbs, err := s.Mailboxes(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, mb := range mbs {
		names = append(names, mb.Name)
	}
	if fmt.Sprint(names) != "[INBOX INBOX/Sub Inbox inbox]" {
		t.Errorf("folders %v", names)
	}
	if len(warned) != 2 || !strings.Contains(warned[0], `is read as folder "Inbox", since another file is folder "INBOX"`) {
		t.Errorf("warnings %q", warned)
	}
	// Listed again (a retry, check after copy): the same names.
	if again, _ := s.Mailboxes(t.Context()); len(again) != len(mbs) || again[2].Name != "Inbox" {
		t.Errorf("second listing %+v", again)
	}
	s2, _ := OpenMbox(dir, MboxOptions{})
	dst, state := t.TempDir(), t.TempDir()
	rep := runCopy(t, s2, dst, state, migrate.Options{})
	if rep.Copied != 7 {
		t.Errorf("copied %d, want 7", rep.Copied)
	}
	got := readMaildir(t, dst)
	if len(got["INBOX"]) != 6 || len(got["INBOX/Sub"]) != 1 {
		t.Errorf("destination INBOX holds %d, INBOX/Sub %d; want 6, 1", len(got["INBOX"]), len(got["INBOX/Sub"]))
	}
}

// TestMaildirInboxCaseVariants: a nested tree whose root is a maildir
// (INBOX) with "inbox/" and "Inbox/" beside it, and a Maildir++ tree with
// a ".INBOX" folder: every directory is read once.
func TestMaildirInboxCaseVariants(t *testing.T) {
	t.Run("nested", func(t *testing.T) {
		root := t.TempDir()
		inboxMaildir(t, root, "root", 1)
		inboxMaildir(t, filepath.Join(root, "inbox"), "lower", 2)
		inboxMaildir(t, filepath.Join(root, "Inbox"), "upper", 3)
		s, err := OpenMaildir(root)
		if err != nil {
			t.Fatal(err)
		}
		copiedOnce(t, s, map[string]int{"root": 1, "lower": 2, "upper": 3})
	})
	t.Run("plusplus", func(t *testing.T) {
		root := t.TempDir()
		inboxMaildir(t, root, "root", 1)
		inboxMaildir(t, filepath.Join(root, ".INBOX"), "dot", 2)
		s, err := OpenMaildir(root)
		if err != nil {
			t.Fatal(err)
		}
		mbs, _ := s.Mailboxes(t.Context())
		if len(mbs) != 2 || mbs[0].Name != "INBOX" || mbs[1].Name != ".INBOX" {
			t.Errorf("folders %+v", mbs)
		}
		// ".INBOX" is a folder of its own at the destination, not INBOX.
		dst, state := t.TempDir(), t.TempDir()
		if rep := runCopy(t, s, dst, state, migrate.Options{}); rep.Copied != 3 {
			t.Errorf("copied %d, want 3", rep.Copied)
		}
	})
}
