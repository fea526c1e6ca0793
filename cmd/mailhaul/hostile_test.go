package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/mailhaul/mailhaul/internal/maildir"
	"github.com/mailhaul/mailhaul/internal/testserver/fakeimap"
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

// Issue 13: a hostile IMAP source. The fake server lists names that try
// to leave the destination (../.., INBOX/../../etc), that hold NUL, CR LF
// and control bytes, that are a maildir's own cur/new/tmp, that collide
// once written to disk in a careless way, that are too long for a file
// name; it sends thousands of keywords per message and keywords of 1 KB,
// a LIST of many folders, and answers that stop in the middle of a
// literal. Every run of the binary against it (ls, copy --dry-run, copy
// into both Maildir layouts, the re-run) must keep to its directories, end
// without a panic with exit 0 or 3, copy each message the server can
// deliver exactly once, report the one it cannot, and stay within time
// and the README's memory bound.

// hostileRunLimit bounds every run of the binary against a hostile server
// (a hang guard, not a speed test: the benchmarks under bench/ measure
// speed), unless the test sets a larger one for a larger account.
const hostileRunLimit = 2 * time.Minute

// manyFoldersRunLimit bounds a run over an account of n folders: the work
// is linear in n (a quadratic walk of 100,000 folders would take hours),
// but its time is not steady on a shared machine — 24–31 s for 100,000
// into an IMAP destination on a quiet evening, 55–58 s alone on a slow
// one, 141 s there under the race detector beside the other packages'
// tests.
func manyFoldersRunLimit(n int) time.Duration {
	return hostileRunLimit + time.Duration(n)*2*time.Millisecond
}

// hostileSide is one destination of a hostile-source test: root is a
// t.TempDir() in which only dst and state may change.
type hostileSide struct {
	root, parent, dst, state string
	limit                    time.Duration // of each run; 0: hostileRunLimit
}

func newHostileSide(t *testing.T) hostileSide {
	t.Helper()
	root := t.TempDir()
	s := hostileSide{root: root, parent: filepath.Join(root, "parent")}
	s.dst, s.state = filepath.Join(s.parent, "dst"), filepath.Join(s.parent, "state")
	// Something for a run to clobber, next to the destination and above it.
	for _, d := range []string{filepath.Join(root, "home"), filepath.Join(root, "etc"), filepath.Join(s.parent, "b")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "keep"), []byte("keep"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

// outside lists every path under root except dst and state and what they
// hold, with type, size and (for files) mtime.
func (s hostileSide) outside(t *testing.T) string {
	t.Helper()
	return listTree(s.root, s.dst, s.state)
}

// findNamed returns the paths under root whose name contains needle,
// outside the destinations of these tests (parent/dst, where the escaped
// name belongs).
func findNamed(root, needle string) []string {
	var hits []string
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil // unreadable directories of other tests: go on
		}
		if d.IsDir() && d.Name() == "dst" && filepath.Base(filepath.Dir(p)) == "parent" {
			return filepath.SkipDir
		}
		if strings.Contains(d.Name(), needle) {
			hits = append(hits, p)
		}
		return nil
	})
	return hits
}

