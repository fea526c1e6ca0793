// Package tlsprobe finds out whether a port speaks TLS while a plaintext
// client (imap://, pop3://) waits for a greeting there. A server on an
// implicit-TLS port (993, 995) waits for the client's handshake as the
// client waits for its greeting: without the probe the user who wrote
// imap://host:993 would wait the whole dial timeout, and then its
// retries, for a hint. Used by internal/imapconn and internal/pop3conn,
// each on the goroutine that dials.
package tlsprobe

import (
	"context"
	"crypto/tls"
	"net"
	"sync"
	"time"
)

// After is how long a plaintext connection waits for the server's
// greeting before a second connection asks the port for a TLS handshake
// (at most a third of the dial timeout: see Wait).
const After = 2 * time.Second

// Wait is how long to wait before probing, for a dial timeout dt.
func Wait(dt time.Duration) time.Duration { return min(After, dt/3) }

// Probe is the probe of one dial. Only a completed TLS handshake is taken
// as an answer: a server that is merely slow to greet (a reverse DNS
// lookup, a tarpit) goes on being waited for.
type Probe struct {
	mu     sync.Mutex
	over   bool // the wait for the greeting ended: the probe must not close raw
	isTLS  bool
	cancel context.CancelFunc
}

// Start starts the probe of addr (host for SNI) for the connection raw,
// which it closes — ending the wait for the greeting — if the port speaks
// TLS while raw has received nothing (heard false) after wait. The probe
// sends a ClientHello only, without verifying the certificate (it learns
// nothing but "TLS is spoken here"), and closes its connection; it ends
// with ctx or FoundTLS. heard is called on the probe's goroutine.
func Start(ctx context.Context, addr, host string, raw net.Conn, wait time.Duration, heard func() bool) *Probe {
	pctx, cancel := context.WithCancel(ctx)
	p := &Probe{cancel: cancel}
	go func() {
		t := time.NewTimer(wait)
		defer t.Stop()
		select {
		case <-t.C:
		case <-pctx.Done():
			return
		}
		if heard() {
			return
		}
		conn, err := (&net.Dialer{}).DialContext(pctx, "tcp", addr)
		if err != nil {
			return
		}
		defer conn.Close()
		tc := tls.Client(conn, &tls.Config{ServerName: host, InsecureSkipVerify: true}) // a probe: no data is sent
		if tc.HandshakeContext(pctx) != nil {
			return
		}
		p.mu.Lock()
		defer p.mu.Unlock()
		if !p.over && !heard() {
			p.isTLS = true
			raw.Close()
		}
	}()
	return p
}

// FoundTLS ends the probe and reports whether it found the port speaking
// TLS (and closed the connection). Called once, by the dialer, when the
// wait for the greeting is over; a nil probe found nothing.
func (p *Probe) FoundTLS() bool {
	if p == nil {
		return false
	}
	p.cancel()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.over = true
	return p.isTLS
}
