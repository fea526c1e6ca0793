package testserver

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// FakePOP3 is a small POP3 server (RFC 1939 with CAPA, UIDL, TOP, RESP-CODES,
// PIPELINING, AUTH PLAIN and a Microsoft-style two-step AUTH XOAUTH2) in the
// test process, for what Dovecot will not do on request: no UIDL, no
// PIPELINING, -ERR [IN-USE], a connection cut in the middle of a RETR, a
// reply that stalls, a huge message generated on the fly.
//
// It keeps RFC 1939's session rules: one session per maildrop (a second
// login while one is in the TRANSACTION state gets -ERR [IN-USE]),
// message numbers fixed for a session, DELE only marks, and marked
// messages are removed only when QUIT is answered; a session that ends
// otherwise removes nothing. It listens on 127.0.0.1 (plaintext, no STLS)
// and stops when the test ends. All methods are safe for concurrent use.
type FakePOP3 struct {
	Addr string

	opt FakePOP3Options
	ln  net.Listener

	mu        sync.Mutex
	msgs      []*fakeMsg
	locked    bool
	inUse     int
	drops     map[string]int // UIDL -> RETRs still to cut
	stalls    map[string]int // UIDL -> RETRs still to stall
	stats     FakePOP3Stats
	conns     map[net.Conn]bool
	closed    bool
	wg        sync.WaitGroup
	stallDone chan struct{}
}

// FakePOP3Options configure StartFakePOP3.
type FakePOP3Options struct {
	User, Password string // default "alice", "secret"
	// Token, if set, is the access token AUTH XOAUTH2 accepts.
	Token        string
	NoUIDL       bool // UIDL answers -ERR and is not in CAPA
	NoTop        bool // TOP answers -ERR and is not in CAPA
	NoPipelining bool // PIPELINING is not in CAPA
	Last         bool // LAST is answered (RFC 1460), as Dovecot's pop3_enable_last does
}

// FakeMessage is one message of the maildrop. Body is served as it is
// (give it CRLF line ends, as a POP3 server would); or, for big messages,
// Gen writes the body and Size is its length.
type FakeMessage struct {
	UIDL string
	Body []byte
	Gen  func(w io.Writer) error
	Size int64
}

type fakeMsg struct {
	FakeMessage
	gone bool
}

func (m *fakeMsg) size() int64 {
	if m.Gen != nil {
		return m.Size
	}
	return int64(len(m.Body))
}

// FakePOP3Stats counts what clients did.
type FakePOP3Stats struct {
	Logins        int // sessions that reached TRANSACTION
	InUseRefused  int // logins refused with [IN-USE]
	Retrs         int
	Tops          int
	Quits         int // QUITs in TRANSACTION that committed
	Deleted       int // messages removed at QUIT
	Rsets         int // RSETs answered
	Pipelined     int // replies after which the next command had already arrived
	PipelineFault int // ... while PIPELINING was not offered
}

// StartFakePOP3 starts the server with msgs and stops it in t.Cleanup.
func StartFakePOP3(t testing.TB, opt FakePOP3Options, msgs []FakeMessage) *FakePOP3 {
	t.Helper()
	if opt.User == "" {
		opt.User, opt.Password = "alice", "secret"
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &FakePOP3{Addr: ln.Addr().String(), opt: opt, ln: ln, drops: map[string]int{}, stalls: map[string]int{},
		conns: map[net.Conn]bool{}, stallDone: make(chan struct{})}
	for _, m := range msgs {
		f.msgs = append(f.msgs, &fakeMsg{FakeMessage: m})
	}
	f.wg.Add(1)
	go f.accept()
	t.Cleanup(f.Close)
	return f
}

// Close stops the server and cuts every connection.
func (f *FakePOP3) Close() {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return
	}
	f.closed = true
	close(f.stallDone)
	for c := range f.conns {
		c.Close()
	}
	f.mu.Unlock()
	f.ln.Close()
	f.wg.Wait()
}

// InUse makes the next n logins fail with -ERR [IN-USE].
func (f *FakePOP3) InUse(n int) {
	f.mu.Lock()
	f.inUse = n
	f.mu.Unlock()
}

// DropDuringRetr makes the next times RETRs of the message with uidl send
// half of the message and then close the connection.
func (f *FakePOP3) DropDuringRetr(uidl string, times int) {
	f.mu.Lock()
	f.drops[uidl] = times
	f.mu.Unlock()
}

