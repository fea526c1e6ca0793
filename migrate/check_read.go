package migrate

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"mime"
	"strings"
	"sync"

	"github.com/emersion/go-message/textproto"
	"golang.org/x/sync/errgroup"
)

// What Check reads of messages (see check.go): headers in batches, whole
// messages into a probe that counts and hashes them, the fields shown.

// side returns the Source of one side.
func (c *checker) side(dest bool) Source {
	if dest {
		return c.o.Dest
	}
	return c.o.Source
}

// parallel runs fn(ctx, i) for i in [0, n) on up to workers goroutines.
func parallel(ctx context.Context, workers, n int, fn func(context.Context, int) error) error {
	if n == 0 {
		return nil
	}
	eg, gctx := errgroup.WithContext(ctx)
	eg.SetLimit(max(1, workers))
	for i := 0; i < n; i++ {
		if gctx.Err() != nil {
			break
		}
		eg.Go(func() error { return protect("check", func() error { return fn(gctx, i) }) })
	}
	if err := eg.Wait(); err != nil {
		return err
	}
	return ctx.Err()
}

// headerBatch is how many messages one HeaderReader call is given.
const headerBatch = 500

// headers reads the header of each item (HeaderReader in batches of one
// mailbox, else Fetch). With mark, an item that cannot be read is marked
// unreadable (skip); without, it is left as it is (display only).
func (c *checker) headers(ctx context.Context, dest bool, items []*citem, mark bool) error {
	if len(items) == 0 {
		return nil
	}
	s := c.side(dest)
	hr, ok := s.(HeaderReader)
	if !ok {
		return c.read(ctx, dest, items, false, mark)
	}
	var chunks [][]*citem
	byMB := map[string]int{}
	for _, it := range items {
		k, ok := byMB[it.m.Mailbox]
		if !ok || len(chunks[k]) >= headerBatch {
			k = len(chunks)
			byMB[it.m.Mailbox] = k
			chunks = append(chunks, nil)
		}
		chunks[k] = append(chunks[k], it)
	}
	return parallel(ctx, s.Limits().conns(c.o.Transfers), len(chunks), func(ctx context.Context, k int) error {
		ch := chunks[k]
		msgs := make([]Message, len(ch))
		for i, it := range ch {
			msgs[i] = it.m
		}
		got := make([]bool, len(ch))
		err := c.e.retry(ctx, &job{mb: Mailbox{Name: msgs[0].Mailbox}}, "read headers", func() error {
			return hr.Headers(ctx, msgs, func(i int, h []byte) error {
				ch[i].setHeader(h)
				got[i] = true
				return nil
			})
		})
		if err != nil && Classify(err) != Skip {
			return fmt.Errorf("read headers of %q: %w", msgs[0].Mailbox, err)
		}
		for i, it := range ch {
			if !got[i] && mark {
				it.skip = err
				if err == nil {
					it.skip = fmt.Errorf("message %s of %q could not be read (gone since it was listed?)", it.m.ID, it.m.Mailbox)
				}
			}
		}
		return nil
	})
}

// read reads each item through Fetch: its header, its size in the
// destination's form and, with sum, the SHA-256 of that form. Items whose
// hash is known already are not read again. With mark, an item that
// cannot be read is marked unreadable.
func (c *checker) read(ctx context.Context, dest bool, items []*citem, sum, mark bool) error {
	var todo []*citem
	for _, it := range items {
		if it.skip == nil && (!sum || it.sum == "") {
			todo = append(todo, it)
		}
	}
	s := c.side(dest)
	return parallel(ctx, s.Limits().callers(c.o.Transfers), len(todo), func(ctx context.Context, i int) error {
		it := todo[i]
		var p *probe
		err := c.e.retry(ctx, &job{mb: Mailbox{Name: it.m.Mailbox}, msg: it.m}, "read message", func() error {
			p = newProbe(sum, c.crlf)
			return s.Fetch(ctx, it.m, p)
		})
		if err != nil {
			if Classify(err) != Skip {
				return fmt.Errorf("read message %s of %q: %w", it.m.ID, it.m.Mailbox, err)
			}
			if mark {
				it.skip = err
			}
			return nil
		}
		if it.hdr == nil || !it.midKnown {
			it.setHeader(p.hdr)
		}
		switch {
		case dest && it.stored >= 0:
		case c.crlf && !dest:
			it.stored = p.n + p.bare
		default:
			it.stored = p.n
		}
		if sum {
			it.sum = hex.EncodeToString(p.h.Sum(nil))
		}
		return nil
	})
}