// hostileRun runs the binary once against a hostile source and checks
// what every run must do: write nothing outside s.dst and s.state (nor in
// the binary's working directory, nor anything called escape anywhere
// under /tmp), end without a panic in bounded time, with exit 0 or 3 (never
// 2, usage), and the code wanted. With rss it runs under GNU time and
// returns the peak RSS of the binary.
func hostileRun(t *testing.T, s hostileSide, escape string, env []string, want int, rss bool, args ...string) (result, int64, time.Duration) {
	t.Helper()
	cwd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	env = append([]string{"HOME=" + filepath.Join(s.root, "home"), "XDG_STATE_HOME="}, env...)
	beforeOut, beforeCwd := s.outside(t), snapshot(t, cwd)
	start := time.Now()
	var r result
	var peak int64
	if rss {
		r, peak = runMailhaulRSS(t, env, args...)
	} else {
		r = runMailhaul(t, env, args...)
		peak = r.maxRSS
	}
	took := time.Since(start)
	limit := s.limit
	if limit == 0 {
		limit = hostileRunLimit
	}
	if took > limit {
		t.Errorf("%s: took %v, limit %v", args[0], took, limit)
	}
	if strings.Contains(r.stderr, "panic:") || strings.Contains(r.stderr, "goroutine ") {
		t.Errorf("%v: panic\n%s", args, tail(r.stderr, 4000))
	}
	if r.code != want || (r.code != exitOK && r.code != exitSkipped) {
		t.Errorf("%v: exit %d, want %d\n%s", args, r.code, want, tail(r.stderr, 4000))
	}
	if after := s.outside(t); after != beforeOut {
		t.Errorf("%v: wrote outside %s and %s:\nbefore:\n%s\nafter:\n%s", args, s.dst, s.state, beforeOut, after)
	}
	if after := snapshot(t, cwd); after != beforeCwd {
		t.Errorf("%v: changed the working directory %s", args, cwd)
	}
	if hits := findNamed(os.TempDir(), escape); len(hits) > 0 {
		t.Errorf("%v: a folder name escaped the destination: %q", args, hits)
	}
	return r, peak, took
}

// hostileReport is what these tests read of copy --json.
type hostileReport struct {
	Copied  int `json:"copied"`
	Skipped []struct {
		Folder, ID, Reason string
	} `json:"skipped"`
}

func parseHostile(t *testing.T, r result) hostileReport {
	t.Helper()
	var rep hostileReport
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("--json output: %v\n%s", err, tail(r.stdout, 2000))
	}
	return rep
}

// maildirCount counts the messages under root: files in any cur/ or new/.
func maildirCount(t *testing.T, root string) int {
	t.Helper()
	n := 0
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			t.Errorf("walk %s: %v", p, err)
			return nil
		}
		if sub := filepath.Base(filepath.Dir(p)); d.Type().IsRegular() && (sub == "cur" || sub == "new") {
			n++
		}
		return nil
	})
	return n
}

// hostileSource is a fake IMAP server playing a hostile source, and what it
// can deliver. It holds the same mail for two accounts, so that the two
// Maildir layouts are copied at once, each from an account of its own
// (hooks that count attempts per message count them per account).
type hostileSource struct {
	srv    *fakeimap.Server
	escape string // a name no run may create anywhere under /tmp
	env    []string
	// deliverable is the number of messages the server sends whole (per
	// account); folders the number of folders holding any.
	deliverable, folders int
	// undeliverable are the "folder/uid" of messages never sent whole.
	undeliverable []string
	// want is the exit code of copy runs (ls and --dry-run: 0).
	want int
	// limit bounds each run (0: hostileRunLimit).
	limit time.Duration
	// rss: measure the peak RSS of copy runs and hold them to the
	// README's bound.
	rss bool
	// check, if set, checks more of each copy run (run 1 or 2, into dst).
	// It is called from parallel subtests.
	check func(t *testing.T, run int, r result, dst string)
}

// hostileUsers are the accounts of a hostileSource (one password).
var hostileUsers = []string{"victim", "victim2"}

func startHostile(t *testing.T, o fakeimap.Options) *hostileSource {
	t.Helper()
	srv := fakeimap.Start(t, o)
	for _, u := range hostileUsers {
		srv.AddUser(u, "hostile-pw")
	}
	return &hostileSource{
		srv:    srv,
		escape: fmt.Sprintf("mh-escape-%d-%s", os.Getpid(), strings.ReplaceAll(t.Name(), "/", "-")),
		env:    []string{"MAILHAUL_SRC_PASSWORD=hostile-pw"},
	}
}

