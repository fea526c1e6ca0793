package conformance

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/mailhaul/mailhaul/internal/faultproxy"
	"github.com/mailhaul/mailhaul/internal/testserver/fakeimap"
)

// resetConfig resets connections after a random 50-400 KB in either
// direction (deterministic for a seed).
func resetConfig(seed int64) faultproxy.Config {
	return faultproxy.Config{
		ResetUp:   faultproxy.RandomBytes(seed, 50_000, 400_000),
		ResetDown: faultproxy.RandomBytes(seed+1, 50_000, 400_000),
	}
}

// LateStoreCase (emulated servers, whose hooks can hold an APPEND): the
// server stores an APPEND only some time after the client that sent it
// died. The binary is killed while the server holds its 5th APPEND and
// resumed at once:
//
//   - stored 300 ms after the kill (within the settling delay, 1 s): the
//     resumed run finds it when it settles; nothing is sent twice;
//   - stored 1.4 s after (past the settling delay, before the reconcile at
//     twice it): the resumed run sends it again, then finds two copies and
//     removes its own (UIDPLUS) or reports the possible duplicate;
//   - stored, then the connection dropped without a reply, in one run:
//     settled in-process, found.
func LateStoreCase(t *testing.T, tf TargetFunc) {
	if tf.Fake == nil {
		t.Skipf("%s: the server has no hooks", tf.Name)
	}
	msgs := CrashCorpus(30, 2000)
	src := writeMaildirSource(t, msgs)
	for _, sc := range []struct {
		name  string
		delay time.Duration
		kill  bool
	}{{"settled", 300 * time.Millisecond, true}, {"reconciled", 1400 * time.Millisecond, true}, {"in-process", 0, false}} {
		t.Run(sc.name, func(t *testing.T) {
			var n atomic.Int32
			held := make(chan struct{}, 1)
			o := *tf.Fake
			o.Hooks.Append = func(ev fakeimap.AppendEvent) fakeimap.AppendAction {
				if n.Add(1) != 5 {
					return fakeimap.AppendAction{}
				}
				if !sc.kill {
					return fakeimap.AppendAction{DropAfterStore: true}
				}
				held <- struct{}{}
				return fakeimap.AppendAction{StoreAfterDisconnect: true, Delay: sc.delay}
			}
			tgt := FakeTarget(t, tf.Name, o)
			args := append(append([]string{"--json", "copy", "--transfers", "1", "--settle-delay", "1s", "--state-dir", t.TempDir()}, tgt.Args...), "maildir:"+src, tgt.Endpoint)
			if sc.kill {
				cmd := exec.Command(Binary(t), args...)
				cmd.Env = append(os.Environ(), tgt.Env...)
				var se bytes.Buffer
				cmd.Stderr = &se
				if err := cmd.Start(); err != nil {
					t.Fatal(err)
				}
				select {
				case <-held:
				case <-time.After(60 * time.Second):
					cmd.Process.Kill()
					t.Fatalf("%s: the 5th APPEND never came\n%s", tgt.Name, se.String())
				}
				cmd.Process.Signal(syscall.SIGKILL)
				cmd.Wait()
			}
			r := Run(t, tgt.Env, args...)
			if r.Code != 0 {
				t.Fatalf("%s: exit %d\n%s", tgt.Name, r.Code, tail(r.Stderr, 3000))
			}
			var rep struct {
				Settled []struct{ How string }
			}
			json.Unmarshal([]byte(r.Stdout), &rep)
			var how []string
			for _, s := range rep.Settled {
				how = append(how, s.How)
			}
			switch {
			case sc.name == "reconciled" && tgt.Q.NoRemove:
				if !strings.Contains(strings.Join(how, " "), "possible-duplicate") {
					t.Errorf("%s: the late copy is not reported: settled %v", tgt.Name, how)
				}
				return // two copies, reported: the documented limit
			case sc.name == "reconciled":
				if !strings.Contains(strings.Join(how, " "), "duplicate-removed") {
					t.Errorf("%s: settled %v, want a removed duplicate", tgt.Name, how)
				}
			default:
				if !strings.Contains(strings.Join(how, " "), "found") {
					t.Errorf("%s: settled %v, want the held copy found", tgt.Name, how)
				}
			}
			checkExactlyOnce(t, tgt, msgs)
		})
	}
}

// ThrottleCase (emulated servers): the destination throttles — Microsoft
// 365's "Suggested Backoff Time" on APPENDs, [THROTTLED], and Gmail's BYE
// for too many connections on a LOGIN — then accepts again. One run
// completes (exit 0), waits as asked, and holds every message once.
func ThrottleCase(t *testing.T, tf TargetFunc) {
	if tf.Fake == nil {
		t.Skipf("%s: the server has no hooks", tf.Name)
	}
	msgs := CrashCorpus(30, 6000)
	src := writeMaildirSource(t, msgs)
	var appends, logins atomic.Int32
	o := *tf.Fake
	o.Hooks.Command = func(ev fakeimap.CommandEvent) fakeimap.Action {
		switch ev.Name {
		case "APPEND":
			switch n := appends.Add(1); {
			case n%7 == 3:
				return fakeimap.Refuse("", "Request is throttled. Suggested Backoff Time: 300 milliseconds")
			case n%7 == 5:
				return fakeimap.Refuse("THROTTLED", "slow down")
			}
		case "LOGIN", "AUTHENTICATE":
			if logins.Add(1) == 3 {
				return fakeimap.Action{Bye: "Too many simultaneous connections. (Failure)"}
			}
		}
		return fakeimap.Action{}
	}
	tgt := FakeTarget(t, tf.Name, o)
	start := time.Now()
	r := Run(t, tgt.Env, append(append([]string{"copy", "--transfers", "3", "--throttle-wait", "400ms", "--state-dir", t.TempDir()}, tgt.Args...), "maildir:"+src, tgt.Endpoint)...)
	if r.Code != 0 {
		t.Fatalf("%s: exit %d\n%s", tgt.Name, r.Code, tail(r.Stderr, 3000))
	}
	checkExactlyOnce(t, tgt, msgs)
	// Every wait after a "Suggested Backoff Time" lasts at least that.
	waits := regexp.MustCompile(`error="in ([0-9.]+m?s): .*Suggested Backoff Time`).FindAllStringSubmatch(r.Stderr, -1)
	if len(waits) == 0 {
		t.Errorf("%s: no wait after a suggested backoff:\n%s", tgt.Name, tail(r.Stderr, 2000))
	}
	for _, w := range waits {
		if d, _ := time.ParseDuration(w[1]); d < 300*time.Millisecond {
			t.Errorf("%s: waited %s, the server asked for 300ms", tgt.Name, d)
		}
	}
	t.Logf("%s: %d APPENDs, %d logins, %s", tgt.Name, appends.Load(), logins.Load(), time.Since(start).Round(time.Millisecond))
}
