package imapconn

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-imap/v2"
)

// MULTIAPPEND (RFC 3502): several messages into one mailbox in one
// command. The server stores them in one transaction, all or none, and
// answers with one APPENDUID whose second value is the set of the new
// UIDs in the order the messages were sent (RFC 4315 section 3). For
// Dovecot that is the difference that matters in an IMAP -> IMAP copy:
// its cost is per transaction (index update, uidlist lock, fsync), and a
// batch of 50 messages costs it about what one message does (measured on
// this project's 2-core machines: 2,000 small messages in 2.4-5.6 s as
// pipelined single APPENDs, 0.6-1.2 s as MULTIAPPENDs of 50).
//
// Why here and built this way: go-imap v2 (beta.8) has no MULTIAPPEND, and
// its command encoder is unexported, so the command cannot be written
// beside its others. It is therefore built from go-imap's own APPEND, as
// literal8 is (binary.go):
//
//   - MultiAppend asks go-imap for an APPEND of the first message whose
//     flag list carries a marker (multiFlag, never sent) and whose literal
//     size is that of everything after the first message's date: the
//     first message, then for each further one ` (flags) "date" {N+}`
//     CRLF and its bytes. Those literals are non-synchronising, so
//     MultiAppend is offered only where LITERAL+ is on (LiteralPlus): no
//     continuation request is needed beyond the one go-imap waits for
//     (which literalplus.go answers locally).
//   - binaryConn, which sees every command line go-imap writes, strips the
//     marker, replaces the literal size by the first message's, and notes
//     the command's tag.
//   - On the way back, binaryConn watches for that tag's completion: an
//     "[APPENDUID v set]" there would stop go-imap's parser at the set
//     (it reads one UID); binaryConn keeps the set for MultiAppend and
//     hands go-imap the last UID only. Every other byte from the server
//     passes unchanged, literals by count.
//
// Dropping this file when go-imap gains MULTIAPPEND is one deletion plus
// the sink's call.

// MultiItem is one message of a MultiAppend.
type MultiItem struct {
	Flags []imap.Flag
	Date  time.Time // zero: the server's time
	Size  int64     // bytes Body yields
	Body  io.Reader
}

// MultiResult is what the server said of a stored MultiAppend.
type MultiResult struct {
	UIDValidity uint32
	// UIDs of the messages in the order given; nil when the server sent
	// no APPENDUID (no UIDPLUS) or a set that does not match the count.
	UIDs []imap.UID
}

// CanMultiAppend reports whether MultiAppend may be used on c: the server
// advertises MULTIAPPEND and LITERAL+ is on.
func (c *Conn) CanMultiAppend() bool {
	return c.LiteralPlus() && c.bin != nil && c.Caps().Has(imap.Cap("MULTIAPPEND"))
}

// multiSeq numbers MultiAppends (the marker flags) process-wide.
var multiSeq atomic.Uint64

// multiAppend is one MultiAppend in flight, shared by MultiAppend and
// binaryConn.
type multiAppend struct {
	first int64 // literal size of the first message
	// Set by binaryConn's reader at the tagged completion.
	uidValidity uint32
	uids        []imap.UID
	setErr      error
}

func multiFlag(id uint64) imap.Flag {
	return imap.Flag(`\X-Mailhaul-Multi-` + strconv.FormatUint(id, 10))
}

// MultiAppend appends items (two or more) to mailbox in one MULTIAPPEND
// and returns the UIDs APPENDUID gave. Call it inside Do, after
// CanMultiAppend said yes. Errors are go-imap's: an *imap.Error when the
// server refused the command (nothing was stored: RFC 3502 makes the
// command atomic), any other error when the connection failed (then the
// messages may or may not be stored, all of them or none).
func (c *Conn) MultiAppend(mailbox string, items []MultiItem) (MultiResult, error) {
	if len(items) < 2 {
		return MultiResult{}, errors.New("multiappend: fewer than two messages")
	}
	id := multiSeq.Add(1)
	ma := &multiAppend{first: items[0].Size}
	heads := make([][]byte, len(items))
	total := items[0].Size
	for k := 1; k < len(items); k++ {
		heads[k] = multiHead(items[k])
		total += int64(len(heads[k])) + items[k].Size
	}
	c.bin.register(id, ma)
	defer c.bin.forget(id)
	flags := append(append([]imap.Flag{}, items[0].Flags...), multiFlag(id))
	cmd := c.Client.Append(mailbox, total, &imap.AppendOptions{Flags: flags, Time: items[0].Date})
	// The batch goes out in chunks of multiWriteSize, not a write or two
	// per message: go-imap's own buffer is 4 KiB, and most messages are
	// a few times that.
	w := multiWriters.Get().(*bufio.Writer)
	w.Reset(cmd)
	var werr error
	for k, it := range items {
		if k > 0 {
			if _, werr = w.Write(heads[k]); werr != nil {
				break
			}
		}
		n, err := io.Copy(w, it.Body)
		if err == nil && n != it.Size {
			err = fmt.Errorf("message %d of the batch: %d bytes, %d announced", k+1, n, it.Size)
		}
		if err != nil {
			werr = err
			break
		}
	}
	if werr == nil {
		werr = w.Flush()
	}
	w.Reset(nil)
	multiWriters.Put(w)
	cerr := cmd.Close()
	data, err := cmd.Wait()
	if err == nil {
		err = werr
	}
	if err == nil {
		err = cerr
	}
	if err != nil {
		return MultiResult{}, err
	}
	res := MultiResult{UIDValidity: data.UIDValidity}
	c.bin.multi.mu.Lock()
	if ma.setErr == nil && len(ma.uids) == len(items) {
		res.UIDValidity, res.UIDs = ma.uidValidity, ma.uids
	}
	c.bin.multi.mu.Unlock()
	return res, nil
}

