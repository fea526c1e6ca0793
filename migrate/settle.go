package migrate

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Settling uncertain appends.
//
// An append is *uncertain* when its outcome is unknown: the connection broke
// or timed out after the message was (maybe) sent, or the process was
// killed with the append on the wire. Sending it again blindly duplicates
// the message whenever the first attempt was in fact stored, so an
// uncertain append is never re-sent before it is *settled*: looked up with
// the sink's Finder on a live connection. Found: the copy is recorded and
// nothing is sent. Not found: it may be sent again.
//
// A server can store an APPEND after the client that sent it died (the
// literal was already in the server's socket buffer, or in a proxy's); a
// lookup made at once can miss a copy that appears a moment later. Three
// mechanisms close that race:
//
//   - Settling delay. The lookup that decides is made no earlier than
//     Options.SettleDelay after the append became uncertain: after the
//     broken connection was noticed (in-process), or after the dead run was
//     last seen alive (its heartbeat, for a killed run). Sinks that are
//     Immediate (Maildir: files this process wrote, nothing happens after
//     it dies) settle at once. Settling happens off the appenders' path
//     (the settler goroutine), so a slow lookup does not stall the copy.
//   - In-flight journal. Every appender slot records, outside the
//     checkpoint's commits, which intent's bytes may be on the wire
//     (Checkpoint.Sending/Replied). A killed run's intents that were never
//     on the wire need no delay: only the few in flight at the kill wait.
//   - Reconcile. A re-sent uncertain append is checked once more at the end
//     of the run (no earlier than twice the settling delay after it became
//     uncertain): if the original copy did arrive after all, two copies of
//     the same bytes lie above the intent's mark; the engine removes the
//     one it made itself (Remover: IMAP UID EXPUNGE of the UID APPENDUID
//     returned, never another message) and records the other. A sink that
//     cannot remove one message safely (IMAP without UIDPLUS) leaves both
//     and the report says so.
//
// Candidates are assigned to intents by the engine: a ref recorded as the
// copy of another source message (Checkpoint.Owner) or obtained by this run
// for another one (claims) is never taken, so byte-identical source
// messages map to distinct copies; and an intent is not settled while an
// identical message is being appended to the same folder (inflight), whose
// copy would otherwise look like the uncertain one's.

// claims are the refs this run obtained (appended or located) and has not
// yet recorded in the checkpoint, with the intent they belong to; and how
// many unverified copies of each content it holds so.
type claims struct {
	mu         sync.Mutex
	m          map[string]string // dest \x00 ref -> Intent.Key
	unverified map[string]int    // dest \x00 stored hash -> count
}

func (c *claims) claim(dest, ref, key string) {
	c.mu.Lock()
	if Unverified(ref) {
		c.unverified[dest+"\x00"+unverifiedSum(ref)]++
	} else {
		c.m[dest+"\x00"+ref] = key
	}
	c.mu.Unlock()
}

// release forgets a claim once the checkpoint records it.
func (c *claims) release(dest, ref string) {
	if ref == "" {
		return
	}
	c.mu.Lock()
	if k := dest + "\x00" + unverifiedSum(ref); Unverified(ref) && c.unverified[k] > 0 {
		c.unverified[k]--
	} else {
		delete(c.m, dest+"\x00"+ref)
	}
	c.mu.Unlock()
}

func (c *claims) unverifiedCount(dest, sum string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.unverified[dest+"\x00"+sum]
}

func (c *claims) owner(dest, ref string) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	k, ok := c.m[dest+"\x00"+ref]
	return k, ok
}

// inflight counts appends in progress per destination folder and content.
type inflight struct {
	mu sync.Mutex
	m  map[string]int
}

func inflightKey(in Intent) string { return in.Dest + "\x00" + in.StoredSHA256() }

func (f *inflight) add(in Intent) {
	f.mu.Lock()
	f.m[inflightKey(in)]++
	f.mu.Unlock()
}