// StallDuringRetr makes the next times RETRs of the message with uidl send
// half of the message and then nothing, until the client gives up.
func (f *FakePOP3) StallDuringRetr(uidl string, times int) {
	f.mu.Lock()
	f.stalls[uidl] = times
	f.mu.Unlock()
}

// Add appends a message to the maildrop (new mail).
func (f *FakePOP3) Add(m FakeMessage) {
	f.mu.Lock()
	f.msgs = append(f.msgs, &fakeMsg{FakeMessage: m})
	f.mu.Unlock()
}

// UIDLs returns the UIDLs of the messages still in the maildrop.
func (f *FakePOP3) UIDLs() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, m := range f.msgs {
		if !m.gone {
			out = append(out, m.UIDL)
		}
	}
	return out
}

// Stats returns the counters.
func (f *FakePOP3) Stats() FakePOP3Stats {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.stats
}

func (f *FakePOP3) accept() {
	defer f.wg.Done()
	for {
		c, err := f.ln.Accept()
		if err != nil {
			return
		}
		f.mu.Lock()
		if f.closed {
			f.mu.Unlock()
			c.Close()
			return
		}
		f.conns[c] = true
		f.mu.Unlock()
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			f.serve(c)
			f.mu.Lock()
			delete(f.conns, c)
			f.mu.Unlock()
			c.Close()
		}()
	}
}

type fakeSession struct {
	f       *FakePOP3
	c       net.Conn
	r       *bufio.Reader
	w       *bufio.Writer
	user    string
	inTrans bool
	view    []*fakeMsg // the session's numbering
	marked  map[int]bool
}

func (f *FakePOP3) serve(c net.Conn) {
	s := &fakeSession{f: f, c: c, r: bufio.NewReader(c), w: bufio.NewWriter(c)}
	defer func() {
		if s.inTrans {
			f.mu.Lock()
			f.locked = false
			f.mu.Unlock()
		}
	}()
	s.reply("+OK fake POP3 ready")
	for {
		if !s.flush() {
			return
		}
		line, err := s.r.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimRight(line, "\r\n")
		verb, arg, _ := strings.Cut(line, " ")
		verb = strings.ToUpper(verb)
		if !s.handle(verb, arg) {
			s.flush()
			return
		}
		if s.r.Buffered() > 0 {
			f.mu.Lock()
			f.stats.Pipelined++
			if f.opt.NoPipelining {
				f.stats.PipelineFault++
			}
			f.mu.Unlock()
		}
	}
}

func (s *fakeSession) reply(format string, a ...any) {
	fmt.Fprintf(s.w, format+"\r\n", a...)
}

func (s *fakeSession) flush() bool { return s.w.Flush() == nil }

