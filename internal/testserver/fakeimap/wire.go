package fakeimap

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/emersion/go-imap/v2"
)

// wireConn sits between imapserver and one client's TCP connection. It is
// how the hooks reach parts of the protocol imapserver has no callback for:
//
//   - Read follows the client -> server stream (command lines; a line ending
//     in "{N}" or "{N+}" is followed by N literal bytes, passed unscanned)
//     and hands imapserver one command line at a time, so the Command hook
//     runs before imapserver sees a command, and a refused command (with
//     the literals a LITERAL+ client sends anyway) never reaches it: the
//     tagged answer is written here. This is safe because imapserver
//     answers commands one at a time: when it asks for the next command's
//     bytes it has flushed every response to the previous one.
//   - Write follows the server -> client stream the same way, to find the
//     FETCH literal a Fetch hook wants cut, and to notice a tagged answer
//     given instead of a continuation (imapserver refusing a synchronising
//     literal, e.g. NO [TOOBIG]), after which the client sends no literal.
//   - waitGone lets a held APPEND learn that the client is gone.
//
// Read and waitGone run only on the connection's serve goroutine; Write
// normally does too. mu guards what both directions share.
type wireConn struct {
	net.Conn
	srv *Server
	id  int

	closeOnce sync.Once
	closed    chan struct{} // closed when the connection is killed or closed

	// Reader side (serve goroutine only).
	pending []byte // bytes read from the client, not yet given to imapserver
	ready   int    // how many of pending imapserver may have
	dead    bool   // waitGone saw the client go: Read reports EOF
	nCmds   int

	mu       sync.Mutex
	in       inState
	litLeft  int64 // inLiteral: bytes of the literal still to come
	litSync  bool  // inLiteral: a synchronising literal ...
	litBegun bool  // ... of which some bytes arrived (or a "+" was sent)
	swallow  bool  // the current command was refused: drop its bytes
	tag      string
	cmd      string
	user     string
	cuts     []cutArm

	wmu sync.Mutex // Write
	out outScanner
}

type inState int

const (
	inCommand inState = iota // at the start of a command (or of a non-command line: DONE, SASL)
	inLine                   // in a continuation line of the current command, after a literal
	inLiteral                // inside a literal of the current command
)

// maxLine bounds a line held back for inspection; imapserver itself refuses
// commands longer than 50 KiB.
const maxLine = 256 << 10

var errGone = errors.New("fakeimap: connection closed")

func newWireConn(c net.Conn, srv *Server, id int) *wireConn {
	return &wireConn{Conn: c, srv: srv, id: id, closed: make(chan struct{}), out: outScanner{cutLeft: -1}}
}

// kill closes the TCP connection (with an RST if reset) and wakes anything
// waiting on it. Safe from any goroutine, any number of times.
func (w *wireConn) kill(reset bool) {
	w.closeOnce.Do(func() {
		if reset {
			if tc, ok := w.Conn.(*net.TCPConn); ok {
				tc.SetLinger(0)
			}
		}
		w.Conn.Close()
		close(w.closed)
	})
}

// Close is imapserver's: it closes the connection when a session ends or
// the server stops.
func (w *wireConn) Close() error {
	w.kill(false)
	return nil
}

func (w *wireConn) isClosed() bool {
	select {
	case <-w.closed:
		return true
	default:
		return false
	}
}

// setUser records the logged-in user for hook events.
func (w *wireConn) setUser(u string) {
	w.mu.Lock()
	w.user = u
	w.mu.Unlock()
}

// command returns the name of the command being served ("" between commands).
func (w *wireConn) command() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.cmd
}

// Read gives imapserver the client's bytes, running the Command hook at the
// start of every command. See the type's comment.
func (w *wireConn) Read(p []byte) (int, error) {
	for {
		if w.ready > 0 {
			n := copy(p, w.pending[:min(w.ready, len(p))])
			w.pending = w.pending[n:]
			w.ready -= n
			return n, nil
		}
		if w.dead {
			return 0, io.EOF
		}
		if err := w.advance(); err != nil {
			return 0, err
		}
	}
}

// fill reads more from the client into pending.
func (w *wireConn) fill() error {
	if w.isClosed() {
		return net.ErrClosed
	}
	var buf [32 << 10]byte
	n, err := w.Conn.Read(buf[:])
	w.pending = append(w.pending, buf[:n]...)
	if n > 0 {
		return nil
	}
	if err == nil {
		err = io.ErrNoProgress
	}
	return err
}

