package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/mailhaul/mailhaul/internal/testserver"
)

func imapLogin(t *testing.T, d *testserver.Dovecot, user string) *imapclient.Client {
	t.Helper()
	c, err := imapclient.DialTLS(d.IMAPSAddr, &imapclient.Options{TLSConfig: d.TLSConfig()})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Login(user, d.Password(user)).Wait(); err != nil {
		t.Fatal(err)
	}
	return c
}

// imapBodies returns every message body of every folder, sorted.
func imapBodies(t *testing.T, d *testserver.Dovecot, user string) map[string][]string {
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
		msgs, err := c.Fetch(imap.SeqSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{sec}}).Collect()
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range msgs {
			out[l.Mailbox] = append(out[l.Mailbox], string(m.FindBodySection(sec)))
		}
		sort.Strings(out[l.Mailbox])
	}
	return out
}

// TestIMAPCrashResume kills an IMAP -> IMAP copy with SIGKILL at 24+
// points (right after intent commits, appends and done commits, at
// several counts) and resumes each time; every completed destination
// account holds every source message exactly once. The corpus includes
// byte-identical twins and messages without a Message-ID, the cases where
// recovery must hash.
func TestIMAPCrashResume(t *testing.T) {
	// An account per round: a run that ends before its kill point (a
	// point past the run's last batch: units of small messages make few
	// and large batches) completes its round.
	const accounts = 24
	var users []testserver.Option
	for i := 0; i < accounts; i++ {
		users = append(users, testserver.WithUser(fmt.Sprintf("r%d", i), fmt.Sprintf("pw-r%d-secret", i)))
	}
	src := testserver.StartDovecot(t)
	dst := testserver.StartDovecot(t, users...)
	sc := imapLogin(t, src, "alice")
	n := seedCrashCorpus(t, sc, 90, 0)
	sc.Close()
	want := imapBodies(t, src, "alice")

	round := 0
	argsFor := func(r int) ([]string, []string) {
		user := fmt.Sprintf("r%d", r)
		env := []string{"MAILHAUL_SRC_PASSWORD=" + src.Password("alice"), "MAILHAUL_DST_PASSWORD=" + dst.Password(user)}
		return env, []string{"copy", "--insecure-plaintext", "--transfers", "3", "--settle-delay", "1s", "--state-dir", t.TempDir(),
			"imap://alice@" + src.IMAPAddr, "imap://" + user + "@" + dst.IMAPAddr}
	}
	var logs []string // stderr of the runs of this round
	check := func(r int) {
		t.Helper()
		got := imapBodies(t, dst, fmt.Sprintf("r%d", r))
		for f, bodies := range want {
			if strings.Join(got[f], "\x00") != strings.Join(bodies, "\x00") {
				t.Errorf("round %d folder %q: %d messages, want %d (lost or duplicated): %s", r, f, len(got[f]), len(bodies), diffBodies(bodies, got[f]))
			}
		}
		if t.Failed() {
			if dir := os.Getenv("MAILHAUL_TEST_TRACE_DIR"); dir != "" {
				// The full -vv wire traces of the failing round.
				f := filepath.Join(dir, fmt.Sprintf("%s-round%d.log", time.Now().Format("150405.000"), r))
				os.WriteFile(f, []byte(strings.Join(logs, "\n----\n")), 0o600)
				t.Logf("runs of round %d: %s", r, f)
			} else {
				t.Logf("runs of round %d:\n%s", r, strings.Join(logs, "\n----\n"))
			}
		}
		logs = nil
	}
	var points []string
	for _, k := range []int{1, 2, 3, 4, 6, 9} {
		points = append(points, fmt.Sprintf("intent:%d", k), fmt.Sprintf("append:%d", 3*k), fmt.Sprintf("done:%d", k), fmt.Sprintf("append:%d", 5*k+1))
	}
	env, args := argsFor(round)
	kills := 0
	for i := 0; kills < 24 && i < 120; i++ {
		p := points[i%len(points)]
		verbose := "-v"
		if os.Getenv("MAILHAUL_TEST_TRACE_DIR") != "" {
			verbose = "-vv"
		}
		r := runMailhaul(t, append(env, "MAILHAUL_TEST_KILL_AT="+p), append([]string{verbose}, args...)...)
		logs = append(logs, fmt.Sprintf("kill at %s: exit %d\n%s", p, r.code, r.stderr))
		switch {
		case r.code == -int(syscall.SIGKILL):
			kills++
		case r.code == 0:
			check(round)
			round++
			if round >= accounts {
				t.Fatal("ran out of destination accounts")
			}
			env, args = argsFor(round)
		default:
			t.Fatalf("kill at %s: exit %d\n%s", p, r.code, r.stderr)
		}
	}
	if kills < 24 {
		t.Fatalf("only %d kills", kills)
	}
	if r := runMailhaul(t, env, args...); r.code != 0 {
		t.Fatalf("final run: exit %d\n%s", r.code, r.stderr)
	}
	check(round)
	t.Logf("%d messages, %d kills, %d rounds", n, kills, round+1)
}

