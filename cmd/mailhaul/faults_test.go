package main

import (
	"fmt"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/mailhaul/mailhaul/internal/faultproxy"
	"github.com/mailhaul/mailhaul/internal/testserver"
)

// imapState returns, per folder, every message as "flags|date|body"
// (sorted), to compare a copy with its source exactly: bytes, flags and
// internal dates.
func imapState(t *testing.T, d *testserver.Dovecot, user string) map[string][]string {
	t.Helper()
	c := imapLogin(t, d, user)
	defer c.Close()
	list, err := c.List("", "*", nil).Collect()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	sec := &imap.FetchItemBodySection{Peek: true}
	for _, l := range list {
		sd, err := c.Select(l.Mailbox, &imap.SelectOptions{ReadOnly: true}).Wait()
		if err != nil || sd.NumMessages == 0 {
			continue
		}
		msgs, err := c.Fetch(imap.SeqSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{Flags: true, InternalDate: true, BodySection: []*imap.FetchItemBodySection{sec}}).Collect()
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range msgs {
			var fl []string
			for _, f := range m.Flags {
				if !strings.EqualFold(string(f), `\Recent`) {
					fl = append(fl, string(f))
				}
			}
			sort.Strings(fl)
			out[l.Mailbox] = append(out[l.Mailbox], fmt.Sprintf("%v|%d|%s", fl, m.InternalDate.Unix(), m.FindBodySection(sec)))
		}
		sort.Strings(out[l.Mailbox])
	}
	return out
}

func sameState(t *testing.T, want, got map[string][]string) {
	t.Helper()
	for f, ms := range want {
		if strings.Join(got[f], "\x00") != strings.Join(ms, "\x00") {
			t.Errorf("folder %q: %d messages, want %d (lost, duplicated, or flags/dates differ): %s", f, len(got[f]), len(ms), diffBodies(ms, got[f]))
		}
	}
}

// TestIMAPFaults copies an IMAP account into another through a proxy that
// injects one kind of fault per subtest, in one run each: connection
// resets at random byte counts (source, destination, both; both
// directions), latency with jitter and a bandwidth limit, connections
// that go silent (half-open, detected by --io-timeout), and the
// destination server killed and restarted mid-run. Every run must end with
// exit 0 and the destination must hold every source message exactly once,
// with its flags and internal date.
func TestIMAPFaults(t *testing.T) {
	var users []testserver.Option
	for i := 0; i < 8; i++ {
		users = append(users, testserver.WithUser(fmt.Sprintf("f%d", i), fmt.Sprintf("pw-f%d-secret", i)))
	}
	src := testserver.StartDovecot(t)
	sc := imapLogin(t, src, "alice")
	seedCrashCorpus(t, sc, 150, 40000)
	sc.Close()
	want := imapState(t, src, "alice")
	seed := time.Now().UnixNano()
	if s := os.Getenv("MAILHAUL_TEST_SEED"); s != "" {
		fmt.Sscan(s, &seed)
	}
	t.Logf("seed %d (MAILHAUL_TEST_SEED repeats it)", seed)
	resets := faultproxy.Config{ResetUp: faultproxy.RandomBytes(seed, 30_000, 400_000), ResetDown: faultproxy.RandomBytes(seed+1, 30_000, 400_000)}
	n := 0
	for _, tc := range []struct {
		name     string
		src, dst *faultproxy.Config
		restart  bool
		args     []string
		sign     string // in stderr: the fault was met
	}{
		{name: "resets-source", src: &resets, sign: "retrying"},
		{name: "resets-destination", dst: &resets, sign: "retrying"},
		{name: "resets-both", src: &resets, dst: &resets, sign: "retrying"},
		{name: "latency-jitter-bandwidth", src: &faultproxy.Config{Latency: 3 * time.Millisecond, Jitter: 4 * time.Millisecond, BytesPerSec: 4 << 20},
			dst: &faultproxy.Config{Latency: 3 * time.Millisecond, Jitter: 4 * time.Millisecond, BytesPerSec: 4 << 20}},
		{name: "silent-connections", src: &faultproxy.Config{Stall: stallEvery(5, 20_000)}, dst: &faultproxy.Config{Stall: stallEvery(4, 50_000)},
			args: []string{"--io-timeout", "2s"}, sign: "did not answer for 2s"},
		// Each destination connection is held to 512 KiB/s so that the copy (3.2
		// MiB) is still under way when the server is killed: unthrottled
		// it can end (0.2 s) before the watcher below sees 20 messages.
		{name: "server-restart", dst: &faultproxy.Config{BytesPerSec: 512 << 10}, restart: true, sign: "retrying"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dst := testserver.StartDovecot(t, users...)
			user := fmt.Sprintf("f%d", n)
			n++
			srcAddr, dstAddr := src.IMAPAddr, dst.IMAPAddr
			if tc.src != nil {
				p, err := faultproxy.Start(srcAddr, *tc.src)
				if err != nil {
					t.Fatal(err)
				}
				defer p.Close()
				srcAddr = p.Addr()
			}
			if tc.dst != nil {
				p, err := faultproxy.Start(dstAddr, *tc.dst)
				if err != nil {
					t.Fatal(err)
				}
				defer p.Close()
				dstAddr = p.Addr()
			}
			env := []string{"MAILHAUL_SRC_PASSWORD=" + src.Password("alice"), "MAILHAUL_DST_PASSWORD=" + dst.Password(user)}
			args := append([]string{"copy", "--insecure-plaintext", "--transfers", "4", "--settle-delay", "1s", "--state-dir", t.TempDir()}, tc.args...)
			args = append(args, "imap://alice@"+srcAddr, "imap://"+user+"@"+dstAddr)
			var restarted chan error
			if tc.restart {
				// Kill the destination once the copy is under way, bring it
				// back two seconds later; the run must get through it.
				restarted = make(chan error, 1)
				go func() {
					for i := 0; i < 400 && countMessages(dst, user) <= 20; i++ {
						time.Sleep(25 * time.Millisecond)
					}
					dst.Kill()
					time.Sleep(2 * time.Second)
					restarted <- dst.Start()
				}()
			}
			r := runMailhaul(t, env, args...)
			if restarted != nil {
				if err := <-restarted; err != nil {
					t.Fatalf("restart dovecot: %v", err)
				}
			}
			if r.code != 0 {
				t.Fatalf("exit %d\n%s", r.code, tail(r.stderr, 4000))
			}
			if !strings.Contains(r.stderr, tc.sign) {
				t.Errorf("the run did not meet the fault (no %q in its log):\n%s", tc.sign, tail(r.stderr, 2000))
			}
			sameState(t, want, imapState(t, dst, user))
		})
	}
}