// probe is the writer a message is read into: it keeps the header, counts
// bytes and bare LFs, and hashes the destination's form.
type probe struct {
	hdr     []byte
	hdrDone bool
	n, bare int64
	prevCR  bool
	h       hash.Hash
	hw      io.Writer
}

func newProbe(sum, crlf bool) *probe {
	p := &probe{}
	if sum {
		p.h = sha256.New()
		p.hw = p.h
		if crlf {
			p.hw = CRLFWriter(p.h)
		}
	}
	return p
}

func (p *probe) Write(b []byte) (int, error) {
	if !p.hdrDone {
		p.hdr = append(p.hdr, b[:min(len(b), HeaderLimit-len(p.hdr))]...)
		if e := HeaderEnd(p.hdr); e >= 0 {
			// Kept with the message: no more than the header itself.
			p.hdr, p.hdrDone = bytes.Clone(p.hdr[:e]), true
		} else if len(p.hdr) >= HeaderLimit {
			p.hdrDone = true
		}
	}
	p.bare += countBareLF(b, p.prevCR)
	if len(b) > 0 {
		p.prevCR = b[len(b)-1] == '\r'
	}
	p.n += int64(len(b))
	if p.hw != nil {
		if _, err := p.hw.Write(b); err != nil {
			return 0, err
		}
	}
	return len(b), nil
}

// probeBufs are the read buffers of probe.ReadFrom: io.Copy of a file
// into a probe would allocate 32 KiB per message otherwise (reading a
// whole Maildir for its CRLF sizes churned 300 MB through the heap).
var probeBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// ReadFrom implements io.ReaderFrom with a pooled buffer.
func (p *probe) ReadFrom(r io.Reader) (int64, error) {
	bp := probeBufs.Get().(*[]byte)
	defer probeBufs.Put(bp)
	var n int64
	for {
		k, err := r.Read(*bp)
		if k > 0 {
			if _, werr := p.Write((*bp)[:k]); werr != nil {
				return n, werr
			}
			n += int64(k)
		}
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

// HeaderEnd returns the length of the header at the start of b, up to and
// including the empty line that ends it, or -1 if b holds no empty line.
func HeaderEnd(b []byte) int {
	if bytes.HasPrefix(b, []byte("\n")) {
		return 1
	}
	if bytes.HasPrefix(b, []byte("\r\n")) {
		return 2
	}
	return blankLineEnd(b, 0)
}

// blankLineEnd returns the end of the first blank line of b that follows
// a line end at or after from ("\n\n" or "\n\r\n"), -1 if none. It looks
// at line ends only, so it stops at the end of a header without reading
// the body.
func blankLineEnd(b []byte, from int) int {
	for i := from; i < len(b); {
		k := bytes.IndexByte(b[i:], '\n')
		if k < 0 {
			return -1
		}
		j := i + k + 1
		if j < len(b) && b[j] == '\n' {
			return j + 1
		}
		if j+1 < len(b) && b[j] == '\r' && b[j+1] == '\n' {
			return j + 2
		}
		i = j
	}
	return -1
}

var wordDecoder = &mime.WordDecoder{}

// displayFields returns the From and Subject of a header, MIME words
// decoded (UTF-8, ISO-8859-1, US-ASCII) and control characters replaced,
// so that they are safe to print on a terminal.
func displayFields(raw []byte) (from, subject string) {
	if raw == nil {
		return "", ""
	}
	get := func(name string) string {
		if v := scanFields(raw, strings.ToLower(name)); len(v) > 0 {
			return v[0]
		}
		return ""
	}
	if h, err := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(raw))); err == nil {
		get = h.Get
	}
	clean := func(s string) string {
		if d, err := wordDecoder.DecodeHeader(s); err == nil {
			s = d
		}
		s = strings.Map(func(r rune) rune {
			if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
				return ' '
			}
			return r
		}, s)
		return strings.Join(strings.Fields(s), " ")
	}
	return clean(get("From")), clean(get("Subject"))
}
