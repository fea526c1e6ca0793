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
// per connection, and a connection whose last user released it serves
// another key.
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

// TestSharedKeepsIdleBound: a released connection stays bound to its key
// (the next user of that key gets it without setup, its folder still
// selected); when max connections are held another key rebinds the least
// recently used idle one; an idle connection that broke is discarded and
// replaced; the pool's spare slot stays free for metadata work.
func TestSharedKeepsIdleBound(t *testing.T) {
	cfg := startMem(t)
	pool := NewPool(cfg, 3)
	defer pool.Close()
	sh := NewShared(pool, 2, 1)
	ctx := context.Background()
	setups := map[string]int{}
	setup := func(key string) func(*Conn) error {
		return func(c *Conn) error {
			setups[key]++
			_, err := c.Select(ctx, key, true)
			return err
		}
	}
	acquire := func(key string) *SharedConn {
		t.Helper()
		sc, err := sh.Acquire(ctx, key, setup(key))
		if err != nil {
			t.Fatal(err)
		}
		return sc
	}
	a := acquire("A")
	sh.Release(a, nil)
	a2 := acquire("A")
	if a2.Conn != a.Conn || setups["A"] != 1 || a2.Selected != "A" {
		t.Fatalf("A after release: same connection %v, setups %v, selected %q", a2.Conn == a.Conn, setups, a2.Selected)
	}
	sh.Release(a2, nil)
	b := acquire("B") // one connection held, max 2: a new one
	if b.Conn == a.Conn {
		t.Fatal("B took A's idle connection while a new one could be opened")
	}
	sh.Release(b, nil)
	// Both held connections idle: the spare slot is still there.
	c, err := pool.Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	pool.Put(c)
	inbox := acquire("INBOX") // max held: rebinds the older idle one (A's)
	if inbox.Conn != a.Conn || setups["INBOX"] != 1 || inbox.Selected != "INBOX" {
		t.Fatalf("INBOX did not rebind A's idle connection (setups %v, selected %q)", setups, inbox.Selected)
	}
	sh.Release(inbox, nil)
	// B's idle connection breaks: the next key gets a fresh one.
	b.Conn.Client.Close()
	for !b.Broken() {
		time.Sleep(time.Millisecond)
	}
	a3 := acquire("A") // B's slot was freed: a new connection, INBOX's stays
	if a3.Conn == b.Conn || a3.Conn == inbox.Conn || a3.Broken() {
		t.Fatalf("A after B's connection broke: B's %v, INBOX's %v", a3.Conn == b.Conn, a3.Conn == inbox.Conn)
	}
	sh.Release(a3, nil)
	b2 := acquire("B")
	if b2.Conn == b.Conn || b2.Broken() || b2.Selected != "B" {
		t.Fatalf("B after its connection broke: old connection %v, selected %q", b2.Conn == b.Conn, b2.Selected)
	}
	sh.Release(b2, nil)
}

// TestPoolGetNew: GetNew takes an idle connection that has the folder
// selected; otherwise it dials while a slot has no connection, so the
// idle connection stays for the next Get (metadata work), and with every
// slot connected it takes the idle one. Shared opens its connections that
// way.
func TestPoolGetNew(t *testing.T) {
	cfg := startMem(t)
	pool := NewPool(cfg, 3)
	defer pool.Close()
	ctx := context.Background()
	warm, err := pool.Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	pool.Put(warm)
	sh := NewShared(pool, 2, 1)
	a, err := sh.Acquire(ctx, "A", nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := sh.Acquire(ctx, "B", nil)
	if err != nil {
		t.Fatal(err)
	}
	if a.Conn == warm || b.Conn == warm {
		t.Fatal("Shared took the pool's idle connection while it could dial")
	}
	if c, err := pool.Get(ctx); err != nil || c != warm {
		t.Fatalf("Get after Shared opened its connections: %v (the idle one: %v)", err, c == warm)
	} else {
		pool.Put(c)
	}
	sh.Release(a, net.ErrClosed) // discarded: its slot is empty again
	if c, err := pool.GetNew(ctx, "INBOX"); err != nil || c == warm {
		t.Fatalf("GetNew with an empty slot: %v (the idle one: %v)", err, c == warm)
	} else {
		pool.Put(c)
	}
	// Every slot connected: GetNew takes an idle connection.
	c1, err := pool.GetNew(ctx, "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	c2, err := pool.GetNew(ctx, "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	if c1 != warm && c2 != warm {
		t.Fatal("GetNew with every slot connected dialled instead of taking an idle connection")
	}
	pool.Put(c1)
	pool.Put(c2)
	sh.Release(b, nil)

	// The idle connection with the folder selected comes first, though a
	// slot is empty.
	pool2 := NewPool(cfg, 3)
	defer pool2.Close()
	lister, err := pool2.Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lister.Select(ctx, "A", true); err != nil {
		t.Fatal(err)
	}
	pool2.Put(lister)
	sh2 := NewShared(pool2, 2, 1)
	a2, err := sh2.Acquire(ctx, "A", func(c *Conn) error { _, err := c.Select(ctx, "A", true); return err })
	if err != nil {
		t.Fatal(err)
	}
	if a2.Conn != lister {
		t.Fatal("Acquire(A) dialled instead of taking the idle connection that has A selected")
	}
	sh2.Release(a2, nil)
}

// TestSharedSetupPanics: a setup that panics gives its connection and its
// place back: the next callers for that key open a connection and share it
// rather than wait for the one that never came.
func TestSharedSetupPanics(t *testing.T) {
	cfg := startMem(t)
	pool := NewPool(cfg, 3)
	defer pool.Close()
	sh := NewShared(pool, 2, 4)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	func() {
		defer func() {
			if recover() == nil {
				t.Fatal("setup's panic was swallowed")
			}
		}()
		sh.Acquire(ctx, "A", func(*Conn) error { panic("bad setup") })
	}()
	a1, err := sh.Acquire(ctx, "A", nil)
	if err != nil {
		t.Fatalf("Acquire after a panicking setup: %v", err)
	}
	a2, err := sh.Acquire(ctx, "A", nil)
	if err != nil {
		t.Fatalf("second Acquire after a panicking setup: %v", err)
	}
	if a1 != a2 {
		t.Fatal("the two users of A did not share a connection")
	}
	sh.Release(a1, nil)
	sh.Release(a2, nil)
	// Both slots of max are usable: the panicking one was given back.
	b, err := sh.Acquire(ctx, "B", nil)
	if err != nil {
		t.Fatal(err)
	}
	sh.Release(b, nil)
}
