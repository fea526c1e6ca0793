package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mailhaul/mailhaul/internal/maildir"
)

// End-to-end tests of the mailhaul binary on local stores.

var (
	buildOnce sync.Once
	buildPath string
	buildErr  error
)

// buildMailhaul builds the binary once per test process and returns its path.
func buildMailhaul(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "mailhaul-bin-")
		if err != nil {
			buildErr = err
			return
		}
		buildPath = filepath.Join(dir, "mailhaul")
		cmd := exec.Command("go", "build", "-o", buildPath, ".")
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return buildPath
}

type result struct {
	code           int
	stdout, stderr string
	maxRSS         int64 // peak resident set of the process, bytes
}

// runMailhaul runs the binary with args and extra environment.
func runMailhaul(t *testing.T, env []string, args ...string) result {
	t.Helper()
	cmd := exec.Command(buildMailhaul(t), args...)
	cmd.Env = append(os.Environ(), env...)
	var so, se bytes.Buffer
	cmd.Stdout, cmd.Stderr = &so, &se
	err := cmd.Run()
	var rss int64
	if cmd.ProcessState != nil {
		if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
			rss = ru.Maxrss * 1024
		}
	}
	code := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("run mailhaul: %v", err)
		}
		code = ee.ExitCode()
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			code = -int(ws.Signal())
		}
	}
	return result{code, so.String(), se.String(), rss}
}

// genMsg is one generated message.
type genMsg struct {
	folder string // "/" name
	sub    string // "cur" or "new"
	base   string
	info   string // letters after :2,
	body   []byte
	date   time.Time
}

