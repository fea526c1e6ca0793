package imapconn

import (
	"context"
	"sync"
	"time"
)

// Shared lets several goroutines use one pool connection at once, so that
// their commands are pipelined on the wire (go-imap's Client is safe for
// concurrent use). Connections are bound to a key — the folder a command
// needs selected, or targets — so that goroutines working on one folder
// share a connection while other folders get their own:
//
//   - Acquire(key) joins a connection bound to key that carries fewer than
//     depth users, or waits for one being set up for key that will have
//     room: users arriving together for a new folder share one connection
//     and one SELECT instead of each opening their own. Otherwise it takes
//     a pool connection (at most max at once; one with key selected, else
//     a new one rather than the pool's idle one, which the metadata work
//     keeps: Pool.GetNew) or,
//     when max are held,
//     rebinds the least recently used idle one (bound to another key, no
//     users), and runs setup on it while it is still exclusive (setup may
//     Select: no other goroutine uses it yet).
//   - A busy folder may use several connections: when every connection of
//     key is full another one is opened or rebound. Rebinding costs a
//     SELECT, and folders in flight together take idle connections from
//     each other; keeping a folder to the connections it has (rebinding
//     only for a folder that has none) was measured 20% slower at 20 ms
//     RTT (10,000 messages: the pipelines of fewer connections carry
//     fewer fetches per round trip), so that is not done.
//   - Users of a shared connection may only issue commands that do not
//     change or depend on state another user relies on (FETCH by UID in the
//     selected folder, APPEND): never Select, never Conn fields.
//   - Release ends one use. A connection whose last user left stays bound
//     to its key, idle, so that the next user of that key finds it set up
//     (its folder still selected: no new SELECT, and servers such as
//     Dovecot save into a selected folder without reopening it); it goes
//     back to the pool only when the pool is closed. If any user saw a non-IMAP error (the
//     connection's state is unknown) it is discarded once its last user
//     left; an idle connection that broke is discarded when next looked at.
//
// Shared holds at most max pool connections, so a pool of max+1 slots
// always has one left for metadata work (LIST, STATUS, listing batches):
// that work never waits for a busy or idle data connection (only for
// other metadata work: on a destination the preparer's Prepare, the
// lister's Index and the settler's Locate share the slot).
type Shared struct {
	pool  *Pool
	depth int
	max   int

	mu         sync.Mutex
	active     []*SharedConn  // bound connections, busy or idle
	opening    int            // connections being dialled or set up, not in active
	openingFor map[string]int // of those, per key
	waitingFor map[string]int // acquirers waiting for a connection of key being set up
	clock      uint64         // release counter, orders idle connections
	changed    chan struct{}  // closed and replaced when active changes
	lastCut    time.Time      // last Throttled reduction
}

// SharedConn is a connection handed out by Shared.Acquire.
type SharedConn struct {
	*Conn
	key      string
	users    int
	bad      bool
	released uint64 // Shared.clock at the last release
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
	return &Shared{pool: pool, max: max, depth: depth, changed: make(chan struct{}),
		openingFor: map[string]int{}, waitingFor: map[string]int{}}
}

// Throttled gives up one connection (down to one), at most once every
// throttleSpacing: a server that throttles is asked less of. Connections
// beyond the new maximum are closed as their users leave.
func (s *Shared) Throttled() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.max > 1 && time.Since(s.lastCut) >= throttleSpacing {
		s.max--
		s.lastCut = time.Now()
	}
}

const throttleSpacing = 10 * time.Second

// Depth is the number of users one connection carries at most.
func (s *Shared) Depth() int { return s.depth }

// Max is the number of connections Shared holds at most.
func (s *Shared) Max() int { return s.max }

