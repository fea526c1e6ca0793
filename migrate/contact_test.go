package migrate_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailhaul/mailhaul/migrate"
)

// indexSink is fakeSink with an IndexRefs (Message-ID, size and ref of
// what each folder holds), counting the folders indexed. With seen set
// (one process) it leaves out what it stored since it first prepared the
// folder, as the IMAP sink does by UIDNEXT.
type indexSink struct {
	*fakeSink
	indexed atomic.Int64
	seen    map[string]int       // folder -> messages held when first prepared
	dates   map[string]time.Time // ref -> internal date given to Append
}

func (k *indexSink) Append(ctx context.Context, folder string, m migrate.Message, b *migrate.Body) (string, error) {
	ref, err := k.fakeSink.Append(ctx, folder, m, b)
	if ref != "" {
		k.mu.Lock()
		if k.dates == nil {
			k.dates = map[string]time.Time{}
		}
		k.dates[ref] = m.Date
		k.mu.Unlock()
	}
	return ref, err
}

func (k *indexSink) Prepare(ctx context.Context, mb migrate.Mailbox, name string) (string, error) {
	k.mu.Lock()
	if _, ok := k.seen[name]; !ok && k.seen != nil {
		k.seen[name] = len(k.folders[name])
	}
	k.mu.Unlock()
	return k.fakeSink.Prepare(ctx, mb, name)
}

func (k *indexSink) IndexRefs(ctx context.Context, folder string, fn func(string, int64, time.Time, string) error) error {
	k.indexed.Add(1)
	k.mu.Lock()
	bodies := append([]string(nil), k.folders[folder]...)
	if n, ok := k.seen[folder]; ok {
		bodies = bodies[:n]
	}
	dates := make([]time.Time, len(bodies))
	for i := range bodies {
		dates[i] = k.dates[fmt.Sprintf("%s:%d", folder, i+1)]
	}
	k.mu.Unlock()
	for i, b := range bodies {
		if err := fn(migrate.MessageIDFromHeader([]byte(b)), int64(len(b)), dates[i], fmt.Sprintf("%s:%d", folder, i+1)); err != nil {
			return err
		}
	}
	return nil
}

// warnings collects the Warning events of runs.
type warnings struct {
	mu sync.Mutex
	w  []string
}

func (w *warnings) Event(e migrate.Event) {
	if e.Kind == migrate.Warning {
		w.mu.Lock()
		w.w = append(w.w, e.Err.Error())
		w.mu.Unlock()
	}
}

func (w *warnings) take() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := w.w
	w.w = nil
	return out
}

// addMessages adds n messages to folder of s, after those it has.
func addMessages(s *fakeSource, folder string, n int) {
	have := len(s.msgs[folder])
	for i := have; i < have+n; i++ {
		id := fmt.Sprintf("%s-%d", folder, i)
		body := fmt.Sprintf("Message-ID: <%s@x>\r\nSubject: %d\r\n\r\nbody %s\r\n", id, i, strings.Repeat("z", i))
		s.bodies[id] = body
		s.msgs[folder] = append(s.msgs[folder], migrate.Message{Mailbox: folder, ID: id, Size: int64(len(body)), Date: time.Unix(int64(1e9+i), 0)})
	}
}

// onlyOnce fails the test for any body sink holds more or less than once.
func onlyOnce(t *testing.T, src *fakeSource, sink *fakeSink) {
	t.Helper()
	for f, ms := range src.msgs {
		for _, m := range ms {
			if n := sink.copiesOf(f, src.bodies[m.ID]); n != 1 {
				t.Errorf("%s: %d copies in the destination", m.ID, n)
			}
		}
	}
}

