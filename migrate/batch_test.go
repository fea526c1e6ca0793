package migrate_test

import (
	"context"
	"errors"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailhaul/mailhaul/migrate"
)

// batchSink is a fakeSink that takes batches (like IMAP MULTIAPPEND: all
// stored or none). mode says what the next batches do: "ok", "refused"
// (nothing stored, Retryable), "stored" (all stored, reply lost:
// Uncertain), "lost" (none stored, Uncertain).
type batchSink struct {
	*fakeSink
	bmu     sync.Mutex
	modes   []string
	batches [][]string // message IDs per call
}

func (k *batchSink) BatchLimits() (int, int64) { return 4, 1 << 20 }

func (k *batchSink) AppendBatch(ctx context.Context, folder string, msgs []migrate.Message, bodies []*migrate.Body) ([]string, []error) {
	k.bmu.Lock()
	mode := "ok"
	if len(k.modes) > 0 {
		mode, k.modes = k.modes[0], k.modes[1:]
	}
	var ids []string
	for _, m := range msgs {
		ids = append(ids, m.ID)
	}
	k.batches = append(k.batches, ids)
	k.bmu.Unlock()
	refs, errs := make([]string, len(msgs)), make([]error, len(msgs))
	fill := func(err error) {
		for i := range errs {
			errs[i] = err
		}
	}
	switch mode {
	case "refused":
		fill(migrate.Retryable(errors.New("batch refused")))
		return refs, errs
	case "lost":
		fill(migrate.Uncertain(errors.New("connection reset")))
		return refs, errs
	}
	k.mu.Lock()
	for _, sub := range k.failOnKeys() {
		for _, b := range bodies {
			data, _ := io.ReadAll(b.Reader())
			if strings.Contains(string(data), sub) {
				k.mu.Unlock()
				fill(migrate.Retryable(errors.New("batch refused: one message is bad")))
				return refs, errs
			}
		}
	}
	for i, b := range bodies {
		data, _ := io.ReadAll(b.Reader())
		refs[i] = k.store(folder, string(data))
	}
	k.mu.Unlock()
	if mode == "stored" {
		fill(migrate.Uncertain(errors.New("connection reset")))
		return make([]string, len(msgs)), errs
	}
	if mode == "first-fatal" {
		// All stored, the first one's answer unusable: a fatal error.
		refs[0], errs[0] = "", errors.New("the server's answer to the first makes no sense")
	}
	return refs, errs
}

// TestBatchFatalKeepsTheOthers: a batch whose first result is a fatal
// error and whose others are stored ends the run, records the stored ones
// as copied (they were dropped, their intents cleared, and the next run
// copied them again) and leaves the first pending for recovery; the next
// run copies nothing twice.
func TestBatchFatalKeepsTheOthers(t *testing.T) {
	src := newFakeSource(map[string]int{"INBOX": 8})
	sink := &batchSink{fakeSink: newFakeSink(), modes: []string{"first-fatal"}}
	cp := openCP(t)
	o := migrate.Options{Source: src, Sink: sink, Checkpoint: cp, Transfers: 1, BatchSize: 8, SettleDelay: 20 * time.Millisecond}
	if _, err := migrate.Run(context.Background(), o); err == nil || !strings.Contains(err.Error(), "makes no sense") {
		t.Fatalf("first run: %v, want the fatal error", err)
	}
	if _, err := migrate.Run(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	exactlyOnce(t, src, sink.fakeSink)
}

func (k *fakeSink) failOnKeys() []string {
	var out []string
	for s := range k.failOn {
		out = append(out, s)
	}
	return out
}

// TestBatchAppends: messages go in batches where the sink takes them,
// and every outcome of a batch keeps exactly once: stored, refused (one
// by one then, the bad message skipped alone), stored with the reply
// lost (settled: found), lost (settled: sent again).
func TestBatchAppends(t *testing.T) {
	for _, tc := range []struct {
		name  string
		modes []string
		bad   bool
	}{
		{"ok", nil, false},
		{"refused", []string{"refused"}, false},
		{"bad-message", nil, true},
		{"stored-reply-lost", []string{"stored", "stored"}, false},
		{"lost", []string{"lost"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := newFakeSource(map[string]int{"INBOX": 10, "Sent": 6})
			sink := &batchSink{fakeSink: newFakeSink(), modes: tc.modes}
			if tc.bad {
				sink.failOn["<INBOX-4@x>"] = migrate.SkipMessage(errors.New("message refused"))
			}
			var mu sync.Mutex
			var retrying []migrate.Event
			r, err := migrate.Run(context.Background(), migrate.Options{Source: src, Sink: sink, Checkpoint: openCP(t), Transfers: 1, SettleDelay: 20 * time.Millisecond,
				Reporter: migrate.ReporterFunc(func(e migrate.Event) {
					if e.Kind == migrate.Retrying {
						mu.Lock()
						retrying = append(retrying, e)
						mu.Unlock()
					}
				})})
			if err != nil {
				t.Fatal(err)
			}
			if tc.name == "lost" || tc.name == "stored-reply-lost" {
				// A batch of unknown outcome is one event that counts its
				// messages, not one per message. The first len(modes)
				// batches had unknown outcomes.
				n := min(len(tc.modes), len(sink.batches))
				if len(retrying) != n {
					t.Errorf("%d events for %d uncertain batches: %+v", len(retrying), n, retrying)
				}
				for i, e := range retrying[:min(n, len(retrying))] {
					size := len(sink.batches[i])
					if e.Count != size || (size > 1 && !strings.Contains(e.Err.Error(), "outcome unknown for it and ")) {
						t.Errorf("event %d for a batch of %d: %+v", i, size, e)
					}
				}
			}
			if tc.bad {
				if len(r.Skipped) != 1 || !strings.Contains(r.Skipped[0].Reason, "message refused") {
					t.Fatalf("skipped %+v", r.Skipped)
				}
				for f, ms := range src.msgs {
					for i, m := range ms {
						if m.ID == "INBOX-4" {
							src.msgs[f] = append(ms[:i:i], ms[i+1:]...)
							break
						}
					}
				}
			} else if len(r.Skipped) != 0 {
				t.Fatalf("skipped %+v", r.Skipped)
			}
			exactlyOnce(t, src, sink.fakeSink)
			many := 0
			for _, b := range sink.batches {
				if len(b) > 1 {
					many++
				}
				if len(b) > 4 {
					t.Errorf("batch of %d messages, limit 4", len(b))
				}
			}
			if many == 0 {
				t.Errorf("no batch of several messages: %v", sink.batches)
			}
		})
	}
}