// Acquire returns a connection for key (a folder's name on the server): a
// bound one with room, else a new or rebound one prepared by setup (nil:
// none). It waits while no
// connection has room for key and none can be opened or rebound. Errors
// are those of Pool.GetNew and setup and ctx's; after a setup error the
// connection is returned to the pool (or discarded when the error is not
// an IMAP response).
func (s *Shared) Acquire(ctx context.Context, key string, setup func(*Conn) error) (*SharedConn, error) {
	var reuse *SharedConn // idle connection taken for rebinding
	waiting := false      // counted in waitingFor[key]
	for {
		s.mu.Lock()
		if waiting {
			s.unwaitLocked(key)
			waiting = false
		}
		dead := s.pruneLocked()
		var idle *SharedConn
		for _, sc := range s.active {
			if sc.key == key {
				if sc.users < s.depth && !sc.bad && !sc.Broken() {
					sc.users++
					s.mu.Unlock()
					s.discard(dead)
					return sc, nil
				}
			} else if sc.users == 0 && (idle == nil || sc.released < idle.released) {
				idle = sc
			}
		}
		// A connection being set up for key has a seat for this caller
		// (its opener holds one): wait for it rather than open another.
		if n := s.openingFor[key]; n > 0 && s.waitingFor[key] < n*(s.depth-1) {
			waiting = true
			s.waitingFor[key]++
		} else if len(s.active)+s.opening < s.max {
			s.opening++
			s.openingFor[key]++
			s.mu.Unlock()
			s.discard(dead)
			break
		} else if idle != nil {
			s.removeLocked(idle)
			s.opening++
			s.openingFor[key]++
			reuse = idle
			s.mu.Unlock()
			s.discard(dead)
			break
		}
		ch := s.changed
		s.mu.Unlock()
		s.discard(dead)
		select {
		case <-ch:
		case <-ctx.Done():
			if waiting {
				s.mu.Lock()
				s.unwaitLocked(key)
				s.mu.Unlock()
			}
			return nil, ctx.Err()
		}
	}
	return s.setUp(ctx, key, reuse, setup)
}

// setUp opens (or rebinds reuse) and runs setup for a connection Acquire
// counted in opening and openingFor[key], and adds it to active. Those
// counts are given back on every way out, a panic in setup included (the
// engine turns a panic into a skipped message and goes on): a count left
// behind would keep key's later callers waiting for a connection that
// never comes.
func (s *Shared) setUp(ctx context.Context, key string, reuse *SharedConn, setup func(*Conn) error) (sc *SharedConn, err error) {
	var c *Conn // held here, not yet in active nor back in the pool
	defer func() {
		p := recover()
		if p != nil && c != nil {
			s.pool.Discard(c)
		}
		s.mu.Lock()
		s.opening--
		if s.openingFor[key]--; s.openingFor[key] == 0 {
			delete(s.openingFor, key)
		}
		if p == nil && err == nil {
			sc = &SharedConn{Conn: c, key: key, users: 1}
			s.active = append(s.active, sc)
		}
		s.broadcast() // waiters for key may join it, or open one after an error
		s.mu.Unlock()
		if p != nil {
			panic(p)
		}
	}()
	if reuse != nil {
		c = reuse.Conn
	} else if c, err = s.pool.GetNew(ctx, key); err != nil {
		c = nil
		return nil, err
	}
	if setup != nil {
		if err = setup(c); err != nil {
			if IMAPError(err) != nil {
				s.pool.Put(c)
			} else {
				s.pool.Discard(c)
			}
			c = nil
			return nil, err
		}
	}
	return nil, nil // sc is made by the deferred function
}

// unwaitLocked ends one caller's wait for a connection of key being set
// up. Keys are folders, possibly 100,000 of them: none is kept at zero.
func (s *Shared) unwaitLocked(key string) {
	if s.waitingFor[key]--; s.waitingFor[key] == 0 {
		delete(s.waitingFor, key)
	}
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
	s.clock++
	sc.released = s.clock
	drop := sc.bad || sc.Broken() || len(s.active)+s.opening > s.max
	if drop {
		s.removeLocked(sc)
	}
	s.broadcast()
	s.mu.Unlock()
	if drop {
		s.pool.Discard(sc.Conn)
	}
}

// pruneLocked removes idle connections that broke or went stale and
// returns them for discarding (outside the lock).
func (s *Shared) pruneLocked() []*SharedConn {
	var dead []*SharedConn
	for i := 0; i < len(s.active); {
		sc := s.active[i]
		// An idle connection left alone for StaleAfter may have been
		// dropped by a NAT or the server: replaced rather than trusted
		// with an APPEND whose outcome would then be unknown.
		if sc.users == 0 && (sc.bad || sc.Broken() || sc.stale()) {
			s.active = append(s.active[:i], s.active[i+1:]...)
			dead = append(dead, sc)
			continue
		}
		i++
	}
	if len(dead) > 0 {
		s.broadcast()
	}
	return dead
}

func (s *Shared) discard(dead []*SharedConn) {
	for _, sc := range dead {
		s.pool.Discard(sc.Conn)
	}
}

func (s *Shared) removeLocked(sc *SharedConn) {
	for i, a := range s.active {
		if a == sc {
			s.active = append(s.active[:i], s.active[i+1:]...)
			return
		}
	}
}

// broadcast wakes every waiting Acquire; called with s.mu held.
func (s *Shared) broadcast() {
	close(s.changed)
	s.changed = make(chan struct{})
}
