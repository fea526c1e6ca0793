package main

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"github.com/mailhaul/mailhaul/migrate"
)

// TestRendererCountsFound: a queued message found already in the
// destination leaves what is to copy, and the progress line counts it.
func TestRendererCountsFound(t *testing.T) {
	var logged bytes.Buffer
	r := &renderer{g: &globalFlags{log: slog.New(slog.NewTextHandler(&logged, nil))}}
	r.start()
	for _, id := range []string{"1", "2", "3"} {
		r.Event(migrate.Event{Kind: migrate.Queued, Folder: "INBOX", ID: id, Bytes: 100})
	}
	r.Event(migrate.Event{Kind: migrate.Duplicate, Folder: "INBOX", ID: "1", Bytes: 100})
	r.Event(migrate.Event{Kind: migrate.Duplicate, Folder: "INBOX", ID: "2", Bytes: 100})
	r.logProgress()
	r.finish()
	if r.queued != 1 || r.queuedB != 100 || r.found != 2 {
		t.Errorf("queued %d (%d B), found %d; want 1 (100 B), 2", r.queued, r.queuedB, r.found)
	}
	if !strings.Contains(logged.String(), "found=2") {
		t.Errorf("progress line: %s", logged.String())
	}
}

// TestCheckFailedSaysErrorOnce: the summary of a check that stopped on an
// error does not repeat the error, which main prints on standard error.
func TestCheckFailedSaysErrorOnce(t *testing.T) {
	var out bytes.Buffer
	printCheck(&out, migrate.CheckReport{Error: "IMAP destination x: connection reset"}, "src", "dst", "", 10, exitFatal, false)
	if s := out.String(); !strings.Contains(s, "FAILED") || strings.Contains(s, "connection reset") {
		t.Errorf("summary:\n%s", s)
	}
}
