package migrate

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
)

// appendLoop is one appender goroutine; slot is its place in the in-flight
// journal. It groups whatever spooled messages are waiting (up to
// BatchSize) into a batch and runs the crash-safety protocol on it
// (appendBatch). Appends whose outcome is unknown go to the settler
// (settle.go), which owns their bodies from then on; only a fatal error
// ends the loop. Once soft is done (a graceful stop) it takes no new batch.
//
// A batch's copies are recorded with the next batch's intents, in one
// commit, when that batch is already waiting; when none is, or the loop
// ends for any reason, they are recorded on their own (record) before the
// loop waits or returns.
func (e *engine) appendLoop(ctx, soft context.Context, slot int, in <-chan *job) (err error) {
	var held *settled // the last batch's outcome, not yet recorded
	defer func() {
		if rerr := e.record(held); rerr != nil && err == nil {
			err = rerr
		}
	}()
	for {
		if soft.Err() != nil && ctx.Err() == nil {
			return nil
		}
		var first *job
		var ok bool
		select {
		case first, ok = <-in:
		default:
			// Nothing waiting: record the last batch instead of holding
			// its copies back while the pipeline is idle.
			err, held = e.record(held), nil
			if err != nil {
				return err
			}
			select {
			case first, ok = <-in:
			case <-soft.Done():
				continue
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		if !ok {
			return nil
		}
		batch := []*job{first}
	drain:
		for len(batch) < e.o.BatchSize {
			select {
			case j, ok := <-in:
				if !ok {
					break drain
				}
				batch = append(batch, j)
			default:
				break drain
			}
		}
		var uncertain []*job
		held, uncertain, err = e.appendBatch(ctx, e.o.Stop, slot, batch, held)
		e.handOver(batch, uncertain)
		if err != nil {
			return err
		}
	}
}

// settled is the outcome of a batch's appends, to be recorded: finished[i]
// (appended, or ended without a copy) with refs[i] ("" for none), and the
// jobs copied.
type settled struct {
	finished []Intent
	refs     []string
	copied   []*job
}

// record makes s durable on its own (one commit) and then reports it
// (recorded). A nil s records nothing.
func (e *engine) record(s *settled) error {
	if s == nil || len(s.finished) == 0 {
		return nil
	}
	if err := e.o.Checkpoint.Complete(s.finished, s.refs); err != nil {
		return fmt.Errorf("record copies in checkpoint: %w", err)
	}
	e.hook("done")
	e.recorded(s)
	return nil
}

// recorded follows the commit of s: the copies' claims are released (the
// checkpoint names their owners now) and they are reported as copied.
func (e *engine) recorded(s *settled) {
	for i, in := range s.finished {
		e.claims.release(in.Dest, s.refs[i])
	}
	for _, j := range s.copied {
		e.rep(Event{Kind: Copied, Folder: j.mb.Name, Dest: j.dest, ID: j.msg.ID, Bytes: j.body.Size()})
	}
}

// handOver releases the bodies of a finished batch, except those of the
// uncertain appends, which go to the settler, and counts the batch's
// messages out of their folders' flight (order.go), once: their turn is
// cleared.
func (e *engine) handOver(batch, uncertain []*job) {
	for _, j := range batch {
		if j.turn != nil {
			e.turns.left(j.turn)
			j.turn = nil // through its appender once (a resend comes here again)
		}
	}
	keep := map[*job]bool{}
	for _, j := range uncertain {
		keep[j] = true
		e.settler.add(j)
	}
	for _, j := range batch {
		if !keep[j] {
			j.body.Close()
		}
	}
}

// appendBatch runs the crash-safety protocol on one batch:
//
//  1. intents for the whole batch are made durable, each with the
//     destination's current mark — in one commit with the done records
//     of the previous batch (prev) when there is one;
//  2. each message is appended — the messages of one destination folder
//     in batches where the sink takes them (BatchSink: IMAP MULTIAPPEND,
//     one transaction on the server) — its journal slot telling a next
//     run that it may be on the wire;
//  3. the sink makes the batch durable (Syncer);
//  4. the outcome is returned (next), for the caller to record: with the
//     next batch's intents, or on its own (record).
//
// A crash between 1 and the commit of next leaves intents that the next
// run resolves with the sink's Finder (recover.go). An append that fails
// with an Uncertain error (the connection broke after the message was
// sent) is returned in uncertain, its intent still pending: it is settled,
// never blindly sent again. On a fatal error or cancellation the messages
// already appended are still synced and returned in next; a message never
// attempted has its intent cleared, except a re-sent uncertain one, whose
// intent stays pending for the next run to settle. A graceful stop (stop
// closed: Options.Stop; nil for none) ends the batch the same way but
// without an error: the messages on the wire finish, a message waiting to
// retry gives up its wait, the rest are left for the next run. next is what is left to
// record whatever the error: prev itself when its commit did not happen,
// nil when the batch's appends could not be made durable (their intents
// stay pending: recovery decides).
func (e *engine) appendBatch(ctx context.Context, stop <-chan struct{}, slot int, batch []*job, prev *settled) (next *settled, uncertain []*job, err error) {
	finder, _ := e.o.Sink.(Finder)
	marks := map[string]string{}
	intents := make([]Intent, len(batch))
	for i, j := range batch {
		if j.intent != nil {
			intents[i] = *j.intent // a re-send keeps its first mark
			continue
		}
		mark, ok := marks[j.dest]
		if !ok && finder != nil {
			if mark, err = finder.Mark(ctx, j.dest); err != nil {
				return prev, nil, fmt.Errorf("read position of destination folder %q: %w", j.dest, err)
			}
			marks[j.dest] = mark
		}
		if intents[i], err = e.intentFor(j, mark); err != nil {
			return prev, nil, err
		}
		j.intent = &intents[i]
	}
	if prev == nil || len(prev.finished) == 0 {
		if err := e.o.Checkpoint.AddIntents(intents); err != nil {
			return nil, nil, fmt.Errorf("record intents in checkpoint: %w", err)
		}
	} else {
		if err := e.o.Checkpoint.CompleteAndAdd(prev.finished, prev.refs, intents); err != nil {
			return prev, nil, fmt.Errorf("record copies and intents in checkpoint: %w", err)
		}
		e.hook("done")
		e.recorded(prev)
	}
	e.hook("intent")

	var (
		finished []Intent // appended (ref != "") or skipped (ref == "")
		refs     []string
		copied   []*job
		fatal    error
	)
	// stopping: the batch ends before its next append — an error, a
	// cancellation, or a graceful stop (stop: the appends on the wire
	// finish, the rest of the batch is left for the next run).
	stopping := func() bool { return fatal != nil || ctx.Err() != nil || closed(stop) }
	// notAttempted ends batch[i] when the batch stops before its append.
	notAttempted := func(i int) {
		if fatal == nil {
			fatal = ctx.Err()
		}
		if !batch[i].resent {
			// Never attempted: clear the intent (nothing to recover).
			finished = append(finished, intents[i])
			refs = append(refs, "")
		}
	}
	var uncertainErrs []error // uncertainErrs[k] is why uncertain[k]'s outcome is unknown
	// outcome records what batch[i]'s append did.
	outcome := func(i int, ref string, err error) {
		j, in := batch[i], intents[i]
		switch {
		case errors.Is(err, errStoppedRetrying):
			notAttempted(i) // its failed attempts stored nothing
		case err == nil:
			e.hook("append")
			if in.MessageID == "" && j.dup != nil && j.dup.len() > 0 {
				e.noMID.Add(1)
			}
			finished = append(finished, in)
			refs = append(refs, ref)
			copied = append(copied, j)
			if j.resent {
				e.recon.add(in, ref, j.uncertainAt)
			}
		case IsUncertain(err) && finder != nil && ctx.Err() == nil:
			j.uncertainAt = time.Now()
			uncertain = append(uncertain, j)
			uncertainErrs = append(uncertainErrs, err)
		case Classify(err) == Skip && ctx.Err() == nil:
			e.rep(Event{Kind: Skipped, Folder: j.mb.Name, Dest: j.dest, ID: j.msg.ID, Err: err})
			finished = append(finished, in)
			refs = append(refs, "")
		default:
			// The copy may or may not exist: the intent stays pending
			// and the next run's recovery decides.
			fatal = err
		}
	}
	// Messages for one destination folder go as one batch where the sink
	// can (BatchSink), else one by one.
	bs, _ := e.o.Sink.(BatchSink)
	maxN, maxBytes := 0, int64(0)
	if bs != nil {
		maxN, maxBytes = bs.BatchLimits()
		maxN = e.batchCap.limit(maxN)
	}
	groups := map[string][]int{}
	var dests []string
	flush := func(dest string) {
		idx := groups[dest]
		delete(groups, dest)
		if len(idx) == 1 {
			if stopping() {
				notAttempted(idx[0])
				return
			}
			ref, err := e.appendOne(ctx, stop, slot, batch[idx[0]], intents[idx[0]])
			outcome(idx[0], ref, err)
			return
		}
		var results []batchResult
		if !stopping() {
			results = e.appendMany(ctx, bs, slot, batch, intents, idx)
		}
		for k, i := range idx {
			if results == nil {
				notAttempted(i)
				continue
			}
			// Every result counts, even once the batch is stopping: a
			// message stored while the run was being cancelled is a copy
			// to record, not one to forget.
			r := results[k]
			if r.err != nil && !IsUncertain(r.err) && Classify(r.err) == Retry {
				// Not stored (a refused batch, no connection): one by
				// one, each with its own retries, unless stopping.
				if stopping() {
					notAttempted(i)
					continue
				}
				r.ref, r.err = e.appendOne(ctx, stop, slot, batch[i], intents[i])
			}
			outcome(i, r.ref, r.err)
		}
	}
	size := map[string]int64{}
	for i, j := range batch {
		in := intents[i]
		if stopping() {
			notAttempted(i)
			continue
		}
		ok, as := j.dup.take(in.MessageID, in.StoredSize(), j.body.BodyLen(), unixDate(in.Date), j.body.EndsWithLineEnd())
		if !ok && !j.msg.PriorDate.IsZero() {
			ok, as = j.dup.take(in.MessageID, in.StoredSize(), j.body.BodyLen(), unixDate(j.msg.PriorDate), j.body.EndsWithLineEnd())
		}
		if ok {
			// Already in the destination: record it as found there.
			finished = append(finished, in)
			refs = append(refs, foundRef(as))
			e.rep(Event{Kind: Duplicate, Folder: j.mb.Name, Dest: j.dest, ID: j.msg.ID, Bytes: j.msg.Size})
			continue
		}
		if maxN < 2 || j.resent {
			// A message sent again after an unknown outcome goes alone:
			// a link that broke under a batch may break again.
			ref, err := e.appendOne(ctx, stop, slot, j, in)
			outcome(i, ref, err)
			continue
		}
		if len(groups[j.dest]) == 0 {
			dests = append(dests, j.dest)
		}
		groups[j.dest] = append(groups[j.dest], i)
		size[j.dest] += j.body.CRLFSize()
		if len(groups[j.dest]) >= maxN || size[j.dest] >= maxBytes {
			flush(j.dest)
			size[j.dest] = 0
		}
	}
	for _, d := range dests {
		if len(groups[d]) > 0 {
			flush(d)
		}
	}
	e.reportUncertain(uncertain, uncertainErrs)

	// Make what was appended durable, even when stopping: a clean stop
	// leaves nothing for recovery to do.
	if s, ok := e.o.Sink.(Syncer); ok && len(copied) > 0 {
		seen := map[string]bool{}
		for _, j := range copied {
			if seen[j.dest] {
				continue
			}
			seen[j.dest] = true
			if err := s.Sync(context.WithoutCancel(ctx), j.dest); err != nil {
				// Not durable: leave the intents pending; recovery decides.
				return nil, uncertain, fmt.Errorf("sync destination folder %q: %w", j.dest, err)
			}
		}
		e.hook("sync")
	}
	return &settled{finished: finished, refs: refs, copied: copied}, uncertain, fatal
}

// appendOne appends one message, retrying failures that promise nothing
// was stored, and returns the ref of the copy (claimed for in). Its journal
// slot holds in's key while the message may be on the wire, and the
// in-flight count of identical messages keeps the settler from taking this
// copy for a twin before this call knows its ref.
//
// A graceful stop (stop closed) while it waits to retry a failure that
// stored nothing ends it with errStoppedRetrying: the message was not
// appended.
func (e *engine) appendOne(ctx context.Context, stop <-chan struct{}, slot int, j *job, in Intent) (string, error) {
	e.inflight.add(in)
	defer e.inflight.done(in)
	var ref string
	err := e.retryUntil(ctx, stop, j, "append", func() error {
		if err := e.o.Checkpoint.Sending(slot, in.Key()); err != nil {
			return FatalError(fmt.Errorf("write in-flight journal: %w", err))
		}
		var err error
		ref, err = e.o.Sink.Append(ctx, j.dest, j.msg, j.body)
		if IsUncertain(err) {
			return err // the slot keeps saying "maybe on the wire"
		}
		if jerr := e.o.Checkpoint.Replied(slot); jerr != nil && err == nil {
			err = FatalError(fmt.Errorf("write in-flight journal: %w", jerr))
		}
		return err
	})
	if err != nil {
		return "", fmt.Errorf("append message %s of %q to %q: %w", j.msg.ID, j.mb.Name, j.dest, err)
	}
	e.claims.claim(in.Dest, ref, in.Key())
	return ref, nil
}

// batchCap adapts the size of batches to the link: a batch whose outcome
// became unknown (the connection broke under it) halves the cap, down to
// single appends; each batch that got through raises it by one, up to the
// sink's limit. A link that resets every few hundred kilobytes then
// carries single messages, which get through, instead of batches that
// never would.
type batchCap struct {
	mu  sync.Mutex
	cap int // 0: the sink's limit
}

func (b *batchCap) limit(max int) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cap == 0 || b.cap > max {
		b.cap = max
	}
	return b.cap
}

func (b *batchCap) note(n int, broke bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case broke:
		b.cap = max(1, min(b.cap, n)/2)
	case b.cap > 0:
		b.cap++ // limit caps it again at the sink's maximum
	}
}