func (h *hostileSource) url(user string) string { return "imap://" + user + "@" + h.srv.Addr() }

// add creates folder name (unless it exists) in every account and appends
// n messages to it.
func (h *hostileSource) add(t *testing.T, name string, n int, flags []imap.Flag) {
	t.Helper()
	for _, u := range hostileUsers {
		if err := h.srv.Create(u, name); err != nil && !strings.Contains(err.Error(), "already exists") {
			t.Fatalf("create %q: %v", name, err)
		}
		for i := 0; i < n; i++ {
			body := fmt.Sprintf("From: x@hostile.example\r\nSubject: %d in %q\r\nMessage-ID: <%d.%x@hostile.example>\r\n\r\nbody %d of %q\r\n",
				i, name, i, sha256.Sum256([]byte(name)), i, name)
			if _, err := h.srv.Append(u, name, []byte(body), flags, time.Unix(1500000000+int64(i), 0)); err != nil {
				t.Fatalf("append to %q: %v", name, err)
			}
		}
	}
	if n > 0 {
		h.deliverable += n
		h.folders++
	}
}

// copies runs ls and copy --dry-run, then copies into a Maildir in each
// layout (in parallel, from different accounts), twice: the second run
// must copy nothing. Every run is checked (hostileRun) and timed.
func (h *hostileSource) copies(t *testing.T) {
	t.Helper()
	common := []string{"--insecure-plaintext", "--io-timeout", "10s"}
	total := h.deliverable + len(h.undeliverable)

	s := newHostileSide(t)
	s.limit = h.limit
	r, _, took := hostileRun(t, s, h.escape, h.env, exitOK, false, append([]string{"ls", "--json"}, append(common, h.url(hostileUsers[0]))...)...)
	var ls []lsFolder
	if err := json.Unmarshal([]byte(r.stdout), &ls); err != nil {
		t.Fatalf("ls --json: %v\n%s", err, tail(r.stdout, 2000))
	}
	n := 0
	for _, f := range ls {
		n += f.Messages
	}
	if n != total {
		t.Errorf("ls: %d messages in %d folders, the server holds %d", n, len(ls), total)
	}
	t.Logf("ls: %d folders in %v", len(ls), took.Round(time.Millisecond))

	r, peak, took := hostileRun(t, s, h.escape, h.env, exitOK, h.rss, append([]string{"copy", "--dry-run", "--json", "--state-dir", s.state}, append(common, h.url(hostileUsers[0]), "maildir:"+s.dst)...)...)
	if rep := parseHostile(t, r); rep.Copied != total {
		t.Errorf("copy --dry-run plans %d messages, the server holds %d", rep.Copied, total)
	}
	if _, err := os.Lstat(s.dst); !os.IsNotExist(err) {
		t.Errorf("copy --dry-run made the destination: %v", err)
	}
	h.logRun(t, "copy --dry-run", took, peak)

	t.Run("copy", func(t *testing.T) {
		for i, layout := range []string{"maildir++", "fs"} {
			user := hostileUsers[i]
			t.Run(layout, func(t *testing.T) {
				t.Parallel()
				h.copyTwice(t, layout, common, h.url(user))
			})
		}
	})
}

// logRun logs how long a run took and, with rss, its peak RSS, which must
// be within the README's bound.
func (h *hostileSource) logRun(t *testing.T, what string, took time.Duration, peak int64) {
	t.Helper()
	if !h.rss {
		t.Logf("%s: %v", what, took.Round(time.Millisecond))
		return
	}
	t.Logf("%s: %v, peak RSS %.1f MiB", what, took.Round(time.Millisecond), float64(peak)/(1<<20))
	if peak > readmeRSSBound {
		t.Errorf("%s: peak RSS %.1f MiB, above the README's 64 MiB", what, float64(peak)/(1<<20))
	}
}