func (f *inflight) done(in Intent) {
	f.mu.Lock()
	if f.m[inflightKey(in)]--; f.m[inflightKey(in)] <= 0 {
		delete(f.m, inflightKey(in))
	}
	f.mu.Unlock()
}

func (f *inflight) busy(in Intent) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.m[inflightKey(in)] > 0
}

// taken reports whether ref in dest belongs to another source message than
// the one of key: recorded as its copy, or obtained for it by this run.
func (e *engine) taken(dest, ref, key string) (bool, error) {
	if k, ok := e.claims.owner(dest, ref); ok && k != key {
		return true, nil
	}
	k, ok, err := e.o.Checkpoint.Owner(dest, ref)
	if err != nil {
		return false, fmt.Errorf("read recorded copies: %w", err)
	}
	return ok && k != key, nil
}

// pick returns the first candidate of in that no other source message
// owns, and claims it for in; "" if there is none. Copies of identical
// content recorded with unverified refs (UnverifiedRef) own one free
// candidate each, which one is not known: that many free candidates are
// passed over.
func (e *engine) pick(in Intent, cands []string) (string, error) {
	skip := e.claims.unverifiedCount(in.Dest, in.StoredSHA256())
	if n, err := e.o.Checkpoint.Unverified(in.Dest, in.StoredSHA256()); err != nil {
		return "", fmt.Errorf("read recorded copies: %w", err)
	} else {
		skip += n
	}
	for _, ref := range cands {
		t, err := e.taken(in.Dest, ref, in.Key())
		if err != nil {
			return "", err
		}
		if t {
			continue
		}
		if skip > 0 {
			skip--
			continue
		}
		e.claims.claim(in.Dest, ref, in.Key())
		return ref, nil
	}
	return "", nil
}

