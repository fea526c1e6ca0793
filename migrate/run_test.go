package migrate_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailhaul/mailhaul/checkpoint"
	"github.com/mailhaul/mailhaul/migrate"
)

// fakeSource serves generated messages; errs injects a Fetch error per id.
type fakeSource struct {
	boxes   []migrate.Mailbox
	msgs    map[string][]migrate.Message
	bodies  map[string]string
	errs    map[string]error
	panics  map[string]bool
	fetches atomic.Int64
	flaky   map[string]int // id -> number of Retryable failures before success
	mu      sync.Mutex
}

func newFakeSource(folders map[string]int) *fakeSource {
	s := &fakeSource{msgs: map[string][]migrate.Message{}, bodies: map[string]string{}, errs: map[string]error{}, panics: map[string]bool{}, flaky: map[string]int{}}
	var names []string
	for f := range folders {
		names = append(names, f)
	}
	sort.Strings(names)
	for _, f := range names {
		s.boxes = append(s.boxes, migrate.Mailbox{Name: f})
		for i := 0; i < folders[f]; i++ {
			id := fmt.Sprintf("%s-%d", f, i)
			body := fmt.Sprintf("Message-ID: <%s@x>\r\nSubject: %d\r\n\r\nbody %s\r\n", id, i, strings.Repeat("z", i))
			s.bodies[id] = body
			s.msgs[f] = append(s.msgs[f], migrate.Message{Mailbox: f, ID: id, Size: int64(len(body)), Date: time.Unix(int64(1e9+i), 0), Flags: []string{`\Seen`}})
		}
	}
	return s
}

func (s *fakeSource) Mailboxes(context.Context) ([]migrate.Mailbox, error) {
	return slices.Clone(s.boxes), nil // the caller owns what Mailboxes returns
}
func (s *fakeSource) List(ctx context.Context, mb migrate.Mailbox, fn func(migrate.Message) error) error {
	for _, m := range s.msgs[mb.Name] {
		if err := fn(m); err != nil {
			return err
		}
	}
	return nil
}
func (s *fakeSource) Fetch(ctx context.Context, m migrate.Message, w io.Writer) error {
	s.fetches.Add(1)
	if s.panics[m.ID] {
		panic("bad parser")
	}
	if err := s.errs[m.ID]; err != nil {
		return err
	}
	s.mu.Lock()
	if s.flaky[m.ID] > 0 {
		s.flaky[m.ID]--
		s.mu.Unlock()
		io.WriteString(w, "partial")
		return migrate.Retryable(errors.New("connection reset"))
	}
	s.mu.Unlock()
	_, err := io.WriteString(w, s.bodies[m.ID])
	return err
}
func (s *fakeSource) Limits() migrate.Limits { return migrate.Limits{Connections: 2} }
func (s *fakeSource) Close() error           { return nil }

// fakeSink stores messages in memory and implements Finder by content, like
// a server: uncertain appends are settled after Options.SettleDelay. Its
// knobs inject uncertain outcomes (see append).
type fakeSink struct {
	mu       sync.Mutex
	folders  map[string][]string // folder -> bodies, ref = folder:index+1
	removed  map[string]bool     // refs removed by Remove
	prepared []string
	rename   map[string]string // Prepare's choice of name (as by special use), if not the name asked for
	failOn   map[string]error  // body substring -> error
	appends  int
	synced   int
	// uncertain: body substring -> outcomes of the next appends of that
	// message, consumed in order: "stored" (stored, reply lost), "lost"
	// (not stored), "late:D" (not stored now, stored after duration D).
	uncertain map[string][]string
	noRemove  bool
	late      sync.WaitGroup
	onStore   func(appends int) // called (locked) after each store, may be nil
}

func newFakeSink() *fakeSink {
	return &fakeSink{folders: map[string][]string{}, failOn: map[string]error{}, removed: map[string]bool{}, uncertain: map[string][]string{}}
}

func (k *fakeSink) Prepare(ctx context.Context, mb migrate.Mailbox, name string) (string, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.prepared = append(k.prepared, name)
	if r, ok := k.rename[name]; ok {
		return r, nil
	}
	return name, nil
}

func (k *fakeSink) store(folder, data string) string {
	k.appends++
	k.folders[folder] = append(k.folders[folder], data)
	if k.onStore != nil {
		k.onStore(k.appends)
	}
	return fmt.Sprintf("%s:%d", folder, len(k.folders[folder]))
}

