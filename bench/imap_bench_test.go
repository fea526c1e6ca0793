package bench

import (
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/mailhaul/mailhaul/internal/delayproxy"
	"github.com/mailhaul/mailhaul/internal/testserver"
)

// IMAP benchmark: mailhaul against mbsync (isync) on the same corpus, in
// one run, on loopback and through internal/delayproxy.
//
//	go test -run '^$' -bench IMAP -benchtime 1x ./bench
//
// Environment:
//
//	MAILHAUL_BENCH_MESSAGES   corpus size (default 2000)
//	MAILHAUL_BENCH_TLS=1      use IMAPS (harness CA) instead of plaintext IMAP
//	MAILHAUL_BENCH_TRANSFERS  --transfers given to mailhaul (default: its own default)
//	MAILHAUL_BENCH_DELAY      one-way latency of the "remote" rows (default 10ms)
//
// Nothing here runs without -bench: the file has no Test functions and no
// init work, so `go test ./...` only compiles it.

const (
	benchUser = "alice"
	benchPass = "bench-src-pw"
)

// corpus describes what seedDovecot wrote.
type corpus struct {
	messages int
	bytes    int64 // sum of RFC822.SIZE (CRLF line ends, as served)
	folders  int
}

// benchFolders are the Maildir++ folders of the corpus ("" is INBOX):
// special-use ones, a nested tree and a deeper one.
var benchFolders = []string{"", ".Sent", ".Drafts", ".Trash", ".Archive", ".Archive.2019", ".Archive.2020",
	".Lists", ".Lists.go-dev", ".Lists.go-dev.announce", ".Work", ".Work.Projects"}

// benchKeywords become the dovecot-keywords file of every folder: keyword
// i is letter 'a'+i in the Maildir info.
var benchKeywords = []string{"$Forwarded", "$Junk", "Important", "project-x"}

// seedDovecot writes n messages straight into user's Maildir on d (sizes 1
// KiB to 64 KiB, one in 500 a few MiB; system flags and keywords; arrival
// dates in the file mtimes), hands the files to the mail owner and returns
// what it wrote. Files carry S= and W= (Dovecot's sizes) as a Dovecot
// delivery would write them, so the server never has to scan for sizes.
func seedDovecot(b *testing.B, d *testserver.Dovecot, user string, n int) corpus {
	b.Helper()
	root := d.MaildirPath(user)
	var kw strings.Builder
	for i, k := range benchKeywords {
		fmt.Fprintf(&kw, "%d %s\n", i, k)
	}
	for _, f := range benchFolders {
		for _, s := range []string{"cur", "new", "tmp"} {
			if err := os.MkdirAll(filepath.Join(root, f, s), 0o700); err != nil {
				b.Fatal(err)
			}
		}
		if err := os.WriteFile(filepath.Join(root, f, "dovecot-keywords"), []byte(kw.String()), 0o600); err != nil {
			b.Fatal(err)
		}
		if f != "" {
			os.WriteFile(filepath.Join(root, f, "maildirfolder"), nil, 0o600)
		}
	}
	rng := rand.New(rand.NewSource(42))
	line := strings.Repeat("The quick brown fox jumps over the lazy dog. ", 2)[:76] + "\n"
	sysFlags := []string{"", "S", "S", "RS", "FS", "PS", "S", "DS"}
	var c corpus
	c.folders = len(benchFolders)
	buf := make([]byte, 0, 4<<20)
	for i := 0; i < n; i++ {
		f := benchFolders[i%len(benchFolders)]
		size := 1024 + rng.Intn(15<<10)
		if i%10 == 0 {
			size += rng.Intn(48 << 10)
		}
		if i%500 == 499 {
			size = 1<<20 + rng.Intn(3<<20)
		}
		buf = buf[:0]
		buf = fmt.Appendf(buf, "Return-Path: <sender%d@example.org>\nFrom: Sender %d <sender%d@example.org>\nTo: me@example.net\nSubject: benchmark message %d\nMessage-ID: <%d.%d@bench.example>\nDate: Mon, 1 Jan 2018 00:00:00 +0000\nMIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\n\n", i, i, i, i, i, rng.Int63())
		for len(buf) < size {
			buf = append(buf, line...)
		}
		lines := int64(strings.Count(string(buf), "\n"))
		flags := sysFlags[rng.Intn(len(sysFlags))]
		for k := range benchKeywords {
			if rng.Intn(6) == 0 {
				flags += string(rune('a' + k))
			}
		}
		date := time.Unix(1514764800+int64(i)*3607, 0)
		name := fmt.Sprintf("%d.M%dP%d.bench,S=%d,W=%d:2,%s", date.Unix(), i, 4242, len(buf), int64(len(buf))+lines, sortFlags(flags))
		p := filepath.Join(root, f, "cur", name)
		if err := os.WriteFile(p, buf, 0o600); err != nil {
			b.Fatal(err)
		}
		if err := os.Chtimes(p, date, date); err != nil {
			b.Fatal(err)
		}
		c.messages++
		c.bytes += int64(len(buf)) + lines
	}
	if err := d.Chown(user); err != nil {
		b.Fatal(err)
	}
	return c
}

