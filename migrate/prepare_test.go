package migrate_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailhaul/mailhaul/migrate"
)

// prepGatedSource lists folder first only once the sink has prepared folder
// next (or gives up after a while and fails the listing).
type prepGatedSource struct {
	*fakeSource
	first    string
	prepared <-chan struct{}
}

func (s *prepGatedSource) List(ctx context.Context, mb migrate.Mailbox, fn func(migrate.Message) error) error {
	if mb.Name == s.first {
		select {
		case <-s.prepared:
		case <-time.After(10 * time.Second):
			return errors.New("the next folder was not prepared while this one was listed")
		}
	}
	return s.fakeSource.List(ctx, mb, fn)
}

// signallingSink closes its channel when folder next is prepared, and
// fails Prepare of the folders in fail.
type signallingSink struct {
	*fakeSink
	next string
	once sync.Once
	ch   chan struct{}
	fail map[string]error
}

func (k *signallingSink) Prepare(ctx context.Context, mb migrate.Mailbox, name string) (string, error) {
	if err := k.fail[name]; err != nil {
		return "", err
	}
	dest, err := k.fakeSink.Prepare(ctx, mb, name)
	if name == k.next {
		k.once.Do(func() { close(k.ch) })
	}
	return dest, err
}

// TestPrepareOverlapsListing: the destination of the next folder is
// prepared while this folder is being listed (the source here will not
// list A until B is prepared), folders are still prepared in order, and
// everything is copied once. A folder whose Prepare is refused
// (SkipMessage) has its messages skipped and the run goes on to the next;
// a fatal Prepare error ends the run with it (the preparer, ahead of the
// lister, stops there), and a re-run copies the rest and nothing twice.
func TestPrepareOverlapsListing(t *testing.T) {
	fs := newFakeSource(map[string]int{"A": 5, "B": 3, "C": 4, "D": 2})
	ch := make(chan struct{})
	src := &prepGatedSource{fakeSource: fs, first: "A", prepared: ch}
	sink := &signallingSink{fakeSink: newFakeSink(), next: "B", ch: ch, fail: map[string]error{}}
	r, err := migrate.Run(context.Background(), migrate.Options{Source: src, Sink: sink, Checkpoint: openCP(t)})
	if err != nil {
		t.Fatal(err)
	}
	if r.Copied != 14 || sink.count() != 14 {
		t.Fatalf("copied %d, sink holds %d, want 14", r.Copied, sink.count())
	}
	if got := strings.Join(sink.prepared, " "); got != "A B C D" {
		t.Fatalf("prepared %s, want A B C D", got)
	}

	// Refused (skip) and fatal Prepare errors.
	sink = &signallingSink{fakeSink: newFakeSink(), ch: make(chan struct{}), fail: map[string]error{
		"B": migrate.SkipMessage(errors.New("NO [CANNOT] invalid name")),
		"D": errors.New("write /dst: no space left on device"),
	}}
	cp := openCP(t)
	r, err = migrate.Run(context.Background(), migrate.Options{Source: fs, Sink: sink, Checkpoint: cp})
	if err == nil || !strings.Contains(err.Error(), "no space left") || !strings.Contains(err.Error(), `"D"`) {
		t.Fatalf("want the fatal Prepare error of D, got %v", err)
	}
	if len(sink.folders["B"]) != 0 || len(sink.folders["D"]) != 0 {
		t.Fatalf("B holds %d and D %d after their Prepare failed", len(sink.folders["B"]), len(sink.folders["D"]))
	}
	skippedB := 0
	for _, s := range r.Skipped {
		if s.Folder == "B" {
			skippedB++
		}
	}
	if skippedB != 3 {
		t.Fatalf("skipped in B: %d, want 3 (%v)", skippedB, r.Skipped)
	}
	sink.fail = nil
	r, err = migrate.Run(context.Background(), migrate.Options{Source: fs, Sink: sink, Checkpoint: cp})
	if err != nil || sink.count() != 14 {
		t.Fatalf("re-run: copied %d, sink holds %d (want 14): %v", r.Copied, sink.count(), err)
	}
	for f, want := range map[string]int{"A": 5, "B": 3, "C": 4, "D": 2} {
		if got := len(sink.folders[f]); got != want {
			t.Errorf("%s holds %d, want %d", f, got, want)
		}
	}

}
