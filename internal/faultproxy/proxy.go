// Package faultproxy is a TCP proxy for tests that injects the faults of a
// bad network between a client and a server on loopback: latency with
// jitter, a bandwidth limit, connection resets after a chosen number of
// bytes in either direction, links that go silent for good while both
// sockets stay open (half-open), refused connections, and resetting every
// open connection at once.
//
// Guarantees: bytes are forwarded exactly and in order; a connection that
// is reset after N bytes of a direction delivers exactly those N bytes (the
// proxy waits, up to two seconds, for its kernel to have sent them) and
// then resets both sides with an RST (SO_LINGER 0), so each peer sees
// ECONNRESET (or an EOF if it had already read everything and closed);
// an EOF from one side is passed on as a half-close (FIN) once the bytes
// before it were delivered; an RST or error from one side resets the
// other. Close stops every goroutine it started before returning.
//
// Why not toxiproxy (github.com/Shopify/toxiproxy/v2): it has no "reset
// after N bytes" toxic (reset_peer resets after a time; limit_data closes
// with a FIN), its timeout toxic closes the connection rather than leaving
// it half-open unless the timeout is 0, and in-process it still brings an
// HTTP API, a metrics stack and their dependencies. What this package needs
// is a few hundred lines; internal/delayproxy stays as the fixed-latency
// proxy for benchmarks.
package faultproxy

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"time"
)

// Config says which faults to inject. The zero Config forwards faithfully.
// The functions are called once per connection, from the accept goroutine,
// with the connection's number (from 1, in accept order, refused ones
// included).
type Config struct {
	// Latency is added one way, in each direction; each chunk read is
	// delivered Latency plus a random part of Jitter after it was read,
	// never before an earlier chunk.
	Latency, Jitter time.Duration
	// BytesPerSec limits each direction of each connection (0: no limit).
	BytesPerSec int64
	// ResetUp and ResetDown give a connection's reset point: after that
	// many bytes client->server (Up) or server->client (Down) have been
	// forwarded, both sides are reset. <= 0 (or a nil func): never.
	ResetUp, ResetDown func(conn int) int64
	// Stall gives a connection's stall point: after that many bytes in
	// both directions together, nothing more is read or forwarded, but
	// both sockets stay open until Close or ResetAll. <= 0: never.
	Stall func(conn int) int64
	// RefuseEvery makes every Nth new connection (N, 2N, ...) be accepted
	// and closed at once, without dialling the target. 0: never.
	RefuseEvery int
}

// Stats counts what the proxy did.
type Stats struct {
	Conns     int   // connections accepted (refused ones included)
	Refused   int   // closed at once by RefuseEvery, or because the target could not be dialled
	Resets    int   // connections reset by ResetUp/ResetDown/ResetAll
	Stalls    int   // connections stalled by Stall
	BytesUp   int64 // forwarded client -> server
	BytesDown int64 // forwarded server -> client
}

// Proxy forwards connections from Addr to a target, injecting faults.
type Proxy struct {
	ln     net.Listener
	target string
	wg     sync.WaitGroup

	mu     sync.Mutex
	cfg    Config
	n      int
	links  map[*link]struct{}
	closed bool
	stats  Stats
}

// Start listens on 127.0.0.1 (a free port) and forwards every connection
// to target (host:port) with the faults of c.
func Start(target string, c Config) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("faultproxy: listen: %w", err)
	}
	p := &Proxy{ln: ln, target: target, cfg: c, links: map[*link]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr is the "127.0.0.1:port" the proxy listens on.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// SetConfig replaces the configuration for connections accepted from now
// on; open ones keep theirs.
func (p *Proxy) SetConfig(c Config) {
	p.mu.Lock()
	p.cfg = c
	p.mu.Unlock()
}

// ResetAll resets every open connection now (both sides, RST), after the
// bytes already forwarded have left (see the package doc).
func (p *Proxy) ResetAll() {
	for _, l := range p.openLinks() {
		l.reset(true)
	}
}

// Close stops listening, closes every connection and waits for every
// goroutine of the proxy to end. It returns the listener's close error.
func (p *Proxy) Close() error {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	err := p.ln.Close()
	for _, l := range p.openLinks() {
		l.teardown(false, false)
	}
	p.wg.Wait()
	return err
}

// Stats returns a snapshot of the counters.
func (p *Proxy) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stats
}

func (p *Proxy) openLinks() []*link {
	p.mu.Lock()
	defer p.mu.Unlock()
	ls := make([]*link, 0, len(p.links))
	for l := range p.links {
		ls = append(ls, l)
	}
	return ls
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			time.Sleep(5 * time.Millisecond) // e.g. EMFILE: do not spin
			continue
		}
		p.mu.Lock()
		p.n++
		p.stats.Conns++
		id, cfg := p.n, p.cfg
		refuse := cfg.RefuseEvery > 0 && id%cfg.RefuseEvery == 0
		if refuse {
			p.stats.Refused++
		}
		p.mu.Unlock()
		if refuse {
			c.Close()
			continue
		}
		up, err := net.DialTimeout("tcp", p.target, 10*time.Second)
		if err != nil {
			p.mu.Lock()
			p.stats.Refused++
			p.mu.Unlock()
			c.Close()
			continue
		}
		l := newLink(p, id, cfg, c.(*net.TCPConn), up.(*net.TCPConn))
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			c.Close()
			up.Close()
			return
		}
		p.links[l] = struct{}{}
		p.wg.Add(4)
		p.mu.Unlock()
		l.run()
	}
}

func (p *Proxy) forget(l *link) {
	p.mu.Lock()
	delete(p.links, l)
	p.mu.Unlock()
}

func (p *Proxy) count(f func(*Stats)) {
	p.mu.Lock()
	f(&p.stats)
	p.mu.Unlock()
}

// RandomBytes returns a deterministic function for Config.ResetUp,
// ResetDown or Stall: for each connection number a value in [min, max],
// the same for the same seed and number whatever the order of calls.
func RandomBytes(seed int64, min, max int64) func(conn int) int64 {
	if max < min {
		min, max = max, min
	}
	return func(conn int) int64 {
		r := rand.New(rand.NewPCG(uint64(seed), uint64(conn)))
		return min + r.Int64N(max-min+1)
	}
}
