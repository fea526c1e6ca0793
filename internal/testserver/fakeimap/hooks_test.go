package fakeimap

import (
	"bytes"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
)

// TestCommandThrottledThenOK: the first APPEND of each kind is refused
// with NO [THROTTLED], the retry succeeds; refused literals (sent anyway
// under LITERAL+/LITERAL-) do not desynchronise the connection.
func TestCommandThrottledThenOK(t *testing.T) {
	var (
		mu    sync.Mutex
		seen  []CommandEvent
		count int
	)
	s := start(t, Options{Hooks: Hooks{Command: func(ev CommandEvent) Action {
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, ev)
		if ev.Name == "APPEND" {
			count++
			if count%2 == 1 {
				return Refuse("THROTTLED", "Request is throttled. Suggested Backoff Time: 10 milliseconds")
			}
		}
		return Action{}
	}}})
	c := dial(t, s)
	small := msg("small@x", "s")                                         // imapclient: {N+} (LITERAL-)
	big := bytes.Repeat([]byte("Subject: big\r\n\r\nxxxxxxxx\r\n"), 400) // > 4 KiB: synchronising
	for _, body := range [][]byte{small, big} {
		_, err := appendMsg(c, "INBOX", body, nil)
		var e *imap.Error
		if !errors.As(err, &e) || e.Code != "THROTTLED" {
			t.Fatalf("first APPEND: %v, want NO [THROTTLED]", err)
		}
		if len(body) > 4096 {
			// imapclient (beta.8) closes its connection when a
			// synchronising literal is refused before the "+".
			<-c.Closed()
			c = dial(t, s)
		}
		if _, err := appendMsg(c, "INBOX", body, nil); err != nil {
			t.Fatalf("retry: %v", err)
		}
	}
	// By hand: a refused LITERAL+ APPEND with a command pipelined behind it.
	r := dialRaw(t, s)
	r.login()
	r.appendPlus("A1", "INBOX", big)
	r.send("A2 NOOP\r\n")
	r.expect("A1", "NO [THROTTLED]")
	r.expect("A2", "OK")
	r.appendPlus("A3", "INBOX", big)
	r.expect("A3", "OK")

	m := s.Messages("u", "INBOX")
	if len(m) != 3 || !bytes.Equal(m[0].Body, small) || !bytes.Equal(m[1].Body, big) || !bytes.Equal(m[2].Body, big) {
		t.Fatalf("stored %d messages", len(m))
	}
	if n := s.Stats().Commands["APPEND"]; n != 6 {
		t.Errorf("Stats APPEND = %d, want 6", n)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, ev := range seen {
		if ev.Name == "APPEND" && (ev.User != "u" || ev.Conn == 0 || ev.Tag == "") {
			t.Errorf("event %+v", ev)
		}
	}
}

func TestCommandBye(t *testing.T) {
	s := start(t, Options{Hooks: Hooks{Command: func(ev CommandEvent) Action {
		if ev.Name == "SELECT" {
			return Action{Bye: "Too many connections"}
		}
		return Action{}
	}}})
	r := dialRaw(t, s)
	r.login()
	r.send("S1 SELECT INBOX\r\n")
	if l, _ := r.line(); l != "* BYE Too many connections\r\n" {
		t.Fatalf("got %q", l)
	}
	if l, err := r.line(); err != io.EOF {
		t.Fatalf("after BYE: %q %v, want EOF", l, err)
	}
	c := dial(t, s)
	if _, err := c.Select("INBOX", nil).Wait(); err == nil {
		t.Fatal("SELECT succeeded")
	}
}

func TestCommandClose(t *testing.T) {
	s := start(t, Options{Hooks: Hooks{Command: func(ev CommandEvent) Action {
		return Action{Close: ev.Name == "UID FETCH"}
	}}})
	r := dialRaw(t, s)
	r.login()
	r.send("S SELECT INBOX\r\n")
	r.expect("S", "OK")
	r.send("F UID FETCH 1:* UID\r\n")
	if l, err := r.line(); err != io.EOF || l != "" {
		t.Fatalf("got %q %v, want silent EOF", l, err)
	}
}

// TestCommandStall: a stalled connection answers nothing and stays open.
func TestCommandStall(t *testing.T) {
	s := start(t, Options{Hooks: Hooks{Command: func(ev CommandEvent) Action {
		return Action{Stall: ev.Name == "NOOP"}
	}}})
	r := dialRaw(t, s)
	r.login()
	r.send("N NOOP\r\n")
	r.c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	var buf [1]byte
	_, err := r.r.Read(buf[:])
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("read from a stalled connection: %v, want a timeout", err)
	}
	// Still open on the server side, and other connections are served.
	if st := s.Stats(); st.Open != 1 {
		t.Errorf("Stats %+v: want the stalled connection open", st)
	}
	c := dial(t, s)
	if _, err := c.Status("INBOX", &imap.StatusOptions{NumMessages: true}).Wait(); err != nil {
		t.Errorf("another connection: %v", err)
	}
}