// seedCrashCorpus appends n generated messages to INBOX, Work and
// Work/Clients through c: every 17th without a Message-ID, every 13th
// sharing one Message-ID with different bodies, every 11th twice
// (byte-identical twins), bodies padded by up to pad bytes. It returns the
// number of messages appended.
func seedCrashCorpus(t *testing.T, c *imapclient.Client, n, pad int) int {
	t.Helper()
	date := time.Date(2022, 4, 1, 8, 0, 0, 0, time.UTC)
	for _, f := range []string{"Work", "Work/Clients"} {
		if err := c.Create(f, nil).Wait(); err != nil {
			t.Fatal(err)
		}
	}
	total := 0
	for i := 0; i < n; i++ {
		folder := []string{"INBOX", "Work", "Work/Clients"}[i%3]
		mid := fmt.Sprintf("Message-ID: <crash-%d@example.org>\r\n", i)
		switch {
		case i%17 == 0:
			mid = "" // no Message-ID
		case i%13 == 0:
			mid = "Message-ID: <twin@example.org>\r\n" // same id, different bodies
		}
		body := fmt.Sprintf("From: x@example.org\r\nSubject: crash %d\r\n%s\r\n%s\r\n", i%40, mid, strings.Repeat("line\r\n", i%9))
		if pad > 0 {
			body += strings.Repeat(fmt.Sprintf("padding %d\r\n", i), (i*7919)%pad/12)
		}
		copies := 1
		if i%11 == 0 {
			copies = 2 // byte-identical twins in one folder
		}
		for k := 0; k < copies; k++ {
			cmd := c.Append(folder, int64(len(body)), &imap.AppendOptions{Flags: []imap.Flag{imap.FlagSeen}, Time: date.Add(time.Duration(i) * time.Minute)})
			cmd.Write([]byte(body))
			cmd.Close()
			if _, err := cmd.Wait(); err != nil {
				t.Fatal(err)
			}
			total++
		}
	}
	return total
}

// diffBodies describes which bodies are missing or extra (by first lines).
func diffBodies(want, got []string) string {
	count := map[string]int{}
	for _, b := range want {
		count[b]++
	}
	for _, b := range got {
		count[b]--
	}
	var out []string
	for b, n := range count {
		if n != 0 {
			out = append(out, fmt.Sprintf("%+d x %q", -n, strings.SplitN(b, "\r\n\r\n", 2)[0]))
		}
	}
	sort.Strings(out)
	return strings.Join(out, "; ")
}

// TestIMAPGracefulStop: a first SIGINT in the middle of an IMAP -> IMAP
// copy lets the appends in flight finish: exit 130 with the summary, no
// intent left for recovery (nothing uncertain), and the next run completes
// the copy exactly once.
func TestIMAPGracefulStop(t *testing.T) {
	src := testserver.StartDovecot(t)
	dst := testserver.StartDovecot(t)
	sc := imapLogin(t, src, "alice")
	seedCrashCorpus(t, sc, 60, 2000)
	sc.Close()
	want := imapBodies(t, src, "alice")
	env := []string{"MAILHAUL_SRC_PASSWORD=" + src.Password("alice"), "MAILHAUL_DST_PASSWORD=" + dst.Password("alice")}
	args := []string{"--json", "copy", "--insecure-plaintext", "--transfers", "4", "--state-dir", t.TempDir(),
		"imap://alice@" + src.IMAPAddr, "imap://alice@" + dst.IMAPAddr}
	r := runMailhaul(t, append(env, "MAILHAUL_TEST_KILL_AT=append:10:INT"), args...)
	if r.code != exitInterrupted || !strings.Contains(r.stderr, "copied ") {
		t.Fatalf("exit %d, want 130 with a summary\n%s", r.code, r.stderr)
	}
	r = runMailhaul(t, env, args...)
	if r.code != 0 {
		t.Fatalf("resume: exit %d\n%s", r.code, r.stderr)
	}
	var rep struct {
		Recovered int
		Settled   []struct{ How string }
	}
	json.Unmarshal([]byte(r.stdout), &rep)
	if rep.Recovered != 0 || len(rep.Settled) != 0 {
		t.Errorf("a graceful stop left work for recovery: %+v", rep)
	}
	got := imapBodies(t, dst, "alice")
	for f, bodies := range want {
		if strings.Join(got[f], "\x00") != strings.Join(bodies, "\x00") {
			t.Errorf("folder %q: %d messages, want %d: %s", f, len(got[f]), len(bodies), diffBodies(bodies, got[f]))
		}
	}
}
