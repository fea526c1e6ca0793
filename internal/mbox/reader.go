package mbox

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// DefaultDetectWindow is how much of a file Auto looks at to choose the
// format.
const DefaultDetectWindow = 8 << 20

// maxField bounds how much of a header field value or From_ line is kept.
const maxField = 1 << 10

// Options configure a Reader.
type Options struct {
	// Format forces a format; Auto (the zero value) detects it per file.
	Format Format
	// Location is the time zone of From_ line dates that carry none
	// (asctime is local time of the machine that wrote the file); nil is
	// UTC.
	Location *time.Location
	// DetectWindow is how many bytes Auto detection reads (default
	// DefaultDetectWindow).
	DetectWindow int64
}

// Reader scans an mbox file once, sequentially, and returns its messages
// one by one as soon as each is complete. Memory use is bounded (a 64 KiB
// buffer plus small per-message metadata) whatever the file holds.
//
// A Reader is used by one goroutine. It reads r only through ReadAt, so
// Copy may extract earlier messages from the same r concurrently.
type Reader struct {
	r    io.ReaderAt
	size int64
	name string
	opts Options

	br      *bufio.Reader
	pos     int64 // file offset of the next byte br returns
	midLine bool  // the last fragment did not end its line
	layout  Layout
	started bool
	err     error // sticky: io.EOF or a read error
	filePbs []*Problem

	// statistics for format detection
	rdLines     int // body lines matching ^>>+From
	clFromLines int // "From " lines inside a trusted Content-Length body
}

// NewReader returns a Reader over the first size bytes of r; name (the
// file path) is used in errors and problems.
func NewReader(r io.ReaderAt, size int64, name string, opts Options) *Reader {
	if opts.DetectWindow <= 0 {
		opts.DetectWindow = DefaultDetectWindow
	}
	return &Reader{
		r: r, size: size, name: name, opts: opts,
		br: bufio.NewReaderSize(io.NewSectionReader(r, 0, size), bufSize),
	}
}

// Layout returns the format and line break in use; valid after the first
// call to Next.
func (r *Reader) Layout() Layout { return r.layout }

func (r *Reader) problem(off int64, bad bool, format string, a ...any) *Problem {
	return &Problem{File: r.name, Offset: off, Bad: bad, Msg: fmt.Sprintf(format, a...)}
}

// start detects line breaks and, for Auto, the format.
func (r *Reader) start() error {
	r.started = true
	head := make([]byte, 4096)
	n, err := r.r.ReadAt(head, 0)
	if err != nil && err != io.EOF {
		return fmt.Errorf("mbox %s: read at offset 0: %w", r.name, err)
	}
	if int64(n) > r.size {
		n = int(r.size)
	}
	head = head[:n]
	r.layout = Layout{Format: r.opts.Format, EOL: '\n'}
	if i := bytes.IndexByte(head, '\r'); i >= 0 && (i+1 < len(head) && head[i+1] != '\n' || i+1 == len(head)) {
		if j := bytes.IndexByte(head, '\n'); j < 0 || i < j {
			r.layout.EOL = '\r'
			r.filePbs = append(r.filePbs, r.problem(int64(i), false, "lines end in a lone CR (classic Mac OS); read with CR as the line break, bytes kept unchanged"))
		}
	}
	if r.layout.Format == Auto {
		w := min(r.size, r.opts.DetectWindow)
		d := NewReader(r.r, w, r.name, Options{Format: MboxO, Location: r.opts.Location})
		d.started, d.layout = true, Layout{Format: MboxO, EOL: r.layout.EOL}
		for {
			if _, err := d.Next(); err != nil {
				break
			}
		}
		switch {
		case d.rdLines > 0:
			r.layout.Format = MboxRD
		case d.clFromLines > 0:
			r.layout.Format = MboxCL2
		default:
			r.layout.Format = MboxO
		}
	}
	r.br.Reset(io.NewSectionReader(r.r, 0, r.size))
	return nil
}

