package main

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	pop3 "github.com/knadh/go-pop3"

	"github.com/mailhaul/mailhaul/internal/batch"
	"github.com/mailhaul/mailhaul/internal/testserver"
)

// End-to-end tests of `mailhaul copy pop3(s)://...` against Dovecot's
// pop3d and the fake POP3 server.

// pop3Case is a message as stored in the POP3 maildrop and what the
// copy's internal date must be.
type pop3Case struct {
	name   string
	stored string
	date   time.Time // zero: no date in the header, the copy gets "now"
}

var pop3Corpus = []pop3Case{
	{"dots", "Received: from a by b; Mon, 3 Jun 2019 08:00:00 +0000\r\nReceived: from c by a; Mon, 3 Jun 2019 08:05:00 +0000\r\n" +
		"Date: Sun, 2 Jun 2019 23:00:00 +0000\r\nMessage-ID: <dots@pop3.test>\r\nSubject: dots\r\n\r\n.\r\n..\r\n.leading dot\r\n...\r\nend\r\n",
		time.Date(2019, 6, 3, 8, 5, 0, 0, time.UTC)},
	{"long", "Date: Tue, 4 Jun 2019 09:00:00 +0200\r\nMessage-ID: <long@pop3.test>\r\nSubject: long line\r\n\r\n" + strings.Repeat("L", 10000) + "\r\n",
		time.Date(2019, 6, 4, 7, 0, 0, 0, time.UTC)},
	{"bare-lf", "Date: Wed, 5 Jun 2019 10:00:00 +0000\nMessage-ID: <lf@pop3.test>\nSubject: bare LF\n\n.\n.x\nplain\n",
		time.Date(2019, 6, 5, 10, 0, 0, 0, time.UTC)},
	{"mixed", "Date: Thu, 6 Jun 2019 11:00:00 +0000\r\nMessage-ID: <mixed@pop3.test>\r\nSubject: mixed\r\n\r\ncrlf\r\nbare\nagain crlf\r\n",
		time.Date(2019, 6, 6, 11, 0, 0, 0, time.UTC)},
	{"no-final-eol", "Date: Fri, 7 Jun 2019 12:00:00 +0000\r\nMessage-ID: <noeol@pop3.test>\r\nSubject: no final line end\r\n\r\nlast line",
		time.Date(2019, 6, 7, 12, 0, 0, 0, time.UTC)},
	{"no-date", "Message-ID: <nodate@pop3.test>\r\nSubject: no date at all\r\n\r\nbody\r\n", time.Time{}},
	{"utf8", "Received: from x by y; Sat, 8 Jun 2019 13:00:00 +0000\r\nMessage-ID: <utf8@pop3.test>\r\nSubject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n\r\n\xc3\x84\xc3\x96\xc3\x9c \xe2\x82\xac\r\n",
		time.Date(2019, 6, 8, 13, 0, 0, 0, time.UTC)},
	{"empty-body", "Date: Sun, 9 Jun 2019 14:00:00 +0000\r\nMessage-ID: <empty@pop3.test>\r\nSubject: empty\r\n\r\n", time.Date(2019, 6, 9, 14, 0, 0, 0, time.UTC)},
}

var bareLF = regexp.MustCompile(`([^\r]|^)\n`)

// pop3Served is what a POP3 server sends for a stored message: every line
// end CRLF (Dovecot converts bare LF), a final CRLF added when missing.
func pop3Served(stored string) string {
	s := bareLF.ReplaceAllString(stored, "$1\r\n")
	s = bareLF.ReplaceAllString(s, "$1\r\n") // adjacent bare LFs
	if !strings.HasSuffix(s, "\r\n") {
		s += "\r\n"
	}
	return s
}

func seedCorpus(t *testing.T, d *testserver.Dovecot, user string, corpus []pop3Case) {
	t.Helper()
	var msgs [][]byte
	for _, c := range corpus {
		msgs = append(msgs, []byte(c.stored))
	}
	d.SeedMaildir(t, user, "", msgs, func(i int) time.Time { return time.Date(2020, 1, 1, 0, i, 0, 0, time.UTC) })
}

// tlsDialer lets go-pop3 connect with the test server's CA.
type tlsDialer struct {
	addr string
	cfg  *tls.Config
}

func (d tlsDialer) Dial(string, string) (net.Conn, error) { return tls.Dial("tcp", d.addr, d.cfg) }

