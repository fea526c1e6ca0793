package conformance

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
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
