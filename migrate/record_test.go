package migrate_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailhaul/mailhaul/checkpoint"
	"github.com/mailhaul/mailhaul/migrate"
)

// countingCP counts the checkpoint's commits of intents and records.
type countingCP struct {
	*checkpoint.Store
	adds, completes, merged atomic.Int64
}

func (c *countingCP) AddIntents(in []migrate.Intent) error {
	c.adds.Add(1)
	return c.Store.AddIntents(in)
}

func (c *countingCP) Complete(in []migrate.Intent, refs []string) error {
	c.completes.Add(1)
	return c.Store.Complete(in, refs)
}

func (c *countingCP) CompleteAndAdd(done []migrate.Intent, refs []string, in []migrate.Intent) error {
	c.merged.Add(1)
	return c.Store.CompleteAndAdd(done, refs, in)
}

// gatedSource waits for open before it lists folder gated.
type gatedSource struct {
	*fakeSource
	gated string
	open  chan struct{}
}

func (s *gatedSource) List(ctx context.Context, mb migrate.Mailbox, fn func(migrate.Message) error) error {
	if mb.Name == s.gated {
		select {
		case <-s.open:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return s.fakeSource.List(ctx, mb, fn)
}

// TestCopiesRecordedWhenIdle: an appender records a batch's copies with
// the next batch's intents when that batch is already waiting — fewer
// commits than two per batch — and on their own as soon as nothing is
// waiting: copies are never held back while the source is slow (a kill
// then would leave them to recovery), and none is left unrecorded at the
// end.
func TestCopiesRecordedWhenIdle(t *testing.T) {
	src := &gatedSource{fakeSource: newFakeSource(map[string]int{"A": 20, "B": 380}), gated: "B", open: make(chan struct{})}
	cp := &countingCP{Store: openCP(t)}
	sink := newFakeSink()
	o := migrate.Options{Source: src, Sink: sink, Checkpoint: cp, Transfers: 1, BatchSize: 8}
	done := make(chan struct{})
	var r migrate.Report
	var err error
	go func() {
		defer close(done)
		r, err = migrate.Run(context.Background(), o)
	}()
	// Folder A is copied while the listing of B waits: its copies must
	// be recorded without a next batch to ride on.
	deadline := time.Now().Add(10 * time.Second)
	for {
		n, _ := cp.Count("A", "")
		if n == 20 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of folder A's 20 copies recorded while the source is idle (%d in the destination)", n, sink.count())
		}
		time.Sleep(5 * time.Millisecond)
	}
	close(src.open)
	<-done
	if err != nil || r.Copied != 400 || sink.count() != 400 {
		t.Fatalf("copied %d (sink %d): %v", r.Copied, sink.count(), err)
	}
	if a, _ := cp.Count("A", ""); a != 20 {
		t.Fatalf("%d copies of A recorded, want 20", a)
	}
	if b, _ := cp.Count("B", ""); b != 380 {
		t.Fatalf("%d copies of B recorded, want 380", b)
	}
	if p, _ := cp.Pending(); len(p) != 0 {
		t.Fatalf("%d intents left pending", len(p))
	}
	adds, completes, merged := cp.adds.Load(), cp.completes.Load(), cp.merged.Load()
	batches := adds + merged
	t.Logf("%d batches: %d commits (%d intents alone, %d records alone, %d together)", batches, adds+completes+merged, adds, completes, merged)
	if merged == 0 || adds+completes+merged >= 2*batches {
		t.Errorf("%d batches took %d commits (%d merged): no batch's copies rode on the next one's intents", batches, adds+completes+merged, merged)
	}
}
