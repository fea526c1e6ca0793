package bench

import (
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mailhaul/mailhaul/internal/delayproxy"
	"github.com/mailhaul/mailhaul/internal/testserver"
)

// POP3 benchmark: mailhaul against mpop and getmail6 on the same POP3
// maildrop (a Dovecot pop3d), in one run, POP3 -> Maildir and POP3 -> a
// Dovecot account, on loopback and through internal/delayproxy.
//
//	go test -run '^$' -bench POP3 -benchtime 1x ./bench
//
// Environment:
//
//	MAILHAUL_BENCH_POP3_MESSAGES  corpus size (default 5000)
//	MAILHAUL_BENCH_DELAY          one-way latency of the "rtt" rows (default 10ms: 20 ms round trip)
//	MAILHAUL_BENCH_TRANSFERS      --transfers given to mailhaul (default: its own default)
//	MAILHAUL_BENCH_TOOLS          comma-separated subset of mailhaul,mpop,getmail6 (default: all)
//
// A peer tool that is not installed is skipped (apt-get install mpop
// getmail6). How each tool puts mail into the Dovecot account of the
// POP3 -> IMAP rows: mailhaul APPENDs over IMAP (through the delay proxy in
// the rtt rows, like its POP3 connection); mpop, which has no IMAP
// delivery, and getmail6 run Dovecot's LDA (dovecot-lda) for each
// message: they write into the destination server locally, without the
// added latency. The POP3 side of every tool goes
// through the same proxy. The source Dovecot runs with
// pop3_no_flag_updates = yes, so no tool's RETRs change the maildrop the
// next one reads.

const pop3BenchPass = "bench-pop3-pw"

// seedPOP3 writes n messages into user's INBOX on d (sizes 1 KiB to 64
// KiB, one in 500 a few MiB), with S= and W= in the file names as a
// Dovecot delivery writes them. It returns the corpus in POP3 terms (CRLF
// sizes).
func seedPOP3(b *testing.B, d *testserver.Dovecot, user string, n int) corpus {
	b.Helper()
	root := d.MaildirPath(user)
	for _, s := range []string{"cur", "new", "tmp"} {
		if err := os.MkdirAll(filepath.Join(root, s), 0o700); err != nil {
			b.Fatal(err)
		}
	}
	rng := rand.New(rand.NewSource(7))
	line := strings.Repeat("The quick brown fox jumps over the lazy dog. ", 2)[:76] + "\n"
	c := corpus{folders: 1}
	buf := make([]byte, 0, 4<<20)
	for i := 0; i < n; i++ {
		size := 1024 + rng.Intn(15<<10)
		if i%10 == 0 {
			size += rng.Intn(48 << 10)
		}
		if i%500 == 499 {
			size = 1<<20 + rng.Intn(3<<20)
		}
		buf = buf[:0]
		buf = fmt.Appendf(buf, "Return-Path: <s%d@example.org>\nReceived: from mx.example.org by pop.example.org; Mon, 1 Jan 2018 00:%02d:00 +0000\nFrom: Sender %d <s%d@example.org>\nTo: me@example.net\nSubject: pop3 benchmark message %d\nMessage-ID: <%d.%d@pop3bench.example>\nDate: Mon, 1 Jan 2018 00:00:00 +0000\n\n", i, i%60, i, i, i, i, rng.Int63())
		for len(buf) < size {
			buf = append(buf, line...)
		}
		lines := int64(strings.Count(string(buf), "\n"))
		date := time.Unix(1514764800+int64(i)*61, 0)
		p := filepath.Join(root, "cur", fmt.Sprintf("%d.M%dP77.pop3bench,S=%d,W=%d:2,", date.Unix(), i, len(buf), int64(len(buf))+lines))
		if err := os.WriteFile(p, buf, 0o600); err != nil {
			b.Fatal(err)
		}
		os.Chtimes(p, date, date)
		c.messages++
		c.bytes += int64(len(buf)) + lines
	}
	if err := d.Chown(user); err != nil {
		b.Fatal(err)
	}
	return c
}

