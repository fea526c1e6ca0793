package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	pop3 "github.com/knadh/go-pop3"

	"github.com/mailhaul/mailhaul/internal/testserver"
)

// pop3UIDLs lists user's POP3 UIDLs on d in the server's order, read with
// go-pop3 (a client independent of mailhaul's).
func pop3UIDLs(t *testing.T, d *testserver.Dovecot, user string) []string {
	t.Helper()
	c, err := pop3.New(pop3.Opt{Host: "127.0.0.1", Port: 1, Dialer: tlsDialer{d.POP3SAddr, d.TLSConfig()}}).NewConn()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Quit()
	if err := c.Auth(user, d.Password(user)); err != nil {
		t.Fatalf("POP3 login as %s: %v", user, err)
	}
	ids, err := c.Uidl(0)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range ids {
		out = append(out, m.UID)
	}
	return out
}

// TestPOP3KeepUIDL moves a POP3 maildrop from one Dovecot to the Maildir
// of another with --keep-pop3-uidl, and asks the new Dovecot's pop3d for
// UIDLs: the same list, in the same order, as the old server's, so POP3
// clients download nothing again. Without the flag the UIDLs differ (the
// test can fail). The UIDLs survive a run killed after writing some
// messages, and a later run adding new mail merges into the dovecot-uidlist
// the new server has rewritten meanwhile.
func TestPOP3KeepUIDL(t *testing.T) {
	old := testserver.StartDovecot(t, testserver.WithUser("alice", "Old-Pw-1"))
	// The new server's own UIDLs differ from the old one's whatever the
	// clock (both default to UID and UIDVALIDITY, which can coincide).
	nu := testserver.StartDovecot(t, testserver.WithUser("bob", "New-Pw-2"), testserver.WithUser("carol", "New-Pw-3"), testserver.WithUser("dave", "New-Pw-4"),
		testserver.WithConfig("pop3_uidl_format = new%08Xu%08Xv"))
	var corpus [][]byte
	for i := 0; i < 12; i++ {
		corpus = append(corpus, []byte(fmt.Sprintf("Date: Mon, 1 Jul 2019 10:%02d:00 +0000\nMessage-ID: <uidl-%d@old.test>\nSubject: %d\n\nbody %d\n", i, i, i, i)))
	}
	old.SeedMaildir(t, "alice", "", corpus, nil)
	want := pop3UIDLs(t, old, "alice")
	if len(want) != len(corpus) {
		t.Fatalf("old server lists %d UIDLs", len(want))
	}
	env := []string{"MAILHAUL_SRC_PASSWORD=Old-Pw-1"}
	copyTo := func(user string, extra ...string) result {
		args := append([]string{"copy", "--state-dir", filepath.Join(nu.Dir, "state-"+user), "--ca-file", old.CAFile, "--transfers", "2"}, extra...)
		r := runMailhaul(t, env, append(args, "pop3s://alice@"+old.POP3SAddr, "maildir:"+nu.MaildirPath(user))...)
		if err := nu.Chown(user); err != nil {
			t.Fatal(err)
		}
		return r
	}

	if r := copyTo("bob", "--keep-pop3-uidl"); r.code != 0 {
		t.Fatalf("exit %d\n%s", r.code, r.stderr)
	}
	if got := pop3UIDLs(t, nu, "bob"); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("new server's UIDLs:\n%v\nold server's:\n%v", got, want)
	}
	uidlist, _ := os.ReadFile(filepath.Join(nu.MaildirPath("bob"), "dovecot-uidlist"))
	t.Logf("dovecot-uidlist:\n%s", uidlist)

	// Control: without the flag the new server makes up its own.
	if r := copyTo("carol"); r.code != 0 {
		t.Fatalf("exit %d\n%s", r.code, r.stderr)
	}
	got := pop3UIDLs(t, nu, "carol")
	if len(got) != len(want) {
		t.Fatalf("carol: %d UIDLs", len(got))
	}
	for i := range got {
		if got[i] == want[i] {
			t.Fatalf("without --keep-pop3-uidl UIDL %d is the old one (%s): the test proves nothing", i, got[i])
		}
	}

	// Killed after three appends (before their sync): the resumed run
	// finds those copies and still records their UIDLs.
	if r := runMailhaul(t, append(env, "MAILHAUL_TEST_KILL_AT=append:3"), "copy", "--state-dir", filepath.Join(nu.Dir, "state-dave"),
		"--ca-file", old.CAFile, "--transfers", "1", "--keep-pop3-uidl", "pop3s://alice@"+old.POP3SAddr, "maildir:"+nu.MaildirPath("dave")); r.code != -int(syscall.SIGKILL) {
		t.Fatalf("kill run: exit %d\n%s", r.code, r.stderr)
	}
	if r := copyTo("dave", "--keep-pop3-uidl"); r.code != 0 || !strings.Contains(r.stderr, "recovered") {
		t.Fatalf("resume: exit %d\n%s", r.code, r.stderr)
	}
	if got := pop3UIDLs(t, nu, "dave"); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("after a kill, new server's UIDLs:\n%v\nwant:\n%v", got, want)
	}

	// New mail on the old server, copied later into bob's Maildir, whose
	// uidlist the new server has rewritten meanwhile.
	old.SeedMaildir(t, "alice", "", [][]byte{[]byte("Message-ID: <late-1@old.test>\nSubject: late\n\nx\n"), []byte("Message-ID: <late-2@old.test>\nSubject: later\n\ny\n")}, nil)
	want = pop3UIDLs(t, old, "alice")
	if r := copyTo("bob", "--keep-pop3-uidl"); r.code != 0 || !strings.Contains(r.stderr, "copied 2 messages") {
		t.Fatalf("second run: exit %d\n%s", r.code, r.stderr)
	}
	if got := pop3UIDLs(t, nu, "bob"); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("after new mail, new server's UIDLs:\n%v\nwant:\n%v", got, want)
	}
	if logs := nu.Logs(); strings.Contains(logs, "dovecot-uidlist") || strings.Contains(logs, "Broken") || strings.Contains(logs, "Error") {
		t.Errorf("the new server complains:\n%s", logs)
	}
}
