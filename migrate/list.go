package migrate

import (
	"context"
	"fmt"
)

// list is the lister stage (one goroutine): every mailbox of the source is
// selected, mapped, prepared on the sink and listed; each message that is
// neither filtered nor already copied is queued on out.
//
// A folder that cannot be prepared or listed (a Skip-classified error) is
// reported as skipped (with an empty message ID) and the run goes on with
// the next folder; fatal errors end the run.
func (e *engine) list(ctx context.Context, out chan<- *job) error {
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

func (e *engine) listMailbox(ctx context.Context, mb Mailbox, out chan<- *job) error {
	dest := e.o.MapName(mb.Name)
	prep := mb
	if e.o.Mapped(mb.Name) {
		prep.SpecialUse = "" // an explicit --map wins over special-use mapping
	}
	var mark string
	if !e.o.DryRun {
		var err error
		if dest, err = e.o.Sink.Prepare(ctx, prep, dest); err != nil {
			return fmt.Errorf("prepare destination folder for %q: %w", mb.Name, err)
		}
		if mb.Epoch != "" {
			old, ok, err := e.o.Checkpoint.Epoch(mb.Name)
			if err != nil {
				return err
			}
			if ok && old != mb.Epoch {
				return e.epochChanged(ctx, mb, old)
			}
			if !ok {
				if err := e.o.Checkpoint.SetEpoch(mb.Name, mb.Epoch); err != nil {
					return err
				}
			}
		}
		if f, ok := e.o.Sink.(Finder); ok && !mb.NoSelect {
			if mark, err = f.Mark(ctx, dest); err != nil {
				return fmt.Errorf("read position of destination folder %q: %w", dest, err)
			}
		}
	}
	e.rep(Event{Kind: FolderStart, Folder: mb.Name, Dest: dest})
	if mb.NoSelect {
		return nil
	}
	return e.o.Source.List(ctx, mb, func(m Message) error {
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
		e.rep(Event{Kind: Queued, Folder: mb.Name, Dest: dest, ID: m.ID, Bytes: m.Size})
		if e.o.DryRun {
			return nil
		}
		select {
		case out <- &job{mb: mb, dest: dest, mark: mark, msg: m}:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	})
}

// epochChanged handles a source folder whose epoch (UIDVALIDITY) differs
// from the one recorded: old IDs mean nothing any more. Blindly re-copying
// would duplicate every message and blindly skipping would lose new ones,
// so the folder is skipped with a warning naming the cause.
func (e *engine) epochChanged(ctx context.Context, mb Mailbox, old string) error {
	return SkipMessage(fmt.Errorf("UIDVALIDITY changed from %s to %s since the last run; not copied to avoid duplicates", old, mb.Epoch))
}
