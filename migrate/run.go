package migrate

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
)

// ErrInterrupted is returned (wrapped) by Run when its context was
// cancelled; the checkpoint is flushed and the next run resumes.
var ErrInterrupted = errors.New("interrupted")

// job is one message moving through the pipeline.
type job struct {
	mb   Mailbox // source mailbox
	dest string  // sink folder (as returned by Prepare)
	msg  Message
	body *Body // set by the fetcher
	// undated: the source gave no date (POP3), so the header's is taken
	// and the date filters are applied once the body is fetched.
	undated bool
	dup     *dedupSet // with Options.Dedupe: what the destination folder held
	// The jobs of a fetch unit share their folder's place in the storage
	// order (order.go), the first one the unit's ticket; nil turn: no
	// order to keep.
	turn   *folderTurn
	ticket int

	// Set by the appender: the intent recorded for the copy, and, for an
	// uncertain append (settle.go), when it became uncertain, how many
	// times it did, and whether it is being sent again.
	intent      *Intent
	uncertainAt time.Time
	attempts    int
	resent      bool
}

type engine struct {
	o      Options
	rep    func(Event)
	budget *MemBudget // bytes of bodies held in memory, all stages together
	del    *deletions // with DeleteAfterCopy: what may be deleted from the source

	// Settling of uncertain appends (settle.go).
	claims   *claims
	inflight *inflight
	settler  *settler
	recon    *reconcileList
	turns    turns     // the storage order of the folders in flight (order.go)
	acct     *dedupSet // with DedupeAcrossFolders: what the whole destination held

	versions *versions // folders unchanged since a run finished them (unchanged.go)
	contacts *contacts // first contacts of source folders with a lost state (contact.go)
	tally    *tally    // what the run did, for its Report (report.go)
	batchCap batchCap  // messages per batch for a BatchSink (append.go)
	// noMID counts the messages without a Message-ID copied into a folder
	// compared with what it held (Dedupe, a first contact): nothing could
	// find their copies there (append.go).
	noMID atomic.Int64
}

// Run copies every selected message of o.Source that the checkpoint does
// not record as copied into o.Sink, and returns what it did.
//
// Run first resolves intents left pending by a run that died (recover.go),
// then runs the pipeline: one lister goroutine -> fetchers -> appenders,
// with a settler beside the appenders for appends whose outcome is unknown
// (list.go, fetch.go, append.go, settle.go), and finally reconciles what
// it had to send again. It returns a non-nil error only for a
// fatal error or an interruption (wrapping ErrInterrupted); messages that
// could not be copied are listed in Report.Skipped. Run does not close the
// Source, Sink or Checkpoint.
func Run(ctx context.Context, o Options) (Report, error) {
	o.defaults()
	start := time.Now()
	t := newTally(o.DryRun)
	e := &engine{o: o, budget: NewMemBudget(o.MemBudget),
		claims: &claims{m: map[string]string{}, unverified: map[string]int{}}, inflight: &inflight{m: map[string]int{}},
		settler: newSettler(), recon: &reconcileList{}, versions: newVersions(&o, t), tally: t}
	if o.DeleteAfterCopy && !o.DryRun {
		e.del = &deletions{ids: map[string][]string{}, epochs: map[string]string{}}
	}
	e.rep = func(ev Event) { t.add(ev); e.del.add(ev); o.Reporter.Event(ev) }
	if o.Checkpoint == nil && !o.DryRun {
		return Report{}, errors.New("migrate: no checkpoint")
	}
	if fd, ok := o.Sink.(FlagDropper); ok {
		fd.SetDropped(func(dest string, m Message, flags []string, why string) {
			e.rep(Event{Kind: FlagsDropped, Folder: m.Mailbox, Dest: dest, ID: m.ID, Flags: flags, Err: errors.New(why)})
		})
	}
	var err error
	if !o.DryRun {
		err = e.recoverPending(ctx)
	}
	if err == nil {
		e.contacts, err = newContacts(e)
	}
	if err == nil {
		err = e.pipeline(ctx)
	}
	if err == nil && !o.DryRun {
		err = e.reconcile(ctx)
	}
	if err == nil && e.del != nil && ctx.Err() == nil && !e.stopped() {
		err = e.deleteCopied(ctx)
	}
	if err == nil && ctx.Err() == nil && !e.stopped() {
		err = e.recordVersions(ctx)
	}
	if err == nil && ctx.Err() == nil && !e.stopped() {
		err = e.contacts.record(t)
	}
	if n := e.noMID.Load(); n > 0 {
		e.rep(Event{Kind: Warning, Err: fmt.Errorf("%s without a Message-ID copied into folders that held mail from elsewhere: no comparison can recognise such a message, so one the destination already held (the other source's copy) is there twice now; `mailhaul check` lists such copies as extra",
			countOf(int(n), "message", "messages"))})
	}
	r := t.report()
	r.Elapsed = time.Since(start)
	switch {
	case ctx.Err() != nil:
		r.Interrupted = true
		err = fmt.Errorf("%w: %v", ErrInterrupted, context.Cause(ctx))
	case err == nil && e.stopped():
		r.Interrupted = true
		err = fmt.Errorf("%w: stopped on request after the messages in flight", ErrInterrupted)
	}
	if err != nil {
		r.Error = err.Error()
	}
	return r, err
}

