package sinks_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/mailhaul/mailhaul/internal/faultproxy"
	"github.com/mailhaul/mailhaul/internal/imapconn"
	"github.com/mailhaul/mailhaul/internal/testserver"
	"github.com/mailhaul/mailhaul/migrate"
	"github.com/mailhaul/mailhaul/sinks"
)

// TestIMAPLocateThroughResets: looking up 30 uncertain appends of 20 KB
// each (600 KB of bodies to compare) through a link that resets every
// connection after 100 KB from the server. No single attempt can read
// them all; each keeps the hashes it read and says it progressed, so the
// engine's retry (which does not count such attempts) gets through, and
// every copy is found. Before, the lookup gave up after five retries and
// the run stopped (CI, TestIMAPFaults/resets-destination).
func TestIMAPLocateThroughResets(t *testing.T) {
	dst := testserver.StartDovecot(t)
	var msgs []seedMsg
	for i := 0; i < 30; i++ {
		msgs = append(msgs, seedMsg{"INBOX", msg(fmt.Sprintf("big%d", i), fmt.Sprintf("big %d", i), strings.Repeat(fmt.Sprintf("line %d of a long body\r\n", i), 900)), nil, time.Date(2021, 3, 1+i%28, 0, 0, 0, 0, time.UTC)})
	}
	seed(t, client(t, dst, "alice"), msgs)

	p, err := faultproxy.Start(dst.IMAPSAddr, faultproxy.Config{ResetDown: func(int) int64 { return 100_000 }})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	e, err := imapconn.ParseURL("imaps://alice@" + p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	sink, err := sinks.OpenIMAP(ctx, &imapconn.Config{Endpoint: e, CAFile: dst.CAFile, Password: dst.Password("alice")}, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()

	var ins []migrate.Intent
	for _, m := range msgs {
		b, err := migrate.NewBody(strings.NewReader(m.body), 0, "")
		if err != nil {
			t.Fatal(err)
		}
		ins = append(ins, migrate.Intent{Folder: "INBOX", Dest: "INBOX", MessageID: b.MessageID(), Size: b.Size(), SHA256: b.SHA256()})
		b.Close()
	}
	failures := 0
	var res [][]string
	for {
		res, err = sink.Locate(ctx, "INBOX", ins)
		if err == nil {
			break
		}
		failures++
		if !migrate.HasProgressed(err) || migrate.Classify(err) != migrate.Retry {
			t.Fatalf("attempt %d failed without progress (class %v): %v", failures, migrate.Classify(err), err)
		}
		if failures > 15 {
			t.Fatalf("no answer after %d attempts: %v", failures, err)
		}
	}
	if failures < 3 {
		t.Errorf("only %d failed attempts: the link did not cut the lookup (resets %d)", failures, p.Stats().Resets)
	}
	for i, refs := range res {
		if len(refs) != 1 {
			t.Errorf("message %d: %d copies found, want 1: %v", i, len(refs), refs)
		}
	}
	t.Logf("found %d copies after %d cut attempts", len(res), failures)
}
