package migrate

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/emersion/go-message/textproto"
)

// DefaultMemLimit is the largest body a Spool keeps in memory; larger
// bodies go to a temporary file.
const DefaultMemLimit = 2 << 20

// DefaultMemBudget bounds the bytes of all bodies held in memory at once
// by one run; beyond it, bodies are spooled to temporary files whatever
// their size. With small messages the bodies in flight (a few hundred)
// rarely reach it; it bounds the case of many medium ones, and leaves room
// under the process's memory limit (cmd/mailhaul) for everything else.
const DefaultMemBudget = 16 << 20

// MemBudget is shared by the spools of one run: it bounds the bytes held
// in memory by all bodies together, so that memory stays bounded however
// many bodies are queued between the stages. Safe for concurrent use; a
// nil *MemBudget is unlimited.
type MemBudget struct {
	max  int64
	used atomic.Int64
}

// NewMemBudget returns a budget of max bytes.
func NewMemBudget(max int64) *MemBudget { return &MemBudget{max: max} }

func (b *MemBudget) take(n int64) bool {
	if b == nil {
		return true
	}
	for {
		u := b.used.Load()
		if u+n > b.max {
			return false
		}
		if b.used.CompareAndSwap(u, u+n) {
			return true
		}
	}
}

func (b *MemBudget) give(n int64) {
	if b != nil && n > 0 {
		b.used.Add(-n)
	}
}

// Used is the number of bytes currently held in memory.
func (b *MemBudget) Used() int64 {
	if b == nil {
		return 0
	}
	return b.used.Load()
}

// maxHeaderCapture bounds how much of a message header is kept to find the
// Message-ID.
const maxHeaderCapture = 256 << 10

// Body is a spooled message: exact length, re-readable (for retries), with
// its SHA-256 and Message-ID computed while spooling. Small bodies live in
// memory, large ones in a temporary file that Close removes.
//
// A Body is owned by one goroutine at a time (fetcher, then appender).
type Body struct {
	size      int64
	sum       [32]byte
	messageID string
	hdrDate   time.Time // with Spool.WantHeaderDate: HeaderDate of the message
	bareLF    int64     // LFs not preceded by CR
	nul       bool      // holds a NUL byte
	crlfSum   string    // SHA-256 of the CRLF form, computed on demand
	bodyLen   int64
	endsNL    bool // the last byte is "\n"
	mem       []byte
	file      *os.File
	budget    *MemBudget
	held      int64 // bytes of budget held by mem
}

// Size is the exact length in bytes.
func (b *Body) Size() int64 { return b.size }

// SHA256 is the hex SHA-256 of the bytes.
func (b *Body) SHA256() string { return hex.EncodeToString(b.sum[:]) }

// MessageID is the Message-ID header value (with angle brackets, as
// written), or "" if the message has none.
func (b *Body) MessageID() string { return b.messageID }

// HasNUL reports whether the message holds a NUL byte (IMAP takes one only
// as BINARY, RFC 3516).
func (b *Body) HasNUL() bool { return b.nul }

// CRLFSize is the size of the message's CRLF form (see crlf.go).
func (b *Body) CRLFSize() int64 { return b.size + b.bareLF }

// CompareSHA256 is the hex SHA-256 of the message's comparison form (the
// CRLF form, NUL as 0x80: see crlf.go), what a copy in an IMAP destination
// is recognised by; it equals SHA256 when the message has no bare LF and
// no NUL, and is computed (one read of the body) on the first call
// otherwise. Not safe for concurrent use.
func (b *Body) CompareSHA256() (string, error) {
	if b.bareLF == 0 && !b.nul {
		return b.SHA256(), nil
	}
	if b.crlfSum == "" {
		_, sum, err := CompareSum(b.Reader())
		if err != nil {
			return "", fmt.Errorf("hash CRLF form of spooled message: %w", err)
		}
		b.crlfSum = sum
	}
	return b.crlfSum, nil
}

// CRLFReader returns a new reader over the message's CRLF form.
func (b *Body) CRLFReader() io.Reader {
	if b.bareLF == 0 {
		return b.Reader()
	}
	return CRLFReader(b.Reader())
}

