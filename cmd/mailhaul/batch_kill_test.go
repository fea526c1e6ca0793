package main

import (
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mailhaul/mailhaul/internal/batch"
)

// present counts the messages in every account's destination.
func (e *batchEnv) present(t *testing.T) map[string]int {
	t.Helper()
	out := map[string]int{}
	for _, a := range e.accounts {
		out[a.name] = sumCounts(imapCount(t, a.dst, a.dstUser))
	}
	return out
}

// addMail delivers n new messages to every account's source (INBOX).
func (e *batchEnv) addMail(t *testing.T, n int, rng *rand.Rand) {
	t.Helper()
	for i, a := range e.accounts {
		var bodies []string
		for m := 0; m < n; m++ {
			bodies = append(bodies, batchBody(i, a.total+m, rng))
		}
		root := a.maildir
		if a.src != nil {
			root = a.src.MaildirPath(a.srcUser)
		}
		for j, b := range bodies {
			when := time.Now().Add(time.Duration(-j) * time.Minute)
			p := filepath.Join(root, "cur", fmt.Sprintf("%d.M%dP%d.new:2,", when.Unix(), a.total+j, os.Getpid()))
			if err := os.WriteFile(p, []byte(b), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if a.src != nil {
			if err := a.src.Chown(a.srcUser); err != nil {
				t.Fatal(err)
			}
		}
		a.want["INBOX"] = append(a.want["INBOX"], bodies...)
		sort.Strings(a.want["INBOX"])
		a.total += n
	}
}

// records loads one batch state by account name (none before a first run).
func records(t *testing.T, path string) map[string]batch.Record {
	t.Helper()
	out := map[string]batch.Record{}
	_, recs, _, err := batch.Load(path)
	if err != nil {
		if os.IsNotExist(err) {
			return out
		}
		t.Fatal(err)
	}
	for _, r := range recs {
		out[r.Account] = r
	}
	return out
}

// TestBatchKills kills a batch of 12 accounts (IMAP -> IMAP and Maildir
// -> IMAP, --parallel 4) with SIGKILL: first at exact steps (after the
// 50th append of the process, with accounts half copied; right after an
// account's copy ended, before the batch recorded it), then at random
// moments (seeded, logged; MAILHAUL_TEST_SEED repeats a run), and runs it
// again after each kill. Every account a run finishes is checked: it
// copied at most what its destination lacked when that run started (no
// account is copied again from zero); at least one account was finished
// by a run that found it half copied; an account whose copy had ended
// before the kill copies nothing; and at the end every destination holds
// every message exactly once.
func TestBatchKills(t *testing.T) {
	seed := time.Now().UnixNano()
	if s := os.Getenv("MAILHAUL_TEST_SEED"); s != "" {
		fmt.Sscan(s, &seed)
	}
	t.Logf("seed %d (MAILHAUL_TEST_SEED to repeat)", seed)
	rng := rand.New(rand.NewSource(seed))
	e := newBatchEnv(t, 12, 6, 60, seed)
	file := e.writeCSV(t)
	statePath := batch.StatePath(e.state, "accounts", batch.Shard{})
	args := e.args(file, "--parallel", "4")
	totals := map[string]int{}
	for _, a := range e.accounts {
		totals[a.name] = a.total
	}

	resumed, finishedWhole, runs := 0, 0, 0
	var logs []string
	// invoke runs the batch once (killed by the kill hook env, or after
	// wait when wait > 0) and checks the accounts it finished. It reports
	// whether the run ended by itself with exit 0.
	invoke := func(env []string, wait time.Duration, what string) bool {
		t.Helper()
		runs++
		before := e.present(t)
		prev := records(t, statePath)
		cmd, se := startMailhaul(t, append(append([]string{}, e.env...), env...), args...)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		var err error
		killed := false
		if wait > 0 {
			select {
			case err = <-done:
			case <-time.After(wait):
				cmd.Process.Signal(syscall.SIGKILL)
				err = <-done
				killed = true
			}
		} else {
			err = <-done
		}
		code := cmd.ProcessState.ExitCode()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			code = -int(ws.Signal())
			killed = true
		}
		logs = append(logs, fmt.Sprintf("run %d (%s): exit %d, killed %v\n%s", runs, what, code, killed, se))
		if !killed && err != nil && code != 0 {
			t.Fatalf("run %d (%s) failed: exit %d\n%s", runs, what, code, se)
		}
		now := records(t, statePath)
		for name, r := range now {
			if r.Status != batch.Done || r.Attempts == prev[name].Attempts {
				continue // not finished by this run
			}
			if lacked := totals[name] - before[name]; r.Copied > lacked {
				t.Errorf("run %d: %s copied %d messages, but its destination lacked only %d when the run started (copied again from zero?)", runs, name, r.Copied, lacked)
			}
			if r.Copied+r.Already > totals[name] {
				t.Errorf("run %d: %s copied %d + %d already there of %d", runs, name, r.Copied, r.Already, totals[name])
			}
			if before[name] > 0 && before[name] < totals[name] {
				resumed++
			}
			if prev[name].Status == batch.Pending && before[name] == totals[name] {
				finishedWhole++
				if r.Copied != 0 {
					t.Errorf("run %d: %s was complete before the run but copied %d", runs, name, r.Copied)
				}
			}
		}
		return !killed && code == 0
	}

	if invoke([]string{"MAILHAUL_TEST_KILL_AT=append:50"}, 0, "kill after the 50th append") {
		t.Fatal("the first run was not killed")
	}
	if invoke([]string{"MAILHAUL_TEST_KILL_AT=account-end:2"}, 0, "kill after an account's copy, before it is recorded") {
		t.Fatal("the second run was not killed")
	}
	// That account is complete in its destination and Running (now
	// pending) in the state: the next run must copy nothing for it.
	complete := 0
	p := e.present(t)
	for name, r := range records(t, statePath) {
		if r.Status == batch.Pending && p[name] == totals[name] {
			complete++
		}
	}
	if complete == 0 {
		t.Error("no account was complete but unrecorded after the account-end kill")
	}
	// Random kills until a run finishes; then new mail arrives in every
	// source and --again picks it up, killed at random again (3 rounds).
	kills := 0
	for round := 0; round < 4; round++ {
		if round > 0 {
			e.addMail(t, 20, rng)
			for _, a := range e.accounts {
				totals[a.name] = a.total
			}
			args = e.args(file, "--parallel", "4", "--again")
		}
		finished := false
		for i := 0; i < 4 && !finished; i++ {
			wait := time.Duration(100+rng.Intn(1200)) * time.Millisecond
			finished = invoke(nil, wait, fmt.Sprintf("round %d: random kill after %s", round, wait))
			if !finished {
				kills++
			}
		}
		if !finished && !invoke(nil, 0, fmt.Sprintf("round %d: final run", round)) {
			t.Fatalf("round %d: the final run did not finish", round)
		}
		e.check(t, nil)
	}
	if t.Failed() {
		t.Fatalf("runs:\n%s", strings.Join(logs, "\n----\n"))
	}
	if resumed == 0 {
		t.Errorf("no account was resumed half copied: the kills did not test resuming\n%s", strings.Join(logs, "\n----\n"))
	}
	if finishedWhole == 0 {
		t.Error("the account complete before its run was not seen finishing")
	}
	e.check(t, nil)
	for name, r := range records(t, statePath) {
		if r.Status != batch.Done {
			t.Errorf("%s: %s at the end", name, r.Status)
		}
	}
	t.Logf("%d runs, %d random kills; %d account runs began with part of their mail already copied, %d complete but unrecorded", runs, kills, resumed, finishedWhole)
}

// TestBatchShards runs three batch processes at once on one accounts file
// and one state directory, as the pods of a Kubernetes Indexed Job (index
// from JOB_COMPLETION_INDEX, count from MAILHAUL_SHARDS): every account is
// handled by exactly one shard, the one --validate --shard names. One
// shard is killed mid-way and restarted: exactly once. --report-only
// merges the shards' states.
func TestBatchShards(t *testing.T) {
	e := newBatchEnv(t, 12, 6, 20, 7)
	file := e.writeCSV(t)
	const n = 3
	size := make([]int, n)
	re := regexp.MustCompile(`shard \d/3: (\d+) accounts`)
	victim := 0
	for k := 0; k < n; k++ {
		r := runMailhaul(t, e.env, e.args(file, "--validate", "--shard", fmt.Sprintf("%d/%d", k, n))...)
		m := re.FindStringSubmatch(r.stderr)
		if r.code != 0 || m == nil {
			t.Fatalf("--validate --shard %d/%d: exit %d\n%s", k, n, r.code, r.stderr)
		}
		size[k], _ = strconv.Atoi(m[1])
		if size[k] > size[victim] {
			victim = k
		}
	}
	if size[0]+size[1]+size[2] != len(e.accounts) {
		t.Fatalf("shard sizes %v do not add up to %d", size, len(e.accounts))
	}
	t.Logf("shard sizes %v; shard %d is killed", size, victim)
	shardEnv := func(k int) []string {
		return append(append([]string{}, e.env...), fmt.Sprintf("%s=%d", batch.EnvCompletionIndex, k), fmt.Sprintf("%s=%d", batch.EnvShards, n))
	}
	args := e.args(file, "--parallel", "2")
	type proc struct {
		done chan struct{}
		code int
		se   fmt.Stringer
	}
	var procs []*proc
	for k := 0; k < n; k++ {
		env := shardEnv(k)
		if k == victim {
			env = append(env, "MAILHAUL_TEST_KILL_AT=append:15")
		}
		cmd, se := startMailhaul(t, env, args...)
		p := &proc{done: make(chan struct{}), se: se}
		go func() {
			cmd.Wait()
			p.code = cmd.ProcessState.ExitCode()
			if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
				p.code = -int(ws.Signal())
			}
			close(p.done)
		}()
		procs = append(procs, p)
	}
	for k, p := range procs {
		<-p.done
		want := 0
		if k == victim {
			want = -int(syscall.SIGKILL)
		}
		if p.code != want {
			t.Fatalf("shard %d: exit %d, want %d\n%s", k, p.code, want, p.se)
		}
	}
	// Every account in exactly one shard's state, that shard as
	// --validate counted (the killed shard had not started them all).
	owners := func() map[string]int {
		owner := map[string]int{}
		for k := 0; k < n; k++ {
			recs := records(t, batch.StatePath(e.state, "accounts", batch.Shard{K: k, N: n}))
			if len(recs) != size[k] && (k != victim || len(recs) > size[k] || len(recs) == 0) {
				t.Errorf("shard %d state holds %d accounts, --validate said %d", k, len(recs), size[k])
			}
			for name := range recs {
				if o, dup := owner[name]; dup {
					t.Errorf("%s in shards %d and %d", name, o, k)
				}
				owner[name] = k
			}
		}
		return owner
	}
	owner := owners()
	e.check(t, func(a *batchAccount) bool { o, ok := owner[a.name]; return ok && o != victim })

	r := runMailhaul(t, nil, e.args(file, "--report-only")...)
	rep := parseReport(t, r)
	if r.code != exitFatal || rep.Totals.Accounts != 12 || rep.Totals.Done == 12 || rep.Totals.Pending == 0 || len(rep.States) != n {
		t.Errorf("report with a killed shard: exit %d, totals %+v, %d states\n%s", r.code, rep.Totals, len(rep.States), r.stderr)
	}

	r = runMailhaul(t, shardEnv(victim), args...)
	if r.code != 0 {
		t.Fatalf("restarted shard %d: exit %d\n%s", victim, r.code, r.stderr)
	}
	if rep := parseReport(t, r); rep.Totals.Accounts != size[victim] || rep.Totals.Done != size[victim] || rep.Shard != fmt.Sprintf("%d/%d", victim, n) {
		t.Errorf("restarted shard: %+v", rep.Totals)
	}
	if owner = owners(); len(owner) != len(e.accounts) {
		t.Errorf("%d accounts in the shards' states, want %d", len(owner), len(e.accounts))
	}
	r = runMailhaul(t, nil, e.args(file, "--report-only")...)
	rep = parseReport(t, r)
	if r.code != 0 || rep.Totals.Done != 12 {
		t.Fatalf("report after the restart: exit %d %+v\n%s", r.code, rep.Totals, r.stderr)
	}
	for _, a := range rep.Accounts {
		if a.Shard != fmt.Sprintf("%d/%d", owner[a.Account], n) {
			t.Errorf("%s: shard %q in the report, ran in %d", a.Account, a.Shard, owner[a.Account])
		}
	}
	e.check(t, nil)
}

