package migrate

import (
	"context"
	"fmt"
	"slices"
	"time"
)

// listChunk is how many jobs of one folder the lister hands on at once.
const listChunk = 128

// list is the lister stage: every mailbox of the source is selected,
// mapped, prepared on the sink (by the preparer goroutine, a folder or two
// ahead: prepareAll) and listed (on this goroutine, in the same order);
// the messages that are neither filtered nor already copied are sent on
// out in chunks of up to listChunk jobs of one folder (see interleave).
//
// A folder that cannot be listed, or that a Checker source refuses, (a
// Skip-classified error) is reported as skipped (with an empty message ID)
// and the run goes on with the next folder; what was listed before the
// error is still copied. A folder the sink cannot create (a Skip-classified
// Prepare error) has each of its messages reported as skipped, so the
// summary counts them all. Fatal errors end the run. Transient (Retry)
// errors of Mailboxes, Prepare and Index are retried with backoff, and so
// are those of List until it delivered its first message (a source that
// can fail later resumes its own listing: see sources/imap.go).
func (e *engine) list(ctx context.Context, out chan<- []*job) error {
	var mbs []Mailbox
	err := e.retry(ctx, &job{}, "list source folders", func() error {
		var err error
		mbs, err = e.o.Source.Mailboxes(ctx)
		return err
	})
	if err != nil {
		return fmt.Errorf("list source folders: %w", err)
	}
	if d := duplicateMailbox(mbs); d != "" {
		return FatalError(fmt.Errorf("list source folders: the source lists folder %q twice, so one of the two would never be read (a bug of the source: please report it)", d))
	}
	warns, err := e.o.checkSelection(mbs)
	for _, w := range warns {
		e.rep(Event{Kind: Warning, Err: w})
	}
	if err != nil {
		return err
	}
	mbs = e.o.plannedInto(mbs[:0], mbs)
	if p, ok := e.o.Sink.(Planner); ok && !e.o.DryRun {
		p.Plan(e.o.plan(mbs))
	}
	e.tally.expect(len(mbs))
	pctx, cancel := context.WithCancel(ctx)
	ready := make(chan *prepared, prepareAhead-1)
	go func() {
		defer close(ready)
		e.prepareAll(pctx, mbs, ready)
	}()
	defer func() {
		cancel()
		for range ready { // the preparer has ended when ready is closed
		}
	}()
	for p := range ready {
		if err := e.listMailbox(ctx, p, out); err != nil {
			if Classify(err) != Skip || ctx.Err() != nil {
				return err
			}
			e.rep(Event{Kind: Skipped, Folder: p.mb.Name, Err: fmt.Errorf("folder %q skipped: %w", p.mb.Name, err)})
		}
	}
	return ctx.Err()
}

// prepareAhead is how many folders the preparer may have done (or be
// doing) that the lister has not taken yet.
const prepareAhead = 2

// prepared is what the preparer found out about one folder before it is
// listed: whether the checkpoint says it is unchanged, whether the source
// can read it, and the destination folder the sink prepared.
type prepared struct {
	mb        Mailbox
	dest      string
	vkey      versionKey
	versioned bool
	unchanged *versionRecord // the folder is as the last run left it
	err       error          // the folder cannot be read (Checker) or a fatal error
	prepErr   error          // Sink.Prepare failed (then dest is the name asked for)
}

// prepareAll is the preparer goroutine: for every selected folder, in the
// order of the plan, it checks the folder and prepares its destination,
// at most prepareAhead folders ahead of the lister, so that the sink's
// round trips for the next folder (CREATE, SELECT) overlap with the
// source's listing of this one. It stops after a result the lister will
// end the run on (a fatal error), or when ctx ends.
//
// Folders are taken off the front of Planned's copy, and the rest is
// moved to a smaller array each time half of it is done: with 100,000
// folders the list would otherwise stay whole while the report rows grow
// to the same count.
func (e *engine) prepareAll(ctx context.Context, mbs []Mailbox, ready chan<- *prepared) {
	held := len(mbs)
	for len(mbs) > 0 {
		if ctx.Err() != nil {
			return
		}
		mb := mbs[0]
		mbs = mbs[1:]
		if len(mbs) < held/2 {
			mbs = slices.Clone(mbs)
			held = len(mbs)
		}
		if !e.o.Selected(mb.Name) {
			continue
		}
		p := e.prepare(ctx, mb)
		select {
		case ready <- p:
		case <-ctx.Done():
			return
		}
		if (p.err != nil && Classify(p.err) != Skip) || (p.prepErr != nil && Classify(p.prepErr) != Skip) {
			return
		}
	}
}

