package migrate

import (
	"context"
	"fmt"
)

// recoverPending resolves the intents a killed run left in the checkpoint.
// Each is looked up on the sink with its Finder: found -> recorded as done
// (so it is not copied twice); not found -> the intent is dropped and the
// message is copied again by this run (so it is not lost). The cost is
// bounded by what was in flight when the run died, not by mailbox size.
//
// Without a Finder the intent is dropped and a warning says that a
// duplicate is possible: losing a message is worse than a duplicate.
func (e *engine) recoverPending(ctx context.Context) error {
	pending, err := e.o.Checkpoint.Pending()
	if err != nil {
		return fmt.Errorf("read pending intents: %w", err)
	}
	if len(pending) == 0 {
		return nil
	}
	finder, ok := e.o.Sink.(Finder)
	refs := make([]string, len(pending))
	var taken map[string]bool
	if ok {
		var dests []string
		for _, in := range pending {
			dests = append(dests, in.Dest)
		}
		if taken, err = e.o.Checkpoint.RefsIn(dests); err != nil {
			return fmt.Errorf("read recorded copies: %w", err)
		}
	}
	isTaken := func(ref string) bool { return taken[ref] }
	for i, in := range pending {
		if err := ctx.Err(); err != nil {
			return err
		}
		if !ok {
			e.rep(Event{Kind: Warning, Folder: in.Folder, ID: in.ID,
				Err: fmt.Errorf("message %s of %q was being copied when the last run stopped; the destination cannot be searched, so it is copied again and may appear twice", in.ID, in.Folder)})
			continue
		}
		ref, found, err := finder.Find(ctx, in, isTaken)
		if err != nil {
			return fmt.Errorf("look for message %s of %q in destination folder %q: %w", in.ID, in.Folder, in.Dest, err)
		}
		if found {
			refs[i] = ref
			taken[ref] = true
		}
		e.rep(Event{Kind: Recovered, Folder: in.Folder, Dest: in.Dest, ID: in.ID, Found: found})
	}
	if err := e.o.Checkpoint.Complete(pending, refs); err != nil {
		return fmt.Errorf("record recovered intents: %w", err)
	}
	return nil
}
