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

// maxField bounds how much of a header field value or From_ line is kept.
const maxField = 1 << 10

// peekLen is how far ahead a Reader looks to decide whether a "From " line
// starts a message (the From_ line and the line after it).
const peekLen = 2 * maxField

// bom is the UTF-8 byte-order mark some programs write at the start of a
// text file.
var bom = []byte("\xef\xbb\xbf")

// Options configure a Reader.
type Options struct {
	// Format forces a format; Auto (the zero value) decides per message
	// (see the package doc).
	Format Format
	// Location is the time zone of From_ line dates that carry none
	// (asctime is local time of the machine that wrote the file); nil is
	// UTC.
	Location *time.Location
}

// Stats says how a Reader has read a file so far: how many messages each
// dialect was chosen for, and how many were in doubt.
type Stats struct {
	// Messages counts messages (not junk).
	Messages int
	// Same counts messages that every dialect reads the same way (no
	// quoted "From " line they unquote differently).
	Same int
	// MboxO, MboxRD and MboxCL2 count the other messages by the dialect
	// they were read in.
	MboxO, MboxRD, MboxCL2 int
	// Doubtful counts messages read as mboxo although they hold
	// `>>From ` lines, which mboxrd reads with one '>' less, and nothing
	// in the message tells which dialect wrote it. FirstDoubtful is the
	// offset of the first one.
	Doubtful      int
	FirstDoubtful int64
	// FolderData counts Pine's folder internal data (Message.FolderData),
	// among Messages.
	FolderData int
}

// String describes the dialect chosen for a file, for a log line.
func (s Stats) String() string {
	if s.Messages == 0 {
		return "no messages"
	}
	var parts []string
	add := func(n int, what string) {
		if n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, what))
		}
	}
	add(s.Same, "read the same in every dialect")
	add(s.MboxO-s.Doubtful, "read as mboxo (mboxrd reads them the same)")
	add(s.Doubtful, "read as mboxo in doubt (>>From lines kept as written)")
	add(s.MboxRD, "read as mboxrd")
	add(s.MboxCL2, "read as mboxcl2")
	out := fmt.Sprintf("%s: %s", plural(s.Messages, "message"), strings.Join(parts, ", "))
	if s.FolderData > 0 {
		out += "; the first is Pine's folder internal data, no mail"
	}
	return out
}

// plural returns "1 message", "2 messages".
func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
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

	br       *bufio.Reader
	pos      int64 // file offset of the next byte br returns
	midLine  bool  // the last fragment did not end its line
	layout   Layout
	started  bool
	err      error // sticky: io.EOF or a read error
	filePbs  []*Problem
	stats    Stats
	messages int // messages returned (Junk aside)
}

// NewReader returns a Reader over the first size bytes of r; name (the
// file path) is used in errors and problems.
func NewReader(r io.ReaderAt, size int64, name string, opts Options) *Reader {
	return &Reader{
		r: r, size: size, name: name, opts: opts,
		br: bufio.NewReaderSize(io.NewSectionReader(r, 0, size), bufSize),
	}
}

// Layout returns the line break in use and the forced format (Auto when
// the format is chosen per message: see Message.Layout); valid after the
// first call to Next.
func (r *Reader) Layout() Layout { return r.layout }

// Stats returns what the Reader found out about the dialect so far.
func (r *Reader) Stats() Stats { return r.stats }

func (r *Reader) problem(off int64, bad bool, format string, a ...any) *Problem {
	return &Problem{File: r.name, Offset: off, Bad: bad, Msg: fmt.Sprintf(format, a...)}
}

// start detects line breaks and skips a byte-order mark.
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
	if bytes.HasPrefix(head, bom) {
		if _, err := r.br.Discard(len(bom)); err != nil {
			return fmt.Errorf("mbox %s: read at offset 0: %w", r.name, err)
		}
		r.pos = int64(len(bom))
		r.filePbs = append(r.filePbs, r.problem(0, false, "UTF-8 byte-order mark at the start of the file: ignored"))
	}
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

// atFrom reports whether the next line starts with "From ". Call at a
// line start.
func (r *Reader) atFrom() bool {
	p, _ := r.br.Peek(len(fromSp))
	return bytes.Equal(p, fromSp)
}

