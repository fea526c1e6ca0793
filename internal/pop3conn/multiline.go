package pop3conn

import (
	"bufio"
	"bytes"
	"errors"
	"io"
)

// DotReader reads the body of one multi-line POP3 response (RFC 1939
// section 3) from a bufio.Reader positioned just after the response's
// "+OK" status line, and stops after the terminating "." line.
//
// What it yields is exactly what the server sent minus the protocol:
//
//   - the byte-stuffing is undone: a line that begins with "." has that
//     first "." removed (".." becomes ".", ".x" becomes "x");
//   - the terminating line ".CRLF" (or ".LF" from a server that ends its
//     lines with bare LF) is consumed and not returned;
//   - every other byte, line endings included, is passed on unchanged: a
//     CRLF stays CRLF, a bare LF stays a bare LF, a lone CR stays a CR. A
//     line is whatever ends in LF; a long line is never split or joined.
//
// DotReader never reads past the terminator, so the next pipelined
// response can be read from the same bufio.Reader right after EOF. If the
// stream ends first, Read returns io.ErrUnexpectedEOF (or the read error).
// Memory use is the caller's buffer: a message of any size streams.
//
// A DotReader is used by one goroutine.
type DotReader struct {
	r     *bufio.Reader
	state int
	done  bool
	err   error
	n     int64
}

const (
	stBOL   = iota // at the beginning of a line
	stDot          // a "." at the beginning of a line was read
	stDotCR        // ".\r" at the beginning of a line was read
	stData         // inside a line
)

// NewDotReader returns a DotReader of the multi-line body that follows on r.
func NewDotReader(r *bufio.Reader) *DotReader { return &DotReader{r: r} }

// Done reports whether the terminator has been read.
func (d *DotReader) Done() bool { return d.done }

// N is the number of body bytes returned so far.
func (d *DotReader) N() int64 { return d.n }

func (d *DotReader) fail(err error) error {
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	d.err = err
	return err
}

// Read implements io.Reader.
func (d *DotReader) Read(p []byte) (int, error) {
	n := 0
	defer func() { d.n += int64(n) }()
	for n < len(p) {
		if d.done {
			break
		}
		if d.err != nil {
			return n, d.err
		}
		switch d.state {
		case stBOL:
			b, err := d.r.ReadByte()
			if err != nil {
				return n, d.fail(err)
			}
			if b == '.' {
				d.state = stDot
				continue
			}
			p[n] = b
			n++
			if b != '\n' {
				d.state = stData
			}
		case stDot:
			b, err := d.r.ReadByte()
			if err != nil {
				return n, d.fail(err)
			}
			switch b {
			case '\n':
				d.done = true
			case '\r':
				d.state = stDotCR
			default:
				// A stuffed line: the "." is dropped, b is content.
				p[n] = b
				n++
				d.state = stData
			}
		case stDotCR:
			b, err := d.r.ReadByte()
			if err != nil {
				return n, d.fail(err)
			}
			if b == '\n' {
				d.done = true
				continue
			}
			// ".\r" then something else: the line was stuffed and
			// its content starts with a CR; b is read again as data.
			d.r.UnreadByte()
			p[n] = '\r'
			n++
			d.state = stData
		case stData:
			if d.r.Buffered() == 0 {
				if _, err := d.r.Peek(1); err != nil {
					return n, d.fail(err)
				}
			}
			buf, _ := d.r.Peek(d.r.Buffered())
			if room := len(p) - n; len(buf) > room {
				buf = buf[:room]
			}
			// Copy up to (and including) the first LF that is followed
			// by "." or ends what is buffered: every other line start
			// is plain data and goes in the same chunk.
			end, next := len(buf), stData
			for i := 0; ; {
				j := bytes.IndexByte(buf[i:], '\n')
				if j < 0 {
					break
				}
				k := i + j + 1
				if k == len(buf) || buf[k] == '.' {
					end, next = k, stBOL
					break
				}
				i = k
			}
			copy(p[n:], buf[:end])
			n += end
			d.r.Discard(end)
			d.state = next
		}
	}
	if d.done && n == 0 {
		return 0, io.EOF
	}
	return n, nil
}

// Drain reads and discards the rest of the body, so that the connection
// is ready for the next response.
func (d *DotReader) Drain() error {
	_, err := io.Copy(io.Discard, d)
	return err
}
