package sources_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/mailhaul/mailhaul/internal/testserver/fakeimap"
	"github.com/mailhaul/mailhaul/migrate"
	"github.com/mailhaul/mailhaul/sources"
)

// batchFixture is a fake server with folder "F" of n messages, counting
// its UID FETCH commands; cut, if set, says which UIDs' bodies the server
// breaks off in the middle of.
type batchFixture struct {
	srv    *fakeimap.Server
	src    *sources.IMAP
	bodies map[string][]byte // UID -> message
	mu     sync.Mutex
	cut    map[imap.UID]bool
	lines  []string // the UID FETCH commands, without their tags
}

func newBatchFixture(t *testing.T, n int, o fakeimap.Options) *batchFixture {
	f := &batchFixture{bodies: map[string][]byte{}, cut: map[imap.UID]bool{}}
	o.Hooks.Command = func(ev fakeimap.CommandEvent) fakeimap.Action {
		if ev.Name == "UID FETCH" && strings.Contains(ev.Line, "BODY.PEEK[]") {
			f.mu.Lock()
			_, line, _ := strings.Cut(ev.Line, " ")
			f.lines = append(f.lines, line)
			f.mu.Unlock()
		}
		return fakeimap.Action{}
	}
	o.Hooks.Fetch = func(ev fakeimap.FetchEvent) fakeimap.FetchAction {
		f.mu.Lock()
		defer f.mu.Unlock()
		return fakeimap.FetchAction{Cut: f.cut[ev.UID], After: ev.Size / 2}
	}
	f.srv = fakeimap.Start(t, o)
	f.srv.AddUser("u", "p")
	if err := f.srv.Create("u", "F"); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		body := []byte(fmt.Sprintf("Message-ID: <%d@x>\r\nSubject: %d\r\n\r\n%s\r\n", i, i, strings.Repeat("b", 100*i)))
		uid, err := f.srv.Append("u", "F", body, nil, time.Unix(1600000000, 0))
		if err != nil {
			t.Fatal(err)
		}
		f.bodies[fmt.Sprint(uid)] = body
	}
	f.src = openFake(t, f.srv)
	t.Cleanup(func() { f.src.Close() })
	return f
}

func (f *batchFixture) fetches() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.lines...)
}

// batch asks FetchBatch for the UIDs given and returns what came back.
func (f *batchFixture) batch(t *testing.T, uids ...string) ([]bool, []*bytes.Buffer) {
	t.Helper()
	var msgs []migrate.Message
	var ws []io.Writer
	var bufs []*bytes.Buffer
	for _, u := range uids {
		msgs = append(msgs, migrate.Message{Mailbox: "F", Loc: "F", ID: u})
		b := &bytes.Buffer{}
		bufs = append(bufs, b)
		ws = append(ws, b)
	}
	return f.src.FetchBatch(context.Background(), msgs, ws), bufs
}

// TestIMAPFetchBatch: one UID FETCH brings every message asked for, byte
// for byte, into its own writer; a UID the folder does not hold is left
// undelivered (for Fetch to classify), and so is a second copy of a UID.
func TestIMAPFetchBatch(t *testing.T) {
	f := newBatchFixture(t, 6, fakeimap.Options{})
	done, bufs := f.batch(t, "5", "1", "99", "3", "6", "1")
	want := []bool{true, true, false, true, true, false}
	for i, d := range done {
		if d != want[i] {
			t.Fatalf("done %v, want %v", done, want)
		}
	}
	for i, u := range []string{"5", "1", "", "3", "6"} {
		if u != "" && !bytes.Equal(bufs[i].Bytes(), f.bodies[u]) {
			t.Errorf("UID %s: got %q, want %q", u, bufs[i].Bytes(), f.bodies[u])
		}
	}
	if bufs[2].Len() != 0 || bufs[5].Len() != 0 {
		t.Errorf("undelivered messages were written to: %q %q", bufs[2], bufs[5])
	}
	if got := f.fetches(); len(got) != 1 {
		t.Fatalf("%d UID FETCH commands (%v), want 1", len(got), got)
	}
}