// multiWriteSize is the size of the chunks a MultiAppend is written in.
const multiWriteSize = 128 << 10

var multiWriters = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, multiWriteSize) }}

// multiHead is what precedes a further message of a MULTIAPPEND: its flag
// list, its date and its literal header (non-synchronising).
func multiHead(it MultiItem) []byte {
	var b bytes.Buffer
	b.WriteString(" (")
	for i, f := range it.Flags {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(string(f))
	}
	b.WriteByte(')')
	if !it.Date.IsZero() {
		b.WriteString(` "` + it.Date.Format("_2-Jan-2006 15:04:05 -0700") + `"`)
	}
	fmt.Fprintf(&b, " {%d+}\r\n", it.Size)
	return b.Bytes()
}

// multiState is binaryConn's part: MultiAppends by marker id (registered
// before the command is written) and by tag (once its line went out), and
// the reader that finds their completions.
type multiState struct {
	mu    sync.Mutex
	byID  map[uint64]*multiAppend
	byTag map[string]*multiAppend

	// Reader state, used by read only. The stream is followed as
	// literalplus.go's serverScanner does: response lines, and literals
	// (of data responses only) passed by count.
	rlit    int64 // literal bytes still to pass through unscanned
	inLine  bool  // some byte of the current line was seen
	heldAll bool  // ... and every one of them is in held
	cont    bool  // the line continues a data response after a literal
	head    []byte
	rtail   literalTail
	held    []byte // bytes of the current line not yet handed on
	rout    []byte // bytes ready for the caller
	rerr    error  // error to return once rout is drained
}

func (m *multiState) register(id uint64, ma *multiAppend) {
	m.mu.Lock()
	if m.byID == nil {
		m.byID, m.byTag = map[uint64]*multiAppend{}, map[string]*multiAppend{}
	}
	m.byID[id] = ma
	m.mu.Unlock()
}

func (m *multiState) forget(id uint64) {
	m.mu.Lock()
	ma := m.byID[id]
	delete(m.byID, id)
	for t, x := range m.byTag {
		if x == ma {
			delete(m.byTag, t)
		}
	}
	m.mu.Unlock()
}

var multiMarkerPrefix = []byte(`\X-Mailhaul-Multi-`)

// rewriteMulti handles a command line carrying a multi marker: the marker
// is removed, the literal size becomes the first message's and the tag is
// noted. Other lines are returned unchanged. Called with the write lock.
func (m *multiState) rewriteMulti(line []byte) []byte {
	i := bytes.Index(line, multiMarkerPrefix)
	if i < 0 {
		return line
	}
	j := i + len(multiMarkerPrefix)
	for j < len(line) && line[j] >= '0' && line[j] <= '9' {
		j++
	}
	id, err := strconv.ParseUint(string(line[i+len(multiMarkerPrefix):j]), 10, 64)
	m.mu.Lock()
	ma := m.byID[id]
	m.mu.Unlock()
	if err != nil || ma == nil {
		return line
	}
	start := i
	if start > 0 && line[start-1] == ' ' {
		start-- // " \X-..." after other flags
	}
	out := append(append([]byte{}, line[:start]...), line[j:]...)
	b := bytes.LastIndexByte(out, '{')
	c := bytes.LastIndexByte(out, '}')
	if b < 0 || c < b || literalAtEnd(out) == 0 {
		return line
	}
	hdr := "{" + strconv.FormatInt(ma.first, 10)
	if out[c-1] == '+' {
		hdr += "+"
	}
	out = append(append(append([]byte{}, out[:b]...), hdr...), out[c:]...)
	if sp := bytes.IndexByte(out, ' '); sp > 0 {
		m.mu.Lock()
		m.byTag[string(out[:sp])] = ma
		m.mu.Unlock()
	}
	return out
}

