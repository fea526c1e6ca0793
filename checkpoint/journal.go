package checkpoint

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/mailhaul/mailhaul/migrate"
)

// The in-flight journal: a small file beside the checkpoint that tells the
// next run which appends a dead run may have had on the wire, and when it
// was last alive (see migrate/settle.go for why both matter).
//
// Layout, all integers big-endian:
//
//	header   "MHJ1", 4 bytes zero, 8 bytes: unix nanoseconds of the last heartbeat
//	carried  4 bytes count n, then n x 32-byte SHA-256 of intent keys that an
//	         earlier run still had in flight and that are still pending
//	slots    from offset slotBase(n): per appender slot, 32-byte SHA-256 of
//	         the intent key (all zero: empty) and 8 bytes unix nanoseconds
//
// It is written with plain pwrite and never fsynced: it must survive the
// death of the process (the page cache does), not a power loss — after a
// power loss the next run starts long after the settling delay anyway. The
// slots of a batch (an appender's MULTIAPPEND) are written with one pwrite:
// the journal keeps a copy of its slots in memory, and a write covers the
// slots from the first changed to the last. The heartbeat is rewritten
// every heartbeatEvery by a goroutine that Close stops.

const (
	journalMagic   = "MHJ1"
	slotSize       = 40
	heartbeatEvery = 250 * time.Millisecond
)

type journal struct {
	f         *os.File
	base      int64 // offset of slot 0
	prev      map[[32]byte]bool
	lastAlive time.Time
	mu        sync.Mutex // guards slots and orders the writes of the slots
	slots     []byte     // the slots as written, slotSize bytes each
	stop      chan struct{}
	done      chan struct{}
}

func keyHash(key string) [32]byte { return sha256.Sum256([]byte(key)) }

// openJournal reads what the previous run left at path, keeps the entries
// of intents still pending, and starts this run's journal and heartbeat.
func openJournal(path string, pending []migrate.Intent) (*journal, error) {
	j := &journal{prev: map[[32]byte]bool{}, stop: make(chan struct{}), done: make(chan struct{})}
	old, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("read in-flight journal %s: %w", path, err)
	}
	still := map[[32]byte]bool{}
	for _, in := range pending {
		still[keyHash(in.Key())] = true
	}
	if len(old) >= 20 && string(old[:4]) == journalMagic {
		j.lastAlive = time.Unix(0, int64(binary.BigEndian.Uint64(old[8:16])))
		n := int(binary.BigEndian.Uint32(old[16:20]))
		off := 20
		for i := 0; i < n && off+32 <= len(old); i++ {
			var h [32]byte
			copy(h[:], old[off:off+32])
			off += 32
			if still[h] {
				j.prev[h] = true
			}
		}
		for ; off+slotSize <= len(old); off += slotSize {
			var h [32]byte
			copy(h[:], old[off:off+32])
			if h != ([32]byte{}) && still[h] {
				j.prev[h] = true
			}
		}
	}
	buf := make([]byte, 20, 20+32*len(j.prev))
	copy(buf, journalMagic)
	binary.BigEndian.PutUint64(buf[8:16], uint64(time.Now().UnixNano()))
	binary.BigEndian.PutUint32(buf[16:20], uint32(len(j.prev)))
	for h := range j.prev {
		buf = append(buf, h[:]...)
	}
	j.base = int64(len(buf))
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, buf, 0o600); err != nil {
		return nil, fmt.Errorf("write in-flight journal %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return nil, fmt.Errorf("write in-flight journal %s: %w", path, err)
	}
	if j.f, err = os.OpenFile(path, os.O_RDWR, 0o600); err != nil {
		return nil, fmt.Errorf("open in-flight journal %s: %w", path, err)
	}
	go j.heartbeat()
	return j, nil
}

func (j *journal) heartbeat() {
	defer close(j.done)
	t := time.NewTicker(heartbeatEvery)
	defer t.Stop()
	var b [8]byte
	for {
		select {
		case <-j.stop:
			return
		case now := <-t.C:
			binary.BigEndian.PutUint64(b[:], uint64(now.UnixNano()))
			j.f.WriteAt(b[:], 8)
		}
	}
}

func (j *journal) close() {
	close(j.stop)
	<-j.done
	j.f.Close()
}

// set fills the given slots — keys[k] into slots[k], "" empties one — and
// writes them with one pwrite of the range they span (slots between them
// are written as they already are).
func (j *journal) set(slots []int, keys []string) error {
	if len(slots) == 0 {
		return nil
	}
	now := uint64(time.Now().UnixNano())
	j.mu.Lock()
	defer j.mu.Unlock()
	lo, hi := slots[0], slots[0]
	for k, slot := range slots {
		if slot < 0 {
			return fmt.Errorf("in-flight journal: slot %d", slot)
		}
		lo, hi = min(lo, slot), max(hi, slot)
		if need := (slot + 1) * slotSize; need > len(j.slots) {
			j.slots = append(j.slots, make([]byte, need-len(j.slots))...)
		}
		b := j.slots[slot*slotSize : (slot+1)*slotSize]
		clear(b)
		if keys[k] != "" {
			h := keyHash(keys[k])
			copy(b[:32], h[:])
			binary.BigEndian.PutUint64(b[32:], now)
		}
	}
	_, err := j.f.WriteAt(j.slots[lo*slotSize:(hi+1)*slotSize], j.base+int64(lo)*slotSize)
	return err
}

// Sending implements migrate.Checkpoint: the appends of intents keys, by
// slots slot, slot+1, ..., may be on the wire from now on (one write).
func (s *Store) Sending(slot int, keys ...string) error {
	if s.journal == nil {
		return errors.New("checkpoint opened read-only")
	}
	slots := make([]int, len(keys))
	for k := range keys {
		slots[k] = slot + k
	}
	return s.journal.set(slots, keys)
}

// Replied implements migrate.Checkpoint: the appends of slots were
// answered (one write).
func (s *Store) Replied(slots ...int) error {
	if s.journal == nil {
		return errors.New("checkpoint opened read-only")
	}
	return s.journal.set(slots, make([]string, len(slots)))
}

// WasSending implements migrate.Checkpoint.
func (s *Store) WasSending(key string) bool {
	return s.journal != nil && s.journal.prev[keyHash(key)]
}

// LastAlive implements migrate.Checkpoint: the last heartbeat of the run
// before this one (zero if there was none).
func (s *Store) LastAlive() time.Time {
	if s.journal == nil {
		return time.Time{}
	}
	return s.journal.lastAlive
}
