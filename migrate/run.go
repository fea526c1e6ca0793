package migrate

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
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
	mark string  // Finder mark of dest, taken before this run appended
	msg  Message
	body *Body     // set by the fetcher
	dup  *dedupSet // with Options.Dedupe: what the destination folder held
}

type engine struct {
	o      Options
	rep    func(Event)
	budget *MemBudget // bytes of bodies held in memory, all stages together
	del    *deletions // with DeleteAfterCopy: what may be deleted from the source
	acct   *dedupSet  // with DedupeAcrossFolders: what the whole destination held
}

// Run copies every selected message of o.Source that the checkpoint does
// not record as copied into o.Sink, and returns what it did.
//
// Run first resolves intents left pending by a run that died, then runs
// the pipeline: one lister goroutine -> fetchers -> appenders (see
// list.go, fetch.go, append.go). It returns a non-nil error only for a
// fatal error or an interruption (wrapping ErrInterrupted); messages that
// could not be copied are listed in Report.Skipped. Run does not close the
// Source, Sink or Checkpoint.
func Run(ctx context.Context, o Options) (Report, error) {
	o.defaults()
	start := time.Now()
	t := newTally(o.DryRun)
	e := &engine{o: o, budget: NewMemBudget(o.MemBudget)}
	if o.DeleteAfterCopy && !o.DryRun {
		e.del = &deletions{ids: map[string][]string{}, epochs: map[string]string{}}
	}
	e.rep = func(ev Event) { t.add(ev); e.del.add(ev); o.Reporter.Event(ev) }
	if o.Checkpoint == nil && !o.DryRun {
		return Report{}, errors.New("migrate: no checkpoint")
	}
	var err error
	if !o.DryRun {
		err = e.recoverPending(ctx)
	}
	if err == nil {
		err = e.pipeline(ctx)
	}
	if err == nil && e.del != nil && ctx.Err() == nil {
		err = e.deleteCopied(ctx)
	}
	r := t.report()
	r.Elapsed = time.Since(start)
	if ctx.Err() != nil {
		r.Interrupted = true
		err = fmt.Errorf("%w: %v", ErrInterrupted, context.Cause(ctx))
	}
	if err != nil {
		r.Error = err.Error()
	}
	return r, err
}

// pipeline wires the stages: lister -> interleave (several folders in
// flight) -> fetchers -> appenders. Channels are bounded, so the number of
// bodies alive at once is bounded (nf + na*(queuePerAppender+BatchSize)),
// and the bytes they hold in memory are bounded by the run's MemBudget:
// a body that does not fit goes to a temporary file. The queue in front of
// the appenders lets a batch form while the previous one commits: with 1
// appender and no queue every message would pay its own checkpoint
// commits and sync.
func (e *engine) pipeline(ctx context.Context) error {
	nf := e.o.Source.Limits().callers(e.o.Transfers)
	na := e.o.Sink.Limits().callers(e.o.Transfers)
	g, gctx := errgroup.WithContext(ctx)
	chunkCh := make(chan []*job, folderWindow)
	fetchCh := make(chan *job, nf)
	appendCh := make(chan *job, e.o.Sink.Limits().conns(e.o.Transfers)*queuePerAppender)

	g.Go(func() error {
		defer close(chunkCh)
		return e.list(gctx, chunkCh)
	})
	g.Go(func() error {
		defer close(fetchCh)
		return interleave(gctx, chunkCh, fetchCh, folderWindow)
	})
	if e.o.DryRun {
		return g.Wait()
	}
	var fetchers sync.WaitGroup
	for i := 0; i < nf; i++ {
		fetchers.Add(1)
		g.Go(func() error {
			defer fetchers.Done()
			return e.fetchLoop(gctx, fetchCh, appendCh)
		})
	}
	go func() {
		fetchers.Wait()
		close(appendCh)
	}()
	for i := 0; i < na; i++ {
		g.Go(func() error { return e.appendLoop(gctx, appendCh) })
	}
	err := g.Wait()
	// Release bodies stranded in the channel by a fatal error.
	for j := range appendCh {
		j.body.Close()
	}
	return err
}

const queuePerAppender = 16

// folderWindow is how many listed chunks (of up to listChunk messages,
// usually one folder each) the fetchers are fed from at once.
const folderWindow = 4

// retry runs op, retrying errors classified Retry with exponential
// backoff. A panic in op is turned into a Skip error.
func (e *engine) retry(ctx context.Context, j *job, what string, op func() error) error {
	delay := e.o.RetryBase
	for attempt := 0; ; attempt++ {
		err := protect(what, op)
		if err == nil || Classify(err) != Retry {
			return err
		}
		if attempt >= e.o.Retries {
			return FatalError(fmt.Errorf("%s: giving up after %d retries: %w", what, attempt, err))
		}
		e.rep(Event{Kind: Retrying, Folder: j.mb.Name, Dest: j.dest, ID: j.msg.ID, Err: err})
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(delay):
		}
		delay *= 2
	}
}

func protect(what string, op func() error) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = panicError(what, fmt.Sprintf("%v\n%s", v, debug.Stack()))
		}
	}()
	return op()
}

func (e *engine) hook(step string) {
	if e.o.StepHook != nil {
		e.o.StepHook(step)
	}
}