// copyTwice copies the account at url into a new Maildir in layout, then
// again: the first run copies what the server can deliver and reports the
// rest as skipped, the second copies nothing; the destination holds each
// deliverable message once, in as many folders as the source.
func (h *hostileSource) copyTwice(t *testing.T, layout string, common []string, url string) {
	s := newHostileSide(t)
	s.limit = h.limit
	args := append([]string{"copy", "--json", "--state-dir", s.state, "--maildir-layout", layout}, common...)
	args = append(args, url, "maildir:"+s.dst)
	for run := 1; run <= 2; run++ {
		r, peak, took := hostileRun(t, s, h.escape, h.env, h.want, h.rss, args...)
		rep := parseHostile(t, r)
		copied := h.deliverable
		if run == 2 {
			copied = 0
		}
		if rep.Copied != copied || len(rep.Skipped) != len(h.undeliverable) {
			t.Errorf("run %d: copied %d, skipped %d %+v; want %d and %d", run, rep.Copied, len(rep.Skipped), rep.Skipped, copied, len(h.undeliverable))
		}
		for _, sk := range rep.Skipped {
			if !slices.Contains(h.undeliverable, sk.Folder+"/"+sk.ID) || sk.Reason == "" {
				t.Errorf("run %d: skipped %+v, want one of %q", run, sk, h.undeliverable)
			}
		}
		if got := maildirCount(t, s.dst); got != h.deliverable {
			t.Errorf("run %d: the destination holds %d messages, the server could deliver %d", run, got, h.deliverable)
		}
		h.logRun(t, fmt.Sprintf("copy --maildir-layout %s, run %d", layout, run), took, peak)
		if h.check != nil {
			h.check(t, run, r, s.dst)
		}
	}
	l := maildir.PlusPlus
	if layout == "fs" {
		l = maildir.Nested
	}
	folders, _, err := maildir.Folders(s.dst, l)
	if err != nil {
		t.Fatalf("read the destination back: %v", err)
	}
	full := 0
	for _, f := range folders {
		if maildirCount(t, filepath.Join(f.Dir, "cur"))+maildirCount(t, filepath.Join(f.Dir, "new")) > 0 {
			full++
		}
	}
	if full != h.folders {
		t.Errorf("%d destination folders hold messages, %d source folders do (two merged?)", full, h.folders)
	}
}

// TestHostileIMAPNames: folder names built to escape or confuse a Maildir
// destination.
func TestHostileIMAPNames(t *testing.T) {
	h := startHostile(t, fakeimap.Options{})
	long := strings.Repeat("n", 300)
	names := []string{
		"../../../../../../tmp/" + "ESCAPE", "../../../../../../tmp/ESCAPE/cur", "INBOX/../../etc", "..", ".", "a/../../b", "a/./b", "../b",
		"nul\x00name", "cr\r\nlf", "\x01ctl\x1f\x7f", "\x1b[31mred", " lead", "trail ", "\t",
		"new", "cur", "tmp", "CUR", "Tmp", "INBOX/new", "x/cur/new", "x/tmp",
		"with", "with/delim", "with/delim/nest", "a//b", "dup", "dup/", "/dup",
		// Names that only a careless translation makes one: the server
		// refuses two raw names that clients would see alike.
		"Caf\xe8", "Café", "Cafe\u0301", "Caf~E8", "Caf~C3~A9", "Caf~", "~", "~~", "~7E",
		"a.b", "a_b", "a~2Eb", "a/b", "&", "&-", "&AOk-", "dovecot-keywords", "INBOX", "inbox/x",
		// Too long for a file name, alone and as one part.
		long, long[:299] + "m", "deep/" + strings.Repeat("é", 150), strings.TrimSuffix(strings.Repeat("abcdefghi/", 30), "/"),
	}
	for i, n := range names {
		n = strings.ReplaceAll(n, "ESCAPE", h.escape)
		h.add(t, n, 1+i%2, nil)
	}
	h.copies(t)
}