// countMessages is how many messages user's account holds now, or 0 when
// the server cannot be reached.
func countMessages(d *testserver.Dovecot, user string) int {
	c, err := imapclient.DialTLS(d.IMAPSAddr, &imapclient.Options{TLSConfig: d.TLSConfig()})
	if err != nil {
		return 0
	}
	defer c.Close()
	if c.Login(user, d.Password(user)).Wait() != nil {
		return 0
	}
	n := 0
	list, _ := c.List("", "*", nil).Collect()
	for _, l := range list {
		if st, err := c.Status(l.Mailbox, &imap.StatusOptions{NumMessages: true}).Wait(); err == nil && st.NumMessages != nil {
			n += int(*st.NumMessages)
		}
	}
	return n
}

// stallEvery makes every nth connection go silent after size bytes.
func stallEvery(nth int, size int64) func(int) int64 {
	return func(conn int) int64 {
		if conn%nth == nth-1 {
			return size
		}
		return 0
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

// TestSlowLinkLargeMessage: a 20 MB message into IMAP over a link of
// 1 MB/s completes (go-imap's own fixed deadlines per literal are replaced
// by a watchdog that follows progress, so only a link that stops, not one
// that is slow, ends an APPEND).
func TestSlowLinkLargeMessage(t *testing.T) {
	dst := testserver.StartDovecot(t)
	p, err := faultproxy.Start(dst.IMAPAddr, faultproxy.Config{BytesPerSec: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	srcDir := t.TempDir()
	body := "Message-ID: <slow@x>\nSubject: twenty megabytes\n\n" + strings.Repeat(strings.Repeat("z", 99)+"\n", 200000)
	os.MkdirAll(srcDir+"/cur", 0o755)
	os.MkdirAll(srcDir+"/new", 0o755)
	os.WriteFile(srcDir+"/cur/1.M1.slow:2,S", []byte(body), 0o644)
	r := runMailhaul(t, []string{"MAILHAUL_DST_PASSWORD=" + dst.Password("alice")}, "copy", "--insecure-plaintext", "--io-timeout", "10s",
		"--state-dir", t.TempDir(), "maildir:"+srcDir, "imap://alice@"+p.Addr())
	if r.code != 0 {
		t.Fatalf("exit %d\n%s", r.code, tail(r.stderr, 3000))
	}
	got := imapBodies(t, dst, "alice")["INBOX"]
	if len(got) != 1 || got[0] != strings.ReplaceAll(body, "\n", "\r\n") {
		t.Fatalf("destination holds %d messages (want the one, in CRLF form)", len(got))
	}
}