// readFrag returns the next fragment of a line (a whole line if it fits
// the buffer) and whether it starts a line. At the end it returns io.EOF
// with no bytes. The slice is valid until the next read or peek.
func (r *Reader) readFrag() (b []byte, start bool, err error) {
	start = !r.midLine
	b, err = r.br.ReadSlice(r.layout.EOL)
	switch err {
	case nil:
		r.midLine = false
	case bufio.ErrBufferFull:
		r.midLine, err = true, nil
	case io.EOF:
		r.midLine = false
		if len(b) > 0 {
			err = nil
		}
	default:
		err = fmt.Errorf("mbox %s: read at offset %d: %w", r.name, r.pos, err)
	}
	r.pos += int64(len(b))
	return b, start, err
}

// skipLine consumes the rest of the current line.
func (r *Reader) skipLine() error {
	for r.midLine {
		if _, _, err := r.readFrag(); err != nil {
			return err
		}
	}
	return nil
}

// peekFrom reports whether the next line starts with "From " and whether
// its date parses. Call at a line start.
func (r *Reader) peekFrom() (isFrom, dateOK bool) {
	p, _ := r.br.Peek(maxField)
	if !bytes.HasPrefix(p, fromSp) {
		return false, false
	}
	if i := bytes.IndexByte(p, r.layout.EOL); i >= 0 {
		p = p[:i]
	}
	_, _, ok := ParseFromLine(string(p[len(fromSp):]), r.opts.Location)
	return true, ok
}

// Next returns the next message, or io.EOF after the last one. Problems
// of the message are in Message.Problems; the only errors are I/O errors
// of the underlying reader (after which Next keeps returning the error).
func (r *Reader) Next() (*Message, error) {
	if r.err != nil {
		return nil, r.err
	}
	if !r.started {
		if err := r.start(); err != nil {
			r.err = err
			return nil, err
		}
	}
	for {
		if r.midLine {
			if err := r.skipLine(); err != nil {
				return nil, r.fail(err)
			}
		}
		if isFrom, _ := r.peekFrom(); isFrom {
			m, err := r.message()
			if err != nil {
				return nil, r.fail(err)
			}
			return m, nil
		}
		m, err := r.junk()
		if err != nil {
			return nil, r.fail(err)
		}
		if m != nil {
			return m, nil
		}
	}
}

func (r *Reader) fail(err error) error {
	r.err = err
	return err
}

// junk consumes bytes up to the next acceptable From_ line: one preceded
// by a blank line, or one whose date parses. It returns nil if they were
// blank lines only, else a Junk message.
func (r *Reader) junk() (*Message, error) {
	off := r.pos
	end, size := off, int64(0)
	em := newEmitter(nil, r.layout) // for the size Copy will report
	allBlank, prevBlank := true, false
	for {
		if !r.midLine {
			if isFrom, dateOK := r.peekFrom(); isFrom && (prevBlank || dateOK) {
				break
			}
		}
		b, start, err := r.readFrag()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		blank := start && !r.midLine && isBlank(b, r.layout.EOL)
		em.write(b, start)
		if !blank {
			allBlank = false
			end, size = r.pos, em.n
		}
		if !r.midLine {
			prevBlank = blank
		}
	}
	if allBlank {
		if r.pos == off {
			r.err = io.EOF
			return nil, io.EOF
		}
		return nil, nil
	}
	what := "do not belong to any message: the file does not start with a From_ line"
	if off > 0 {
		what = "do not belong to any message: no From_ line before them"
	}
	m := &Message{Offset: off, Start: off, Len: end - off, Size: size, Junk: true}
	m.Problems = append(r.takeFilePbs(), r.problem(off, true, "%d bytes %s", end-off, what))
	return m, nil
}

func (r *Reader) takeFilePbs() []*Problem {
	p := r.filePbs
	r.filePbs = nil
	return p
}

