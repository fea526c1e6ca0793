package migrate

import (
	"context"
	"sync"
)

// Storage order. A folder's messages are appended to the destination in
// the order the source lists them (IMAP: UID order; mbox: file order), so
// that the copies' UIDs — a client's "order received" — follow the
// source's, while fetches and appends still run in parallel. Three parts
// keep it:
//
//  1. interleave hands a folder's fetch units to the fetchers in listing
//     order, one chunk of a folder at a time (it merges a folder's
//     chunks), and gives each unit its folder's next ticket (turns); a
//     folder with its limit of messages in flight (its appender is behind,
//     appending a large message say), or of units handed out and not
//     passed on (a slow fetch), waits while the others are served, so that
//     the fetchers do not all end up waiting on one folder;
//  2. a fetcher hands a unit's messages on to the appenders only when
//     every earlier unit of its folder has been handed on (turns.await);
//  3. every message of one source folder in flight goes to the appender
//     given the folder when it came into flight (the least loaded one),
//     which appends its batches one after another; two source folders
//     merged into one destination folder are appended to it in parallel,
//     each in its order.
//
// A sink without a storage order (Orderless: a Maildir) is spared all
// this: its appenders share one queue, as they take whatever is waiting.
//
// A unit fetched slowly (a large message) holds back its folder's later
// units — the fetchers of the rest of its share (the fetchers divided
// among the window's folders, 2 at least: fixed, since a share handed out
// cannot be taken back when other folders come) wait, their bodies inside
// the memory budget — but not other folders'. No cycle of waits exists: the earliest unit of
// a folder that is not handed on yet waits for nothing but its own fetch
// and the appenders, which never wait for fetchers. What the order cannot
// survive: an append whose outcome is unknown is settled later
// (settle.go) and may be sent again after later messages; a message the
// destination refused in a batch is appended again alone, after the
// batch's others; and a message skipped by one run and copied by the
// next comes after the others.

// turns hands out and enforces the tickets of the units of each source
// folder, gives each folder in flight its appender and bounds the
// messages of a folder in flight. Safe for concurrent use: ticket, full
// and freedCh are called by interleave (one goroutine, in dispatch order),
// await, done and left by the fetchers, left by the appenders.
type turns struct {
	mu        sync.Mutex
	folders   map[string]*folderTurn // folders with messages not appended yet
	appenders int                    // set before the pipeline starts (0: one)
	limit     int                    // messages of one folder in flight at most (0: no limit)
	ahead     int                    // units of one folder handed out, not passed on, at most (0: no limit)
	load      []int                  // folders in flight per appender
	freed     chan struct{}          // closed (and replaced) when a message leaves or a unit is passed on
}

// folderTurn is one source folder's sequence of units.
type folderTurn struct {
	name     string
	appender int           // where every message of the folder goes
	issued   int           // tickets handed out
	next     int           // the ticket whose turn it is
	moved    chan struct{} // closed (and replaced) when next moves
	inflight int           // messages of issued units not through the appender yet
}

// ticket gives the next unit of folder, of n messages, its place. A
// folder new in flight goes to the appender with the fewest folders, so
// that the folders in flight are appended to in parallel.
func (t *turns) ticket(folder string, n int) (*folderTurn, int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.init()
	ft := t.folders[folder]
	if ft == nil {
		ft = &folderTurn{name: folder, moved: make(chan struct{})}
		for a, l := range t.load {
			if l < t.load[ft.appender] {
				ft.appender = a
			}
		}
		t.load[ft.appender]++
		t.folders[folder] = ft
	}
	ft.inflight += n
	k := ft.issued
	ft.issued++
	return ft, k
}

func (t *turns) init() {
	if t.folders == nil {
		t.folders = map[string]*folderTurn{}
		t.load = make([]int, max(t.appenders, 1))
		t.freed = make(chan struct{})
	}
}

// full reports whether folder has its limit of messages in flight (its
// appender is behind) or of units handed out and not passed on (a fetch
// of it is slow: the fetchers of its later units would only wait for
// it): interleave serves other folders meanwhile rather than have the
// fetchers wait on one. freedCh's channel, to wait on when every folder
// is full, is closed when that changes (taken before asking full, it
// misses no change).
func (t *turns) full(folder string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	ft := t.folders[folder]
	if ft == nil {
		return false
	}
	return t.limit > 0 && ft.inflight >= t.limit || t.ahead > 0 && ft.issued-ft.next >= t.ahead
}

// freedCh returns the channel closed when a message next leaves or a unit
// is next passed on.
func (t *turns) freedCh() <-chan struct{} {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.init()
	return t.freed
}

// await returns when it is ticket n's turn, or ctx's error.
func (t *turns) await(ctx context.Context, ft *folderTurn, n int) error {
	for {
		t.mu.Lock()
		next, moved := ft.next, ft.moved
		t.mu.Unlock()
		if next == n {
			return nil
		}
		select {
		case <-moved:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// done ends ticket n's turn (the caller had it).
func (t *turns) done(ft *folderTurn, n int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if ft.next != n {
		return
	}
	ft.next++
	close(ft.moved)
	ft.moved = make(chan struct{})
	close(t.freed)
	t.freed = make(chan struct{})
	t.forget(ft)
}

// left counts a message of ft out of flight: through its appender
// (appended, handed to the settler, or left by a stop), or not handed to
// it (skipped, filtered).
func (t *turns) left(ft *folderTurn) {
	t.mu.Lock()
	defer t.mu.Unlock()
	ft.inflight--
	close(t.freed)
	t.freed = make(chan struct{})
	t.forget(ft)
}

// forget drops a folder none of whose messages is in flight: an account
// of 100,000 folders holds only those in flight, and the folder's next
// unit may go to another appender, since this one holds none of its
// messages any more. Called with t.mu held.
func (t *turns) forget(ft *folderTurn) {
	if ft.next == ft.issued && ft.inflight <= 0 && t.folders[ft.name] == ft {
		delete(t.folders, ft.name)
		t.load[ft.appender]--
	}
}
