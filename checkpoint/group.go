package checkpoint

import (
	"errors"
	"fmt"
	"sync"

	bolt "go.etcd.io/bbolt"
)

// groupCommit folds the writes of concurrent callers into shared
// transactions without a timer: a write that arrives while a commit is in
// progress waits for it and goes into the next one, together with every
// other write that arrived meanwhile. An idle store commits a write at
// once. (bbolt's DB.Batch waits MaxBatchDelay for company and then
// detaches its batch before taking the write lock, so the writes that
// arrive during a commit each start a batch of their own: with the engine's
// appenders, which commit at the pace of the destination's replies, almost
// every commit held one write and paid its own fsyncs.)
//
// A write is durable when do returns nil. A write whose function fails is
// run again on its own, so that its error is its own and the others' writes
// still commit; as with DB.Batch, a function may therefore run more than
// once and must only depend on the transaction it is given.
type groupCommit struct {
	db *bolt.DB

	mu      sync.Mutex
	queue   []groupCall
	running bool           // a commit is in progress
	active  sync.WaitGroup // one while running
	closed  bool
}

type groupCall struct {
	fn  func(*bolt.Tx) error
	err chan error
}

var errClosed = errors.New("checkpoint is closed")

// do runs fn in a write transaction shared with the other callers' and
// returns when that transaction has committed, or with fn's or the
// commit's error. Safe for concurrent use. The caller that finds no
// commit in progress commits the queue (its own write and any that came
// with it); writes that queued during that commit are committed by a
// goroutine of their own, round after round until the queue is empty, so
// that no caller waits for more than the commit after the one in progress.
func (g *groupCommit) do(fn func(*bolt.Tx) error) error {
	c := groupCall{fn: fn, err: make(chan error, 1)}
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return errClosed
	}
	g.queue = append(g.queue, c)
	if g.running {
		g.mu.Unlock()
		return <-c.err
	}
	g.running = true
	g.active.Add(1)
	g.mu.Unlock()
	if g.round() {
		go func() {
			for g.round() {
			}
		}()
	}
	return <-c.err
}

// round commits what is queued and reports whether more queued meanwhile;
// when not, the store is idle again (running is false).
func (g *groupCommit) round() bool {
	g.mu.Lock()
	calls := g.queue
	g.queue = nil
	g.mu.Unlock()
	g.commit(calls)
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.queue) > 0 {
		return true
	}
	g.running = false
	g.active.Done()
	return false
}

// commit runs calls in one transaction. When one of them fails, it is run
// alone (its error is its own) and the others are committed without it.
func (g *groupCommit) commit(calls []groupCall) {
	for len(calls) > 0 {
		failed := -1
		err := g.db.Update(func(tx *bolt.Tx) error {
			for i, c := range calls {
				if err := safeCall(c.fn, tx); err != nil {
					failed = i
					return err
				}
			}
			return nil
		})
		if failed < 0 {
			// Committed, or the commit failed for all of them.
			for _, c := range calls {
				c.err <- err
			}
			return
		}
		c := calls[failed]
		calls = append(calls[:failed:failed], calls[failed+1:]...)
		if len(calls) == 0 {
			c.err <- err
			return
		}
		c.err <- g.db.Update(func(tx *bolt.Tx) error { return safeCall(c.fn, tx) })
	}
}

// close makes later writes fail with errClosed and returns when the
// writes already queued have committed (their callers are waiting for
// them), before the database is closed.
func (g *groupCommit) close() {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
	g.active.Wait()
}

// safeCall turns a panic of fn into an error, so that one caller's bug
// fails its own write, not the goroutine committing everyone's.
func safeCall(fn func(*bolt.Tx) error, tx *bolt.Tx) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("checkpoint write panicked: %v", p)
		}
	}()
	return fn(tx)
}