// pipeline wires the stages: lister -> interleave (several folders in
// flight) -> fetchers -> appenders, one per source folder in flight
// (+ settler), keeping each folder's storage order (order.go). Channels
// are bounded, so the number of bodies alive at once is bounded
// (nf*maxUnitMessages + na*(max(queuePerAppender, BatchSize)+BatchSize)),
// and the bytes they hold in memory are bounded by the run's MemBudget:
// a body that does not fit goes to a temporary file. The queue in front of
// the appenders lets a batch form while the previous one commits: with 1
// appender and no queue every message would pay its own checkpoint
// commits and sync.
//
// A graceful stop (Options.Stop) cancels the producing stages (lister,
// interleave, fetchers: soft) without an error; the appenders finish the
// appends on the wire, leave the rest of their batch (its intents
// cleared) and take no new one, and the settler settles what is left.
func (e *engine) pipeline(ctx context.Context) error {
	nf := e.o.Source.Limits().callers(e.o.Transfers)
	if _, ok := e.o.Source.(BatchFetcher); ok {
		// A fetcher's unit is up to maxUnitBytes: a few per connection
		// keep the wire busy, more would only hold bodies waiting for the
		// appenders (and the garbage collector busy near the memory
		// limit).
		nf = min(nf, batchFetchersPerConn*e.o.Source.Limits().conns(e.o.Transfers))
	}
	na := e.o.Sink.Limits().callers(e.o.Transfers)
	g, gctx := errgroup.WithContext(ctx)
	soft, softCancel := context.WithCancel(gctx)
	defer softCancel()
	go func() {
		select {
		case <-e.o.Stop:
			softCancel()
		case <-soft.Done():
		}
	}()
	// stage runs a producing stage: ended by a graceful stop, it returns
	// no error.
	stage := func(run func(context.Context) error) func() error {
		return func() error {
			err := run(soft)
			if err != nil && soft.Err() != nil && gctx.Err() == nil {
				return nil
			}
			return err
		}
	}
	// Each source folder in flight has one appender (storage order:
	// order.go): so that na folders can be appended to at once, at least
	// na are in flight. A sink without a storage order (Orderless) has
	// one queue that every appender takes from, whatever the folder.
	window, tickets := max(folderWindow, na), &e.turns
	var appendChs []chan *job
	if _, orderless := e.o.Sink.(Orderless); orderless {
		window, tickets = folderWindow, nil
		appendChs = []chan *job{make(chan *job, e.o.Sink.Limits().conns(e.o.Transfers)*queuePerAppender)}
	} else {
		appendChs = make([]chan *job, na)
		for i := range appendChs {
			appendChs[i] = make(chan *job, max(queuePerAppender, e.o.BatchSize))
		}
	}
	// A folder has at most what its appender's queue and batch hold in
	// flight (besides a unit): beyond, interleave serves other folders;
	// and at most its share of the fetchers (2 at least), so that a slow
	// fetch holds up no other folder's.
	e.turns.appenders, e.turns.ahead = na, max(2, nf/window)
	e.turns.limit = max(queuePerAppender, e.o.BatchSize) + e.o.BatchSize
	chunkCh := make(chan []*job, window)
	fetchCh := make(chan []*job, nf)

	g.Go(stage(func(ctx context.Context) error {
		defer close(chunkCh)
		return e.list(ctx, chunkCh)
	}))
	g.Go(stage(func(ctx context.Context) error {
		defer close(fetchCh)
		return interleave(ctx, chunkCh, fetchCh, window, e.fetchUnits(), tickets)
	}))
	if e.o.DryRun {
		return g.Wait()
	}
	var fetchers sync.WaitGroup
	for i := 0; i < nf; i++ {
		fetchers.Add(1)
		g.Go(stage(func(ctx context.Context) error {
			defer fetchers.Done()
			return e.fetchLoop(ctx, fetchCh, appendChs)
		}))
	}
	go func() {
		fetchers.Wait()
		for _, ch := range appendChs {
			close(ch)
		}
	}()
	// Each appender (and the settler) has stride in-flight journal slots,
	// one per message of a batch it may have on the wire at once.
	stride := 1
	if bs, ok := e.o.Sink.(BatchSink); ok {
		if n, _ := bs.BatchLimits(); n > stride {
			stride = n
		}
	}
	var appenders sync.WaitGroup
	for i := 0; i < na; i++ {
		appenders.Add(1)
		g.Go(func() error {
			defer appenders.Done()
			return e.appendLoop(gctx, soft, i*stride, appendChs[i%len(appendChs)])
		})
	}
	appendersDone := make(chan struct{})
	go func() {
		appenders.Wait()
		close(appendersDone)
	}()
	g.Go(func() error { return e.settleLoop(gctx, na*stride, appendersDone) })
	err := g.Wait()
	// Release bodies stranded in the channels by a fatal error.
	for _, ch := range appendChs {
		for j := range ch {
			j.body.Close()
		}
	}
	return err
}