// imapMsg is a message read back over IMAP.
type imapMsg struct {
	body  string
	date  time.Time
	flags []string
}

func imapFolder(t *testing.T, d *testserver.Dovecot, user, folder string) []imapMsg {
	t.Helper()
	c := imapLogin(t, d, user)
	defer c.Close()
	sd, err := c.Select(folder, &imap.SelectOptions{ReadOnly: true}).Wait()
	if err != nil {
		t.Fatalf("select %q: %v", folder, err)
	}
	if sd.NumMessages == 0 {
		return nil
	}
	sec := &imap.FetchItemBodySection{Peek: true}
	msgs, err := c.Fetch(imap.SeqSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{Flags: true, InternalDate: true, BodySection: []*imap.FetchItemBodySection{sec}}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	var out []imapMsg
	for _, m := range msgs {
		var fl []string
		for _, f := range m.Flags {
			if !strings.EqualFold(string(f), `\Recent`) {
				fl = append(fl, string(f))
			}
		}
		out = append(out, imapMsg{body: string(m.FindBodySection(sec)), date: m.InternalDate, flags: fl})
	}
	return out
}

// byMessageID indexes bodies by their Message-ID line.
var midRe = regexp.MustCompile(`(?i)message-id: *(<[^>]*>)`)

func midOf(body string) string {
	if m := midRe.FindStringSubmatch(body); m != nil {
		return m[1]
	}
	return ""
}

func checkDate(t *testing.T, what string, got, want time.Time, before, after time.Time) {
	t.Helper()
	if want.IsZero() {
		if got.Before(before.Add(-2*time.Second)) || got.After(after.Add(2*time.Second)) {
			t.Errorf("%s: date %s, want the time of the copy (%s..%s)", what, got, before, after)
		}
		return
	}
	if !got.Equal(want) {
		t.Errorf("%s: date %s, want %s", what, got.UTC(), want)
	}
}

// TestPOP3CLI copies a Dovecot POP3 maildrop into a Maildir (pop3s://)
// and into an IMAP account of the same Dovecot (pop3:// with STLS): every
// message byte for byte as the server serves it, internal dates from the
// header, no flags (or \Seen with --mark-seen), the server untouched, the
// password nowhere in the -vv trace or the state, a second run copying
// nothing.
func TestPOP3CLI(t *testing.T) {
	const pw = "Pop-Secret-8812"
	d := testserver.StartDovecot(t, testserver.WithUser("alice", pw), testserver.WithUser("bob", "Bob-Pw-1"), testserver.WithUser("carol", "Carol-Pw-2"))
	seedCorpus(t, d, "alice", pop3Corpus)
	before := countFiles(t, d.MaildirPath("alice"))
	want := map[string]pop3Case{}
	for _, c := range pop3Corpus {
		want[midOf(c.stored)] = c
	}

	// The expectation agrees with go-pop3, an independent client.
	pc, err := pop3.New(pop3.Opt{Host: "127.0.0.1", Port: 1, Dialer: tlsDialer{d.POP3SAddr, d.TLSConfig()}}).NewConn()
	if err != nil {
		t.Fatal(err)
	}
	if err := pc.Auth("alice", pw); err != nil {
		t.Fatal(err)
	}
	for i := range pop3Corpus {
		b, err := pc.RetrRaw(i + 1)
		if err != nil {
			t.Fatal(err)
		}
		c := want[midOf(b.String())]
		if b.String() != pop3Served(c.stored) {
			t.Fatalf("go-pop3 reads %q for %s, the test expects %q", b.String(), c.name, pop3Served(c.stored))
		}
	}
	pc.Quit()

	env := []string{"MAILHAUL_SRC_PASSWORD=" + pw}
	t.Run("maildir", func(t *testing.T) {
		dst, state := t.TempDir(), t.TempDir()
		args := []string{"copy", "-vv", "--state-dir", state, "--ca-file", d.CAFile, "pop3s://alice@" + d.POP3SAddr, "maildir:" + dst}
		start := time.Now()
		r := runMailhaul(t, env, args...)
		end := time.Now()
		if r.code != 0 {
			t.Fatalf("exit %d\n%s", r.code, r.stderr)
		}
		got := readTree(t, dst)
		if len(got["INBOX"]) != len(pop3Corpus) || len(got) != 1 {
			t.Fatalf("destination: %d folders, %d in INBOX", len(got), len(got["INBOX"]))
		}
		for _, m := range got["INBOX"] {
			c, ok := want[midOf(string(m.body))]
			if !ok || string(m.body) != pop3Served(c.stored) {
				t.Errorf("%s: got %q, want %q", c.name, m.body, pop3Served(c.stored))
			}
			if len(m.flags) != 0 {
				t.Errorf("%s: flags %v, want none", c.name, m.flags)
			}
			checkDate(t, c.name, m.mtime, c.date, start, end)
		}
		if !strings.Contains(r.stderr, "AUTH PLAIN") || !strings.Contains(r.stderr, "C: RETR") || strings.Contains(r.stderr, pw) || leaks(r.stderr, pw) {
			t.Errorf("-vv trace without redacted login, or with the password:\n%.4000s", r.stderr)
		}
		if hits := grepTree(t, state, pw); len(hits) > 0 {
			t.Errorf("password in state files %v", hits)
		}
		if n := countFiles(t, d.MaildirPath("alice")); n != before {
			t.Errorf("the server holds %d messages, had %d", n, before)
		}
		r = runMailhaul(t, env, append([]string{"copy"}, args[2:]...)...)
		if r.code != 0 || !strings.Contains(r.stderr, fmt.Sprintf("copied 0 messages (0 B), %d already there", len(pop3Corpus))) {
			t.Errorf("second run: exit %d\n%s", r.code, r.stderr)
		}
	})
	bobState := t.TempDir()
	t.Run("imap-stls-to-folder", func(t *testing.T) {
		state := bobState
		start := time.Now()
		r := runMailhaul(t, append(env, "MAILHAUL_DST_PASSWORD=Bob-Pw-1"), "copy", "--state-dir", state, "--ca-file", d.CAFile,
			"--to-folder", "POP3 import", "pop3://alice@"+d.POP3Addr, "imaps://bob@"+d.IMAPSAddr)
		end := time.Now()
		if r.code != 0 {
			t.Fatalf("exit %d\n%s", r.code, r.stderr)
		}
		if n := imapCount(t, d, "bob"); n["INBOX"] != 0 || n["POP3 import"] != len(pop3Corpus) {
			t.Fatalf("bob's folders: %v", n)
		}
		for _, m := range imapFolder(t, d, "bob", "POP3 import") {
			c := want[midOf(m.body)]
			if m.body != pop3Served(c.stored) {
				t.Errorf("%s: got %q", c.name, m.body)
			}
			if len(m.flags) != 0 {
				t.Errorf("%s: flags %v, want none (unread)", c.name, m.flags)
			}
			checkDate(t, c.name, m.date, c.date, start, end)
		}
	})
	// check proves the copy by the checkpoint (UIDL -> UID), then by
	// content alone (a POP3 listing has no Message-ID: every body is
	// hashed on both sides); a message deleted from the copy is missing.
	t.Run("check", func(t *testing.T) {
		denv := append(env, "MAILHAUL_DST_PASSWORD=Bob-Pw-1")
		base := []string{"check", "--state-dir", bobState, "--ca-file", d.CAFile, "--to-folder", "POP3 import", "pop3://alice@" + d.POP3Addr, "imaps://bob@" + d.IMAPSAddr}
		for _, extra := range [][]string{nil, {"--no-checkpoint"}} {
			args := append(append([]string{}, base[:1]...), append(extra, base[1:]...)...)
			r := runMailhaul(t, denv, args...)
			if r.code != 0 || !strings.Contains(r.stdout, fmt.Sprint(len(pop3Corpus))) {
				t.Errorf("check %v: exit %d\n%s\n%s", extra, r.code, r.stdout, r.stderr)
			}
			if extra == nil && !strings.Contains(r.stdout, "by the checkpoint") {
				t.Errorf("check did not find the copy's checkpoint:\n%s\n%s", r.stdout, r.stderr)
			}
		}
		// Without --to-folder the copies are looked for in INBOX.
		r := runMailhaul(t, denv, "check", "--no-checkpoint", "--state-dir", t.TempDir(), "--ca-file", d.CAFile, "pop3://alice@"+d.POP3Addr, "imaps://bob@"+d.IMAPSAddr)
		if r.code != exitMissing {
			t.Errorf("check against the wrong folder: exit %d, want %d\n%s", r.code, exitMissing, r.stdout)
		}
	})
	t.Run("imap-mark-seen", func(t *testing.T) {
		r := runMailhaul(t, append(env, "MAILHAUL_DST_PASSWORD=Carol-Pw-2"), "copy", "--state-dir", t.TempDir(), "--ca-file", d.CAFile,
			"--mark-seen", "pop3s://alice@"+d.POP3SAddr, "imaps://carol@"+d.IMAPSAddr)
		if r.code != 0 {
			t.Fatalf("exit %d\n%s", r.code, r.stderr)
		}
		msgs := imapFolder(t, d, "carol", "INBOX")
		if len(msgs) != len(pop3Corpus) {
			t.Fatalf("%d messages", len(msgs))
		}
		for _, m := range msgs {
			if strings.Join(m.flags, " ") != `\Seen` {
				t.Errorf("--mark-seen: flags %v", m.flags)
			}
		}
	})
	t.Run("usage", func(t *testing.T) {
		for _, tc := range []struct {
			args []string
			msg  string
		}{
			{[]string{"pop3s://alice:" + pw + "@" + d.POP3SAddr, "maildir:" + t.TempDir()}, "password in the URL is refused"},
			{[]string{"--keep-pop3-uidl", "pop3s://alice@" + d.POP3SAddr, "imaps://bob@" + d.IMAPSAddr}, "needs a maildir: destination"},
			{[]string{"--mark-seen", "maildir:" + t.TempDir(), "maildir:" + t.TempDir()}, "for a POP3 source"},
			{[]string{"--delete-after-copy", "maildir:" + t.TempDir(), "maildir:" + t.TempDir()}, "cannot delete messages"},
			{[]string{"--delete-older-than", "soon", "pop3s://alice@" + d.POP3SAddr, "maildir:" + t.TempDir()}, "not a duration"},
			{[]string{"--src-auth", "cram-md5", "pop3s://alice@" + d.POP3SAddr, "maildir:" + t.TempDir()}, "want user, plain"},
		} {
			r := runMailhaul(t, env, append([]string{"copy", "--state-dir", t.TempDir(), "--ca-file", d.CAFile}, tc.args...)...)
			if r.code != exitUsage || !strings.Contains(r.stderr, tc.msg) || strings.Contains(r.stderr, pw) {
				t.Errorf("%v: exit %d\n%s", tc.args, r.code, r.stderr)
			}
		}
	})
	t.Run("wrong-password", func(t *testing.T) {
		r := runMailhaul(t, []string{"MAILHAUL_SRC_PASSWORD=not-the-password"}, "copy", "--state-dir", t.TempDir(), "--ca-file", d.CAFile,
			"pop3s://alice@"+d.POP3SAddr, "maildir:"+t.TempDir())
		if r.code != exitFatal || !strings.Contains(r.stderr, "[AUTH]") || !strings.Contains(r.stderr, "alice") || strings.Contains(r.stderr, "not-the-password") {
			t.Errorf("exit %d\n%s", r.code, r.stderr)
		}
	})
	t.Run("ls", func(t *testing.T) {
		r := runMailhaul(t, env, "ls", "--ca-file", d.CAFile, "pop3s://alice@"+d.POP3SAddr)
		if r.code != 0 || !strings.Contains(r.stdout, "INBOX") || !strings.Contains(r.stdout, fmt.Sprint(len(pop3Corpus))) {
			t.Errorf("exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
		}
	})
}

// runMailhaulRSS runs the binary under GNU time when installed, for a
// peak RSS of the child alone (see bench/imap_bench_test.go runChild: a
// vfork'ed child inherits the parent's high-water mark in its rusage).
func runMailhaulRSS(t *testing.T, env []string, args ...string) (result, int64) {
	t.Helper()
	if _, err := os.Stat("/usr/bin/time"); err != nil {
		r := runMailhaul(t, env, args...)
		return r, r.maxRSS
	}
	f := filepath.Join(t.TempDir(), "rss")
	cmd := exec.Command("/usr/bin/time", append([]string{"-f", "%M", "-o", f, buildMailhaul(t)}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	var so, se bytes.Buffer
	cmd.Stdout, cmd.Stderr = &so, &se
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(f)
	var kib int64
	fmt.Sscan(lastLineOf(string(data)), &kib)
	return result{code: code, stdout: so.String(), stderr: se.String()}, kib << 10
}

func lastLineOf(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}

// TestPOP3FakeCLI runs the binary against the fake POP3 server: a 30 MB
// message is streamed (peak RSS of the process stays near the 64 MiB
// memory budget of the README, far below what buffering it would cost),
// and a server that stalls in the middle of a RETR is given up on after
// --io-timeout and the RETR retried on a new session.
func TestPOP3FakeCLI(t *testing.T) {
	const size = 30 << 20
	line := []byte(strings.Repeat("r", 998) + "\r\n")
	gen := func(w io.Writer) error {
		if _, err := w.Write([]byte("Message-ID: <big@fake>\r\nSubject: big\r\n\r\n")); err != nil {
			return err
		}
		for n := 0; n < size/len(line); n++ {
			if _, err := w.Write(line); err != nil {
				return err
			}
		}
		return nil
	}
	h := sha256.New()
	gen(h)
	bigSum := fmt.Sprintf("%x", h.Sum(nil))
	bigSize := int64(len("Message-ID: <big@fake>\r\nSubject: big\r\n\r\n") + size/len(line)*len(line))
	msgs := []testserver.FakeMessage{{UIDL: "big", Gen: gen, Size: bigSize}}
	for i := 0; i < 20; i++ {
		msgs = append(msgs, testserver.FakeMessage{UIDL: fmt.Sprintf("s%d", i), Body: []byte(fmt.Sprintf("Message-ID: <s%d@fake>\r\nSubject: %d\r\n\r\n.body %d\r\n", i, i, i))})
	}
	f := testserver.StartFakePOP3(t, testserver.FakePOP3Options{}, msgs)
	f.StallDuringRetr("s7", 1)
	dst := t.TempDir()
	start := time.Now()
	r, rss := runMailhaulRSS(t, []string{"MAILHAUL_SRC_PASSWORD=secret"}, "copy", "--insecure-plaintext", "--io-timeout", "1s",
		"--state-dir", t.TempDir(), "--temp-dir", t.TempDir(), "pop3://alice@"+f.Addr, "maildir:"+dst)
	if r.code != 0 {
		t.Fatalf("exit %d\n%s", r.code, r.stderr)
	}
	if el := time.Since(start); el > 90*time.Second {
		t.Errorf("took %s: the stalled RETR was waited for", el)
	}
	got := readTree(t, dst)["INBOX"]
	if len(got) != len(msgs) {
		t.Fatalf("%d messages copied, want %d", len(got), len(msgs))
	}
	for _, m := range got {
		if midOf(string(m.body)) == "<big@fake>" {
			if s := fmt.Sprintf("%x", sha256.Sum256(m.body)); s != bigSum {
				t.Error("30 MB message differs")
			}
		}
	}
	if !strings.Contains(r.stderr, "did not answer for 1s") {
		t.Errorf("the stall is not reported:\n%s", r.stderr)
	}
	if st := f.Stats(); st.Logins < 2 {
		t.Errorf("no new session after the stall: %+v", st)
	}
	t.Logf("peak RSS %d MiB copying a 30 MB message", rss>>20)
	if rss > 72<<20 {
		t.Errorf("peak RSS %d MiB while copying a 30 MB message: the body must stream (README: bodies in memory stay under 64 MiB)", rss>>20)
	}
}

// serverMessages returns the Message-IDs of the messages in user's
// Maildir on d (what the POP3 server still holds).
func serverMessages(t *testing.T, d *testserver.Dovecot, user string) map[string]int {
	t.Helper()
	out := map[string]int{}
	for _, sub := range []string{"cur", "new"} {
		dir := filepath.Join(d.MaildirPath(user), sub)
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			b, err := os.ReadFile(filepath.Join(dir, e.Name()))
			if err != nil {
				continue // expunged meanwhile
			}
			out[midOf(string(b))]++
		}
	}
	return out
}

// TestPOP3CrashResume kills POP3 -> Maildir copies with SIGKILL at 24
// or more points: after intent commits, appends, syncs and done commits of the
// engine, and, with --delete-after-copy, after DELEs, just before QUIT and
// after QUIT was answered. After every kill both sides are checked: a
// message gone from the server is in the destination. After every
// completed round the destination holds every message exactly once, and
// with --delete-after-copy the server holds nothing.
func TestPOP3CrashResume(t *testing.T) {
	const pw = "Crash-Pw-5150"
	d := testserver.StartDovecot(t, testserver.WithUser("alice", pw))
	const n = 60
	var corpus [][]byte
	all := map[string]bool{}
	for i := 0; i < n; i++ {
		mid := fmt.Sprintf("<crash-%d@pop3.test>", i)
		all[mid] = true
		corpus = append(corpus, []byte(fmt.Sprintf("Date: Mon, 1 Jul 2019 10:%02d:00 +0000\nMessage-ID: %s\nSubject: crash %d\n\n%s.\n..\n", i%60, mid, i, strings.Repeat("c\n", i%13))))
	}
	seed := func() { d.SeedMaildir(t, "alice", "", corpus, nil) }
	seed()
	env := []string{"MAILHAUL_SRC_PASSWORD=" + pw}

	type phase struct {
		name   string
		delete bool
		points []string
	}
	phases := []phase{
		{"keep", false, []string{"intent:1", "append:1", "sync:1", "done:1", "intent:3", "append:7", "sync:3", "done:4", "append:20", "done:9", "append:41", "intent:8"}},
		{"delete", true, []string{"intent:2", "append:4", "sync:2", "done:2", "done:9", "append:33", "dele:1", "dele:7", "dele:30", "quit:1", "deleted:1", "dele:59",
			"append:2", "sync:5", "dele:2", "quit:1", "deleted:1", "done:5"}},
	}
	kills := 0
	var killed []string
	for _, ph := range phases {
		round := 0
		var dst, state string
		newRound := func() {
			dst, state = t.TempDir(), t.TempDir()
			round++
		}
		newRound()
		argv := func() []string {
			a := []string{"copy", "--insecure-plaintext", "--transfers", "2", "--state-dir", state}
			if ph.delete {
				a = append(a, "--delete-after-copy")
			}
			return append(a, "pop3://alice@"+d.POP3Addr, "maildir:"+dst)
		}
		// check: nothing lost, ever; nothing twice in the destination.
		check := func(when string, complete bool) {
			t.Helper()
			server := serverMessages(t, d, "alice")
			copies := map[string]int{}
			for _, m := range readTree(t, dst)["INBOX"] {
				copies[midOf(string(m.body))]++
			}
			for mid := range all {
				if server[mid] == 0 && copies[mid] == 0 {
					t.Fatalf("%s %s: message %s is neither on the server nor in the destination", ph.name, when, mid)
				}
				if copies[mid] > 1 {
					t.Fatalf("%s %s: message %s copied %d times", ph.name, when, mid, copies[mid])
				}
				if complete && copies[mid] != 1 {
					t.Fatalf("%s %s: message %s missing from a completed copy", ph.name, when, mid)
				}
				if complete && ph.delete && server[mid] != 0 {
					t.Fatalf("%s %s: message %s still on the server after --delete-after-copy", ph.name, when, mid)
				}
			}
		}
		// Points are counts of steps: whether one is reached depends on
		// how the batches formed, so the points are cycled through until
		// the phase has its kills.
		phaseKills := 0
		for i := 0; phaseKills < 12 && i < 10*len(ph.points); i++ {
			p := ph.points[i%len(ph.points)]
			r := runMailhaul(t, append(env, "MAILHAUL_TEST_KILL_AT="+p), argv()...)
			switch r.code {
			case -int(syscall.SIGKILL):
				kills++
				phaseKills++
				killed = append(killed, ph.name+"/"+p)
				check("after kill at "+p, false)
			case 0:
				// The point lies beyond this round's end: it completed.
				check(fmt.Sprintf("round %d completed (kill point %s not reached)", round, p), true)
				if ph.delete {
					seed()
				}
				newRound()
			default:
				t.Fatalf("%s kill at %s: exit %d\n%s", ph.name, p, r.code, r.stderr)
			}
		}
		if phaseKills < 12 {
			t.Fatalf("%s: only %d runs were killed", ph.name, phaseKills)
		}
		r := runMailhaul(t, env, argv()...)
		if r.code != 0 {
			t.Fatalf("%s final run: exit %d\n%s", ph.name, r.code, r.stderr)
		}
		check("final run", true)
		if ph.delete {
			seed()
		}
	}
	t.Logf("%d kills: %s", kills, strings.Join(killed, " "))
	for _, p := range []string{"delete/dele:7", "delete/quit:1", "delete/deleted:1", "delete/sync:2"} {
		if !strings.Contains(" "+strings.Join(killed, " ")+" ", " "+p+" ") {
			t.Errorf("kill point %s never reached", p)
		}
	}
}

// TestPOP3OAuth2CLI reads a POP3 maildrop with XOAUTH2 (token from a file)
// and OAUTHBEARER (token from a command) against Dovecot's oauth2 passdb;
// the token shows nowhere, not even in the -vv trace.
func TestPOP3OAuth2CLI(t *testing.T) {
	o := testserver.StartOAuth2Server(t)
	d := testserver.StartDovecot(t, testserver.WithUser("alice", "Alice-Pw-9"), testserver.WithOAuth2(o.URL), testserver.WithoutAuthDelay())
	seedCorpus(t, d, "alice", pop3Corpus[:3])
	tok := o.Issue("alice")
	tokFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokFile, []byte(tok+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ mech, flag, arg string }{
		{"xoauth2", "--src-oauth-token-file", tokFile},
		{"oauthbearer", "--src-oauth-token-cmd", "cat '" + tokFile + "'"},
	} {
		t.Run(tc.mech, func(t *testing.T) {
			dst, state := t.TempDir(), t.TempDir()
			r := runMailhaul(t, []string{"MAILHAUL_SRC_PASSWORD="}, "copy", "-vv", "--state-dir", state, "--ca-file", d.CAFile,
				"--src-auth", tc.mech, tc.flag, tc.arg, "pop3s://alice@"+d.POP3SAddr, "maildir:"+dst)
			if r.code != 0 {
				t.Fatalf("exit %d\n%s", r.code, r.stderr)
			}
			if got := len(readTree(t, dst)["INBOX"]); got != 3 {
				t.Errorf("%d messages copied", got)
			}
			if !strings.Contains(r.stderr, "AUTH "+strings.ToUpper(tc.mech)) || leaks(r.stderr, tok) || leaks(r.stdout, tok) {
				t.Errorf("trace without the SASL exchange, or with the token:\n%.3000s", r.stderr)
			}
			if hits := grepTree(t, state, tok); len(hits) > 0 {
				t.Errorf("token in state files %v", hits)
			}
		})
	}
}

// TestBatchPOP3Passwords: a batch row's POP3 source logs in with the
// row's own password (source_password_env), not with the batch's
// $MAILHAUL_SRC_PASSWORD, and a refused one says which column it came
// from.
func TestBatchPOP3Passwords(t *testing.T) {
	d := testserver.StartDovecot(t, testserver.WithUser("alice", "Alice-Pop-1"), testserver.WithUser("carol", "Carol-Pop-2"), testserver.WithoutAuthDelay())
	seedCorpus(t, d, "alice", pop3Corpus)
	seedCorpus(t, d, "carol", pop3Corpus[:2])
	dir := t.TempDir()
	file := filepath.Join(dir, "accounts.csv")
	csv := "source,destination,source_password_env\n" +
		"pop3s://alice@" + d.POP3SAddr + ",maildir:" + filepath.Join(dir, "alice") + ",ALICE_PW\n" +
		"pop3s://carol@" + d.POP3SAddr + ",maildir:" + filepath.Join(dir, "carol") + ",CAROL_PW\n"
	if err := os.WriteFile(file, []byte(csv), 0o600); err != nil {
		t.Fatal(err)
	}
	env := []string{"ALICE_PW=Alice-Pop-1", "CAROL_PW=wrong-for-carol", "MAILHAUL_SRC_PASSWORD=Carol-Pop-2"}
	r := runMailhaul(t, env, "batch", "--json", "--ca-file", d.CAFile, "--state-dir", t.TempDir(), file)
	if r.code != exitFatal {
		t.Fatalf("exit %d, want 1 (carol's row fails)\n%s", r.code, r.stderr)
	}
	var alice, carol batch.Record
	for _, rec := range parseReport(t, r).Accounts {
		switch {
		case strings.Contains(rec.Account, "alice"):
			alice = rec
		case strings.Contains(rec.Account, "carol"):
			carol = rec
		}
	}
	if alice.Status != batch.Done || alice.Copied != len(pop3Corpus) {
		t.Errorf("alice: %+v, want done with %d copied", alice, len(pop3Corpus))
	}
	if carol.Status != batch.Failed || !strings.Contains(carol.Reason, "$CAROL_PW (the row's source_password_env)") {
		t.Errorf("carol: %+v, want failed with a reason naming $CAROL_PW", carol)
	}
	if got, err := os.ReadDir(filepath.Join(dir, "carol", "cur")); err == nil && len(got) > 0 {
		t.Errorf("carol's row logged in with the batch's password: %d messages copied", len(got))
	}
}

// TestPOP3GracefulStopKeepsUnseen: a first Ctrl-C during a POP3 copy
// stops the RETRs in flight without breaking the session, which then
// ends with RSET and QUIT: Dovecot, which marks what a session RETRieved
// \Seen when the session ends, marks nothing. The resumed run copies the
// rest, and the maildrop is still unread.
func TestPOP3GracefulStopKeepsUnseen(t *testing.T) {
	const pw, n = "Stop-Pw-8080", 300
	d := unreadMaildrop(t, pw, "stop", n, 10000)
	unread := func(when string) {
		t.Helper()
		for _, m := range imapFolder(t, d, "alice", "INBOX") {
			if len(m.flags) != 0 {
				t.Fatalf("%s: %s is %v on the server, want unread", when, midOf(m.body), m.flags)
			}
		}
	}
	env := []string{"MAILHAUL_SRC_PASSWORD=" + pw}
	dst, state := t.TempDir(), t.TempDir()
	args := []string{"copy", "--insecure-plaintext", "--state-dir", state, "pop3://alice@" + d.POP3Addr, "maildir:" + dst}
	r := runMailhaul(t, append(env, "MAILHAUL_TEST_KILL_AT=append:3:INT"), args...)
	if r.code != exitInterrupted {
		t.Fatalf("exit %d, want 130\n%s", r.code, r.stderr)
	}
	if strings.Contains(r.stderr, "RSET before QUIT") {
		t.Errorf("the stop broke the session:\n%s", r.stderr)
	}
	unread("after the stop")
	if r = runMailhaul(t, env, args...); r.code != 0 {
		t.Fatalf("resume: exit %d\n%s", r.code, r.stderr)
	}
	unread("after the resumed run")
	files, _ := filepath.Glob(filepath.Join(dst, "cur", "*"))
	newFiles, _ := filepath.Glob(filepath.Join(dst, "new", "*"))
	if len(files)+len(newFiles) != n {
		t.Errorf("destination holds %d messages, want %d", len(files)+len(newFiles), n)
	}
}

// TestPOP3GracefulStopSlowLink: on a slow link (--bwlimit 1M) a graceful
// stop still leaves every message unread. Up to 64 RETRs of 400 KB queued
// behind the one arriving took 25 s to drain, longer than the drain
// allows, and the session was cut before RSET; the RETRs in flight are
// now bounded in bytes, so what is left to drain arrives in time.
func TestPOP3GracefulStopSlowLink(t *testing.T) {
	const pw = "Slow-Pw-8081"
	d := unreadMaildrop(t, pw, "slow", 40, 40000)
	env := []string{"MAILHAUL_SRC_PASSWORD=" + pw}
	dst, state := t.TempDir(), t.TempDir()
	args := []string{"copy", "--insecure-plaintext", "--bwlimit", "1M", "--state-dir", state, "pop3://alice@" + d.POP3Addr, "maildir:" + dst}
	r := runMailhaul(t, append(env, "MAILHAUL_TEST_KILL_AT=append:2:INT"), args...)
	if r.code != exitInterrupted {
		t.Fatalf("exit %d, want 130\n%s", r.code, r.stderr)
	}
	if strings.Contains(r.stderr, "RSET before QUIT") {
		t.Errorf("the stop broke the session:\n%s", r.stderr)
	}
	for _, m := range imapFolder(t, d, "alice", "INBOX") {
		if len(m.flags) != 0 {
			t.Fatalf("after the stop: %s is %v on the server, want unread", midOf(m.body), m.flags)
		}
	}
}

// unreadMaildrop starts a Dovecot whose user alice (password pw) has n
// unread messages of lines lines each, their Message-IDs tagged tag.
func unreadMaildrop(t *testing.T, pw, tag string, n, lines int) *testserver.Dovecot {
	t.Helper()
	d := testserver.StartDovecot(t, testserver.WithUser("alice", pw))
	var corpus [][]byte
	for i := 0; i < n; i++ {
		corpus = append(corpus, []byte(fmt.Sprintf("Message-ID: <%s-%d@pop3.test>\nSubject: %s %d\n\n%s", tag, i, tag, i, strings.Repeat("body line\n", lines))))
	}
	d.SeedMaildir(t, "alice", "", corpus, nil)
	return d
}
