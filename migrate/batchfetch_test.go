package migrate_test

import (
	"context"
	"errors"
	"io"
	"strings"
	"sync"
	"testing"

	"github.com/mailhaul/mailhaul/migrate"
)

// batchSource is a fakeSource with FetchBatch. Its knobs make a batch
// leave messages out (miss), write part of one and stop (cut: that message
// and every later one of its batch are not delivered), claim a message it
// did not write in full (lie: the engine must notice through the spool's
// own failure only; here it is used with a failing spool), or panic.
type batchSource struct {
	*fakeSource
	miss    map[string]bool
	cut     map[string]bool
	panics  bool
	lie     bool
	mu      sync.Mutex
	batches [][]string // the ids of every FetchBatch call
}

func (s *batchSource) FetchBatch(ctx context.Context, msgs []migrate.Message, ws []io.Writer) []bool {
	var ids []string
	for _, m := range msgs {
		ids = append(ids, m.ID)
	}
	s.mu.Lock()
	s.batches = append(s.batches, ids)
	s.mu.Unlock()
	if s.panics {
		panic("bad batch parser")
	}
	done := make([]bool, len(msgs))
	for i, m := range msgs {
		body := s.bodies[m.ID]
		if s.cut[m.ID] {
			io.WriteString(ws[i], body[:len(body)/2])
			return done
		}
		if s.miss[m.ID] {
			continue
		}
		_, err := io.WriteString(ws[i], body)
		done[i] = err == nil || s.lie
	}
	return done
}

func (s *batchSource) Limits() migrate.Limits { return migrate.Limits{Connections: 2, Pipeline: 2} }

func newBatchSource(folders map[string]int) *batchSource {
	return &batchSource{fakeSource: newFakeSource(folders), miss: map[string]bool{}, cut: map[string]bool{}}
}

// TestBatchFetch: a source that fetches several messages at once gets runs
// of small messages of one folder; what a batch did not deliver is fetched
// alone (and its error, if any, classified there); everything is copied
// once, byte for byte.
func TestBatchFetch(t *testing.T) {
	src := newBatchSource(map[string]int{"INBOX": 150, "Sent": 40})
	src.miss["INBOX-10"] = true
	src.miss["INBOX-11"] = true
	src.errs["INBOX-11"] = migrate.SkipMessage(errors.New("message vanished"))
	src.cut["Sent-5"] = true
	sink := newFakeSink()
	cp := openCP(t)
	r, err := migrate.Run(context.Background(), migrate.Options{Source: src, Sink: sink, Checkpoint: cp, Transfers: 2})
	if err != nil {
		t.Fatal(err)
	}
	if r.Copied != 189 || sink.count() != 189 || len(r.Skipped) != 1 || r.Skipped[0].ID != "INBOX-11" {
		t.Fatalf("copied %d (sink %d), skipped %+v", r.Copied, sink.count(), r.Skipped)
	}
	for f, ms := range src.msgs {
		for _, m := range ms {
			if m.ID == "INBOX-11" {
				continue
			}
			if n := sink.copiesOf(f, src.bodies[m.ID]); n != 1 {
				t.Errorf("%s: %d copies", m.ID, n)
			}
		}
	}
	batched := map[string]bool{}
	for _, b := range src.batches {
		if len(b) < 2 {
			t.Errorf("a batch of %d: %v", len(b), b)
		}
		folder := strings.SplitN(b[0], "-", 2)[0]
		for _, id := range b {
			if !strings.HasPrefix(id, folder+"-") {
				t.Errorf("batch %v mixes folders", b)
			}
			batched[id] = true
		}
	}
	if len(batched) != 190 {
		t.Errorf("%d messages were in batches, want all 190", len(batched))
	}
	// Fetched alone: the two missed, the cut one and what followed it in
	// its batch (at least itself).
	if n := src.fetches.Load(); n < 3 || n > 3+31 {
		t.Errorf("%d single fetches, want the 2 missed + the cut one and the rest of its batch", n)
	}
	if p, _ := cp.Pending(); len(p) != 0 {
		t.Errorf("pending intents left: %v", p)
	}
}

// TestBatchFetchPanic: a FetchBatch that panics costs nothing but the
// batch: its messages are fetched one by one.
func TestBatchFetchPanic(t *testing.T) {
	src := newBatchSource(map[string]int{"INBOX": 40})
	src.panics = true
	sink := newFakeSink()
	r, err := migrate.Run(context.Background(), migrate.Options{Source: src, Sink: sink, Checkpoint: openCP(t)})
	if err != nil || r.Copied != 40 || sink.count() != 40 || len(r.Skipped) != 0 {
		t.Fatalf("run: %+v %v", r, err)
	}
	if n := src.fetches.Load(); n != 40 {
		t.Errorf("%d single fetches, want 40", n)
	}
}

// TestBatchFetchLargeAlone: a message too large for a unit is fetched on
// its own, and it ends the run of small ones before it.
func TestBatchFetchLargeAlone(t *testing.T) {
	src := newBatchSource(map[string]int{"INBOX": 6})
	ms := src.msgs["INBOX"]
	big := strings.Repeat("x", 200<<10)
	src.bodies[ms[3].ID] += big
	ms[3].Size += int64(len(big))
	sink := newFakeSink()
	r, err := migrate.Run(context.Background(), migrate.Options{Source: src, Sink: sink, Checkpoint: openCP(t)})
	if err != nil || r.Copied != 6 {
		t.Fatalf("run: %+v %v", r, err)
	}
	for _, b := range src.batches {
		for _, id := range b {
			if id == ms[3].ID {
				t.Errorf("the large message was in batch %v", b)
			}
		}
	}
	if n := src.fetches.Load(); n != 1 {
		t.Errorf("%d single fetches, want 1 (the large one)", n)
	}
	if n := sink.copiesOf("INBOX", src.bodies[ms[3].ID]); n != 1 {
		t.Errorf("large message: %d copies", n)
	}
}