const queuePerAppender = 16

// batchFetchersPerConn bounds the fetchers per source connection when the
// source fetches units of several messages (BatchFetcher).
const batchFetchersPerConn = 2

// folderWindow is how many listed chunks (of up to listChunk messages,
// usually one folder each) the fetchers are fed from at once.
const folderWindow = 4

// retry runs op, retrying errors classified Retry with exponential
// backoff; an Uncertain error is returned at once (it must be settled, not
// retried). Exhausted retries are fatal, or skip the message for an error
// marked RetryThenSkip. A panic in op is turned into a Skip error.
func (e *engine) retry(ctx context.Context, j *job, what string, op func() error) error {
	return e.retryUntil(ctx, nil, j, what, op)
}

// errStoppedRetrying ends retryUntil when a graceful stop comes while it
// waits to retry: op's last error promised nothing was done.
var errStoppedRetrying = errors.New("stopped instead of retrying")

// retryUntil is retry that also gives up waiting to retry when stop is
// closed (nil: never), with errStoppedRetrying.
func (e *engine) retryUntil(ctx context.Context, stop <-chan struct{}, j *job, what string, op func() error) error {
	delay := e.o.RetryBase
	throttled := 0
	for attempt := 0; ; attempt++ {
		err := protect(what, op)
		if err == nil || Classify(err) != Retry || IsUncertain(err) {
			return err
		}
		if ctx.Err() != nil {
			// The run is stopping (Ctrl-C, a fatal error elsewhere): the
			// error is that, not something to retry or report.
			return ctx.Err()
		}
		wait := delay
		if d, ok := BackoffOf(err); ok {
			// The server throttles: wait as long as it asks, and do not
			// count it against the retries of a failing operation (a
			// throttled migration is slow, not broken), up to a bound.
			throttled++
			if throttled > maxThrottleWaits {
				return FatalError(fmt.Errorf("%s: the server kept throttling (%d times), giving up; run again later: %w", what, throttled, err))
			}
			attempt--
			if d <= 0 {
				d = e.o.ThrottleWait
			}
			wait = max(d, delay)
		} else if HasProgressed(err) {
			// Part of the work is kept: start the count again.
			attempt, delay = -1, e.o.RetryBase
			wait = delay
		} else {
			if attempt >= e.o.Retries {
				err = fmt.Errorf("%s: giving up after %d retries: %w", what, attempt, err)
				if skipsWhenExhausted(err) {
					return SkipMessage(err)
				}
				return FatalError(err)
			}
			delay *= 2
		}
		e.rep(Event{Kind: Retrying, Folder: j.mb.Name, Dest: j.dest, ID: j.msg.ID, Err: fmt.Errorf("in %s: %w", wait.Round(time.Millisecond), err)})
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-stop:
			return fmt.Errorf("%s: %w (%v)", what, errStoppedRetrying, err)
		case <-time.After(wait):
		}
	}
}

// maxThrottleWaits bounds how many throttling waits one operation takes.
const maxThrottleWaits = 20

func protect(what string, op func() error) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = panicError(what, fmt.Sprintf("%v\n%s", v, debug.Stack()))
		}
	}()
	return op()
}

// stopped reports whether a graceful stop was requested.
func (e *engine) stopped() bool { return closed(e.o.Stop) }

func (e *engine) hook(step string) {
	if e.o.StepHook != nil {
		e.o.StepHook(step)
	}
}