// advance makes pending bytes ready, drops refused ones, or reads more.
func (w *wireConn) advance() error {
	if len(w.pending) == 0 {
		if err := w.fill(); err != nil {
			return err
		}
	}
	w.mu.Lock()
	st := w.in
	if st == inLiteral {
		n := min(int64(len(w.pending)), w.litLeft)
		w.litLeft -= n
		w.litBegun = true
		if w.litLeft == 0 {
			w.in = inLine
		}
		swallow := w.swallow
		w.mu.Unlock()
		if swallow {
			w.pending = w.pending[n:]
		} else {
			w.ready = int(n)
		}
		return nil
	}
	w.mu.Unlock()

	i := bytes.IndexByte(w.pending, '\n')
	if i < 0 {
		if len(w.pending) > maxLine { // imapserver will refuse it; do not hold it back
			w.ready = len(w.pending)
			return nil
		}
		return w.fill()
	}
	line := w.pending[:i+1]
	size, sync, hasLit := literalAtEnd(line)

	var (
		act   Action
		isCmd bool
		tag   string
	)
	if st == inCommand {
		var name string
		tag, name, isCmd = parseCommand(line)
		if isCmd {
			w.nCmds++
			w.mu.Lock()
			w.tag, w.cmd, w.swallow, w.cuts = tag, name, false, nil
			user := w.user
			w.mu.Unlock()
			text := string(bytes.TrimRight(line, "\r\n"))
			if len(text) > 1024 {
				text = text[:1024]
			}
			act = w.srv.commandHook(CommandEvent{Conn: w.id, Tag: tag, Name: name, User: user, Line: text, Seq: w.nCmds})
		}
	}
	if isCmd {
		if act.Delay > 0 {
			select {
			case <-time.After(act.Delay):
			case <-w.closed:
				return net.ErrClosed
			}
		}
		switch {
		case act.Stall:
			w.srv.logf("conn %d: stalled at %s", w.id, w.cmd)
			<-w.closed
			return net.ErrClosed
		case act.Close:
			w.kill(false)
			return io.EOF
		case act.Bye != "" || (act.Err != nil && act.Err.Type == imap.StatusResponseTypeBye):
			text := act.Bye
			if text == "" {
				text = act.Err.Text
			}
			w.writeRaw("* BYE " + oneLine(text) + "\r\n")
			w.kill(false)
			return io.EOF
		case act.Err != nil:
			if err := w.writeRaw(statusLine(tag, act.Err)); err != nil {
				return err
			}
			w.mu.Lock()
			w.swallow = true
			w.mu.Unlock()
		}
	}

	w.mu.Lock()
	swallow := w.swallow
	switch {
	case hasLit && swallow && sync:
		// A refused command's synchronising literal is never sent.
		w.in, w.swallow = inCommand, false
	case hasLit && size == 0:
		w.in = inLine
	case hasLit:
		w.in, w.litLeft, w.litSync, w.litBegun = inLiteral, size, sync, false
	default:
		w.in, w.swallow = inCommand, false
	}
	w.mu.Unlock()
	if swallow {
		w.pending = w.pending[len(line):]
	} else {
		w.ready = len(line)
	}
	return nil
}

// waitGone blocks until the client's connection is gone (EOF or error on
// read, or the connection was killed). What the client sends meanwhile is
// dropped, and Read reports EOF from then on: nothing sent after a held
// command runs. Serve goroutine only, from inside a session method.
func (w *wireConn) waitGone() {
	w.Conn.SetReadDeadline(time.Time{})
	var buf [4096]byte
	for {
		if _, err := w.Conn.Read(buf[:]); err != nil {
			break
		}
	}
	w.dead = true
	w.pending, w.ready = nil, 0
}

// writeRaw writes a line the server itself makes up (a refusal, a BYE).
func (w *wireConn) writeRaw(s string) error {
	w.wmu.Lock()
	defer w.wmu.Unlock()
	_, err := w.Conn.Write([]byte(s))
	return err
}

// armCut asks Write to cut the connection after `after` bytes of the
// literal of size `size` in the FETCH response for sequence number seq.
func (w *wireConn) armCut(seq uint32, size, after int64, reset bool) {
	w.mu.Lock()
	w.cuts = append(w.cuts, cutArm{seq: seq, size: size, after: after, reset: reset})
	w.mu.Unlock()
}