type batchResult struct {
	ref string
	err error
}

// appendMany appends batch[idx] (two or more messages of one destination
// folder) with one AppendBatch call. Journal slots slot..slot+len(idx)-1
// hold their keys while they may be on the wire. The results are in idx's
// order, each as appendOne's would be (a Retry-classified one was not
// stored: the caller appends that message again on its own).
func (e *engine) appendMany(ctx context.Context, bs BatchSink, slot int, batch []*job, intents []Intent, idx []int) []batchResult {
	out := make([]batchResult, len(idx))
	msgs := make([]Message, len(idx))
	bodies := make([]*Body, len(idx))
	keys := make([]string, len(idx))
	for k, i := range idx {
		e.inflight.add(intents[i])
		defer e.inflight.done(intents[i])
		msgs[k], bodies[k], keys[k] = batch[i].msg, batch[i].body, intents[i].Key()
	}
	if err := e.o.Checkpoint.Sending(slot, keys...); err != nil {
		err = FatalError(fmt.Errorf("write in-flight journal: %w", err))
		for k := range out {
			out[k].err = err
		}
		return out
	}
	dest := batch[idx[0]].dest
	refs, errs := bs.AppendBatch(ctx, dest, msgs, bodies)
	broke := false
	var answered []int // slots whose append is no longer on the wire
	for k, err := range errs {
		broke = broke || IsUncertain(err)
		if !IsUncertain(err) {
			answered = append(answered, slot+k)
		}
	}
	e.batchCap.note(len(idx), broke)
	jerr := e.o.Checkpoint.Replied(answered...)
	for k, i := range idx {
		j, err := batch[i], errs[k]
		if jerr != nil && err == nil {
			err = FatalError(fmt.Errorf("write in-flight journal: %w", jerr))
		}
		if err != nil {
			out[k].err = fmt.Errorf("append message %s of %q to %q: %w", j.msg.ID, j.mb.Name, j.dest, err)
			continue
		}
		e.claims.claim(intents[i].Dest, refs[k], keys[k])
		out[k].ref = refs[k]
	}
	return out
}