// read is binaryConn.Read: it passes the server's bytes on, and rewrites
// the tagged completion of a MultiAppend. Whether one is pending is asked
// after each read from the server returns, not before it blocks: a
// MultiAppend registered while this goroutine waited must see its
// completion, and bytes that arrived before it was registered cannot hold
// it. With none pending (and no line held) the bytes are handed on where
// they were read, only followed.
func (m *multiState) read(r io.Reader, p []byte) (int, error) {
	for len(m.rout) == 0 {
		if m.rerr != nil {
			err := m.rerr
			m.rerr = nil
			return 0, err
		}
		n, err := r.Read(p)
		m.mu.Lock()
		pending := len(m.byTag) > 0 || len(m.byID) > 0
		m.mu.Unlock()
		if !pending && len(m.held) == 0 {
			m.scan(p[:n], false)
			return n, err
		}
		m.scan(p[:n], true)
		m.rerr = err
		if n == 0 && err == nil {
			continue
		}
	}
	n := copy(p, m.rout)
	m.rout = m.rout[n:]
	return n, nil
}

// scan follows p; with keep it also appends p to rout, holding each line
// until its end so that a MultiAppend's completion can be rewritten.
func (m *multiState) scan(p []byte, keep bool) {
	for len(p) > 0 {
		if m.rlit > 0 {
			k := int(min(m.rlit, int64(len(p))))
			if keep {
				m.rout = append(m.rout, p[:k]...)
			}
			m.rlit -= int64(k)
			p = p[k:]
			continue
		}
		i := bytes.IndexByte(p, '\n')
		seg := p
		if i >= 0 {
			seg = p[:i]
		}
		if !m.inLine {
			m.inLine, m.heldAll = true, keep
		}
		if !keep {
			m.heldAll = false
		}
		for _, b := range seg {
			m.rtail.step(b, true)
		}
		if n := min(len(seg), 32-len(m.head)); n > 0 {
			m.head = append(m.head, seg[:n]...)
		}
		if keep {
			m.held = append(m.held, seg...)
		}
		if i < 0 {
			return
		}
		p = p[i+1:]
		cls := byte('d')
		if !m.cont {
			cls = classify(m.head)
		}
		if keep {
			line := append(m.held, '\n')
			if cls == 't' && m.heldAll {
				line = m.completion(line)
			}
			m.rout = append(m.rout, line...)
		}
		m.cont = false
		if cls == 'd' && m.rtail.header() {
			m.rlit, m.cont = m.rtail.n, true
		}
		m.inLine, m.heldAll, m.head, m.held, m.rtail = false, false, m.head[:0], m.held[:0], literalTail{}
	}
}

// completion rewrites "TAG OK [APPENDUID v set] ..." of a MultiAppend's
// tag to one UID and keeps the set; other lines are returned unchanged.
func (m *multiState) completion(line []byte) []byte {
	sp := bytes.IndexByte(line, ' ')
	if sp <= 0 {
		return line
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	ma := m.byTag[string(line[:sp])]
	if ma == nil {
		return line
	}
	delete(m.byTag, string(line[:sp]))
	const code = "[APPENDUID "
	i := bytes.Index(bytes.ToUpper(line), []byte(code))
	if i < 0 {
		return line
	}
	end := bytes.IndexByte(line[i:], ']')
	if end < 0 {
		return line
	}
	fields := strings.Fields(string(line[i+len(code) : i+end]))
	if len(fields) != 2 {
		return line
	}
	v, err := strconv.ParseUint(fields[0], 10, 32)
	if err != nil {
		return line
	}
	uids, err := parseUIDList(fields[1])
	ma.uidValidity, ma.uids, ma.setErr = uint32(v), uids, err
	if err != nil || len(uids) == 0 {
		return line
	}
	last := strconv.FormatUint(uint64(uids[len(uids)-1]), 10)
	out := append([]byte{}, line[:i+len(code)]...)
	out = append(out, fields[0]+" "+last...)
	return append(out, line[i+end:]...)
}

// parseUIDList expands a uid-set ("5", "5:7", "5,7:9") in the order
// written; a range is ascending whichever way it is written.
func parseUIDList(s string) ([]imap.UID, error) {
	var out []imap.UID
	for _, part := range strings.Split(s, ",") {
		a, b, isRange := strings.Cut(part, ":")
		x, err := strconv.ParseUint(a, 10, 32)
		if err != nil || x == 0 {
			return nil, fmt.Errorf("bad uid-set %q", s)
		}
		y := x
		if isRange {
			if y, err = strconv.ParseUint(b, 10, 32); err != nil || y == 0 {
				return nil, fmt.Errorf("bad uid-set %q", s)
			}
		}
		if y < x {
			x, y = y, x
		}
		if y-x > 1<<20 {
			return nil, fmt.Errorf("uid-set %q too large", s)
		}
		for u := x; u <= y; u++ {
			out = append(out, imap.UID(u))
		}
	}
	return out, nil
}
