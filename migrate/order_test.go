package migrate_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailhaul/mailhaul/migrate"
)

// jitterSource is a batchSource whose fetches take a random while, so that
// fetchers finish their units out of order; every seventh message is
// larger than a batch unit takes (fetched alone, and slowly).
type jitterSource struct {
	*batchSource
	batch bool
	mu    sync.Mutex
	rnd   *rand.Rand
}

func newJitterSource(folders map[string]int, batch bool) *jitterSource {
	s := &jitterSource{batchSource: newBatchSource(folders), batch: batch, rnd: rand.New(rand.NewPCG(1, 2))}
	for f, ms := range s.msgs {
		for i := range ms {
			if i%7 == 3 {
				m := &s.msgs[f][i]
				body := s.bodies[m.ID] + strings.Repeat("large line\r\n", 20000)
				s.bodies[m.ID], m.Size = body, int64(len(body))
			}
		}
	}
	return s
}

func (s *jitterSource) pause(max time.Duration) {
	s.mu.Lock()
	d := time.Duration(s.rnd.Int64N(int64(max)))
	s.mu.Unlock()
	time.Sleep(d)
}

func (s *jitterSource) Fetch(ctx context.Context, m migrate.Message, w io.Writer) error {
	n := 2 * time.Millisecond
	if m.Size > 100<<10 {
		n = 10 * time.Millisecond
	}
	s.pause(n)
	return s.fakeSource.Fetch(ctx, m, w)
}

func (s *jitterSource) FetchBatch(ctx context.Context, msgs []migrate.Message, ws []io.Writer) []bool {
	s.pause(5 * time.Millisecond)
	return s.batchSource.FetchBatch(ctx, msgs, ws)
}

// plainJitter hides FetchBatch: messages are fetched one by one.
type plainJitter struct{ *jitterSource }

func (s plainJitter) Limits() migrate.Limits { return migrate.Limits{Connections: 4} }

// wantOrder fails unless dest holds the bodies of src's folders, each in
// its listing order (merged folders interleave, each in order), skipping
// the ids in gone.
func wantOrder(t *testing.T, src *jitterSource, sink *fakeSink, dest string, folders []string, gone map[string]bool) {
	t.Helper()
	sink.mu.Lock()
	got := append([]string(nil), sink.folders[dest]...)
	sink.mu.Unlock()
	index := map[string]string{} // body -> id
	for _, f := range folders {
		for _, m := range src.msgs[f] {
			index[src.bodies[m.ID]] = m.ID
		}
	}
	next := map[string]int{}
	for n, b := range got {
		id, ok := index[b]
		if !ok {
			t.Fatalf("%s #%d: a body no source folder has", dest, n+1)
		}
		f := id[:strings.LastIndex(id, "-")]
		for next[f] < len(src.msgs[f]) && gone[src.msgs[f][next[f]].ID] {
			next[f]++
		}
		if want := src.msgs[f][next[f]].ID; id != want {
			t.Fatalf("%s #%d is %s, want %s: the source's order is not kept", dest, n+1, id, want)
		}
		next[f]++
	}
	want := 0
	for _, f := range folders {
		for _, m := range src.msgs[f] {
			if !gone[m.ID] {
				want++
			}
		}
	}
	if len(got) != want {
		t.Fatalf("%s holds %d messages, want %d", dest, len(got), want)
	}
}

