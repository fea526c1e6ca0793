package imapconn

import (
	"bytes"
	"io"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// Orphaned FETCH responses.
//
// RFC 3501 fixes no order for the items of a FETCH response, and some
// servers send the UID after the body: "* 3 FETCH (BODY[] {512}\r\n...
// UID 1007)". go-imap's client routes a response of a UID FETCH to its
// command by the UID, and must hand the literal to someone before it has
// seen that UID: it hands the whole response to no command, as unilateral
// data. Without more, every such message would look expunged to the
// command that asked for it, and a listing of the folder would see none of
// its messages.
//
// So each connection keeps such responses: its unilateral FETCH handler
// (orphanFetch, on a goroutine of go-imap's) reads every item of the
// response, literals included (sections up to orphanMemMax in memory,
// larger ones in a temporary file), and keeps it under its UID. A command
// takes the ones meant for it after its tagged reply with TakeOrphans.
// That is race-free because go-imap's reader waits until a literal has
// been read before it goes on, so the handler of a response holding one is
// counted as active before the command's tagged reply can be read, and
// TakeOrphans waits until no handler is active.
//
// A response with a literal among its first 32 items and its UID after
// it becomes an orphan; go-imap routes others at their end, UID known.
// A command takes its orphans whether it succeeded or not (TakeOrphans
// after its tagged reply; one that failed closes them), so none is left
// for a retry of the command to get twice. Those still kept are dropped
// when a SELECT or EXAMINE is sent (a UID names a message of one mailbox
// only) and when the connection closes, however it closes. What is kept
// is bounded by what the commands in flight on the connection asked for
// (a listing: 500 messages' headers; a batch fetch: 256 KiB), so there is
// no cap on their number: a cap would drop messages without a word.
//
// Temporary files are unlinked as soon as they are open (where the
// system allows it), so that a killed run leaves none behind.

const orphanMemMax = 256 << 10

// Orphan is a FETCH response that reached no command: what Collect would
// have made of it, with body sections readable with Section.
type Orphan struct {
	imapclient.FetchMessageBuffer // body sections up to orphanMemMax
	files                         []orphanFile
}

type orphanFile struct {
	section  *imap.FetchItemBodySection
	f        *os.File
	size     int64
	unlinked bool // removed from its directory already
}

// Section returns a reader of the body section of o for which match is
// true (whole-message sections: match on the Partial offset), and its
// size; ok is false when o has none.
func (o *Orphan) Section(match func(*imap.FetchItemBodySection) bool) (r io.Reader, size int64, ok bool) {
	for _, b := range o.BodySection {
		if match(b.Section) {
			return bytes.NewReader(b.Bytes), int64(len(b.Bytes)), true
		}
	}
	for _, f := range o.files {
		if match(f.section) {
			return io.NewSectionReader(f.f, 0, f.size), f.size, true
		}
	}
	return nil, 0, false
}

// Close removes o's temporary files; a reader from Section must not be
// used after it.
func (o *Orphan) Close() {
	for _, f := range o.files {
		f.f.Close()
		if !f.unlinked {
			os.Remove(f.f.Name())
		}
	}
	o.files = nil
}

// orphans is a connection's store of orphaned responses.
type orphans struct {
	mu     sync.Mutex
	idle   *sync.Cond // signalled when active drops to 0
	active int        // handlers still reading a response
	kept   []*Orphan  // in the order their handlers ended; all of the mailbox selected now
	gen    int        // counts SELECTs: a UID means nothing in another mailbox
	closed bool
}

func newOrphans() *orphans {
	o := &orphans{}
	o.idle = sync.NewCond(&o.mu)
	return o
}

// orphanFetch is the connection's unilateral FETCH handler (see above). It
// reads every literal to its end whatever happens to the copy: go-imap's
// reader waits for that, and Client.Close waits for the reader.
func (c *Conn) orphanFetch(msg *imapclient.FetchMessageData) {
	o := c.orphans
	o.mu.Lock()
	o.active++
	gen := o.gen
	o.mu.Unlock()
	keep := &Orphan{FetchMessageBuffer: imapclient.FetchMessageBuffer{SeqNum: msg.SeqNum}}
	complete := true
	withLiteral := false
	for item := msg.Next(); item != nil; item = msg.Next() {
		if setItem(&keep.FetchMessageBuffer, item) {
			continue
		}
		switch it := item.(type) {
		case imapclient.FetchItemDataBodySection:
			if it.Literal == nil {
				keep.BodySection = append(keep.BodySection, imapclient.FetchBodySectionBuffer{Section: it.Section})
				continue
			}
			withLiteral = true
			if !c.readOrphanSection(keep, it.Section, it.Literal) {
				complete = false
			}
		case imapclient.FetchItemDataBinarySection:
			if it.Literal != nil {
				io.Copy(io.Discard, it.Literal) // never asked for: read away
			}
		}
	}
	o.mu.Lock()
	defer func() {
		o.active--
		if o.active == 0 {
			o.idle.Broadcast()
		}
		o.mu.Unlock()
	}()
	if !complete || !withLiteral || keep.UID == 0 || o.closed || o.gen != gen {
		keep.Close()
		return
	}
	o.kept = append(o.kept, keep)
}

// readOrphanSection reads lit, a body section of an orphan, into keep; it
// reports whether all of it was kept. The literal is read to its end (or
// to its own failure) in every case.
func (c *Conn) readOrphanSection(keep *Orphan, section *imap.FetchItemBodySection, lit imap.LiteralReader) bool {
	size := lit.Size()
	if size <= orphanMemMax {
		b := make([]byte, size)
		if _, err := io.ReadFull(lit, b); err != nil {
			io.Copy(io.Discard, lit) // ends at once on a failed literal
			return false
		}
		keep.BodySection = append(keep.BodySection, imapclient.FetchBodySectionBuffer{Section: section, Bytes: b})
		return true
	}
	f, err := os.CreateTemp(c.cfg.SpillDir, "mailhaul-fetch-*")
	if err != nil {
		io.Copy(io.Discard, lit)
		return false
	}
	unlinked := os.Remove(f.Name()) == nil
	keep.files = append(keep.files, orphanFile{section: section, f: f, size: size, unlinked: unlinked})
	n, err := io.Copy(f, lit)
	if err != nil {
		// Our write failed (the disk) or the literal did: read away what
		// is left; a failed literal returns its error again at once.
		io.Copy(io.Discard, lit)
		return false
	}
	return n == size
}

// TakeOrphans waits until no orphaned response is still being read, then
// removes and returns those for which want is true. Call it after the
// tagged reply of the command whose responses want picks (cmd.Close or
// Wait returned), whatever that reply was, on the goroutine that ran the
// command; the caller closes what it gets (DropOrphans, for a command
// that failed).
func (c *Conn) TakeOrphans(want func(*Orphan) bool) []*Orphan {
	o := c.orphans
	o.mu.Lock()
	defer o.mu.Unlock()
	for o.active > 0 && !c.Broken() {
		waitCond(o.idle, time.Second)
	}
	var out []*Orphan
	kept := o.kept[:0]
	for _, k := range o.kept {
		if want(k) {
			out = append(out, k)
		} else {
			kept = append(kept, k)
		}
	}
	clear(o.kept[len(kept):])
	o.kept = kept
	return out
}

// CloseFetch closes cmd, a UID FETCH of uids, and takes the orphans of
// its responses (those with a UID in uids) whatever its tagged reply was:
// none is left behind for a retry of the command to get twice. When the
// reply is an error it drops them and returns the error; else the caller
// uses them and then drops them (DropOrphans). Call it inside Do, where
// cmd.Close would be called.
func CloseFetch(c *Conn, cmd *imapclient.FetchCommand, uids imap.UIDSet) ([]*Orphan, error) {
	err := cmd.Close()
	taken := c.TakeOrphans(func(o *Orphan) bool { return uids.Contains(o.UID) })
	if err != nil {
		DropOrphans(taken)
		return nil, err
	}
	return taken, nil
}

// DropOrphans closes orphans taken from a connection.
func DropOrphans(taken []*Orphan) {
	for _, o := range taken {
		o.Close()
	}
}

// Buffer returns o as Collect would have given it, the sections kept in
// temporary files read into memory; ok is false when one could not be
// read back.
func (o *Orphan) Buffer() (buf *imapclient.FetchMessageBuffer, ok bool) {
	b := o.FetchMessageBuffer
	b.BodySection = slices.Clone(b.BodySection)
	for _, f := range o.files {
		data := make([]byte, f.size)
		if _, err := f.f.ReadAt(data, 0); err != nil {
			return nil, false
		}
		b.BodySection = append(b.BodySection, imapclient.FetchBodySectionBuffer{Section: f.section, Bytes: data})
	}
	return &b, true
}

// newMailbox drops the orphans of the mailbox selected until now; called
// before a SELECT or EXAMINE is sent.
func (o *orphans) newMailbox() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.gen++
	for _, k := range o.kept {
		k.Close()
	}
	o.kept = nil
}