// prepare is prepareAll's work for one folder. Called on the preparer
// goroutine: Checker.CheckMailbox and Sink.Prepare run there, while the
// lister goroutine lists an earlier folder.
func (e *engine) prepare(ctx context.Context, mb Mailbox) *prepared {
	p := &prepared{mb: mb, dest: e.o.MapName(mb.Name)}
	p.vkey, p.versioned = e.versions.key(&e.o, mb, p.dest)
	if r, ok, err := e.versions.unchanged(p.vkey, p.versioned, mb.Name); err != nil {
		p.err = err
		return p
	} else if ok {
		p.unchanged = &r
		if r.Dest != "" {
			p.dest = r.Dest // the name Prepare chose when the folder was finished
		}
		return p
	}
	if c, ok := e.o.Source.(Checker); ok {
		if err := c.CheckMailbox(ctx, mb); err != nil {
			p.err = err
			return p
		}
	}
	if e.o.DryRun {
		return p
	}
	name := p.dest
	err := e.retry(ctx, &job{mb: mb, dest: name}, "prepare destination folder", func() error {
		var err error
		p.dest, err = e.o.Sink.Prepare(ctx, mb, name) // Planned already cleared the use of a --map'd folder
		return err
	})
	if err != nil {
		p.dest = name
		p.prepErr = fmt.Errorf("prepare destination folder for %q: %w", mb.Name, err)
	}
	return p
}

// Checker is implemented by sources that can tell, before anything is
// written, that a folder cannot be read at all (in an mbox tree, a file
// that is not an mbox file). CheckMailbox returns a SkipMessage-classified
// error for such a folder: the engine reports the folder as skipped
// without asking the sink to create it. Called from the preparer
// goroutine (see list), one folder at a time, while List may be running
// for an earlier folder.
type Checker interface {
	CheckMailbox(ctx context.Context, mb Mailbox) error
}