// BodyLen is the length of the message's body — what follows the blank
// line that ends the header — with every line end counted as CRLF; -1 if
// the header's end was not found in its first 256 KiB. Dedupe compares it
// (see dedupe.go).
func (b *Body) BodyLen() int64 { return b.bodyLen }

// EndsWithLineEnd reports whether the message's last byte is a newline.
func (b *Body) EndsWithLineEnd() bool { return b.endsNL }

// HeaderDate is the date the message's header implies (see HeaderDate),
// computed only when the spool was asked for it (WantHeaderDate).
func (b *Body) HeaderDate() time.Time { return b.hdrDate }

// Reader returns a new reader over the whole body; each call starts at the
// beginning. Readers must not be used after Close.
func (b *Body) Reader() io.ReadSeeker {
	if b.file != nil {
		return io.NewSectionReader(b.file, 0, b.size)
	}
	return bytes.NewReader(b.mem)
}

// Close releases the body (removes the temporary file, gives the memory
// buffer back for reuse: see bufpool.go). Closing twice does nothing more.
func (b *Body) Close() error {
	if b.mem != nil {
		putBuf(b.mem)
		b.mem = nil
	}
	b.budget.give(b.held)
	b.held = 0
	if b.file != nil {
		name := b.file.Name()
		err := b.file.Close()
		os.Remove(name)
		b.file = nil
		return err
	}
	return nil
}

// NewBody spools r into a Body; a convenience for sinks and tests.
func NewBody(r io.Reader, memLimit int64, tmpDir string) (*Body, error) {
	s := NewSpool(memLimit, tmpDir, nil)
	if _, err := io.Copy(s, r); err != nil {
		s.Abort()
		return nil, err
	}
	return s.Finish()
}

// Spool is the io.Writer a Source's Fetch writes into. It keeps up to
// memLimit bytes in memory — while the run's MemBudget allows — and moves
// to a temporary file beyond that.
type Spool struct {
	memLimit int64
	tmpDir   string
	budget   *MemBudget
	held     int64
	buf      bytes.Buffer
	file     *os.File
	w        *bufio.Writer
	n        int64
	h        hash.Hash
	hdr      []byte
	hdrDone  bool
	wantDate bool
	expect   int64 // Expect's size, kept across Reset
	bareLF   int64
	prevCR   bool
	lastNL   bool // the last byte written is "\n"
	nul      bool
	err      error
}

// NewSpool returns an empty spool; tmpDir "" means os.TempDir(); budget
// may be nil (no overall bound).
func NewSpool(memLimit int64, tmpDir string, budget *MemBudget) *Spool {
	if memLimit <= 0 {
		memLimit = DefaultMemLimit
	}
	return &Spool{memLimit: memLimit, tmpDir: tmpDir, budget: budget, h: sha256.New()}
}

// Write implements io.Writer.
func (s *Spool) Write(p []byte) (int, error) {
	if s.err != nil {
		return 0, s.err
	}
	s.h.Write(p)
	s.captureHeader(p)
	s.bareLF += countBareLF(p, s.prevCR)
	if !s.nul && bytes.IndexByte(p, 0) >= 0 {
		s.nul = true
	}
	if len(p) > 0 {
		s.prevCR = p[len(p)-1] == '\r'
		s.lastNL = p[len(p)-1] == '\n'
	}
	if s.file == nil && s.expect <= s.memLimit && s.n+int64(len(p)) <= s.memLimit && s.budget.take(int64(len(p))) {
		s.held += int64(len(p))
	} else if s.file == nil {
		f, err := os.CreateTemp(s.tmpDir, "mailhaul-spool-*")
		if err != nil {
			s.err = fmt.Errorf("spool to temporary file: %w", err)
			return 0, s.err
		}
		s.file = f
		// A writer no larger than the body announced: the small bodies
		// of a batch fetch (a unit's, all alive at once) spilled because
		// the memory budget is full must not each hold 256 KiB.
		size := 256 << 10
		if s.expect > 0 && s.expect < int64(size) {
			size = max(int(s.expect), 4096)
		}
		s.w = bufio.NewWriterSize(f, size)
		if _, err := s.w.Write(s.buf.Bytes()); err != nil {
			s.err = fmt.Errorf("spool to %s: %w", f.Name(), err)
			return 0, s.err
		}
		s.releaseBuf()
		s.budget.give(s.held)
		s.held = 0
	}
	if s.file != nil {
		if _, err := s.w.Write(p); err != nil {
			s.err = fmt.Errorf("spool to %s: %w", s.file.Name(), err)
			return 0, s.err
		}
	} else {
		if s.buf.Cap() == 0 {
			s.buf = *bytes.NewBuffer(getBuf(len(p)))
		}
		s.buf.Write(p)
	}
	s.n += int64(len(p))
	return len(p), nil
}