// genTree writes a Maildir++ tree with nested and non-ASCII folders, every
// standard flag, keywords and n messages per folder. It returns what it
// wrote.
func genTree(t *testing.T, root string, n int) []genMsg {
	t.Helper()
	folders := []string{"INBOX", "Sent", "Archive", "Archive/2019", "Archive/2019/Q1", "Entwürfe", "Projekte/Büro", "日本語"}
	kw := map[string]string{"INBOX": "0 $Label1\n1 Important\n2 $Forwarded-Invoice\n", "Archive/2019": "0 Old\n"}
	letters := []string{"", "S", "RS", "FS", "DS", "PS", "FRS", "Sa", "Sab", "Sc", "RSTX"}
	rng := rand.New(rand.NewSource(1))
	var out []genMsg
	for fi, f := range folders {
		dir := maildir.FolderDir(root, maildir.PlusPlus, f)
		for _, s := range []string{"cur", "new", "tmp"} {
			if err := os.MkdirAll(filepath.Join(dir, s), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		if k, ok := kw[f]; ok {
			os.WriteFile(filepath.Join(dir, maildir.KeywordsFile), []byte(k), 0o644)
		}
		for i := 0; i < n; i++ {
			m := genMsg{folder: f, sub: "cur", date: time.Unix(1262304000+int64(fi*100000+i*3600), 0)}
			m.base = fmt.Sprintf("%d.M%dP%d.testhost", m.date.Unix(), i, fi)
			m.info = letters[(i+fi)%len(letters)]
			if f != "INBOX" && f != "Archive/2019" {
				m.info = strings.Map(func(r rune) rune {
					if r >= 'a' && r <= 'z' {
						return -1
					}
					return r
				}, m.info)
			}
			if m.info == "RSTX" {
				m.info = "RST" // X is unknown: dropped silently by readers
			}
			if i%7 == 3 {
				m.sub, m.info = "new", ""
			}
			body := fmt.Sprintf("From: a%d@example.org\nTo: b@example.net\nSubject: message %d in %s\nMessage-ID: <%d.%d@gen.example>\nDate: %s\n\n",
				i, i, f, fi, i, m.date.Format(time.RFC1123Z))
			for l := 0; l < 1+rng.Intn(40); l++ {
				body += strings.Repeat("x", rng.Intn(100)) + "\n"
			}
			if i%5 == 0 {
				body = strings.ReplaceAll(body, "\n", "\r\n") // CRLF messages are kept as they are
			}
			m.body = []byte(body)
			name := m.base
			if m.sub == "cur" {
				name += ":2," + m.info
			}
			p := filepath.Join(dir, m.sub, name)
			if err := os.WriteFile(p, m.body, 0o644); err != nil {
				t.Fatal(err)
			}
			os.Chtimes(p, m.date, m.date)
			out = append(out, m)
		}
	}
	return out
}

// stored is a message found in a Maildir tree.
type stored struct {
	body  []byte
	flags []string
	mtime time.Time
	path  string
}

// readTree returns every message of a Maildir++ tree by folder name.
func readTree(t *testing.T, root string) map[string][]stored {
	t.Helper()
	folders, _, err := maildir.Folders(root, maildir.PlusPlus)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]stored{}
	for _, f := range folders {
		kw, err := maildir.ReadKeywords(f.Dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, sub := range []string{"cur", "new"} {
			ents, _ := os.ReadDir(filepath.Join(f.Dir, sub))
			for _, e := range ents {
				if strings.HasPrefix(e.Name(), ".") {
					continue
				}
				p := filepath.Join(f.Dir, sub, e.Name())
				b, err := os.ReadFile(p)
				if err != nil {
					t.Fatal(err)
				}
				fi, _ := os.Stat(p)
				_, info := maildir.SplitName(e.Name())
				fl := maildir.FlagsFromInfo(info, kw)
				sort.Strings(fl)
				out[f.Name] = append(out[f.Name], stored{body: b, flags: fl, mtime: fi.ModTime(), path: p})
			}
		}
	}
	return out
}

// maildirMessages returns the bodies of every message of a Maildir++ tree
// by folder name.
func maildirMessages(t *testing.T, root string) map[string][][]byte {
	out := map[string][][]byte{}
	for f, ms := range readTree(t, root) {
		for _, m := range ms {
			out[f] = append(out[f], m.body)
		}
	}
	return out
}

// assertExactlyOnce checks that dst holds every message of want exactly
// once (by content) in the right folder, and nothing else.
func assertExactlyOnce(t *testing.T, want []genMsg, dstRoot string) {
	t.Helper()
	got := readTree(t, dstRoot)
	count := map[string]int{}
	for f, ms := range got {
		for _, m := range ms {
			count[f+"\x00"+string(m.body)]++
		}
	}
	total := 0
	for _, ms := range got {
		total += len(ms)
	}
	for _, m := range want {
		k := m.folder + "\x00" + string(m.body)
		if count[k] != 1 {
			t.Errorf("folder %q message %s: %d copies in destination, want 1", m.folder, m.base, count[k])
		}
	}
	if total != len(want) {
		t.Errorf("destination holds %d messages, want %d", total, len(want))
	}
}

func flagsOf(info string, folder string) []string {
	kw := map[string][]string{"INBOX": {"$Label1", "Important", "$Forwarded-Invoice"}, "Archive/2019": {"Old"}}
	var out []string
	for _, c := range info {
		switch c {
		case 'S':
			out = append(out, `\Seen`)
		case 'R':
			out = append(out, `\Answered`)
		case 'F':
			out = append(out, `\Flagged`)
		case 'D':
			out = append(out, `\Draft`)
		case 'T':
			out = append(out, `\Deleted`)
		case 'P':
			out = append(out, "$Forwarded")
		default:
			if c >= 'a' && c <= 'z' && int(c-'a') < len(kw[folder]) {
				out = append(out, kw[folder][c-'a'])
			}
		}
	}
	sort.Strings(out)
	return out
}

func TestCopyMaildirRoundTrip(t *testing.T) {
	src, dst, state := t.TempDir(), t.TempDir(), t.TempDir()
	want := genTree(t, src, 25)
	r := runMailhaul(t, nil, "copy", "--include-deleted", "--json", "--state-dir", state, "maildir:"+src, "maildir:"+dst)
	if r.code != 0 {
		t.Fatalf("exit %d\n%s", r.code, r.stderr)
	}
	var rep struct {
		Copied  int   `json:"copied"`
		Bytes   int64 `json:"bytes"`
		Skipped []any `json:"skipped"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("--json output: %v\n%s", err, r.stdout)
	}
	if rep.Copied != len(want) || len(rep.Skipped) != 0 {
		t.Fatalf("report: copied %d skipped %d, want %d and 0", rep.Copied, len(rep.Skipped), len(want))
	}
	assertExactlyOnce(t, want, dst)

	// Bytes, flags, keywords, dates, folder names.
	got := readTree(t, dst)
	byBody := map[string]stored{}
	for f, ms := range got {
		for _, m := range ms {
			byBody[f+"\x00"+string(m.body)] = m
		}
	}
	for _, m := range want {
		s, ok := byBody[m.folder+"\x00"+string(m.body)]
		if !ok {
			t.Errorf("%s/%s missing or changed", m.folder, m.base)
			continue
		}
		if wf := flagsOf(m.info, m.folder); strings.Join(wf, " ") != strings.Join(s.flags, " ") {
			t.Errorf("%s/%s: flags %v, want %v", m.folder, m.base, s.flags, wf)
		}
		if !s.mtime.Equal(m.date) {
			t.Errorf("%s/%s: date %v, want %v", m.folder, m.base, s.mtime, m.date)
		}
	}
	// Dovecot's on-disk names: modified UTF-7 in Maildir++.
	for _, d := range []string{".Entw&APw-rfe", ".Projekte.B&APw-ro", ".&ZeVnLIqe-", ".Archive.2019.Q1"} {
		if !maildir.IsMaildir(filepath.Join(dst, d)) {
			t.Errorf("destination folder %s missing", d)
		}
	}

	// A second run copies nothing and says so.
	r = runMailhaul(t, nil, "copy", "--include-deleted", "--json", "--state-dir", state, "maildir:"+src, "maildir:"+dst)
	if r.code != 0 {
		t.Fatalf("second run: exit %d\n%s", r.code, r.stderr)
	}
	json.Unmarshal([]byte(r.stdout), &rep)
	if rep.Copied != 0 {
		t.Errorf("second run copied %d", rep.Copied)
	}
	assertExactlyOnce(t, want, dst)
}

// TestCopyDeletedPolicy: messages flagged \Deleted (Maildir "T") are
// copied with the flag by default, as mbsync, dsync and imapsync do;
// --skip-deleted leaves them out (counted as filtered); --skip-deleted with
// --include-deleted is a usage error.
func TestCopyDeletedPolicy(t *testing.T) {
	src := t.TempDir()
	want := genTree(t, src, 12)
	deleted := 0
	for _, m := range want {
		if strings.Contains(m.info, "T") {
			deleted++
		}
	}
	if deleted == 0 {
		t.Fatal("generator made no \\Deleted message")
	}
	dst := t.TempDir()
	if r := runMailhaul(t, nil, "copy", "--state-dir", t.TempDir(), "maildir:"+src, "maildir:"+dst); r.code != 0 {
		t.Fatalf("exit %d\n%s", r.code, r.stderr)
	}
	assertExactlyOnce(t, want, dst)
	flagged := 0
	for _, ms := range readTree(t, dst) {
		for _, m := range ms {
			if strings.Contains(strings.Join(m.flags, " "), `\Deleted`) {
				flagged++
			}
		}
	}
	if flagged != deleted {
		t.Errorf("%d copies flagged \\Deleted, want %d", flagged, deleted)
	}

	dst = t.TempDir()
	r := runMailhaul(t, nil, "copy", "--skip-deleted", "--json", "--state-dir", t.TempDir(), "maildir:"+src, "maildir:"+dst)
	if r.code != 0 {
		t.Fatalf("--skip-deleted: exit %d\n%s", r.code, r.stderr)
	}
	var rep struct{ Copied, Filtered int }
	json.Unmarshal([]byte(r.stdout), &rep)
	n := 0
	for _, ms := range readTree(t, dst) {
		n += len(ms)
	}
	if n != len(want)-deleted || rep.Filtered != deleted {
		t.Errorf("--skip-deleted: copied %d, filtered %d; want %d and %d", n, rep.Filtered, len(want)-deleted, deleted)
	}
	r = runMailhaul(t, nil, "copy", "--skip-deleted", "--include-deleted", "--state-dir", t.TempDir(), "maildir:"+src, "maildir:"+t.TempDir())
	if r.code != exitUsage || !strings.Contains(r.stderr, "contradict") {
		t.Errorf("--skip-deleted --include-deleted: exit %d\n%s", r.code, r.stderr)
	}
}

func TestDryRunWritesNothing(t *testing.T) {
	src, state := t.TempDir(), t.TempDir()
	dst := filepath.Join(t.TempDir(), "out")
	want := genTree(t, src, 5)
	r := runMailhaul(t, nil, "copy", "--dry-run", "--include-deleted", "--json", "--state-dir", state, "maildir:"+src, "maildir:"+dst)
	if r.code != 0 {
		t.Fatalf("exit %d\n%s", r.code, r.stderr)
	}
	if _, err := os.Stat(dst); !os.IsNotExist(err) {
		t.Errorf("dry run created the destination: %v", err)
	}
	if ents, _ := os.ReadDir(state); len(ents) != 0 {
		t.Errorf("dry run wrote state: %v", ents)
	}
	var rep struct {
		DryRun  bool `json:"dry_run"`
		Copied  int  `json:"copied"`
		Folders []struct {
			Name     string `json:"name"`
			Messages int    `json:"messages"`
			Bytes    int64  `json:"bytes"`
		} `json:"folders"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatal(err)
	}
	if !rep.DryRun || rep.Copied != len(want) || len(rep.Folders) != 8 {
		t.Errorf("plan: %+v, want %d messages in 8 folders", rep, len(want))
	}
	if !strings.Contains(r.stderr, "would copy") || !strings.Contains(r.stderr, "Projekte/Büro") {
		t.Errorf("plan not printed:\n%s", r.stderr)
	}
}

// TestCrashResume kills the copy with SIGKILL at many points — right after
// each kind of crash-relevant step (intent commit, append, sync, done
// commit) at several counts, and at random wall-clock times — and runs it
// again each time; every completed destination holds every source message
// exactly once.
func TestCrashResume(t *testing.T) {
	src := t.TempDir()
	want := genTree(t, src, 40) // 320 messages
	newRound := func() []string {
		return []string{"copy", "--include-deleted", "--transfers", "2", "--state-dir", t.TempDir(), "maildir:" + src, "maildir:" + t.TempDir()}
	}
	dstOf := func(args []string) string { return strings.TrimPrefix(args[len(args)-1], "maildir:") }
	var points []string
	for _, n := range []int{1, 2, 1, 3, 2, 5, 1, 8} {
		for _, step := range []string{"intent", "append", "sync", "done"} {
			if step == "append" {
				n *= 7
			}
			points = append(points, fmt.Sprintf("%s:%d", step, n))
		}
	}
	args := newRound()
	kills, completed := 0, 0
	for i := 0; kills < 24 && i < 200; i++ {
		p := points[i%len(points)]
		r := runMailhaul(t, []string{"MAILHAUL_TEST_KILL_AT=" + p}, args...)
		switch {
		case r.code == -int(syscall.SIGKILL):
			kills++
		case r.code == 0:
			// The point lay beyond the end of the remaining work.
			assertExactlyOnce(t, want, dstOf(args))
			completed++
			args = newRound()
		default:
			t.Fatalf("kill at %s: exit %d\n%s", p, r.code, r.stderr)
		}
	}
	if kills < 24 {
		t.Fatalf("only %d kills", kills)
	}
	r := runMailhaul(t, nil, args...)
	if r.code != 0 {
		t.Fatalf("final run: exit %d\n%s", r.code, r.stderr)
	}
	assertExactlyOnce(t, want, dstOf(args))
	t.Logf("%d kills at exact steps, %d rounds completed", kills, completed+1)

	// Random wall-clock kills.
	args = newRound()
	rng := rand.New(rand.NewSource(time.Now().UnixNano()))
	for i := 0; i < 8; i++ {
		cmd := exec.Command(buildMailhaul(t), args...)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(5+rng.Intn(80)) * time.Millisecond)
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
	}
	if r := runMailhaul(t, nil, args...); r.code != 0 {
		t.Fatalf("final run: exit %d\n%s", r.code, r.stderr)
	}
	assertExactlyOnce(t, want, dstOf(args))
	for _, sub := range []string{"tmp", ".Sent/tmp"} {
		if ents, _ := filepath.Glob(filepath.Join(dstOf(args), sub, "*")); len(ents) != 0 {
			t.Errorf("leftovers in %s: %v", sub, ents)
		}
	}
}

// TestDedupeAfterLostState: the state dir is gone (or a second source
// overlaps the first); --dedupe recognises what the destination holds.
func TestDedupeAfterLostState(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	want := genTree(t, src, 10)
	if r := runMailhaul(t, nil, "copy", "--include-deleted", "--state-dir", t.TempDir(), "maildir:"+src, "maildir:"+dst); r.code != 0 {
		t.Fatalf("exit %d\n%s", r.code, r.stderr)
	}
	// A new message arrives in the source; the state dir is lost.
	extra := []byte("Subject: late\nMessage-ID: <late@x>\n\nlate\n")
	writeMsg(t, src, "cur", "9999.late:2,S", extra)
	want = append(want, genMsg{folder: "INBOX", base: "9999.late", body: extra})
	r := runMailhaul(t, nil, "copy", "--dedupe", "--include-deleted", "--json", "--state-dir", t.TempDir(), "maildir:"+src, "maildir:"+dst)
	if r.code != 0 {
		t.Fatalf("exit %d\n%s", r.code, r.stderr)
	}
	var rep struct{ Copied, Found int }
	json.Unmarshal([]byte(r.stdout), &rep)
	if rep.Copied != 1 || rep.Found != len(want)-1 {
		t.Errorf("copied %d duplicates %d, want 1 and %d", rep.Copied, rep.Found, len(want)-1)
	}
	assertExactlyOnce(t, want, dst)
}

// TestInterruptExit130 stops a run with SIGINT in the middle: it exits 130,
// leaves nothing pending, and the next run finishes the job.
func TestInterruptExit130(t *testing.T) {
	src, dst, state := t.TempDir(), t.TempDir(), t.TempDir()
	want := genTree(t, src, 20)
	args := []string{"copy", "--include-deleted", "--transfers", "1", "--state-dir", state, "maildir:" + src, "maildir:" + dst}
	r := runMailhaul(t, []string{"MAILHAUL_TEST_KILL_AT=append:30:INT"}, args...)
	if r.code != exitInterrupted || !strings.Contains(r.stderr, "run the same command again to resume") {
		t.Fatalf("exit %d, want 130\n%s", r.code, r.stderr)
	}
	if n := len(readTree(t, dst)); n == 0 {
		t.Fatal("nothing copied before the interrupt")
	}
	r = runMailhaul(t, nil, append([]string{"--json"}, args...)...)
	if r.code != 0 {
		t.Fatalf("resume: exit %d\n%s", r.code, r.stderr)
	}
	var rep struct{ Copied, Recovered, Already int }
	json.Unmarshal([]byte(r.stdout), &rep)
	if rep.Recovered != 0 || rep.Already < 30 || rep.Copied+rep.Already != len(want) {
		t.Errorf("resume after a clean stop: %+v (nothing should need recovery)", rep)
	}
	assertExactlyOnce(t, want, dst)
}
