package batch

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"
)

// Account is a Row made ready to run by the command.
type Account struct {
	Row
	// Key identifies the pair of accounts (duplicates, the state).
	Key string
	// ShardKey decides the shard (ShardOf): the destination account, so
	// that rows merging into one account land in one shard and share its
	// connection cap.
	ShardKey string
	// Label names the account in reports (Row.Name, or the endpoints).
	Label string
	// Source and Destination as shown in reports: never a secret.
	Source, Destination string
	// Conns are the connections the account holds at most while it runs.
	Conns []Conn
}

// Conn is a number of connections an account holds to one server, all
// logged in as one account there.
type Conn struct {
	Server  string // e.g. "imap:mail.example.org" (host and non-standard port)
	Account string // e.g. "imap:alice@mail.example.org": the server's user
	N       int
}

// Limits cap the connections of every account running at once, summed:
// to one server (PerServer) and to one account on a server (PerAccount).
// 0 means no cap.
type Limits struct{ PerServer, PerAccount int }

// Result is the outcome of one run of one account.
type Result struct {
	// ExitCode is what `mailhaul copy` would have exited with: 0 done, 3
	// finished with skipped messages, 130 interrupted, else failed.
	ExitCode int
	// Reason is one line saying why the account is not done ("" if done).
	Reason                   string
	Copied, Already, Skipped int
	Bytes                    int64
	Duration                 time.Duration
}

// Exit codes a Result distinguishes (those of `mailhaul copy`).
const (
	ExitOK          = 0
	ExitSkipped     = 3
	ExitInterrupted = 130
)

// EventKind says what an Event reports.
type EventKind int

const (
	// Started: the account starts (Record is Running).
	Started EventKind = iota
	// Finished: the account's run ended (Record holds the outcome).
	Finished
	// Kept: the account was done by an earlier run and is not run again.
	Kept
)

// Event is one change in the queue. Done counts the accounts of this run
// that have finished (Finished and Kept) out of Total.
type Event struct {
	Kind        EventKind
	Account     *Account
	Record      Record
	Done, Total int
	Running     []string // labels of the accounts running after the event
}

// Config configures Run.
type Config struct {
	State    *State
	Parallel int // accounts at once (>= 1)
	Limits   Limits
	// Again runs accounts that are done too (to pick up new mail).
	Again bool
	// Version is recorded with every account run; Shard too.
	Version, Shard string
	// Copy runs one account; it is called from up to Parallel goroutines
	// at once. A panic in it fails that account.
	Copy func(ctx context.Context, a *Account) Result
	// Event, if set, is called for every change (from several goroutines,
	// never concurrently: calls are serialised).
	Event func(Event)
	// Stop, when closed, starts no further account; the ones running are
	// expected to stop on their own (Copy is given the same channel by
	// the command) and report ExitInterrupted.
	Stop <-chan struct{}
	// StepHook, if set, is called with "account-start" after an account
	// is recorded Running and "account-end" after Copy returned, before
	// the outcome is recorded (crash tests kill the process there).
	StepHook func(string)
}

// Run runs every account that is not done (every one with Again) in file
// order, Parallel at once, never exceeding Limits: an account starts only
// when all its Conns fit beside those of the accounts running, and the
// first waiting account that fits starts first (one that cannot fit even
// alone fails at once). Each account is recorded Running before it starts
// and its outcome after it ends (Status from Result.ExitCode; interrupted
// accounts go back to Pending). Run returns when every account has run,
// or, after Stop or ctx's end, when the running ones have returned; its
// error is not nil only when the state could not be written (then the
// outcome of the accounts still running is lost, and their next run
// resumes them).
func Run(ctx context.Context, accounts []*Account, c Config) error {
	if c.Parallel < 1 {
		c.Parallel = 1
	}
	q := &queue{c: c, inUse: map[string]int{}, total: len(accounts)}
	q.cond = sync.NewCond(&q.mu)
	for _, a := range accounts {
		if r, ok := c.State.Get(a.Key); ok && r.Status.Finished() && !c.Again {
			q.done++
			q.emit(Event{Kind: Kept, Account: a, Record: r})
			continue
		}
		q.pending = append(q.pending, a)
	}
	stopWatch := make(chan struct{})
	defer close(stopWatch)
	go func() {
		select {
		case <-c.Stop:
		case <-ctx.Done():
		case <-stopWatch:
			return
		}
		q.mu.Lock()
		q.stopped = true
		q.cond.Broadcast()
		q.mu.Unlock()
	}()

	var wg sync.WaitGroup
	q.mu.Lock()
	for {
		for !q.stopped && q.err == nil && q.running < c.Parallel {
			a, ok := q.next()
			if !ok {
				break
			}
			if a == nil {
				continue // one that could never fit was failed
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				q.run(ctx, a)
			}()
		}
		if q.running == 0 && (len(q.pending) == 0 || q.stopped || q.err != nil) {
			break
		}
		q.cond.Wait()
	}
	q.mu.Unlock()
	wg.Wait()
	return q.err
}

type queue struct {
	c       Config
	mu      sync.Mutex
	cond    *sync.Cond
	pending []*Account
	running int
	labels  []string // of the running accounts, in start order
	inUse   map[string]int
	stopped bool
	err     error
	done    int
	total   int
	evMu    sync.Mutex
}

// needs sums an account's connections per cap key.
func needs(a *Account) map[string]int {
	m := map[string]int{}
	for _, c := range a.Conns {
		m["s\x00"+c.Server] += c.N
		m["a\x00"+c.Account] += c.N
	}
	return m
}