// reportUncertain reports the appends of a batch whose outcome is unknown
// (settled before they are sent again): one Retrying event for each run of
// them with the same folders and error — a connection that broke under a
// MULTIAPPEND leaves its whole batch so, and 32 identical lines said it —
// naming the first message and counting the others.
func (e *engine) reportUncertain(jobs []*job, errs []error) {
	cause := func(err error) string { // what is left without the context that names the message
		for u := errors.Unwrap(err); u != nil; u = errors.Unwrap(err) {
			err = u
		}
		return err.Error()
	}
	for k := 0; k < len(jobs); {
		j, why := jobs[k], cause(errs[k])
		n := 1
		for k+n < len(jobs) && jobs[k+n].mb.Name == j.mb.Name && jobs[k+n].dest == j.dest && cause(errs[k+n]) == why {
			n++
		}
		what := "outcome unknown"
		if n > 1 {
			what = fmt.Sprintf("outcome unknown for it and %s of its batch (the last %s)", countOf(n-1, "other message", "other messages"), jobs[k+n-1].msg.ID)
		}
		e.rep(Event{Kind: Retrying, Folder: j.mb.Name, Dest: j.dest, ID: j.msg.ID, Count: n,
			Err: fmt.Errorf("%s, looked up before sending again: %w", what, errs[k])})
		k += n
	}
}

