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

// IMAP benchmark: mailhaul against mbsync (isync), interimap and dsync
// (doveadm backup from imapc) on the same corpus, in one run, on loopback
// and through internal/delayproxy; each tool's first copy and its re-run
// with nothing to copy.
//
//	go test -run '^$' -bench IMAP -benchtime 1x ./bench
//
// Environment:
//
//	MAILHAUL_BENCH_MESSAGES   corpus size (default 2000)
//	MAILHAUL_BENCH_LARGE      messages of 10-20 MB in the corpus (default 3)
//	MAILHAUL_BENCH_TLS=1      use IMAPS (harness CA) instead of plaintext IMAP
//	MAILHAUL_BENCH_TRANSFERS  --transfers given to mailhaul (default: its own default)
//	MAILHAUL_BENCH_DELAY      one-way latency of the "remote" rows (default 10ms)
//	MAILHAUL_BENCH_TOOLS      tools to run, comma-separated (default: every one installed)
//	MAILHAUL_BENCH_ROWS       rows to run, e.g. "IMAP-IMAP" (default: all)
//	MAILHAUL_BENCH_TRACE=DIR  run mailhaul with -vv and keep each run's wire trace in DIR
//	MAILHAUL_BENCH_BASELINE   another mailhaul binary, run as the tool "baseline" (A/B of a change)
//
// The peers come from Debian's packages (apt-get install isync interimap;
// doveadm is Dovecot's). A tool that is not installed is left out of the
// table and said so.
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
func seedDovecot(b *testing.B, d *testserver.Dovecot, user string, n, large int) corpus {
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
		if large > 0 && i%(n/large) == n/large/2 {
			size = 10<<20 + rng.Intn(10<<20)
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

// measured is what one run of a tool cost, from GNU time when installed.
type measured struct {
	el  time.Duration
	rss float64 // peak RSS, MiB
	cpu float64 // user + system seconds of the process and its children
}

// runMeasured runs a command with extra environment and returns its wall
// time, peak RSS and CPU time; a failing command fails the benchmark.
//
// The peak comes from GNU time (/usr/bin/time) when installed: Go starts
// children with vfork, and Linux records the parent's (this test binary's)
// high-water RSS in the child's maxrss at exec, so the child's own rusage
// never reports less than the test binary's RSS. time forks for real, so
// only its own tiny footprint leaks into the figure. Without it the figure
// is the rusage one, an upper bound.
func runMeasured(b *testing.B, env []string, name string, args ...string) measured {
	b.Helper()
	return runLogged(b, "", env, name, args...)
}

// runLogged is runMeasured that also writes the command's output to
// logFile (when not "").
func runLogged(b *testing.B, logFile string, env []string, name string, args ...string) measured {
	b.Helper()
	var cmd *exec.Cmd
	statFile := ""
	if _, err := os.Stat("/usr/bin/time"); err == nil {
		f, err := os.CreateTemp("", "mhrss")
		if err != nil {
			b.Fatal(err)
		}
		f.Close()
		statFile = f.Name()
		defer os.Remove(statFile)
		cmd = exec.Command("/usr/bin/time", append([]string{"-f", "%M %U %S", "-o", statFile, name}, args...)...)
	} else {
		cmd = exec.Command(name, args...)
	}
	cmd.Env = append(os.Environ(), env...)
	settleDisk()
	start := time.Now()
	out, err := cmd.CombinedOutput()
	m := measured{el: time.Since(start)}
	if logFile != "" {
		os.WriteFile(logFile, out, 0o600)
	}
	if err != nil {
		b.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, tail(out))
	}
	ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	m.rss = float64(ru.Maxrss) / 1024
	m.cpu = time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
	if statFile != "" {
		data, err := os.ReadFile(statFile)
		var kib, user, sys float64
		if _, serr := fmt.Sscan(strings.TrimSpace(lastLine(string(data))), &kib, &user, &sys); err != nil || serr != nil {
			b.Fatalf("read the figures of %s from /usr/bin/time: %q", name, data)
		}
		m.rss, m.cpu = kib/1024, user+sys
	}
	return m
}

// runChild is runMeasured for callers that want time and peak RSS.
func runChild(b *testing.B, env []string, name string, args ...string) (time.Duration, float64) {
	b.Helper()
	m := runMeasured(b, env, name, args...)
	return m.el, m.rss
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

// interimapSection is a [local] or [remote] section of interimap's
// configuration.
func (e endpoint) interimapSection(section, user, pass string) string {
	host, port, _ := strings.Cut(e.addr, ":")
	typ := "type = imap\nSTARTTLS = NO\n"
	if e.tls {
		typ = "type = imaps\nSSL_CAfile = " + e.ca + "\n"
	}
	return fmt.Sprintf("[%s]\n%shost = %s\nport = %s\nusername = %s\npassword = %s\ncompress = NO\n\n", section, typ, host, port, user, pass)
}

// benchCase is one row's setting, handed to every tool.
type benchCase struct {
	kind   string // "IMAP-IMAP" or "IMAP-Maildir"
	dir    string // scratch directory of this row
	src    endpoint
	dst    endpoint            // IMAP-IMAP
	dstDC  *testserver.Dovecot // IMAP-IMAP: the destination server
	srcDC  *testserver.Dovecot
	useTLS bool
}

// tool is one program of the comparison. prepare returns the command (and
// environment) that copies the corpus from c.src into the tool's own
// destination (account user on c.dstDC, or a directory under c.dir), run
// twice: a first copy and a re-run that finds nothing new; count reads
// back how many messages the destination holds.
type tool struct {
	name  string
	bin   string
	kinds []string
	// user/pass is the tool's account on an IMAP destination.
	user, pass string
	prepare    func(b *testing.B, c benchCase, t *tool) (env []string, args []string, count func() int)
}

func (t *tool) does(kind string) bool {
	for _, k := range t.kinds {
		if k == kind {
			return true
		}
	}
	return false
}

// result is one tool's figures in one row.
type result struct {
	tool         string
	first, again measured
}

type row struct {
	name    string
	results []result
}

// benchTools are the tools of the comparison; bin is found in PATH (or
// is the mailhaul just built).
func benchTools(b *testing.B, mailhaul string, extra []string) []*tool {
	all := []*tool{
		{name: "mailhaul", bin: mailhaul, kinds: []string{"IMAP-IMAP", "IMAP-Maildir"}, user: "mh", pass: "mh-pw",
			prepare: func(b *testing.B, c benchCase, t *tool) ([]string, []string, func() int) {
				args := []string{"copy", "--state-dir", filepath.Join(c.dir, t.name+"-state")}
				args = append(args, extra...)
				if c.useTLS {
					// One --ca-file for both sides: trust both servers.
					ca := filepath.Join(c.dir, "ca.pem")
					pem, _ := os.ReadFile(c.srcDC.CAFile)
					if c.dstDC != nil {
						more, _ := os.ReadFile(c.dstDC.CAFile)
						pem = append(pem, more...)
					}
					if err := os.WriteFile(ca, pem, 0o644); err != nil {
						b.Fatal(err)
					}
					args = append(args, "--ca-file", ca)
				} else {
					args = append(args, "--insecure-plaintext")
				}
				args = append(args, c.src.url(benchUser))
				env := []string{"MAILHAUL_SRC_PASSWORD=" + benchPass, "MAILHAUL_DST_PASSWORD=" + t.pass}
				if c.kind == "IMAP-IMAP" {
					return env, append(args, c.dst.url(t.user)), func() int { return imapTotal(b, c.dstDC, t.user, t.pass) }
				}
				out := filepath.Join(c.dir, t.name+"-maildir")
				return env, append(args, "maildir:"+out), func() int { return maildirTotal(out) }
			}},
		{name: "mbsync", bin: "mbsync", kinds: []string{"IMAP-IMAP", "IMAP-Maildir"}, user: "mbs", pass: "mbs-pw",
			prepare: func(b *testing.B, c benchCase, t *tool) ([]string, []string, func() int) {
				conf := c.src.mbsyncAccount("src", benchUser, benchPass)
				state := filepath.Join(c.dir, "mbs-state") + "/"
				os.MkdirAll(state, 0o700)
				var count func() int
				if c.kind == "IMAP-IMAP" {
					conf += c.dst.mbsyncAccount("dst", t.user, t.pass)
					conf += "Channel bench\nFar :src:\nNear :dst:\nPatterns *\nCreate Near\nSync Pull\nSyncState " + state + "\nCopyArrivalDate yes\n"
					count = func() int { return imapTotal(b, c.dstDC, t.user, t.pass) }
				} else {
					out := filepath.Join(c.dir, "mbs-maildir")
					os.MkdirAll(out, 0o700)
					conf += "MaildirStore local\nPath " + out + "/\nInbox " + out + "/INBOX\nSubFolders Verbatim\n\n"
					conf += "Channel bench\nFar :src:\nNear :local:\nPatterns *\nCreate Near\nSync Pull\nSyncState *\nCopyArrivalDate yes\n"
					count = func() int { return maildirTotal(out) }
				}
				rc := filepath.Join(c.dir, "mbsyncrc")
				if err := os.WriteFile(rc, []byte(conf), 0o600); err != nil {
					b.Fatal(err)
				}
				return nil, []string{"-q", "-c", rc, "bench"}, count
			}},
		// interimap synchronises both ways; the source is its "remote",
		// the destination its "local".
		{name: "interimap", bin: "interimap", kinds: []string{"IMAP-IMAP"}, user: "iim", pass: "iim-pw",
			prepare: func(b *testing.B, c benchCase, t *tool) ([]string, []string, func() int) {
				conf := "database = " + filepath.Join(c.dir, "interimap.db") + "\nlist-mailbox = *\n\n" +
					c.dst.interimapSection("local", t.user, t.pass) + c.src.interimapSection("remote", benchUser, benchPass)
				file := filepath.Join(c.dir, "interimap.conf")
				if err := os.WriteFile(file, []byte(conf), 0o600); err != nil {
					b.Fatal(err)
				}
				return nil, []string{"--config", file}, func() int { return imapTotal(b, c.dstDC, t.user, t.pass) }
			}},
		// dsync: doveadm of the destination server pulls from the source
		// through its imapc storage (Dovecot's documented migration).
		{name: "dsync", bin: "doveadm", kinds: []string{"IMAP-IMAP"}, user: "ds", pass: "ds-pw",
			prepare: func(b *testing.B, c benchCase, t *tool) ([]string, []string, func() int) {
				host, port, _ := strings.Cut(c.src.addr, ":")
				ssl := "no"
				args := []string{"-c", c.dstDC.ConfFile, "-o", "imapc_host=" + host, "-o", "imapc_port=" + port,
					"-o", "imapc_user=" + benchUser, "-o", "imapc_password=" + benchPass,
					"-o", "imapc_features=rfc822.size fetch-headers", "-o", "mail_prefetch_count=20"}
				if c.useTLS {
					ssl = "imaps"
					args = append(args, "-o", "ssl_client_ca_file="+c.src.ca)
				}
				args = append(args, "-o", "imapc_ssl="+ssl, "backup", "-R", "-u", t.user, "imapc:")
				return nil, args, func() int { return imapTotal(b, c.dstDC, t.user, t.pass) }
			}},
	}
	if bin := os.Getenv("MAILHAUL_BENCH_BASELINE"); bin != "" {
		// Another build of mailhaul (an older commit's) as one more tool:
		// a change measured against what it changes in the same run, on
		// the same corpus and servers, each in its own account.
		base := *all[0]
		base.name, base.bin, base.user, base.pass = "baseline", bin, "mhb", "mhb-pw"
		all = append(all, &base)
	}
	want := map[string]bool{}
	if s := os.Getenv("MAILHAUL_BENCH_TOOLS"); s != "" {
		for _, n := range strings.Split(s, ",") {
			want[strings.TrimSpace(n)] = true
		}
	}
	var out []*tool
	for _, t := range all {
		if len(want) > 0 && !want[t.name] {
			continue
		}
		if t.name != "mailhaul" && t.name != "baseline" {
			p, err := exec.LookPath(t.bin)
			if err != nil {
				b.Logf("%s not installed (%s): left out", t.name, t.bin)
				continue
			}
			t.bin = p
		}
		out = append(out, t)
	}
	return out
}

// BenchmarkIMAP copies one generated corpus from a source Dovecot with
// every tool, IMAP -> IMAP (a fresh destination Dovecot per row, one
// account per tool) and IMAP -> Maildir (a fresh directory per tool), on
// loopback and with added latency, each twice (the re-run copies nothing),
// checks every destination holds the whole corpus, and prints a table.
func BenchmarkIMAP(b *testing.B) {
	n := 2000
	if s := os.Getenv("MAILHAUL_BENCH_MESSAGES"); s != "" {
		fmt.Sscan(s, &n)
	}
	large := 3
	if s := os.Getenv("MAILHAUL_BENCH_LARGE"); s != "" {
		fmt.Sscan(s, &large)
	}
	delay := 10 * time.Millisecond
	if s := os.Getenv("MAILHAUL_BENCH_DELAY"); s != "" {
		var err error
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
	hold := newKept(b, work)
	tools := benchTools(b, buildMailhaul(b, work), extra)
	src := testserver.StartDovecot(b, testserver.WithUser(benchUser, benchPass))
	setup := time.Now()
	cp := seedDovecot(b, src, benchUser, n, large)
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
	kinds := []string{"IMAP-IMAP", "IMAP-Maildir"}
	if s := os.Getenv("MAILHAUL_BENCH_ROWS"); s != "" {
		kinds = strings.Split(s, ",")
	}

	var rows []row
	iter := 0
	for _, nw := range nets {
		srcEP := endpoint{addr: proxied(b, addrOf(src), nw.lat), ca: src.CAFile, tls: useTLS}
		for _, kind := range kinds {
			b.Run(kind+"/"+nw.name, func(b *testing.B) {
				for i := 0; i < b.N; i++ {
					b.StopTimer()
					c := benchCase{kind: kind, dir: hold.dir(b), src: srcEP, srcDC: src, useTLS: useTLS}
					users := []testserver.Option{testserver.WithRemove(hold.take)}
					for _, t := range tools {
						users = append(users, testserver.WithUser(t.user, t.pass))
					}
					if kind == "IMAP-IMAP" {
						c.dstDC = testserver.StartDovecot(b, users...)
						c.dst = endpoint{addr: proxied(b, addrOf(c.dstDC), nw.lat), ca: c.dstDC.CAFile, tls: useTLS}
					}
					b.StartTimer()
					r := row{name: kind + " " + nw.name}
					// Rotate which tool goes first, against order effects.
					for k := range tools {
						t := tools[(k+iter)%len(tools)]
						if !t.does(kind) {
							continue
						}
						env, args, count := t.prepare(b, c, t)
						res := result{tool: t.name}
						logOf := func(run string) string { return "" }
						if dir := os.Getenv("MAILHAUL_BENCH_TRACE"); dir != "" && t.name == "mailhaul" {
							args = append([]string{args[0], "-vv"}, args[1:]...)
							logOf = func(run string) string {
								return filepath.Join(dir, strings.ReplaceAll(r.name, " ", "-")+"-"+run+".log")
							}
						}
						res.first = runLogged(b, logOf("first"), env, t.bin, args...)
						if got := count(); got != cp.messages {
							b.Errorf("%s %s: destination holds %d messages, want %d (its figures are not comparable)", t.name, r.name, got, cp.messages)
						}
						res.again = runLogged(b, logOf("again"), env, t.bin, args...)
						if got := count(); got != cp.messages {
							b.Errorf("%s %s re-run: destination holds %d messages, want %d", t.name, r.name, got, cp.messages)
						}
						r.results = append(r.results, res)
					}
					iter++
					rows = append(rows, r)
					report(b, cp, r)
				}
			})
		}
	}
	printTable(cp, rows, useTLS)
}

// kept holds every row's destination until the whole benchmark is over.
// This machine's ext4 has no journal, and without one the kernel passes
// over inodes freed in the last 60 s (360 s while their inode table block
// is not yet written back) when it allocates new ones: a destination
// Dovecot creating 10,000 files right after a previous row's 10,000 were
// deleted spent 9 s of system time in find_inode_bit/recently_deleted
// (perf record -a -g) and took twice as long, whichever tool ran. Nothing
// is deleted while tools are being timed; a benchmark started within a few
// minutes of another one's end still pays for that one's deletions.
type kept struct {
	root string
	n    int
}

func newKept(b *testing.B, work string) *kept {
	k := &kept{root: filepath.Join(work, "kept")}
	if err := os.Mkdir(k.root, 0o755); err != nil {
		b.Fatal(err)
	}
	return k
}

// dir returns a new scratch directory that lives as long as the benchmark.
func (k *kept) dir(b *testing.B) string {
	d, err := os.MkdirTemp(k.root, "row")
	if err != nil {
		b.Fatal(err)
	}
	return d
}

// take moves a directory (a stopped server's, for one) under root (the same file
// system: both are under the system's temporary directory), for the
// benchmark's own cleanup to delete at the end.
func (k *kept) take(dir string) error {
	k.n++
	return os.Rename(dir, filepath.Join(k.root, fmt.Sprintf("%s.%d", filepath.Base(dir), k.n)))
}

// settleDisk writes back what earlier runs left dirty, before a timed run
// starts: otherwise the kernel's writeback of the previous tool's 10,000
// files (kept, see kept) runs during the next tool's run and is charged
// to whichever tool comes next.
func settleDisk() { syscall.Sync() }

func (r row) find(tool string) *result {
	for i := range r.results {
		if r.results[i].tool == tool {
			return &r.results[i]
		}
	}
	return nil
}

func report(b *testing.B, cp corpus, r row) {
	mb := float64(cp.bytes) / 1e6
	for _, res := range r.results {
		b.ReportMetric(res.first.el.Seconds(), res.tool+"_s")
		b.ReportMetric(mb/res.first.el.Seconds(), res.tool+"_MB/s")
		b.ReportMetric(res.first.rss, res.tool+"_peakRSS_MiB")
		b.ReportMetric(res.first.cpu, res.tool+"_cpu_s")
		b.ReportMetric(res.again.el.Seconds(), res.tool+"_rerun_s")
	}
}

// printTable prints each row's tools with their figures and the ratios of
// mailhaul's to each peer's (< 1: mailhaul is faster / smaller).
func printTable(cp corpus, rows []row, useTLS bool) {
	defer printMedians(cp, rows)
	mode := "plaintext IMAP"
	if useTLS {
		mode = "IMAPS"
	}
	fmt.Printf("\n%d messages, %.1f MB, %d folders, %s; ratio = mailhaul / tool (< 1: mailhaul faster); CPU rt = mailhaul's CPU / tool's\n", cp.messages, float64(cp.bytes)/1e6, cp.folders, mode)
	printHeader()
	for _, r := range rows {
		var mh *figures
		if res := r.find("mailhaul"); res != nil {
			f := res.figures()
			mh = &f
		}
		for _, res := range r.results {
			printFigures(cp, r.name, res.tool, res.figures(), mh)
		}
	}
}

// figures are one tool's figures in one row: one run's, or medians.
type figures struct{ el, rss, cpu, again float64 }

func (r result) figures() figures {
	return figures{r.first.el.Seconds(), r.first.rss, r.first.cpu, r.again.el.Seconds()}
}

func printHeader() {
	fmt.Printf("%-22s %-9s %8s %7s %7s %8s %7s %6s %7s %8s %7s %7s\n", "row", "tool", "time", "msgs/s", "MB/s", "RSS MiB", "CPU s", "ms/MB", "ratio", "re-run", "ratio", "CPU rt")
}

// printFigures prints one line of a table; mh (mailhaul's figures in the
// same row, or nil) gives the ratios: time, re-run time and CPU.
func printFigures(cp corpus, row, tool string, f figures, mh *figures) {
	mb := float64(cp.bytes) / 1e6
	ratio, rratio, cratio := "", "", ""
	if mh != nil && tool != "mailhaul" {
		ratio = fmt.Sprintf("%.2f", mh.el/f.el)
		rratio = fmt.Sprintf("%.2f", mh.again/f.again)
		if f.cpu > 0 {
			cratio = fmt.Sprintf("%.2f", mh.cpu/f.cpu)
		}
	}
	fmt.Printf("%-22s %-9s %7.2fs %7.0f %7.1f %8.0f %7.2f %6.1f %7s %7.2fs %7s %7s\n", row, tool, f.el, float64(cp.messages)/f.el, mb/f.el, f.rss, f.cpu, 1000*f.cpu/mb, ratio, f.again, rratio, cratio)
}

// printMedians prints, per row and tool, the median of every run's
// figures, and the ratios of mailhaul's medians to each peer's: the table
// to quote (a shared machine makes single runs noisy).
func printMedians(cp corpus, rows []row) {
	type key struct{ row, tool string }
	var order []key
	runs := map[key][]result{}
	for _, r := range rows {
		for _, res := range r.results {
			k := key{r.name, res.tool}
			if _, ok := runs[k]; !ok {
				order = append(order, k)
			}
			runs[k] = append(runs[k], res)
		}
	}
	med := func(v []float64) float64 {
		sort.Float64s(v)
		if len(v)%2 == 1 {
			return v[len(v)/2]
		}
		return (v[len(v)/2-1] + v[len(v)/2]) / 2
	}
	m := map[key]figures{}
	for k, rs := range runs {
		var el, rss, cpu, again []float64
		for _, r := range rs {
			el, rss, cpu, again = append(el, r.first.el.Seconds()), append(rss, r.first.rss), append(cpu, r.first.cpu), append(again, r.again.el.Seconds())
		}
		m[k] = figures{med(el), med(rss), med(cpu), med(again)}
	}
	fmt.Printf("\nmedians of %d runs; ratio = mailhaul / tool\n", len(runs[order[0]]))
	printHeader()
	sort.SliceStable(order, func(i, j int) bool {
		a, b := order[i], order[j]
		if a.row != b.row {
			return a.row < b.row
		}
		if (a.tool == "mailhaul") != (b.tool == "mailhaul") {
			return a.tool == "mailhaul"
		}
		return a.tool < b.tool
	})
	for _, k := range order {
		var mh *figures
		if f, ok := m[key{k.row, "mailhaul"}]; ok {
			mh = &f
		}
		printFigures(cp, k.row, k.tool, m[k], mh)
	}
}
