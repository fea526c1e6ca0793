package faultproxy

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// server is a test TCP server; handle runs per connection.
func server(t *testing.T, handle func(c *net.TCPConn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				handle(c.(*net.TCPConn))
			}()
		}
	}()
	return ln.Addr().String()
}

func echo(c *net.TCPConn) { io.Copy(c, c) }

// received is what a recording server read on one connection.
type received struct {
	data []byte
	err  error // the error that ended reading; nil for EOF
}

func recorder(t *testing.T) (string, <-chan received) {
	ch := make(chan received, 16)
	addr := server(t, func(c *net.TCPConn) {
		data, err := io.ReadAll(c)
		ch <- received{data, err}
	})
	return addr, ch
}

func start(t *testing.T, target string, c Config) *Proxy {
	t.Helper()
	p, err := Start(target, c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func dial(t *testing.T, p *Proxy) *net.TCPConn {
	t.Helper()
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c.(*net.TCPConn)
}

func randomBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 1))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func isReset(err error) bool { return errors.Is(err, syscall.ECONNRESET) }

func wait[T any](t *testing.T, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatal("timed out")
		panic("unreachable")
	}
}

// TestForwardExact: several connections at once, with latency, jitter and
// odd write sizes, get every byte back in order.
func TestForwardExact(t *testing.T) {
	p := start(t, server(t, echo), Config{Latency: 2 * time.Millisecond, Jitter: 3 * time.Millisecond})
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.Dial("tcp", p.Addr())
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			data := randomBytes(300_000+i*7919, uint64(i))
			go func() {
				for rest := data; len(rest) > 0; {
					n := min(len(rest), 1+int(rest[0])*37)
					c.Write(rest[:n])
					rest = rest[n:]
				}
				c.(*net.TCPConn).CloseWrite()
			}()
			got, err := io.ReadAll(c)
			if err != nil || !bytes.Equal(got, data) {
				t.Errorf("conn %d: %d of %d bytes back, equal %v, err %v", i, len(got), len(data), bytes.Equal(got, data), err)
			}
		}()
	}
	wg.Wait()
	if st := p.Stats(); st.BytesUp != st.BytesDown || st.Conns != 4 {
		t.Errorf("stats %+v", st)
	}
}

func TestLatency(t *testing.T) {
	p := start(t, server(t, echo), Config{Latency: 30 * time.Millisecond})
	c := dial(t, p)
	begin := time.Now()
	c.Write([]byte("ping"))
	buf := make([]byte, 4)
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatal(err)
	}
	if rtt := time.Since(begin); rtt < 60*time.Millisecond {
		t.Errorf("round trip %v, want >= 60ms", rtt)
	}
}

// TestResetUp: the server gets exactly the first N bytes, then both sides
// see a reset.
func TestResetUp(t *testing.T) {
	addr, got := recorder(t)
	p := start(t, addr, Config{ResetUp: func(int) int64 { return 1000 }})
	c := dial(t, p)
	data := randomBytes(5000, 7)
	c.Write(data) // may fail part way: the reset can come first
	r := wait(t, got)
	if !bytes.Equal(r.data, data[:1000]) || !isReset(r.err) {
		t.Fatalf("server got %d bytes (prefix ok %v), err %v; want 1000 and ECONNRESET", len(r.data), bytes.HasPrefix(data, r.data), r.err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 10)); !isReset(err) {
		t.Errorf("client read: %v, want ECONNRESET", err)
	}
	if st := p.Stats(); st.Resets != 1 || st.BytesUp != 1000 {
		t.Errorf("stats %+v", st)
	}
}

// TestResetDown: the client gets exactly the first N bytes the server
// sends, then both sides see a reset.
func TestResetDown(t *testing.T) {
	data := randomBytes(100_000, 9)
	serverErr := make(chan error, 1)
	addr := server(t, func(c *net.TCPConn) {
		// Wait for the client's first byte: a reset that came before its
		// connect() returned would fail the dial itself.
		if _, err := c.Read(make([]byte, 1)); err != nil {
			serverErr <- err
			return
		}
		c.Write(data)
		_, err := c.Read(make([]byte, 1))
		serverErr <- err
	})
	p := start(t, addr, Config{ResetDown: RandomBytes(42, 1, 50_000)})
	want := RandomBytes(42, 1, 50_000)(1)
	c := dial(t, p)
	c.Write([]byte("!"))
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(c)
	if !bytes.Equal(got, data[:want]) || !isReset(err) {
		t.Fatalf("client got %d bytes (want %d), err %v; want ECONNRESET", len(got), want, err)
	}
	if err := wait(t, serverErr); !isReset(err) {
		t.Errorf("server: %v, want ECONNRESET", err)
	}
}

func TestRandomBytes(t *testing.T) {
	f, g := RandomBytes(1, 10, 20), RandomBytes(1, 10, 20)
	seen := map[int64]bool{}
	for i := 1; i <= 200; i++ {
		v := f(i)
		if v < 10 || v > 20 || v != g(i) || v != f(i) {
			t.Fatalf("conn %d: %d, %d", i, v, g(i))
		}
		seen[v] = true
	}
	if len(seen) < 8 {
		t.Errorf("only %d distinct values", len(seen))
	}
	if RandomBytes(2, 10, 20)(1) == f(1) && RandomBytes(3, 10, 20)(1) == f(1) && RandomBytes(4, 10, 20)(1) == f(1) {
		t.Error("seed has no effect")
	}
}

