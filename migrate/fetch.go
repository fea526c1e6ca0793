package migrate

import (
	"context"
	"fmt"
	"io"
)

// fetchLoop is one fetcher goroutine: it takes units of listed messages
// from in (one message, or a run of small ones of one folder: see
// fetchUnits), spools each body (memory up to MemLimit, a temporary file
// beyond) and, when the unit's turn in its folder's storage order comes
// (order.go), passes them on to the folder's appender (out; a single
// queue when no order is kept) in the unit's order. A message that cannot
// be fetched is reported as skipped; only a fatal error, or the end of
// ctx, ends the loop (the unit's turn is then never done: the other
// fetchers end with ctx too).
func (e *engine) fetchLoop(ctx context.Context, in <-chan []*job, out []chan *job) error {
	for {
		var unit []*job
		var ok bool
		select {
		case unit, ok = <-in:
			if !ok {
				return nil
			}
		case <-ctx.Done():
			return ctx.Err()
		}
		bodies, errs := e.fetchUnit(ctx, unit)
		release := func(from int) {
			for _, b := range bodies[from:] {
				if b != nil {
					b.Close()
				}
			}
		}
		// The unit's place, taken now: once handed on, a job belongs to
		// its appender (which clears its turn).
		ft, ticket := unit[0].turn, unit[0].ticket
		if ft != nil {
			if err := e.turns.await(ctx, ft, ticket); err != nil {
				release(0)
				return err
			}
		}
		for i, j := range unit {
			body := bodies[i]
			bodies[i] = nil
			to := 0 // no order kept: one queue
			if ft != nil {
				to = ft.appender
			}
			handed, err := e.deliver(ctx, j, body, errs[i], out[to])
			if err != nil {
				release(i + 1)
				return err
			}
			if !handed && ft != nil {
				e.turns.left(ft)
			}
		}
		if ft != nil {
			e.turns.done(ft, ticket)
		}
	}
}

// fetchUnit spools the bodies of a unit: with one FetchBatch call where
// the source has it, one by one for the rest. errs[i] is message i's
// error; a fatal one (or the end of ctx) stops the unit there, the later
// messages left with that same error.
func (e *engine) fetchUnit(ctx context.Context, unit []*job) ([]*Body, []error) {
	bodies := e.fetchBatch(ctx, unit)
	errs := make([]error, len(unit))
	for i, j := range unit {
		if bodies[i] != nil {
			continue
		}
		bodies[i], errs[i] = e.fetch(ctx, j)
		if errs[i] != nil && (ctx.Err() != nil || Classify(errs[i]) != Skip) {
			for k := i + 1; k < len(unit); k++ {
				if bodies[k] != nil {
					bodies[k].Close()
					bodies[k] = nil
				}
				errs[k] = errs[i]
			}
			break
		}
	}
	return bodies, errs
}

// deliver passes a fetched message on to its appender (out), or reports
// it filtered or skipped (handed false); it returns only a fatal error (or
// the run's end).
func (e *engine) deliver(ctx context.Context, j *job, body *Body, err error, out chan<- *job) (handed bool, _ error) {
	if err == nil && j.undated && !j.msg.Date.IsZero() {
		// The date comes from the header (POP3): --since/--before can
		// only be applied now.
		if why := e.o.filter(j.msg); why != "" {
			body.Close()
			e.rep(Event{Kind: Filtered, Folder: j.mb.Name, Dest: j.dest, ID: j.msg.ID, Err: fmt.Errorf("%s", why)})
			return false, nil
		}
	}
	if err != nil {
		if ctx.Err() != nil {
			return false, ctx.Err()
		}
		if Classify(err) == Skip {
			e.rep(Event{Kind: Skipped, Folder: j.mb.Name, Dest: j.dest, ID: j.msg.ID, Err: err})
			return false, nil
		}
		return false, err
	}
	j.body = body
	select {
	case out <- j:
		return true, nil
	case <-ctx.Done():
		body.Close()
		return false, ctx.Err()
	}
}

// newSpool returns the spool j's body is fetched into.
func (e *engine) newSpool(j *job) *Spool {
	sp := NewSpool(e.o.MemLimit, e.o.TempDir, e.budget)
	sp.Expect(j.msg.Size)
	j.undated = j.msg.Date.IsZero()
	if j.undated {
		sp.WantHeaderDate()
	}
	return sp
}

