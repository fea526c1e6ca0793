// Package bwlimit is --bwlimit: every connection of one side of a run
// (IMAP or POP3) shares one limiter per direction, so the limit is the
// total a run asks of a server, whatever the number of connections. A
// limiter wait ends early when the connection is closed (cancellation, a
// watchdog), so a limit never keeps a dead connection's goroutine alive.
// Built on golang.org/x/time/rate.
package bwlimit

import (
	"net"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Limit is a shared bandwidth limit in bytes per second, each direction.
type Limit struct {
	up, down *rate.Limiter
}

// New returns a limit of bytesPerSec each way (nil: no limit).
func New(bytesPerSec int64) *Limit {
	if bytesPerSec <= 0 {
		return nil
	}
	burst := int(min(bytesPerSec, 256<<10))
	return &Limit{up: rate.NewLimiter(rate.Limit(bytesPerSec), burst), down: rate.NewLimiter(rate.Limit(bytesPerSec), burst)}
}

// Wrap returns c with l applied to its reads and writes (c itself when l
// is nil). Safe for the concurrent use c allows.
func Wrap(c net.Conn, l *Limit) net.Conn {
	if l == nil {
		return c
	}
	return &limitedConn{Conn: c, l: l, closed: make(chan struct{})}
}

// limitedConn applies a Limit to a connection.
type limitedConn struct {
	net.Conn
	l      *Limit
	closed chan struct{}
	once   sync.Once
}

func (c *limitedConn) wait(lim *rate.Limiter, n int) {
	for n > 0 {
		k := min(n, lim.Burst())
		r := lim.ReserveN(time.Now(), k)
		if d := r.Delay(); d > 0 {
			t := time.NewTimer(d)
			select {
			case <-t.C:
			case <-c.closed:
				t.Stop()
				return
			}
		}
		n -= k
	}
}

func (c *limitedConn) Read(p []byte) (int, error) {
	if len(p) > c.l.down.Burst() {
		p = p[:c.l.down.Burst()]
	}
	n, err := c.Conn.Read(p)
	c.wait(c.l.down, n)
	return n, err
}

func (c *limitedConn) Write(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		k := min(len(p), c.l.up.Burst())
		c.wait(c.l.up, k)
		n, err := c.Conn.Write(p[:k])
		written += n
		if err != nil {
			return written, err
		}
		p = p[k:]
	}
	return written, nil
}

func (c *limitedConn) Close() error {
	c.once.Do(func() { close(c.closed) })
	return c.Conn.Close()
}