// locate asks the sink's Finder for the candidate copies of ins, one call
// per destination folder, retrying transient errors (a destination that
// cannot answer now must not be taken for one without the copy).
func (e *engine) locate(ctx context.Context, finder Finder, ins []Intent) ([][]string, error) {
	out := make([][]string, len(ins))
	byDest := map[string][]int{}
	var dests []string
	for i, in := range ins {
		if _, ok := byDest[in.Dest]; !ok {
			dests = append(dests, in.Dest)
		}
		byDest[in.Dest] = append(byDest[in.Dest], i)
	}
	for _, d := range dests {
		idx := byDest[d]
		group := make([]Intent, len(idx))
		for k, i := range idx {
			group[k] = ins[i]
		}
		var res [][]string
		first := ins[idx[0]]
		err := e.retry(ctx, &job{mb: Mailbox{Name: first.Folder}, dest: d, msg: Message{ID: first.ID}}, "look up", func() error {
			var err error
			res, err = finder.Locate(ctx, d, group)
			if err == nil && len(res) != len(group) {
				err = fmt.Errorf("sink returned %d answers for %d intents", len(res), len(group))
			}
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("look for %d messages in destination folder %q: %w", len(group), d, err)
		}
		for k, i := range idx {
			out[i] = res[k]
		}
	}
	return out, nil
}

// settleDelay is how long after becoming uncertain an append is looked up
// for the decision: zero for an Immediate sink.
func (e *engine) settleDelay() time.Duration {
	if _, ok := e.o.Sink.(Immediate); ok {
		return 0
	}
	return e.o.SettleDelay
}

// settler holds the uncertain appends of this run until they are due.
type settler struct {
	mu   sync.Mutex
	q    []*job
	wake chan struct{}
}

func newSettler() *settler { return &settler{wake: make(chan struct{}, 1)} }

// add queues j (called by appenders); it never blocks.
func (s *settler) add(j *job) {
	s.mu.Lock()
	s.q = append(s.q, j)
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// due removes and returns the jobs whose settle time has come and that no
// identical append in flight could be confused with; next is when the
// earliest remaining one is due (zero: none left).
func (s *settler) due(now time.Time, delay time.Duration, busy func(Intent) bool) (ready []*job, next time.Time, left int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var keep []*job
	for _, j := range s.q {
		at := j.uncertainAt.Add(delay)
		if !at.After(now) && busy(*j.intent) {
			at = now.Add(50 * time.Millisecond)
		}
		if !at.After(now) {
			ready = append(ready, j)
			continue
		}
		keep = append(keep, j)
		if next.IsZero() || at.Before(next) {
			next = at
		}
	}
	s.q = keep
	return ready, next, len(keep)
}

// drop releases the bodies of jobs left when the run stops; their intents
// stay pending for the next run.
func (s *settler) drop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, j := range s.q {
		j.body.Close()
	}
	s.q = nil
}

// settleLoop is the settler goroutine; slot is its place in the in-flight
// journal (it re-sends). It ends when the appenders are done (no more
// uncertain appends can come) and nothing is left to settle.
func (e *engine) settleLoop(ctx context.Context, slot int, appendersDone <-chan struct{}) error {
	defer e.settler.drop()
	finder, _ := e.o.Sink.(Finder)
	delay := e.settleDelay()
	finished := false
	for {
		ready, next, left := e.settler.due(time.Now(), delay, e.inflight.busy)
		if len(ready) > 0 {
			if err := e.settle(ctx, finder, slot, ready); err != nil {
				return err
			}
			continue
		}
		if finished && left == 0 {
			return nil
		}
		var timer <-chan time.Time
		if !next.IsZero() {
			t := time.NewTimer(time.Until(next))
			defer t.Stop()
			timer = t.C
		}
		done := appendersDone
		if finished {
			done = nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-e.settler.wake:
		case <-timer:
		case <-done:
			finished = true
		}
	}
}

// settle looks up due uncertain appends: found ones are recorded, the rest
// are sent again (and reconciled at the end of the run).
func (e *engine) settle(ctx context.Context, finder Finder, slot int, ready []*job) error {
	ins := make([]Intent, len(ready))
	for i, j := range ready {
		ins[i] = *j.intent
	}
	cands, err := e.locate(ctx, finder, ins)
	if err != nil {
		for _, j := range ready {
			j.body.Close()
		}
		return err
	}
	var resend []*job
	for i, j := range ready {
		ref, err := e.pick(ins[i], cands[i])
		if err != nil {
			return err
		}
		if ref == "" {
			j.attempts++
			if j.attempts > e.o.Retries {
				for _, r := range ready[i:] {
					r.body.Close()
				}
				return FatalError(fmt.Errorf("append message %s of %q to %q: outcome unknown %d times in a row, giving up (the next run looks for it again)", j.msg.ID, j.mb.Name, j.dest, j.attempts))
			}
			j.resent = true
			resend = append(resend, j)
			e.rep(Event{Kind: Settled, Folder: j.mb.Name, Dest: j.dest, ID: j.msg.ID, How: SettledResent})
			continue
		}
		if err := e.o.Checkpoint.Complete([]Intent{ins[i]}, []string{ref}); err != nil {
			return fmt.Errorf("record settled copy: %w", err)
		}
		e.claims.release(ins[i].Dest, ref)
		e.rep(Event{Kind: Settled, Folder: j.mb.Name, Dest: j.dest, ID: j.msg.ID, How: SettledFound})
		e.rep(Event{Kind: Copied, Folder: j.mb.Name, Dest: j.dest, ID: j.msg.ID, Bytes: j.body.Size()})
		j.body.Close()
	}
	if len(resend) == 0 {
		return nil
	}
	next, uncertain, err := e.appendBatch(ctx, nil, slot, resend, nil)
	e.handOver(resend, uncertain)
	if rerr := e.record(next); rerr != nil && err == nil {
		err = rerr
	}
	return err
}

// reconcile is one re-sent uncertain append to check at the end of the run.
type reconcileItem struct {
	in          Intent
	ours        string // ref of the copy this run made; "" = look it up
	uncertainAt time.Time
}

type reconcileList struct {
	mu    sync.Mutex
	items []reconcileItem
}

func (r *reconcileList) add(in Intent, ours string, at time.Time) {
	r.mu.Lock()
	r.items = append(r.items, reconcileItem{in, ours, at})
	r.mu.Unlock()
}

// reconcile checks every re-sent uncertain append once more, after the
// pipeline ended (see the top of this file). Called from Run's goroutine.
func (e *engine) reconcile(ctx context.Context) error {
	finder, ok := e.o.Sink.(Finder)
	delay := e.settleDelay()
	if !ok || delay == 0 || len(e.recon.items) == 0 {
		return nil
	}
	var items []reconcileItem
	latest := time.Time{}
	for _, it := range e.recon.items {
		if it.ours == "" {
			ref, ok, err := e.o.Checkpoint.Ref(it.in.Folder, it.in.Epoch, it.in.ID)
			if err != nil {
				return fmt.Errorf("read recorded copy: %w", err)
			}
			if !ok || IsFound(ref) {
				continue // not copied by this run
			}
			it.ours = ref
		}
		items = append(items, it)
		if it.uncertainAt.After(latest) {
			latest = it.uncertainAt
		}
	}
	if len(items) == 0 {
		return nil
	}
	if wait := time.Until(latest.Add(2 * delay)); wait > 0 {
		e.rep(Event{Kind: Waiting, Bytes: int64(len(items)), Err: fmt.Errorf("checking %d re-sent messages for a late copy in %s (--settle-delay)", len(items), wait.Round(time.Millisecond))})
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
	}
	ins := make([]Intent, len(items))
	for i, it := range items {
		ins[i] = it.in
	}
	cands, err := e.locate(ctx, finder, ins)
	if err != nil {
		return err
	}
	remover, canRemove := e.o.Sink.(Remover)
	for i, it := range items {
		// The candidates no other source message owns: ours and, if the
		// first attempt arrived late, that one.
		var free, others []string
		for _, ref := range cands[i] {
			t, err := e.taken(it.in.Dest, ref, it.in.Key())
			if err != nil {
				return err
			}
			if !t {
				free = append(free, ref)
				if ref != it.ours {
					others = append(others, ref)
				}
			}
		}
		if Unverified(it.ours) {
			// Which candidate is ours is not known; copies recorded as
			// unverified with this content (ours among them) own as many.
			n, err := e.o.Checkpoint.Unverified(it.in.Dest, it.in.StoredSHA256())
			if err != nil {
				return fmt.Errorf("read recorded copies: %w", err)
			}
			if len(free) <= n {
				continue
			}
		}
		if len(others) == 0 {
			continue
		}
		ev := Event{Kind: Settled, Folder: it.in.Folder, Dest: it.in.Dest, ID: it.in.ID}
		var rerr error
		if canRemove && !Unverified(it.ours) {
			rerr = remover.Remove(ctx, it.in.Dest, it.ours)
		} else {
			rerr = ErrCannotRemove // which copy is ours is not known
		}
		switch {
		case rerr == nil:
			if err := e.o.Checkpoint.Complete([]Intent{it.in}, []string{others[0]}); err != nil {
				return fmt.Errorf("record reconciled copy: %w", err)
			}
			ev.How = SettledRemoved
		case errors.Is(rerr, ErrCannotRemove) || Classify(rerr) != Fatal:
			ev.How = SettledPossibleDuplicate
			ev.Err = fmt.Errorf("message %s of %q may be twice in %q: the first attempt, whose outcome was unknown, arrived after it had been sent again, and this copy cannot be removed here (%v)", it.in.ID, it.in.Folder, it.in.Dest, rerr)
		default:
			return fmt.Errorf("remove the second copy of message %s of %q from %q: %w", it.in.ID, it.in.Folder, it.in.Dest, rerr)
		}
		e.rep(ev)
	}
	return nil
}

// How an uncertain append was settled (Event.How, SettledCopy.How).
const (
	SettledFound             = "found"              // the copy was there: recorded, not sent again
	SettledResent            = "resent"             // not there: sent again
	SettledRemoved           = "duplicate-removed"  // the first attempt arrived late: the re-sent copy was removed
	SettledPossibleDuplicate = "possible-duplicate" // the first attempt arrived late and the re-sent copy could not be removed
)
