package mbox

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding"
	"errors"
	"fmt"
	"hash"
	"io"
)

// bufSize is the line buffer of Reader and Copy. Both must use the same
// size: a line longer than the buffer is seen in fragments, and unquoting
// looks at a line's first fragment only, so equal sizes give equal results.
const bufSize = 64 << 10

var fromSp = []byte("From ")

// unquote removes the writer's quoting from the first fragment of a line
// as format f reads it. Auto reads like MboxO (the quoting every dialect
// but mboxcl2 agrees on).
func unquote(b []byte, f Format) []byte {
	switch f {
	case MboxO, Auto:
		if len(b) > len(fromSp) && b[0] == '>' && bytes.HasPrefix(b[1:], fromSp) {
			return b[1:]
		}
	case MboxRD:
		i := 0
		for i < len(b) && b[i] == '>' {
			i++
		}
		if i > 0 && bytes.HasPrefix(b[i:], fromSp) {
			return b[1:]
		}
	}
	return b
}

// isBlank reports whether a complete line is empty.
func isBlank(b []byte, eol byte) bool {
	if len(b) == 1 {
		return b[0] == eol
	}
	return eol == '\n' && len(b) == 2 && b[0] == '\r' && b[1] == '\n'
}

// formatBit is the bit of f in a reading's set of formats.
func formatBit(f Format) uint8 { return 1 << uint(f) }

// allReadings are the formats an Auto Reader keeps track of.
const allReadings = 1<<MboxO | 1<<MboxRD | 1<<MboxCL2

// reading is the hash and length of a message as one or more formats read
// it; formats that have produced the same bytes so far share one.
type reading struct {
	formats uint8 // set of formatBit
	h       hash.Hash
	n       int64
}

// first returns the lowest format in r.
func (r *reading) first() Format {
	for f := MboxO; f <= MboxCL2; f++ {
		if r.formats&formatBit(f) != 0 {
			return f
		}
	}
	return MboxO
}

// emitter turns raw (quoted) line fragments of one message into message
// bytes: it unquotes, counts, hashes (leaving out flag header fields) and
// optionally writes them.
//
// An emitter for Auto follows the three readings (mboxo, mboxrd, mboxcl2)
// at once without hashing anything twice while they agree: a reading is
// split off, with a copy of the hash state, at the first line it unquotes
// differently. Most messages have no such line and cost one hash.
type emitter struct {
	w        io.Writer
	eol      byte
	rs       []*reading
	inHeader bool
	skip     bool // inside a flag header field: not hashed
}

// newEmitter returns an emitter for l; w (may be nil) receives the bytes
// and needs a single format (not Auto).
func newEmitter(w io.Writer, l Layout) *emitter {
	set := uint8(allReadings)
	if l.Format != Auto {
		set = formatBit(l.Format)
	}
	eol := l.EOL
	if eol == 0 {
		eol = '\n'
	}
	return &emitter{w: w, eol: eol, rs: []*reading{{formats: set, h: sha256.New()}}, inHeader: true}
}

// split separates the formats of r that unquote line start b differently.
func (e *emitter) split(b []byte) {
	for i := 0; i < len(e.rs); i++ {
		r := e.rs[i]
		if r.formats&(r.formats-1) == 0 {
			continue // one format: nothing to split
		}
		want := unquote(b, r.first())
		var other uint8
		for f := MboxO; f <= MboxCL2; f++ {
			if r.formats&formatBit(f) != 0 && len(unquote(b, f)) != len(want) {
				other |= formatBit(f)
			}
		}
		if other == 0 {
			continue
		}
		r.formats &^= other
		e.rs = append(e.rs, &reading{formats: other, h: cloneHash(r.h), n: r.n})
	}
}

func cloneHash(h hash.Hash) hash.Hash {
	state, err := h.(encoding.BinaryMarshaler).MarshalBinary()
	if err != nil {
		panic("mbox: sha256 state: " + err.Error())
	}
	c := sha256.New()
	if err := c.(encoding.BinaryUnmarshaler).UnmarshalBinary(state); err != nil {
		panic("mbox: sha256 state: " + err.Error())
	}
	return c
}

