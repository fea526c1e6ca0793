package main

import (
	"fmt"
	"maps"
	"strings"
	"testing"

	"github.com/mailhaul/mailhaul/internal/testserver"
)

// TestLostStateNoDuplicates: a copy whose state dir is gone (deleted, or
// another machine) into the destination an earlier copy filled copies only
// what is new, into an IMAP destination (two Dovecots) and a Maildir; the
// first copy into IMAP folders it creates (or finds empty) reads none of
// them for it; and the run after the lost-state one reads none either.
func TestLostStateNoDuplicates(t *testing.T) {
	src := testserver.StartDovecot(t)
	dst := testserver.StartDovecot(t)
	c := imapLogin(t, src, "alice")
	folders := []string{"INBOX", "Work", "Work/Clients", "Archive"}
	for _, f := range folders[1:] {
		if err := c.Create(f, nil).Wait(); err != nil {
			t.Fatal(err)
		}
	}
	n := 0
	appendTo := func(f string) {
		n++
		body := fmt.Sprintf("From: x@example.org\r\nSubject: %s %d\r\nMessage-ID: <lost-%d@example.org>\r\n\r\nbody %d\r\n", f, n, n, n)
		cmd := c.Append(f, int64(len(body)), nil)
		cmd.Write([]byte(body))
		cmd.Close()
		if _, err := cmd.Wait(); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range folders {
		for k := 0; k < 4; k++ {
			appendTo(f)
		}
	}
	env := []string{"MAILHAUL_SRC_PASSWORD=" + src.Password("alice"), "MAILHAUL_DST_PASSWORD=" + dst.Password("alice")}
	maildir := t.TempDir()
	for _, to := range []string{"imap://alice@" + dst.IMAPAddr, "maildir:" + maildir} {
		count := func() map[string]int {
			if strings.HasPrefix(to, "maildir:") {
				return map[string]int{"all": countFiles(t, maildir)}
			}
			return imapCount(t, dst, "alice")
		}
		copyWith := func(state string) result {
			t.Helper()
			r := runMailhaul(t, env, "copy", "-vv", "--insecure-plaintext", "--state-dir", state, "imap://alice@"+src.IMAPAddr, to)
			if r.code != 0 {
				t.Fatalf("%s: exit %d\n%s", to, r.code, r.stderr)
			}
			return r
		}
		r := copyWith(t.TempDir())
		if reads := destinationIndexes(r.stderr); len(reads) > 0 || strings.Contains(r.stderr, "already holds") || strings.Contains(r.stderr, "also holds") {
			t.Errorf("%s: the first copy into new folders read them: %q\n%s", to, reads, lastLines(r.stderr, 5))
		}
		before := count()
		appendTo("Work")
		appendTo("INBOX")

		lost := t.TempDir()
		r = copyWith(lost)
		if !strings.Contains(r.stderr, "copied 2 messages") || !strings.Contains(r.stderr, "already holds") {
			t.Errorf("%s, new state dir: %s", to, lastLines(r.stderr, 8))
		}
		if reads := destinationIndexes(r.stderr); strings.HasPrefix(to, "imap:") && len(reads) != 2*len(folders) {
			t.Errorf("%s, new state dir: %d commands read destination folders, want %d: %q", to, len(reads), 2*len(folders), reads)
		}
		// Only the two new messages are fetched from the source: the
		// others are found by the Message-ID and size its listing gave.
		if n := strings.Count(r.stderr, "BODY.PEEK[]"); n > 2 {
			t.Errorf("%s, new state dir: %d body fetches from the source, want at most 2 (one per new message)", to, n)
		}
		after := count()
		want := maps.Clone(before)
		if strings.HasPrefix(to, "maildir:") {
			want["all"] += 2
		} else {
			want["Work"]++
			want["INBOX"]++
		}
		if !maps.Equal(after, want) {
			t.Fatalf("%s: the destination holds %v after the copy with a new state dir, want %v", to, after, want)
		}

		appendTo("Archive")
		r = copyWith(lost)
		if !strings.Contains(r.stderr, "copied 1 message (") || strings.Contains(r.stderr, "already holds") || strings.Contains(r.stderr, "also holds") || strings.Contains(r.stderr, "with that mail again") {
			t.Errorf("%s, the run after: %s", to, lastLines(r.stderr, 8))
		}
		if reads := destinationIndexes(r.stderr); len(reads) > 0 {
			t.Errorf("%s, the run after read destination folders: %q", to, reads)
		}
	}
}

// destinationIndexes returns the commands a -vv run sent to read its
// destination's folders: EXAMINE, and the FETCH of Message-IDs.
func destinationIndexes(stderr string) []string {
	var out []string
	for _, l := range strings.Split(stderr, "\n") {
		u := strings.ToUpper(l)
		if strings.HasPrefix(l, "dst ") && strings.Contains(l, " C: ") && (strings.Contains(u, " EXAMINE ") || strings.Contains(u, "HEADER.FIELDS") && strings.Contains(u, "MESSAGE-ID")) {
			out = append(out, l)
		}
	}
	return out
}

// TestPOP3LostStateNoDuplicates: POP3 -> IMAP (Dovecot) with a new state
// dir copies only the new mail: the messages are compared once fetched,
// by Message-ID, size and the date their Date: field gave the copy.
func TestPOP3LostStateNoDuplicates(t *testing.T) {
	d := testserver.StartDovecot(t, testserver.WithUser("pat", "Pat-Pw-7"), testserver.WithUser("dan", "Dan-Pw-8"))
	c := imapLogin(t, d, "pat")
	n := 0
	deliver := func() {
		n++
		body := fmt.Sprintf("From: x@example.org\r\nDate: Mon, %d Jan 2024 10:00:00 +0100\r\nSubject: pop %d\r\nMessage-ID: <pop-%d@example.org>\r\n\r\nbody %d\r\n", n, n, n, n)
		cmd := c.Append("INBOX", int64(len(body)), nil)
		cmd.Write([]byte(body))
		cmd.Close()
		if _, err := cmd.Wait(); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 6; i++ {
		deliver()
	}
	env := []string{"MAILHAUL_SRC_PASSWORD=Pat-Pw-7", "MAILHAUL_DST_PASSWORD=Dan-Pw-8"}
	copyWith := func(state string) result {
		t.Helper()
		r := runMailhaul(t, env, "copy", "--insecure-plaintext", "--state-dir", state, "pop3://pat@"+d.POP3Addr, "imap://dan@"+d.IMAPAddr)
		if r.code != 0 {
			t.Fatalf("exit %d\n%s", r.code, r.stderr)
		}
		return r
	}
	copyWith(t.TempDir())
	deliver()
	r := copyWith(t.TempDir())
	if !strings.Contains(r.stderr, "copied 1 message (") || !strings.Contains(r.stderr, "6 already there (6 of them found by Message-ID") {
		t.Errorf("new state dir: %s", lastLines(r.stderr, 6))
	}
	if got := imapCount(t, d, "dan")["INBOX"]; got != 7 {
		t.Errorf("INBOX holds %d, want 7", got)
	}
	// Once more with a new state dir, and the user now wants the POP3
	// server emptied: the 7 found messages are deleted too, once their
	// copies are shown to hold their bytes, and the new one is copied.
	deliver()
	r = runMailhaul(t, env, "copy", "--insecure-plaintext", "--delete-after-copy", "--state-dir", t.TempDir(), "pop3://pat@"+d.POP3Addr, "imap://dan@"+d.IMAPAddr)
	if r.code != 0 || !strings.Contains(r.stderr, "copied 1 message (") || strings.Contains(r.stderr, "stay in the source") {
		t.Errorf("--delete-after-copy with a new state dir: exit %d\n%s", r.code, lastLines(r.stderr, 8))
	}
	if got := imapCount(t, d, "pat")["INBOX"]; got != 0 {
		t.Errorf("the POP3 maildrop holds %d messages, want 0", got)
	}
	if got := imapCount(t, d, "dan")["INBOX"]; got != 8 {
		t.Errorf("INBOX holds %d, want 8", got)
	}
}
