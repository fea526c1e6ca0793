package migrate_test

import (
	"context"
	"io"
	"testing"
	"time"

	"github.com/mailhaul/mailhaul/migrate"
)

// TestStorageOrderUnitLongerThanQueue: units of 32 small messages, an
// appender queue of 16 (BatchSize 4): the appender takes a unit's first
// messages (and clears their turn) while its fetcher still hands on the
// rest; the unit's turn must still end (found in review: the folder's next
// unit waited for ever).
func TestStorageOrderUnitLongerThanQueue(t *testing.T) {
	src := newBatchSource(map[string]int{"INBOX": 200})
	copyWithin(t, migrate.Options{Source: src, Sink: newFakeSink(), Checkpoint: openCP(t), Transfers: 1, BatchSize: 4}, 200, 20*time.Second)
}

// TestStorageOrderUnitLongerThanQueueDefaults: the same with the default
// options and a few folders (under -race: the read of the unit's turn
// after handing it on).
func TestStorageOrderUnitLongerThanQueueDefaults(t *testing.T) {
	src := newBatchSource(map[string]int{"INBOX": 2000, "Sent": 1000, "A": 500, "B": 500, "C": 300})
	copyWithin(t, migrate.Options{Source: src, Sink: newFakeSink(), Checkpoint: openCP(t)}, 4300, time.Minute)
}

// copyWithin runs o and fails unless it copies n messages within d.
func copyWithin(t *testing.T, o migrate.Options, n int, d time.Duration) {
	t.Helper()
	done := make(chan error, 1)
	var r migrate.Report
	go func() {
		var err error
		r, err = migrate.Run(context.Background(), o)
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil || r.Copied != n {
			t.Fatalf("copied %d of %d, %v", r.Copied, n, err)
		}
	case <-time.After(d):
		t.Fatalf("run hangs: the sink holds %d of %d", o.Sink.(*fakeSink).count(), n)
	}
}

type slowOne struct {
	*fakeSource
	slow string
	d    time.Duration
}

func (s slowOne) Fetch(ctx context.Context, m migrate.Message, w io.Writer) error {
	if m.ID == s.slow {
		time.Sleep(s.d)
	}
	return s.fakeSource.Fetch(ctx, m, w)
}
func (s slowOne) Limits() migrate.Limits { return migrate.Limits{Connections: 8} }

// TestStorageOrderSlowFetch: a unit fetched slowly holds back its
// folder's later units but not other folders': folder A's first message
// takes 3 s to fetch, and B's 300 messages are copied meanwhile (found in
// review: every fetcher ended up waiting behind A's first unit).
func TestStorageOrderSlowFetch(t *testing.T) {
	src := slowOne{newFakeSource(map[string]int{"A": 300, "B": 300}), "A-0", 3 * time.Second}
	sink := newFakeSink()
	done := make(chan struct{})
	go func() {
		defer close(done)
		migrate.Run(context.Background(), migrate.Options{Source: src, Sink: sink, Checkpoint: openCP(t), Transfers: 8})
	}()
	defer func() { <-done }()
	time.Sleep(2 * time.Second)
	sink.mu.Lock()
	a, b := len(sink.folders["A"]), len(sink.folders["B"])
	sink.mu.Unlock()
	if b < 300 {
		t.Fatalf("2 s into A-0's 3 s fetch: B has %d of 300 (A %d): every fetcher waits behind A-0", b, a)
	}
}