// captureHeader keeps the message's header (as HeaderEnd finds its end),
// at most maxHeaderCapture bytes: only up to its end, not the whole first
// write (usually the whole message), found by a search that stops there.
func (s *Spool) captureHeader(p []byte) {
	if s.hdrDone {
		return
	}
	p = p[:min(len(p), maxHeaderCapture-len(s.hdr))]
	// A blank line that starts in the last two bytes kept ends in the
	// first two of p.
	from, head := max(len(s.hdr)-2, 0), min(len(p), 2)
	s.hdr = append(s.hdr, p[:head]...)
	e := -1
	if from == 0 {
		e = HeaderEnd(s.hdr)
	} else {
		e = blankLineEnd(s.hdr, from)
	}
	if e >= 0 {
		s.hdr, s.hdrDone = s.hdr[:e], true
	} else if e = blankLineEnd(p, 0); e >= 0 {
		s.hdr, s.hdrDone = append(s.hdr, p[head:e]...), true
	} else {
		s.hdr = append(s.hdr, p[head:]...)
		s.hdrDone = len(s.hdr) >= maxHeaderCapture
	}
}

// Expect says how many bytes the source will write (the size it listed;
// 0 or less: unknown). A body that will be held in memory gets its buffer
// at that size at once instead of growing it by doubling, which copied
// every body once or twice more and left up to half of the buffer unused.
// A body announced larger than the memory limit goes to its temporary file
// from the first byte instead of being copied there from memory at the
// limit. A wrong size costs nothing but that: the buffer grows past it or
// stays partly unused, or a small body goes to a file. Call it before the
// first Write (and after Reset).
func (s *Spool) Expect(size int64) {
	s.expect = size
	if size > 0 && size <= s.memLimit && s.file == nil && s.n == 0 && s.buf.Cap() < int(size) {
		s.releaseBuf()
		s.buf = *bytes.NewBuffer(getBuf(int(size)))
	}
}

// releaseBuf gives the memory buffer back for reuse (bufpool.go).
func (s *Spool) releaseBuf() {
	if s.buf.Cap() > 0 {
		putBuf(s.buf.Bytes())
	}
	s.buf = bytes.Buffer{}
}

// WantHeaderDate asks Finish to compute Body.HeaderDate from the header,
// for messages whose source knows no internal date.
func (s *Spool) WantHeaderDate() { s.wantDate = true }

// Err is the spool's own failure (temporary file could not be created or
// written: disk full), nil while it works. A Source cannot tell its own
// read errors from the spool's; the engine asks the spool instead.
func (s *Spool) Err() error { return s.err }

// Len is the number of bytes written so far.
func (s *Spool) Len() int64 { return s.n }

// Reset discards everything written, for a retried Fetch; the memory
// buffer is kept for the next attempt.
func (s *Spool) Reset() {
	keep := s.buf
	keep.Reset()
	s.buf = bytes.Buffer{} // kept, not given back by Abort
	s.Abort()
	expect := s.expect
	*s = Spool{memLimit: s.memLimit, tmpDir: s.tmpDir, budget: s.budget, h: sha256.New(), wantDate: s.wantDate, buf: keep}
	s.Expect(expect)
}

// Abort discards the spool and its temporary file.
func (s *Spool) Abort() {
	if s.file != nil {
		name := s.file.Name()
		s.file.Close()
		os.Remove(name)
		s.file = nil
	}
	s.releaseBuf()
	s.budget.give(s.held)
	s.held = 0
}

