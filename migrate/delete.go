package migrate

import (
	"context"
	"fmt"
	"strings"
	"sync"
)

// Deleter is implemented by sources that can remove messages from the
// store they read, for Options.DeleteAfterCopy (POP3's "leave on server"
// turned off). It is the one exception to "a Source never changes the
// store it reads", and only on the user's explicit request.
//
// The engine calls Delete once, from the goroutine that called Run, after
// the pipeline ended without a fatal error, interruption or request to
// stop (Options.Stop, the first Ctrl-C) and the
// checkpoint was flushed, with the IDs (Message.ID) of the messages of
// folder whose copy is recorded done in the checkpoint — copied by this run
// or by an earlier one — and confirmed by the destination: never a copy
// recorded with an unverified ref (UnverifiedPrefix: a server without
// UIDPLUS that did not say where it stored it). A message found in the
// destination rather than copied (Dedupe, a lost state dir) is handed over
// only once the sink's Verifier has read back the copy it was found as and
// shown that it holds exactly its bytes (confirmFound). The source applies its own policy on top (POP3
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
		ids, kept, err := e.verified(ctx, f, e.del.ids[f])
		if err != nil {
			return err
		}
		if kept > 0 {
			e.rep(Event{Kind: Warning, Folder: f, Err: fmt.Errorf(
				"--delete-after-copy: %d messages of %q stay in the source: their copy in the destination was not confirmed (found there by Message-ID, not copied by this checkpoint, and the copy's content could not be compared or differs; or a server without UIDPLUS did not say where it stored it)", kept, f)})
		}
		if len(ids) == 0 {
			continue
		}
		if ctx.Err() != nil || e.stopped() {
			return nil // asked to stop while comparing: delete nothing more
		}
		if err := del.Delete(ctx, f, ids); err != nil {
			return fmt.Errorf("delete copied messages of %q from the source: %w", f, err)
		}
	}
	return nil
}

// verified keeps the ids whose recorded copy is confirmed, and counts
// the others.
func (e *engine) verified(ctx context.Context, folder string, ids []string) ([]string, int, error) {
	copies := map[string]Copy{}
	err := e.o.Checkpoint.Copies(folder, e.del.epochs[folder], func(c Copy) error {
		copies[c.ID] = c
		return nil
	})
	if err != nil {
		return nil, 0, fmt.Errorf("read the copies of %q before deleting from the source: %w", folder, err)
	}
	var out []string
	var found []Copy
	kept := 0
	for _, id := range ids {
		c, ok := copies[id]
		switch {
		case !ok || c.Ref == "" || c.Ref == "existing" || Unverified(c.Ref):
			kept++
		case IsFound(c.Ref):
			found = append(found, c)
		default:
			out = append(out, id)
		}
	}
	confirmed := e.confirmFound(ctx, folder, found)
	return append(out, confirmed...), kept + len(found) - len(confirmed), nil
}

// confirmFound returns the ids of the found messages whose copy in the
// destination holds exactly their bytes: the sink's Verifier reads back
// the very copy each message was found as and compares it with the
// message's recorded size and SHA-256. A match by Message-ID, size and
// date, which is what finding is, is not enough to delete a source
// message; this is. Messages recorded without a hash (found at listing,
// never fetched) or without the copy's ref (DedupeRef) are not confirmed,
// nor is any once the run is asked to stop. An error of the sink confirms
// nothing and is reported as a warning: the messages stay in the source.
func (e *engine) confirmFound(ctx context.Context, folder string, found []Copy) []string {
	v, ok := e.o.Sink.(Verifier)
	if !ok || len(found) == 0 {
		return nil
	}
	byDest := map[string][]Copy{}
	var dests []string
	for _, c := range found {
		if c.SHA256 == "" || !strings.HasPrefix(c.Ref, FoundPrefix) {
			continue
		}
		if _, ok := byDest[c.Dest]; !ok {
			dests = append(dests, c.Dest)
		}
		byDest[c.Dest] = append(byDest[c.Dest], c)
	}
	var out []string
	for _, dest := range dests {
		cs := byDest[dest]
		for len(cs) > 0 {
			if ctx.Err() != nil || e.stopped() {
				return nil
			}
			chunk := cs[:min(len(cs), verifyChunk)]
			cs = cs[len(chunk):]
			refs, sizes, sums := make([]string, len(chunk)), make([]int64, len(chunk)), make([]string, len(chunk))
			for i, c := range chunk {
				refs[i], sizes[i], sums[i] = strings.TrimPrefix(c.Ref, FoundPrefix), c.Size, c.SHA256
			}
			var same []bool
			err := e.retry(ctx, &job{dest: dest}, "read back found copies", func() error {
				var err error
				same, err = v.Verify(ctx, dest, refs, sizes, sums)
				return err
			})
			if err != nil {
				e.rep(Event{Kind: Warning, Folder: folder, Dest: dest, Err: fmt.Errorf(
					"--delete-after-copy: cannot read back the copies in %q of %d messages of %q found there, so they stay in the source: %w", dest, len(chunk)+len(cs), folder, err)})
				break
			}
			for i, c := range chunk {
				if i < len(same) && same[i] {
					out = append(out, c.ID)
				}
			}
		}
	}
	return out
}

// verifyChunk is how many found copies one Verify call reads back.
const verifyChunk = 200
