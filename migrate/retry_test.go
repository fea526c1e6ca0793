package migrate

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// TestRetryCountsOnlyAttemptsWithoutProgress: an operation whose failed
// attempts each keep part of the work (Progressed) is retried past
// Options.Retries, each such attempt starting the count again; one that
// fails without progress is given up after Retries.
func TestRetryCountsOnlyAttemptsWithoutProgress(t *testing.T) {
	e := &engine{o: Options{RetryBase: time.Microsecond, Retries: 2}, rep: func(Event) {}}
	j := &job{mb: Mailbox{Name: "INBOX"}}
	left := 10 // work items; each attempt gets through 1, then the link drops
	calls := 0
	err := e.retry(context.Background(), j, "look up", func() error {
		calls++
		if left == 0 {
			return nil
		}
		left--
		return Progressed(Retryable(errors.New("connection reset by peer")))
	})
	if err != nil || calls != 11 {
		t.Fatalf("progressing op: err %v after %d calls, want success after 11", err, calls)
	}

	// Progress, then attempts that get nowhere: those are counted.
	calls = 0
	err = e.retry(context.Background(), j, "look up", func() error {
		calls++
		if calls <= 3 {
			return Progressed(Retryable(errors.New("reset")))
		}
		return Retryable(errors.New("reset"))
	})
	if err == nil || !strings.Contains(err.Error(), "giving up after 2 retries") || Classify(err) != Fatal {
		t.Fatalf("stalled op: %v", err)
	}
	if calls != 6 { // 3 with progress, the first without and 2 retries
		t.Errorf("stalled op called %d times, want 6", calls)
	}

	// Progressed keeps the class underneath: a skip stays a skip.
	if err := Progressed(SkipMessage(errors.New("bad"))); Classify(err) != Skip || !HasProgressed(err) {
		t.Errorf("Progressed(SkipMessage) = %v, %v", Classify(err), HasProgressed(err))
	}
}

// TestRetryThenSkip: an error marked RetryThenSkip (a server that breaks
// off inside one message's data every time) is retried like any transient
// error, and once the retries are exhausted skips that message instead of
// stopping the run; a plain Retryable error still stops it.
func TestRetryThenSkip(t *testing.T) {
	e := &engine{o: Options{RetryBase: time.Microsecond, Retries: 2}, rep: func(Event) {}}
	j := &job{mb: Mailbox{Name: "INBOX"}, msg: Message{ID: "7"}}
	calls := 0
	err := e.retry(context.Background(), j, "fetch", func() error {
		calls++
		return RetryThenSkip(errors.New("literal of 169 bytes ended after 84"))
	})
	if Classify(err) != Skip || !strings.Contains(err.Error(), "giving up after 2 retries") || calls != 3 {
		t.Fatalf("after %d calls: %v (%v), want a skip after 3", calls, err, Classify(err))
	}
	calls = 0
	err = e.retry(context.Background(), j, "fetch", func() error {
		calls++
		if calls == 1 {
			return RetryThenSkip(errors.New("cut"))
		}
		return nil
	})
	if err != nil || calls != 2 {
		t.Fatalf("cut once: %v after %d calls", err, calls)
	}
	// The last attempt decides: a server gone after cutting is fatal.
	calls = 0
	err = e.retry(context.Background(), j, "fetch", func() error {
		calls++
		if calls == 1 {
			return RetryThenSkip(errors.New("cut"))
		}
		return Retryable(errors.New("connection refused"))
	})
	if Classify(err) != Fatal {
		t.Fatalf("server gone: %v (%v), want fatal", err, Classify(err))
	}
	if err := Progressed(RetryThenSkip(errors.New("cut"))); !skipsWhenExhausted(err) || Classify(err) != Retry {
		t.Errorf("Progressed(RetryThenSkip) lost its mark: %v", Classify(err))
	}
}

// TestRetryStopsWhenCancelled: a transient error that comes because the
// run is stopping (its context ended: Ctrl-C) is neither retried nor
// reported as a retry ("retrying ... context canceled" on every message
// in flight); retry returns the context's error.
func TestRetryStopsWhenCancelled(t *testing.T) {
	var events []Event
	e := &engine{o: Options{RetryBase: time.Millisecond, Retries: 5}, rep: func(ev Event) { events = append(events, ev) }}
	ctx, cancel := context.WithCancel(context.Background())
	calls := 0
	err := e.retry(ctx, &job{mb: Mailbox{Name: "INBOX"}}, "fetch", func() error {
		calls++
		cancel()
		return Retryable(errors.New("use of closed network connection"))
	})
	if !errors.Is(err, context.Canceled) || calls != 1 || len(events) != 0 {
		t.Fatalf("after cancel: err %v, %d calls, events %+v", err, calls, events)
	}
}
