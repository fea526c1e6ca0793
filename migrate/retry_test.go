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
