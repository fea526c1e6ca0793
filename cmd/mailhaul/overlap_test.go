package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mailhaul/mailhaul/internal/testserver"
	"github.com/mailhaul/mailhaul/migrate"
)

// TestCheckOverlap: a destination that is the source, lies inside it or
// holds it is refused before anything is opened; disjoint endpoints and
// POP3 into the same account's IMAP are not.
func TestCheckOverlap(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "Mail", "mutt")
	os.MkdirAll(src, 0o700)
	os.Symlink(src, filepath.Join(dir, "link"))
	mboxFile := filepath.Join(dir, "Mail", "old.mbox")
	os.WriteFile(mboxFile, []byte("From x\n\n"), 0o600)
	dedupe := migrate.Options{Dedupe: true}
	toArchive := migrate.Options{Map: map[string]string{"INBOX": "Archive"}}
	toInbox := migrate.Options{Map: map[string]string{"INBOX": "inbox"}}
	for _, c := range []struct {
		src, dst string
		refuse   string // "" = allowed
		o        migrate.Options
	}{
		{"maildir:" + src, "maildir:" + src, "is the source itself", migrate.Options{}},
		{"maildir:" + src, "maildir:" + src + "/", "is the source itself", migrate.Options{}},
		{"maildir:" + src, "maildir:" + filepath.Join(dir, "link"), "is the source itself", migrate.Options{}},
		{"maildir:" + src, "maildir:" + filepath.Join(src, "new-dir", "deeper"), "lies inside the source", migrate.Options{}},
		{"maildir:" + src, "maildir:" + filepath.Join(dir, "link", "x"), "lies inside the source", migrate.Options{}},
		{"mbox:" + src, "maildir:" + filepath.Join(dir, "Mail"), "lies inside the destination", migrate.Options{}},
		{"mbox:" + mboxFile, "maildir:" + filepath.Join(dir, "Mail"), "", migrate.Options{}},
		{"maildir:" + src, "maildir:" + filepath.Join(dir, "mutt2"), "", migrate.Options{}},
		{"maildir:" + src, "maildir:" + src + "-copy", "", migrate.Options{}},
		{"imaps://bob@127.0.0.1", "imaps://bob@127.0.0.1", "the source is the whole account", migrate.Options{}},
		{"imaps://bob@127.0.0.1/Work", "imaps://bob@localhost:993", "the account's root", migrate.Options{}},
		{"imaps://bob@127.0.0.1/Work", "imaps://bob@127.0.0.1/Work/Projects", "lies among the copied folders", migrate.Options{}},
		{"imaps://bob@127.0.0.1/Work", "imaps://bob@127.0.0.1/Work.Projects", "lies among the copied folders", migrate.Options{}},
		{"imaps://bob@127.0.0.1/Work", "imaps://bob@127.0.0.1/Backup", "", migrate.Options{}},
		{"imaps://bob@127.0.0.1/Work", "imaps://bob@127.0.0.1/Workshop", "", migrate.Options{}},
		{"imaps://bob@127.0.0.1", "imaps://alice@127.0.0.1", "", migrate.Options{}},
		{"imaps://bob@127.0.0.1", "imaps://bob@127.0.0.1:1993", "", migrate.Options{}},
		{"imaps://bob@127.0.0.1", "imaps://bob@127.0.0.2", "", migrate.Options{}},
		{"imaps://Bob@127.0.0.1/Work", "imaps://bob@127.0.0.1", "the account's root", migrate.Options{}},
		{"pop3s://bob@127.0.0.1", "imaps://bob@127.0.0.1", "would append each of them beside itself", migrate.Options{}},
		{"pop3://bob@localhost:110", "imaps://bob@127.0.0.1", "would append each of them beside itself", toInbox},
		{"pop3s://bob@127.0.0.1", "imaps://bob@127.0.0.1", "", dedupe},
		{"pop3s://bob@127.0.0.1", "imaps://bob@127.0.0.1", "", toArchive},
		{"pop3s://bob@127.0.0.1", "imaps://bob@127.0.0.1/Old", "", migrate.Options{}},
		{"pop3s://bob@127.0.0.1", "imaps://alice@127.0.0.1", "", migrate.Options{}},
	} {
		s, _ := parseEndpoint(c.src)
		d, _ := parseEndpoint(c.dst)
		err := checkOverlap(context.Background(), s, d, c.o)
		switch {
		case c.refuse == "" && err != nil:
			t.Errorf("%s -> %s refused: %v", c.src, c.dst, err)
		case c.refuse != "" && (err == nil || !strings.Contains(err.Error(), c.refuse)):
			t.Errorf("%s -> %s: %v, want an error saying %q", c.src, c.dst, err, c.refuse)
		case c.refuse != "":
			var ee *exitError
			if !errors.As(err, &ee) || ee.code != exitUsage {
				t.Errorf("%s -> %s: %#v, want a usage error", c.src, c.dst, err)
			}
		}
	}
}