func (q *queue) capOf(key string) int {
	if strings.HasPrefix(key, "s\x00") {
		return q.c.Limits.PerServer
	}
	return q.c.Limits.PerAccount
}

func (q *queue) fits(n map[string]int, beside map[string]int) bool {
	for k, v := range n {
		if c := q.capOf(k); c > 0 && beside[k]+v > c {
			return false
		}
	}
	return true
}

// next takes the first pending account that fits, marks it running and
// records it (q.mu held; the state write happens under it). It returns
// (nil, true) after failing an account that can never fit, (nil, false)
// when none fits now.
func (q *queue) next() (*Account, bool) {
	for i, a := range q.pending {
		n := needs(a)
		if !q.fits(n, q.inUse) {
			if !q.fits(n, nil) {
				q.pending = append(q.pending[:i:i], q.pending[i+1:]...)
				q.failUnfit(a, n)
				return nil, true
			}
			continue
		}
		q.pending = append(q.pending[:i:i], q.pending[i+1:]...)
		for k, v := range n {
			q.inUse[k] += v
		}
		q.running++
		q.labels = append(q.labels, a.Label)
		r := q.record(a)
		r.Status = Running
		r.Attempts++
		r.Started = time.Now().UTC().Format(time.RFC3339)
		r.Finished = ""
		r.Version, r.Shard = q.c.Version, q.c.Shard
		if err := q.c.State.Put(r); err != nil {
			q.err = err
			q.release(a, n)
			return nil, false
		}
		q.hook("account-start")
		q.emitLocked(Event{Kind: Started, Account: a, Record: r})
		return a, true
	}
	return nil, false
}

func (q *queue) failUnfit(a *Account, n map[string]int) {
	var over []string
	for k, v := range n {
		if c := q.capOf(k); c > 0 && v > c {
			what, name, _ := strings.Cut(k, "\x00")
			flag := "--max-connections-per-host"
			if what == "a" {
				flag = "--max-connections-per-account"
			}
			over = append(over, fmt.Sprintf("%d connections to %s (%s %d)", v, name, flag, c))
		}
	}
	sort.Strings(over)
	r := q.record(a)
	r.Status, r.ExitCode = Failed, 2
	r.Version, r.Shard = q.c.Version, q.c.Shard
	r.Reason = "needs " + strings.Join(over, ", ") + ": lower --transfers or raise the cap"
	r.Finished = time.Now().UTC().Format(time.RFC3339)
	if err := q.c.State.Put(r); err != nil {
		q.err = err
		return
	}
	q.done++
	q.emitLocked(Event{Kind: Finished, Account: a, Record: r})
}

func (q *queue) record(a *Account) Record {
	r, _ := q.c.State.Get(a.Key)
	r.Key, r.Line, r.Account, r.Source, r.Destination = a.Key, a.Line, a.Label, a.Source, a.Destination
	return r
}

func (q *queue) release(a *Account, n map[string]int) {
	for k, v := range n {
		if q.inUse[k] -= v; q.inUse[k] <= 0 {
			delete(q.inUse, k)
		}
	}
	q.running--
	for i, l := range q.labels {
		if l == a.Label {
			q.labels = append(q.labels[:i], q.labels[i+1:]...)
			break
		}
	}
	q.cond.Broadcast()
}

// run copies one account and records its outcome (without q.mu).
func (q *queue) run(ctx context.Context, a *Account) {
	start := time.Now()
	res := q.copy(ctx, a)
	if res.Duration == 0 {
		res.Duration = time.Since(start)
	}
	q.hook("account-end")

	q.mu.Lock()
	defer q.mu.Unlock()
	r := q.record(a)
	r.ExitCode, r.Reason = res.ExitCode, res.Reason
	r.Copied, r.Already, r.Skipped, r.Bytes = res.Copied, res.Already, res.Skipped, res.Bytes
	r.Seconds = res.Duration.Seconds()
	r.Finished = time.Now().UTC().Format(time.RFC3339)
	switch res.ExitCode {
	case ExitOK:
		r.Status, r.Reason = Done, ""
	case ExitSkipped:
		r.Status = Partial
	case ExitInterrupted:
		r.Status = Pending
		if r.Reason == "" {
			r.Reason = "interrupted"
		}
	default:
		r.Status = Failed
	}
	err := q.c.State.Put(r)
	q.release(a, needs(a))
	if err != nil {
		if q.err == nil {
			q.err = err
		}
		return
	}
	if r.Status != Pending {
		q.done++
	}
	q.emitLocked(Event{Kind: Finished, Account: a, Record: r})
}

// copy calls Config.Copy, turning a panic into a failure of the account.
func (q *queue) copy(ctx context.Context, a *Account) (res Result) {
	defer func() {
		if p := recover(); p != nil {
			res = Result{ExitCode: 1, Reason: fmt.Sprintf("internal error: panic: %v", p)}
		}
	}()
	return q.c.Copy(ctx, a)
}

func (q *queue) hook(step string) {
	if q.c.StepHook != nil {
		q.c.StepHook(step)
	}
}

// emitLocked sends an event with the counts (q.mu held).
func (q *queue) emitLocked(e Event) {
	e.Done, e.Total = q.done, q.total
	e.Running = append([]string{}, q.labels...)
	q.emit(e)
}

func (q *queue) emit(e Event) {
	if q.c.Event == nil {
		return
	}
	if e.Total == 0 {
		e.Done, e.Total = q.done, q.total
	}
	q.evMu.Lock()
	defer q.evMu.Unlock()
	q.c.Event(e)
}
