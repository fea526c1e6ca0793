package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
)

// End-to-end tests of `mailhaul copy mbox:...`. They use buildMailhaul and
// maildirMessages from e2e_test.go.

// mboxCLI runs the binary and returns its exit code (-9 when killed by
// SIGKILL) and stderr.
func mboxCLI(t *testing.T, env []string, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(buildMailhaul(t), args...)
	cmd.Env = append(os.Environ(), env...)
	var se bytes.Buffer
	cmd.Stderr = &se
	err := cmd.Run()
	if err == nil {
		return 0, se.String()
	}
	ee, ok := err.(*exec.ExitError)
	if !ok {
		t.Fatalf("run mailhaul: %v", err)
	}
	if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return -int(ws.Signal()), se.String()
	}
	return ee.ExitCode(), se.String()
}

// mboxTree writes a Thunderbird-style tree of n messages per folder and
// returns the expected message bytes (after mboxo unquoting) by folder.
// Every 10th message is a byte-identical copy of the one before.
func mboxTree(t *testing.T, root string, n int) map[string][][]byte {
	t.Helper()
	want := map[string][][]byte{}
	files := map[string]string{"INBOX": "Inbox", "Sent": "Sent", "Work/Projekte": "Work.sbd/Projekte", "Work": "Work"}
	for folder, file := range files {
		var f bytes.Buffer
		var prev string
		for i := 0; i < n; i++ {
			msg := fmt.Sprintf("X-Mozilla-Status: %04x\nMessage-ID: <%s-%d@e2e.example>\nSubject: message %d of %s\n\nBody of %d.\n%sFrom the middle of the body\nlast line\n",
				i%2, strings.ReplaceAll(folder, "/", "."), i, i, folder, i, strings.Repeat("x", i*37%200)+"\n>")
			if i%10 == 9 {
				msg = prev
			}
			prev = msg
			fmt.Fprintf(&f, "From - Mon Jan %2d 10:%02d:00 2022\n", i%28+1, i%60)
			// mboxo quoting of the "From " line written into the body.
			f.WriteString(strings.ReplaceAll(msg, "\nFrom the", "\n>From the"))
			f.WriteString("\n")
			want[folder] = append(want[folder], []byte(strings.ReplaceAll(msg, "\n>From the", "\nFrom the")))
		}
		p := filepath.Join(root, file)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, f.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		os.WriteFile(p+".msf", []byte("// mork\n"), 0o644)
	}
	return want
}

// sameMessages asserts that dst holds exactly want: every message once per
// copy in the source, nothing else.
func sameMessages(t *testing.T, want map[string][][]byte, dst string) {
	t.Helper()
	got := maildirMessages(t, dst)
	for folder, w := range want {
		a := sortedStrings(w)
		b := sortedStrings(got[folder])
		if len(a) != len(b) {
			t.Fatalf("%s: %d messages in destination, want %d", folder, len(b), len(a))
		}
		for i := range a {
			if a[i] != b[i] {
				t.Fatalf("%s: message differs:\n got %q\nwant %q", folder, b[i], a[i])
			}
		}
	}
	for folder, g := range got {
		if _, ok := want[folder]; !ok && len(g) > 0 {
			t.Fatalf("unexpected folder %q with %d messages", folder, len(g))
		}
	}
}

func sortedStrings(bs [][]byte) []string {
	var s []string
	for _, b := range bs {
		s = append(s, string(b))
	}
	sort.Strings(s)
	return s
}

func TestMboxCLIThunderbird(t *testing.T) {
	src := filepath.Join("..", "..", "testdata", "thunderbird", "Mail", "Local Folders")
	dst, state := t.TempDir(), t.TempDir()
	args := []string{"copy", "--state-dir", state, "mbox:" + src, "maildir:" + dst}
	// notes.txt is no mbox file: a folder reported as skipped (exit 3).
	code, stderr := mboxCLI(t, nil, args...)
	if code != exitSkipped {
		t.Fatalf("exit %d, want 3\n%s", code, stderr)
	}
	if !strings.Contains(stderr, "copied 14 messages") || !strings.Contains(stderr, "1 skipped") || !strings.Contains(stderr, "notes.txt (whole folder): folder \"notes.txt\" skipped: mbox source: ") {
		t.Errorf("summary:\n%s", stderr)
	}
	got := maildirMessages(t, dst)
	for folder, n := range map[string]int{"INBOX": 5, "Sent": 2, "Drafts": 1, "Trash": 1, "Archives/2019": 2, "Geschäftlich": 1, "Geschäftlich/Kunden": 2} {
		if len(got[folder]) != n {
			t.Errorf("%s: %d messages, want %d", folder, len(got[folder]), n)
		}
	}
	code, stderr = mboxCLI(t, nil, args...)
	if code != exitSkipped || !strings.Contains(stderr, "copied 0 messages") || !strings.Contains(stderr, "14 already there") {
		t.Errorf("second run: exit %d\n%s", code, stderr)
	}
}

