package imapconn

import (
	"context"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/mailhaul/mailhaul/migrate"
)

// StepRetries and StepBackoff bound Retry: a step that keeps failing for
// about 15 seconds (0.5 + 1 + 2 + 4 + 8) is given up, and the error goes to
// the engine, which has its own retries.
const (
	StepRetries = 5
	StepBackoff = 500 * time.Millisecond
)

// Retry runs one step of a longer operation (a batch of a folder listing)
// that must resume where it stopped rather than start over, retrying it on
// a fresh connection while it fails with a Retry-classified error (a lost
// connection). Other errors, and the last one, are returned as they are.
func Retry(ctx context.Context, op func() error) error {
	delay := StepBackoff
	for attempt := 0; ; attempt++ {
		err := op()
		if err == nil || migrate.Classify(err) != migrate.Retry || attempt >= StepRetries {
			if err != nil && attempt > 0 {
				err = fmt.Errorf("%w (after %d attempts)", err, attempt+1)
			}
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(delay):
		}
		delay *= 2
	}
}

// ReadLiteral copies the literal lit (a FETCH body of cmd) to w and fails
// when it ends short. go-imap (beta.8) ends a literal cut by a lost
// connection with io.EOF, as if it were complete; and going on to the
// next item then drains it again while the client's reader goroutine reads
// the same buffer (a data race). So a short literal closes c and returns
// io.ErrUnexpectedEOF: the caller must not touch the command again.
//
// A copy stopped by w (it failed: our disk is full) or by a panic in it
// gives the command up too (see abandon) and closes c; a panic goes on up
// after that. The caller must not touch cmd again either.
//
// The copy goes through a buffer from a pool: io.Copy made a new 32 KB one
// for every message.
func ReadLiteral(c *Conn, cmd *imapclient.FetchCommand, w io.Writer, lit imap.LiteralReader) (n int64, err error) {
	buf := copyBuffers.Get().(*[]byte)
	r := &errSeen{r: lit}
	defer func() {
		if v := recover(); v != nil {
			c.abandon(cmd, r)
			panic(v)
		}
	}()
	n, err = io.CopyBuffer(w, r, *buf)
	copyBuffers.Put(buf)
	if err == nil && n < lit.Size() {
		err = fmt.Errorf("literal of %d bytes ended after %d: %w", lit.Size(), n, io.ErrUnexpectedEOF)
	}
	if err != nil {
		c.abandon(cmd, r)
	}
	return n, err
}

// abandon closes c after a copy out of lit stopped, and gives up cmd.
// go-imap's reader goroutine waits until a literal has been read to its
// end or to an error, and then goes on parsing what its buffers hold,
// maybe to the next message's literal, for which it waits in turn; and
// Client.Close waits for that goroutine. So a literal its copy did not
// read to the end (w stopped it) is read away to its end, the rest of the
// command too, and only then the client closed: without it, that
// Client.Close hung for good. A literal that failed itself (the
// connection went down) is not read again (the data race above): the
// client is closed at once, as there is nothing more to read.
func (c *Conn) abandon(cmd *imapclient.FetchCommand, lit *errSeen) {
	if !lit.seen {
		if _, err := io.Copy(io.Discard, lit); err == nil && cmd != nil {
			cmd.Close()
		}
	}
	c.Client.Close()
}

// errSeen is a reader that remembers whether its reader failed or ended.
type errSeen struct {
	r    io.Reader
	seen bool
}

func (e *errSeen) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil {
		e.seen = true
	}
	return n, err
}

// copyBuffers holds ReadLiteral's copy buffers.
var copyBuffers = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// CollectEach reads every message of cmd with Collect and calls fn for
// each, in the order the server sent them, then closes cmd. For a UID
// FETCH of the set uids, the responses that reached no command because
// their UID came after a literal (orphans.go) follow, in no set order; a
// FETCH by sequence numbers passes nil (go-imap routes those
// itself). After a Collect error c is closed and cmd is left alone (see
// Collect); that error is returned. Call it inside Do.
func CollectEach(c *Conn, cmd *imapclient.FetchCommand, uids imap.UIDSet, fn func(*imapclient.FetchMessageBuffer)) error {
	for m := cmd.Next(); m != nil; m = cmd.Next() {
		buf, err := Collect(c, cmd, m)
		if err != nil {
			return err
		}
		fn(buf)
	}
	if uids == nil {
		return cmd.Close()
	}
	taken, err := CloseFetch(c, cmd, uids)
	defer DropOrphans(taken)
	if err != nil {
		return err
	}
	for _, o := range taken {
		buf, ok := o.Buffer()
		if !ok {
			return fmt.Errorf("FETCH of UID %d: read back the temporary file of its response: %w", o.UID, io.ErrUnexpectedEOF)
		}
		fn(buf)
	}
	return nil
}

// setItem records item in buf if it is one of the attributes mailhaul
// fetches that hold no literal (UID, FLAGS, INTERNALDATE, RFC822.SIZE),
// and says whether it was.
func setItem(buf *imapclient.FetchMessageBuffer, item imapclient.FetchItemData) bool {
	switch it := item.(type) {
	case imapclient.FetchItemDataUID:
		buf.UID = it.UID
	case imapclient.FetchItemDataFlags:
		buf.Flags = it.Flags
	case imapclient.FetchItemDataInternalDate:
		buf.InternalDate = it.Time
	case imapclient.FetchItemDataRFC822Size:
		buf.RFC822Size = it.Size
	default:
		return false
	}
	return true
}

// Collect is imapclient.FetchMessageData.Collect for the items mailhaul
// fetches (UID, FLAGS, INTERNALDATE, RFC822.SIZE, body sections), with the
// body sections read by ReadLiteral: a literal cut short is an error that
// closes c, never a short value taken for the whole (see ReadLiteral).
// After an error the caller must not touch the command again.
func Collect(c *Conn, cmd *imapclient.FetchCommand, m *imapclient.FetchMessageData) (*imapclient.FetchMessageBuffer, error) {
	buf := &imapclient.FetchMessageBuffer{SeqNum: m.SeqNum}
	for {
		item := m.Next()
		if item == nil {
			return buf, nil
		}
		if setItem(buf, item) {
			continue
		}
		switch it := item.(type) {
		case imapclient.FetchItemDataBodySection:
			var b []byte
			if it.Literal != nil {
				// Sized by the literal (a listing's header fields: tens of
				// bytes), and written to, not read from: a bytes.Buffer
				// reading grows by 512 bytes at least, twice over.
				w := sliceWriter{make([]byte, 0, min(max(it.Literal.Size(), 0), 1<<20))}
				if _, err := ReadLiteral(c, cmd, &w, it.Literal); err != nil {
					return buf, err
				}
				b = w.b
			}
			buf.BodySection = append(buf.BodySection, imapclient.FetchBodySectionBuffer{Section: it.Section, Bytes: b})
		}
	}
}

// sliceWriter appends what is written to b; it has no ReadFrom, so that
// io.CopyBuffer writes into it from its own buffer.
type sliceWriter struct{ b []byte }

func (w *sliceWriter) Write(p []byte) (int, error) {
	w.b = append(w.b, p...)
	return len(p), nil
}
