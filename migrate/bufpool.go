package migrate

import (
	"math/bits"
	"sync"
)

// Memory buffers of spooled bodies are reused: a copy of 10,000 messages
// would otherwise allocate (and the runtime zero, and the collector chase)
// a new buffer per message, the whole corpus once more — measured on the
// IMAP -> IMAP benchmark as a tenth of mailhaul's CPU (allocation, page
// clearing, collections forced by the allocation rate under the memory
// limit).
//
// Buffers are sorted into classes a quarter of a power of two apart (4, 5,
// 6, 7, 8, 10, 12, 14, 16 KiB, ...), so a buffer handed out is at most a
// quarter larger than asked: the memory budget counts the bytes written,
// and the unused tail of the buffers in flight stays small beside it.
// Buffers larger than maxPooled are not kept. Each class is a sync.Pool:
// what is not reused is given back to the collector within two cycles.
//
// The contract that makes reuse safe is Body's: no reader of a Body is
// used after its Close (the sinks read bodies on the goroutine that calls
// Append, and return only when done with them), and Close releases the
// buffer once (it forgets it).

const (
	minPooled = 4 << 10
	poolPower = 10 // maxPooled is minPooled << poolPower
	maxPooled = minPooled << poolPower
)

// bufClasses holds the free buffers of each class; classOf(maxPooled) is
// the last one.
var bufClasses [4*poolPower + 1]sync.Pool

// classSize is the capacity of the buffers of class c.
func classSize(c int) int {
	e, q := c/4, c%4 // minPooled << e, plus q quarters of it
	return (minPooled << e) + q*(minPooled<<e)/4
}

// classOf is the smallest class whose buffers hold n bytes (n ≤ maxPooled).
func classOf(n int) int {
	if n <= minPooled {
		return 0
	}
	e := bits.Len(uint(n-1)) - 1 - bits.Len(uint(minPooled)) + 1 // minPooled<<e < n ≤ minPooled<<(e+1)
	base := minPooled << e
	q := (n - base + base/4 - 1) / (base / 4) // quarters of base above it, rounded up
	return e*4 + q
}

// getBuf returns an empty slice with room for at least n bytes, reused
// when one of its class is free.
func getBuf(n int) []byte {
	if n > maxPooled {
		return make([]byte, 0, n)
	}
	c := classOf(n)
	if p, ok := bufClasses[c].Get().(*[]byte); ok {
		return (*p)[:0]
	}
	return make([]byte, 0, classSize(c))
}

// putBuf gives b back for reuse; the caller must not touch it after.
func putBuf(b []byte) {
	n := cap(b)
	if n < minPooled || n > maxPooled {
		return
	}
	c := classOf(n)
	if classSize(c) > n {
		c-- // a buffer goes where every buffer is at least its class's size
	}
	b = b[:0]
	bufClasses[c].Put(&b)
}
