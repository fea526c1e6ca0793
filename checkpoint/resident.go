package checkpoint

import (
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

// bbolt reads the checkpoint through a shared, read-only memory map of its
// file, and every page a lookup or a commit touches stays mapped into the
// process: file-backed pages, counted in the process's RSS although they
// are the kernel's page cache (and shared with it). A run of 100,000
// messages held 37 MB of them at its end (RssFile 45 MB, RssAnon 17 MB:
// peak RSS 58.6 MiB), and they grow with the checkpoint, against the
// README's bound of 64 MiB for any mailbox. So, at most once every
// residentEvery, after a commit, the mapping's pages are handed back
// (madvise MADV_DONTNEED on a shared file mapping: the next access maps
// the page again from the page cache; no data is dropped).
const residentEvery = time.Second

// resident paces dropResident.
type resident struct {
	mu   sync.Mutex
	last time.Time
}

// dropResident hands the memory map's pages back to the page cache, unless
// that was done less than residentEvery ago. Called by writers after a
// commit, from any goroutine.
func (s *Store) dropResident() {
	s.res.mu.Lock()
	due := time.Since(s.res.last) >= residentEvery
	if due {
		s.res.last = time.Now()
	}
	s.res.mu.Unlock()
	if !due {
		return
	}
	// A read transaction holds bbolt's mmap lock: the mapping cannot be
	// replaced (when the file grows) while it is advised, so the range is
	// the map's and nothing else's.
	s.db.View(func(tx *bolt.Tx) error {
		dontNeed(s.db.Info().Data, uintptr(tx.Size()))
		return nil
	})
}
