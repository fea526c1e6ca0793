package faultproxy

import (
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"time"
)

// A link is one proxied connection: the client's socket, the server's,
// and four goroutines, a reader and a writer per direction. A reader turns
// what it reads into chunks stamped with their delivery time and queues
// them (a bounded queue, so a slow writer stops the reader and the sender
// feels TCP backpressure); a writer delivers them in order, paced to the
// bandwidth, counting bytes against the reset and stall points. Counters
// and the frozen flag are shared by both directions under mu.
type link struct {
	p              *Proxy
	id             int
	cfg            Config
	client, server *net.TCPConn
	resetAt        [2]int64 // by direction; <= 0: never
	stallAt        int64

	mu     sync.Mutex
	fwd    [2]int64 // forwarded, by direction
	total  int64
	frozen bool // stalled, or being reset: forward nothing more
	ended  int  // directions finished by an EOF
	rng    *rand.Rand

	done chan struct{} // closed by teardown
	once sync.Once
}

type direction int

const (
	up   direction = iota // client -> server
	down                  // server -> client
)

type chunk struct {
	data []byte
	due  time.Time
}

// maxDrain bounds how long a reset waits for forwarded bytes to leave.
const maxDrain = 2 * time.Second

func newLink(p *Proxy, id int, cfg Config, client, server *net.TCPConn) *link {
	l := &link{p: p, id: id, cfg: cfg, client: client, server: server, done: make(chan struct{}),
		rng: rand.New(rand.NewPCG(uint64(id), uint64(time.Now().UnixNano())))}
	if cfg.ResetUp != nil {
		l.resetAt[up] = cfg.ResetUp(id)
	}
	if cfg.ResetDown != nil {
		l.resetAt[down] = cfg.ResetDown(id)
	}
	if cfg.Stall != nil {
		l.stallAt = cfg.Stall(id)
	}
	return l
}

// run starts the four goroutines (the caller has done p.wg.Add(4)).
func (l *link) run() {
	qUp, qDown := make(chan chunk, 64), make(chan chunk, 64)
	go l.read(l.client, qUp)
	go l.write(up, l.server, qUp)
	go l.read(l.server, qDown)
	go l.write(down, l.client, qDown)
}

// read queues what src sends. On EOF it closes q (the writer passes the
// EOF on after the data); on an error (an RST from src, or our own
// teardown) it tears the link down with resets.
func (l *link) read(src *net.TCPConn, q chan<- chunk) {
	defer l.p.wg.Done()
	var last time.Time
	for {
		buf := make([]byte, 32<<10)
		n, err := src.Read(buf)
		if n > 0 {
			if l.isFrozen() {
				<-l.done
				return
			}
			due := time.Now().Add(l.delay())
			if due.Before(last) {
				due = last // never overtake an earlier chunk
			}
			last = due
			select {
			case q <- chunk{buf[:n], due}:
			case <-l.done:
				return
			}
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				close(q)
				return
			}
			l.teardown(true, false)
			return
		}
	}
}

func (l *link) delay() time.Duration {
	d := l.cfg.Latency
	if l.cfg.Jitter > 0 {
		l.mu.Lock()
		d += time.Duration(l.rng.Int64N(int64(l.cfg.Jitter)))
		l.mu.Unlock()
	}
	return d
}

type verdict int

const (
	pass    verdict = iota
	doReset         // the reset point is reached: reset after these bytes
	doStall         // the stall point is reached: stall after these bytes
	stopped         // frozen by the other direction or a reset in progress
)

// write delivers q's chunks to dst in order.
func (l *link) write(d direction, dst *net.TCPConn, q <-chan chunk) {
	defer l.p.wg.Done()
	rate := l.cfg.BytesPerSec
	var next time.Time // bandwidth pacing: when the next piece may go
	for {
		var c chunk
		var ok bool
		select {
		case c, ok = <-q:
		case <-l.done:
			return
		}
		if !ok { // EOF from the source, after all its data
			if l.isFrozen() {
				<-l.done
				return
			}
			dst.CloseWrite()
			l.endDirection()
			return
		}
		if !l.sleepUntil(c.due) {
			return
		}
		for data := c.data; len(data) > 0; {
			piece := data
			if rate > 0 {
				piece = data[:min(int64(len(data)), max(rate/50, 1))] // ~20 ms worth
				if !l.sleepUntil(next) {
					return
				}
				if now := time.Now(); next.Before(now) {
					next = now
				}
				next = next.Add(time.Duration(int64(len(piece)) * int64(time.Second) / rate))
			}
			n, v := l.admit(d, len(piece))
			if n > 0 {
				if _, err := dst.Write(piece[:n]); err != nil {
					l.teardown(true, false)
					return
				}
			}
			switch v {
			case doReset:
				waitSent(dst, maxDrain, l.done)
				l.teardown(true, true)
				return
			case doStall:
				l.p.count(func(s *Stats) { s.Stalls++ })
				<-l.done
				return
			case stopped:
				<-l.done
				return
			}
			data = data[n:]
		}
	}
}

// admit says how many of n bytes direction d may forward now, and what
// happens after them; it counts them as forwarded.
func (l *link) admit(d direction, n int) (int, verdict) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.frozen {
		return 0, stopped
	}
	allowed, v := int64(n), pass
	if r := l.resetAt[d]; r > 0 && l.fwd[d]+allowed >= r {
		allowed, v = r-l.fwd[d], doReset
	}
	if s := l.stallAt; s > 0 && l.total+allowed >= s {
		allowed, v = s-l.total, doStall
	}
	if v != pass {
		l.frozen = true
	}
	l.fwd[d] += allowed
	l.total += allowed
	l.p.count(func(s *Stats) {
		if d == up {
			s.BytesUp += allowed
		} else {
			s.BytesDown += allowed
		}
	})
	return int(allowed), v
}

func (l *link) isFrozen() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.frozen
}

// sleepUntil waits for t; false if the link was torn down meanwhile.
func (l *link) sleepUntil(t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		select {
		case <-l.done:
			return false
		default:
			return true
		}
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-l.done:
		return false
	}
}

// endDirection notes a direction finished by EOF; when both are, the
// link is closed normally.
func (l *link) endDirection() {
	l.mu.Lock()
	l.ended++
	both := l.ended == 2
	l.mu.Unlock()
	if both {
		l.teardown(false, false)
	}
}

// reset freezes the link, lets forwarded bytes leave, then resets both
// sides (ResetAll).
func (l *link) reset(injected bool) {
	l.mu.Lock()
	l.frozen = true
	l.mu.Unlock()
	waitSent(l.client, maxDrain, l.done)
	waitSent(l.server, maxDrain, l.done)
	l.teardown(true, injected)
}

// teardown closes both sockets, with an RST if rst, once. Any goroutine.
func (l *link) teardown(rst, injected bool) {
	l.once.Do(func() {
		if injected {
			l.p.count(func(s *Stats) { s.Resets++ })
		}
		if rst {
			l.client.SetLinger(0)
			l.server.SetLinger(0)
		}
		l.client.Close()
		l.server.Close()
		close(l.done)
		l.p.forget(l)
	})
}
