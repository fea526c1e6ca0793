package migrate

import (
	"context"
	"fmt"
	"time"
)

// listChunk is how many jobs of one folder the lister hands on at once.
const listChunk = 128

// list is the lister stage (one goroutine): every mailbox of the source is
// selected, mapped, prepared on the sink and listed; the messages that are
// neither filtered nor already copied are sent on out in chunks of up to
// listChunk jobs of one folder (see interleave).
//
// A folder that cannot be prepared or listed (a Skip-classified error) is
// reported as skipped (with an empty message ID) and the run goes on with
// the next folder; what was listed before the error is still copied;
// fatal errors end the run.
func (e *engine) list(ctx context.Context, out chan<- []*job) error {
	mbs, err := e.o.Source.Mailboxes(ctx)
	if err != nil {
		return fmt.Errorf("list source folders: %w", err)
	}
	for _, mb := range mbs {
		if err := ctx.Err(); err != nil {
			return err
		}
		if !e.o.Selected(mb.Name) {
			continue
		}
		if err := e.listMailbox(ctx, mb, out); err != nil {
			if Classify(err) != Skip || ctx.Err() != nil {
				return err
			}
			e.rep(Event{Kind: Skipped, Folder: mb.Name, Err: fmt.Errorf("folder %q skipped: %w", mb.Name, err)})
		}
	}
	return nil
}

func (e *engine) listMailbox(ctx context.Context, mb Mailbox, out chan<- []*job) error {
	dest := e.o.MapName(mb.Name)
	prep := mb
	if e.o.Mapped(mb.Name) {
		prep.SpecialUse = "" // an explicit --map wins over special-use mapping
	}
	var mark string
	var rm *rematcher
	var dup *dedupSet
	if !e.o.DryRun {
		var err error
		if dest, err = e.o.Sink.Prepare(ctx, prep, dest); err != nil {
			return fmt.Errorf("prepare destination folder for %q: %w", mb.Name, err)
		}
		if f, ok := e.o.Sink.(Finder); ok && !mb.NoSelect {
			if mark, err = f.Mark(ctx, dest); err != nil {
				return fmt.Errorf("read position of destination folder %q: %w", dest, err)
			}
		}
	}
	if mb.Epoch != "" && e.o.Checkpoint != nil {
		old, ok, err := e.o.Checkpoint.Epoch(mb.Name)
		if err != nil {
			return err
		}
		switch {
		case !ok && !e.o.DryRun:
			if err := e.o.Checkpoint.SetEpoch(mb.Name, mb.Epoch); err != nil {
				return err
			}
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
	if e.o.Dedupe && !e.o.DryRun {
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
	err := e.o.Source.List(ctx, mb, func(m Message) error {
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
			found, err := rm.match(m, dest)
			if err != nil {
				return err
			}
			if found {
				e.rep(Event{Kind: Already, Folder: mb.Name, Dest: dest, ID: m.ID})
				return nil
			}
		}
		e.rep(Event{Kind: Queued, Folder: mb.Name, Dest: dest, ID: m.ID, Bytes: m.Size})
		if e.o.DryRun {
			return nil
		}
		chunk = append(chunk, &job{mb: mb, dest: dest, mark: mark, msg: m, dup: dup})
		if len(chunk) < listChunk {
			return nil
		}
		return flush()
	})
	if ferr := flush(); err == nil {
		err = ferr
	}
	if rm != nil {
		if err == nil {
			err = rm.finish()
		}
	}
	return err
}

// interleave feeds the fetchers from up to window chunks at once, one job
// of each in turn, so that several folders are in flight together: a
// server that serialises work per folder (Dovecot locks a folder while it
// appends) is kept busy on several, and a folder's per-folder round trips
// overlap with other folders' transfers. Memory stays bounded by the
// chunks held here and in the channel from the lister.
func interleave(ctx context.Context, in <-chan []*job, out chan<- *job, window int) error {
	var active [][]*job
	open := true
	for open || len(active) > 0 {
		// Top the window up; wait only when nothing is left to send.
	fill:
		for open && len(active) < window {
			if len(active) == 0 {
				select {
				case c, ok := <-in:
					if !ok {
						open = false
					} else if len(c) > 0 {
						active = append(active, c)
					}
				case <-ctx.Done():
					return ctx.Err()
				}
				continue
			}
			select {
			case c, ok := <-in:
				if !ok {
					open = false
				} else if len(c) > 0 {
					active = append(active, c)
				}
			default:
				break fill
			}
		}
		for i := 0; i < len(active); {
			select {
			case out <- active[i][0]:
			case <-ctx.Done():
				return ctx.Err()
			}
			active[i] = active[i][1:]
			if len(active[i]) == 0 {
				active = append(active[:i], active[i+1:]...)
			} else {
				i++
			}
		}
	}
	return nil
}

// rematcher handles a source folder whose epoch (UIDVALIDITY) differs from
// the one recorded: old IDs mean nothing any more. Blindly re-copying
// would duplicate every message and blindly skipping would lose new ones,
// so each listed message is matched by fingerprint (Message-ID, size,
// internal date) against the copies recorded under the old epoch; a match
// is recorded as done under the new epoch (same destination ref), the rest
// is copied. The new epoch is recorded only after the whole folder was
// listed, so a run that dies during re-matching re-matches again.
type rematcher struct {
	e        *engine
	mb       Mailbox
	old      string
	byFP     map[string][]Copy
	pending  []Intent
	refs     []string
	matched  int
	unmatchd int
}

func fingerprint(mid string, size int64, date time.Time) string {
	return fmt.Sprintf("%s\x00%d\x00%d", mid, size, date.Unix())
}

func (e *engine) newRematcher(mb Mailbox, old string) (*rematcher, error) {
	rm := &rematcher{e: e, mb: mb, old: old, byFP: map[string][]Copy{}}
	err := e.o.Checkpoint.Copies(mb.Name, old, func(c Copy) error {
		if c.MessageID != "" {
			k := fingerprint(c.MessageID, c.Size, c.Date)
			rm.byFP[k] = append(rm.byFP[k], c)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read copies of %q under UIDVALIDITY %s: %w", mb.Name, old, err)
	}
	return rm, nil
}

func (rm *rematcher) match(m Message, dest string) (bool, error) {
	k := fingerprint(m.MessageID, m.Size, m.Date)
	cands := rm.byFP[k]
	if m.MessageID == "" || len(cands) == 0 {
		rm.unmatchd++
		return false, nil
	}
	c := cands[0]
	rm.byFP[k] = cands[1:]
	rm.pending = append(rm.pending, Intent{Folder: m.Mailbox, Epoch: rm.mb.Epoch, ID: m.ID, Dest: c.Dest,
		MessageID: m.MessageID, Size: m.Size, Date: m.Date, Flags: m.Flags})
	rm.refs = append(rm.refs, c.Ref)
	rm.matched++
	if len(rm.pending) >= 256 {
		return true, rm.flush()
	}
	return true, nil
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
		"UIDVALIDITY of %q changed from %s to %s since the last run: %d messages re-matched by Message-ID, size and date; %d not matched are copied",
		rm.mb.Name, rm.old, rm.mb.Epoch, rm.matched, rm.unmatchd)})
	return nil
}