// listMailbox lists one prepared folder (lister goroutine) and hands its
// messages on in chunks.
func (e *engine) listMailbox(ctx context.Context, p *prepared, out chan<- []*job) error {
	mb, dest := p.mb, p.dest
	if p.err != nil {
		return p.err
	}
	if r := p.unchanged; r != nil {
		e.rep(Event{Kind: FolderStart, Folder: mb.Name, Dest: dest})
		e.rep(Event{Kind: Unchanged, Folder: mb.Name, Dest: dest, Count: r.Already, Filtered: r.Filtered})
		return nil
	}
	if err := p.prepErr; err != nil {
		if Classify(err) != Skip || mb.NoSelect {
			return err
		}
		return e.skipFolder(ctx, mb, dest, err)
	}
	var rm *rematcher
	var dup *dedupSet
	// The epoch is recorded with the folder's first queued message, not
	// here: a folder that has nothing to copy (most of an account of
	// 100,000 folders) costs no commit. Nothing was copied under an epoch
	// that was never recorded, so a change of it needs no re-match.
	newEpoch := false
	if mb.Epoch != "" && e.o.Checkpoint != nil {
		old, ok, err := e.o.Checkpoint.Epoch(mb.Name)
		if err != nil {
			return err
		}
		switch {
		case !ok && !e.o.DryRun:
			newEpoch = true
		case ok && old != mb.Epoch:
			if rm, err = e.newRematcher(mb, old); err != nil {
				return err
			}
		}
	}
	e.del.epoch(mb.Name, mb.Epoch)
	e.rep(Event{Kind: FolderStart, Folder: mb.Name, Dest: dest})
	if mb.NoSelect {
		return nil
	}
	if e.o.Dedupe && !e.o.DryRun && !mb.Empty { // (an Empty folder lists nothing)
		var err error
		if dup, err = e.dedupFor(ctx, dest); err != nil {
			return err
		}
	}
	var chunk []*job
	flush := func() error {
		if len(chunk) == 0 {
			return nil
		}
		select {
		case out <- chunk:
			chunk = nil
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	e.versions.listing(mb.Name, dest, p.vkey, p.versioned)
	delivered, contacted, auto := false, false, false
	each := func(m Message) error {
		delivered = true
		if why := e.o.filter(m); why != "" {
			e.rep(Event{Kind: Filtered, Folder: mb.Name, Dest: dest, ID: m.ID, Err: fmt.Errorf("%s", why)})
			return nil
		}
		if e.o.Checkpoint != nil {
			done, err := e.o.Checkpoint.Done(mb.Name, mb.Epoch, m.ID)
			if err != nil {
				return err
			}
			if done {
				e.rep(Event{Kind: Already, Folder: mb.Name, Dest: dest, ID: m.ID})
				return nil
			}
		}
		if rm != nil {
			found, err := rm.match(ctx, m)
			if err != nil {
				return err
			}
			if found {
				e.rep(Event{Kind: Already, Folder: mb.Name, Dest: dest, ID: m.ID})
				return nil
			}
		}
		if !contacted {
			// The folder's first message to copy: a first contact? (contact.go)
			contacted = true
			if d, err := e.contacts.decide(ctx, mb, dest, rm != nil); err != nil {
				return err
			} else if d != nil {
				dup, auto = d, true
			}
		}
		e.rep(Event{Kind: Queued, Folder: mb.Name, Dest: dest, ID: m.ID, Bytes: m.Size})
		if e.o.DryRun {
			return nil
		}
		if newEpoch {
			if err := e.o.Checkpoint.SetEpoch(mb.Name, mb.Epoch); err != nil {
				return err
			}
			newEpoch = false
		}
		if auto {
			if found, err := e.contacts.foundListed(dup, mb, dest, m); found || err != nil {
				return err
			}
		}
		chunk = append(chunk, &job{mb: mb, dest: dest, msg: m, dup: dup})
		if len(chunk) < listChunk {
			return nil
		}
		return flush()
	}
	err := e.retry(ctx, &job{mb: mb, dest: dest}, "list folder", func() error {
		err := e.o.Source.List(ctx, mb, each)
		if err != nil && delivered && Classify(err) == Retry {
			// Listing again would hand on messages twice.
			return FatalError(err)
		}
		return err
	})
	if ferr := flush(); err == nil {
		err = ferr
	}
	if ferr := e.contacts.recordFound(); err == nil {
		err = ferr
	}
	if rm != nil {
		if err == nil {
			err = rm.finish()
		}
	}
	if err == nil {
		e.versions.listed(mb.Name)
		e.contacts.finished(mb.Name)
	}
	return err
}

// skipFolder reports every message of mb that would have been copied as
// skipped with reason why (the destination folder could not be created),
// so that the summary counts them and the next run tries them again. A
// folder without such messages is skipped as a whole (the error is
// returned).
func (e *engine) skipFolder(ctx context.Context, mb Mailbox, dest string, why error) error {
	e.rep(Event{Kind: FolderStart, Folder: mb.Name, Dest: dest})
	n := 0
	err := e.o.Source.List(ctx, mb, func(m Message) error {
		if f := e.o.filter(m); f != "" {
			e.rep(Event{Kind: Filtered, Folder: mb.Name, Dest: dest, ID: m.ID, Err: fmt.Errorf("%s", f)})
			return nil
		}
		if e.o.Checkpoint != nil {
			done, err := e.o.Checkpoint.Done(mb.Name, mb.Epoch, m.ID)
			if err != nil {
				return err
			}
			if done {
				e.rep(Event{Kind: Already, Folder: mb.Name, Dest: dest, ID: m.ID})
				return nil
			}
		}
		n++
		e.rep(Event{Kind: Skipped, Folder: mb.Name, Dest: dest, ID: m.ID, Err: why})
		return nil
	})
	if err != nil {
		return err
	}
	if n == 0 {
		return why
	}
	return nil
}

// interleave feeds the fetchers from up to window chunks at once, one
// fetch unit of each in turn (unit gives the length of the unit at the
// front of a chunk: see fetchUnits), so that several folders are in flight
// together: a server that serialises work per folder (Dovecot locks a
// folder while it appends) is kept busy on several, and a folder's
// per-folder round trips overlap with other folders' transfers. A chunk of
// a folder already in the window joins it, so that a folder's units go out
// in listing order, each with its folder's next ticket from tickets when
// that is not nil (storage order: order.go). Memory stays bounded by the
// jobs held here (window*listChunk, and a chunk) and in the channel from
// the lister.
func interleave(ctx context.Context, in <-chan []*job, out chan<- []*job, window int, unit func([]*job) int, tickets *turns) error {
	var active [][]*job
	open := true
	take := func(c []*job) {
		if len(c) == 0 {
			return
		}
		for i, a := range active {
			if a[0].mb.Name == c[0].mb.Name {
				active[i] = append(a, c...)
				return
			}
		}
		active = append(active, c)
	}
	// Jobs held here are bounded too, not only folders: a folder's chunks
	// join its entry.
	maxHeld := window * listChunk
	held := func() int {
		n := 0
		for _, a := range active {
			n += len(a)
		}
		return n
	}
	// room: another chunk may be taken from the lister.
	room := func() bool { return open && len(active) < window && held() < maxHeld }
	receive := func(c []*job, ok bool) {
		if !ok {
			open = false
			return
		}
		take(c)
	}
	for open || len(active) > 0 {
		// Top the window up; wait only when nothing is left to send.
	fill:
		for room() {
			if len(active) == 0 {
				select {
				case c, ok := <-in:
					receive(c, ok)
				case <-ctx.Done():
					return ctx.Err()
				}
				continue
			}
			select {
			case c, ok := <-in:
				receive(c, ok)
			default:
				break fill
			}
		}
		var freed <-chan struct{}
		if tickets != nil {
			freed = tickets.freedCh() // before asking full: no leaving is missed
		}
		sent := false
		for i := 0; i < len(active); {
			if tickets != nil && tickets.full(active[i][0].mb.Name) {
				i++
				continue
			}
			n := min(max(unit(active[i]), 1), len(active[i]))
			u := active[i][:n:n]
			if tickets != nil {
				ft, t := tickets.ticket(u[0].mb.Name, n)
				for _, j := range u {
					j.turn = ft
				}
				u[0].ticket = t
			}
			select {
			case out <- u:
			case <-ctx.Done():
				return ctx.Err()
			}
			sent = true
			active[i] = active[i][n:]
			if len(active[i]) == 0 {
				active = append(active[:i], active[i+1:]...)
			} else {
				i++
			}
		}
		if !sent && len(active) > 0 {
			// Every folder in the window has its limit in flight: wait
			// for a message to leave, or for room for another folder.
			var more <-chan []*job
			if room() {
				more = in
			}
			select {
			case <-freed:
			case c, ok := <-more:
				receive(c, ok)
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
	return nil
}

// rematcher handles a source folder whose epoch (UIDVALIDITY) differs from
// the one recorded: old IDs mean nothing any more. Blindly re-copying
// would duplicate every message and blindly skipping would lose new ones,
// so each listed message is matched against the copies recorded under the
// old epoch: by fingerprint (Message-ID, size, internal date) when it has a
// Message-ID, else by content — a message without one whose size equals a
// recorded copy's is fetched here and its SHA-256 compared (each recorded
// copy matches one message at most). A match is recorded as done under the
// new epoch (same destination ref), the rest is copied. The new epoch is
// recorded only after the whole folder was listed and matched, so a run
// that dies during re-matching re-matches again.
type rematcher struct {
	e        *engine
	mb       Mailbox
	old      string
	byFP     map[string][]Copy
	bySize   map[int64][]Copy // recorded copies without Message-ID
	pending  []Intent
	refs     []string
	matched  int
	byHash   int
	unmatchd int
}

func fingerprint(mid string, size int64, date time.Time) string {
	return fmt.Sprintf("%s\x00%d\x00%d", mid, size, date.Unix())
}

func (e *engine) newRematcher(mb Mailbox, old string) (*rematcher, error) {
	rm := &rematcher{e: e, mb: mb, old: old, byFP: map[string][]Copy{}, bySize: map[int64][]Copy{}}
	err := e.o.Checkpoint.Copies(mb.Name, old, func(c Copy) error {
		if c.MessageID != "" {
			k := fingerprint(c.MessageID, c.Size, c.Date)
			rm.byFP[k] = append(rm.byFP[k], c)
		} else if c.SHA256 != "" {
			rm.bySize[c.Size] = append(rm.bySize[c.Size], c)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read copies of %q under UIDVALIDITY %s: %w", mb.Name, old, err)
	}
	return rm, nil
}

func (rm *rematcher) match(ctx context.Context, m Message) (bool, error) {
	var c Copy
	if m.MessageID != "" {
		k := fingerprint(m.MessageID, m.Size, m.Date)
		cands := rm.byFP[k]
		if len(cands) == 0 {
			rm.unmatchd++
			return false, nil
		}
		c, rm.byFP[k] = cands[0], cands[1:]
		rm.matched++
	} else {
		cands := rm.bySize[m.Size]
		if len(cands) == 0 {
			rm.unmatchd++
			return false, nil
		}
		sum, err := rm.hash(ctx, m)
		if err != nil {
			return false, err
		}
		k := -1
		for i, cand := range cands {
			if cand.SHA256 == sum {
				k = i
				break
			}
		}
		if k < 0 {
			rm.unmatchd++
			return false, nil
		}
		c = cands[k]
		rm.bySize[m.Size] = append(cands[:k:k], cands[k+1:]...)
		rm.byHash++
	}
	rm.pending = append(rm.pending, Intent{Folder: m.Mailbox, Epoch: rm.mb.Epoch, ID: m.ID, Dest: c.Dest,
		MessageID: m.MessageID, Size: m.Size, SHA256: c.SHA256, Date: m.Date, Flags: m.Flags})
	rm.refs = append(rm.refs, c.Ref)
	if len(rm.pending) >= 256 {
		return true, rm.flush()
	}
	return true, nil
}

// hash fetches m (from the lister's goroutine: rare, only messages without
// a Message-ID whose size a recorded copy has) and returns its SHA-256.
func (rm *rematcher) hash(ctx context.Context, m Message) (string, error) {
	sp := NewSpool(rm.e.o.MemLimit, rm.e.o.TempDir, rm.e.budget)
	j := &job{mb: rm.mb, msg: m}
	err := rm.e.retry(ctx, j, "fetch to compare", func() error {
		sp.Reset()
		err := rm.e.o.Source.Fetch(ctx, m, sp)
		if serr := sp.Err(); serr != nil {
			return FatalError(serr)
		}
		return err
	})
	if err != nil {
		sp.Abort()
		if Classify(err) == Skip {
			return "", nil // unreadable: not matched; the copy attempt reports it
		}
		return "", fmt.Errorf("fetch message %s of %q to compare with earlier copies: %w", m.ID, rm.mb.Name, err)
	}
	b, err := sp.Finish()
	if err != nil {
		return "", err
	}
	defer b.Close()
	return b.SHA256(), nil
}

// flush records the matches (not in a dry run, which writes nothing).
func (rm *rematcher) flush() error {
	if len(rm.pending) == 0 || rm.e.o.DryRun {
		rm.pending, rm.refs = nil, nil
		return nil
	}
	if err := rm.e.o.Checkpoint.Complete(rm.pending, rm.refs); err != nil {
		return fmt.Errorf("record re-matched messages of %q: %w", rm.mb.Name, err)
	}
	rm.pending, rm.refs = nil, nil
	return nil
}

func (rm *rematcher) finish() error {
	if err := rm.flush(); err != nil {
		return err
	}
	if !rm.e.o.DryRun {
		if err := rm.e.o.Checkpoint.SetEpoch(rm.mb.Name, rm.mb.Epoch); err != nil {
			return err
		}
	}
	rm.e.rep(Event{Kind: Warning, Folder: rm.mb.Name, Err: fmt.Errorf(
		"UIDVALIDITY of %q changed from %s to %s since the last run: %d messages re-matched by Message-ID, size and date, %d without Message-ID by content; %d not matched are copied",
		rm.mb.Name, rm.old, rm.mb.Epoch, rm.matched, rm.byHash, rm.unmatchd)})
	return nil
}