type cutArm struct {
	seq         uint32
	size, after int64
	reset       bool
}

// Write passes imapserver's output on, scanning it (see the type comment).
func (w *wireConn) Write(p []byte) (int, error) {
	w.wmu.Lock()
	defer w.wmu.Unlock()
	cut, reset := w.out.scan(w, p)
	if cut < 0 {
		return w.Conn.Write(p)
	}
	n, err := w.Conn.Write(p[:cut])
	w.kill(reset)
	w.srv.logf("conn %d: cut the connection in a FETCH literal", w.id)
	if err == nil {
		err = errGone
	}
	return n, err
}

// takeCut returns (and disarms) the cut armed for a literal of size n in
// the FETCH response for seq, or -1.
func (w *wireConn) takeCut(seq uint32, n int64) (after int64, reset bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for i, c := range w.cuts {
		if c.seq == seq && c.size == n {
			w.cuts = append(w.cuts[:i], w.cuts[i+1:]...)
			return min(max(c.after, 0), n), c.reset
		}
	}
	return -1, false
}

// taggedAnswer is told that the server answered the command with tag t.
func (w *wireConn) taggedAnswer(t string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if t != w.tag {
		return
	}
	switch {
	case w.in == inLiteral && w.litSync && !w.litBegun:
		// Refused before the continuation: the client sends no literal.
		w.in = inCommand
	case w.in != inCommand:
		// Answered before imapserver read all of the command: it refused
		// a non-synchronising literal (e.g. NO [TOOBIG]) without reading
		// it, and would take the literal for the next command. The rest
		// of the command is dropped, as RFC 7888 wants.
		w.swallow = true
	}
	w.cmd = ""
}

// contSent is told that the server sent a continuation request.
func (w *wireConn) contSent() {
	w.mu.Lock()
	if w.in == inLiteral {
		w.litBegun = true
	}
	w.mu.Unlock()
}

// outScanner follows the server -> client stream: lines, and literals
// announced by "{N}" at the end of a line of a data response.
type outScanner struct {
	lit      int64 // bytes of the current literal still to pass
	cutLeft  int64 // -1, or bytes of the current literal to pass before cutting
	head     []byte
	tail     []byte
	seq      uint32 // the line is "* seq FETCH ...": seq, else 0
	firstSeg bool
	started  bool
	reset    bool // the armed cut is an RST
}

const scanTail = 256

// scan looks at p, the next bytes to send. It returns the index at which
// to cut the connection (and whether with an RST), or -1.
func (o *outScanner) scan(w *wireConn, p []byte) (int, bool) {
	i := 0
	for i < len(p) {
		if o.lit > 0 {
			n := min(o.lit, int64(len(p)-i))
			if o.cutLeft >= 0 {
				if o.cutLeft <= n {
					return i + int(o.cutLeft), o.reset
				}
				o.cutLeft -= n
			}
			o.lit -= n
			i += int(n)
			if o.lit == 0 {
				o.cutLeft = -1
			}
			continue
		}
		if !o.started {
			o.started, o.firstSeg, o.seq = true, true, 0
			o.head, o.tail = o.head[:0], o.tail[:0]
		}
		j := bytes.IndexByte(p[i:], '\n')
		end := len(p)
		if j >= 0 {
			end = i + j + 1
		}
		o.add(p[i:end])
		i = end
		if j < 0 {
			break
		}
		if o.firstSeg {
			o.seq = fetchSeq(o.head)
		}
		size, _, hasLit := literalAtEnd(o.tail)
		if hasLit && !isTextResponse(o.head) {
			o.firstSeg = false
			o.tail = o.tail[:0]
			o.lit = size
			o.cutLeft = -1
			if o.seq != 0 {
				if after, reset := w.takeCut(o.seq, size); after >= 0 {
					o.cutLeft = after
					o.reset = reset
					if after == 0 {
						return i, reset
					}
				}
			}
			continue
		}
		// End of a response line.
		if tag, ok := taggedStatus(o.head); ok {
			w.taggedAnswer(tag)
		} else if bytes.HasPrefix(o.head, []byte("+")) {
			w.contSent()
		}
		o.started = false
	}
	return -1, false
}

