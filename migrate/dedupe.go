package migrate

import (
	"bytes"
	"context"
	"fmt"
	"sync"
)

// Options.Dedupe: what the destination already holds.
//
// A message is a duplicate of one in the destination when both have the
// same Message-ID (as written) and either the same size or the same body
// length: the length of what follows the header's blank line with every
// line end counted as CRLF. The second key is what lets a POP3 server's
// copy of a message match the copy a mail client downloaded long ago:
// clients add header fields on download (Thunderbird: X-Mozilla-Status,
// X-Mozilla-Keys, X-Account-Key, X-UIDL; fetchmail a Received: line; mutt
// Status:) and store LF line ends, so sizes differ, while the body is the
// same. Failing both, a copy whose body is one line end longer, where the
// message has no final line end, or one line end shorter, where it has
// one, is the message too: a POP3 server ends every message it sends with
// CRLF, while the last message of an mbox file that ends without a
// newline has none. Two different messages with the same Message-ID and
// the same body length are taken for one; messages without a Message-ID
// are never taken for duplicates.

// BodyIndexer is implemented by sinks that can give, for Options.Dedupe,
// the body length (see Body.BodyLen; -1 if unknown) of every message in a
// folder besides its Message-ID and size. Called from the lister goroutine
// after Prepare.
type BodyIndexer interface {
	IndexBodies(ctx context.Context, folder string, fn func(messageID string, size, bodyLen int64) error) error
}

// FolderLister is implemented by sinks that can list the folders they
// hold (names as Append and Index take them), for
// Options.DedupeAcrossFolders. Called from the lister goroutine.
type FolderLister interface {
	Folders(ctx context.Context) ([]string, error)
}

// dedupSet holds what one destination folder (or, with
// DedupeAcrossFolders, the whole destination) held when the lister
// prepared it. Appenders of several goroutines take from it; each entry
// is taken at most once, so two identical source messages map to two
// destination copies.
type dedupSet struct {
	mu sync.Mutex
	m  map[string][]dedupEntry // Message-ID -> messages
}

type dedupEntry struct {
	size, body int64
	date       int64  // unix seconds of the internal date; 0: not compared (--dedupe)
	ref        string // "" unless known (first-contact index)
	taken      bool
}

func newDedupSet() *dedupSet { return &dedupSet{m: map[string][]dedupEntry{}} }

func (d *dedupSet) add(mid string, size, body, date int64, ref string) {
	if mid == "" {
		return
	}
	d.mu.Lock()
	d.m[mid] = append(d.m[mid], dedupEntry{size: size, body: body, date: date, ref: ref})
	d.mu.Unlock()
}

// len is how many messages d holds (with a Message-ID).
func (d *dedupSet) len() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	n := 0
	for _, es := range d.m {
		n += len(es)
	}
	return n
}

// take reports whether the destination holds a copy of the message (mid,
// size, body length, internal date in unix seconds, 0 for none; endsNL:
// its last byte is a newline) not yet claimed by another source message,
// and claims it: one with the same size first, else one with the same
// body length, else one whose body is one line end (2 in the CRLF count)
// longer if the message has no final line end, or shorter if it has one
// — and the same date, for an entry that has one (the first-contact
// index). ref is the copy's ref when the index knew it.
//
// The last pass is for a message that lost or gained its final line end
// on the way (see above). It is directional so that a message that has
// its line end cannot take the copy of another message of the same
// Message-ID whose body is 2 bytes longer (a reused Message-ID): that copy
// is left to the message it belongs to.
func (d *dedupSet) take(mid string, size, body, date int64, endsNL bool) (ok bool, ref string) {
	if d == nil || mid == "" {
		return false, ""
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	es := d.m[mid]
	for i := range es {
		if !es[i].taken && es[i].size == size && (es[i].date == 0 || es[i].date == date) {
			es[i].taken = true
			return true, es[i].ref
		}
	}
	if body < 0 {
		return false, ""
	}
	deltas := []int64{0, 2} // no final line end: the copy may have gained one
	if endsNL {
		deltas = []int64{0, -2} // the copy may have lost it
	}
	for _, delta := range deltas {
		for i := range es {
			if !es[i].taken && es[i].body >= 0 && es[i].body == body+delta && (es[i].date == 0 || es[i].date == date) {
				es[i].taken = true
				return true, es[i].ref
			}
		}
	}
	return false, ""
}

// dedupFor returns what Dedupe compares the messages going to destination
// folder dest with: that folder's index, or the whole destination's with
// DedupeAcrossFolders (read once, at the first folder).
func (e *engine) dedupFor(ctx context.Context, dest string) (*dedupSet, error) {
	if !e.o.DedupeAcrossFolders {
		d := newDedupSet()
		return d, e.indexInto(ctx, d, dest)
	}
	if e.acct != nil {
		return e.acct, nil
	}
	fl, ok := e.o.Sink.(FolderLister)
	if !ok {
		return nil, fmt.Errorf("--dedupe-across-folders: this destination cannot list its folders")
	}
	folders, err := fl.Folders(ctx)
	if err != nil {
		return nil, fmt.Errorf("list destination folders for --dedupe-across-folders: %w", err)
	}
	d := newDedupSet()
	for _, f := range folders {
		if err := e.indexInto(ctx, d, f); err != nil {
			return nil, err
		}
	}
	e.acct = d
	return d, nil
}

// indexInto adds what destination folder dest holds to d.
func (e *engine) indexInto(ctx context.Context, d *dedupSet, dest string) error {
	var err error
	if bi, ok := e.o.Sink.(BodyIndexer); ok {
		err = bi.IndexBodies(ctx, dest, func(mid string, size, body int64) error {
			d.add(mid, size, body, 0, "")
			return nil
		})
	} else if ix, ok := e.o.Sink.(Indexer); ok {
		err = ix.Index(ctx, dest, func(mid string, size int64) error {
			d.add(mid, size, -1, 0, "")
			return nil
		})
	} else {
		return fmt.Errorf("--dedupe: this destination cannot list what it holds")
	}
	if err != nil {
		return fmt.Errorf("read destination folder %q for --dedupe: %w", dest, err)
	}
	return nil
}

// CRLFLen is the length of b with every bare LF counted as CRLF.
func CRLFLen(b []byte) int64 {
	return int64(len(b)) + int64(bytes.Count(b, []byte("\n"))-bytes.Count(b, []byte("\r\n")))
}

// BodyLenOf returns the body length (see Body.BodyLen) of a message of
// size bytes, CRLF-counted crlfSize bytes, whose header (or beginning) is
// hdr; -1 if hdr does not hold the whole header. For sinks that know the
// CRLF size of their messages (IMAP RFC822.SIZE) and their header.
func BodyLenOf(hdr []byte, crlfSize int64) int64 {
	h := HeaderEnd(hdr)
	if h < 0 {
		return -1
	}
	return crlfSize - CRLFLen(hdr[:h])
}
