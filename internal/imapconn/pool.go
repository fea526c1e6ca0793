package imapconn

import (
	"context"
	"sync"
)

// Pool holds up to N connections to one account. Get hands a connection
// to one goroutine; Put gives it back. A slot whose connection broke is
// redialled on the next Get, so a dropped connection costs one retry.
type Pool struct {
	cfg   *Config
	slots chan *Conn // nil entries: slot not connected

	mu     sync.Mutex
	closed bool
	all    map[*Conn]bool
}

// NewPool returns a pool of n (>= 1) slots; nothing is dialled yet.
func NewPool(cfg *Config, n int) *Pool {
	if n < 1 {
		n = 1
	}
	p := &Pool{cfg: cfg, slots: make(chan *Conn, n), all: map[*Conn]bool{}}
	for i := 0; i < n; i++ {
		p.slots <- nil
	}
	return p
}

// Size is the number of slots.
func (p *Pool) Size() int { return cap(p.slots) }

// Get waits for a free slot and returns its connection, dialling it if
// needed. On error the slot is returned to the pool; errors are classified
// as Dial classifies them.
func (p *Pool) Get(ctx context.Context) (*Conn, error) {
	var c *Conn
	select {
	case c = <-p.slots:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if c != nil && !c.Broken() {
		return c, nil
	}
	if c != nil {
		p.forget(c)
		c.Client.Close()
	}
	c, err := Dial(ctx, p.cfg)
	if err != nil {
		p.slots <- nil
		return nil, err
	}
	p.mu.Lock()
	p.all[c] = true
	p.mu.Unlock()
	return c, nil
}

// Put returns c's slot. A broken connection is closed and the slot
// redialled later. Put(nil) returns an empty slot.
func (p *Pool) Put(c *Conn) {
	if c != nil && c.Broken() {
		p.forget(c)
		c.Client.Close()
		c = nil
	}
	p.slots <- c
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
	if c != nil {
		p.forget(c)
		c.Client.Close()
	}
	p.slots <- nil
}

func (p *Pool) forget(c *Conn) {
	p.mu.Lock()
	delete(p.all, c)
	p.mu.Unlock()
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
