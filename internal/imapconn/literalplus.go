package imapconn

import (
	"bytes"
	"errors"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Non-synchronising literals (RFC 7888 LITERAL+) for APPEND.
//
// Why: go-imap v2 (v2.0.0-beta.8) writes the literal of an APPEND (and of
// every command built with commandEncoder.Literal) as a synchronising
// literal, "{N}\r\n", and then waits for the server's "+" continuation
// before it sends the N bytes, holding the connection's write lock. It
// checks only LITERAL- (and the 4096-byte limit of LITERAL-), never
// LITERAL+, so against a LITERAL+ server such as Dovecot every APPEND costs
// one extra round trip on its connection, which makes IMAP -> IMAP copies
// over a WAN slower than mbsync's "{N+}" literals. The upstream fix is one
// line in imapclient/client.go, commandEncoder.Literal:
//
//	if !hasCapLiteralPlus && (size > 4096 || !hasCapLiteralMinus) { /* register a continuation request */ }
//
// (reading imap.CapLiteralPlus next to imap.CapLiteralMinus). Until go-imap
// has it, literalPlusConn sits between imapclient and the connection and
// does the same on the wire:
//
//   - Writer: it follows the client -> server stream (command lines ending
//     in CRLF; a line ending in "{N}" or "{N+}" is followed by exactly N
//     literal bytes, passed through unscanned) and, once enabled, rewrites
//     a synchronising literal header "{N}\r\n" at the end of a command line
//     into "{N+}\r\n". Message bytes are never looked at, so a body holding
//     "{5}\r\n" is sent unchanged. Writes may be split at any byte: the "}"
//     (and "\r") of a header is withheld until the line end shows it is one.
//   - Reader: for every header rewritten it hands imapclient a synthetic
//     continuation line, "+ mailhaul: LITERAL+\r\n", which satisfies the
//     continuation request go-imap registered for that literal, so go-imap
//     sends the literal at once. The line is inserted only at a response
//     boundary of the server -> client stream, which is parsed the same way
//     (server literals, e.g. the bodies of FETCH responses, are skipped by
//     count; status responses and "+" lines are text, whose trailing "{N}"
//     is not a literal), never inside a response line or literal. If the
//     reader is blocked in Read when a continuation becomes due, the writer
//     wakes it by setting a read deadline in the past (the "pump" is the
//     reader goroutine itself: no extra goroutine, so nothing can leak, and
//     Close unblocks Read as it does on any net.Conn); Read recognises that
//     timeout as its own, restores the caller's deadline and delivers the
//     line. Real timeouts and errors reach the caller unchanged.
//
// It is enabled only after authentication (the writer never touches LOGIN
// or AUTHENTICATE) and only when the capabilities then advertised include
// LITERAL+ (Config.NoLiteralPlus turns it off). The wire trace is written
// here, not by imapclient: it shows "{N+}" as sent and not the synthetic
// continuation, which never crosses the wire.
//
// Assumptions, true of go-imap v2 as used by mailhaul: each synchronising
// literal header is followed by a wait for its continuation before more is
// written; continuation requests are matched in order, and no other command
// is waiting for a server "+" (IDLE, AUTHENTICATE) while the rewriting is
// on — mailhaul never uses IDLE and authenticates before enabling.

// continuationLine is what Read injects for each rewritten literal header.
const continuationLine = "+ mailhaul: LITERAL+\r\n"

// longAgo is a deadline in the past, used to interrupt a blocked Read.
var longAgo = time.Unix(1, 0)

// literalPlusConn is the net.Conn wrapper described above.
type literalPlusConn struct {
	net.Conn
	trace *redactor // wire trace, or nil
	on    atomic.Bool

	wmu  sync.Mutex // Write
	ws   clientScanner
	wbuf []byte

	rmu  sync.Mutex // Read
	rs   serverScanner
	inj  []byte // rest of the synthetic line being delivered
	left []byte // wire bytes read but not yet delivered (past a boundary)
	lerr error  // error of the Read that produced left

	// bye is the text of the last "* BYE" response the server sent (why
	// it closes the connection), found by the scanner (rs).
	bye atomic.Pointer[string]

	dmu         sync.Mutex // read deadline and injection state
	deadline    time.Time  // read deadline set by the caller
	interrupted bool       // the underlying read deadline is longAgo
	due         int        // continuations owed to the reader
}

func newLiteralPlusConn(c net.Conn, trace *redactor) *literalPlusConn {
	return &literalPlusConn{Conn: c, trace: trace}
}

// enable turns the rewriting on. Call it between commands (after login):
// the writer must be at the start of a command line.
func (c *literalPlusConn) enable() { c.on.Store(true) }

// enabled reports whether headers are being rewritten.
func (c *literalPlusConn) enabled() bool { return c.on.Load() }

func (c *literalPlusConn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	out, rewritten, copied := c.ws.feed(p, c.on.Load(), c.wbuf[:0])
	if copied && cap(out) <= 64<<10 {
		c.wbuf = out[:0] // reuse the scratch buffer (not a big literal's)
	}
	if rewritten > 0 {
		// Owe the continuation before the header leaves: the server may
		// answer the command (a NO, [TRYCREATE]) as soon as it has the
		// line, and go-imap must see our "+" first, or it cancels the
		// continuation request and then fails on an unmatched "+".
		c.dmu.Lock()
		c.due += rewritten
		if !c.interrupted {
			c.interrupted = true
			c.Conn.SetReadDeadline(longAgo)
		}
		c.dmu.Unlock()
	}
	if len(out) > 0 {
		n, err := c.Conn.Write(out)
		if c.trace != nil && n > 0 {
			c.trace.client(out[:n])
		}
		if err != nil {
			// The stream is broken (a partial command); the caller drops
			// the connection, so the exact count does not matter.
			return 0, err
		}
	}
	return len(p), nil
}

func (c *literalPlusConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	c.rmu.Lock()
	defer c.rmu.Unlock()
	for {
		c.dmu.Lock()
		if c.interrupted {
			c.Conn.SetReadDeadline(c.deadline)
			c.interrupted = false
		}
		if len(c.inj) == 0 && c.due > 0 && c.rs.atBoundary() {
			c.due--
			c.inj = []byte(continuationLine)
		}
		due := c.due > 0
		c.dmu.Unlock()
		if len(c.inj) > 0 {
			n := copy(p, c.inj)
			c.inj = c.inj[n:]
			return n, nil
		}
		if len(c.left) > 0 {
			n := c.rs.advance(c.left[:min(len(p), len(c.left))], due)
			c.takeBye()
			copy(p, c.left[:n])
			c.left = c.left[n:]
			return n, nil
		}
		if c.lerr != nil {
			err := c.lerr
			c.lerr = nil
			return 0, err
		}
		n, err := c.Conn.Read(p)
		if n > 0 && c.trace != nil {
			c.trace.server(p[:n])
		}
		if err != nil && isTimeout(err) {
			c.dmu.Lock()
			ours := c.interrupted
			c.dmu.Unlock()
			if ours {
				err = nil // our own wake-up, not the caller's deadline
			}
		}
		if n == 0 {
			if err != nil {
				return 0, err
			}
			continue
		}
		c.dmu.Lock()
		due = c.due > 0
		owed := due && len(c.inj) == 0 && c.rs.atBoundary()
		c.dmu.Unlock()
		if owed {
			// A continuation is owed and these bytes start a response:
			// the read was not interrupted in time (the server answered
			// the command line at once, a NO [TRYCREATE], while this read
			// was already under way). Hold them back: go-imap must see
			// our "+" first.
			c.left = append(c.left[:0], p[:n]...)
			c.lerr = err
			continue
		}
		k := c.rs.advance(p[:n], due)
		c.takeBye()
		if k < n {
			c.left = append(c.left[:0], p[k:n]...)
			c.lerr = err
			return k, nil
		}
		return n, err
	}
}

// takeBye publishes the text of a BYE response the scanner has just
// finished. Called by Read, under rmu.
func (c *literalPlusConn) takeBye() {
	if t := c.rs.byeDone; t != nil {
		c.rs.byeDone = nil
		c.bye.Store(t)
	}
}

var byePrefix = []byte("* BYE ")

// byeText is the last BYE text the server sent, or "".
func (c *literalPlusConn) byeText() string {
	if p := c.bye.Load(); p != nil {
		return *p
	}
	return ""
}

// SetDeadline and SetReadDeadline record the read deadline, which the
// reader restores after an interruption.
func (c *literalPlusConn) SetDeadline(t time.Time) error {
	if err := c.Conn.SetWriteDeadline(t); err != nil {
		return err
	}
	return c.SetReadDeadline(t)
}

func (c *literalPlusConn) SetReadDeadline(t time.Time) error {
	c.dmu.Lock()
	defer c.dmu.Unlock()
	c.deadline = t
	if c.interrupted {
		return nil // applied when the reader takes the interruption
	}
	return c.Conn.SetReadDeadline(t)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

// literalTail recognises a literal header, "{N}" or "{N+}", at the end of a
// line: it is fed every byte of a line outside literals.
type literalTail struct {
	phase  uint8
	n      int64
	digits int
	plus   bool
}

const (
	tailNone   = iota
	tailOpen   // "{"
	tailDigits // "{12"
	tailPlus   // "{12+"
	tailClose  // "{12}" or "{12+}"
	tailSP     // "{12} " (servers only: go-imap accepts a space before CRLF)
	tailCR     // "{12}\r" or "{12} \r"
)

// maxLiteralDigits bounds N (int64 must not overflow).
const maxLiteralDigits = 18

// step advances over b (not '\n'); allowSP accepts one space after "}".
func (t *literalTail) step(b byte, allowSP bool) {
	switch {
	case b == '{':
		*t = literalTail{phase: tailOpen}
	case b >= '0' && b <= '9' && (t.phase == tailOpen || t.phase == tailDigits):
		if t.digits == maxLiteralDigits {
			t.phase = tailNone
			return
		}
		t.phase, t.n, t.digits = tailDigits, t.n*10+int64(b-'0'), t.digits+1
	case b == '+' && t.phase == tailDigits:
		t.phase, t.plus = tailPlus, true
	case b == '}' && (t.phase == tailDigits || t.phase == tailPlus):
		t.phase = tailClose
	case b == ' ' && allowSP && t.phase == tailClose:
		t.phase = tailSP
	case b == '\r' && (t.phase == tailClose || t.phase == tailSP):
		t.phase = tailCR
	default:
		t.phase = tailNone
	}
}

// header reports whether the line so far ends with a literal header (the
// caller sees '\n' next).
func (t *literalTail) header() bool {
	return t.phase == tailClose || t.phase == tailSP || t.phase == tailCR
}

// clientScanner follows the client -> server stream: command lines and
// the literals they announce. Literal bytes are skipped by count.
type clientScanner struct {
	lit  int64 // literal bytes still to come
	tail literalTail
	held []byte // "}" or "}\r" of a synchronising header, not yet written
}

// feed scans p and returns the bytes to write now (p itself when nothing
// changes; otherwise built in dst, and copied is true) and the number of
// synchronising headers rewritten to "{N+}". With rewrite false it only
// tracks the state.
func (s *clientScanner) feed(p []byte, rewrite bool, dst []byte) (out []byte, rewritten int, copied bool) {
	modified := len(s.held) > 0
	out = dst
	start := 0 // p[start:i] is pending pass-through
	for i := 0; i < len(p); {
		if s.lit > 0 {
			k := int(min(s.lit, int64(len(p)-i)))
			s.lit -= int64(k)
			i += k
			continue
		}
		b := p[i]
		if len(s.held) > 0 {
			switch {
			case b == '\r' && len(s.held) == 1:
				s.held = append(s.held, b)
				s.tail.step(b, false)
				i++
				start = i
				continue
			case b == '\n':
				out = append(out, '+')
				rewritten++
			}
			// Either the header is complete (rewritten above) or the "}"
			// was not at the end of the line: release what was held.
			out = append(out, s.held...)
			s.held = s.held[:0]
		}
		if b == '\n' {
			if s.tail.header() {
				s.lit = s.tail.n
			}
			s.tail = literalTail{}
			i++
			continue
		}
		s.tail.step(b, false)
		if rewrite && b == '}' && s.tail.phase == tailClose && !s.tail.plus {
			out = append(out, p[start:i]...)
			modified = true
			s.held = append(s.held, b)
			i++
			start = i
			continue
		}
		i++
	}
	if !modified {
		return p, 0, false
	}
	return append(out, p[start:]...), rewritten, true
}

// serverScanner follows the server -> client stream to find response
// boundaries. A response is a line ending in LF; in a data response
// ("* 3 FETCH ...", "* LIST ...") a line ending in "{N}" continues after N
// literal bytes, whereas status responses ("tag OK ...", "* BYE ...") and
// continuation requests ("+ ...") end in free text, where "{N}" is text
// (go-imap's decoder reads it so: a server echoing a folder name "a{5}"
// in a NO must not make the scanner skip five bytes).
type serverScanner struct {
	lit     int64
	started bool // inside a response (some byte of it seen)
	class   byte // 0: not known yet, 't': text response, 'd': data response
	head    [32]byte
	nhead   int
	spaces  int
	tail    literalTail

	// A "* BYE" response is kept as it is read (at most maxByeLine
	// bytes; a longer one is not taken) and its text left in byeDone for
	// the reader to publish. The scanner knows where literals are, so a
	// message body line that starts with "* BYE" is not taken for one, and
	// literal bytes are never looked at.
	byeLine []byte
	byeLong bool
	byeDone *string // survives the reset at the end of a response
}

// maxByeLine bounds the BYE response kept for its text.
const maxByeLine = 300

// atBoundary reports whether the stream is between two responses.
func (s *serverScanner) atBoundary() bool { return !s.started && s.lit == 0 }

// advance scans p and returns how many bytes it consumed: all of p, or
// with stop up to and including the end of the first response that ends
// in p.
func (s *serverScanner) advance(p []byte, stop bool) int {
	for i := 0; i < len(p); {
		if s.lit > 0 {
			k := int(min(s.lit, int64(len(p)-i)))
			s.lit -= int64(k)
			i += k
			continue
		}
		b := p[i]
		i++
		s.started = true
		if s.class == 0 {
			if s.nhead < len(s.head) {
				s.head[s.nhead] = b
				s.nhead++
			}
			if b == ' ' {
				s.spaces++
			}
			if b == '\n' || s.spaces == 2 || s.nhead == len(s.head) {
				s.class = classify(s.head[:s.nhead])
				if s.class == 't' && s.nhead >= len(byePrefix) && bytes.EqualFold(s.head[:len(byePrefix)], byePrefix) {
					s.byeLine = append([]byte(nil), s.head[:s.nhead]...)
					if b == '\n' {
						s.byeLine = s.byeLine[:len(s.byeLine)-1]
					}
				}
			}
		} else if s.byeLine != nil && b != '\n' {
			if len(s.byeLine) < maxByeLine {
				s.byeLine = append(s.byeLine, b)
			} else {
				s.byeLong = true
			}
		}
		if b != '\n' {
			s.tail.step(b, true)
			continue
		}
		if s.class == 'd' && s.tail.header() {
			s.lit = s.tail.n
			s.tail = literalTail{}
			continue
		}
		done := s.byeDone
		if s.byeLine != nil && !s.byeLong {
			line := strings.TrimRight(string(s.byeLine), "\r")
			if text := strings.ToValidUTF8(strings.TrimSpace(line[len(byePrefix):]), "?"); text != "" {
				done = &text
			}
		}
		*s = serverScanner{byeDone: done}
		if stop {
			return i
		}
	}
	return len(p)
}

// classify tells a text response (continuation request or status
// response: no literals) from a data response by its first two tokens.
func classify(head []byte) byte {
	if len(head) > 0 && head[0] == '+' {
		return 't'
	}
	i := 0
	for i < len(head) && head[i] != ' ' {
		i++
	}
	if i == len(head) {
		return 'd'
	}
	tok := head[i+1:]
	for j, b := range tok {
		if b == ' ' || b == '\r' || b == '\n' || b == '[' {
			tok = tok[:j]
			break
		}
	}
	switch string(upperASCII(tok)) {
	case "OK", "NO", "BAD", "BYE", "PREAUTH":
		return 't'
	}
	return 'd'
}

func upperASCII(b []byte) []byte {
	u := make([]byte, len(b))
	for i, c := range b {
		if c >= 'a' && c <= 'z' {
			c -= 'a' - 'A'
		}
		u[i] = c
	}
	return u
}
