package mbox

import (
	"bufio"
	"bytes"
	"crypto/sha256"
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

// unquote removes the writer's quoting from the first fragment of a line.
func unquote(b []byte, f Format) []byte {
	switch f {
	case MboxO:
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

// emitter turns raw (quoted) line fragments of one message into message
// bytes: it unquotes, counts, hashes (leaving out flag header fields) and
// optionally writes them.
type emitter struct {
	w        io.Writer
	h        hash.Hash
	layout   Layout
	inHeader bool
	skip     bool // inside a flag header field: not hashed
	n        int64
}

func newEmitter(w io.Writer, l Layout) *emitter {
	return &emitter{w: w, h: sha256.New(), layout: l, inHeader: true}
}

// write processes one fragment; start is true for the first fragment of a
// line. It returns the fragment as written (after unquoting).
func (e *emitter) write(b []byte, start bool) ([]byte, error) {
	if start {
		b = unquote(b, e.layout.Format)
		if e.inHeader && len(b) > 0 {
			switch {
			case isBlank(b, e.layout.EOL):
				e.inHeader, e.skip = false, false
			case b[0] == ' ' || b[0] == '\t':
				// continuation: same field
			default:
				e.skip = isFlagHeader(b)
			}
		}
	}
	if !e.skip {
		e.h.Write(b)
	}
	e.n += int64(len(b))
	if e.w != nil && len(b) > 0 {
		if _, err := e.w.Write(b); err != nil {
			return b, &WriteError{err}
		}
	}
	return b, nil
}

func (e *emitter) sum() (s [32]byte) {
	e.h.Sum(s[:0])
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
// unquoted as l says (see the package doc), line endings unchanged. It
// streams through a 64 KiB buffer whatever the message size.
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
	if l.EOL == 0 {
		l.EOL = '\n'
	}
	em := newEmitter(w, l)
	br := bufio.NewReaderSize(io.NewSectionReader(r, start, length), bufSize)
	pos, lineStart := start, true
	for {
		b, err := br.ReadSlice(l.EOL)
		if len(b) > 0 {
			if _, werr := em.write(b, lineStart); werr != nil {
				return em.n, [32]byte{}, werr
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
				return em.n, [32]byte{}, fmt.Errorf("mbox %s: offset %d: %w", name, pos, ErrChanged)
			}
			return em.n, em.sum(), nil
		default:
			return em.n, [32]byte{}, fmt.Errorf("mbox %s: read at offset %d: %w", name, pos, err)
		}
	}
}
