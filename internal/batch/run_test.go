package batch

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func openState(t *testing.T) *State {
	t.Helper()
	s, err := Open(StatePath(t.TempDir(), "t", Shard{}), Header{Batch: "t"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func acct(i int, conns ...Conn) *Account {
	return &Account{Row: Row{Line: i + 2}, Key: fmt.Sprintf("k%d", i), Label: fmt.Sprintf("a%d", i), Conns: conns}
}

// TestRunCaps: accounts never hold more connections than the caps allow,
// summed over those running, and as many run at once as the caps allow
// (the first ones wait for each other: a scheduler running fewer would
// hang here, not pass).
func TestRunCaps(t *testing.T) {
	s := openState(t)
	var accounts []*Account
	for i := 0; i < 12; i++ {
		src := fmt.Sprintf("src%d", i%2)
		accounts = append(accounts, acct(i,
			Conn{Server: src, Account: fmt.Sprintf("%s/u%d", src, i), N: 2},
			Conn{Server: "dst", Account: fmt.Sprintf("dst/u%d", i%3), N: 2}))
	}
	// dst allows 6: three accounts at once; an account of dst allows 2:
	// rows 0, 3, 6, 9 (same destination user) never run together.
	lim := Limits{PerServer: 6, PerAccount: 2}
	var mu sync.Mutex
	inUse := map[string]int{}
	maxSeen := 0
	barrier := make(chan struct{})
	started := 0
	c := Config{State: s, Parallel: 8, Limits: lim, Copy: func(ctx context.Context, a *Account) Result {
		mu.Lock()
		for _, c := range a.Conns {
			inUse["s"+c.Server] += c.N
			inUse["a"+c.Account] += c.N
			if inUse["s"+c.Server] > lim.PerServer || inUse["a"+c.Account] > lim.PerAccount {
				t.Errorf("%s: %v over %+v", a.Label, inUse, lim)
			}
		}
		started++
		if started == 3 {
			close(barrier)
		}
		if inUse["sdst"]/2 > maxSeen {
			maxSeen = inUse["sdst"] / 2
		}
		mu.Unlock()
		select {
		case <-barrier:
		case <-time.After(20 * time.Second):
			t.Errorf("%s: the first three accounts did not run at once", a.Label)
		}
		mu.Lock()
		for _, c := range a.Conns {
			inUse["s"+c.Server] -= c.N
			inUse["a"+c.Account] -= c.N
		}
		mu.Unlock()
		return Result{ExitCode: 0, Copied: a.Line}
	}}
	if err := Run(context.Background(), accounts, c); err != nil {
		t.Fatal(err)
	}
	if maxSeen != 3 {
		t.Errorf("at most %d accounts ran at once on dst, want 3", maxSeen)
	}
	for _, a := range accounts {
		if r, _ := s.Get(a.Key); r.Status != Done || r.Copied != a.Line || r.Attempts != 1 {
			t.Errorf("%s: %+v", a.Label, r)
		}
	}
}

// TestRunResume: done accounts are kept (run again with Again only),
// failed, partial and interrupted ones are run again; an account that can
// never fit fails alone; a panic fails its account only.
func TestRunResume(t *testing.T) {
	s := openState(t)
	accounts := []*Account{acct(0), acct(1), acct(2), acct(3), acct(4, Conn{Server: "x", Account: "x/u", N: 5}), acct(5)}
	outcome := map[string]Result{"k0": {ExitCode: 0}, "k1": {ExitCode: 1, Reason: "login failed"}, "k2": {ExitCode: 3, Reason: "1 skipped"}, "k3": {ExitCode: 130}}
	var mu sync.Mutex
	ran := map[string]int{}
	var events []string
	c := Config{State: s, Parallel: 2, Limits: Limits{PerServer: 4}, Version: "vX",
		Copy: func(ctx context.Context, a *Account) Result {
			mu.Lock()
			ran[a.Key]++
			mu.Unlock()
			if a.Key == "k5" {
				panic("boom")
			}
			return outcome[a.Key]
		},
		Event: func(e Event) {
			events = append(events, fmt.Sprintf("%d:%s:%s", e.Kind, e.Account.Key, e.Record.Status))
		},
	}
	if err := Run(context.Background(), accounts, c); err != nil {
		t.Fatal(err)
	}
	want := map[string]Status{"k0": Done, "k1": Failed, "k2": Partial, "k3": Pending, "k4": Failed, "k5": Failed}
	for k, st := range want {
		if r, _ := s.Get(k); r.Status != st || r.Version != "vX" {
			t.Errorf("%s: %+v, want %s", k, r, st)
		}
	}
	if r, _ := s.Get("k4"); !strings.Contains(r.Reason, "needs 5 connections to x (--max-connections-per-host 4)") || ran["k4"] != 0 {
		t.Errorf("unfit account: %+v (ran %d)", r, ran["k4"])
	}
	if r, _ := s.Get("k5"); !strings.Contains(r.Reason, "panic: boom") {
		t.Errorf("panicking account: %+v", r)
	}
	if len(events) != 11 { // 5 started + 6 finished
		t.Errorf("events: %v", events)
	}
	// Second run: only k0 is kept.
	ran = map[string]int{}
	if err := Run(context.Background(), accounts, c); err != nil {
		t.Fatal(err)
	}
	if ran["k0"] != 0 || ran["k1"] != 1 || ran["k2"] != 1 || ran["k3"] != 1 {
		t.Errorf("second run ran %v", ran)
	}
	if r, _ := s.Get("k1"); r.Attempts != 2 {
		t.Errorf("k1 attempts %d", r.Attempts)
	}
	c.Again = true
	ran = map[string]int{}
	Run(context.Background(), accounts, c)
	if ran["k0"] != 1 {
		t.Errorf("--again did not run the done account: %v", ran)
	}
}

// TestRunStop: after Stop no account starts; the running one finishes
// and is recorded.
func TestRunStop(t *testing.T) {
	s := openState(t)
	accounts := []*Account{acct(0), acct(1), acct(2)}
	stop := make(chan struct{})
	ran := 0
	c := Config{State: s, Parallel: 1, Stop: stop, Copy: func(ctx context.Context, a *Account) Result {
		ran++
		close(stop)
		time.Sleep(50 * time.Millisecond) // let the stop be seen first (either order passes)
		return Result{ExitCode: ExitInterrupted}
	}}
	if err := Run(context.Background(), accounts, c); err != nil {
		t.Fatal(err)
	}
	if ran != 1 {
		t.Errorf("%d accounts ran after the stop", ran)
	}
	if r, _ := s.Get("k0"); r.Status != Pending || r.ExitCode != 130 {
		t.Errorf("stopped account: %+v", r)
	}
	// The report counts the others as not run.
	rep := NewReport(accounts, s.Records())
	if rep.Totals.Pending != 3 || rep.Complete() {
		t.Errorf("report totals %+v", rep.Totals)
	}
	csvP, jsonP, err := rep.WriteFiles(filepath.Join(t.TempDir(), "r"))
	if err != nil || !strings.HasSuffix(csvP, ".csv") || !strings.HasSuffix(jsonP, ".json") {
		t.Errorf("WriteFiles: %s %s %v", csvP, jsonP, err)
	}
}