func sortFlags(s string) string {
	r := []byte(s)
	sort.Slice(r, func(i, j int) bool { return r[i] < r[j] })
	return string(r)
}

// imapLogin connects to d directly (no proxy).
func imapLogin(b *testing.B, d *testserver.Dovecot, user, pass string) *imapclient.Client {
	b.Helper()
	c, err := imapclient.DialInsecure(d.IMAPAddr, nil)
	if err != nil {
		b.Fatal(err)
	}
	if err := c.Login(user, pass).Wait(); err != nil {
		b.Fatal(err)
	}
	return c
}

// warmSource makes Dovecot build its indexes and caches for every folder
// (and pulls every file into the page cache), so that the first tool
// measured does not pay for what the second gets for free.
func warmSource(b *testing.B, d *testserver.Dovecot) {
	b.Helper()
	c := imapLogin(b, d, benchUser, benchPass)
	defer c.Close()
	list, err := c.List("", "*", nil).Collect()
	if err != nil {
		b.Fatal(err)
	}
	all := imap.SeqSet{}
	all.AddRange(1, 0)
	hdr := &imap.FetchItemBodySection{Specifier: imap.PartSpecifierHeader, HeaderFields: []string{"Message-ID", "X-TUID"}, Peek: true}
	body := &imap.FetchItemBodySection{Peek: true}
	for _, l := range list {
		sd, err := c.Select(l.Mailbox, &imap.SelectOptions{ReadOnly: true}).Wait()
		if err != nil || sd.NumMessages == 0 {
			continue
		}
		cmd := c.Fetch(all, &imap.FetchOptions{UID: true, Flags: true, InternalDate: true, RFC822Size: true, BodySection: []*imap.FetchItemBodySection{hdr, body}})
		for m := cmd.Next(); m != nil; m = cmd.Next() {
			if _, err := m.Collect(); err != nil {
				b.Fatal(err)
			}
		}
		if err := cmd.Close(); err != nil {
			b.Fatal(err)
		}
	}
}

// imapTotal is the number of messages in every folder of user on d.
func imapTotal(b *testing.B, d *testserver.Dovecot, user, pass string) int {
	b.Helper()
	c := imapLogin(b, d, user, pass)
	defer c.Close()
	list, err := c.List("", "*", nil).Collect()
	if err != nil {
		b.Fatal(err)
	}
	n := 0
	for _, l := range list {
		st, err := c.Status(l.Mailbox, &imap.StatusOptions{NumMessages: true}).Wait()
		if err == nil && st.NumMessages != nil {
			n += int(*st.NumMessages)
		}
	}
	return n
}

// maildirTotal counts message files (in cur/ and new/) under root.
func maildirTotal(root string) int {
	n := 0
	filepath.WalkDir(root, func(p string, de os.DirEntry, err error) error {
		if err == nil && !de.IsDir() {
			if d := filepath.Base(filepath.Dir(p)); d == "cur" || d == "new" {
				n++
			}
		}
		return nil
	})
	return n
}