// TestStorageOrder: with many fetchers and appenders, fetches finishing
// out of order (random delays, large messages fetched alone and slowly)
// and batch and single appends, each destination folder receives its
// source folder's messages in listing order — two source folders merged
// into one each in theirs — and a skipped message leaves the others in
// order.
func TestStorageOrder(t *testing.T) {
	for _, c := range []struct {
		name         string
		batchFetch   bool
		batchAppend  bool
		transfers    int
		skip, merged bool
	}{
		{"batches", true, true, 8, false, false},
		{"singles", false, false, 8, false, false},
		{"batch fetch, single appends", true, false, 4, true, false},
		{"merged folders", true, true, 8, false, true},
		{"one transfer", false, true, 1, true, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			folders := map[string]int{"INBOX": 300, "Sent": 120, "Archive": 90, "Lists": 60}
			js := newJitterSource(folders, c.batchFetch)
			var src migrate.Source = js
			if !c.batchFetch {
				src = plainJitter{js}
			}
			gone := map[string]bool{}
			if c.skip {
				for _, id := range []string{"INBOX-5", "INBOX-133", "Sent-3"} {
					js.errs[id] = migrate.SkipMessage(errors.New("unreadable"))
					js.miss[id] = true
					gone[id] = true
				}
			}
			fs := newFakeSink()
			var sink migrate.Sink = fs
			if c.batchAppend {
				sink = &batchSink{fakeSink: fs}
			}
			o := migrate.Options{Source: src, Sink: sink, Checkpoint: openCP(t), Transfers: c.transfers}
			if c.merged {
				o.Map = map[string]string{"Archive": "Old", "Lists": "Old"}
			}
			r, err := migrate.Run(context.Background(), o)
			if err != nil {
				t.Fatal(err)
			}
			if r.Copied != 570-len(gone) || len(r.Skipped) != len(gone) {
				t.Fatalf("copied %d, skipped %v", r.Copied, r.Skipped)
			}
			wantOrder(t, js, fs, "INBOX", []string{"INBOX"}, gone)
			wantOrder(t, js, fs, "Sent", []string{"Sent"}, gone)
			if c.merged {
				wantOrder(t, js, fs, "Old", []string{"Archive", "Lists"}, gone)
			} else {
				wantOrder(t, js, fs, "Archive", []string{"Archive"}, gone)
				wantOrder(t, js, fs, "Lists", []string{"Lists"}, gone)
			}
		})
	}
}

// TestStorageOrderFatal: a fatal fetch error in the middle of a folder
// ends the run — the fetchers waiting for their turn behind it do not
// hang — and what was appended is a prefix of the folder, in order.
func TestStorageOrderFatal(t *testing.T) {
	js := newJitterSource(map[string]int{"INBOX": 200}, true)
	js.errs["INBOX-77"] = fmt.Errorf("disk of the source gone")
	js.miss["INBOX-77"] = true
	fs := newFakeSink()
	done := make(chan error, 1)
	go func() {
		_, err := migrate.Run(context.Background(), migrate.Options{Source: js, Sink: &batchSink{fakeSink: fs}, Checkpoint: openCP(t), Transfers: 8})
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "disk of the source gone") {
			t.Fatalf("run ended with %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the run hangs after a fatal fetch error")
	}
	fs.mu.Lock()
	defer fs.mu.Unlock()
	for n, b := range fs.folders["INBOX"] {
		if b != js.bodies[fmt.Sprintf("INBOX-%d", n)] {
			t.Fatalf("INBOX #%d is not INBOX-%d: not a prefix in order", n+1, n)
		}
	}
	if len(fs.folders["INBOX"]) > 77 {
		t.Fatalf("%d appended, more than the 77 before the failing one", len(fs.folders["INBOX"]))
	}
}

// concurrencySink is a fakeSink that measures how many appends into one
// folder run at once; orderless, it declares no storage order.
type concurrencySink struct {
	*fakeSink
	cmu       sync.Mutex
	now, peak int
}

func (k *concurrencySink) Append(ctx context.Context, folder string, m migrate.Message, b *migrate.Body) (string, error) {
	k.cmu.Lock()
	k.now++
	k.peak = max(k.peak, k.now)
	k.cmu.Unlock()
	time.Sleep(2 * time.Millisecond)
	defer func() { k.cmu.Lock(); k.now--; k.cmu.Unlock() }()
	return k.fakeSink.Append(ctx, folder, m, b)
}

type orderlessSink struct{ *concurrencySink }

func (orderlessSink) Orderless() {}

// TestOrderlessSink: into a sink that keeps an order, one folder's appends
// run one at a time; into an Orderless one (a Maildir) by every appender
// at once.
func TestOrderlessSink(t *testing.T) {
	for _, orderless := range []bool{false, true} {
		cs := &concurrencySink{fakeSink: newFakeSink()}
		var sink migrate.Sink = cs
		if orderless {
			sink = orderlessSink{cs}
		}
		src := newFakeSource(map[string]int{"INBOX": 200})
		r, err := migrate.Run(context.Background(), migrate.Options{Source: src, Sink: sink, Checkpoint: openCP(t), Transfers: 4})
		if err != nil || r.Copied != 200 {
			t.Fatalf("orderless %v: copied %d, %v", orderless, r.Copied, err)
		}
		if orderless && cs.peak < 2 || !orderless && cs.peak != 1 {
			t.Errorf("orderless %v: %d appends into one folder at once", orderless, cs.peak)
		}
	}
}
