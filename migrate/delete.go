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
// or by an earlier one. The source applies its own policy on top (POP3
// --delete-older-than) and must delete nothing if it cannot finish (POP3
// deletes at QUIT only). An error is reported; it does not undo copies.
type Deleter interface {
	Delete(ctx context.Context, folder string, ids []string) error
}

// deletions collects, per source folder, the messages recorded done during
// a run (copied now or already there), for Deleter. Safe for concurrent
// use.
type deletions struct {
	mu  sync.Mutex
	ids map[string][]string
	ord []string
}

func (d *deletions) add(ev Event) {
	if d == nil || (ev.Kind != Copied && ev.Kind != Already) {
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
		if err := del.Delete(ctx, f, e.del.ids[f]); err != nil {
			return fmt.Errorf("delete copied messages of %q from the source: %w", f, err)
		}
	}
	return nil
}