func (s *fakeSession) caps() []string {
	caps := []string{"TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "USER", "SASL PLAIN XOAUTH2", "PIPELINING"}
	var out []string
	for _, c := range caps {
		if (c == "TOP" && s.f.opt.NoTop) || (c == "UIDL" && s.f.opt.NoUIDL) || (c == "PIPELINING" && s.f.opt.NoPipelining) {
			continue
		}
		out = append(out, c)
	}
	return out
}

// handle runs one command; false ends the connection.
func (s *fakeSession) handle(verb, arg string) bool {
	f := s.f
	if verb == "CAPA" {
		s.reply("+OK capabilities follow")
		for _, c := range s.caps() {
			s.reply("%s", c)
		}
		s.reply(".")
		return true
	}
	if verb == "QUIT" {
		if s.inTrans {
			f.mu.Lock()
			for n := range s.marked {
				s.view[n-1].gone = true
				f.stats.Deleted++
			}
			f.stats.Quits++
			f.mu.Unlock()
		}
		s.reply("+OK bye")
		return false
	}
	if !s.inTrans {
		switch verb {
		case "USER":
			s.user = arg
			s.reply("+OK")
		case "PASS":
			if s.user != f.opt.User || arg != f.opt.Password {
				s.reply("-ERR [AUTH] invalid user or password")
				return true
			}
			s.enter()
		case "AUTH":
			s.auth(arg)
		default:
			s.reply("-ERR not logged in")
		}
		return true
	}
	num := func() (int, *fakeMsg) {
		a, _, _ := strings.Cut(arg, " ")
		n, err := strconv.Atoi(a)
		if err != nil || n < 1 || n > len(s.view) || s.marked[n] {
			return 0, nil
		}
		return n, s.view[n-1]
	}
	switch verb {
	case "STAT":
		var size int64
		n := 0
		for i, m := range s.view {
			if !s.marked[i+1] {
				n++
				size += m.size()
			}
		}
		s.reply("+OK %d %d", n, size)
	case "LIST", "UIDL":
		if verb == "UIDL" && f.opt.NoUIDL {
			s.reply("-ERR unknown command")
			return true
		}
		if arg != "" {
			n, m := num()
			if m == nil {
				s.reply("-ERR no such message")
			} else if verb == "LIST" {
				s.reply("+OK %d %d", n, m.size())
			} else {
				s.reply("+OK %d %s", n, m.UIDL)
			}
			return true
		}
		s.reply("+OK")
		for i, m := range s.view {
			if s.marked[i+1] {
				continue
			}
			if verb == "LIST" {
				s.reply("%d %d", i+1, m.size())
			} else {
				s.reply("%d %s", i+1, m.UIDL)
			}
		}
		s.reply(".")
	case "RETR", "TOP":
		if verb == "TOP" && f.opt.NoTop {
			s.reply("-ERR unknown command")
			return true
		}
		_, m := num()
		if m == nil {
			s.reply("-ERR no such message")
			return true
		}
		lines := -1
		if verb == "TOP" {
			_, l, _ := strings.Cut(arg, " ")
			var err error
			if lines, err = strconv.Atoi(l); err != nil || lines < 0 {
				s.reply("-ERR bad line count")
				return true
			}
		}
		return s.send(verb, m, lines)
	case "DELE":
		n, m := num()
		if m == nil {
			s.reply("-ERR no such message")
			return true
		}
		if s.marked == nil {
			s.marked = map[int]bool{}
		}
		s.marked[n] = true
		s.reply("+OK marked")
	case "RSET":
		s.marked = nil
		s.f.mu.Lock()
		s.f.stats.Rsets++
		s.f.mu.Unlock()
		s.reply("+OK")
	case "LAST":
		if !s.f.opt.Last {
			s.reply("-ERR unknown command")
			return true
		}
		s.reply("+OK 0")
	case "NOOP":
		s.reply("+OK")
	default:
		s.reply("-ERR unknown command")
	}
	return true
}

// enter moves the session into TRANSACTION, taking the maildrop lock.
func (s *fakeSession) enter() {
	f := s.f
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.inUse > 0 || f.locked {
		if f.inUse > 0 {
			f.inUse--
		}
		f.stats.InUseRefused++
		s.reply("-ERR [IN-USE] maildrop is locked by another session")
		return
	}
	f.locked = true
	s.inTrans = true
	f.stats.Logins++
	for _, m := range f.msgs {
		if !m.gone {
			s.view = append(s.view, m)
		}
	}
	s.reply("+OK %d messages", len(s.view))
}

// auth runs AUTH PLAIN or a two-step AUTH XOAUTH2 (initial responses are
// refused, as Microsoft 365 does).
func (s *fakeSession) auth(arg string) {
	f := s.f
	mech, ir, _ := strings.Cut(arg, " ")
	mech = strings.ToUpper(mech)
	if mech != "PLAIN" && mech != "XOAUTH2" {
		s.reply("-ERR unsupported mechanism")
		return
	}
	if ir != "" && mech == "XOAUTH2" {
		s.reply("-ERR initial response not accepted")
		return
	}
	resp := ir
	if resp == "" {
		s.reply("+ ")
		if !s.flush() {
			return
		}
		l, err := s.r.ReadString('\n')
		if err != nil {
			return
		}
		resp = strings.TrimRight(l, "\r\n")
	}
	if resp == "*" {
		s.reply("-ERR [AUTH] authentication aborted")
		return
	}
	dec, err := base64.StdEncoding.DecodeString(resp)
	if err != nil {
		s.reply("-ERR bad base64")
		return
	}
	ok := false
	if mech == "PLAIN" {
		p := bytes.Split(dec, []byte{0})
		ok = len(p) == 3 && (len(p[0]) == 0 || string(p[0]) == string(p[1])) && string(p[1]) == f.opt.User && string(p[2]) == f.opt.Password
	} else {
		ok = f.opt.Token != "" && string(dec) == "user="+f.opt.User+"\x01auth=Bearer "+f.opt.Token+"\x01\x01"
		if !ok {
			s.reply("+ %s", base64.StdEncoding.EncodeToString([]byte(`{"status":"401","schemes":"bearer","scope":"https://outlook.office.com/POP.AccessAsUser.All"}`)))
			if !s.flush() {
				return
			}
			if _, err := s.r.ReadString('\n'); err != nil {
				return
			}
		}
	}
	if !ok {
		s.reply("-ERR [AUTH] authentication failed")
		return
	}
	s.enter()
}

// send serves RETR (lines < 0) or TOP, applying the drop and stall knobs
// to RETR. False ends the connection.
func (s *fakeSession) send(verb string, m *fakeMsg, lines int) bool {
	f := s.f
	f.mu.Lock()
	drop, stall := false, false
	if verb == "RETR" {
		f.stats.Retrs++
		if f.drops[m.UIDL] > 0 {
			f.drops[m.UIDL]--
			drop = true
		} else if f.stalls[m.UIDL] > 0 {
			f.stalls[m.UIDL]--
			stall = true
		}
	} else {
		f.stats.Tops++
	}
	f.mu.Unlock()
	s.reply("+OK %d octets", m.size())
	st := &stuffer{w: s.w, bol: true}
	var src io.Writer = st
	if lines >= 0 {
		src = &topWriter{w: st, lines: lines}
	}
	if drop || stall {
		src = &cutWriter{w: src, left: m.size() / 2}
	}
	var err error
	if m.Gen != nil {
		err = m.Gen(src)
	} else {
		_, err = src.Write(m.Body)
	}
	if drop || stall {
		s.flush()
		if stall {
			// Say nothing more until the client closes the connection
			// (or the test ends).
			done := make(chan struct{})
			go func() {
				io.Copy(io.Discard, s.r)
				close(done)
			}()
			select {
			case <-done:
			case <-f.stallDone:
			case <-time.After(5 * time.Minute):
			}
		}
		return false
	}
	if err != nil && err != errTopDone {
		return false
	}
	st.finish()
	return true
}

// stuffer dot-stuffs what is written and terminates the reply on finish.
type stuffer struct {
	w    *bufio.Writer
	bol  bool
	last byte
	n    int64
}

func (s *stuffer) Write(p []byte) (int, error) {
	for _, c := range p {
		if s.bol && c == '.' {
			s.w.WriteByte('.')
		}
		s.w.WriteByte(c)
		s.bol = c == '\n'
		s.last = c
	}
	s.n += int64(len(p))
	return len(p), nil
}

func (s *stuffer) finish() {
	if s.n > 0 && s.last != '\n' {
		s.w.WriteString("\r\n")
	}
	s.w.WriteString(".\r\n")
}

var errTopDone = fmt.Errorf("top: enough lines")

// topWriter passes the header and the first lines lines of the body.
type topWriter struct {
	w      io.Writer
	lines  int
	inBody bool
	prevLF bool
	done   bool
}

func (t *topWriter) Write(p []byte) (int, error) {
	if t.done {
		return 0, errTopDone
	}
	for i, c := range p {
		if !t.inBody {
			if c == '\n' && t.prevLF {
				t.inBody = true
				if t.lines == 0 {
					t.w.Write(p[:i+1])
					t.done = true
					return i + 1, errTopDone
				}
			}
			if c == '\n' {
				t.prevLF = true
			} else if c != '\r' {
				t.prevLF = false
			}
			continue
		}
		if c == '\n' {
			t.lines--
			if t.lines == 0 {
				t.w.Write(p[:i+1])
				t.done = true
				return i + 1, errTopDone
			}
		}
	}
	return t.w.Write(p)
}

// cutWriter passes left bytes and swallows the rest.
type cutWriter struct {
	w    io.Writer
	left int64
}

func (c *cutWriter) Write(p []byte) (int, error) {
	if c.left <= 0 {
		return len(p), nil
	}
	q := p
	if int64(len(q)) > c.left {
		q = q[:c.left]
	}
	c.left -= int64(len(q))
	c.w.Write(q)
	return len(p), nil
}