// TestBandwidth: 150 kB at 100 kB/s takes about 1.5 s; asserted loosely.
func TestBandwidth(t *testing.T) {
	data := randomBytes(150_000, 3)
	addr := server(t, func(c *net.TCPConn) { c.Write(data) })
	p := start(t, addr, Config{BytesPerSec: 100_000})
	c := dial(t, p)
	begin := time.Now()
	got, err := io.ReadAll(c)
	d := time.Since(begin)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("got %d bytes, %v", len(got), err)
	}
	if d < 700*time.Millisecond || d > 30*time.Second {
		t.Errorf("150 kB at 100 kB/s took %v", d)
	}
	t.Logf("150 kB at 100 kB/s: %v", d)
}

// TestStall: after the stall point nothing moves, but both sockets stay
// open: no EOF, no reset, on either side.
func TestStall(t *testing.T) {
	serverEnd := make(chan error, 1)
	addr := server(t, func(c *net.TCPConn) {
		buf := make([]byte, 100)
		n, _ := io.ReadFull(c, buf[:50])
		c.Write(buf[:n])
		_, err := c.Read(buf) // blocks while stalled
		serverEnd <- err
	})
	p := start(t, addr, Config{Stall: func(int) int64 { return 100 }})
	c := dial(t, p)
	c.Write(bytes.Repeat([]byte("a"), 50))
	if _, err := io.ReadFull(c, make([]byte, 50)); err != nil {
		t.Fatalf("before the stall point: %v", err)
	}
	c.Write([]byte("more"))
	c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	_, err := c.Read(make([]byte, 1))
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("client read on a stalled link: %v, want a timeout", err)
	}
	select {
	case err := <-serverEnd:
		t.Fatalf("server saw the connection end while stalled: %v", err)
	default:
	}
	if st := p.Stats(); st.Stalls != 1 || st.Resets != 0 {
		t.Errorf("stats %+v", st)
	}
	p.Close() // ends the stalled link
	if err := wait(t, serverEnd); err == nil {
		t.Error("server: no error after Close")
	}
}

func TestRefuseEvery(t *testing.T) {
	p := start(t, server(t, echo), Config{RefuseEvery: 2})
	for i := 1; i <= 4; i++ {
		c := dial(t, p)
		c.Write([]byte("x"))
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := c.Read(make([]byte, 1))
		if refused := i%2 == 0; refused != (n == 0) {
			t.Errorf("conn %d: read %d, %v", i, n, err)
		}
		c.Close()
	}
	if st := p.Stats(); st.Refused != 2 || st.Conns != 4 {
		t.Errorf("stats %+v", st)
	}
}

func TestResetAllAndSetConfig(t *testing.T) {
	p := start(t, server(t, echo), Config{})
	var cs []*net.TCPConn
	for range 3 {
		c := dial(t, p)
		c.Write([]byte("hi"))
		if _, err := io.ReadFull(c, make([]byte, 2)); err != nil {
			t.Fatal(err)
		}
		cs = append(cs, c)
	}
	p.ResetAll()
	for i, c := range cs {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Read(make([]byte, 1)); !isReset(err) {
			t.Errorf("conn %d: %v, want ECONNRESET", i, err)
		}
	}
	if st := p.Stats(); st.Resets != 3 {
		t.Errorf("stats %+v", st)
	}
	// New connections get the new config.
	p.SetConfig(Config{ResetUp: func(int) int64 { return 1 }})
	c := dial(t, p)
	c.Write([]byte("xy"))
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadAll(c); !isReset(err) {
		t.Errorf("after SetConfig: %v, want ECONNRESET", err)
	}
}

// TestCloseNoLeak: Close ends every goroutine of the proxy, whatever state
// its connections are in.
func TestCloseNoLeak(t *testing.T) {
	before := runtime.NumGoroutine()
	addr := server(t, echo)
	p, err := Start(addr, Config{Latency: time.Millisecond, BytesPerSec: 1 << 20, Stall: func(n int) int64 {
		if n == 2 {
			return 10
		}
		return 0
	}})
	if err != nil {
		t.Fatal(err)
	}
	var cs []net.Conn
	for i := range 4 {
		c, err := net.Dial("tcp", p.Addr())
		if err != nil {
			t.Fatal(err)
		}
		cs = append(cs, c)
		switch i {
		case 0: // idle
		case 1: // stalled
			c.Write(bytes.Repeat([]byte("s"), 20))
		case 2: // half-closed
			c.(*net.TCPConn).CloseWrite()
		case 3: // busy
			go c.Write(make([]byte, 4<<20))
		}
	}
	time.Sleep(100 * time.Millisecond)
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if stacks := proxyGoroutines(); stacks != "" {
		t.Fatalf("goroutines left after Close:\n%s", stacks)
	}
	for _, c := range cs {
		c.Close()
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before+2 && time.Now().Before(deadline) { // +2: the echo server's listener goroutine, slack
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before+2 {
		t.Errorf("%d goroutines, %d before", n, before)
	}
}

// proxyGoroutines returns the stacks of goroutines running this package's
// non-test code.
func proxyGoroutines() string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "faultproxy.(*link)") || strings.Contains(g, "faultproxy.(*Proxy)") {
			out = append(out, g)
		}
	}
	return strings.Join(out, "\n\n")
}
