package sources_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailhaul/mailhaul/checkpoint"
	"github.com/mailhaul/mailhaul/internal/maildir"
	"github.com/mailhaul/mailhaul/internal/pop3conn"
	"github.com/mailhaul/mailhaul/internal/testserver"
	"github.com/mailhaul/mailhaul/migrate"
	"github.com/mailhaul/mailhaul/sinks"
	"github.com/mailhaul/mailhaul/sources"
)

func pop3Msgs(n int) []testserver.FakeMessage {
	var out []testserver.FakeMessage
	for i := 0; i < n; i++ {
		out = append(out, testserver.FakeMessage{UIDL: fmt.Sprintf("U%04d", i), Body: []byte(fmt.Sprintf(
			"Received: from x by y; Tue, 2 Jan 2024 10:%02d:00 +0000\r\nMessage-ID: <%d@pop3.test>\r\nSubject: %d\r\n\r\n.line %d\r\n%s\r\n",
			i%60, i, i, i, strings.Repeat("p", i*53)))})
	}
	return out
}

func pop3Config(t *testing.T, addr string) *pop3conn.Config {
	host, port, _ := net.SplitHostPort(addr)
	return &pop3conn.Config{Endpoint: pop3conn.Endpoint{Host: host, Port: port, User: "alice"}, InsecurePlaintext: true, Password: "secret"}
}

// events collects what the engine and the source report.
type events struct {
	mu   sync.Mutex
	all  []migrate.Event
	warn []string
}

func (e *events) Event(ev migrate.Event) {
	e.mu.Lock()
	e.all = append(e.all, ev)
	e.mu.Unlock()
}

func (e *events) warnf(err error) {
	e.mu.Lock()
	e.warn = append(e.warn, err.Error())
	e.mu.Unlock()
}

func (e *events) count(k migrate.EventKind) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for _, ev := range e.all {
		if ev.Kind == k {
			n++
		}
	}
	return n
}

// copyToMaildir runs the engine from src into the Maildir dst with the
// checkpoint in state.
func copyToMaildir(t *testing.T, src migrate.Source, dst, state string, ev *events, mod func(*migrate.Options)) (migrate.Report, error) {
	t.Helper()
	sink, err := sinks.OpenMaildir(dst, maildir.PlusPlus)
	if err != nil {
		t.Fatal(err)
	}
	cp, err := checkpoint.Open(filepath.Join(state, "cp.db"), "src", "dst")
	if err != nil {
		t.Fatal(err)
	}
	defer cp.Close()
	o := migrate.Options{Source: src, Sink: sink, Checkpoint: cp, Reporter: ev, RetryBase: 50 * time.Millisecond}
	if mod != nil {
		mod(&o)
	}
	return migrate.Run(context.Background(), o)
}

