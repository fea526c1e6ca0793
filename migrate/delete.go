package migrate

import (
	"context"
	"fmt"
	"sync"
)

// Deleter is implemented by sources that can remove messages from the
// store they read, for Options.DeleteAfterCopy (POP3's "leave on server"
// turned off). It is the one exception to "a Source never changes the
// store it reads", and only on the user's explicit request.
//
// The engine calls Delete once, from the goroutine that called Run, after
// the pipeline ended without a fatal error or interruption and the
// checkpoint was flushed, with the IDs (Message.ID) of the messages of
// folder whose copy is recorded done in the checkpoint — copied by this run
// or by an earlier one — and confirmed by the destination: never a copy
// recorded with an unverified ref (UnverifiedPrefix: a server without
// UIDPLUS that did not say where it stored it), never one Dedupe merely
// recognised. The source applies its own policy on top (POP3
// --delete-older-than) and must delete nothing if it cannot finish (POP3
// deletes at QUIT only). An error is reported; it does not undo copies.
type Deleter interface {
	Delete(ctx context.Context, folder string, ids []string) error
}

// deletions collects, per source folder, the messages recorded done during
// a run (copied now, copied before, or found in the destination: those
// stay, and are counted in the warning that says so), for Deleter. Safe for concurrent
// use.
type deletions struct {
	mu     sync.Mutex
	ids    map[string][]string
	ord    []string
	epochs map[string]string // folder -> epoch, set by the lister
}

// epoch records the epoch of a listed folder (for looking up its refs).
func (d *deletions) epoch(folder, epoch string) {
	if d == nil {
		return
	}
	d.mu.Lock()
	d.epochs[folder] = epoch
	d.mu.Unlock()
}

func (d *deletions) add(ev Event) {
	if d == nil || (ev.Kind != Copied && ev.Kind != Already && ev.Kind != Duplicate) {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.ids[ev.Folder]; !ok {
		d.ord = append(d.ord, ev.Folder)
	}
	d.ids[ev.Folder] = append(d.ids[ev.Folder], ev.ID)
}

// deleteCopied hands the collected messages to the source's Deleter.
func (e *engine) deleteCopied(ctx context.Context) error {
	del, ok := e.o.Source.(Deleter)
	if !ok {
		return FatalError(fmt.Errorf("--delete-after-copy: this source cannot delete messages"))
	}
	for _, f := range e.del.ord {
		ids, kept, err := e.verified(f, e.del.ids[f])
		if err != nil {
			return err
		}
		if kept > 0 {
			e.rep(Event{Kind: Warning, Folder: f, Err: fmt.Errorf(
				"--delete-after-copy: %d messages of %q stay in the source: their copy in the destination was not confirmed (found there by Message-ID, not copied by this checkpoint; or a server without UIDPLUS did not say where it stored it)", kept, f)})
		}
		if len(ids) == 0 {
			continue
		}
		if err := del.Delete(ctx, f, ids); err != nil {
			return fmt.Errorf("delete copied messages of %q from the source: %w", f, err)
		}
	}
	return nil
}

// verified keeps the ids whose recorded copy is confirmed.
func (e *engine) verified(folder string, ids []string) ([]string, int, error) {
	refs := map[string]string{}
	err := e.o.Checkpoint.Copies(folder, e.del.epochs[folder], func(c Copy) error {
		refs[c.ID] = c.Ref
		return nil
	})
	if err != nil {
		return nil, 0, fmt.Errorf("read the copies of %q before deleting from the source: %w", folder, err)
	}
	var out []string
	kept := 0
	for _, id := range ids {
		ref, ok := refs[id]
		if !ok || ref == "" || IsFound(ref) || ref == "existing" || Unverified(ref) {
			kept++
			continue
		}
		out = append(out, id)
	}
	return out, kept, nil
}