// TestIMAPFetchBatchUIDLast: a server that sends the UID after the body
// (go-imap hands such responses to no command) still has every message
// delivered, byte for byte, to its own writer, by one UID FETCH; one it
// does not hold is not delivered, and nothing is written to it.
func TestIMAPFetchBatchUIDLast(t *testing.T) {
	f := newBatchFixture(t, 4, fakeimap.Options{UIDLast: true})
	done, bufs := f.batch(t, "3", "1", "99", "2")
	if fmt.Sprint(done) != "[true true false true]" {
		t.Fatalf("done %v, want all but UID 99", done)
	}
	for i, u := range []string{"3", "1", "", "2"} {
		if u != "" && !bytes.Equal(bufs[i].Bytes(), f.bodies[u]) {
			t.Errorf("UID %s: got %q, want %q", u, bufs[i].Bytes(), f.bodies[u])
		}
	}
	if bufs[2].Len() != 0 {
		t.Errorf("UID 99 was written to: %q", bufs[2])
	}
	if got := f.fetches(); len(got) != 1 {
		t.Fatalf("%d UID FETCH commands (%v), want 1", len(got), got)
	}
}

// TestIMAPFetchUIDLast: single fetches from a server that sends the UID
// after the body, of a small message, of one kept in a temporary file
// while it waits for its UID (above 256 KiB), and of one fetched in
// ranges (above 8 MiB: "BODY[]<4194304>"), give the exact bytes, and
// leave no temporary file behind; the listing sees every message.
func TestIMAPFetchUIDLast(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	srv := fakeimap.Start(t, fakeimap.Options{UIDLast: true})
	srv.AddUser("u", "p")
	if err := srv.Create("u", "F"); err != nil {
		t.Fatal(err)
	}
	bodies := map[string][]byte{}
	for _, n := range []int{100, 300 << 10, 9<<20 + 17} {
		body := []byte(fmt.Sprintf("Message-ID: <%d@x>\r\nSubject: %d\r\n\r\n", n, n))
		for len(body) < n {
			body = append(body, fmt.Sprintf("line %d of a long message\r\n", len(body))...)
		}
		uid, err := srv.Append("u", "F", body, nil, time.Unix(1600000000, 0))
		if err != nil {
			t.Fatal(err)
		}
		bodies[fmt.Sprint(uid)] = body
	}
	src := openFake(t, srv)
	defer src.Close()
	mbs, err := src.Mailboxes(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var listed []migrate.Message
	for _, mb := range mbs {
		if mb.Name != "F" {
			continue
		}
		if err := src.List(context.Background(), mb, func(m migrate.Message) error { listed = append(listed, m); return nil }); err != nil {
			t.Fatal(err)
		}
	}
	if len(listed) != len(bodies) {
		t.Fatalf("listed %d messages, want %d", len(listed), len(bodies))
	}
	for _, m := range listed {
		want := bodies[m.ID]
		if m.Size != int64(len(want)) || m.MessageID == "" {
			t.Errorf("UID %s listed with size %d (want %d), Message-ID %q", m.ID, m.Size, len(want), m.MessageID)
		}
		var b bytes.Buffer
		if err := src.Fetch(context.Background(), m, &b); err != nil {
			t.Fatalf("UID %s: %v", m.ID, err)
		}
		if !bytes.Equal(b.Bytes(), want) {
			t.Errorf("UID %s: got %d bytes, want %d, not the same", m.ID, b.Len(), len(want))
		}
	}
	if left, _ := os.ReadDir(tmp); len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

// TestIMAPListUIDLast: folders of 300 and 700 messages (one listing
// command, and two: 500 and 200) from a server that sends the UID after
// the Message-ID header list every message once, with its Message-ID.
func TestIMAPListUIDLast(t *testing.T) {
	srv := fakeimap.Start(t, fakeimap.Options{UIDLast: true})
	srv.AddUser("u", "p")
	for _, n := range []int{300, 700} {
		f := fmt.Sprint("F", n)
		if err := srv.Create("u", f); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < n; i++ {
			if _, err := srv.Append("u", f, []byte(fmt.Sprintf("Message-ID: <%d.%d@x>\r\n\r\nbody\r\n", n, i)), nil, time.Unix(1600000000, 0)); err != nil {
				t.Fatal(err)
			}
		}
	}
	src := openFake(t, srv)
	defer src.Close()
	mbs, err := src.Mailboxes(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, mb := range mbs {
		var want int
		if _, err := fmt.Sscanf(mb.Name, "F%d", &want); err != nil {
			continue
		}
		seen := map[string]bool{}
		err := src.List(context.Background(), mb, func(m migrate.Message) error {
			if seen[m.ID] || m.MessageID == "" {
				t.Errorf("%s: UID %s listed twice or without its Message-ID (%q)", mb.Name, m.ID, m.MessageID)
			}
			seen[m.ID] = true
			return nil
		})
		if err != nil || len(seen) != want {
			t.Errorf("%s: listed %d messages (%v), want %d", mb.Name, len(seen), err, want)
		}
	}
}

// TestIMAPFetchBatchCut: a connection that goes down inside a message's
// body delivers the messages before it; the one it broke in is a suspect,
// left out of the next batch and fetched alone.
func TestIMAPFetchBatchCut(t *testing.T) {
	f := newBatchFixture(t, 5, fakeimap.Options{})
	f.cut[3] = true
	done, bufs := f.batch(t, "1", "2", "3", "4", "5")
	if fmt.Sprint(done) != "[true true false false false]" {
		t.Fatalf("done %v, want the two before the cut", done)
	}
	for i, u := range []string{"1", "2"} {
		if !bytes.Equal(bufs[i].Bytes(), f.bodies[u]) {
			t.Errorf("UID %s: wrong bytes", u)
		}
	}
	done, _ = f.batch(t, "3", "4", "5")
	if fmt.Sprint(done) != "[false true true]" {
		t.Fatalf("second batch: done %v, want all but the suspect", done)
	}
	got := f.fetches()
	if len(got) != 2 || strings.Contains(got[1], "3") {
		t.Fatalf("UID FETCH commands %v: want the second without UID 3", got)
	}
	f.mu.Lock()
	f.cut[3] = false
	f.mu.Unlock()
	var b bytes.Buffer
	if err := f.src.Fetch(context.Background(), migrate.Message{Mailbox: "F", Loc: "F", ID: "3", Size: int64(len(f.bodies["3"]))}, &b); err != nil || !bytes.Equal(b.Bytes(), f.bodies["3"]) {
		t.Fatalf("Fetch of the suspect: %v", err)
	}
}

// panicWriter panics on its first write, as a bug in a spool would.
type panicWriter struct{}

func (panicWriter) Write([]byte) (int, error) { panic("spool bug") }

// TestIMAPFetchBatchPanicReleases: a panic while a batch holds the
// folder's connection goes on up, and gives the connection's place back:
// with one connection allowed, the next fetch gets one instead of
// waiting for good.
func TestIMAPFetchBatchPanicReleases(t *testing.T) {
	f := newBatchFixture(t, 3, fakeimap.Options{})
	func() {
		defer func() {
			if recover() == nil {
				t.Fatal("FetchBatch did not pass the panic on")
			}
		}()
		msgs := []migrate.Message{{Mailbox: "F", Loc: "F", ID: "1"}, {Mailbox: "F", Loc: "F", ID: "2"}}
		f.src.FetchBatch(context.Background(), msgs, []io.Writer{panicWriter{}, &bytes.Buffer{}})
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var b bytes.Buffer
	if err := f.src.Fetch(ctx, migrate.Message{Mailbox: "F", Loc: "F", ID: "3", Size: int64(len(f.bodies["3"]))}, &b); err != nil || !bytes.Equal(b.Bytes(), f.bodies["3"]) {
		t.Fatalf("Fetch after the panic: %v", err)
	}
}

// failWriter fails every write, as a spool on a full disk does.
type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("no space left on device") }

// TestIMAPFetchWriterFails: a writer that fails in the middle of a body
// (our disk is full) ends the fetch with an error, whether alone or in a
// batch, instead of hanging on the abandoned connection, and the next
// fetch gets a connection.
func TestIMAPFetchWriterFails(t *testing.T) {
	f := newBatchFixture(t, 3, fakeimap.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	msgs := []migrate.Message{{Mailbox: "F", Loc: "F", ID: "1"}, {Mailbox: "F", Loc: "F", ID: "2"}}
	if done := f.src.FetchBatch(ctx, msgs, []io.Writer{failWriter{}, &bytes.Buffer{}}); done[0] || done[1] {
		t.Fatalf("done %v after the writer failed", done)
	}
	if err := f.src.Fetch(ctx, migrate.Message{Mailbox: "F", Loc: "F", ID: "2", Size: int64(len(f.bodies["2"]))}, failWriter{}); err == nil {
		t.Fatal("Fetch into a failing writer: no error")
	}
	var b bytes.Buffer
	if err := f.src.Fetch(ctx, migrate.Message{Mailbox: "F", Loc: "F", ID: "3", Size: int64(len(f.bodies["3"]))}, &b); err != nil || !bytes.Equal(b.Bytes(), f.bodies["3"]) {
		t.Fatalf("Fetch after: %v", err)
	}
}