func (o *outScanner) add(b []byte) {
	if o.firstSeg && len(o.head) < 64 {
		o.head = append(o.head, b[:min(len(b), 64-len(o.head))]...)
	}
	o.tail = append(o.tail, b...)
	if len(o.tail) > scanTail {
		o.tail = append(o.tail[:0], o.tail[len(o.tail)-scanTail:]...)
	}
}

// literalAtEnd reports whether line ends with a literal header: "{N}",
// "{N+}" or "{N-}" (sync is true for "{N}"), then CRLF (or a bare LF).
func literalAtEnd(line []byte) (size int64, sync, ok bool) {
	l := bytes.TrimSuffix(line, []byte("\n"))
	l = bytes.TrimSuffix(l, []byte("\r"))
	if len(l) < 3 || l[len(l)-1] != '}' {
		return 0, false, false
	}
	l = l[:len(l)-1]
	sync = true
	if c := l[len(l)-1]; c == '+' || c == '-' {
		sync = false
		l = l[:len(l)-1]
	}
	k := bytes.LastIndexByte(l, '{')
	if k < 0 || k == len(l)-1 {
		return 0, false, false
	}
	n, err := strconv.ParseInt(string(l[k+1:]), 10, 64)
	if err != nil || n < 0 {
		return 0, false, false
	}
	return n, sync, true
}

// parseCommand splits a command's first line into tag and name ("UID X"
// for UID commands). Lines without "tag SP name" are not commands.
func parseCommand(line []byte) (tag, name string, ok bool) {
	l := bytes.TrimRight(line, "\r\n")
	t, rest, found := bytes.Cut(l, []byte(" "))
	if !found || len(t) == 0 || len(rest) == 0 {
		return "", "", false
	}
	n, rest, _ := bytes.Cut(rest, []byte(" "))
	for _, c := range n {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return "", "", false
		}
	}
	if len(n) == 0 {
		return "", "", false
	}
	name = string(bytes.ToUpper(n))
	if name == "UID" {
		sub, _, _ := bytes.Cut(rest, []byte(" "))
		name += " " + string(bytes.ToUpper(sub))
	}
	return string(t), name, true
}

// fetchSeq returns seq if head starts "* seq FETCH", else 0.
func fetchSeq(head []byte) uint32 {
	rest, ok := bytes.CutPrefix(head, []byte("* "))
	if !ok {
		return 0
	}
	num, rest, ok := bytes.Cut(rest, []byte(" "))
	if !ok || !bytes.HasPrefix(bytes.ToUpper(rest), []byte("FETCH")) {
		return 0
	}
	n, err := strconv.ParseUint(string(num), 10, 32)
	if err != nil {
		return 0
	}
	return uint32(n)
}

// isTextResponse reports whether a response line is a status response or
// continuation, whose trailing "{N}" would be text, not a literal.
func isTextResponse(head []byte) bool {
	if bytes.HasPrefix(head, []byte("+")) {
		return true
	}
	_, rest, ok := bytes.Cut(head, []byte(" "))
	if !ok {
		return false
	}
	for _, s := range []string{"OK", "NO", "BAD", "BYE", "PREAUTH"} {
		if bytes.HasPrefix(rest, []byte(s+" ")) || bytes.Equal(bytes.TrimRight(rest, "\r\n"), []byte(s)) {
			return true
		}
	}
	return false
}

// taggedStatus returns the tag of a tagged status response line.
func taggedStatus(head []byte) (string, bool) {
	if bytes.HasPrefix(head, []byte("*")) || bytes.HasPrefix(head, []byte("+")) || !isTextResponse(head) {
		return "", false
	}
	tag, _, _ := bytes.Cut(head, []byte(" "))
	return string(tag), true
}

// statusLine formats a tagged status response.
func statusLine(tag string, e *imap.Error) string {
	typ := e.Type
	if typ == "" {
		typ = imap.StatusResponseTypeNo
	}
	s := tag + " " + string(typ) + " "
	if e.Code != "" {
		s += "[" + string(e.Code) + "] "
	}
	text := e.Text
	if text == "" {
		text = "refused by test hook"
	}
	return s + oneLine(text) + "\r\n"
}

func oneLine(s string) string {
	return string(bytes.Map(func(r rune) rune {
		if r == '\r' || r == '\n' || r == 0 {
			return ' '
		}
		return r
	}, []byte(s)))
}

// String names the connection in logs.
func (w *wireConn) String() string { return fmt.Sprintf("conn %d", w.id) }