func TestCommandDelay(t *testing.T) {
	s := start(t, Options{Hooks: Hooks{Command: func(ev CommandEvent) Action {
		if ev.Name == "STATUS" {
			return Action{Delay: 200 * time.Millisecond}
		}
		return Action{}
	}}})
	c := dial(t, s)
	begin := time.Now()
	if _, err := c.Status("INBOX", &imap.StatusOptions{NumMessages: true}).Wait(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(begin); d < 200*time.Millisecond {
		t.Errorf("STATUS answered after %v, want >= 200ms", d)
	}
}

// TestAppendStoreAfterDisconnect: the server holds an APPEND, the client
// dies, and the message is stored only after the disconnect plus Delay.
func TestAppendStoreAfterDisconnect(t *testing.T) {
	const delay = 400 * time.Millisecond
	received := make(chan AppendEvent, 1)
	type result struct {
		uid imap.UID
		err error
		at  time.Time
	}
	stored := make(chan result, 1)
	s := start(t, Options{Hooks: Hooks{Append: func(ev AppendEvent) AppendAction {
		received <- ev
		return AppendAction{StoreAfterDisconnect: true, Delay: delay, Stored: func(uid imap.UID, err error) {
			stored <- result{uid, err, time.Now()}
		}}
	}}})
	c := dial(t, s)
	body := msg("late@x", "late")
	appended := make(chan error, 1)
	go func() {
		_, err := appendMsg(c, "INBOX", body, &imap.AppendOptions{Flags: []imap.Flag{imap.FlagSeen}})
		appended <- err
	}()
	var ev AppendEvent
	select {
	case ev = <-received: // the literal is in
	case <-time.After(10 * time.Second):
		t.Fatal("APPEND never reached the hook")
	}
	if !bytes.Equal(ev.Body, body) || ev.Mailbox != "INBOX" || ev.User != "u" {
		t.Fatalf("event %+v", ev)
	}
	time.Sleep(100 * time.Millisecond)
	if n := len(s.Messages("u", "INBOX")); n != 0 {
		t.Fatalf("stored while the client is alive: %d", n)
	}
	select {
	case err := <-appended:
		t.Fatalf("APPEND answered while held: %v", err)
	default:
	}
	gone := time.Now()
	c.Close() // the client dies
	if n := len(s.Messages("u", "INBOX")); n != 0 {
		t.Fatalf("stored at once after the disconnect: %d", n)
	}
	var res result
	select {
	case res = <-stored:
	case <-time.After(10 * time.Second):
		t.Fatal("held APPEND never stored")
	}
	if res.err != nil || res.uid != 1 {
		t.Fatalf("stored uid %d err %v", res.uid, res.err)
	}
	if d := res.at.Sub(gone); d < delay {
		t.Errorf("stored %v after the disconnect, want >= %v", d, delay)
	}
	if m := s.Messages("u", "INBOX"); len(m) != 1 || !bytes.Equal(m[0].Body, body) || !hasFlag(m[0].Flags, imap.FlagSeen) {
		t.Fatalf("stored %+v", m)
	}
	if err := <-appended; err == nil {
		t.Error("the dead client's APPEND reported success")
	}
}

func TestAppendActions(t *testing.T) {
	var action atomic.Value
	s := start(t, Options{Hooks: Hooks{Append: func(ev AppendEvent) AppendAction {
		return action.Load().(AppendAction)
	}}})

	// Delay: the reply comes after the store, Delay later.
	action.Store(AppendAction{Delay: 200 * time.Millisecond})
	c := dial(t, s)
	begin := time.Now()
	if _, err := appendMsg(c, "INBOX", msg("1@x", "1"), nil); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(begin); d < 200*time.Millisecond {
		t.Errorf("delayed APPEND answered after %v", d)
	}

	// Refuse.
	action.Store(AppendAction{Refuse: &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeOverQuota, Text: "Quota exceeded"}})
	_, err := appendMsg(c, "INBOX", msg("2@x", "2"), nil)
	if e, ok := err.(*imap.Error); !ok || e.Code != imap.ResponseCodeOverQuota {
		t.Errorf("refused APPEND: %v", err)
	}

	// DropAfterStore: stored, no reply, connection gone.
	action.Store(AppendAction{DropAfterStore: true})
	if _, err := appendMsg(c, "INBOX", msg("3@x", "3"), nil); err == nil {
		t.Error("DropAfterStore: APPEND reported success")
	}
	m := s.Messages("u", "INBOX")
	if len(m) != 2 || !bytes.Contains(m[1].Body, []byte("3@x")) {
		t.Fatalf("stored %d messages, want 1@x and 3@x", len(m))
	}
	select {
	case <-c.Closed():
	case <-time.After(5 * time.Second):
		t.Fatal("DropAfterStore left the connection open")
	}
}

// TestFetchCut: an answer that stops mid-literal.
func TestFetchCut(t *testing.T) {
	s := start(t, Options{Hooks: Hooks{Fetch: func(ev FetchEvent) FetchAction {
		return FetchAction{Cut: ev.UID == 2 && ev.Section != nil && ev.Section.Specifier == imap.PartSpecifierNone, After: 100}
	}}})
	body := bytes.Repeat([]byte("0123456789"), 100)
	for range 2 {
		s.Append("u", "INBOX", body, nil, time.Time{})
	}
	r := dialRaw(t, s)
	r.login()
	r.send("S EXAMINE INBOX\r\n")
	r.expect("S", "OK")
	r.send("F UID FETCH 1:2 (UID BODY.PEEK[])\r\n")
	l, err := r.line()
	if err != nil || !strings.HasSuffix(l, string(body)+")\r\n") {
		t.Fatalf("first message: %q %v", l, err)
	}
	l, err = r.line()
	head := "* 2 FETCH (UID 2 BODY[] {1000}\r\n"
	if err == nil || l != head+string(body[:100]) {
		t.Fatalf("second message: %q %v, want the literal cut after 100 bytes", l, err)
	}

	// Not checked with imapclient: in go-imap v2.0.0-beta.8, once a FETCH
	// literal has failed short, FetchMessageData.Next (and so
	// FetchCommand.Close) drains it again, reading the connection's
	// bufio.Reader concurrently with imapclient's reader goroutine: a data
	// race the race detector reports.
}