// warmPOP3 reads the whole maildrop once over POP3 (Dovecot builds its
// index and caches, the files are in the page cache), so the first tool
// measured pays nothing the others do not.
func warmPOP3(b *testing.B, bin string, d *testserver.Dovecot) {
	b.Helper()
	dir := b.TempDir()
	runChild(b, []string{"MAILHAUL_SRC_PASSWORD=" + pop3BenchPass}, bin, "copy", "--insecure-plaintext", "--state-dir", filepath.Join(dir, "s"),
		"pop3://alice@"+d.POP3Addr, "maildir:"+filepath.Join(dir, "m"))
}

type pop3Tool struct {
	name string
	// run copies the maildrop; err reports a peer tool that failed (its
	// figures are then not shown: the row says why).
	run func(b *testing.B, dir, popAddr string, dst *testserver.Dovecot, dstAddr string) (el time.Duration, rss float64, got int, err error)
}

// tryChild is runChild for peer tools: a failing run is returned, not
// fatal (getmail6 6.18 can lose the SIGCHLD of its delivery child and
// give up after 60 s: "waiting child pid N timed out").
func tryChild(b *testing.B, name string, args ...string) (time.Duration, float64, error) {
	b.Helper()
	rssFile := filepath.Join(b.TempDir(), "rss")
	cmd := exec.Command(name, args...)
	if _, err := os.Stat("/usr/bin/time"); err == nil {
		cmd = exec.Command("/usr/bin/time", append([]string{"-f", "%M", "-o", rssFile, name}, args...)...)
	}
	settleDisk()
	start := time.Now()
	out, err := cmd.CombinedOutput()
	el := time.Since(start)
	if err != nil {
		return el, 0, fmt.Errorf("%s: %v: %s", filepath.Base(name), err, strings.TrimSpace(lastLine(string(out))))
	}
	rss := float64(cmd.ProcessState.SysUsage().(*syscall.Rusage).Maxrss) / 1024
	if data, err := os.ReadFile(rssFile); err == nil {
		var kib float64
		if _, err := fmt.Sscan(strings.TrimSpace(lastLine(string(data))), &kib); err == nil {
			rss = kib / 1024
		}
	}
	return el, rss, nil
}

