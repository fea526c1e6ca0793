package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
)

// snapshot records every path, size, mode and mtime under root, to prove
// that a run did not change its source.
func snapshot(t *testing.T, root string) string {
	t.Helper()
	return listTree(root)
}

// listTree describes every path under root but those in skip (and what
// they hold): mode, size and, for files, mtime (a directory's mtime changes
// when something is made in it, which the paths already show).
func listTree(root string, skip ...string) string {
	var b strings.Builder
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if slices.Contains(skip, p) {
			return filepath.SkipDir
		}
		if err != nil {
			fmt.Fprintf(&b, "%q error %v\n", p, err)
			return nil
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return nil
		}
		mt := fi.ModTime().UnixNano()
		if fi.IsDir() {
			mt = 0
		}
		fmt.Fprintf(&b, "%q %v %d %d\n", p, fi.Mode(), fi.Size(), mt)
		return nil
	})
	return b.String()
}

// writeBig writes a message of about size bytes without holding it in
// memory and returns its hex SHA-256.
func writeBig(t *testing.T, p string, size int) string {
	t.Helper()
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	w := io.MultiWriter(f, h)
	io.WriteString(w, "Subject: 100 MB\nMessage-ID: <big@x>\n\n")
	line := []byte("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcd\n")
	for n := 0; n < size; n += len(line) {
		w.Write(line)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func writeMsg(t *testing.T, dir, sub, name string, body []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, sub, name), body, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestBadInputMaildir(t *testing.T) {
	src, dst, state := t.TempDir(), t.TempDir(), t.TempDir()
	for _, s := range []string{"cur", "new", "tmp"} {
		os.MkdirAll(filepath.Join(src, s), 0o755)
	}
	good := map[string][]byte{
		"1.junk:2,S":            {0x00, 0xff, 0xfe, 'F', 'r', 'o', 'm', 0x00, '\n', 0x1b, 0x80},
		"2.nul:2,S":             []byte("Subject: nul\n\nbody with \x00 NUL \x00 bytes\n"),
		"3.cr-only:2,":          []byte("Subject: cr only\rMessage-ID: <cr@x>\r\rline one\rline two\r"),
		"4.long-line:2,F":       append([]byte("Subject: long\n\n"), bytes.Repeat([]byte("a"), 1<<20)...),
		"6.odd name [x] *?:2,S": []byte("Subject: odd name\n\nhi\n"),
		"7.ünïcødé name:2,":     []byte("Subject: unicode name\n\nhi\n"),
		"8.empty:2,S":           {},
	}
	for n, b := range good {
		writeMsg(t, src, "cur", n, b)
	}
	// A 100 MB message, written in pieces: the test process itself must
	// stay small, or the child's peak RSS (which counts the fork) lies.
	bigSum := writeBig(t, filepath.Join(src, "cur", "5.big:2,S"), 100<<20)
	// Entries that cannot be read as messages.
	os.Mkdir(filepath.Join(src, "cur", "9.a-directory:2,S"), 0o755)
	os.Symlink(filepath.Join(src, "nowhere"), filepath.Join(src, "cur", "10.dangling:2,S"))
	if err := syscall.Mkfifo(filepath.Join(src, "new", "11.fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	bad := 3
	if os.Geteuid() != 0 { // root reads a mode-000 file anyway
		writeMsg(t, src, "cur", "12.unreadable:2,S", []byte("Subject: secret\n\n"))
		os.Chmod(filepath.Join(src, "cur", "12.unreadable:2,S"), 0)
		bad++
	}
	before := snapshot(t, src)

	r := runMailhaul(t, nil, "copy", "--json", "--state-dir", state, "--temp-dir", t.TempDir(), "maildir:"+src, "maildir:"+dst)
	if r.code != exitSkipped {
		t.Fatalf("exit %d, want %d (finished, some skipped)\n%s", r.code, exitSkipped, r.stderr)
	}
	// The 100 MB message is streamed through a spool file, never held.
	if r.maxRSS > 90<<20 {
		t.Errorf("peak RSS %d MiB while copying a 100 MB message: bodies must not be held in memory", r.maxRSS>>20)
	}
	var rep struct {
		Copied  int `json:"copied"`
		Skipped []struct {
			Folder, ID, Reason string
		} `json:"skipped"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Copied != len(good)+1 || len(rep.Skipped) != bad {
		t.Errorf("copied %d skipped %d, want %d and %d: %+v", rep.Copied, len(rep.Skipped), len(good)+1, bad, rep.Skipped)
	}
	for _, s := range rep.Skipped {
		if !strings.Contains(s.Reason, src) {
			t.Errorf("skip reason does not name the file: %q", s.Reason)
		}
	}
	for _, want := range []string{"9.a-directory", "10.dangling", "11.fifo", "skipped messages"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("summary does not mention %q:\n%s", want, r.stderr)
		}
	}
	got := map[string]bool{}
	for _, m := range readTree(t, dst)["INBOX"] {
		got[string(m.body)] = true
		sum := sha256.Sum256(m.body)
		got[hex.EncodeToString(sum[:])] = true
	}
	if !got[bigSum] {
		t.Errorf("100 MB message not copied byte for byte")
	}
	for n, b := range good {
		if !got[string(b)] {
			t.Errorf("%s not copied byte for byte", n)
		}
	}
	if after := snapshot(t, src); after != before {
		t.Errorf("source changed:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

// mountTmpfs mounts a small tmpfs (root only). Without root the test is
// skipped, except in CI where it runs as root and must not skip.
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := t.TempDir()
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput()
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("mount tmpfs: %v %s", err, out)
		}
		t.Skipf("cannot mount tmpfs (needs root): %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", dir).Run() })
	return dir
}

func TestFullDiskThenResume(t *testing.T) {
	src, state := t.TempDir(), t.TempDir()
	for _, s := range []string{"cur", "new", "tmp"} {
		os.MkdirAll(filepath.Join(src, s), 0o755)
	}
	var want []genMsg
	for i := 0; i < 40; i++ {
		body := []byte(fmt.Sprintf("Subject: %d\nMessage-ID: <%d@full>\n\n%s", i, i, bytes.Repeat([]byte("y"), 100<<10)))
		writeMsg(t, src, "cur", fmt.Sprintf("%d.full:2,S", i), body)
		want = append(want, genMsg{folder: "INBOX", base: fmt.Sprint(i), body: body})
	}
	dst := mountTmpfs(t, "1m")
	args := []string{"copy", "--state-dir", state, "maildir:" + src, "maildir:" + dst}
	r := runMailhaul(t, nil, args...)
	if r.code != exitFatal || !strings.Contains(r.stderr, "no space left on device") || !strings.Contains(r.stderr, dst) {
		t.Fatalf("full disk: exit %d, want 1 with a message naming the file\n%s", r.code, r.stderr)
	}
	// Make room and resume.
	if out, err := exec.Command("mount", "-o", "remount,size=16m", dst).CombinedOutput(); err != nil {
		t.Fatalf("remount: %v %s", err, out)
	}
	r = runMailhaul(t, nil, args...)
	if r.code != 0 {
		t.Fatalf("resume: exit %d\n%s", r.code, r.stderr)
	}
	assertExactlyOnce(t, want, dst)
}

func TestReadOnlyDestination(t *testing.T) {
	src, state := t.TempDir(), t.TempDir()
	genTree(t, src, 3)
	dst := mountTmpfs(t, "4m")
	if out, err := exec.Command("mount", "-o", "remount,ro", dst).CombinedOutput(); err != nil {
		t.Fatalf("remount ro: %v %s", err, out)
	}
	r := runMailhaul(t, nil, "copy", "--state-dir", state, "maildir:"+src, "maildir:"+dst)
	if r.code != exitFatal || !strings.Contains(r.stderr, "read-only file system") || !strings.Contains(r.stderr, dst) {
		t.Fatalf("read-only destination: exit %d, want 1 naming the folder\n%s", r.code, r.stderr)
	}
}

func TestUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"copy", "nowhere", "maildir:/tmp/x"}, "want SCHEME:"},
		{[]string{"copy", "ftp:/x", "maildir:/tmp/x"}, `scheme "ftp" cannot be read from`},
		{[]string{"copy", "--map", "A", "maildir:/a", "maildir:/b"}, "invalid --map"},
		{[]string{"copy", "--since", "yesterday", "maildir:/a", "maildir:/b"}, "invalid --since"},
		{[]string{"copy", "--include", "[", "maildir:/a", "maildir:/b"}, "invalid folder pattern"},
		{[]string{"copy", "--to-folder", "", "mbox:/a", "maildir:/b"}, `invalid argument "" for "--to-folder"`},
		{[]string{"check", "--to-folder", " / ", "mbox:/a", "maildir:/b"}, `for "--to-folder" flag: want a folder name`},
		{[]string{"copy", "--map", "Inbox=", "maildir:/a", "maildir:/b"}, "invalid --map"},
		{[]string{"copy", "--to-folder", "X", "maildir:/a", "maildir:/b"}, "--to-folder is for a POP3 source or a single mbox file"},
		{[]string{"check", "--to-folder", "X", "imaps://u@h.example.org", "maildir:/b"}, "--to-folder is for a POP3 source or a single mbox file"},
		{[]string{"copy", "--to-folder", "X", "mbox:../../testdata/thunderbird/Mail/Local Folders", "maildir:/b"}, "is a directory of folders"},
		// Login flags for a side that logs in nowhere (a swapped pair?).
		{[]string{"copy", "--dst-password-file", "/x", "imaps://u@h.example.org", "maildir:/b"}, "--dst-password-file is for a server, and maildir:/b is a local maildir"},
		{[]string{"copy", "--src-oauth-token-cmd", "true", "mbox:/a", "imaps://u@h.example.org"}, "--src-oauth-token-cmd is for a server"},
		{[]string{"check", "--src-auth", "plain", "maildir:/a", "maildir:/b"}, "--src-auth is for a server"},
		{[]string{"ls", "--src-password-file", "/x", "maildir:/a"}, "--src-password-file is for a server"},
	} {
		r := runMailhaul(t, nil, tc.args...)
		if r.code != exitUsage || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want exit 2 and %q", tc.args, r.code, r.stderr, tc.want)
		}
	}
	r := runMailhaul(t, nil, "copy", "--state-dir", t.TempDir(), "maildir:/does/not/exist", "maildir:"+t.TempDir())
	if r.code != exitFatal || !strings.Contains(r.stderr, "/does/not/exist") {
		t.Errorf("missing source: exit %d, stderr %q", r.code, r.stderr)
	}
	// A selection of no folder is a usage error, found once the folders
	// are known: nothing is copied and no summary printed.
	tb := "mbox:../../testdata/thunderbird/Mail/Local Folders"
	dst := t.TempDir()
	for _, sub := range []string{"cur", "new", "tmp"} {
		os.MkdirAll(filepath.Join(dst, sub), 0o700)
	}
	for _, cmd := range []string{"copy", "check"} {
		r = runMailhaul(t, nil, cmd, "--state-dir", t.TempDir(), "--include", "Nope", tb, "maildir:"+dst)
		if r.code != exitUsage || !strings.Contains(r.stderr, `--include "Nope" selects none of the source's`) || strings.Contains(r.stderr+r.stdout, "copied 0") || strings.Contains(r.stdout, "TOTAL") {
			t.Errorf("%s --include Nope: exit %d, want 2 and the error alone\nstdout %s\nstderr %s", cmd, r.code, r.stdout, r.stderr)
		}
	}
}