// TestHostileIMAPFlags: messages with 5,000 keywords each and messages
// with keywords of 1 KB. The source keeps the system flags and the first
// keywords (with a warning), a Maildir folder 26 of those (reported);
// every message is copied, within the memory bound.
func TestHostileIMAPFlags(t *testing.T) {
	h := startHostile(t, fakeimap.Options{})
	many := []imap.Flag{imap.FlagSeen, imap.FlagFlagged, imap.FlagAnswered}
	for i := 0; i < 5000; i++ {
		many = append(many, imap.Flag(fmt.Sprintf("$kw%04d", i)))
	}
	var big []imap.Flag
	for i := 0; i < 40; i++ {
		big = append(big, imap.Flag(fmt.Sprintf("%c%s", 'A'+i%26, strings.Repeat(fmt.Sprintf("%02d", i), 512))[:1024]))
	}
	h.add(t, "INBOX", 400, many)
	h.add(t, "Big keywords", 50, big)
	h.add(t, "Both", 20, append(many[:1000:1000], big...))
	h.rss = true
	h.check = func(t *testing.T, run int, r result, dst string) {
		if run == 1 && !strings.Contains(r.stderr, "have more than 100 keywords or 4096 bytes of them; only the first are copied") {
			t.Errorf("run 1: no warning about the keywords left out:\n%s", tail(r.stderr, 2000))
		}
		// \Seen, \Flagged and \Answered survive thousands of keywords.
		n := 0
		filepath.WalkDir(dst, func(p string, d fs.DirEntry, err error) error {
			if _, info := maildir.SplitName(d.Name()); err == nil && filepath.Base(filepath.Dir(p)) == "cur" && strings.HasPrefix(info, "FRS") {
				n++
			}
			return nil
		})
		if n != 420 {
			t.Errorf("run %d: %d messages flagged FRS, want 420", run, n)
		}
	}
	h.copies(t)
}

// TestHostileIMAPCut: answers that stop in the middle of a literal. The
// first fetch of every third message's body is cut half-way, and so is
// the first listing of a folder (its Message-ID headers); one message is
// cut every time. The run copies all the others, skips and reports that
// one (exit 3), and the re-run copies nothing new.
func TestHostileIMAPCut(t *testing.T) {
	var mu sync.Mutex
	attempts := map[string]int{}
	cuts := map[string]int{} // "header", "body", "poison"
	o := fakeimap.Options{}
	o.Hooks.Fetch = func(ev fakeimap.FetchEvent) fakeimap.FetchAction {
		if ev.Section == nil {
			return fakeimap.FetchAction{}
		}
		mu.Lock()
		defer mu.Unlock()
		kind := "body"
		if ev.Section.Specifier != imap.PartSpecifierNone || len(ev.Section.HeaderFields) > 0 {
			kind = "header"
		}
		k := fmt.Sprintf("%s %s %s/%d", ev.User, kind, ev.Mailbox, ev.UID)
		attempts[k]++
		cut := false
		switch {
		case kind == "header":
			cut = ev.Mailbox == "Cut" && ev.UID == 5 && attempts[k] == 1
		case ev.Mailbox == "Poison" && ev.UID == 2:
			cut, kind = true, "poison"
		default:
			cut = ev.UID%3 == 0 && attempts[k] == 1
		}
		if cut {
			cuts[kind]++
		}
		return fakeimap.FetchAction{Cut: cut, After: ev.Size / 2}
	}
	h := startHostile(t, o)
	h.add(t, "INBOX", 12, nil)
	h.add(t, "Cut", 30, nil)
	h.add(t, "Poison", 3, nil)
	h.deliverable--
	h.undeliverable = []string{"Poison/2"}
	h.want = exitSkipped
	h.copies(t)
	mu.Lock()
	defer mu.Unlock()
	// Per account: the first listing of Cut, the first fetch of 15
	// messages; the poison in each of 2 runs, every attempt.
	if cuts["header"] != 2 || cuts["body"] != 30 || cuts["poison"] < 4 {
		t.Errorf("answers cut: %v, want header 2, body 30, poison at least 4", cuts)
	}
}

