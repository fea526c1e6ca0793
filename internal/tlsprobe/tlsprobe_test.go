package tlsprobe

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"math/big"
	"net"
	"testing"
	"time"
)

// listen serves each connection with handle on 127.0.0.1 until the test
// ends.
func listen(t *testing.T, ln net.Listener, handle func(net.Conn)) string {
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); handle(c) }()
		}
	}()
	return ln.Addr().String()
}

func tlsListener(t *testing.T) net.Listener {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), DNSNames: []string{"localhost"}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}})
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

func plainListener(t *testing.T) net.Listener {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// waitGreeting reads from c as a client waiting for a greeting would, and
// returns what came or the error that ended the wait.
func waitGreeting(c net.Conn, limit time.Duration) (string, error) {
	c.SetReadDeadline(time.Now().Add(limit))
	buf := make([]byte, 64)
	n, err := c.Read(buf)
	return string(buf[:n]), err
}

// TestProbe: a TLS port is found out and the waiting connection closed; a
// plaintext server that is slow to greet, or one that stays silent, is not
// taken for TLS; a connection that already heard from its server is never
// probed.
func TestProbe(t *testing.T) {
	hold := func(c net.Conn) { c.Read(make([]byte, 1)) } // wait for the client; a TLS server does the same
	t.Run("tls", func(t *testing.T) {
		addr := listen(t, tlsListener(t), func(c net.Conn) { c.(*tls.Conn).Handshake(); hold(c) })
		raw, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer raw.Close()
		p := Start(context.Background(), addr, "localhost", raw, 50*time.Millisecond, func() bool { return false })
		start := time.Now()
		_, err = waitGreeting(raw, 10*time.Second)
		if err == nil || time.Since(start) > 5*time.Second || !p.FoundTLS() {
			t.Fatalf("the wait ended with %v after %v; want the probe to close it", err, time.Since(start))
		}
	})
	t.Run("slow greeting", func(t *testing.T) {
		addr := listen(t, plainListener(t), func(c net.Conn) {
			time.Sleep(300 * time.Millisecond)
			c.Write([]byte("* OK hi\r\n"))
			hold(c)
		})
		raw, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer raw.Close()
		p := Start(context.Background(), addr, "localhost", raw, 50*time.Millisecond, func() bool { return false })
		if got, err := waitGreeting(raw, 5*time.Second); err != nil || got != "* OK hi\r\n" || p.FoundTLS() {
			t.Fatalf("got %q, %v; found TLS %v", got, err, p.FoundTLS())
		}
	})
	t.Run("silent", func(t *testing.T) {
		addr := listen(t, plainListener(t), hold)
		raw, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer raw.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		defer cancel()
		p := Start(ctx, addr, "localhost", raw, 50*time.Millisecond, func() bool { return false })
		if _, err := waitGreeting(raw, time.Second); !isTimeout(err) || p.FoundTLS() {
			t.Fatalf("wait ended with %v, found TLS %v; want the read's own timeout", err, p.FoundTLS())
		}
	})
	t.Run("heard", func(t *testing.T) {
		probed := make(chan struct{}, 1)
		addr := listen(t, tlsListener(t), func(c net.Conn) { probed <- struct{}{}; hold(c) })
		raw, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer raw.Close()
		<-probed // raw's own connection
		p := Start(context.Background(), addr, "localhost", raw, 10*time.Millisecond, func() bool { return true })
		select {
		case <-probed:
			t.Fatal("probed a connection that had heard from its server")
		case <-time.After(300 * time.Millisecond):
		}
		if p.FoundTLS() {
			t.Fatal("found TLS without probing")
		}
	})
	if (*Probe)(nil).FoundTLS() {
		t.Error("a nil probe found TLS")
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}
