package migrate

import (
	"context"
	"fmt"
)

// appendLoop is one appender goroutine. It groups whatever spooled messages
// are waiting (up to BatchSize) into a batch and runs the crash-safety
// protocol on it:
//
//  1. intents for the whole batch are made durable (one commit);
//  2. each message is appended;
//  3. the sink makes the batch durable (Syncer);
//  4. done records for the whole batch are made durable (one commit).
//
// A crash between 1 and 4 leaves intents that the next run resolves with
// the sink's Finder (recover.go). On a fatal error or cancellation the
// messages already appended are still synced and recorded before the loop
// returns.
func (e *engine) appendLoop(ctx context.Context, in <-chan *job) error {
	for {
		var first *job
		var ok bool
		select {
		case first, ok = <-in:
			if !ok {
				return nil
			}
		case <-ctx.Done():
			return ctx.Err()
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
		err := e.appendBatch(ctx, batch)
		for _, j := range batch {
			j.body.Close()
		}
		if err != nil {
			return err
		}
	}
}

func (e *engine) appendBatch(ctx context.Context, batch []*job) error {
	intents := make([]Intent, len(batch))
	for i, j := range batch {
		intents[i] = Intent{
			Folder: j.mb.Name, Epoch: j.mb.Epoch, ID: j.msg.ID, Dest: j.dest, Mark: j.mark,
			MessageID: j.body.MessageID(), Size: j.body.Size(), SHA256: j.body.SHA256(),
			Date: j.msg.Date, Flags: j.msg.Flags,
		}
	}
	if err := e.o.Checkpoint.AddIntents(intents); err != nil {
		return fmt.Errorf("record intents in checkpoint: %w", err)
	}
	e.hook("intent")

	var (
		finished []Intent // appended (ref != "") or skipped (ref == "")
		refs     []string
		copied   []*job
		fatal    error
	)
	for i, j := range batch {
		if fatal != nil || ctx.Err() != nil {
			if fatal == nil {
				fatal = ctx.Err()
			}
			// Never attempted: clear the intent (nothing to recover).
			finished = append(finished, intents[i])
			refs = append(refs, "")
			continue
		}
		if j.dup.take(j.body.MessageID(), j.body.Size(), j.body.BodyLen()) {
			// Already in the destination: record it as copied there.
			finished = append(finished, intents[i])
			refs = append(refs, dedupRef)
			e.rep(Event{Kind: Duplicate, Folder: j.mb.Name, Dest: j.dest, ID: j.msg.ID})
			continue
		}
		var ref string
		err := e.retry(ctx, j, "append", func() error {
			var err error
			ref, err = e.o.Sink.Append(ctx, j.dest, j.msg, j.body)
			return err
		})
		if err != nil {
			err = fmt.Errorf("append message %s of %q to %q: %w", j.msg.ID, j.mb.Name, j.dest, err)
			if Classify(err) == Skip && ctx.Err() == nil {
				e.rep(Event{Kind: Skipped, Folder: j.mb.Name, Dest: j.dest, ID: j.msg.ID, Err: err})
				finished = append(finished, intents[i])
				refs = append(refs, "")
				continue
			}
			// The copy may or may not exist: the intent stays pending
			// and the next run's recovery decides.
			fatal = err
			continue
		}
		e.hook("append")
		finished = append(finished, intents[i])
		refs = append(refs, ref)
		copied = append(copied, j)
	}

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
				return fmt.Errorf("sync destination folder %q: %w", j.dest, err)
			}
		}
		e.hook("sync")
	}
	if len(finished) > 0 {
		if err := e.o.Checkpoint.Complete(finished, refs); err != nil {
			return fmt.Errorf("record copies in checkpoint: %w", err)
		}
		e.hook("done")
	}
	for _, j := range copied {
		e.rep(Event{Kind: Copied, Folder: j.mb.Name, Dest: j.dest, ID: j.msg.ID, Bytes: j.body.Size()})
	}
	return fatal
}