// boundary reports whether the line at the read position starts a new
// message (call at a line start): it is a From_ line whose date parses
// (`From <sender> <asctime date>`) — unless it follows a text line
// (!afterBlank) and is followed by a line no message starts with (see
// firstLineOK): "From jane@x Thu Mar 10 12:00:00 2005" pasted into a
// letter, then the letter's text, is body; after a blank line such a
// From_ line starts a message, which is junk when no header follows — or,
// right after a blank line, a "From " line followed by a header field.
// Anything else that begins with "From " is a body line a writer failed
// to quote.
func (r *Reader) boundary(afterBlank bool) bool {
	if !r.atFrom() {
		return false
	}
	p, _ := r.br.Peek(peekLen)
	eol := r.layout.EOL
	line, next, hasNext := bytes.Cut(p, []byte{eol})
	if _, _, ok := ParseFromLine(string(trimEOL(line[len(fromSp):], eol)), r.opts.Location); ok {
		if afterBlank || !hasNext || len(next) == 0 {
			return true // or the From_ line ends the file (or the peek)
		}
		return headerFollows(next, eol)
	}
	if !afterBlank || !hasNext {
		return false
	}
	next, _, _ = bytes.Cut(next, []byte{eol})
	return isHeaderField(next)
}

// headerFollows reports whether the lines after a From_ line (rest, as
// far as the peek goes) hold a header field before a blank line: a field
// (its name may hold 8-bit bytes), a folded line, or the blank line at
// once (an empty header) — and, as firstLineOK has it, a "From " or
// ">From " line. Only lines of text up to a blank line, or to the end of
// the peek, are a letter's text.
func headerFollows(rest []byte, eol byte) bool {
	for i := 0; len(rest) > 0; i++ {
		var line []byte
		line, rest, _ = bytes.Cut(rest, []byte{eol})
		line = trimEOL(line, eol)
		switch {
		case isSpaceLine(line):
			return i == 0
		case line[0] == ' ' || line[0] == '\t', headerField8(line), firstLineOK(line):
			return true
		}
	}
	return false
}

// headerField8 is isHeaderField with 8-bit bytes allowed in the name, as
// some mailers write them ("X-Spam-Füll:").
func headerField8(line []byte) bool {
	i := 0
	for i < len(line) && line[i] > ' ' && line[i] != 0x7f && line[i] != ':' {
		i++
	}
	for j := i; i > 0 && j < len(line); j++ {
		if line[j] == ':' {
			return true
		}
		if line[j] != ' ' && line[j] != '\t' {
			return false
		}
	}
	return false
}

