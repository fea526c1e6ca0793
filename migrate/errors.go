package migrate

import (
	"errors"
	"fmt"
	"time"
)

// Class is what the engine does with an error. Backends classify their
// errors once, where they know what went wrong; the engine only reads the
// class.
type Class int

const (
	// Fatal stops the run (authentication refused, destination gone, disk
	// full, over quota). Unclassified errors are fatal.
	Fatal Class = iota
	// Skip skips the one message, records it in the report and goes on.
	Skip
	// Retry is a transient failure (lost connection, throttling); the
	// operation is retried with backoff. When retries are exhausted the
	// error becomes fatal: a server that stays unreachable stops the run
	// (the next run resumes) rather than skipping every message. An error
	// marked RetryThenSkip skips its message instead.
	Retry
)

func (c Class) String() string {
	switch c {
	case Skip:
		return "skip"
	case Retry:
		return "retry"
	}
	return "fatal"
}

type classified struct {
	class     Class
	err       error
	uncertain bool
	throttled bool          // a server's "not now" (Backoff)
	backoff   time.Duration // server-suggested wait before the next attempt
	progress  bool          // the failed attempt kept work a retry will not redo
	skipLast  bool          // RetryThenSkip: exhausted retries skip the message
}

func (e *classified) Error() string { return e.err.Error() }
func (e *classified) Unwrap() error { return e.err }

// SkipMessage marks err as affecting one message only.
func SkipMessage(err error) error {
	if err == nil {
		return nil
	}
	return &classified{class: Skip, err: err}
}

// Retryable marks err as transient.
func Retryable(err error) error {
	if err == nil {
		return nil
	}
	return &classified{class: Retry, err: err}
}

// Uncertain marks err, of a Sink.Append, as transient and leaving the
// outcome unknown: the request may have reached the destination (the
// connection broke or timed out after the message was sent, or while it
// was). The engine never sends such an append again before it has looked
// for the copy (settle.go). An Append error that is Retryable but not
// Uncertain promises that nothing was stored.
func Uncertain(err error) error {
	if err == nil {
		return nil
	}
	return &classified{class: Retry, err: err, uncertain: true}
}

// IsUncertain reports whether the outermost classification of err is
// Uncertain.
func IsUncertain(err error) bool {
	var c *classified
	return errors.As(err, &c) && c.uncertain
}

// RetryThenSkip marks err as transient, but possibly bound to one message:
// the server answered and then broke off inside that message's own data
// (a FETCH literal that stops part-way, as a server does that crashes on
// a corrupt mail file). It is retried like Retryable; when the retries
// are exhausted the message is skipped (reported, and tried again by the
// next run) instead of the run stopped, since the server was reachable
// each time and one message must not keep an account from being copied.
// A server that becomes unreachable fails the next attempt differently,
// and that error decides.
func RetryThenSkip(err error) error {
	if err == nil {
		return nil
	}
	return &classified{class: Retry, err: err, skipLast: true}
}

// skipsWhenExhausted reports whether the outermost classification of err
// is RetryThenSkip.
func skipsWhenExhausted(err error) bool {
	var c *classified
	return errors.As(err, &c) && c.skipLast
}

// Backoff marks err as transient, a server's throttling: the next
// attempt waits at least d (the server's suggestion; 0 when it made none:
// then Options.ThrottleWait).
func Backoff(err error, d time.Duration) error {
	if err == nil {
		return nil
	}
	return &classified{class: Retry, err: err, backoff: d, throttled: true}
}

// BackoffOf returns the wait a throttling error asks for (0: none said),
// and whether err is one.
func BackoffOf(err error) (time.Duration, bool) {
	var c *classified
	if errors.As(err, &c) && c.throttled {
		return c.backoff, true
	}
	return 0, false
}

// Progressed marks a transient err after which the failed attempt kept
// part of its work (hashes of the bodies it had read, say), so the next
// attempt does strictly less: the engine retries it without counting the
// attempt against Options.Retries, and from the shortest backoff. A link
// that drops every few hundred kilobytes thus still gets through a step
// larger than that, as long as each attempt gets somewhere. Only mark
// progress that shrinks what is left, or a retry could go on forever.
func Progressed(err error) error {
	if err == nil {
		return nil
	}
	c := &classified{class: Retry, err: err, progress: true}
	var in *classified
	if errors.As(err, &in) {
		c.class, c.uncertain, c.throttled, c.backoff, c.skipLast = in.class, in.uncertain, in.throttled, in.backoff, in.skipLast
	}
	return c
}

// HasProgressed reports whether the outermost classification of err is
// Progressed.
func HasProgressed(err error) bool {
	var c *classified
	return errors.As(err, &c) && c.progress
}

// ErrCannotRemove is returned by a Remover that cannot remove one copy
// without risking others (IMAP without UIDPLUS).
var ErrCannotRemove = errors.New("the destination cannot remove a single message safely")

// FatalError marks err as fatal explicitly (useful to override a class
// further down the chain).
func FatalError(err error) error {
	if err == nil {
		return nil
	}
	return &classified{class: Fatal, err: err}
}

// Classified reports whether err carries a class given explicitly (by
// SkipMessage, Retryable, FatalError, ...), which a classifier further up
// must keep.
func Classified(err error) bool {
	var c *classified
	return errors.As(err, &c)
}

// Classify returns the class of err: the outermost classification wins;
// unclassified errors are Fatal.
func Classify(err error) Class {
	var c *classified
	if errors.As(err, &c) {
		return c.class
	}
	return Fatal
}

// panicError turns a recovered panic in a per-message operation into an
// error that skips that message: one bad message must not abort the run.
func panicError(what string, v any) error {
	return SkipMessage(fmt.Errorf("internal error in %s: panic: %v", what, v))
}