// TestCopyIntoItsSource: the CLI refuses to copy a Maildir into itself and
// leaves it as it was.
func TestCopyIntoItsSource(t *testing.T) {
	src := t.TempDir()
	for _, d := range []string{"cur", "new", "tmp"} {
		os.MkdirAll(filepath.Join(src, d), 0o700)
	}
	os.WriteFile(filepath.Join(src, "cur", "1.host:2,S"), []byte("Subject: x\n\nbody\n"), 0o600)
	before := countFiles(t, src)
	r := runMailhaul(t, nil, "copy", "--state-dir", t.TempDir(), "maildir:"+src, "maildir:"+src)
	if r.code != exitUsage || !strings.Contains(r.stderr, "is the source itself") {
		t.Fatalf("exit %d\n%s", r.code, r.stderr)
	}
	entries, _ := os.ReadDir(src)
	if after := countFiles(t, src); after != before || len(entries) != 3 {
		t.Errorf("the source changed: %d messages (was %d), %d entries", after, before, len(entries))
	}
}

// TestDryRunPlanOnStdout: without --json the plan of a dry run is the
// command's output (stdout, to be redirected); the summary stays on
// stderr, and nothing is written.
func TestDryRunPlanOnStdout(t *testing.T) {
	src, _ := filepath.Abs("../../testdata/maildir")
	dst := filepath.Join(t.TempDir(), "out")
	r := runMailhaul(t, nil, "copy", "--dry-run", "--state-dir", t.TempDir(), "maildir:"+src, "maildir:"+dst)
	if r.code != 0 {
		t.Fatalf("exit %d\n%s", r.code, r.stderr)
	}
	if !strings.HasPrefix(r.stdout, "FOLDER") || !strings.Contains(r.stdout, "INBOX") {
		t.Errorf("stdout:\n%s\nwant the plan", r.stdout)
	}
	if strings.Contains(r.stderr, "FOLDER") || !strings.Contains(r.stderr, "would copy") {
		t.Errorf("stderr:\n%s\nwant the summary only", r.stderr)
	}
	if _, err := os.Stat(dst); err == nil {
		t.Error("a dry run created the destination")
	}
}

// TestRefusedLoginSaysWhereThePasswordCameFrom: a refused login names the
// account and where its password was taken from, never the password.
func TestRefusedLoginSaysWhereThePasswordCameFrom(t *testing.T) {
	d := testserver.StartDovecot(t)
	pwFile := filepath.Join(t.TempDir(), "pw")
	os.WriteFile(pwFile, []byte("Wr0ng-pass\n"), 0o600)
	for _, c := range []struct {
		env  []string
		args []string
		from string
	}{
		{[]string{"MAILHAUL_SRC_PASSWORD=Wr0ng-pass"}, []string{"imaps://alice@" + d.IMAPSAddr}, "the password came from $MAILHAUL_SRC_PASSWORD"},
		{nil, []string{"--src-password-file", pwFile, "pop3s://alice@" + d.POP3SAddr}, "the password came from --src-password-file " + pwFile},
	} {
		args := append([]string{"copy", "--state-dir", t.TempDir(), "--ca-file", d.CAFile}, c.args...)
		args = append(args, "maildir:"+filepath.Join(t.TempDir(), "out"))
		r := runMailhaul(t, c.env, args...)
		if r.code != exitFatal || !strings.Contains(r.stderr, "login as account alice failed") || !strings.Contains(r.stderr, c.from) || strings.Contains(r.stderr, "Wr0ng") {
			t.Errorf("%v: exit %d\n%s", c.args, r.code, r.stderr)
		}
	}
}