// TestBatchGracefulStop: a SIGINT in the middle of a batch (sent by the
// process itself after its 30th append) starts no further account, lets
// the running ones finish their appends in flight and record them, exits
// 130 with the report; the accounts it stopped are pending (interrupted),
// and the next run completes every account exactly once.
func TestBatchGracefulStop(t *testing.T) {
	e := newBatchEnv(t, 8, 4, 30, 3)
	file := e.writeCSV(t)
	r := runMailhaul(t, append(append([]string{}, e.env...), "MAILHAUL_TEST_KILL_AT=append:30:INT"), e.args(file, "--parallel", "2")...)
	if r.code != exitInterrupted {
		t.Fatalf("exit %d, want 130:\n%s", r.code, r.stderr)
	}
	rep := parseReport(t, r)
	stopped := 0
	for _, a := range rep.Accounts {
		switch {
		case a.Status == batch.Pending && a.ExitCode == exitInterrupted && strings.Contains(a.Reason, "interrupted"):
			stopped++
		case a.Status == batch.Pending && a.Attempts == 0, a.Status == batch.Done:
		default:
			t.Errorf("after the stop: %+v", a)
		}
	}
	if stopped == 0 || rep.Totals.Done+rep.Totals.Pending != 8 || !strings.Contains(r.stderr, "stopping after the appends on the wire") {
		t.Errorf("%d accounts stopped, totals %+v:\n%s", stopped, rep.Totals, r.stderr)
	}
	if !strings.Contains(r.stderr, "interrupted with") || !strings.Contains(r.stderr, "run the same command again") {
		t.Errorf("no word on resuming:\n%s", r.stderr)
	}
	// Nothing was left uncertain: every append in flight was recorded.
	r = runMailhaul(t, e.env, e.args(file, "--parallel", "2")...)
	if r.code != 0 {
		t.Fatalf("second run: exit %d:\n%s", r.code, r.stderr)
	}
	if strings.Contains(r.stderr, "settled") {
		t.Errorf("the stop left appends to settle:\n%s", r.stderr)
	}
	e.check(t, nil)
}