// runChild runs a command with extra environment and returns its wall
// time and peak RSS in MiB.
//
// The peak comes from GNU time (/usr/bin/time -f %M) when installed: Go
// starts children with vfork, and Linux records the parent's (this test
// binary's) high-water RSS in the child's maxrss at exec, so the child's
// own rusage never reports less than the test binary's RSS. time forks
// for real, so only its own tiny footprint leaks into the figure.
// Without it the figure is the rusage one, an upper bound.
func runChild(b *testing.B, env []string, name string, args ...string) (time.Duration, float64) {
	b.Helper()
	var cmd *exec.Cmd
	rssFile := ""
	if _, err := os.Stat("/usr/bin/time"); err == nil {
		f, err := os.CreateTemp("", "mhrss")
		if err != nil {
			b.Fatal(err)
		}
		f.Close()
		rssFile = f.Name()
		defer os.Remove(rssFile)
		cmd = exec.Command("/usr/bin/time", append([]string{"-f", "%M", "-o", rssFile, name}, args...)...)
	} else {
		cmd = exec.Command(name, args...)
	}
	cmd.Env = append(os.Environ(), env...)
	start := time.Now()
	out, err := cmd.CombinedOutput()
	el := time.Since(start)
	if err != nil {
		b.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, tail(out))
	}
	rss := float64(cmd.ProcessState.SysUsage().(*syscall.Rusage).Maxrss) / 1024
	if rssFile != "" {
		data, err := os.ReadFile(rssFile)
		var kib float64
		if _, serr := fmt.Sscan(strings.TrimSpace(lastLine(string(data))), &kib); err != nil || serr != nil {
			b.Fatalf("read peak RSS of %s from /usr/bin/time: %q", name, data)
		}
		rss = kib / 1024
	}
	return el, rss
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}

