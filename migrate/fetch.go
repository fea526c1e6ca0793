package migrate

import (
	"context"
	"fmt"
)

// fetchLoop is one fetcher goroutine: it takes listed messages from in,
// spools each body (memory up to MemLimit, a temporary file beyond) and
// passes it on to the appenders. A message that cannot be fetched is
// reported as skipped; only a fatal error ends the loop.
func (e *engine) fetchLoop(ctx context.Context, in <-chan *job, out chan<- *job) error {
	for {
		var j *job
		var ok bool
		select {
		case j, ok = <-in:
			if !ok {
				return nil
			}
		case <-ctx.Done():
			return ctx.Err()
		}
		undated := j.msg.Date.IsZero()
		body, err := e.fetch(ctx, j)
		if err == nil && undated && !j.msg.Date.IsZero() {
			// The date comes from the header (POP3): --since/--before
			// can only be applied now.
			if why := e.o.filter(j.msg); why != "" {
				body.Close()
				e.rep(Event{Kind: Filtered, Folder: j.mb.Name, Dest: j.dest, ID: j.msg.ID, Err: fmt.Errorf("%s", why)})
				continue
			}
		}
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if Classify(err) == Skip {
				e.rep(Event{Kind: Skipped, Folder: j.mb.Name, Dest: j.dest, ID: j.msg.ID, Err: err})
				continue
			}
			return err
		}
		j.body = body
		select {
		case out <- j:
		case <-ctx.Done():
			body.Close()
			return ctx.Err()
		}
	}
}

// fetch spools one message body, retrying transient errors.
func (e *engine) fetch(ctx context.Context, j *job) (*Body, error) {
	sp := NewSpool(e.o.MemLimit, e.o.TempDir, e.budget)
	sp.Expect(j.msg.Size)
	if j.msg.Date.IsZero() {
		sp.WantHeaderDate()
	}
	err := e.retry(ctx, j, "fetch", func() error {
		sp.Reset()
		err := e.o.Source.Fetch(ctx, j.msg, sp)
		if serr := sp.Err(); serr != nil {
			// Not the source's fault, whatever class it gave: our own
			// disk is full or gone, and every message would fail alike.
			return FatalError(serr)
		}
		return err
	})
	if err != nil {
		sp.Abort()
		return nil, fmt.Errorf("fetch message %s in %q: %w", j.msg.ID, j.mb.Name, err)
	}
	b, err := sp.Finish()
	if err == nil && j.msg.Date.IsZero() {
		// The source knows no arrival date (POP3): the newest Received:
		// date, else Date:, else (zero) the destination's "now".
		j.msg.Date = b.HeaderDate()
	}
	return b, err
}
