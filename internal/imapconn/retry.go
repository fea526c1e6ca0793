package imapconn

import (
	"context"
	"fmt"
	"time"

	"github.com/mailhaul/mailhaul/migrate"
)

// StepRetries and StepBackoff bound Retry: a step that keeps failing for
// about 15 seconds (0.5 + 1 + 2 + 4 + 8) is given up, and the error goes to
// the engine, which has its own retries.
const (
	StepRetries = 5
	StepBackoff = 500 * time.Millisecond
)

// Retry runs one step of a longer operation (a batch of a folder listing)
// that must resume where it stopped rather than start over, retrying it on
// a fresh connection while it fails with a Retry-classified error (a lost
// connection). Other errors, and the last one, are returned as they are.
func Retry(ctx context.Context, op func() error) error {
	delay := StepBackoff
	for attempt := 0; ; attempt++ {
		err := op()
		if err == nil || migrate.Classify(err) != migrate.Retry || attempt >= StepRetries {
			if err != nil && attempt > 0 {
				err = fmt.Errorf("%w (after %d attempts)", err, attempt+1)
			}
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(delay):
		}
		delay *= 2
	}
}
