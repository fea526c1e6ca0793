package checkpoint

import (
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	bolt "go.etcd.io/bbolt"
)

func openGroup(t *testing.T) *groupCommit {
	t.Helper()
	db, err := bolt.Open(filepath.Join(t.TempDir(), "g.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if err := db.Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucket([]byte("b")); return err }); err != nil {
		t.Fatal(err)
	}
	return &groupCommit{db: db}
}

func put(k string) func(*bolt.Tx) error {
	return func(tx *bolt.Tx) error { return tx.Bucket([]byte("b")).Put([]byte(k), []byte("v")) }
}

// waitQueued returns when n writes wait in g's queue.
func waitQueued(g *groupCommit, n int) {
	for {
		g.mu.Lock()
		q := len(g.queue)
		g.mu.Unlock()
		if q == n {
			return
		}
		runtime.Gosched()
	}
}

func has(t *testing.T, g *groupCommit, k string) bool {
	t.Helper()
	var ok bool
	g.db.View(func(tx *bolt.Tx) error { ok = tx.Bucket([]byte("b")).Get([]byte(k)) != nil; return nil })
	return ok
}

// TestGroupCommitFolds: the writes that arrive while a commit is in
// progress all go into the next transaction, without a timer; an idle
// store commits a write at once.
func TestGroupCommitFolds(t *testing.T) {
	g := openGroup(t)
	inside, release := make(chan struct{}), make(chan struct{})
	first := make(chan error)
	go func() {
		first <- g.do(func(tx *bolt.Tx) error {
			close(inside)
			<-release
			return put("first")(tx)
		})
	}()
	<-inside
	const n = 10
	var mu sync.Mutex
	txs := map[int]int{} // tx id -> writes in it
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- g.do(func(tx *bolt.Tx) error {
				mu.Lock()
				txs[tx.ID()]++
				mu.Unlock()
				return put(fmt.Sprint("k", i))(tx)
			})
		}()
	}
	// Wait until all n are queued behind the blocked commit.
	waitQueued(g, n)
	close(release)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if len(txs) != 1 {
		t.Errorf("the %d writes queued during a commit went into %d transactions (%v), want 1", n, len(txs), txs)
	}
	for i := 0; i < n; i++ {
		if !has(t, g, fmt.Sprint("k", i)) {
			t.Errorf("k%d not committed", i)
		}
	}
	// The round that committed them may still be handing out results.
	g.active.Wait()
	if err := g.do(put("idle")); err != nil || !has(t, g, "idle") {
		t.Errorf("a write to an idle store: %v", err)
	}
	g.active.Wait()
	g.mu.Lock()
	running := g.running
	g.mu.Unlock()
	if running {
		t.Error("still running after the queue emptied")
	}
}

// TestGroupCommitFailure: a write that fails (or panics) gets its own
// error and leaves nothing behind; the writes it shared a transaction with
// commit.
func TestGroupCommitFailure(t *testing.T) {
	g := openGroup(t)
	inside, release := make(chan struct{}), make(chan struct{})
	go g.do(func(tx *bolt.Tx) error { close(inside); <-release; return nil })
	<-inside
	bad := errors.New("bad write")
	fns := map[string]func(*bolt.Tx) error{
		"a": put("a"),
		"fail": func(tx *bolt.Tx) error {
			put("fail")(tx)
			return bad
		},
		"b": put("b"),
		"panic": func(tx *bolt.Tx) error {
			put("panic")(tx)
			panic("boom")
		},
		"c": put("c"),
	}
	got := map[string]error{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for k, fn := range fns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := g.do(fn)
			mu.Lock()
			got[k] = err
			mu.Unlock()
		}()
	}
	waitQueued(g, len(fns))
	close(release)
	wg.Wait()
	for _, k := range []string{"a", "b", "c"} {
		if got[k] != nil || !has(t, g, k) {
			t.Errorf("%s: %v, committed %v", k, got[k], has(t, g, k))
		}
	}
	if !errors.Is(got["fail"], bad) || has(t, g, "fail") {
		t.Errorf("failing write: %v, committed %v", got["fail"], has(t, g, "fail"))
	}
	if got["panic"] == nil || !strings.Contains(got["panic"].Error(), "boom") || has(t, g, "panic") {
		t.Errorf("panicking write: %v, committed %v", got["panic"], has(t, g, "panic"))
	}
}

// TestGroupCommitClose: close waits for the writes queued before it and
// refuses later ones.
func TestGroupCommitClose(t *testing.T) {
	g := openGroup(t)
	inside, release := make(chan struct{}), make(chan struct{})
	go g.do(func(tx *bolt.Tx) error { close(inside); <-release; return nil })
	<-inside
	queued := make(chan error)
	go func() { queued <- g.do(put("queued")) }()
	waitQueued(g, 1)
	closed := make(chan struct{})
	go func() { g.close(); close(closed) }()
	close(release)
	<-closed
	if !has(t, g, "queued") {
		t.Error("a write queued before close was not committed when close returned")
	}
	if err := <-queued; err != nil {
		t.Error(err)
	}
	if err := g.do(put("late")); !errors.Is(err, errClosed) {
		t.Errorf("a write after close: %v", err)
	}
}
