package imapconn

import (
	"context"
	"sync"
)

// Pool holds up to N connections to one account. Get hands a connection
// to one goroutine; Put gives it back. An idle connection is reused before
// a new one is dialled (the most recently used first: it is the one least
// likely to have been dropped by a server or NAT for idleness), and a slot
// whose connection broke is redialled on the next Get, so a dropped
// connection costs one retry.
type Pool struct {
	cfg  *Config
	size int

	mu     sync.Mutex
	idle   []*Conn // connected, not handed out; the last is the newest
	empty  int     // slots without a connection, not handed out
	wake   chan struct{}
	closed bool
	all    map[*Conn]bool
}

// NewPool returns a pool of n (>= 1) slots; nothing is dialled yet.
func NewPool(cfg *Config, n int) *Pool {
	if n < 1 {
		n = 1
	}
	return &Pool{cfg: cfg, size: n, empty: n, wake: make(chan struct{}), all: map[*Conn]bool{}}
}

// Size is the number of slots.
func (p *Pool) Size() int { return p.size }

// Get waits for a free slot and returns its connection: an idle one if
// any is alive, else a new one. On error the slot is returned to the pool;
// errors are classified as Dial classifies them.
func (p *Pool) Get(ctx context.Context) (*Conn, error) { return p.get(ctx, false) }

// GetNew is Get for a holder that keeps the connection bound to one
// folder for its own work (Shared): an idle connection that has folder
// selected already (the lister's, which just listed it; the destination's
// Prepare, which just selected it) is taken first, as it saves a SELECT;
// otherwise, while a slot has no connection, a new one is dialled, and
// only then is another idle one taken. That idle connection is left to
// the short metadata work of the next Get (listing or preparing the next
// folder), which would otherwise wait for a new connection's dial,
// greeting and login, several round trips, whenever the data connections
// took the warm one.
func (p *Pool) GetNew(ctx context.Context, folder string) (*Conn, error) {
	p.mu.Lock()
	for i := len(p.idle) - 1; i >= 0; i-- {
		if c := p.idle[i]; c.Selected == folder && !c.Broken() && !c.stale() {
			p.idle = append(p.idle[:i], p.idle[i+1:]...)
			p.mu.Unlock()
			return c, nil
		}
	}
	p.mu.Unlock()
	return p.get(ctx, true)
}

func (p *Pool) get(ctx context.Context, preferNew bool) (*Conn, error) {
	for {
		p.mu.Lock()
		var dead []*Conn
		for len(p.idle) > 0 && !(preferNew && p.empty > 0) {
			c := p.idle[len(p.idle)-1]
			p.idle = p.idle[:len(p.idle)-1]
			if !c.Broken() {
				p.mu.Unlock()
				closeAll(dead)
				if c.stale() && c.ping(ctx) != nil {
					// Dropped while idle (a server's autologout, a NAT
					// that forgot the connection): dial a new one.
					p.Discard(c)
					return p.get(ctx, preferNew)
				}
				return c, nil
			}
			delete(p.all, c)
			p.empty++
			dead = append(dead, c)
		}
		if len(dead) > 0 {
			p.mu.Unlock()
			closeAll(dead)
			p.mu.Lock()
		}
		if p.empty > 0 {
			p.empty--
			p.mu.Unlock()
			c, err := Dial(ctx, p.cfg)
			p.mu.Lock()
			if err != nil {
				p.empty++
				p.signalLocked()
				p.mu.Unlock()
				return nil, err
			}
			p.all[c] = true
			p.mu.Unlock()
			return c, nil
		}
		wake := p.wake
		p.mu.Unlock()
		select {
		case <-wake:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// signalLocked wakes every waiting Get; called with p.mu held.
func (p *Pool) signalLocked() {
	close(p.wake)
	p.wake = make(chan struct{})
}

// Put returns c's slot. A broken connection is closed and the slot
// redialled later. Put(nil) returns an empty slot.
func (p *Pool) Put(c *Conn) {
	p.mu.Lock()
	broken := c != nil && c.Broken()
	switch {
	case c == nil:
		p.empty++
	case broken:
		delete(p.all, c)
		p.empty++
	default:
		p.idle = append(p.idle, c)
	}
	p.signalLocked()
	p.mu.Unlock()
	if broken {
		c.Client.Close()
	}
}

func closeAll(cs []*Conn) {
	for _, c := range cs {
		c.Client.Close()
	}
}

// Release returns c after a command that ended with err: to the pool if
// the connection is still in a known state (no error, or the server's own
// NO/BAD), closed and replaced otherwise.
func (p *Pool) Release(c *Conn, err error) {
	if err != nil && IMAPError(err) == nil {
		p.Discard(c)
		return
	}
	p.Put(c)
}

// Discard closes c (after an error that left it in an unknown state) and
// returns its slot empty.
func (p *Pool) Discard(c *Conn) {
	p.mu.Lock()
	if c != nil {
		delete(p.all, c)
	}
	p.empty++
	p.signalLocked()
	p.mu.Unlock()
	if c != nil {
		c.Client.Close()
	}
}

// Close logs out every connection, including those handed out (their
// holders' commands fail).
func (p *Pool) Close() error {
	p.mu.Lock()
	conns := make([]*Conn, 0, len(p.all))
	for c := range p.all {
		conns = append(conns, c)
	}
	p.all = map[*Conn]bool{}
	p.mu.Unlock()
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.Close()
		}()
	}
	wg.Wait()
	return nil
}