// TestLostStateNoDuplicates: a copy with a new checkpoint (the state dir
// lost) into a destination that holds an earlier run's copies copies
// nothing twice, says so once per folder, and records the folders as
// known: the run after it reads no destination folder, and copies what is
// new.
func TestLostStateNoDuplicates(t *testing.T) {
	src := newFakeSource(map[string]int{"INBOX": 50, "Sent": 20})
	sink := &indexSink{fakeSink: newFakeSink()}
	var w warnings
	run := func(cp migrate.Checkpoint) migrate.Report {
		t.Helper()
		r, err := migrate.Run(context.Background(), migrate.Options{Source: src, Sink: sink, Checkpoint: cp, Transfers: 3, Reporter: &w})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	if r := run(openCP(t)); r.Copied != 70 {
		t.Fatalf("first copy: %d copied", r.Copied)
	}
	if ws := w.take(); len(ws) != 0 || sink.indexed.Load() != 2 {
		t.Fatalf("first copy into empty folders: %d indexed, warnings %q", sink.indexed.Load(), ws)
	}
	lost := openCP(t)
	r := run(lost)
	if r.Copied != 0 || r.Found != 70 || sink.count() != 70 {
		t.Fatalf("with a new checkpoint: %d copied, %d found, destination holds %d; want 0, 70, 70", r.Copied, r.Found, sink.count())
	}
	if ws := w.take(); len(ws) != 2 || !strings.Contains(ws[0], "already holds") || !strings.Contains(ws[1], "also holds") || strings.Contains(ws[1], "--dedupe") {
		t.Errorf("warnings %q, want one per folder, the second without the explanation", ws)
	}
	addMessages(src, "INBOX", 5)
	sink.indexed.Store(0)
	if r := run(lost); r.Copied != 5 || r.Found != 0 || r.Already != 70 {
		t.Fatalf("next run: %d copied, %d found, %d already; want 5, 0, 70", r.Copied, r.Found, r.Already)
	}
	if sink.indexed.Load() != 0 {
		t.Errorf("the run after the lost-state run read %d destination folders", sink.indexed.Load())
	}
	onlyOnce(t, src, sink.fakeSink)
	if ws := w.take(); len(ws) != 0 {
		t.Errorf("warnings %q", ws)
	}

	// NoAutoDedupe copies everything the checkpoint does not record.
	r2, err := migrate.Run(context.Background(), migrate.Options{Source: src, Sink: sink, Checkpoint: openCP(t), NoAutoDedupe: true})
	if err != nil {
		t.Fatal(err)
	}
	if r2.Copied != 75 || sink.count() != 150 {
		t.Errorf("NoAutoDedupe: %d copied, destination holds %d; want 75 and 150", r2.Copied, sink.count())
	}
}

// TestLostStateInterrupted: a lost-state run that is interrupted while
// it is finding what the first copy wrote leaves its decision in the
// checkpoint, and the run that resumes it compares too: what the first
// copy wrote is there once, and the new messages once; the resumed run
// ends the decision.
func TestLostStateInterrupted(t *testing.T) {
	src, sink, path, r, err := interruptLostState(t, 40, migrate.Options{})
	if !errors.Is(err, migrate.ErrInterrupted) {
		t.Fatalf("interrupted run: %v", err)
	}
	if r.Found == 0 || r.Found >= 60 || sink.count() != 60 {
		t.Fatalf("the interrupted run found %d of the 60 copies, the destination holds %d: the test needs it stopped among them", r.Found, sink.count())
	}
	cp := openCPAt(t, path)
	defer cp.Close()
	var w warnings
	if _, err := migrate.Run(context.Background(), migrate.Options{Source: src, Sink: sink, Checkpoint: cp, Reporter: &w}); err != nil {
		t.Fatal(err)
	}
	onlyOnce(t, src, sink.fakeSink)
	if sink.count() != 100 {
		t.Fatalf("destination holds %d, want 100", sink.count())
	}
	if ws := w.take(); len(ws) != 1 || !strings.Contains(ws[0], "comparing its messages with that mail again") {
		t.Errorf("warnings of the resumed run %q", ws)
	}
	if p, err := cp.ContactsPending(); err != nil || len(p) != 0 {
		t.Errorf("after the resumed run: pending %v, %v", p, err)
	}
}

// TestLostStateFiltered: a lost-state run with --since compares only what
// it selects; the folder stays compared with until a run without filter
// finishes it, so that the messages left out then are not copied twice
// either.
func TestLostStateFiltered(t *testing.T) {
	src := newFakeSource(map[string]int{"INBOX": 20})
	sink := &indexSink{fakeSink: newFakeSink()}
	if _, err := migrate.Run(context.Background(), migrate.Options{Source: src, Sink: sink, Checkpoint: openCP(t)}); err != nil {
		t.Fatal(err)
	}
	lost := openCP(t)
	r, err := migrate.Run(context.Background(), migrate.Options{Source: src, Sink: sink, Checkpoint: lost, Since: time.Unix(1e9+15, 0)})
	if err != nil || r.Found != 5 || r.Filtered != 15 {
		t.Fatalf("with --since: %d found, %d filtered, %v", r.Found, r.Filtered, err)
	}
	if p, _ := lost.ContactsPending(); len(p) != 1 {
		t.Errorf("pending after a filtered run: %v", p)
	}
	r, err = migrate.Run(context.Background(), migrate.Options{Source: src, Sink: sink, Checkpoint: lost})
	if err != nil || r.Copied != 0 || r.Found != 15 || sink.count() != 20 {
		t.Fatalf("without --since: %d copied, %d found, destination holds %d, %v", r.Copied, r.Found, sink.count(), err)
	}
	if p, _ := lost.ContactsPending(); len(p) != 0 {
		t.Errorf("pending after the run that finished the folder: %v", p)
	}
}

// TestFirstContactCosts: a source with nothing to copy reads no
// destination folder, however many runs; a destination folder that was
// empty at the first contact is never compared with, even once it holds
// mail from elsewhere; a destination folder the sink saw empty needs no
// index at all.
func TestFirstContactCosts(t *testing.T) {
	src := newFakeSource(map[string]int{"INBOX": 0})
	sink := &indexSink{fakeSink: newFakeSink()}
	cp := openCP(t)
	for i := 0; i < 3; i++ {
		if _, err := migrate.Run(context.Background(), migrate.Options{Source: src, Sink: sink, Checkpoint: cp}); err != nil {
			t.Fatal(err)
		}
	}
	if n := sink.indexed.Load(); n != 0 {
		t.Fatalf("an empty source read %d destination folders", n)
	}
	addMessages(src, "INBOX", 3)
	if r, err := migrate.Run(context.Background(), migrate.Options{Source: src, Sink: sink, Checkpoint: cp}); err != nil || r.Copied != 3 {
		t.Fatalf("copied %d, %v", r.Copied, err)
	}
	// The next source message delivered to the destination by someone
	// else: it is copied all the same (the checkpoint records copies of
	// the folder, so nothing is compared).
	addMessages(src, "INBOX", 1)
	sink.mu.Lock()
	sink.folders["INBOX"] = append(sink.folders["INBOX"], src.bodies["INBOX-3"])
	sink.mu.Unlock()
	sink.indexed.Store(0)
	if r, err := migrate.Run(context.Background(), migrate.Options{Source: src, Sink: sink, Checkpoint: cp}); err != nil || r.Copied != 1 {
		t.Fatalf("copied %d, %v", r.Copied, err)
	}
	if n := sink.indexed.Load(); n != 0 {
		t.Errorf("a known folder was read %d times", n)
	}

	fresh := freshSink{indexSink: &indexSink{fakeSink: newFakeSink()}}
	if _, err := migrate.Run(context.Background(), migrate.Options{Source: src, Sink: fresh, Checkpoint: openCP(t)}); err != nil {
		t.Fatal(err)
	}
	if n := fresh.indexed.Load(); n != 0 {
		t.Errorf("a folder the sink saw empty was read %d times", n)
	}
}

// TestMergedFoldersCompareWithWhatWasThere: two source folders going to
// one destination folder compare with what it held, not with each other's
// copies — in one run, and when the second folder comes in a later run: a
// message in both is copied twice, as it is without a lost state
// (--dedupe is for merging); a destination folder the sink saw empty is
// not read.
func TestMergedFoldersCompareWithWhatWasThere(t *testing.T) {
	for _, later := range []bool{false, true} {
		src := newFakeSource(map[string]int{"A": 3, "B": 0})
		for _, m := range src.msgs["A"] {
			m.Mailbox = "B"
			src.msgs["B"] = append(src.msgs["B"], m)
		}
		sink := &indexSink{fakeSink: newFakeSink()}
		sink.folders["INBOX"] = []string{"Message-ID: <there@x>\r\n\r\nthere\r\n"}
		cp := openCP(t)
		o := migrate.Options{Source: src, Sink: sink, Checkpoint: cp, Transfers: 1, Map: map[string]string{"A": "INBOX", "B": "INBOX"}}
		copied, found := 0, 0
		if later {
			first := o
			first.Include = []string{"A"}
			r, err := migrate.Run(context.Background(), first)
			if err != nil {
				t.Fatal(err)
			}
			copied, found = r.Copied, r.Found
		}
		r, err := migrate.Run(context.Background(), o)
		if err != nil {
			t.Fatal(err)
		}
		copied, found = copied+r.Copied, found+r.Found
		if copied != 6 || found != 0 || sink.count() != 7 {
			t.Errorf("B in a later run %v: copied %d, found %d, destination holds %d; want 6, 0, 7", later, copied, found, sink.count())
		}
	}
}

// TestTwinsAfterInterruption: byte-identical messages of one folder, one
// copied before an interruption, are both copied: the resumed run does
// not take the first one's copy for the second's.
func TestTwinsAfterInterruption(t *testing.T) {
	src := newFakeSource(map[string]int{"INBOX": 6})
	twin := src.msgs["INBOX"][0]
	twin.ID = "INBOX-twin"
	src.bodies[twin.ID] = src.bodies["INBOX-0"]
	src.msgs["INBOX"] = append(src.msgs["INBOX"], twin)
	sink := &indexSink{fakeSink: newFakeSink()}
	sink.folders["INBOX"] = []string{"Message-ID: <there@x>\r\n\r\nthere\r\n"}
	path := filepath.Join(t.TempDir(), "cp.db")
	cp := openCPAt(t, path)
	ctx, cancel := context.WithCancel(context.Background())
	sink.mu.Lock()
	sink.onStore = func(n int) {
		if n == 2 {
			cancel()
		}
	}
	sink.mu.Unlock()
	if _, err := migrate.Run(ctx, migrate.Options{Source: src, Sink: sink, Checkpoint: cp, BatchSize: 1, Transfers: 1}); !errors.Is(err, migrate.ErrInterrupted) {
		t.Fatalf("interrupted run: %v", err)
	}
	cp.Close()
	sink.mu.Lock()
	sink.onStore = nil
	sink.mu.Unlock()
	cp = openCPAt(t, path)
	defer cp.Close()
	if _, err := migrate.Run(context.Background(), migrate.Options{Source: src, Sink: sink, Checkpoint: cp}); err != nil {
		t.Fatal(err)
	}
	if n := sink.copiesOf("INBOX", src.bodies["INBOX-0"]); n != 2 || sink.count() != 8 {
		t.Errorf("twins: %d copies, destination holds %d; want 2 and 8", n, sink.count())
	}
}

type freshSink struct{ *indexSink }

func (freshSink) Fresh(string) bool { return true }

// TestFoundNotFoundAgain: a destination copy found for one source message
// is not found again for another in a later run: source folders merged
// into one destination folder, the second one coming later, and twins
// after an interruption.
func TestFoundNotFoundAgain(t *testing.T) {
	t.Run("merged", func(t *testing.T) {
		src := newFakeSource(map[string]int{"A": 3, "B": 0})
		for _, m := range src.msgs["A"] {
			m.Mailbox = "B"
			src.msgs["B"] = append(src.msgs["B"], m)
		}
		sink := &indexSink{fakeSink: newFakeSink()}
		mp := map[string]string{"A": "INBOX", "B": "INBOX"}
		// The lost state copied A only.
		if _, err := migrate.Run(context.Background(), migrate.Options{Source: src, Sink: sink, Checkpoint: openCP(t), Map: mp, Include: []string{"A"}}); err != nil {
			t.Fatal(err)
		}
		cp := openCP(t)
		if r, err := migrate.Run(context.Background(), migrate.Options{Source: src, Sink: sink, Checkpoint: cp, Map: mp, Include: []string{"A"}}); err != nil || r.Found != 3 {
			t.Fatalf("A with a new state: %d found, %v", r.Found, err)
		}
		if r, err := migrate.Run(context.Background(), migrate.Options{Source: src, Sink: sink, Checkpoint: cp, Map: mp}); err != nil || r.Copied != 3 || sink.count() != 6 {
			t.Fatalf("then B: %d copied, destination holds %d (want 3 and 6), %v", r.Copied, sink.count(), err)
		}
	})
	t.Run("twins", func(t *testing.T) {
		src := newFakeSource(map[string]int{"INBOX": 1})
		sink := &indexSink{fakeSink: newFakeSink()}
		if _, err := migrate.Run(context.Background(), migrate.Options{Source: src, Sink: sink, Checkpoint: openCP(t)}); err != nil {
			t.Fatal(err)
		}
		twin := src.msgs["INBOX"][0]
		twin.ID = "INBOX-twin"
		src.bodies[twin.ID] = src.bodies["INBOX-0"]
		src.msgs["INBOX"] = append(src.msgs["INBOX"], twin)
		addMessages(src, "INBOX", 4)
		path := filepath.Join(t.TempDir(), "cp.db")
		cp := openCPAt(t, path)
		ctx, cancel := context.WithCancel(context.Background())
		var dones atomic.Int64
		hook := func(step string) {
			if step == "done" && dones.Add(1) == 1 {
				cancel()
			}
		}
		if r, err := migrate.Run(ctx, migrate.Options{Source: src, Sink: sink, Checkpoint: cp, BatchSize: 1, Transfers: 1, StepHook: hook}); !errors.Is(err, migrate.ErrInterrupted) || r.Found != 1 {
			t.Fatalf("interrupted run: %d found, %v; the test needs it stopped after the first", r.Found, err)
		}
		cp.Close()
		cp = openCPAt(t, path)
		defer cp.Close()
		if _, err := migrate.Run(context.Background(), migrate.Options{Source: src, Sink: sink, Checkpoint: cp}); err != nil {
			t.Fatal(err)
		}
		if n := sink.copiesOf("INBOX", src.bodies["INBOX-0"]); n != 2 {
			t.Errorf("twins: %d copies, want 2", n)
		}
	})
}

// slowSink is indexSink whose Append of one message returns late.
type slowSink struct {
	*indexSink
	slow string
}

func (s slowSink) Append(ctx context.Context, folder string, m migrate.Message, b *migrate.Body) (string, error) {
	ref, err := s.indexSink.Append(ctx, folder, m, b)
	if m.ID == s.slow {
		time.Sleep(300 * time.Millisecond)
	}
	return ref, err
}

// slowListSource is fakeSource whose listing of one folder starts late.
type slowListSource struct {
	*fakeSource
	folder string
}

func (s slowListSource) List(ctx context.Context, mb migrate.Mailbox, fn func(migrate.Message) error) error {
	if mb.Name == s.folder {
		time.Sleep(100 * time.Millisecond)
	}
	return s.fakeSource.List(ctx, mb, fn)
}

// TestInFlightCopyIsNotForeign: a folder's first contact while another
// source folder's append into the same destination folder has not
// returned yet does not take that copy for foreign mail.
func TestInFlightCopyIsNotForeign(t *testing.T) {
	src := newFakeSource(map[string]int{"A": 3, "B": 0})
	sink := &indexSink{fakeSink: newFakeSink()}
	sink.folders["INBOX"] = []string{"Message-ID: <there@x>\r\n\r\nthere\r\n"}
	mp := map[string]string{"A": "INBOX", "B": "INBOX"}
	cp := openCP(t)
	if _, err := migrate.Run(context.Background(), migrate.Options{Source: src, Sink: sink, Checkpoint: cp, Map: mp, Include: []string{"A"}}); err != nil {
		t.Fatal(err)
	}
	sink.seen = map[string]int{} // a new process
	addMessages(src, "A", 1)
	m := src.msgs["A"][3]
	m.Mailbox, m.ID = "B", "B-copy"
	src.bodies[m.ID] = src.bodies["A-3"]
	src.msgs["B"] = append(src.msgs["B"], m)
	if _, err := migrate.Run(context.Background(), migrate.Options{Source: slowListSource{src, "B"}, Sink: slowSink{sink, "A-3"}, Checkpoint: cp, Map: mp}); err != nil {
		t.Fatal(err)
	}
	if n := sink.copiesOf("INBOX", src.bodies["A-3"]); n != 2 {
		t.Errorf("A-3 and its twin in B: %d copies, want 2", n)
	}
}

// TestEpochChangeIsNoFirstContact: a source folder whose UIDVALIDITY
// changed, with copies under the old one, is re-matched, not compared
// with the destination as a first contact.
func TestEpochChangeIsNoFirstContact(t *testing.T) {
	src := newFakeSource(map[string]int{"INBOX": 3})
	src.boxes[0].Epoch = "1"
	sink := &indexSink{fakeSink: newFakeSink()}
	sink.folders["INBOX"] = []string{"Message-ID: <there@x>\r\n\r\nthere\r\n"}
	cp := openCP(t)
	if _, err := migrate.Run(context.Background(), migrate.Options{Source: src, Sink: sink, Checkpoint: cp}); err != nil {
		t.Fatal(err)
	}
	addMessages(src, "INBOX", 1)
	for i := range src.msgs["INBOX"] {
		src.msgs["INBOX"][i].MessageID = migrate.MessageIDFromHeader([]byte(src.bodies[src.msgs["INBOX"][i].ID]))
	}
	src.boxes[0].Epoch = "2"
	sink.indexed.Store(0)
	var w warnings
	r, err := migrate.Run(context.Background(), migrate.Options{Source: src, Sink: sink, Checkpoint: cp, Reporter: &w})
	if err != nil {
		t.Fatal(err)
	}
	if r.Copied != 1 || sink.indexed.Load() != 0 {
		t.Errorf("after the UIDVALIDITY change: %d copied, %d destination folders read; want 1 and 0", r.Copied, sink.indexed.Load())
	}
	for _, s := range w.take() {
		if strings.Contains(s, "already holds") {
			t.Errorf("warning %q", s)
		}
	}
}

// TestFoundAtListingNotFetched: a source that gives the Message-ID while
// listing (IMAP) has its messages found in the destination without
// fetching them; one whose size differs from the destination's copy is
// fetched and copied.
func TestFoundAtListingNotFetched(t *testing.T) {
	src := newFakeSource(map[string]int{"INBOX": 40})
	for i := range src.msgs["INBOX"] {
		m := &src.msgs["INBOX"][i]
		m.MessageID = migrate.MessageIDFromHeader([]byte(src.bodies[m.ID]))
	}
	sink := &indexSink{fakeSink: newFakeSink()}
	if _, err := migrate.Run(context.Background(), migrate.Options{Source: src, Sink: sink, Checkpoint: openCP(t)}); err != nil {
		t.Fatal(err)
	}
	// One message changed on the source since (same Message-ID, another
	// size): not the copy the destination holds.
	changed := src.msgs["INBOX"][7].ID
	src.bodies[changed] += "more\r\n"
	src.msgs["INBOX"][7].Size = int64(len(src.bodies[changed]))
	src.fetches.Store(0)
	lost := openCP(t)
	r, err := migrate.Run(context.Background(), migrate.Options{Source: src, Sink: sink, Checkpoint: lost})
	if err != nil {
		t.Fatal(err)
	}
	if r.Found != 39 || r.Copied != 1 || src.fetches.Load() != 1 || sink.count() != 41 {
		t.Errorf("found %d, copied %d, fetched %d, destination holds %d; want 39, 1, 1, 41", r.Found, r.Copied, src.fetches.Load(), sink.count())
	}
	if p, _ := lost.ContactsPending(); len(p) != 0 {
		t.Errorf("pending after the run: %v", p)
	}
	addMessages(src, "INBOX", 2)
	if r, err := migrate.Run(context.Background(), migrate.Options{Source: src, Sink: sink, Checkpoint: lost}); err != nil || r.Copied != 2 || r.Already != 40 {
		t.Errorf("next run: copied %d, already %d, %v; want 2 and 40", r.Copied, r.Already, err)
	}
}

// Index makes indexSink an Indexer, for Dedupe.
func (k *indexSink) Index(ctx context.Context, folder string, fn func(string, int64) error) error {
	return k.IndexRefs(ctx, folder, func(mid string, size int64, _ time.Time, _ string) error { return fn(mid, size) })
}

// TestDedupeRunRecordsFirstContact: a lost-state run with Dedupe that is
// interrupted records the first contact all the same, so that the run
// resuming it without Dedupe goes on comparing.
func TestDedupeRunRecordsFirstContact(t *testing.T) {
	src, sink, path, r, err := interruptLostState(t, 10, migrate.Options{Dedupe: true})
	if !errors.Is(err, migrate.ErrInterrupted) || r.Found == 0 || r.Found >= 60 {
		t.Fatalf("interrupted --dedupe run: %d found, %v; the test needs it stopped among them", r.Found, err)
	}
	cp := openCPAt(t, path)
	defer cp.Close()
	if _, err := migrate.Run(context.Background(), migrate.Options{Source: src, Sink: sink, Checkpoint: cp}); err != nil {
		t.Fatal(err)
	}
	onlyOnce(t, src, sink.fakeSink)
	if sink.count() != 70 {
		t.Errorf("destination holds %d, want 70", sink.count())
	}
}

// delSource is fakeSource with a Deleter.
type delSource struct {
	*fakeSource
	deleted []string
}

func (s *delSource) Delete(ctx context.Context, folder string, ids []string) error {
	s.deleted = append(s.deleted, ids...)
	return nil
}

// failVerify is an indexSink whose Verify fails: the copies of found
// messages cannot be read back.
type failVerify struct{ *indexSink }

func (k failVerify) Verify(context.Context, string, []string, []int64, []string) ([]bool, error) {
	return nil, migrate.FatalError(errors.New("verify refused"))
}

// stopVerify is an indexSink that is asked to stop (the first Ctrl-C)
// while it reads back the found copies.
type stopVerify struct {
	*indexSink
	stop chan struct{}
}

func (k stopVerify) Verify(ctx context.Context, folder string, refs []string, sizes []int64, sums []string) ([]bool, error) {
	close(k.stop)
	return k.indexSink.Verify(ctx, folder, refs, sizes, sums)
}

// TestFoundDeletedOnceCompared: with DeleteAfterCopy, a message found in
// the destination at a first contact is deleted from the source only once
// the copy it was found as is shown to hold exactly its bytes. A copy that
// differs (same Message-ID, size and date, one byte changed), and every
// found message when the sink cannot compare, stay on the source, and the
// run says so; a message it copied is deleted in every case.
func TestFoundDeletedOnceCompared(t *testing.T) {
	setup := func(t *testing.T) (*delSource, *indexSink) {
		src := &delSource{fakeSource: newFakeSource(map[string]int{"INBOX": 10})}
		sink := &indexSink{fakeSink: newFakeSink()}
		if _, err := migrate.Run(context.Background(), migrate.Options{Source: src, Sink: sink, Checkpoint: openCP(t)}); err != nil {
			t.Fatal(err)
		}
		addMessages(src.fakeSource, "INBOX", 1)
		return src, sink
	}
	run := func(t *testing.T, src *delSource, sink migrate.Sink) (migrate.Report, []string) {
		var w warnings
		o := migrate.Options{Source: src, Sink: sink, Checkpoint: openCP(t), DeleteAfterCopy: true, Reporter: &w}
		if sv, ok := sink.(stopVerify); ok {
			o.Stop = sv.stop
		}
		r, err := migrate.Run(context.Background(), o)
		if err != nil && o.Stop == nil {
			t.Fatal(err)
		}
		if r.Found != 10 || r.Copied != 1 {
			t.Errorf("found %d, copied %d; want 10, 1", r.Found, r.Copied)
		}
		return r, w.take()
	}
	said := func(ws []string, s string) bool {
		for _, w := range ws {
			if strings.Contains(w, s) {
				return true
			}
		}
		return false
	}
	t.Run("compared", func(t *testing.T) {
		src, sink := setup(t)
		_, ws := run(t, src, sink)
		if len(src.deleted) != 11 {
			t.Errorf("deleted %v, want all 11", src.deleted)
		}
		if said(ws, "stay in the source") {
			t.Errorf("warned that messages stay: %q", ws)
		}
	})
	t.Run("copy-differs", func(t *testing.T) {
		src, sink := setup(t)
		sink.mu.Lock()
		sink.folders["INBOX"][3] = strings.Replace(sink.folders["INBOX"][3], "body", "bodY", 1)
		sink.mu.Unlock()
		_, ws := run(t, src, sink)
		if len(src.deleted) != 10 || slices.Contains(src.deleted, "INBOX-3") {
			t.Errorf("deleted %v, want all but INBOX-3", src.deleted)
		}
		if !said(ws, `1 messages of "INBOX" stay in the source`) {
			t.Errorf("no warning that INBOX-3 stays: %q", ws)
		}
	})
	t.Run("cannot-compare", func(t *testing.T) {
		src, sink := setup(t)
		_, ws := run(t, src, failVerify{sink})
		if len(src.deleted) != 1 || src.deleted[0] != "INBOX-10" {
			t.Errorf("deleted %v, want [INBOX-10]", src.deleted)
		}
		if !said(ws, "verify refused") || !said(ws, `10 messages of "INBOX" stay in the source`) {
			t.Errorf("no warning that the found messages stay on the source: %q", ws)
		}
	})
	t.Run("dedupe-stays", func(t *testing.T) {
		// --dedupe matches by Message-ID and size: nothing ties such a
		// match to one copy, so those messages stay, and the run says so.
		src, sink := setup(t)
		var w warnings
		r, err := migrate.Run(context.Background(), migrate.Options{Source: src, Sink: sink, Checkpoint: openCP(t), DeleteAfterCopy: true, Dedupe: true, Reporter: &w})
		if err != nil {
			t.Fatal(err)
		}
		if r.Found != 10 || r.Copied != 1 {
			t.Errorf("found %d, copied %d; want 10, 1", r.Found, r.Copied)
		}
		if len(src.deleted) != 1 || src.deleted[0] != "INBOX-10" {
			t.Errorf("deleted %v, want [INBOX-10]", src.deleted)
		}
		if ws := w.take(); !said(ws, `10 messages of "INBOX" stay in the source`) {
			t.Errorf("no warning that the dedupe matches stay in the source: %q", ws)
		}
	})
	t.Run("stopped-while-comparing", func(t *testing.T) {
		src, sink := setup(t)
		run(t, src, stopVerify{sink, make(chan struct{})})
		if len(src.deleted) != 0 {
			t.Errorf("deleted %v after a request to stop", src.deleted)
		}
	})
}

// TestSameMessageIDOtherDate: messages that share a Message-ID and a size
// (a cron job's reports) but not the internal date are different
// messages: a first copy into a folder that holds another of them copies
// every one.
func TestSameMessageIDOtherDate(t *testing.T) {
	src := newFakeSource(map[string]int{"INBOX": 0})
	for i := 0; i < 5; i++ {
		id := fmt.Sprintf("report-%d", i)
		body := fmt.Sprintf("Message-ID: <report@host>\r\n\r\nday %d\r\n", i)
		src.bodies[id] = body
		src.msgs["INBOX"] = append(src.msgs["INBOX"], migrate.Message{Mailbox: "INBOX", ID: id, Size: int64(len(body)),
			Date: time.Unix(1.7e9+int64(i)*86400, 0), MessageID: "<report@host>"})
	}
	sink := &indexSink{fakeSink: newFakeSink()}
	sink.folders["INBOX"] = []string{"Message-ID: <report@host>\r\n\r\nday 9\r\n"}
	sink.dates = map[string]time.Time{"INBOX:1": time.Unix(1.7e9+9*86400, 0)}
	r, err := migrate.Run(context.Background(), migrate.Options{Source: src, Sink: sink, Checkpoint: openCP(t)})
	if err != nil {
		t.Fatal(err)
	}
	if r.Copied != 5 || r.Found != 0 || sink.count() != 6 {
		t.Errorf("copied %d, found %d, destination holds %d; want 5, 0, 6", r.Copied, r.Found, sink.count())
	}
}

// interruptLostState copies a folder of 60 messages with one checkpoint,
// adds extra messages, and runs o (BatchSize 4, one transfer) with a new
// checkpoint at the returned path, cancelled at its third commit of
// copies: the lost-state run interrupted while it finds what the first
// copy wrote. The checkpoint is closed when it returns.
func interruptLostState(t *testing.T, extra int, o migrate.Options) (*fakeSource, *indexSink, string, migrate.Report, error) {
	t.Helper()
	src := newFakeSource(map[string]int{"INBOX": 60})
	sink := &indexSink{fakeSink: newFakeSink()}
	if _, err := migrate.Run(context.Background(), migrate.Options{Source: src, Sink: sink, Checkpoint: openCP(t)}); err != nil {
		t.Fatal(err)
	}
	addMessages(src, "INBOX", extra)
	path := filepath.Join(t.TempDir(), "lost.db")
	cp := openCPAt(t, path)
	defer cp.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var dones atomic.Int64
	o.Source, o.Sink, o.Checkpoint, o.BatchSize, o.Transfers = src, sink, cp, 4, 1
	o.StepHook = func(step string) {
		if step == "done" && dones.Add(1) == 3 {
			cancel()
		}
	}
	r, err := migrate.Run(ctx, o)
	return src, sink, path, r, err
}

// TestNoMessageIDWarned: messages without a Message-ID copied into a
// folder compared with what it held (here a lost state dir's first
// contact) are copied again — nothing can recognise them — and the run
// says so, once; a copy into an empty folder says nothing.
func TestNoMessageIDWarned(t *testing.T) {
	src := newFakeSource(map[string]int{"INBOX": 5})
	for _, id := range []string{"INBOX-1", "INBOX-3"} {
		src.bodies[id] = strings.Replace(src.bodies[id], "Message-ID: <"+id+"@x>\r\n", "", 1)
		for i, m := range src.msgs["INBOX"] {
			if m.ID == id {
				src.msgs["INBOX"][i].Size = int64(len(src.bodies[id]))
			}
		}
	}
	sink := &indexSink{fakeSink: newFakeSink()}
	var w warnings
	run := func() migrate.Report {
		t.Helper()
		r, err := migrate.Run(context.Background(), migrate.Options{Source: src, Sink: sink, Checkpoint: openCP(t), Reporter: &w})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	if r := run(); r.Copied != 5 {
		t.Fatalf("first copy: %d copied", r.Copied)
	}
	for _, s := range w.take() {
		if strings.Contains(s, "without a Message-ID") {
			t.Errorf("a copy into an empty folder warned: %s", s)
		}
	}
	if r := run(); r.Copied != 2 || r.Found != 3 {
		t.Fatalf("with a new state: copied %d, found %d; want 2, 3", r.Copied, r.Found)
	}
	n := 0
	for _, s := range w.take() {
		if strings.Contains(s, "2 messages without a Message-ID copied") {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d warnings about the messages without a Message-ID, want 1", n)
	}
}