func trimEOL(b []byte, eol byte) []byte {
	if eol == '\n' {
		b = bytes.TrimSuffix(b, []byte{'\r'})
	}
	return b
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
		if r.atFrom() {
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

// isSpaceLine reports whether a complete line holds only spaces and tabs.
func isSpaceLine(b []byte) bool {
	return len(bytes.Trim(b, " \t\r\n")) == 0
}

// junk consumes bytes up to the next From_ line that starts a message (see
// boundary). It returns nil if they were blank or whitespace-only lines
// (before the first message, say), else a Junk message.
func (r *Reader) junk() (*Message, error) {
	off := r.pos
	end, size := off, int64(0)
	l := Layout{Format: r.layout.Format, EOL: r.layout.EOL}
	if l.Format == Auto {
		l.Format = MboxO
	}
	em := newEmitter(nil, l) // for the size Copy will report
	allBlank, prevBlank := true, off == 0 || r.pos == int64(len(bom))
	for {
		if !r.midLine && r.boundary(prevBlank) {
			break
		}
		b, start, err := r.readFrag()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		blank := start && !r.midLine && isSpaceLine(b)
		em.write(b, start)
		if !blank {
			allBlank = false
			end, size = r.pos, em.rs[0].n
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
	if off > int64(len(bom)) {
		what = "do not belong to any message: no From_ line before them"
	}
	m := &Message{Offset: off, Start: off, Len: end - off, Size: size, Junk: true, Layout: l}
	m.Problems = append(r.takeFilePbs(), r.problem(off, true, "%d bytes %s", end-off, what))
	return m, nil
}

func (r *Reader) takeFilePbs() []*Problem {
	p := r.filePbs
	r.filePbs = nil
	return p
}

// firstLineOK reports whether the first line after a From_ line can start
// a message, as leniently as a mail reader takes it: a header field (also
// the obsolete "Name : value" form), a blank or whitespace-only line, a
// folded line, or a quoted or unquoted "From " line; a byte-order mark
// before it is ignored.
func firstLineOK(b []byte) bool {
	b = bytes.TrimPrefix(b, bom)
	if isSpaceLine(b) {
		return true
	}
	b = bytes.TrimLeft(b, " \t")
	return isHeaderField(b) || bytes.HasPrefix(b, []byte(">From ")) || bytes.HasPrefix(b, fromSp)
}

// message reads one message; the next line is its From_ line.
func (r *Reader) message() (*Message, error) {
	m := &Message{Offset: r.pos, Problems: r.takeFilePbs()}
	b, _, err := r.readFrag()
	if err != nil {
		return nil, err
	}
	line := b[len(fromSp):] // atFrom saw "From "; no line break in it
	if len(line) > maxField {
		line = line[:maxField]
	}
	m.FromLine = string(bytes.TrimRight(line, "\r\n"))
	if err := r.skipLine(); err != nil && err != io.EOF {
		return nil, err
	}
	if m.FromLine == kdeDummyFrom {
		// No date: the source takes the Date: header's.
	} else if sender, d, ok := ParseFromLine(m.FromLine, r.opts.Location); ok {
		m.Date, m.WrittenDate = d, sender == "-"
	} else {
		m.Problems = append(m.Problems, r.problem(m.Offset, false, "cannot parse the date of the From_ line %q; internal date taken from the Date: header", m.FromLine))
	}
	m.Start = r.pos

	em := newEmitter(nil, r.layout)
	// Received: dates are only needed without a From_ date (or with
	// Mozilla's, see WrittenDate), Pine's fields only in a file's first
	// message: not parsed for every message.
	h := headerState{cl: -1, bodyStart: -1, wantReceived: m.Date.IsZero() || m.WrittenDate, first: r.messages == 0}
	var (
		first       = true
		nulSeen     = false
		clEnd       = int64(-1) // end of a trusted Content-Length body
		end         = int64(-1)
		noEOL       = false
		rdLines     = 0 // body lines matching ^>>+From (mboxo and mboxrd differ)
		clFromLines = 0 // "From " lines inside a trusted Content-Length body
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
		if !r.midLine && clEnd < 0 && r.boundary(false) {
			end = lineOff // a From_ line right after a message line
			break
		}
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
				m.Problems = append(m.Problems, r.problem(lineOff+int64(i), false, "NUL byte in the message: copied as it is (an IMAP destination without BINARY support may refuse it)"))
			}
		}
		if first && start {
			first = false
			if !firstLineOK(b) {
				m.Problems = append(m.Problems, r.problem(lineOff, true, "no header field after the From_ line: not a mail message (binary junk?)"))
			}
		}
		blank := start && complete && isBlank(b, r.layout.EOL)
		if blank && em.inHeader {
			// The header ends here; a Content-Length that checks out
			// delimits the body.
			h.finish()
			h.bodyStart = r.pos
			if h.cl >= 0 {
				if e, ok := r.verifyCL(r.pos, h.cl); ok {
					clEnd = e
				}
			}
		}
		if blank && clEnd < 0 {
			// A blank line before EOF or a From_ line separates messages.
			// Peek may move the buffer under b: keep a copy (<= 2 bytes).
			var keep [2]byte
			b = keep[:copy(keep[:], b)]
			if p, _ := r.br.Peek(1); len(p) == 0 || r.boundary(true) {
				end = lineOff
				break
			}
		}
		if start && len(b) > 6 && b[0] == '>' && b[1] == '>' {
			i := 0
			for i < len(b) && b[i] == '>' {
				i++
			}
			if bytes.HasPrefix(b[i:], fromSp) {
				rdLines++
			}
		}
		wasHeader := em.inHeader
		em.write(b, start)
		if wasHeader {
			if !blank {
				if start {
					h.line(b, true)
				} else {
					h.more(b)
				}
			}
			continue
		}
		if start && clEnd >= 0 && bytes.HasPrefix(b, fromSp) {
			clFromLines++
		}
	}
	m.Len = end - m.Start
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

	// The dialect of this message (see the package doc).
	f := r.layout.Format
	r.stats.Messages++
	if f == Auto {
		switch {
		case clEnd >= 0 && clFromLines > 0:
			f = MboxCL2
		case rdLines > 0 && h.seenMoz:
			f = MboxRD
		default:
			f = MboxO
			if rdLines > 0 && em.differ(MboxO, MboxRD) {
				if r.stats.Doubtful == 0 {
					r.stats.FirstDoubtful = m.Offset
				}
				r.stats.Doubtful++
			}
		}
	}
	switch {
	case r.layout.Format == Auto && !em.differ(MboxO, MboxRD) && !em.differ(MboxO, MboxCL2):
		r.stats.Same++
	case f == MboxO:
		r.stats.MboxO++
	case f == MboxRD:
		r.stats.MboxRD++
	case f == MboxCL2:
		r.stats.MboxCL2++
	}
	m.Layout = Layout{Format: f, EOL: r.layout.EOL}
	out := em.reading(f)
	m.Size = out.n
	m.Sum = sum(out)
	m.HeaderDate = h.date
	if !h.received.IsZero() {
		m.HeaderDate = h.received // arrival, as migrate.HeaderDate has it
	}
	m.Flags = h.flags
	m.Expunged = h.expunged
	m.FolderData = r.messages == 0 && h.xIMAP && strings.Contains(h.subject, "FOLDER INTERNAL DATA")
	if m.FolderData {
		r.stats.FolderData++
	}
	r.messages++
	return m, nil
}

// kdeDummyFrom is the From_ line KMail and KNode write before every
// message, whatever its date: its date says nothing.
const kdeDummyFrom = "aaa@aaa Mon Jan 01 00:00:00 1997"

// verifyCL checks a Content-Length of cl body bytes starting at bodyStart.
// It returns the message end when the body ends at a line break and is
// followed by EOF, a blank line and EOF, a blank line and a From_ line, or
// a From_ line. A length that includes the separating blank line is
// accepted too.
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
	// A From_ line right after the body (a writer that puts no blank line
	// between messages).
	if bytes.HasPrefix(after, fromSp) {
		return e, true
	}
	return 0, false
}

// headerState collects the header fields a Reader cares about.
type headerState struct {
	name         string // lower-case name of the field being read
	val          []byte
	cl           int64
	bodyStart    int64
	date         time.Time
	flags        []string
	expunged     bool
	seenMoz      bool
	wantReceived bool      // no From_ date: the Received: fields date the message
	first        bool      // the file's first message (Pine's folder data?)
	received     time.Time // the newest date of the Received: fields
	xIMAP        bool      // an X-IMAP or X-IMAPbase field
	subject      string
	done         bool
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
	n := strings.ToLower(strings.TrimRight(string(b[:i]), " \t"))
	switch n {
	case "received":
		if !h.wantReceived {
			return
		}
	case "subject", "x-imap", "x-imapbase":
		if !h.first {
			return
		}
	case "status", "x-status", "x-mozilla-status", "x-mozilla-keys", "x-evolution", "date", "content-length":
	default:
		return
	}
	h.name = n
	h.val = append(h.val[:0], b[i+1:min(len(b), i+1+maxField)]...)
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
		h.seenMoz = true
		if exp, ok := mozillaFlags(v, h.add); ok {
			h.expunged = h.expunged || exp
		}
	case "x-evolution":
		evolutionFlags(v, h.add)
	case "x-mozilla-keys":
		for _, k := range strings.Fields(v) {
			if validKeyword(k) {
				h.add(k)
			}
		}
	case "date":
		h.date = parseHeaderDate(v)
	case "received":
		if i := strings.LastIndexByte(v, ';'); i >= 0 {
			if t := parseHeaderDate(v[i+1:]); t.After(h.received) {
				h.received = t
			}
		}
	case "content-length":
		if n, err := strconv.ParseInt(v, 10, 64); err == nil && n >= 0 {
			h.cl = n
		}
	case "subject":
		h.subject = v
	case "x-imap", "x-imapbase":
		h.xIMAP = true
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