func BenchmarkPOP3(b *testing.B) {
	n := 5000
	if s := os.Getenv("MAILHAUL_BENCH_POP3_MESSAGES"); s != "" {
		fmt.Sscan(s, &n)
	}
	delay := 10 * time.Millisecond
	if s := os.Getenv("MAILHAUL_BENCH_DELAY"); s != "" {
		var err error
		if delay, err = time.ParseDuration(s); err != nil {
			b.Fatalf("MAILHAUL_BENCH_DELAY: %v", err)
		}
	}
	work := b.TempDir()
	hold := newKept(b, work)
	bin := buildMailhaul(b, work)
	src := testserver.StartDovecot(b, testserver.WithUser("alice", pop3BenchPass), testserver.WithConfig("protocol pop3 {\n  pop3_no_flag_updates = yes\n}"))
	setup := time.Now()
	cp := seedPOP3(b, src, "alice", n)
	warmPOP3(b, bin, src)
	b.Logf("corpus: %d messages, %.1f MB in INBOX (seeded and read once in %s)", cp.messages, float64(cp.bytes)/1e6, time.Since(setup).Round(time.Millisecond))

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
	hostPort := func(addr string) (string, string) {
		h, p, _ := strings.Cut(addr, ":")
		return h, p
	}

	mailhaul := pop3Tool{"mailhaul", func(b *testing.B, dir, popAddr string, dst *testserver.Dovecot, dstAddr string) (time.Duration, float64, int, error) {
		args := []string{"copy", "--insecure-plaintext", "--state-dir", filepath.Join(dir, "mh-state")}
		if s := os.Getenv("MAILHAUL_BENCH_TRANSFERS"); s != "" {
			args = append(args, "--transfers", s)
		}
		args = append(args, "pop3://alice@"+popAddr)
		var count func() int
		if dst != nil {
			args = append(args, "imap://mh@"+dstAddr)
			count = func() int { return imapTotal(b, dst, "mh", "mh-pw") }
		} else {
			out := filepath.Join(dir, "mh-maildir")
			args = append(args, "maildir:"+out)
			count = func() int { return maildirTotal(out) }
		}
		el, rss := runChild(b, []string{"MAILHAUL_SRC_PASSWORD=" + pop3BenchPass, "MAILHAUL_DST_PASSWORD=mh-pw"}, bin, args...)
		return el, rss, count(), nil
	}}
	var tools []pop3Tool
	tools = append(tools, mailhaul)
	if mpop, err := exec.LookPath("mpop"); err == nil {
		tools = append(tools, pop3Tool{"mpop", func(b *testing.B, dir, popAddr string, dst *testserver.Dovecot, dstAddr string) (time.Duration, float64, int, error) {
			host, port := hostPort(popAddr)
			var delivery string
			var count func() int
			if dst != nil {
				delivery = fmt.Sprintf("mda \"/usr/lib/dovecot/dovecot-lda -c %s -d mpop -f %%F\"", dst.ConfFile)
				count = func() int { return imapTotal(b, dst, "mpop", "mpop-pw") }
			} else {
				out := filepath.Join(dir, "mpop-maildir")
				for _, s := range []string{"cur", "new", "tmp"} {
					os.MkdirAll(filepath.Join(out, s), 0o700)
				}
				delivery = "maildir " + out
				count = func() int { return maildirTotal(out) }
			}
			conf := fmt.Sprintf("account bench\nhost %s\nport %s\nuser alice\npassword %s\ntls off\nauth plain\ndelivery %s\nkeep on\nuidls_file %s\n",
				host, port, pop3BenchPass, delivery, filepath.Join(dir, "mpop-uidls"))
			rc := filepath.Join(dir, "mpoprc")
			if err := os.WriteFile(rc, []byte(conf), 0o600); err != nil {
				b.Fatal(err)
			}
			el, rss, err := tryChild(b, mpop, "-q", "-C", rc, "bench")
			return el, rss, count(), err
		}})
	} else {
		b.Log("mpop not installed (apt-get install mpop): its rows are skipped")
	}
	if getmail, err := exec.LookPath("getmail"); err == nil {
		tools = append(tools, pop3Tool{"getmail6", func(b *testing.B, dir, popAddr string, dst *testserver.Dovecot, dstAddr string) (time.Duration, float64, int, error) {
			host, port := hostPort(popAddr)
			var dest string
			var count func() int
			if dst != nil {
				dest = fmt.Sprintf("type = MDA_external\npath = /usr/lib/dovecot/dovecot-lda\narguments = (\"-c\", \"%s\", \"-d\", \"gm\")\nallow_root_commands = true\n", dst.ConfFile)
				count = func() int { return imapTotal(b, dst, "gm", "gm-pw") }
			} else {
				// Outside b.TempDir (mode 0700): getmail may have to
				// deliver as another user (below).
				top, err := os.MkdirTemp("", "gm-maildir")
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { hold.take(top) })
				out := top + "/"
				for _, s := range []string{"cur", "new", "tmp"} {
					os.MkdirAll(filepath.Join(out, s), 0o700)
				}
				dest = "type = Maildir\npath = " + out + "\n"
				if os.Geteuid() == 0 {
					// getmail refuses to deliver as root: as nobody, into a
					// directory nobody owns.
					u, err := user.Lookup("nobody")
					if err != nil {
						b.Fatal(err)
					}
					uid, _ := strconv.Atoi(u.Uid)
					gid, _ := strconv.Atoi(u.Gid)
					filepath.Walk(out, func(p string, _ os.FileInfo, _ error) error { return os.Chown(p, uid, gid) })
					dest += "user = nobody\n"
				}
				count = func() int { return maildirTotal(out) }
			}
			conf := fmt.Sprintf("[retriever]\ntype = SimplePOP3Retriever\nserver = %s\nport = %s\nusername = alice\npassword = %s\n\n[destination]\n%s\n[options]\nread_all = true\ndelete = false\nverbose = 0\n",
				host, port, pop3BenchPass, dest)
			gdir := filepath.Join(dir, "getmail")
			os.MkdirAll(gdir, 0o700)
			if err := os.WriteFile(filepath.Join(gdir, "getmailrc"), []byte(conf), 0o600); err != nil {
				b.Fatal(err)
			}
			el, rss, err := tryChild(b, getmail, "--getmaildir="+gdir, "--rcfile=getmailrc", "--quiet")
			return el, rss, count(), err
		}})
	} else {
		b.Log("getmail6 not installed (apt-get install getmail6): its rows are skipped")
	}

	if only := os.Getenv("MAILHAUL_BENCH_TOOLS"); only != "" {
		var keep []pop3Tool
		for _, t := range tools {
			if strings.Contains(","+only+",", ","+t.name+",") {
				keep = append(keep, t)
			}
		}
		tools = keep
	}
	type cell struct {
		tool string
		el   time.Duration
		rss  float64
		err  error
	}
	type prow struct {
		name  string
		cells []cell
	}
	var rows []prow
	nets := []struct {
		name string
		lat  time.Duration
	}{{"loopback", 0}, {fmt.Sprintf("rtt%s", 2*delay), delay}}
	iter := 0
	for _, nw := range nets {
		popAddr := proxied(b, src.POP3Addr, nw.lat)
		for _, kind := range []string{"POP3-Maildir", "POP3-IMAP"} {
			b.Run(kind+"/"+nw.name, func(b *testing.B) {
				for i := 0; i < b.N; i++ {
					b.StopTimer()
					dir := hold.dir(b)
					var dst *testserver.Dovecot
					dstAddr := ""
					if kind == "POP3-IMAP" {
						dst = testserver.StartDovecot(b, testserver.WithRemove(hold.take), testserver.WithUser("mh", "mh-pw"), testserver.WithUser("mpop", "mpop-pw"), testserver.WithUser("gm", "gm-pw"))
						dstAddr = proxied(b, dst.IMAPAddr, nw.lat)
					}
					b.StartTimer()
					r := prow{name: kind + " " + nw.name}
					// Rotate the order of the tools, against order effects.
					for k := range tools {
						t := tools[(k+iter)%len(tools)]
						el, rss, got, err := t.run(b, dir, popAddr, dst, dstAddr)
						if err == nil && got != cp.messages {
							err = fmt.Errorf("destination holds %d messages, want %d", got, cp.messages)
						}
						if err != nil {
							b.Logf("%s %s failed after %s: %v", t.name, r.name, el.Round(time.Millisecond), err)
						}
						r.cells = append(r.cells, cell{t.name, el, rss, err})
					}
					iter++
					rows = append(rows, r)
					for _, c := range r.cells {
						if c.err == nil {
							b.ReportMetric(float64(cp.messages)/c.el.Seconds(), c.tool+"_msgs/s")
						}
					}
				}
			})
		}
	}
	mb := float64(cp.bytes) / 1e6
	fmt.Printf("\n%d messages, %.1f MB (POP3 sizes), plaintext POP3; ratio = tool time / mpop time (> 1: slower than mpop)\n", cp.messages, mb)
	fmt.Printf("%-24s %-9s %9s %9s %8s %9s %7s\n", "row", "tool", "time", "msgs/s", "MB/s", "RSS MiB", "ratio")
	for _, r := range rows {
		var mpopEl time.Duration
		for _, c := range r.cells {
			if c.tool == "mpop" && c.err == nil {
				mpopEl = c.el
			}
		}
		for _, name := range []string{"mailhaul", "mpop", "getmail6"} {
			for _, c := range r.cells {
				if c.tool != name {
					continue
				}
				if c.err != nil {
					fmt.Printf("%-24s %-9s failed after %.1fs: %.70s\n", r.name, c.tool, c.el.Seconds(), c.err)
					continue
				}
				ratio := ""
				if mpopEl > 0 {
					ratio = fmt.Sprintf("%.2f", c.el.Seconds()/mpopEl.Seconds())
				}
				fmt.Printf("%-24s %-9s %8.2fs %9.0f %8.1f %9.0f %7s\n", r.name, c.tool, c.el.Seconds(), float64(cp.messages)/c.el.Seconds(), mb/c.el.Seconds(), c.rss, ratio)
			}
		}
	}
}
