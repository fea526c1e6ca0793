package sinks_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/mailhaul/mailhaul/checkpoint"
	"github.com/mailhaul/mailhaul/internal/testserver"
	"github.com/mailhaul/mailhaul/migrate"
	"github.com/mailhaul/mailhaul/sinks"
	"github.com/mailhaul/mailhaul/sources"
)

func openPair(t *testing.T, src, dst *testserver.Dovecot) (*sources.IMAP, *sinks.IMAP) {
	t.Helper()
	ctx := context.Background()
	source, err := sources.OpenIMAP(ctx, cfgFor(t, src, "alice"), 2)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { source.Close() })
	sink, err := sinks.OpenIMAP(ctx, cfgFor(t, dst, "alice"), 2, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sink.Close() })
	return source, sink
}

func runWith(t *testing.T, o migrate.Options, cp string) migrate.Report {
	t.Helper()
	store, err := checkpoint.Open(cp, "src", "dst")
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	o.Checkpoint = store
	rep, err := migrate.Run(context.Background(), o)
	if err != nil || len(rep.Skipped) > 0 {
		t.Fatalf("run: %v, skipped %+v", err, rep.Skipped)
	}
	return rep
}

// TestIMAPUIDValidityChange rebuilds the source folder (new UIDVALIDITY,
// new UIDs, same messages plus a new one): the next run re-matches what
// was copied and copies only the new message.
func TestIMAPUIDValidityChange(t *testing.T) {
	src, dst := testserver.StartDovecot(t), testserver.StartDovecot(t)
	date := time.Date(2020, 2, 2, 12, 0, 0, 0, time.UTC)
	var msgs []seedMsg
	for _, id := range []string{"u1", "u2", "u3", "u4"} {
		msgs = append(msgs, seedMsg{"Work", msg(id, "subject "+id, ""), []imap.Flag{imap.FlagSeen}, date})
	}
	sc := client(t, src, "alice")
	seed(t, sc, msgs)
	cp := t.TempDir() + "/cp.db"
	source, sink := openPair(t, src, dst)
	if r := runWith(t, migrate.Options{Source: source, Sink: sink}, cp); r.Copied != 4 {
		t.Fatalf("first run copied %d", r.Copied)
	}
	if err := sc.Delete("Work").Wait(); err != nil {
		t.Fatal(err)
	}
	seed(t, sc, append(msgs, seedMsg{"Work", msg("u5", "new after rebuild", ""), nil, date}))
	source2, sink2 := openPair(t, src, dst)
	r := runWith(t, migrate.Options{Source: source2, Sink: sink2}, cp)
	if r.Copied != 1 || r.Already != 4 {
		t.Fatalf("after UIDVALIDITY change: copied %d already %d, want 1 and 4", r.Copied, r.Already)
	}
	if len(r.Warnings) == 0 || !strings.Contains(r.Warnings[0], "4 messages re-matched") {
		t.Errorf("warnings: %v", r.Warnings)
	}
	if n := len(dump(t, client(t, dst, "alice"))["Work"]); n != 5 {
		t.Errorf("destination Work holds %d, want 5", n)
	}
}

// TestIMAPDedupe merges into an account that already holds some of the
// messages (a lost state dir, or a second source).
func TestIMAPDedupe(t *testing.T) {
	src, dst := testserver.StartDovecot(t), testserver.StartDovecot(t)
	date := time.Date(2021, 3, 3, 9, 0, 0, 0, time.UTC)
	var msgs []seedMsg
	for _, id := range []string{"d1", "d2", "d3", "d4", "d5"} {
		msgs = append(msgs, seedMsg{"INBOX", msg(id, "dedupe "+id, ""), nil, date})
	}
	seed(t, client(t, src, "alice"), msgs)
	seed(t, client(t, dst, "alice"), msgs[:3])
	source, sink := openPair(t, src, dst)
	r := runWith(t, migrate.Options{Source: source, Sink: sink, Dedupe: true}, t.TempDir()+"/cp.db")
	if r.Copied != 2 || r.Found != 3 {
		t.Fatalf("copied %d duplicates %d, want 2 and 3", r.Copied, r.Found)
	}
	if n := len(dump(t, client(t, dst, "alice"))["INBOX"]); n != 5 {
		t.Errorf("destination INBOX holds %d, want 5", n)
	}
}

// TestIMAPNamespacePrefix writes into a Courier-style server ("." separator,
// everything under "INBOX.") and reads it back as "/" names.
func TestIMAPNamespacePrefix(t *testing.T) {
	src := testserver.StartDovecot(t)
	dst := testserver.StartDovecot(t, testserver.WithNamespace(".", "INBOX."))
	date := time.Date(2018, 8, 8, 8, 0, 0, 0, time.UTC)
	seed(t, client(t, src, "alice"), []seedMsg{
		{"INBOX", msg("n1", "inbox", ""), nil, date},
		{"Lists/go-dev", msg("n2", "nested", ""), nil, date},
		{"Büro", msg("n3", "non-ascii", ""), nil, date},
	})
	source, sink := openPair(t, src, dst)
	if r := runWith(t, migrate.Options{Source: source, Sink: sink}, t.TempDir()+"/cp.db"); r.Copied != 3 {
		t.Fatalf("copied %d", r.Copied)
	}
	got := dump(t, client(t, dst, "alice"))
	for _, f := range []string{"INBOX", "INBOX.Lists.go-dev", "INBOX.Büro"} {
		if len(got[f]) != 1 {
			t.Errorf("destination folder %q holds %d messages (folders: %v)", f, len(got[f]), keysOf(got))
		}
	}
	// Read back through the source: "/" names without the prefix.
	back, err := sources.OpenIMAP(context.Background(), cfgFor(t, dst, "alice"), 1)
	if err != nil {
		t.Fatal(err)
	}
	defer back.Close()
	mbs, err := back.Mailboxes(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, mb := range mbs {
		names[mb.Name] = true
	}
	for _, n := range []string{"INBOX", "Lists/go-dev", "Büro"} {
		if !names[n] {
			t.Errorf("source view lacks %q: %v", n, names)
		}
	}
}

func keysOf[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
