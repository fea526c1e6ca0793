package migrate_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailhaul/mailhaul/migrate"
)

// exactlyOnce checks that the sink holds every message of src exactly once.
func exactlyOnce(t *testing.T, src *fakeSource, sink *fakeSink) {
	t.Helper()
	for f, ms := range src.msgs {
		for _, m := range ms {
			if n := sink.copiesOf(f, src.bodies[m.ID]); n != 1 {
				t.Errorf("%s %s: %d copies, want 1", f, m.ID, n)
			}
		}
	}
}

func settledHow(r migrate.Report) map[string]string {
	out := map[string]string{}
	for _, s := range r.Settled {
		out[s.ID] += s.How + " "
	}
	return out
}

// TestUncertainAppendIsSettledNotResent: appends whose connection broke
// after the message reached the destination ("stored") or before
// ("lost"), or whose copy arrives some time after the break but before
// the settling delay ran out ("late"). None is sent again blindly: each
// ends up in the destination exactly once.
func TestUncertainAppendIsSettledNotResent(t *testing.T) {
	src := newFakeSource(map[string]int{"INBOX": 12})
	sink := newFakeSink()
	sink.uncertain["body zzz\r"] = []string{"stored"}
	sink.uncertain["body zzzz\r"] = []string{"lost"}
	sink.uncertain["body zzzzz\r"] = []string{"late:100ms"}
	sink.uncertain["body zzzzzz\r"] = []string{"lost", "stored"} // uncertain twice
	r, err := migrate.Run(context.Background(), migrate.Options{Source: src, Sink: sink, Checkpoint: openCP(t),
		Transfers: 2, SettleDelay: 400 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	sink.late.Wait()
	exactlyOnce(t, src, sink)
	how := settledHow(r)
	want := map[string]string{"INBOX-3": "found ", "INBOX-4": "resent ", "INBOX-5": "found ", "INBOX-6": "resent found "}
	for id, w := range want {
		if how[id] != w {
			t.Errorf("%s settled %q, want %q (all: %v)", id, how[id], w, how)
		}
	}
	if r.Copied != 12 {
		t.Errorf("copied %d, want 12", r.Copied)
	}
}

// TestLateCopyIsReconciled: the first attempt's copy arrives after the
// settling lookup found nothing and the message was sent again; at the end
// of the run the engine finds two copies and removes the one it made
// itself. Without a Remover-capable destination it reports the possible
// duplicate instead.
func TestLateCopyIsReconciled(t *testing.T) {
	for _, canRemove := range []bool{true, false} {
		t.Run(fmt.Sprint("remove=", canRemove), func(t *testing.T) {
			src := newFakeSource(map[string]int{"INBOX": 6})
			sink := newFakeSink()
			sink.noRemove = !canRemove
			sink.uncertain["body zz\r"] = []string{"late:500ms"}
			r, err := migrate.Run(context.Background(), migrate.Options{Source: src, Sink: sink, Checkpoint: openCP(t),
				Transfers: 2, SettleDelay: 300 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			sink.late.Wait()
			how := settledHow(r)
			if canRemove {
				exactlyOnce(t, src, sink)
				if how["INBOX-2"] != "resent duplicate-removed " {
					t.Errorf("settled %q", how["INBOX-2"])
				}
			} else {
				if n := sink.copiesOf("INBOX", src.bodies["INBOX-2"]); n != 2 {
					t.Errorf("%d copies; the test expects the late one and the re-sent one", n)
				}
				if how["INBOX-2"] != "resent possible-duplicate " || len(r.Warnings) == 0 {
					t.Errorf("settled %q, warnings %v", how["INBOX-2"], r.Warnings)
				}
			}
		})
	}
}

// TestUncertainTwinNotConfused: two byte-identical source messages; the
// first one's append is uncertain and was stored, the second is appended
// normally. Settling must take one copy for the first and leave the other
// to the second: two copies, none re-sent.
func TestUncertainTwinNotConfused(t *testing.T) {
	src := newFakeSource(map[string]int{"INBOX": 2})
	src.bodies["INBOX-1"] = src.bodies["INBOX-0"]
	src.msgs["INBOX"][1].Size = src.msgs["INBOX"][0].Size
	sink := newFakeSink()
	sink.uncertain["body \r"] = []string{"stored"}
	r, err := migrate.Run(context.Background(), migrate.Options{Source: src, Sink: sink, Checkpoint: openCP(t),
		Transfers: 1, SettleDelay: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if n := sink.copiesOf("INBOX", src.bodies["INBOX-0"]); n != 2 {
		t.Fatalf("%d copies of the twins, want 2", n)
	}
	if sink.appends != 2 {
		t.Errorf("%d appends, want 2 (nothing re-sent)", sink.appends)
	}
	if r.Copied != 2 {
		t.Errorf("copied %d", r.Copied)
	}
}

// TestRecoveryWaitsOnlyForWhatWasOnTheWire: intents a killed run left;
// only those its journal says were being sent are looked up again after
// the settling delay (the others are copied at once, without waiting).
func TestRecoveryWaitsOnlyForWhatWasOnTheWire(t *testing.T) {
	src := newFakeSource(map[string]int{"INBOX": 6})
	sink := newFakeSink()
	path := t.TempDir() + "/cp.db"
	in := func(i int) migrate.Intent {
		id := fmt.Sprintf("INBOX-%d", i)
		b := src.bodies[id]
		return migrate.Intent{Folder: "INBOX", ID: id, Dest: "INBOX", MessageID: "<" + id + "@x>", Size: int64(len(b)), SHA256: sha(b)}
	}
	run := func(wire bool) migrate.Report {
		cp := openCPAt(t, path)
		if err := cp.AddIntents([]migrate.Intent{in(0), in(1)}); err != nil {
			t.Fatal(err)
		}
		if wire {
			cp.Sending(0, in(1).Key())
		}
		cp.Close() // the "killed" run
		cp = openCPAt(t, path)
		defer cp.Close()
		r, err := migrate.Run(context.Background(), migrate.Options{Source: src, Sink: sink, Checkpoint: cp, SettleDelay: 200 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	r := run(false)
	if how := settledHow(r); len(how) != 0 {
		t.Errorf("nothing was on the wire, yet settled %v", how)
	}
	exactlyOnce(t, src, sink)

	// Again with INBOX-1 on the wire of the dead run: it is settled after
	// the delay (and then sent, since it is not there).
	sink2 := newFakeSink()
	sink = sink2
	path = t.TempDir() + "/cp.db"
	r = run(true)
	if how := settledHow(r); how["INBOX-1"] != "resent " || len(how) != 1 {
		t.Errorf("settled %v, want INBOX-1 resent", how)
	}
	exactlyOnce(t, src, sink2)
}

// TestEpochChangeRematchesWithoutMessageID: after a UIDVALIDITY change,
// messages that have no Message-ID (two of them byte-identical twins) are
// matched to their earlier copies by content, not copied again; a new one
// of the same size is copied.
func TestEpochChangeRematchesWithoutMessageID(t *testing.T) {
	src := newFakeSource(map[string]int{"INBOX": 5})
	src.boxes[0].Epoch = "1"
	for i := range src.msgs["INBOX"] {
		m := &src.msgs["INBOX"][i]
		body := fmt.Sprintf("Subject: no id\r\n\r\nsame size %d\r\n", i%4) // 0 and 4 are twins
		src.bodies[m.ID] = body
		m.Size = int64(len(body))
	}
	sink := newFakeSink()
	cp := openCP(t)
	if _, err := migrate.Run(context.Background(), migrate.Options{Source: src, Sink: sink, Checkpoint: cp}); err != nil {
		t.Fatal(err)
	}
	old := src.msgs["INBOX"]
	src.boxes[0].Epoch = "2"
	src.msgs["INBOX"] = nil
	for i, m := range old {
		m.ID = fmt.Sprintf("new-%d", i)
		src.bodies[m.ID] = src.bodies[old[i].ID]
		src.msgs["INBOX"] = append(src.msgs["INBOX"], m)
	}
	nb := "Subject: no id\r\n\r\nsame size 9\r\n"
	src.bodies["new-9"] = nb
	src.msgs["INBOX"] = append(src.msgs["INBOX"], migrate.Message{Mailbox: "INBOX", ID: "new-9", Size: int64(len(nb))})
	r, err := migrate.Run(context.Background(), migrate.Options{Source: src, Sink: sink, Checkpoint: cp})
	if err != nil {
		t.Fatal(err)
	}
	if r.Copied != 1 || r.Already != 5 || sink.count() != 6 {
		t.Fatalf("copied %d already %d sink %d; want 1, 5, 6", r.Copied, r.Already, sink.count())
	}
}

// throttledSource fails the first fetches of every message with a
// throttling error asking for a short wait.
type throttledSource struct {
	*fakeSource
	left map[string]int
}

func (s *throttledSource) Fetch(ctx context.Context, m migrate.Message, w io.Writer) error {
	s.mu.Lock()
	n := s.left[m.ID]
	if n > 0 {
		s.left[m.ID] = n - 1
	}
	s.mu.Unlock()
	if n > 0 {
		return migrate.Backoff(errors.New("NO Request is throttled. Suggested Backoff Time: 60 milliseconds"), 60*time.Millisecond)
	}
	return s.fakeSource.Fetch(ctx, m, w)
}

// TestThrottlingIsWaitedOut: a server that throttles more often than
// --retries allows still gets every message copied, each wait at least
// what the server suggested.
func TestThrottlingIsWaitedOut(t *testing.T) {
	src := &throttledSource{fakeSource: newFakeSource(map[string]int{"INBOX": 4}), left: map[string]int{}}
	for _, m := range src.msgs["INBOX"] {
		src.left[m.ID] = 6
	}
	sink := newFakeSink()
	var waits []string
	var mu sync.Mutex
	r, err := migrate.Run(context.Background(), migrate.Options{Source: src, Sink: sink, Checkpoint: openCP(t), Retries: 2, RetryBase: time.Millisecond,
		Reporter: migrate.ReporterFunc(func(ev migrate.Event) {
			if ev.Kind == migrate.Retrying {
				mu.Lock()
				waits = append(waits, ev.Err.Error())
				mu.Unlock()
			}
		})})
	if err != nil {
		t.Fatal(err)
	}
	exactlyOnce(t, src.fakeSource, sink)
	if r.Copied != 4 || len(waits) != 24 {
		t.Fatalf("copied %d after %d waits, want 4 after 24", r.Copied, len(waits))
	}
	for _, w := range waits {
		if !strings.HasPrefix(w, "in 60ms:") {
			t.Errorf("wait %q, want the server's 60ms", w)
		}
	}
}

// TestRecoveryTwinOnTheWireLandsLate reproduces what a kill -9 left in
// TestIMAPCrashResume: byte-identical twins A and B of one folder, A's
// append answered (its copy is there) and B's on the wire, its copy
// landing only after the next run has started. The next run must give the
// copy that is there to A (whose append will never produce another) and
// wait for B's: two copies in the end, not three. Assigning the visible
// copy to B (the first in order) would send A again beside B's late copy.
func TestRecoveryTwinOnTheWireLandsLate(t *testing.T) {
	src := newFakeSource(map[string]int{"INBOX": 3})
	body := src.bodies["INBOX-1"]
	src.bodies["INBOX-2"] = body // INBOX-1 and INBOX-2 are twins
	src.msgs["INBOX"][2].Size = int64(len(body))
	sink := newFakeSink()
	path := t.TempDir() + "/cp.db"
	in := func(id string) migrate.Intent {
		b := src.bodies[id]
		return migrate.Intent{Folder: "INBOX", ID: id, Dest: "INBOX", MessageID: "<INBOX-1@x>", Size: int64(len(b)), SHA256: sha(b), Mark: "0"}
	}
	for _, order := range [][2]string{{"INBOX-1", "INBOX-2"}, {"INBOX-2", "INBOX-1"}} {
		answered, onWire := order[0], order[1]
		sink = newFakeSink()
		path = t.TempDir() + "/cp.db"
		cp := openCPAt(t, path)
		if err := cp.AddIntents([]migrate.Intent{in("INBOX-1"), in("INBOX-2")}); err != nil {
			t.Fatal(err)
		}
		sink.mu.Lock()
		sink.store("INBOX", body) // the answered twin's copy
		sink.mu.Unlock()
		cp.Sending(3, in(onWire).Key())
		cp.Close() // the "killed" run
		// The twin on the wire lands while the next run waits for it
		// (its Waiting event): after that run first looked, whatever the
		// machine's load (a timer of 150 ms once fired before the run
		// looked, and both copies were there from the start).
		var landed sync.Once
		land := func() {
			landed.Do(func() {
				sink.mu.Lock()
				sink.store("INBOX", body)
				sink.mu.Unlock()
			})
		}
		cp = openCPAt(t, path)
		r, err := migrate.Run(context.Background(), migrate.Options{Source: src, Sink: sink, Checkpoint: cp, SettleDelay: 400 * time.Millisecond,
			Reporter: migrate.ReporterFunc(func(ev migrate.Event) {
				if ev.Kind == migrate.Waiting {
					time.AfterFunc(50*time.Millisecond, land)
				}
			})})
		cp.Close()
		if err != nil {
			t.Fatal(err)
		}
		land() // (no Waiting event: the assertions below say what went wrong)
		if n := sink.copiesOf("INBOX", body); n != 2 {
			t.Errorf("%s answered, %s on the wire: %d copies of the twins, want 2 (settled %v)", answered, onWire, n, settledHow(r))
		}
		if how := settledHow(r); how[onWire] != "found " {
			t.Errorf("%s answered, %s on the wire: settled %v, want %s found", answered, onWire, how, onWire)
		}
	}
}
