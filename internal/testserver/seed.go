package testserver

import (
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

// seedSeq makes seeded file names unique within the test process.
var seedSeq atomic.Int64

// SeedMaildir delivers msgs into folder of user's Maildir on d, the way a
// local delivery agent would (files in new/, mtime = the arrival date
// date(i), or now when date is nil), and hands them to the mail owner.
// folder "" is the INBOX (what POP3 serves); other folders are Maildir++
// names such as ".Sent". It returns the file paths in order.
func (d *Dovecot) SeedMaildir(t testing.TB, user, folder string, msgs [][]byte, date func(i int) time.Time) []string {
	t.Helper()
	dir := filepath.Join(d.MaildirPath(user), folder)
	for _, s := range []string{"cur", "new", "tmp"} {
		if err := os.MkdirAll(filepath.Join(dir, s), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if folder != "" {
		os.WriteFile(filepath.Join(dir, "maildirfolder"), nil, 0o600)
	}
	var paths []string
	now := time.Now()
	for i, m := range msgs {
		when := now
		if date != nil {
			when = date(i)
		}
		p := filepath.Join(dir, "new", fmt.Sprintf("%d.M%dP%d.seed", when.Unix(), seedSeq.Add(1), os.Getpid()))
		if err := os.WriteFile(p, m, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, when, when); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	if err := d.Chown(user); err != nil {
		t.Fatal(err)
	}
	return paths
}
