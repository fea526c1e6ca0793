package imapconn

import (
	"context"
	"sync"
)

// Shared lets several goroutines use one pool connection at once, so that
// their commands are pipelined on the wire (go-imap's Client is safe for
// concurrent use). Connections are shared per key — the folder a command
// needs selected, or targets — so that goroutines working on one folder
// share a connection while other folders get their own:
//
//   - Acquire(key) joins a connection already in use for key that carries
//     fewer than depth users; otherwise it takes a pool connection (at most
//     max at once) and runs setup on it while it is still exclusive (setup
//     may Select: no other goroutine uses it yet).
//   - Users of a shared connection may only issue commands that do not
//     change or depend on state another user relies on (FETCH by UID in the
//     selected folder, APPEND): never Select, never Conn fields.
//   - Release gives the connection back to the pool when its last user
//     leaves; if any user saw a non-IMAP error (the connection's state is
//     unknown) it is discarded instead.
//
// Shared holds at most max pool connections, so a pool of max+1 slots
// always has one left for metadata work (LIST, STATUS, listing batches):
// that work never waits for a busy data connection to drain.
type Shared struct {
	pool  *Pool
	depth int
	max   int

	mu      sync.Mutex
	active  []*SharedConn
	opening int
	changed chan struct{} // closed and replaced when active changes
}

// SharedConn is a connection handed out by Shared.Acquire.
type SharedConn struct {
	*Conn
	key   string
	users int
	bad   bool
}

// NewShared shares up to max connections of pool (max >= 1), each among up
// to depth goroutines (depth >= 1).
func NewShared(pool *Pool, max, depth int) *Shared {
	if max < 1 {
		max = 1
	}
	if depth < 1 {
		depth = 1
	}
	return &Shared{pool: pool, max: max, depth: depth, changed: make(chan struct{})}
}

// Depth is the number of users one connection carries at most.
func (s *Shared) Depth() int { return s.depth }

// Max is the number of connections Shared holds at most.
func (s *Shared) Max() int { return s.max }

// Acquire returns a connection for key: a shared one with room, else a new
// one from the pool prepared by setup (nil: none). It waits while max
// connections are in use and none has room for key. Errors are those of
// Pool.Get and setup; after a setup error the connection is returned (or
// discarded when the error is not an IMAP response).
func (s *Shared) Acquire(ctx context.Context, key string, setup func(*Conn) error) (*SharedConn, error) {
	for {
		s.mu.Lock()
		for _, sc := range s.active {
			if sc.key == key && sc.users < s.depth && !sc.bad && !sc.Broken() {
				sc.users++
				s.mu.Unlock()
				return sc, nil
			}
		}
		if len(s.active)+s.opening < s.max {
			s.opening++
			s.mu.Unlock()
			break
		}
		ch := s.changed
		s.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	c, err := s.pool.Get(ctx)
	if err == nil && setup != nil {
		if err = setup(c); err != nil {
			if IMAPError(err) != nil {
				s.pool.Put(c)
			} else {
				s.pool.Discard(c)
			}
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.opening--
	if err != nil {
		s.broadcast()
		return nil, err
	}
	sc := &SharedConn{Conn: c, key: key, users: 1}
	s.active = append(s.active, sc)
	s.broadcast() // waiters for key may join it
	return sc, nil
}

// Release ends one user's use of sc. err is what that user's command
// returned: a non-IMAP error marks the connection for discarding.
func (s *Shared) Release(sc *SharedConn, err error) {
	s.mu.Lock()
	if err != nil && IMAPError(err) == nil {
		sc.bad = true
	}
	sc.users--
	if sc.users > 0 {
		s.mu.Unlock()
		return
	}
	for i, a := range s.active {
		if a == sc {
			s.active = append(s.active[:i], s.active[i+1:]...)
			break
		}
	}
	bad := sc.bad
	s.broadcast()
	s.mu.Unlock()
	if bad {
		s.pool.Discard(sc.Conn)
	} else {
		s.pool.Put(sc.Conn)
	}
}

// broadcast wakes every waiting Acquire; called with s.mu held.
func (s *Shared) broadcast() {
	close(s.changed)
	s.changed = make(chan struct{})
}