// fetch spools one message body, retrying transient errors.
func (e *engine) fetch(ctx context.Context, j *job) (*Body, error) {
	sp := e.newSpool(j)
	err := e.retry(ctx, j, "fetch", func() error {
		sp.Reset()
		err := e.o.Source.Fetch(ctx, j.msg, sp)
		if serr := sp.Err(); serr != nil {
			// Not the source's fault, whatever class it gave: our own
			// disk is full or gone, and every message would fail alike.
			return FatalError(serr)
		}
		return err
	})
	if err != nil {
		sp.Abort()
		return nil, fmt.Errorf("fetch message %s in %q: %w", j.msg.ID, j.mb.Name, err)
	}
	return e.finish(j, sp)
}

// finish turns j's filled spool into its Body.
func (e *engine) finish(j *job, sp *Spool) (*Body, error) {
	b, err := sp.Finish()
	if err == nil && j.undated {
		// The source knows no arrival date (POP3): the newest Received:
		// date, else Date:, else (zero) the destination's "now".
		j.msg.Date = b.HeaderDate()
	}
	return b, err
}

// fetchBatch fetches a unit of two or more messages with one FetchBatch
// call, when the source has it. It returns a slice as long as unit: the
// body of each message the source delivered in full (finished at once, so
// that a spilled spool's file writer is not held while the unit waits for
// the appenders), nil for the others (and for every message when the unit
// was not fetched as a batch), which the caller fetches one by one.
func (e *engine) fetchBatch(ctx context.Context, unit []*job) []*Body {
	bodies := make([]*Body, len(unit))
	bf, ok := e.o.Source.(BatchFetcher)
	if !ok || len(unit) < 2 {
		return bodies
	}
	spools := make([]*Spool, len(unit))
	msgs := make([]Message, len(unit))
	ws := make([]io.Writer, len(unit))
	for i, j := range unit {
		spools[i] = e.newSpool(j)
		msgs[i], ws[i] = j.msg, spools[i]
	}
	var done []bool
	if err := protect("fetch", func() error {
		done = bf.FetchBatch(ctx, msgs, ws)
		return nil
	}); err != nil {
		done = nil // a panic: every message is fetched again alone
	}
	for i, sp := range spools {
		if i >= len(done) || !done[i] || sp.Err() != nil {
			// A spool that failed (our disk) fails again, and is
			// classified, in the message's own fetch.
			sp.Abort()
			continue
		}
		if b, err := e.finish(unit[i], sp); err == nil {
			bodies[i] = b
		}
	}
	return bodies
}

// Fetch units (fetchUnits): a run of listed messages of one folder fetched
// with one BatchFetcher call. Small messages only, so that the units the
// fetchers hold (batchFetchersPerConn per source connection) stay well
// inside the run's memory budget: 16 fetchers with the default 8
// transfers, 4 MiB; a body the budget has no room for is spooled to a
// file through a writer no larger than the body (Spool.Write).
const (
	maxUnitMessages   = 32
	maxUnitBytes      = 256 << 10
	maxUnitMessageLen = 128 << 10
)

// fetchUnits returns a function that cuts the next fetch unit from the
// front of a listed chunk (every job of one folder): its length, at least
// 1. Without a BatchFetcher source every unit is one message.
func (e *engine) fetchUnits() func(chunk []*job) int {
	if _, ok := e.o.Source.(BatchFetcher); !ok {
		return func([]*job) int { return 1 }
	}
	return unitLen
}

// unitLen is the length of the fetch unit at the front of chunk: the
// longest run of small messages of the first one's folder within the
// bounds above, or the first message alone.
func unitLen(chunk []*job) int {
	first := chunk[0]
	var bytes int64
	n := 0
	for _, j := range chunk {
		size := j.msg.Size
		if n == maxUnitMessages || size > maxUnitMessageLen || bytes+size > maxUnitBytes ||
			j.mb.Name != first.mb.Name || j.msg.Loc != first.msg.Loc || j.dest != first.dest {
			break
		}
		bytes += size
		n++
	}
	return max(n, 1)
}
