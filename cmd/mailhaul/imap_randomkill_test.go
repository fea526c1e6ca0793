package main

import (
	"bytes"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mailhaul/mailhaul/internal/delayproxy"
	"github.com/mailhaul/mailhaul/internal/testserver"
)

// startMailhaul starts the binary without waiting for it.
func startMailhaul(t *testing.T, env []string, args ...string) (*exec.Cmd, *bytes.Buffer) {
	t.Helper()
	cmd := exec.Command(buildMailhaul(t), args...)
	cmd.Env = append(os.Environ(), env...)
	var se bytes.Buffer
	cmd.Stderr = &se
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd, &se
}

// TestIMAPRandomKills kills an IMAP -> IMAP copy with SIGKILL at 30+
// random wall-clock moments within the time an uninterrupted copy takes
// (seeded, the seed is logged), both servers
// behind a proxy that adds 10 ms each way, and resumes after each kill at
// once: the destination then holds every source message exactly once. At
// random moments an APPEND is in flight far more often than at the step
// hooks of TestIMAPCrashResume, and the proxy keeps delivering what the
// dead process had sent: the late-commit race of settle.go.
func TestIMAPRandomKills(t *testing.T) {
	seed := time.Now().UnixNano()
	if s := os.Getenv("MAILHAUL_TEST_SEED"); s != "" {
		fmt.Sscan(s, &seed)
	}
	t.Logf("seed %d (MAILHAUL_TEST_SEED to repeat)", seed)
	rng := rand.New(rand.NewSource(seed))
	var users []testserver.Option
	// Rounds that finish before their kill use up accounts: enough for
	// a copy fast enough to finish most of them.
	for i := 0; i < 64; i++ {
		users = append(users, testserver.WithUser(fmt.Sprintf("r%d", i), fmt.Sprintf("pw-r%d-secret", i)))
	}
	src := testserver.StartDovecot(t)
	dst := testserver.StartDovecot(t, users...)
	sc := imapLogin(t, src, "alice")
	n := seedCrashCorpus(t, sc, 300, 30000)
	sc.Close()
	want := imapBodies(t, src, "alice")
	ps, err := delayproxy.Start(src.IMAPAddr, 10*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	defer ps.Close()
	pd, err := delayproxy.Start(dst.IMAPAddr, 10*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	defer pd.Close()
	// Each round copies into a fresh destination account, killed at
	// random moments until a run completes; then it is checked.
	round := 0
	var env, args []string
	next := func() {
		user := fmt.Sprintf("r%d", round)
		env = []string{"MAILHAUL_SRC_PASSWORD=" + src.Password("alice"), "MAILHAUL_DST_PASSWORD=" + dst.Password(user)}
		args = []string{"copy", "--insecure-plaintext", "--transfers", "4", "--settle-delay", "1s", "--state-dir", t.TempDir(),
			"imap://alice@" + ps.Addr(), "imap://" + user + "@" + pd.Addr()}
	}
	var logs []string
	check := func() {
		t.Helper()
		got := imapBodies(t, dst, fmt.Sprintf("r%d", round))
		for f, bodies := range want {
			if strings.Join(got[f], "\x00") != strings.Join(bodies, "\x00") {
				t.Errorf("round %d folder %q: %d messages, want %d (lost or duplicated): %s", round, f, len(got[f]), len(bodies), diffBodies(bodies, got[f]))
			}
		}
		if t.Failed() {
			t.Fatalf("runs of round %d:\n%s", round, strings.Join(logs, "\n----\n"))
		}
		logs = nil
		round++
		if round >= len(users) {
			t.Fatal("ran out of destination accounts")
		}
		next()
	}
	next()
	// The kill moments are drawn from the time a whole copy takes here
	// (the first round, not killed): a fixed window made most runs of a
	// faster build finish before their kill, and the rounds ran out.
	start := time.Now()
	if r := runMailhaul(t, env, args...); r.code != 0 {
		t.Fatalf("uninterrupted run: exit %d\n%s", r.code, r.stderr)
	}
	full := time.Since(start)
	t.Logf("an uninterrupted copy takes %s", full.Round(time.Millisecond))
	check()
	kills := 0
	for kills < 30 {
		cmd, se := startMailhaul(t, env, args...)
		wait := full/20 + time.Duration(rng.Int63n(int64(full*6/10)+1))
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("run failed: %v\n%s", err, se)
			}
			logs = append(logs, fmt.Sprintf("finished before the kill at %s:\n%s", wait, se))
			check()
			continue
		case <-time.After(wait):
		}
		cmd.Process.Signal(syscall.SIGKILL)
		<-done
		kills++
		logs = append(logs, fmt.Sprintf("killed after %s:\n%s", wait, se))
	}
	if r := runMailhaul(t, env, args...); r.code != 0 {
		t.Fatalf("final run: exit %d\n%s", r.code, r.stderr)
	}
	check()
	t.Logf("%d messages, %d kills, %d rounds", n, kills, round)
}