// TestHostileIMAPManyFolders: a LIST of 100,000 folders (about two
// minutes of the suite; MAILHAUL_HOSTILE_FOLDERS sets another count), ten
// of which hold a message, is listed and copied within the time limit and
// the memory bound, and the re-run is a single LIST.
func TestHostileIMAPManyFolders(t *testing.T) {
	h, _ := manyFolders(t, hostileUsers)
	h.rss = true
	h.copies(t)
}

// manyFolders starts a hostile source whose accounts (users) have n folders
// f000/g00000, f000/g00001, ... (100,000, or MAILHAUL_HOSTILE_FOLDERS),
// ten of them holding a message.
func manyFolders(t *testing.T, users []string) (*hostileSource, int) {
	t.Helper()
	n := 100_000
	if v := os.Getenv("MAILHAUL_HOSTILE_FOLDERS"); v != "" {
		fmt.Sscan(v, &n)
	}
	h := startHostile(t, fakeimap.Options{})
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("f%03d/g%05d", i/1000, i)
		if i%(n/10) == 1234%(n/10) {
			h.add(t, name, 1, nil)
			continue
		}
		for _, u := range users {
			if err := h.srv.Create(u, name); err != nil {
				t.Fatal(err)
			}
		}
	}
	h.limit = manyFoldersRunLimit(n)
	return h, n
}

// TestHostileIMAPManyFoldersToIMAP: an account of 100,000 folders (about
// a minute of the suite; MAILHAUL_HOSTILE_FOLDERS sets another count)
// copied into an IMAP destination (fakeimap): each folder created once
// (no LIST of them all after each CREATE), the messages copied, a re-run creates and copies nothing, and
// both runs stay within the time limit and the README's memory bound.
func TestHostileIMAPManyFoldersToIMAP(t *testing.T) {
	h, n := manyFolders(t, hostileUsers[:1])
	dst := fakeimap.Start(t, fakeimap.Options{})
	dst.AddUser("dest", "dest-pw")
	s := newHostileSide(t)
	s.limit = h.limit
	env := append(h.env, "MAILHAUL_DST_PASSWORD=dest-pw")
	args := []string{"copy", "--json", "--state-dir", s.state, "--insecure-plaintext", "--io-timeout", "10s", h.url(hostileUsers[0]), "imap://dest@" + dst.Addr()}
	for run := 1; run <= 2; run++ {
		before := dst.Stats().Commands
		r, peak, took := hostileRun(t, s, h.escape, env, exitOK, true, args...)
		after := dst.Stats().Commands
		rep := parseHostile(t, r)
		// Every folder once: n, and the parents f000, f001, ... the
		// server made for them.
		copied, creates := h.deliverable, n+(n+999)/1000
		if run == 2 {
			copied, creates = 0, 0
		}
		if rep.Copied != copied {
			t.Errorf("run %d: copied %d, want %d", run, rep.Copied, copied)
		}
		made := after["CREATE"] - before["CREATE"]
		if made != creates {
			t.Errorf("run %d: %d CREATEs, want %d", run, made, creates)
		}
		if lists := after["LIST"] - before["LIST"]; lists > 2 {
			t.Errorf("run %d: %d LISTs of the destination, want at most 2", run, lists)
		}
		t.Logf("run %d: %v, peak RSS %.1f MiB, %d CREATEs, %d SELECTs", run, took.Round(time.Millisecond), float64(peak)/(1<<20), made, after["SELECT"]-before["SELECT"])
		if peak > readmeRSSBound {
			t.Errorf("run %d: peak RSS %.1f MiB, above the README's 64 MiB", run, float64(peak)/(1<<20))
		}
	}
}