func TestMboxCLISingleFileFlags(t *testing.T) {
	src := filepath.Join("..", "..", "testdata", "mbox", "mboxrd.mbox")
	dst := t.TempDir()
	code, stderr := mboxCLI(t, nil, "copy", "--state-dir", t.TempDir(), "--to-folder", "INBOX", "--mbox-format", "mboxrd", "mbox:"+src, "maildir:"+dst)
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	got := maildirMessages(t, dst)
	if len(got["INBOX"]) != 2 {
		t.Fatalf("INBOX: %d messages (%v)", len(got["INBOX"]), got)
	}
	all := string(bytes.Join(got["INBOX"], nil))
	if !strings.Contains(all, "\n>From once quoted.\n") {
		t.Errorf("mboxrd unquoting: %q", all)
	}
	code, stderr = mboxCLI(t, nil, "copy", "--state-dir", t.TempDir(), "--mbox-format", "babyl", "mbox:"+src, "maildir:"+t.TempDir())
	if code == 0 || !strings.Contains(stderr, "babyl") {
		t.Errorf("bad --mbox-format accepted: exit %d\n%s", code, stderr)
	}
	// A bad file: exit 3, skipped message listed with file and offset.
	bad := filepath.Join("..", "..", "testdata", "mbox", "bad-nul-binary.mbox")
	code, stderr = mboxCLI(t, nil, "copy", "--state-dir", t.TempDir(), "mbox:"+bad, "maildir:"+t.TempDir())
	if code != 3 || !strings.Contains(stderr, "bad-nul-binary.mbox: offset 133: no header field") {
		t.Errorf("bad file: exit %d\n%s", code, stderr)
	}
}

// TestMboxCrashResume kills the copy with SIGKILL right after the N-th
// append for 22 values of N spread over the run, resumes each time, and
// checks that every message is in the destination exactly once. Then it
// chains kills on one destination and finishes with a full run.
func TestMboxCrashResume(t *testing.T) {
	if testing.Short() {
		t.Skip("many subprocess runs")
	}
	src := t.TempDir()
	want := mboxTree(t, src, 30) // 120 messages
	total := 0
	for _, w := range want {
		total += len(w)
	}
	kills := 0
	for i := 0; i < 22; i++ {
		n := 1 + i*(total-2)/21
		dst, state := t.TempDir(), t.TempDir()
		args := []string{"copy", "--transfers", "2", "--state-dir", state, "mbox:" + src, "maildir:" + dst}
		code, stderr := mboxCLI(t, []string{fmt.Sprintf("MAILHAUL_TEST_KILL_AT=append:%d", n)}, args...)
		if code != -int(syscall.SIGKILL) {
			t.Fatalf("kill at append:%d: exit %d\n%s", n, code, stderr)
		}
		kills++
		if code, stderr := mboxCLI(t, nil, args...); code != 0 {
			t.Fatalf("resume after append:%d: exit %d\n%s", n, code, stderr)
		}
		sameMessages(t, want, dst)
	}

	// Chained: each run dies after its 9th append until one finishes.
	dst, state := t.TempDir(), t.TempDir()
	args := []string{"copy", "--transfers", "2", "--state-dir", state, "mbox:" + src, "maildir:" + dst}
	for round := 0; ; round++ {
		if round > total {
			t.Fatal("chained kills never finished")
		}
		code, stderr := mboxCLI(t, []string{"MAILHAUL_TEST_KILL_AT=append:9"}, args...)
		if code == 0 {
			break
		}
		if code != -int(syscall.SIGKILL) {
			t.Fatalf("chained round %d: exit %d\n%s", round, code, stderr)
		}
		kills++
	}
	if code, stderr := mboxCLI(t, nil, args...); code != 0 || !strings.Contains(stderr, "copied 0 messages") {
		t.Fatalf("final run: exit %d\n%s", code, stderr)
	}
	sameMessages(t, want, dst)
	t.Logf("%d kills, every message exactly once", kills)
}

// TestLsLeavesOutExpunged: ls counts what copy copies — not Thunderbird's
// deleted-but-not-compacted messages, which it names apart.
func TestLsLeavesOutExpunged(t *testing.T) {
	dir := t.TempDir()
	mbox := "From a@b Sat Jan  1 00:00:00 2000\nX-Mozilla-Status: 0009\nSubject: gone\n\nx\n\n" +
		"From a@b Sat Jan  1 00:00:01 2000\nX-Mozilla-Status: 0001\nSubject: kept\n\ny\n"
	if err := os.WriteFile(filepath.Join(dir, "Inbox"), []byte(mbox), 0o600); err != nil {
		t.Fatal(err)
	}
	r := runMailhaul(t, nil, "--json", "ls", "mbox:"+dir)
	if r.code != 0 || !strings.Contains(r.stdout, `"messages": 1,`) || !strings.Contains(r.stdout, `"expunged": 1`) {
		t.Errorf("exit %d\n%s", r.code, r.stdout)
	}
}