// inboxBodies returns the message files of the Maildir's INBOX, sorted.
func inboxBodies(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	for _, sub := range []string{"cur", "new"} {
		ents, _ := os.ReadDir(filepath.Join(root, sub))
		for _, e := range ents {
			b, err := os.ReadFile(filepath.Join(root, sub, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, string(b))
		}
	}
	sort.Strings(out)
	return out
}

func wantBodies(msgs []testserver.FakeMessage) []string {
	var out []string
	for _, m := range msgs {
		out = append(out, string(m.Body))
	}
	sort.Strings(out)
	return out
}

func sameBodies(t *testing.T, got, want []string) {
	t.Helper()
	if strings.Join(got, "\x00") != strings.Join(want, "\x00") {
		t.Fatalf("destination holds %d messages, want %d (or they differ)", len(got), len(want))
	}
}

// TestPOP3NoUIDL: without UIDL, ids are header fingerprints, stable from
// one session to the next, with identical twins told apart; a warning
// says resume is weaker; the copy is complete.
func TestPOP3NoUIDL(t *testing.T) {
	msgs := pop3Msgs(6)
	msgs = append(msgs, testserver.FakeMessage{UIDL: "twin", Body: msgs[2].Body})
	f := testserver.StartFakePOP3(t, testserver.FakePOP3Options{NoUIDL: true}, msgs)
	ev := &events{}
	ctx := context.Background()
	ids := func() []string {
		s, err := sources.OpenPOP3(ctx, pop3Config(t, f.Addr), sources.POP3Options{Warn: ev.warnf})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		var out []string
		s.List(ctx, migrate.Mailbox{Name: "INBOX"}, func(m migrate.Message) error {
			out = append(out, m.ID)
			return nil
		})
		if _, _, ok := s.POP3UIDL("INBOX", out[0]); ok {
			t.Error("POP3UIDL claims a UIDL for a fingerprint")
		}
		return out
	}
	a, b := ids(), ids()
	if strings.Join(a, " ") != strings.Join(b, " ") || len(a) != 7 || !strings.HasPrefix(a[0], "fp:") || a[6] != a[2]+"~2" {
		t.Fatalf("fingerprints %v then %v", a, b)
	}
	if len(ev.warn) == 0 || !strings.Contains(ev.warn[0], "resume is weaker") {
		t.Fatalf("warnings: %q", ev.warn)
	}
	s, err := sources.OpenPOP3(ctx, pop3Config(t, f.Addr), sources.POP3Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	dst := t.TempDir()
	if _, err := copyToMaildir(t, s, dst, t.TempDir(), ev, nil); err != nil {
		t.Fatal(err)
	}
	sameBodies(t, inboxBodies(t, dst), wantBodies(msgs))
	if f.Stats().Tops < 7 {
		t.Errorf("fingerprints without TOP? %+v", f.Stats())
	}
}

// TestPOP3InUse: a locked maildrop is waited for with backoff; one that
// stays locked stops the run with a clear error.
func TestPOP3InUse(t *testing.T) {
	f := testserver.StartFakePOP3(t, testserver.FakePOP3Options{}, pop3Msgs(2))
	f.InUse(2)
	ev := &events{}
	s, err := sources.OpenPOP3(context.Background(), pop3Config(t, f.Addr), sources.POP3Options{Warn: ev.warnf, InUseWait: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if f.Stats().InUseRefused != 2 || len(ev.warn) != 2 || !strings.Contains(ev.warn[0], "[IN-USE]") {
		t.Fatalf("stats %+v, warnings %q", f.Stats(), ev.warn)
	}
	f.InUse(1000)
	_, err = sources.OpenPOP3(context.Background(), pop3Config(t, f.Addr), sources.POP3Options{InUseWait: 1500 * time.Millisecond})
	if err == nil || migrate.Classify(err) != migrate.Fatal || !strings.Contains(err.Error(), "stayed locked") || !strings.Contains(err.Error(), "alice") {
		t.Fatalf("locked for good: %v", err)
	}
}

// TestPOP3DropMidRetr: a connection cut in the middle of a RETR is
// retried on a new session (which maps the UIDLs to its numbers again) and
// the run copies every message exactly once.
func TestPOP3DropMidRetr(t *testing.T) {
	msgs := pop3Msgs(30)
	f := testserver.StartFakePOP3(t, testserver.FakePOP3Options{}, msgs)
	f.DropDuringRetr("U0007", 1)
	f.DropDuringRetr("U0021", 2)
	s, err := sources.OpenPOP3(context.Background(), pop3Config(t, f.Addr), sources.POP3Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if l := s.Limits(); l.Connections != 1 || l.Pipeline != sources.POP3Depth {
		t.Errorf("limits %+v", l)
	}
	ev := &events{}
	dst := t.TempDir()
	r, err := copyToMaildir(t, s, dst, t.TempDir(), ev, nil)
	if err != nil || r.Copied != 30 {
		t.Fatalf("copied %d: %v", r.Copied, err)
	}
	sameBodies(t, inboxBodies(t, dst), wantBodies(msgs))
	if st := f.Stats(); st.Logins < 3 || ev.count(migrate.Retrying) < 3 {
		t.Errorf("expected reconnects: %+v, %d retries", st, ev.count(migrate.Retrying))
	}
}

// TestPOP3Stalled: a RETR that stops flowing is abandoned after the idle
// timeout and retried; the run completes.
func TestPOP3Stalled(t *testing.T) {
	msgs := pop3Msgs(5)
	f := testserver.StartFakePOP3(t, testserver.FakePOP3Options{}, msgs)
	f.StallDuringRetr("U0003", 1)
	cfg := pop3Config(t, f.Addr)
	cfg.IdleTimeout = 300 * time.Millisecond
	s, err := sources.OpenPOP3(context.Background(), cfg, sources.POP3Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ev := &events{}
	dst := t.TempDir()
	done := make(chan error, 1)
	go func() {
		_, err := copyToMaildir(t, s, dst, t.TempDir(), ev, nil)
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(2 * time.Minute):
		t.Fatal("run waited on a stalled server")
	}
	sameBodies(t, inboxBodies(t, dst), wantBodies(msgs))
	found := false
	for _, e := range ev.all {
		if e.Kind == migrate.Retrying && strings.Contains(e.Err.Error(), "did not answer for 300ms") {
			found = true
		}
	}
	if !found {
		t.Error("no retry reported for the stalled RETR")
	}
}

// TestPOP3NoPipelining: without PIPELINING one RETR at a time, and the
// copy is complete.
func TestPOP3NoPipelining(t *testing.T) {
	msgs := pop3Msgs(20)
	f := testserver.StartFakePOP3(t, testserver.FakePOP3Options{NoPipelining: true}, msgs)
	s, err := sources.OpenPOP3(context.Background(), pop3Config(t, f.Addr), sources.POP3Options{MarkSeen: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if l := s.Limits(); l.Pipeline != 1 {
		t.Fatalf("limits %+v without PIPELINING", l)
	}
	dst := t.TempDir()
	if _, err := copyToMaildir(t, s, dst, t.TempDir(), &events{}, nil); err != nil {
		t.Fatal(err)
	}
	sameBodies(t, inboxBodies(t, dst), wantBodies(msgs))
	ents, _ := os.ReadDir(filepath.Join(dst, "cur"))
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ":2,S") {
			t.Errorf("--mark-seen: %s", e.Name())
		}
	}
	if st := f.Stats(); st.PipelineFault > 0 {
		t.Errorf("pipelined without PIPELINING: %+v", st)
	}
}

// TestPOP3Delete: Delete removes exactly the given messages, only older
// ones with DeleteOlderThan (undated ones stay, with a warning), and
// nothing when the session fails before QUIT.
func TestPOP3Delete(t *testing.T) {
	msgs := pop3Msgs(6)
	msgs = append(msgs, testserver.FakeMessage{UIDL: "undated", Body: []byte("Subject: no date\r\n\r\nx\r\n")})
	ctx := context.Background()

	t.Run("ids", func(t *testing.T) {
		f := testserver.StartFakePOP3(t, testserver.FakePOP3Options{}, msgs)
		var steps []string
		s, err := sources.OpenPOP3(ctx, pop3Config(t, f.Addr), sources.POP3Options{StepHook: func(st string) { steps = append(steps, st) }})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if err := s.Delete(ctx, "INBOX", []string{"U0001", "U0004", "not-there"}); err != nil {
			t.Fatal(err)
		}
		if got := strings.Join(f.UIDLs(), " "); got != "U0000 U0002 U0003 U0005 undated" {
			t.Fatalf("left on the server: %s", got)
		}
		if strings.Join(steps, " ") != "dele dele quit deleted" {
			t.Errorf("steps %v", steps)
		}
	})
	t.Run("older-than", func(t *testing.T) {
		f := testserver.StartFakePOP3(t, testserver.FakePOP3Options{}, msgs)
		ev := &events{}
		// Messages are dated 2024-01-02 10:MM: keep those from 10:03 on.
		now := time.Date(2024, 1, 2, 10, 3, 0, 0, time.UTC).Add(24 * time.Hour)
		s, err := sources.OpenPOP3(ctx, pop3Config(t, f.Addr), sources.POP3Options{Warn: ev.warnf, DeleteOlderThan: 24 * time.Hour, Now: func() time.Time { return now }})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		var all []string
		for _, m := range msgs {
			all = append(all, m.UIDL)
		}
		if err := s.Delete(ctx, "INBOX", all); err != nil {
			t.Fatal(err)
		}
		if got := strings.Join(f.UIDLs(), " "); got != "U0003 U0004 U0005 undated" {
			t.Fatalf("left on the server: %s", got)
		}
		if len(ev.warn) != 1 || !strings.Contains(ev.warn[0], "no date") {
			t.Errorf("warnings %q", ev.warn)
		}
	})
	t.Run("interrupted", func(t *testing.T) {
		f := testserver.StartFakePOP3(t, testserver.FakePOP3Options{}, msgs)
		cctx, cancel := context.WithCancel(ctx)
		n := 0
		s, err := sources.OpenPOP3(ctx, pop3Config(t, f.Addr), sources.POP3Options{StepHook: func(st string) {
			if st == "dele" {
				if n++; n == 3 {
					cancel()
				}
			}
		}})
		if err != nil {
			t.Fatal(err)
		}
		err = s.Delete(cctx, "INBOX", []string{"U0000", "U0001", "U0002", "U0003", "U0004"})
		if err == nil || !strings.Contains(err.Error(), "nothing was deleted") {
			t.Fatalf("interrupted delete: %v", err)
		}
		s.Close()
		if got := len(f.UIDLs()); got != len(msgs) {
			t.Fatalf("an interrupted session deleted %d messages", len(msgs)-got)
		}
		if !errors.Is(err, context.Canceled) {
			t.Logf("error: %v", err)
		}
	})
}

// TestPOP3Since: POP3 lists no dates, so --since/--before apply once the
// header was fetched: older messages are filtered, not copied.
func TestPOP3Since(t *testing.T) {
	msgs := pop3Msgs(6) // dated 2024-01-02 10:00 ... 10:05 by their Received: line
	f := testserver.StartFakePOP3(t, testserver.FakePOP3Options{}, msgs)
	s, err := sources.OpenPOP3(context.Background(), pop3Config(t, f.Addr), sources.POP3Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	dst := t.TempDir()
	r, err := copyToMaildir(t, s, dst, t.TempDir(), &events{}, func(o *migrate.Options) {
		o.Since = time.Date(2024, 1, 2, 10, 3, 0, 0, time.UTC)
	})
	if err != nil || r.Copied != 3 || r.Filtered != 3 {
		t.Fatalf("copied %d, filtered %d: %v", r.Copied, r.Filtered, err)
	}
	sameBodies(t, inboxBodies(t, dst), wantBodies(msgs[3:]))
}