func (k *fakeSink) Append(ctx context.Context, folder string, m migrate.Message, b *migrate.Body) (string, error) {
	data, err := io.ReadAll(b.Reader())
	if err != nil {
		return "", err
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	for sub, err := range k.failOn {
		if strings.Contains(string(data), sub) {
			return "", err
		}
	}
	for sub, outs := range k.uncertain {
		if !strings.Contains(string(data), sub) || len(outs) == 0 {
			continue
		}
		out := outs[0]
		k.uncertain[sub] = outs[1:]
		lost := migrate.Uncertain(errors.New("connection reset by peer"))
		switch {
		case out == "stored":
			k.store(folder, string(data))
			return "", lost
		case out == "lost":
			return "", lost
		case strings.HasPrefix(out, "late:"):
			d, _ := time.ParseDuration(out[5:])
			k.late.Add(1)
			time.AfterFunc(d, func() {
				k.mu.Lock()
				k.store(folder, string(data))
				k.mu.Unlock()
				k.late.Done()
			})
			return "", lost
		}
	}
	return k.store(folder, string(data)), nil
}
func (k *fakeSink) Sync(context.Context, string) error {
	k.mu.Lock()
	k.synced++
	k.mu.Unlock()
	return nil
}
func (k *fakeSink) Mark(context.Context, string) (string, error) { return "0", nil }

// Locate finds copies by content (size and SHA-256), as the real sinks do.
func (k *fakeSink) Locate(ctx context.Context, folder string, ins []migrate.Intent) ([][]string, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	out := make([][]string, len(ins))
	for i, in := range ins {
		for n, b := range k.folders[folder] {
			ref := fmt.Sprintf("%s:%d", folder, n+1)
			sum := sha256.Sum256([]byte(b))
			if !k.removed[ref] && int64(len(b)) == in.Size && hex.EncodeToString(sum[:]) == in.SHA256 {
				out[i] = append(out[i], ref)
			}
		}
	}
	return out, nil
}

// Verify reads back copies by ref, as the real sinks do: true for a copy
// still held whose bytes hash to sums[i].
func (k *fakeSink) Verify(ctx context.Context, folder string, refs []string, sizes []int64, sums []string) ([]bool, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	out := make([]bool, len(refs))
	for i, ref := range refs {
		var n int
		if _, err := fmt.Sscanf(strings.TrimPrefix(ref, folder+":"), "%d", &n); err != nil || k.removed[ref] || n < 1 || n > len(k.folders[folder]) {
			continue
		}
		b := k.folders[folder][n-1]
		sum := sha256.Sum256([]byte(b))
		out[i] = int64(len(b)) == sizes[i] && hex.EncodeToString(sum[:]) == sums[i]
	}
	return out, nil
}

func (k *fakeSink) Remove(ctx context.Context, folder, ref string) error {
	if k.noRemove {
		return migrate.ErrCannotRemove
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	k.removed[ref] = true
	return nil
}
func (k *fakeSink) Limits() migrate.Limits { return migrate.Limits{} }
func (k *fakeSink) Close() error           { return nil }

// count is the number of messages the sink holds.
func (k *fakeSink) count() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	n := 0
	for _, f := range k.folders {
		n += len(f)
	}
	return n - len(k.removed)
}

// copiesOf counts the copies of body the sink holds in folder.
func (k *fakeSink) copiesOf(folder, body string) int {
	k.mu.Lock()
	defer k.mu.Unlock()
	n := 0
	for i, b := range k.folders[folder] {
		if b == body && !k.removed[fmt.Sprintf("%s:%d", folder, i+1)] {
			n++
		}
	}
	return n
}

func openCP(t *testing.T) *checkpoint.Store {
	t.Helper()
	cp := openCPAt(t, filepath.Join(t.TempDir(), "cp.db"))
	t.Cleanup(func() { cp.Close() })
	return cp
}

func openCPAt(t *testing.T, path string) *checkpoint.Store {
	t.Helper()
	cp, err := checkpoint.Open(path, "src", "dst")
	if err != nil {
		t.Fatal(err)
	}
	return cp
}

func TestRunCopiesEverythingOnce(t *testing.T) {
	src := newFakeSource(map[string]int{"INBOX": 100, "Sent": 30, "A/B": 7})
	sink := newFakeSink()
	cp := openCP(t)
	o := migrate.Options{Source: src, Sink: sink, Checkpoint: cp, Transfers: 3, MemLimit: 64}
	r, err := migrate.Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if r.Copied != 137 || sink.count() != 137 || len(r.Skipped) != 0 {
		t.Fatalf("copied %d (sink %d), skipped %v", r.Copied, sink.count(), r.Skipped)
	}
	for f, ms := range src.msgs {
		got := map[string]bool{}
		for _, b := range sink.folders[f] {
			got[b] = true
		}
		for _, m := range ms {
			if !got[src.bodies[m.ID]] {
				t.Errorf("%s %s missing", f, m.ID)
			}
		}
	}
	r, err = migrate.Run(context.Background(), o)
	if err != nil || r.Copied != 0 || r.Already != 137 || sink.count() != 137 {
		t.Fatalf("second run: %+v %v", r, err)
	}
}

func TestRunSkipsBadMessagesAndGoesOn(t *testing.T) {
	src := newFakeSource(map[string]int{"INBOX": 20})
	src.errs["INBOX-3"] = migrate.SkipMessage(errors.New("read /x/3: input/output error"))
	src.panics["INBOX-5"] = true
	sink := newFakeSink()
	sink.failOn["body zzzzzzz\r"] = migrate.SkipMessage(errors.New("message too big"))
	cp := openCP(t)
	r, err := migrate.Run(context.Background(), migrate.Options{Source: src, Sink: sink, Checkpoint: cp})
	if err != nil {
		t.Fatal(err)
	}
	if r.Copied != 17 || len(r.Skipped) != 3 {
		t.Fatalf("copied %d skipped %+v", r.Copied, r.Skipped)
	}
	reasons := fmt.Sprint(r.Skipped)
	for _, want := range []string{"input/output error", "panic: bad parser", "message too big", "INBOX-7"} {
		if !strings.Contains(reasons, want) {
			t.Errorf("skipped list lacks %q: %s", want, reasons)
		}
	}
	// Skipped messages are retried by the next run (not recorded as done).
	delete(src.errs, "INBOX-3")
	delete(src.panics, "INBOX-5")
	delete(sink.failOn, "body zzzzzzz\r")
	r, err = migrate.Run(context.Background(), migrate.Options{Source: src, Sink: sink, Checkpoint: cp})
	if err != nil || r.Copied != 3 || sink.count() != 20 {
		t.Fatalf("retry run: %+v %v", r, err)
	}
	if p, _ := cp.Pending(); len(p) != 0 {
		t.Errorf("pending intents left: %v", p)
	}
}

func TestRunRetriesTransientErrors(t *testing.T) {
	src := newFakeSource(map[string]int{"INBOX": 5})
	src.flaky["INBOX-2"] = 2
	sink := newFakeSink()
	var retries atomic.Int64
	rep := migrate.ReporterFunc(func(e migrate.Event) {
		if e.Kind == migrate.Retrying {
			retries.Add(1)
		}
	})
	r, err := migrate.Run(context.Background(), migrate.Options{Source: src, Sink: sink, Checkpoint: openCP(t), Reporter: rep, RetryBase: time.Millisecond})
	if err != nil || r.Copied != 5 {
		t.Fatalf("%+v %v", r, err)
	}
	if retries.Load() != 2 {
		t.Errorf("%d retries, want 2", retries.Load())
	}
	// The partial bytes of failed attempts must not leak into the copy.
	for _, b := range sink.folders["INBOX"] {
		if strings.Contains(b, "partial") {
			t.Errorf("retry kept bytes of a failed attempt: %q", b)
		}
	}
	// Retries exhausted: fatal.
	src.flaky["INBOX-4"] = 100
	_, err = migrate.Run(context.Background(), migrate.Options{Source: src, Sink: newFakeSink(), Checkpoint: openCP(t), RetryBase: time.Millisecond, Retries: 2})
	if err == nil || !strings.Contains(err.Error(), "giving up after 2 retries") {
		t.Fatalf("want fatal after retries, got %v", err)
	}
}

func TestRunFatalErrorStopsCleanly(t *testing.T) {
	src := newFakeSource(map[string]int{"INBOX": 200})
	sink := newFakeSink()
	sink.failOn["INBOX-150@"] = errors.New("write /dst: no space left on device")
	cp := openCP(t)
	r, err := migrate.Run(context.Background(), migrate.Options{Source: src, Sink: sink, Checkpoint: cp, BatchSize: 8})
	if err == nil || !strings.Contains(err.Error(), "no space left") {
		t.Fatalf("want fatal error, got %v", err)
	}
	// Everything appended before the error is recorded: a resumed run
	// copies only the rest, no duplicates.
	delete(sink.failOn, "INBOX-150@")
	r, err = migrate.Run(context.Background(), migrate.Options{Source: src, Sink: sink, Checkpoint: cp})
	if err != nil {
		t.Fatal(err)
	}
	if sink.count() != 200 {
		t.Fatalf("sink holds %d after resume, want 200 (report %+v)", sink.count(), r)
	}
}

func TestRunCancelled(t *testing.T) {
	src := newFakeSource(map[string]int{"INBOX": 500})
	sink := newFakeSink()
	cp := openCP(t)
	ctx, cancel := context.WithCancel(context.Background())
	var n atomic.Int64
	rep := migrate.ReporterFunc(func(e migrate.Event) {
		if e.Kind == migrate.Copied && n.Add(1) == 50 {
			cancel()
		}
	})
	r, err := migrate.Run(ctx, migrate.Options{Source: src, Sink: sink, Checkpoint: cp, Reporter: rep, BatchSize: 4})
	if !errors.Is(err, migrate.ErrInterrupted) || !r.Interrupted {
		t.Fatalf("want interrupted, got %v", err)
	}
	if p, _ := cp.Pending(); len(p) != 0 {
		t.Errorf("a clean stop left %d pending intents", len(p))
	}
	if _, err := migrate.Run(context.Background(), migrate.Options{Source: src, Sink: sink, Checkpoint: cp}); err != nil {
		t.Fatal(err)
	}
	if sink.count() != 500 {
		t.Fatalf("sink holds %d, want 500", sink.count())
	}
}

// TestGracefulStopMidBatch: a graceful stop (Options.Stop, the first
// Ctrl-C) asked during a batch lets the append on the wire finish and
// leaves the rest of the batch, instead of appending all of it (with a
// local source a batch is whatever was fetched, often the whole mailbox);
// nothing is left pending and the next run copies the rest once.
func TestGracefulStopMidBatch(t *testing.T) {
	src := newFakeSource(map[string]int{"INBOX": 60})
	sink := newFakeSink()
	cp := openCP(t)
	stop := make(chan struct{})
	sink.onStore = func(n int) {
		if n == 3 {
			close(stop)
		}
	}
	o := migrate.Options{Source: src, Sink: sink, Checkpoint: cp, Transfers: 1, BatchSize: 32, Stop: stop}
	r, err := migrate.Run(context.Background(), o)
	if !errors.Is(err, migrate.ErrInterrupted) {
		t.Fatalf("want interrupted, got %v", err)
	}
	if n := sink.count(); n != 3 || r.Copied != 3 {
		t.Errorf("stopped after the 3rd append, the sink holds %d (reported %d), want 3", n, r.Copied)
	}
	if p, _ := cp.Pending(); len(p) != 0 {
		t.Errorf("a graceful stop left %d pending intents", len(p))
	}
	sink.onStore = nil
	o.Stop = nil
	if r, err := migrate.Run(context.Background(), o); err != nil || r.Copied != 57 {
		t.Fatalf("next run: copied %d, %v", r.Copied, err)
	}
	if sink.count() != 60 {
		t.Fatalf("sink holds %d, want 60", sink.count())
	}
}

// stopOnRetrySink refuses the first append of message "INBOX-2" with a
// retryable error (nothing stored) and closes stop: a graceful stop
// arriving while an append waits to be retried.
type stopOnRetrySink struct {
	*fakeSink
	stop chan struct{}
	once sync.Once
}

func (k *stopOnRetrySink) Append(ctx context.Context, folder string, m migrate.Message, b *migrate.Body) (string, error) {
	if m.ID == "INBOX-2" {
		refused := false
		k.once.Do(func() { refused = true; close(k.stop) })
		if refused {
			return "", migrate.Retryable(errors.New("server busy"))
		}
	}
	return k.fakeSink.Append(ctx, folder, m, b)
}

// TestGracefulStopWhileRetrying: a graceful stop while an append waits
// to be retried (a backoff of a minute here) ends the wait at once; that
// message is left for the next run, not pending, and copied once then.
func TestGracefulStopWhileRetrying(t *testing.T) {
	src := newFakeSource(map[string]int{"INBOX": 6})
	sink := &stopOnRetrySink{fakeSink: newFakeSink(), stop: make(chan struct{})}
	cp := openCP(t)
	o := migrate.Options{Source: src, Sink: sink, Checkpoint: cp, Transfers: 1, BatchSize: 8, Stop: sink.stop, RetryBase: time.Minute}
	start := time.Now()
	_, err := migrate.Run(context.Background(), o)
	if !errors.Is(err, migrate.ErrInterrupted) {
		t.Fatalf("want interrupted, got %v", err)
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Errorf("the stop waited %v for the retry", d)
	}
	if p, _ := cp.Pending(); len(p) != 0 {
		t.Errorf("%d pending intents after a graceful stop", len(p))
	}
	o.Stop, o.Sink = nil, sink.fakeSink
	if _, err := migrate.Run(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	exactlyOnce(t, src, sink.fakeSink)
}

func TestRecoverPendingIntents(t *testing.T) {
	src := newFakeSource(map[string]int{"INBOX": 10})
	sink := newFakeSink()
	cp := openCP(t)
	// A killed run: intents for 0..3 recorded, 0 and 1 appended, nothing done.
	var ins []migrate.Intent
	for i := 0; i < 4; i++ {
		id := fmt.Sprintf("INBOX-%d", i)
		b := src.bodies[id]
		ins = append(ins, migrate.Intent{Folder: "INBOX", ID: id, Dest: "INBOX", MessageID: fmt.Sprintf("<%s@x>", id), Size: int64(len(b)), SHA256: sha(b)})
		if i < 2 {
			sink.folders["INBOX"] = append(sink.folders["INBOX"], b)
		}
	}
	if err := cp.AddIntents(ins); err != nil {
		t.Fatal(err)
	}
	r, err := migrate.Run(context.Background(), migrate.Options{Source: src, Sink: sink, Checkpoint: cp})
	if err != nil {
		t.Fatal(err)
	}
	if r.Recovered != 2 || r.Copied != 8 || sink.count() != 10 {
		t.Fatalf("recovered %d copied %d sink %d; want 2, 8, 10", r.Recovered, r.Copied, sink.count())
	}
}

func TestDryRunPlans(t *testing.T) {
	src := newFakeSource(map[string]int{"INBOX": 4, "Old": 3})
	r, err := migrate.Run(context.Background(), migrate.Options{Source: src, Sink: newFakeSink(), DryRun: true, Exclude: []string{"Old"}})
	if err != nil {
		t.Fatal(err)
	}
	if !r.DryRun || r.Copied != 4 || len(r.Folders) != 1 || src.fetches.Load() != 0 {
		t.Fatalf("plan %+v, fetches %d", r, src.fetches.Load())
	}
}

func TestFiltersAndMap(t *testing.T) {
	o := migrate.Options{Include: []string{"Archive", "Work/*"}, Exclude: []string{"Archive/Spam*"}, Map: map[string]string{"Archive": "Old", "Archive/2019": "Y2019"}}
	for name, want := range map[string]bool{"Archive": true, "Archive/2019": true, "Archive/Spam": false, "Archive/Spammy/x": false, "Work": false, "Work/a": true, "Work/a/b": true, "INBOX": false} {
		if got := o.Selected(name); got != want {
			t.Errorf("Selected(%q) = %v", name, got)
		}
	}
	for name, want := range map[string]string{"Archive": "Old", "Archive/x": "Old/x", "Archive/2019": "Y2019", "Archive/2019/Q1": "Y2019/Q1", "Archived": "Archived"} {
		if got := o.MapName(name); got != want {
			t.Errorf("MapName(%q) = %q, want %q", name, got, want)
		}
	}
	if _, err := migrate.ParseMap([]string{"=x"}); err == nil {
		t.Error("ParseMap accepted an empty source")
	}
	src := newFakeSource(map[string]int{"INBOX": 30})
	big := src.msgs["INBOX"][29].Size
	r, err := migrate.Run(context.Background(), migrate.Options{Source: src, Sink: newFakeSink(), Checkpoint: openCP(t),
		Since: time.Unix(1e9+5, 0), Before: time.Unix(1e9+25, 0), MaxSize: big - 3})
	if err != nil {
		t.Fatal(err)
	}
	if r.Copied != 20 || r.Filtered != 10 {
		t.Fatalf("copied %d filtered %d, want 20 and 10", r.Copied, r.Filtered)
	}
}

func TestEpochChangeRematches(t *testing.T) {
	src := newFakeSource(map[string]int{"INBOX": 10})
	src.boxes[0].Epoch = "100"
	for i := range src.msgs["INBOX"] {
		src.msgs["INBOX"][i].MessageID = fmt.Sprintf("<INBOX-%d@x>", i)
	}
	sink := newFakeSink()
	cp := openCP(t)
	if _, err := migrate.Run(context.Background(), migrate.Options{Source: src, Sink: sink, Checkpoint: cp}); err != nil {
		t.Fatal(err)
	}
	// The server was rebuilt: new UIDVALIDITY, new UIDs, plus two new
	// messages and one whose Message-ID changed (cannot be matched).
	old := src.msgs["INBOX"]
	src.boxes[0].Epoch = "200"
	src.msgs["INBOX"] = nil
	for i, m := range old {
		m.ID = fmt.Sprintf("new-%d", i)
		src.bodies[m.ID] = src.bodies[old[i].ID]
		if i == 3 {
			m.MessageID = "<rewritten@x>"
		}
		src.msgs["INBOX"] = append(src.msgs["INBOX"], m)
	}
	for i := 10; i < 12; i++ {
		id := fmt.Sprintf("new-%d", i)
		src.bodies[id] = fmt.Sprintf("Message-ID: <%s@x>\r\n\r\nnew\r\n", id)
		src.msgs["INBOX"] = append(src.msgs["INBOX"], migrate.Message{Mailbox: "INBOX", ID: id, MessageID: fmt.Sprintf("<%s@x>", id), Size: int64(len(src.bodies[id]))})
	}
	plan, err := migrate.Run(context.Background(), migrate.Options{Source: src, Sink: sink, Checkpoint: cp, DryRun: true})
	if err != nil || plan.Copied != 3 || sink.count() != 10 {
		t.Fatalf("dry run after UIDVALIDITY change: plans %d (want 3), sink %d, %v", plan.Copied, sink.count(), err)
	}
	if e, _, _ := cp.Epoch("INBOX"); e != "100" {
		t.Fatalf("dry run changed the epoch to %q", e)
	}
	r, err := migrate.Run(context.Background(), migrate.Options{Source: src, Sink: sink, Checkpoint: cp})
	if err != nil {
		t.Fatal(err)
	}
	if r.Copied != 3 || r.Already != 9 || sink.count() != 13 {
		t.Fatalf("after UIDVALIDITY change: copied %d already %d sink %d; want 3, 9, 13", r.Copied, r.Already, sink.count())
	}
	if len(r.Warnings) != 1 || !strings.Contains(r.Warnings[0], "9 messages re-matched") {
		t.Errorf("warnings %v", r.Warnings)
	}
	if e, _, _ := cp.Epoch("INBOX"); e != "200" {
		t.Errorf("epoch %q", e)
	}
	r, _ = migrate.Run(context.Background(), migrate.Options{Source: src, Sink: sink, Checkpoint: cp})
	if r.Copied != 0 || r.Already != 12 {
		t.Errorf("third run: %+v", r)
	}
}

// TestEpochRecordedWithFirstMessage: a folder with nothing to copy gets no
// epoch (no commit per empty folder); its first message records it before
// anything of it is copied, and a later change of an epoch never recorded
// re-matches nothing.
func TestEpochRecordedWithFirstMessage(t *testing.T) {
	src := newFakeSource(map[string]int{"INBOX": 2, "Empty": 0})
	for i := range src.boxes {
		src.boxes[i].Epoch = "100"
	}
	sink := newFakeSink()
	cp := openCP(t)
	if _, err := migrate.Run(context.Background(), migrate.Options{Source: src, Sink: sink, Checkpoint: cp}); err != nil {
		t.Fatal(err)
	}
	if e, ok, _ := cp.Epoch("INBOX"); !ok || e != "100" {
		t.Errorf("INBOX: epoch %q, %v; want 100", e, ok)
	}
	if e, ok, _ := cp.Epoch("Empty"); ok {
		t.Errorf("Empty: epoch %q recorded for a folder with nothing copied", e)
	}
	// Empty is re-created with a new UIDVALIDITY and gets a message.
	for i := range src.boxes {
		if src.boxes[i].Name == "Empty" {
			src.boxes[i].Epoch = "200"
		}
	}
	src.bodies["e-1"] = "Message-ID: <e-1@x>\r\n\r\nnew\r\n"
	src.msgs["Empty"] = []migrate.Message{{Mailbox: "Empty", ID: "e-1", MessageID: "<e-1@x>", Size: int64(len(src.bodies["e-1"]))}}
	r, err := migrate.Run(context.Background(), migrate.Options{Source: src, Sink: sink, Checkpoint: cp})
	if err != nil || r.Copied != 1 || len(r.Warnings) != 0 {
		t.Fatalf("second run: copied %d, warnings %q, %v; want 1 copied, no re-match", r.Copied, r.Warnings, err)
	}
	if e, _, _ := cp.Epoch("Empty"); e != "200" {
		t.Errorf("Empty: epoch %q after its first copy, want 200", e)
	}
}

// TestRecoverTwinNotMistaken: two byte-identical source messages; the first
// was copied and recorded, the second's intent is pending but it was never
// appended. The first copy must not be taken for the second.
func TestRecoverTwinNotMistaken(t *testing.T) {
	src := newFakeSource(map[string]int{"INBOX": 2})
	src.bodies["INBOX-1"] = src.bodies["INBOX-0"]
	src.msgs["INBOX"][1].Size = src.msgs["INBOX"][0].Size
	sink := newFakeSink()
	cp := openCP(t)
	b := src.bodies["INBOX-0"]
	twin := func(id string) migrate.Intent {
		return migrate.Intent{Folder: "INBOX", ID: id, Dest: "INBOX", MessageID: "<INBOX-0@x>", Size: int64(len(b)), SHA256: sha(b)}
	}
	sink.folders["INBOX"] = []string{b}
	cp.AddIntents([]migrate.Intent{twin("INBOX-0"), twin("INBOX-1")})
	cp.Complete([]migrate.Intent{twin("INBOX-0")}, []string{"INBOX:1"})
	r, err := migrate.Run(context.Background(), migrate.Options{Source: src, Sink: sink, Checkpoint: cp})
	if err != nil {
		t.Fatal(err)
	}
	if r.Recovered != 0 || r.Copied != 1 || sink.count() != 2 {
		t.Fatalf("recovered %d copied %d sink %d; want 0, 1, 2", r.Recovered, r.Copied, sink.count())
	}
}

// skipAllSource classifies every Fetch failure as this message's fault,
// as a file-based source does; a failing spool must still stop the run.
type skipAllSource struct{ *fakeSource }

func (s skipAllSource) Fetch(ctx context.Context, m migrate.Message, w io.Writer) error {
	if err := s.fakeSource.Fetch(ctx, m, w); err != nil {
		return migrate.SkipMessage(err)
	}
	return nil
}

// TestSpoolFailureIsFatal: also inside a batch fetch, from a source that
// says it delivered the message (batchSource.lie).
func TestSpoolFailureIsFatal(t *testing.T) {
	lying := newBatchSource(map[string]int{"INBOX": 5})
	lying.lie = true
	for _, src := range []migrate.Source{skipAllSource{newFakeSource(map[string]int{"INBOX": 5})}, lying} {
		sink := newFakeSink()
		_, err := migrate.Run(context.Background(), migrate.Options{Source: src, Sink: sink, Checkpoint: openCP(t),
			MemLimit: 8, TempDir: filepath.Join(t.TempDir(), "missing")})
		if err == nil || migrate.Classify(err) != migrate.Fatal || !strings.Contains(err.Error(), "spool") {
			t.Fatalf("%T: want a fatal spool error, got %v", src, err)
		}
		if sink.count() != 0 {
			t.Errorf("%T: %d messages appended", src, sink.count())
		}
	}
}

func sha(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// TestSourceListsFolderTwice: a source that lists one folder name twice
// ends the run before anything is copied, naming the folder: one of the
// two folders it stands for would never be read.
func TestSourceListsFolderTwice(t *testing.T) {
	src := newFakeSource(map[string]int{"INBOX": 2})
	src.boxes = append(src.boxes, migrate.Mailbox{Name: "INBOX"})
	sink := newFakeSink()
	_, err := migrate.Run(context.Background(), migrate.Options{Source: src, Sink: sink, Checkpoint: openCP(t)})
	if err == nil || !strings.Contains(err.Error(), `lists folder "INBOX" twice`) || migrate.Classify(err) != migrate.Fatal || sink.count() != 0 {
		t.Errorf("err %v, %d copied", err, sink.count())
	}
}