func tail(b []byte) string {
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// endpoint is how a tool reaches one IMAP server.
type endpoint struct {
	addr string // host:port, possibly a delay proxy
	ca   string // CA file when TLS
	tls  bool
}

func (e endpoint) url(user string) string {
	if e.tls {
		return "imaps://" + user + "@" + e.addr
	}
	return "imap://" + user + "@" + e.addr
}

// mbsyncAccount is an IMAPAccount + IMAPStore section.
func (e endpoint) mbsyncAccount(name, user, pass string) string {
	host, port, _ := strings.Cut(e.addr, ":")
	ssl := "SSLType None\n"
	if e.tls {
		ssl = "SSLType IMAPS\nCertificateFile " + e.ca + "\n"
	}
	return fmt.Sprintf("IMAPAccount %[1]s\nHost %[2]s\nPort %[3]s\nUser %[4]s\nPass %[5]s\n%[6]sAuthMechs LOGIN\n\nIMAPStore %[1]s\nAccount %[1]s\n\n",
		name, host, port, user, pass, ssl)
}

// result is one tool's figures in one row.
type result struct {
	el    time.Duration
	rss   float64
	rerun time.Duration // mailhaul only: the same command run again (copies nothing)
}

type row struct {
	name          string
	mailhaul, mbs result
}

// BenchmarkIMAP copies one generated corpus from a source Dovecot with
// mailhaul and with mbsync, IMAP -> IMAP (a fresh destination Dovecot per
// row, one account per tool) and IMAP -> Maildir (a fresh directory per
// tool), on loopback and with added latency, and prints a table.
func BenchmarkIMAP(b *testing.B) {
	mbsync, err := exec.LookPath("mbsync")
	if err != nil {
		b.Skip("mbsync not installed (apt-get install isync)")
	}
	n := 2000
	if s := os.Getenv("MAILHAUL_BENCH_MESSAGES"); s != "" {
		fmt.Sscan(s, &n)
	}
	delay := 10 * time.Millisecond
	if s := os.Getenv("MAILHAUL_BENCH_DELAY"); s != "" {
		if delay, err = time.ParseDuration(s); err != nil {
			b.Fatalf("MAILHAUL_BENCH_DELAY: %v", err)
		}
	}
	useTLS := os.Getenv("MAILHAUL_BENCH_TLS") == "1"
	var extra []string
	if s := os.Getenv("MAILHAUL_BENCH_TRANSFERS"); s != "" {
		extra = append(extra, "--transfers", s)
	}

	work := b.TempDir()
	bin := buildMailhaul(b, work)
	src := testserver.StartDovecot(b, testserver.WithUser(benchUser, benchPass))
	setup := time.Now()
	cp := seedDovecot(b, src, benchUser, n)
	warmSource(b, src)
	b.Logf("corpus: %d messages, %.1f MB in %d folders (seeded and indexed in %s)", cp.messages, float64(cp.bytes)/1e6, cp.folders, time.Since(setup).Round(time.Millisecond))

	addrOf := func(d *testserver.Dovecot) string {
		if useTLS {
			return d.IMAPSAddr
		}
		return d.IMAPAddr
	}
	proxied := func(b *testing.B, target string, lat time.Duration) string {
		if lat == 0 {
			return target
		}
		p, err := delayproxy.Start(target, lat)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { p.Close() })
		return p.Addr()
	}
	nets := []struct {
		name string
		lat  time.Duration
	}{{"loopback", 0}, {fmt.Sprintf("rtt%s", 2*delay), delay}}

	var rows []row
	iter := 0
	for _, nw := range nets {
		srcEP := endpoint{addr: proxied(b, addrOf(src), nw.lat), ca: src.CAFile, tls: useTLS}
		for _, kind := range []string{"IMAP-IMAP", "IMAP-Maildir"} {
			b.Run(kind+"/"+nw.name, func(b *testing.B) {
				for i := 0; i < b.N; i++ {
					b.StopTimer()
					dir := b.TempDir()
					var dstEP endpoint
					var dst *testserver.Dovecot
					if kind == "IMAP-IMAP" {
						dst = testserver.StartDovecot(b, testserver.WithUser("mh", "mh-pw"), testserver.WithUser("mbs", "mbs-pw"))
						dstEP = endpoint{addr: proxied(b, addrOf(dst), nw.lat), ca: dst.CAFile, tls: useTLS}
					}
					// mailhaul
					runMH := func() result {
						args := []string{"copy", "--state-dir", filepath.Join(dir, "mh-state")}
						args = append(args, extra...)
						if useTLS {
							// One --ca-file for both sides: trust both servers.
							ca := filepath.Join(dir, "ca.pem")
							pem, _ := os.ReadFile(src.CAFile)
							if dst != nil {
								more, _ := os.ReadFile(dst.CAFile)
								pem = append(pem, more...)
							}
							if err := os.WriteFile(ca, pem, 0o644); err != nil {
								b.Fatal(err)
							}
							args = append(args, "--ca-file", ca)
						} else {
							args = append(args, "--insecure-plaintext")
						}
						args = append(args, srcEP.url(benchUser))
						var want func() int
						if dst != nil {
							args = append(args, dstEP.url("mh"))
							want = func() int { return imapTotal(b, dst, "mh", "mh-pw") }
						} else {
							out := filepath.Join(dir, "mh-maildir")
							args = append(args, "maildir:"+out)
							want = func() int { return maildirTotal(out) }
						}
						env := []string{"MAILHAUL_SRC_PASSWORD=" + benchPass, "MAILHAUL_DST_PASSWORD=mh-pw"}
						el, rss := runChild(b, env, bin, args...)
						if got := want(); got != cp.messages {
							b.Fatalf("mailhaul %s/%s: destination holds %d messages, want %d", kind, nw.name, got, cp.messages)
						}
						// The same command again: nothing to copy.
						again, _ := runChild(b, env, bin, args...)
						if got := want(); got != cp.messages {
							b.Fatalf("mailhaul %s/%s second run: destination holds %d messages, want %d", kind, nw.name, got, cp.messages)
						}
						return result{el: el, rss: rss, rerun: again}
					}
					runMbsync := func() result {
						conf := srcEP.mbsyncAccount("src", benchUser, benchPass)
						var want func() int
						state := filepath.Join(dir, "mbs-state") + "/"
						os.MkdirAll(state, 0o700)
						if dst != nil {
							conf += dstEP.mbsyncAccount("dst", "mbs", "mbs-pw")
							conf += "Channel bench\nFar :src:\nNear :dst:\nPatterns *\nCreate Near\nSync Pull\nSyncState " + state + "\nCopyArrivalDate yes\n"
							want = func() int { return imapTotal(b, dst, "mbs", "mbs-pw") }
						} else {
							out := filepath.Join(dir, "mbs-maildir")
							os.MkdirAll(out, 0o700)
							conf += "MaildirStore local\nPath " + out + "/\nInbox " + out + "/INBOX\nSubFolders Verbatim\n\n"
							conf += "Channel bench\nFar :src:\nNear :local:\nPatterns *\nCreate Near\nSync Pull\nSyncState *\nCopyArrivalDate yes\n"
							want = func() int { return maildirTotal(out) }
						}
						rc := filepath.Join(dir, "mbsyncrc")
						if err := os.WriteFile(rc, []byte(conf), 0o600); err != nil {
							b.Fatal(err)
						}
						el, rss := runChild(b, nil, mbsync, "-q", "-c", rc, "bench")
						if got := want(); got != cp.messages {
							b.Errorf("mbsync %s/%s: destination holds %d messages, want %d (its figures are not comparable)", kind, nw.name, got, cp.messages)
						}
						return result{el: el, rss: rss}
					}
					b.StartTimer()
					var mh, mbs result
					// Alternate which tool goes first, against order effects.
					if iter%2 == 0 {
						mh, mbs = runMH(), runMbsync()
					} else {
						mbs, mh = runMbsync(), runMH()
					}
					iter++
					r := row{name: kind + " " + nw.name, mailhaul: mh, mbs: mbs}
					rows = append(rows, r)
					report(b, cp, r)
				}
			})
		}
	}
	printTable(cp, rows, useTLS)
}

