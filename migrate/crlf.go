package migrate

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io"
)

// Line endings. IMAP requires CRLF (RFC 3501 section 2.2; Cyrus refuses a
// message with a bare LF), while Maildir and mbox files written on Unix use
// LF. A CRLFSink is sent the CRLF form: every LF not preceded by CR becomes
// CRLF; nothing else changes (a bare CR stays, CRLF stays).
//
// Copies in a CRLFSink are recognised (Locate, --dedupe, check) by the
// hash of their *comparison form*: the CRLF form with every NUL byte as
// 0x80. The CRLF form is idempotent, so a copy read back from the server
// compares equal to the source whatever mix of line endings the source
// had; and a NUL, which IMAP carries only as BINARY (RFC 3516), is stored
// by Dovecot as 0x80, so both spellings compare equal.

// countBareLF returns how many LFs in p are not preceded by CR, given
// whether the byte before p was a CR. Every fetched body passes through it
// once (Spool.Write): a text without CR is counted in one vectorised pass,
// and otherwise it jumps from LF to LF (bytes.Count of "\r\n", its first
// form, cost three times as much on CRLF mail, whose lines are short).
func countBareLF(p []byte, prevCR bool) int64 {
	if bytes.IndexByte(p, '\r') < 0 {
		n := int64(bytes.Count(p, []byte{'\n'}))
		if prevCR && len(p) > 0 && p[0] == '\n' {
			n--
		}
		return n
	}
	var n int64
	for i := 0; ; i++ {
		j := bytes.IndexByte(p[i:], '\n')
		if j < 0 {
			return n
		}
		i += j
		if i == 0 && !prevCR || i > 0 && p[i-1] != '\r' {
			n++
		}
	}
}

// CRLFWriter returns a writer that writes the CRLF form of what it is
// given to w. Writes may split a CR from its LF.
func CRLFWriter(w io.Writer) io.Writer { return &crlfWriter{w: w} }

// CompareWriter returns a writer that writes the comparison form of what
// it is given to w: the CRLF form, NUL bytes as 0x80.
func CompareWriter(w io.Writer) io.Writer { return &crlfWriter{w: w, nul: true} }

type crlfWriter struct {
	w      io.Writer
	nul    bool // NUL -> 0x80
	prevCR bool
	buf    []byte
}

func (c *crlfWriter) Write(p []byte) (int, error) {
	if countBareLF(p, c.prevCR) == 0 && (!c.nul || bytes.IndexByte(p, 0) < 0) {
		if len(p) > 0 {
			c.prevCR = p[len(p)-1] == '\r'
		}
		if _, err := c.w.Write(p); err != nil {
			return 0, err
		}
		return len(p), nil
	}
	c.buf = c.buf[:0]
	for _, b := range p {
		if b == '\n' && !c.prevCR {
			c.buf = append(c.buf, '\r')
		}
		c.prevCR = b == '\r'
		if b == 0 && c.nul {
			b = 0x80
		}
		c.buf = append(c.buf, b)
	}
	if _, err := c.w.Write(c.buf); err != nil {
		return 0, err
	}
	return len(p), nil
}

// CRLFReader returns a reader of the CRLF form of r (it reads a chunk of
// r at a time and hands out its CRLF form).
func CRLFReader(r io.Reader) io.Reader { return newCRLFReader(r) }

type crlfReader struct {
	r      io.Reader
	prevCR bool
	in     []byte
	out    []byte
	err    error
}

func newCRLFReader(r io.Reader) *crlfReader {
	return &crlfReader{r: r, in: make([]byte, 32<<10)}
}

func (c *crlfReader) Read(p []byte) (int, error) {
	for len(c.out) == 0 {
		if c.err != nil {
			return 0, c.err
		}
		n, err := c.r.Read(c.in)
		c.err = err
		c.out = c.out[:0]
		for _, b := range c.in[:n] {
			if b == '\n' && !c.prevCR {
				c.out = append(c.out, '\r')
			}
			c.out = append(c.out, b)
			c.prevCR = b == '\r'
		}
	}
	n := copy(p, c.out)
	c.out = c.out[n:]
	return n, nil
}

// CompareSum returns the size and hex SHA-256 of the comparison form of
// r (see above).
func CompareSum(r io.Reader) (int64, string, error) {
	h := sha256.New()
	cw := &countWriter{w: h}
	if _, err := io.Copy(CompareWriter(cw), r); err != nil {
		return 0, "", err
	}
	return cw.n, hex.EncodeToString(h.Sum(nil)), nil
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
