package imapconn

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"
)

func startMem(t *testing.T) *Config {
	mem := imapmemserver.New()
	u := imapmemserver.NewUser("u", "p")
	u.Create("INBOX", nil)
	u.Create("A", nil)
	u.Create("B", nil)
	mem.AddUser(u)
	srv := imapserver.New(&imapserver.Options{
		NewSession: func(*imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			return mem.NewSession(), nil, nil
		},
		Caps:         imap.CapSet{imap.CapIMAP4rev1: {}},
		InsecureAuth: true,
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	host, port, _ := net.SplitHostPort(ln.Addr().String())
	return &Config{Endpoint: Endpoint{Host: host, Port: port, User: "u"}, InsecurePlaintext: true, Password: "p", IdleTimeout: 10 * time.Second}
}

// TestShared: users of one key share a connection up to depth, other keys
// get their own, no more than max connections are held, setup runs once
// per connection, and a connection is back in the pool once its last user
// released it.
func TestShared(t *testing.T) {
	cfg := startMem(t)
	pool := NewPool(cfg, 3)
	defer pool.Close()
	sh := NewShared(pool, 2, 2)
	ctx := context.Background()
	setups := map[string]int{}
	var mu sync.Mutex
	setup := func(key string) func(*Conn) error {
		return func(c *Conn) error {
			mu.Lock()
			setups[key]++
			mu.Unlock()
			_, err := c.Select(ctx, key, true)
			return err
		}
	}
	a1, err := sh.Acquire(ctx, "A", setup("A"))
	if err != nil {
		t.Fatal(err)
	}
	a2, err := sh.Acquire(ctx, "A", setup("A"))
	if err != nil {
		t.Fatal(err)
	}
	if a1 != a2 || setups["A"] != 1 {
		t.Fatalf("second user of A did not join the first connection (setups %v)", setups)
	}
	a3, err := sh.Acquire(ctx, "A", setup("A")) // depth reached: a new connection
	if err != nil {
		t.Fatal(err)
	}
	if a3 == a1 || setups["A"] != 2 {
		t.Fatalf("third user of A joined a full connection (setups %v)", setups)
	}
	// max (2) reached: B waits until a connection is free.
	got := make(chan *SharedConn)
	go func() {
		b, err := sh.Acquire(ctx, "B", setup("B"))
		if err != nil {
			t.Error(err)
		}
		got <- b
	}()
	// Metadata work still gets the pool's spare slot.
	c, err := pool.Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	pool.Put(c)
	select {
	case <-got:
		t.Fatal("B got a connection beyond max")
	case <-time.After(100 * time.Millisecond):
	}
	sh.Release(a1, nil)
	select {
	case <-got:
		t.Fatal("B got a connection that still has a user")
	case <-time.After(100 * time.Millisecond):
	}
	sh.Release(a2, nil)
	var b *SharedConn
	select {
	case b = <-got:
	case <-time.After(5 * time.Second):
		t.Fatal("B never got the released connection")
	}
	if b.Selected != "B" || setups["B"] != 1 {
		t.Fatalf("B's connection not set up: selected %q, setups %v", b.Selected, setups)
	}
	// A pipelined command on a shared connection works for both users.
	done := make(chan error, 2)
	for i := 0; i < 2; i++ {
		go func() { done <- b.Do(ctx, func() error { return b.Noop().Wait() }) }()
	}
	for i := 0; i < 2; i++ {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	sh.Release(b, nil)
	sh.Release(a3, nil)
	// A context that ends while waiting returns its error.
	x, _ := sh.Acquire(ctx, "A", nil)
	y, _ := sh.Acquire(ctx, "B", nil)
	cctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := sh.Acquire(cctx, "INBOX", nil); err != context.DeadlineExceeded {
		t.Fatalf("Acquire with an ended context: %v", err)
	}
	sh.Release(x, nil)
	sh.Release(y, net.ErrClosed) // not an IMAP error: discarded
	if !y.Broken() {
		t.Fatal("connection released with a network error was kept")
	}
}