func report(b *testing.B, cp corpus, r row) {
	mb := float64(cp.bytes) / 1e6
	b.ReportMetric(float64(cp.messages)/r.mailhaul.el.Seconds(), "mailhaul_msgs/s")
	b.ReportMetric(mb/r.mailhaul.el.Seconds(), "mailhaul_MB/s")
	b.ReportMetric(r.mailhaul.rss, "mailhaul_peakRSS_MiB")
	b.ReportMetric(r.mailhaul.rerun.Seconds(), "mailhaul_rerun_s")
	b.ReportMetric(float64(cp.messages)/r.mbs.el.Seconds(), "mbsync_msgs/s")
	b.ReportMetric(mb/r.mbs.el.Seconds(), "mbsync_MB/s")
	b.ReportMetric(r.mbs.rss, "mbsync_peakRSS_MiB")
	b.ReportMetric(r.mailhaul.el.Seconds()/r.mbs.el.Seconds(), "x_mbsync_time")
}

func printTable(cp corpus, rows []row, useTLS bool) {
	mode := "plaintext IMAP"
	if useTLS {
		mode = "IMAPS"
	}
	mb := float64(cp.bytes) / 1e6
	fmt.Printf("\n%d messages, %.1f MB, %d folders, %s; time ratio = mailhaul / mbsync (< 1: mailhaul faster)\n", cp.messages, mb, cp.folders, mode)
	fmt.Printf("%-24s %-9s %9s %9s %8s %9s %7s %9s\n", "row", "tool", "time", "msgs/s", "MB/s", "RSS MiB", "ratio", "2nd run")
	for _, r := range rows {
		for i, t := range []struct {
			name string
			res  result
		}{{"mailhaul", r.mailhaul}, {"mbsync", r.mbs}} {
			ratio, rerun := "", ""
			if i == 0 {
				ratio = fmt.Sprintf("%.2f", r.mailhaul.el.Seconds()/r.mbs.el.Seconds())
				rerun = fmt.Sprintf("%.2fs", r.mailhaul.rerun.Seconds())
			}
			fmt.Printf("%-24s %-9s %8.2fs %9.0f %8.1f %9.0f %7s %9s\n", r.name, t.name, t.res.el.Seconds(),
				float64(cp.messages)/t.res.el.Seconds(), mb/t.res.el.Seconds(), t.res.rss, ratio, rerun)
		}
	}
}