// message reads one message; the next line is its From_ line.
func (r *Reader) message() (*Message, error) {
	m := &Message{Offset: r.pos, Problems: r.takeFilePbs()}
	b, _, err := r.readFrag()
	if err != nil {
		return nil, err
	}
	line := b[len(fromSp):] // peekFrom saw "From "; no line break in it
	if len(line) > maxField {
		line = line[:maxField]
	}
	m.FromLine = string(bytes.TrimRight(line, "\r\n"))
	if err := r.skipLine(); err != nil && err != io.EOF {
		return nil, err
	}
	if _, d, ok := ParseFromLine(m.FromLine, r.opts.Location); ok {
		m.Date = d
	} else {
		m.Problems = append(m.Problems, r.problem(m.Offset, false, "cannot parse the date of the From_ line %q; internal date taken from the Date: header", m.FromLine))
	}
	m.Start = r.pos

	em := newEmitter(nil, r.layout)
	h := headerState{cl: -1, bodyStart: -1}
	var (
		first   = true
		nulSeen = false
		clEnd   = int64(-1) // end of a trusted Content-Length body
		end     = int64(-1)
		noEOL   = false
	)
	for {
		if clEnd >= 0 && r.pos >= clEnd && !r.midLine {
			end = clEnd
			// Consume the separating blank line, if any.
			p, _ := r.br.Peek(2)
			if len(p) > 0 && p[0] == r.layout.EOL || len(p) == 2 && isBlank(p, r.layout.EOL) {
				if _, _, err := r.readFrag(); err != nil && err != io.EOF {
					return nil, err
				}
			}
			break
		}
		lineOff := r.pos
		b, start, err := r.readFrag()
		if err == io.EOF {
			end = r.pos
			break
		}
		if err != nil {
			return nil, err
		}
		complete := !r.midLine
		noEOL = complete && b[len(b)-1] != r.layout.EOL
		if !nulSeen {
			if i := bytes.IndexByte(b, 0); i >= 0 {
				nulSeen = true
				m.Problems = append(m.Problems, r.problem(lineOff+int64(i), true, "NUL byte: binary data, not a mail message"))
			}
		}
		if start && complete && clEnd < 0 && isBlank(b, r.layout.EOL) {
			// A blank line: the separator if a From_ line or EOF follows.
			// Peek may move the buffer under b: keep a copy (<= 2 bytes).
			var keep [2]byte
			b = keep[:copy(keep[:], b)]
			p, _ := r.br.Peek(len(fromSp))
			if len(p) == 0 || bytes.Equal(p, fromSp) {
				end = lineOff
				break
			}
		}
		if first && start {
			first = false
			if !isBlank(b, r.layout.EOL) && !isHeaderField(b) && !bytes.HasPrefix(b, []byte(">From ")) && !bytes.HasPrefix(b, fromSp) {
				m.Problems = append(m.Problems, r.problem(lineOff, true, "no header field after the From_ line: not a mail message (binary junk?)"))
			}
		}
		wasHeader := em.inHeader
		out, _ := em.write(b, start)
		if wasHeader {
			if start {
				h.line(out, em.inHeader)
			} else {
				h.more(out)
			}
			if !em.inHeader {
				h.bodyStart = r.pos
			}
			if !em.inHeader && h.cl >= 0 {
				h.finish()
				if e, ok := r.verifyCL(r.pos, h.cl); ok {
					clEnd = e
				}
			}
			continue
		}
		if start {
			if clEnd >= 0 {
				if bytes.HasPrefix(b, fromSp) {
					r.clFromLines++
				}
			} else if len(b) > 6 && b[0] == '>' && b[1] == '>' {
				i := 0
				for i < len(b) && b[i] == '>' {
					i++
				}
				if bytes.HasPrefix(b[i:], fromSp) {
					r.rdLines++
				}
			}
		}
	}
	m.Len = end - m.Start
	m.Size = em.n
	m.Sum = em.sum()
	if m.Len == 0 {
		m.Problems = append(m.Problems, r.problem(m.Offset, true, "empty message (a From_ line and nothing else)"))
	}
	if em.inHeader {
		h.finish()
		if end == r.size && m.Len > 0 {
			m.Problems = append(m.Problems, r.problem(end, true, "file ends inside the message header: truncated"))
		}
	}
	if h.cl >= 0 && clEnd < 0 {
		bodyStart := h.bodyStart
		if bodyStart >= 0 && end == r.size && bodyStart+h.cl > r.size {
			m.Problems = append(m.Problems, r.problem(m.Offset, true, "Content-Length %d but the file ends %d bytes after the body starts: truncated", h.cl, r.size-bodyStart))
		} else {
			m.Problems = append(m.Problems, r.problem(m.Offset, false, "Content-Length %d does not end at a From_ line; message boundary found by From_ lines instead", h.cl))
		}
	}
	if noEOL && end == r.size {
		m.Problems = append(m.Problems, r.problem(end, false, "file ends in the middle of a line (truncated?)"))
	}
	m.HeaderDate = h.date
	m.Flags = h.flags
	m.Expunged = h.expunged
	return m, nil
}