// Finish turns the spool into a Body. The Spool must not be used after.
func (s *Spool) Finish() (*Body, error) {
	if s.err != nil {
		s.Abort()
		return nil, s.err
	}
	b := &Body{size: s.n, messageID: MessageIDFromHeader(s.hdr), bareLF: s.bareLF, nul: s.nul, bodyLen: -1, endsNL: s.lastNL}
	if h := HeaderEnd(s.hdr); h >= 0 {
		b.bodyLen = s.n + s.bareLF - CRLFLen(s.hdr[:h])
	}
	if s.wantDate {
		b.hdrDate = HeaderDate(s.hdr)
	}
	copy(b.sum[:], s.h.Sum(nil))
	if s.file != nil {
		if err := s.w.Flush(); err != nil {
			name := s.file.Name()
			s.Abort()
			return nil, fmt.Errorf("spool to %s: %w", name, err)
		}
		b.file = s.file
		s.file = nil
	} else {
		b.mem = s.buf.Bytes()
		s.buf = bytes.Buffer{} // b's now
		b.budget, b.held = s.budget, s.held
		s.held = 0
	}
	return b, nil
}

// MessageIDFromHeader returns the Message-ID of a raw message (or its
// header prefix), or "" if there is none. It is tolerant: malformed headers
// fall back to a plain scan, and the value is returned as written (trimmed).
func MessageIDFromHeader(raw []byte) string {
	if id, ok := messageIDPlain(raw); ok {
		return id
	}
	return messageIDParsed(raw)
}

// messageIDPlain is MessageIDFromHeader's answer for the headers nearly
// every message has — every line "Key: value" with a valid key or a
// continuation, no stray CR, the Message-ID on one line — found in one
// pass without building the header (go-message allocates every field:
// a tenth of the CPU of spooling a small message). It gives exactly what
// go-message's ReadHeader and Get give (FuzzMessageIDPlain compares them);
// for anything else ok is false and messageIDParsed decides.
func messageIDPlain(raw []byte) (id string, ok bool) {
	var val []byte
	found, inID := false, false
	for start := true; len(raw) > 0; start = false {
		line := raw
		if nl := bytes.IndexByte(raw, '\n'); nl >= 0 {
			line, raw = raw[:nl], raw[nl+1:]
			line = bytes.TrimSuffix(line, []byte{'\r'})
		} else {
			raw = nil // a last line without its end is still a line
		}
		if bytes.IndexByte(line, '\r') >= 0 {
			return "", false
		}
		if len(line) == 0 {
			break // the blank line that ends the header
		}
		if line[0] == ' ' || line[0] == '\t' {
			if start || inID {
				return "", false // a header that starts folded; a folded Message-ID
			}
			continue
		}
		inID = false
		c := bytes.IndexByte(line, ':')
		if c < 0 {
			return "", false
		}
		key := bytes.Trim(line[:c], " \t")
		for _, b := range key {
			if b < 33 || b > 126 {
				return "", false
			}
		}
		if !found && bytes.EqualFold(key, []byte("message-id")) {
			found, inID, val = true, true, line[c+1:]
		}
	}
	return strings.TrimSpace(string(val)), true
}

// messageIDParsed is MessageIDFromHeader for any header: go-message's
// parser, and a plain scan where that fails.
func messageIDParsed(raw []byte) string {
	// A reader no larger than the header (most are 1-2 KB).
	if h, err := textproto.ReadHeader(bufio.NewReaderSize(bytes.NewReader(raw), min(len(raw)+1, 4096))); err == nil {
		return strings.TrimSpace(h.Get("Message-Id"))
	}
	// Fallback: scan lines up to the first empty line.
	lines := bytes.Split(raw, []byte("\n"))
	for i, l := range lines {
		l = bytes.TrimRight(l, "\r")
		if len(l) == 0 {
			break
		}
		if len(l) > 11 && strings.EqualFold(string(l[:11]), "message-id:") {
			v := string(l[11:])
			for j := i + 1; j < len(lines); j++ {
				c := bytes.TrimRight(lines[j], "\r")
				if len(c) == 0 || (c[0] != ' ' && c[0] != '\t') {
					break
				}
				v += string(c)
			}
			return strings.TrimSpace(v)
		}
	}
	return ""
}
