package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// runBounded runs the binary with a deadline, killing it when the deadline
// passes, and returns its result: a run that does not end or grows without
// bound fails the test instead of the machine.
func runBounded(t *testing.T, limit time.Duration, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, buildMailhaul(t), args...)
	var so, se bytes.Buffer
	cmd.Stdout, cmd.Stderr = &so, &se
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("%v: still running after %v\n%s", args, limit, se.String())
	}
	r := result{stdout: so.String(), stderr: se.String()}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		r.maxRSS = ru.Maxrss * 1024
	}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestMaildirSymlinkLoopsCLI: a nested Maildir source with two symbolic
// links to its parents (which made a run, even with --dry-run, grow to
// 22 GB) is walked once: the plan and the copy list each folder once and
// each message once, quickly and in little memory; the loops are
// reported.
func TestMaildirSymlinkLoopsCLI(t *testing.T) {
	src := t.TempDir()
	n := 0
	for _, f := range []string{"", "Work", "Work/Clients", "Private"} {
		dir := filepath.Join(src, f)
		for _, sub := range []string{"cur", "new", "tmp"} {
			os.MkdirAll(filepath.Join(dir, sub), 0o700)
		}
		for i := 0; i < 3; i++ {
			n++
			writeMsg(t, dir, "cur", fmt.Sprintf("%d.M%d.loop:2,S", n, n), []byte(fmt.Sprintf("Subject: %d\nMessage-ID: <%d@loop>\n\nx\n", n, n)))
		}
	}
	os.Symlink("..", filepath.Join(src, "Work", "up"))
	os.Symlink("../..", filepath.Join(src, "Work", "Clients", "top"))

	type report struct {
		Copied  int `json:"copied"`
		Folders []struct {
			Name     string `json:"name"`
			Messages int    `json:"messages"`
		} `json:"folders"`
	}
	for _, dry := range []bool{true, false} {
		args := []string{"copy", "--json", "--state-dir", t.TempDir(), "--maildir-layout", "fs", "maildir:" + src, "maildir:" + filepath.Join(t.TempDir(), "dst")}
		if dry {
			args = append([]string{"copy", "--dry-run"}, args[1:]...)
		}
		start := time.Now()
		r := runBounded(t, time.Minute, args...)
		if r.code != 0 {
			t.Fatalf("dry-run %v: exit %d\n%s", dry, r.code, r.stderr)
		}
		var rep report
		if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
			t.Fatal(err)
		}
		seen := map[string]bool{}
		for _, f := range rep.Folders {
			if seen[f.Name] {
				t.Errorf("dry-run %v: folder %q twice", dry, f.Name)
			}
			seen[f.Name] = true
		}
		if rep.Copied != n || len(rep.Folders) != 4 {
			t.Errorf("dry-run %v: %d messages in %d folders, want %d in 4: %+v", dry, rep.Copied, len(rep.Folders), n, rep.Folders)
		}
		// Loose bounds: the loop made the walk run for minutes and grow to
		// 22 GB. (The child's peak RSS includes what it shared with this
		// test process when forked, which other tests may have grown.)
		if el := time.Since(start); el > 20*time.Second || r.maxRSS > 1<<30 {
			t.Errorf("dry-run %v: %v, peak RSS %d MiB", dry, el, r.maxRSS>>20)
		}
		if !bytes.Contains([]byte(r.stderr), []byte("the same directory as folder")) {
			t.Errorf("loops not reported:\n%s", r.stderr)
		}
	}
}

// TestFolderCannotBeCreatedCLI: one folder must not stop the run. A
// nested mbox folder whose Maildir++ name would exceed 255 bytes (fatal
// "file name too long" before) gets a shortened name and is copied; a
// folder whose directory cannot be made (a file in the way) is skipped
// with every message listed, the rest is copied, and the exit code is 3.
func TestFolderCannotBeCreatedCLI(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	long := strings.Repeat("A", 200)
	msg := func(i int) string {
		return fmt.Sprintf("From x@y Sat Jan  1 00:00:%02d 2000\nSubject: %d\nMessage-ID: <%d@long>\n\nbody\n\n", i, i, i)
	}
	os.WriteFile(filepath.Join(src, "Inbox"), []byte(msg(1)), 0o600)
	os.WriteFile(filepath.Join(src, "Sent"), []byte(msg(2)+msg(3)), 0o600)
	os.WriteFile(filepath.Join(src, long), []byte(msg(4)), 0o600)
	os.Mkdir(filepath.Join(src, long+".sbd"), 0o700)
	os.WriteFile(filepath.Join(src, long+".sbd", strings.Repeat("B", 200)), []byte(msg(5)), 0o600)
	os.WriteFile(filepath.Join(dst, ".Sent"), []byte("in the way"), 0o600)

	r := runBounded(t, time.Minute, "copy", "--json", "--state-dir", t.TempDir(), "mbox:"+src, "maildir:"+dst)
	if r.code != exitSkipped {
		t.Fatalf("exit %d, want 3\n%s", r.code, r.stderr)
	}
	var rep struct {
		Copied  int `json:"copied"`
		Skipped []struct{ Folder, ID, Reason string }
	}
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Copied != 3 || len(rep.Skipped) != 2 {
		t.Fatalf("copied %d, skipped %+v", rep.Copied, rep.Skipped)
	}
	for _, s := range rep.Skipped {
		if s.Folder != "Sent" || s.ID == "" || !strings.Contains(s.Reason, filepath.Join(dst, ".Sent")) {
			t.Errorf("skipped %+v", s)
		}
	}
	got := maildirMessages(t, dst)
	n := 0
	for f, ms := range got {
		if len(f) > 255 {
			t.Errorf("folder name %d bytes", len(f))
		}
		n += len(ms)
	}
	if n != 3 || len(got["INBOX"]) != 1 {
		t.Errorf("destination: %d messages in %d folders", n, len(got))
	}
}