// intentFor describes the copy of j about to be written.
func (e *engine) intentFor(j *job, mark string) (Intent, error) {
	in := Intent{
		Folder: j.mb.Name, Epoch: j.mb.Epoch, ID: j.msg.ID, Dest: j.dest, Mark: mark,
		MessageID: j.body.MessageID(), Size: j.body.Size(), SHA256: j.body.SHA256(),
		Date: j.msg.Date, Flags: j.msg.Flags,
	}
	if _, ok := e.o.Sink.(CRLFSink); ok && (j.body.CRLFSize() != j.body.Size() || j.body.HasNUL()) {
		sum, err := j.body.CompareSHA256()
		if err != nil {
			return Intent{}, FatalError(err)
		}
		in.CRLFSize, in.CRLFSHA256 = j.body.CRLFSize(), sum
	}
	return in, nil
}

// DedupeRef is the ref recorded for a message that --dedupe found already
// in the destination (not a particular copy).
const DedupeRef = "dedupe:existing"

// FoundPrefix starts the ref recorded for a message that the first-contact
// comparison found already in the destination (contact.go): FoundPrefix
// and the ref of the copy it was found as. The copy is not one this
// checkpoint made; recording it keeps it from being found again for
// another message (Checkpoint.Owner knows it).
const FoundPrefix = "found:"

// IsFound reports whether ref records a message found already in the
// destination (DedupeRef, FoundPrefix) rather than copied: it has no copy
// of its own.
func IsFound(ref string) bool { return ref == DedupeRef || strings.HasPrefix(ref, FoundPrefix) }

// foundRef is the ref recorded for a message found as the copy as (""
// when the index did not know its ref: DedupeRef).
func foundRef(as string) string {
	if as == "" {
		return DedupeRef
	}
	return FoundPrefix + as
}

// unixDate is t in unix seconds, 0 for none (what dedupSet compares).
func unixDate(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.Unix()
}

// closed reports whether ch is closed (a nil ch never is).
func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}