// closeOrphans drops every orphan of a connection that is closing.
func (c *Conn) closeOrphans() {
	o := c.orphans
	o.mu.Lock()
	defer o.mu.Unlock()
	o.closed = true
	for _, k := range o.kept {
		k.Close()
	}
	o.kept = nil
}

// waitCond waits on cond (its lock held) for a signal or at most d, so
// that a waiter rechecks a condition no one signals (a connection that
// broke while a handler read from it).
func waitCond(cond *sync.Cond, d time.Duration) {
	t := time.AfterFunc(d, cond.Broadcast)
	cond.Wait()
	t.Stop()
}

// WholeBody matches the body section BODY[] answering a request for the
// whole message (part nil) or BODY[]<offset> answering one for a range of
// it, for Orphan.Section: a range never stands for the whole message.
func WholeBody(part *imap.SectionPartial) func(*imap.FetchItemBodySection) bool {
	return func(s *imap.FetchItemBodySection) bool {
		if s == nil || s.Specifier != imap.PartSpecifierNone || len(s.Part) != 0 || len(s.HeaderFields) != 0 || len(s.HeaderFieldsNot) != 0 {
			return false
		}
		if part == nil || s.Partial == nil {
			return part == nil && s.Partial == nil
		}
		return s.Partial.Offset == part.Offset
	}
}
