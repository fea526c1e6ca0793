package main

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/mailhaul/mailhaul/checkpoint"
	"github.com/mailhaul/mailhaul/internal/testserver"
)

// TestCheckpointFollowsTheAccount: a copy interrupted under one spelling of
// the source (127.0.0.1) and resumed under another (localhost, which
// resolves to it) resumes the same checkpoint instead of copying
// everything again, and a run under the second spelling is locked out while
// the first one's checkpoint is in use.
func TestCheckpointFollowsTheAccount(t *testing.T) {
	src := testserver.StartDovecot(t)
	srcDir, _ := filepath.Abs("../../testdata/maildir")
	c := imapLogin(t, src, "alice")
	c.Close()
	// Seed the IMAP source from the Maildir sample (any run will do).
	seedState := t.TempDir()
	env := []string{"MAILHAUL_DST_PASSWORD=" + src.Password("alice"), "MAILHAUL_SRC_PASSWORD=" + src.Password("alice")}
	if r := runMailhaul(t, env, "copy", "--include-deleted", "--state-dir", seedState, "--ca-file", src.CAFile, "maildir:"+srcDir, "imaps://alice@"+src.IMAPSAddr); r.code != 0 {
		t.Fatalf("seed: exit %d\n%s", r.code, r.stderr)
	}
	want := countFiles(t, srcDir)
	_, port, _ := strings.Cut(src.IMAPSAddr, ":")
	state := t.TempDir()
	out := t.TempDir()
	args := func(host string) []string {
		return []string{"copy", "--include-deleted", "--transfers", "1", "--state-dir", state, "--ca-file", src.CAFile,
			"imaps://alice@" + host + ":" + port, "maildir:" + out}
	}
	// Killed right after the 6th append: a partial copy whatever the
	// batches were (a kill at the 2nd commit came after the last message
	// when the second batch held all the rest).
	r := runMailhaul(t, append(env, "MAILHAUL_TEST_KILL_AT=append:6"), args("127.0.0.1")...)
	if r.code == 0 {
		t.Fatalf("not killed:\n%s", r.stderr)
	}
	first := countFiles(t, out)
	if first < 6 || first >= want {
		t.Fatalf("the killed run copied %d of %d; the test needs a partial copy", first, want)
	}

	// Locked out while the checkpoint is in use.
	files, _ := filepath.Glob(filepath.Join(state, "*.db"))
	if len(files) != 1 {
		t.Fatalf("state holds %v", files)
	}
	held, err := checkpoint.Open(files[0], "x", "y")
	if err != nil {
		t.Fatal(err)
	}
	r = runMailhaul(t, env, args("localhost")...)
	held.Close()
	if r.code != 1 || !strings.Contains(r.stderr, "another mailhaul") {
		t.Fatalf("second spelling while the first holds the checkpoint: exit %d\n%s", r.code, r.stderr)
	}

	r = runMailhaul(t, env, append([]string{"--json"}, args("localhost")...)...)
	if r.code != 0 {
		t.Fatalf("resume under the other spelling: exit %d\n%s", r.code, r.stderr)
	}
	if !strings.Contains(r.stderr, "same accounts, spelled differently") {
		t.Errorf("no note about the other spelling:\n%s", r.stderr)
	}
	if got := countFiles(t, out); got != want {
		t.Errorf("destination holds %d messages, want %d (copied again under the new spelling?)", got, want)
	}
	if files, _ := filepath.Glob(filepath.Join(state, "*.db")); len(files) != 1 {
		t.Errorf("a second checkpoint was created: %v", files)
	}
}