// verifyCL checks a Content-Length of cl body bytes starting at bodyStart.
// It returns the message end when the body ends at a line break and is
// followed by EOF, a blank line and EOF, or a blank line and a From_ line.
// A length that includes the separating blank line is accepted too.
func (r *Reader) verifyCL(bodyStart, cl int64) (int64, bool) {
	e := bodyStart + cl
	if cl < 0 || e > r.size {
		return 0, false
	}
	eol := r.layout.EOL
	lo := max(e-4, 0)
	buf := make([]byte, e-lo+8)
	n, err := r.r.ReadAt(buf, lo)
	if err != nil && err != io.EOF {
		return 0, false
	}
	buf = buf[:n]
	before, after := buf[:e-lo], buf[e-lo:]
	if cl > 0 && (len(before) == 0 || before[len(before)-1] != eol) {
		return 0, false
	}
	blankLen := func(p []byte) int {
		if len(p) >= 1 && p[0] == eol {
			return 1
		}
		if eol == '\n' && len(p) >= 2 && p[0] == '\r' && p[1] == '\n' {
			return 2
		}
		return 0
	}
	if len(after) == 0 {
		return e, true
	}
	if k := blankLen(after); k > 0 && (len(after) == k || bytes.HasPrefix(after[k:], fromSp)) {
		return e, true
	}
	// Content-Length counted the separator: the body ends with a blank line
	// and a From_ line follows directly.
	if bytes.HasPrefix(after, fromSp) && cl > 0 {
		if bytes.HasSuffix(before, []byte{eol, eol}) {
			return e - 1, true
		}
		if eol == '\n' && bytes.HasSuffix(before, []byte("\n\r\n")) {
			return e - 2, true
		}
	}
	return 0, false
}

// headerState collects the header fields a Reader cares about.
type headerState struct {
	name      string // lower-case name of the field being read
	val       []byte
	cl        int64
	bodyStart int64
	date      time.Time
	flags     []string
	expunged  bool
	seenMoz   bool
	done      bool
}

func (h *headerState) add(f string) {
	for _, g := range h.flags {
		if g == f {
			return
		}
	}
	h.flags = append(h.flags, f)
}

// line handles the first fragment of a header line (unquoted);
// stillHeader is false when it was the blank line ending the header.
func (h *headerState) line(b []byte, stillHeader bool) {
	if !stillHeader {
		h.finish()
		return
	}
	if len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		h.more(b)
		return
	}
	h.flush()
	i := bytes.IndexByte(b, ':')
	if i <= 0 {
		return
	}
	switch n := strings.ToLower(string(b[:i])); n {
	case "status", "x-status", "x-mozilla-status", "x-mozilla-keys", "date", "content-length":
		h.name = n
		h.val = append(h.val[:0], b[i+1:min(len(b), i+1+maxField)]...)
	}
}

func (h *headerState) more(b []byte) {
	if h.name != "" && len(h.val) < maxField {
		h.val = append(h.val, b[:min(len(b), maxField-len(h.val))]...)
	}
}

func (h *headerState) flush() {
	if h.name == "" {
		return
	}
	v := strings.TrimSpace(string(h.val))
	switch h.name {
	case "status", "x-status":
		statusFlags(v, h.add)
	case "x-mozilla-status":
		if exp, ok := mozillaFlags(v, h.add); ok {
			h.expunged = h.expunged || exp
		}
	case "x-mozilla-keys":
		for _, k := range strings.Fields(v) {
			if validKeyword(k) {
				h.add(k)
			}
		}
	case "date":
		h.date = parseHeaderDate(v)
	case "content-length":
		if n, err := strconv.ParseInt(v, 10, 64); err == nil && n >= 0 {
			h.cl = n
		}
	}
	h.name = ""
	h.val = h.val[:0]
}

func (h *headerState) finish() {
	if h.done {
		return
	}
	h.flush()
	h.done = true
}