// write processes one fragment; start is true for the first fragment of a
// line. Unquoting never changes how a line is classified (blank,
// continuation, flag header): a quoted line starts with '>' and its
// unquoted form with "From ", neither of which is any of those.
func (e *emitter) write(b []byte, start bool) error {
	if start {
		if e.inHeader && len(b) > 0 {
			switch {
			case isBlank(b, e.eol):
				e.inHeader, e.skip = false, false
			case b[0] == ' ' || b[0] == '\t':
				// continuation: same field
			default:
				e.skip = isFlagHeader(b)
			}
		}
		if len(b) > len(fromSp) && b[0] == '>' {
			e.split(b)
		}
	}
	quoted := start && len(b) > len(fromSp) && b[0] == '>'
	for _, r := range e.rs {
		out := b
		if quoted {
			out = unquote(b, r.first())
		}
		if !e.skip {
			r.h.Write(out)
		}
		r.n += int64(len(out))
		if e.w != nil && len(out) > 0 {
			if _, err := e.w.Write(out); err != nil {
				return &WriteError{err}
			}
		}
	}
	return nil
}

// reading returns the reading of format f.
func (e *emitter) reading(f Format) *reading {
	for _, r := range e.rs {
		if r.formats&formatBit(f) != 0 {
			return r
		}
	}
	return e.rs[0]
}

// differ reports whether formats a and b have read the message differently.
func (e *emitter) differ(a, b Format) bool { return e.reading(a) != e.reading(b) }

func sum(r *reading) (s [32]byte) {
	r.h.Sum(s[:0])
	return s
}

// WriteError wraps an error of the io.Writer given to Copy, to tell it
// from an error reading the file.
type WriteError struct{ Err error }

func (e *WriteError) Error() string { return e.Err.Error() }
func (e *WriteError) Unwrap() error { return e.Err }

// ErrChanged is returned (wrapped) by Copy when the file holds fewer bytes
// at the message's range than when it was scanned.
var ErrChanged = errors.New("file changed since it was read: message range is past the end")

// Copy writes one message to w: the raw bytes [start, start+length) of r,
// unquoted as l says (see the package doc; pass the Message's Layout),
// line endings unchanged. It streams through a 64 KiB buffer whatever the
// message size.
//
// It returns the number of bytes written and the content sum: the SHA-256
// of the written bytes without the header fields that mail clients rewrite
// in place when flags change (Status, X-Status, X-Mozilla-Status,
// X-Mozilla-Status2, X-Mozilla-Keys), so that marking a message read does
// not change its identity. Reader computes the same sum in Message.Sum.
//
// Errors of w are returned as *WriteError; read errors name the file
// (name) and offset. Copy is safe for concurrent use on one io.ReaderAt
// (it only calls ReadAt).
func Copy(w io.Writer, r io.ReaderAt, name string, start, length int64, l Layout) (int64, [32]byte, error) {
	if l.Format == Auto {
		l.Format = MboxO
	}
	em := newEmitter(w, l)
	out := em.rs[0]
	br := bufio.NewReaderSize(io.NewSectionReader(r, start, length), bufSize)
	pos, lineStart := start, true
	for {
		b, err := br.ReadSlice(em.eol)
		if len(b) > 0 {
			if werr := em.write(b, lineStart); werr != nil {
				return out.n, [32]byte{}, werr
			}
			pos += int64(len(b))
		}
		switch err {
		case nil:
			lineStart = true
		case bufio.ErrBufferFull:
			lineStart = false
		case io.EOF:
			if pos != start+length {
				return out.n, [32]byte{}, fmt.Errorf("mbox %s: offset %d: %w", name, pos, ErrChanged)
			}
			return out.n, sum(out), nil
		default:
			return out.n, [32]byte{}, fmt.Errorf("mbox %s: read at offset %d: %w", name, pos, err)
		}
	}
}
