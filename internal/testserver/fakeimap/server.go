// Package fakeimap is an in-process IMAP server for tests whose behaviour
// can be set to that of servers other than Dovecot: hierarchy delimiter and
// personal namespace prefix (Courier's "INBOX." with "."), how UIDVALIDITY
// is chosen (one per folder, one for all as Courier does, one per second of
// creation as Cyrus does), missing extensions (UIDPLUS, SPECIAL-USE,
// LITERAL+, NAMESPACE, LIST-STATUS), refusals (bare LF as Cyrus, NUL bytes,
// APPENDLIMIT, forbidden characters in names), \Noselect parents, and hooks
// that refuse, delay, hold or cut commands, appends and fetches.
//
// Why not go-imap's imapmemserver: its UIDVALIDITY and delimiter are fixed,
// it ignores special-use on CREATE and always returns APPENDUID. This
// package keeps imapserver (the protocol) and replaces the backend; it uses
// imapserver's helpers (MatchList, MailboxTracker, ExtractBodySection,
// ExtractEnvelope, ExtractBodyStructure).
//
// What it guarantees, for tests to rely on: stored bytes are exactly the
// appended bytes (no line-ending conversion; RFC822.SIZE is their count and
// BODY[] returns them); INTERNALDATE is the APPEND date (or the time of the
// APPEND, to the second); EXAMINE never changes a flag; BODY[] (not PEEK)
// sets \Seen in a SELECTed folder; names go out modified-UTF-7 encoded (or
// UTF-8 after ENABLE UTF8=ACCEPT) as imapserver encodes them. Folder names
// given to Server.Create may hold any bytes; bytes that are not UTF-8 reach
// clients as U+FFFD (that is what imapserver's encoder does), and clients
// address such a folder by that visible name.
//
// The hooks that imapserver has no callback for (Command before any
// command, Fetch cutting a literal, a held APPEND noticing its client is
// gone) work on the wire, in a net.Conn wrapper that follows both byte
// streams: see wire.go. It also mends one imapserver (v2.0.0-beta.8) bug:
// a command refused before its non-synchronising literal was read (NO
// [TOOBIG] over APPENDLIMIT) left the literal to be parsed as the next
// command; the wrapper drops it, as RFC 7888 requires.
//
// Limitations, from imapserver: LITERAL-, IDLE, UNSELECT, ENABLE,
// UTF8=ACCEPT and SASL-IR are always advertised (so NoLiteralPlus still
// allows non-synchronising literals up to 4 KiB); commands run one at a
// time per connection; EXISTS for messages appended by another connection
// is sent after a command's response, not before it, so until then FETCH
// on this connection does not see them (UID SEARCH does). Here: RENAME is
// refused; CHILDREN and MOVE are always advertised; SEARCHRES, CONDSTORE
// and BINARY are not.
package fakeimap

import (
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
)

// UIDValidityPolicy says how a new folder's UIDVALIDITY is chosen.
type UIDValidityPolicy int

const (
	// Distinct gives every folder created a new value (a counter that
	// starts at the server's start time).
	Distinct UIDValidityPolicy = iota
	// Shared gives every folder the same value, as Courier does.
	Shared
	// PerSecond gives a folder the Unix time of its creation, so folders
	// created in the same second share it, as Cyrus does.
	PerSecond
)

// Options configure a Server. The zero value behaves like a plain modern
// server: delimiter "/", no prefix, distinct UIDVALIDITYs, UIDPLUS,
// SPECIAL-USE, CREATE-SPECIAL-USE, LITERAL+, NAMESPACE, LIST-EXTENDED,
// LIST-STATUS, MOVE, CHILDREN.
type Options struct {
	Delim rune // hierarchy delimiter; default '/'
	// Prefix is the personal namespace prefix, e.g. "INBOX." (Courier,
	// Cyrus with altnamespace off): an IMAP CREATE of a name that neither
	// starts with it nor is INBOX is refused with NO [CANNOT]. NAMESPACE
	// announces it.
	Prefix      string
	UIDValidity UIDValidityPolicy
	// NoUIDPlus: no UIDPLUS: APPEND answers OK without APPENDUID, COPY
	// without COPYUID, and UID EXPUNGE is BAD.
	NoUIDPlus bool
	// NoSpecialUse: no SPECIAL-USE or CREATE-SPECIAL-USE: special-use
	// attributes are never returned and CREATE (USE ...) is BAD.
	NoSpecialUse  bool
	NoLiteralPlus bool // LITERAL+ not advertised (imapserver still offers LITERAL-)
	NoNamespace   bool // no NAMESPACE command
	// NoListStatus: no LIST-STATUS. LIST-EXTENDED is advertised when
	// SPECIAL-USE or LIST-STATUS is.
	NoListStatus bool
	// RefuseBareLF refuses an APPEND whose message holds a LF not preceded
	// by CR: "NO Message contains bare newlines" (Cyrus).
	RefuseBareLF bool
	// RefuseNUL refuses an APPEND whose message holds a NUL byte (a server
	// without BINARY).
	RefuseNUL bool
	// NoSelectParents makes parents that exist only as structure (created
	// implicitly by CREATE of "a/b") \Noselect, as Courier lists them;
	// without it such a parent is created as a real, selectable folder.
	NoSelectParents bool
	// AppendLimit, if > 0, is advertised as APPENDLIMIT=n and an APPEND of
	// a bigger message is refused with NO [TOOBIG] before its literal is
	// accepted.
	AppendLimit int64
	// SubscribeAnyName accepts SUBSCRIBE of a name that is no folder (and
	// keeps it: Server.Dangling), as Cyrus, Courier and UW-IMAP do;
	// without it such a SUBSCRIBE is refused NO [NONEXISTENT], as Dovecot
	// does.
	SubscribeAnyName bool
	// ForbiddenChars are characters an IMAP CREATE refuses in a folder
	// name with NO [CANNOT] (e.g. "." as Dovecot's Maildir++ layout does
	// with a "/" delimiter). The delimiter itself is never refused.
	ForbiddenChars string
	// PermanentFlags, if set, is every folder's PERMANENTFLAGS; flags not
	// in it (keywords: unless it holds \*) are silently not stored by
	// APPEND, COPY and STORE. Default: the system flags and \*.
	PermanentFlags []imap.Flag
	// UIDLast writes a FETCH response's UID after its body sections
	// (RFC 3501 fixes no order; most servers send it first).
	UIDLast bool
	// Now replaces time.Now for UIDVALIDITY and default INTERNALDATEs.
	Now   func() time.Time
	Hooks Hooks
}

// Server is a running fake IMAP server owned by one test.
type Server struct {
	t         testing.TB
	o         Options
	delim     rune
	permanent []imap.Flag
	imap      *imapserver.Server
	ln        net.Listener
	done      chan struct{} // closed when the server stops
	wg        sync.WaitGroup

	mu         sync.Mutex
	users      map[string]*user
	nextUIDV   uint32
	sharedUIDV uint32
	conns      map[int]*wireConn
	nconns     int
	commands   map[string]int
	stopping   bool

	logMu sync.Mutex
	logs  []string
}

// Stats counts what the server saw.
type Stats struct {
	Commands map[string]int // commands received per name (refused ones too), e.g. "UID FETCH"
	Conns    int            // connections accepted
	Open     int            // connections open now
}

// Start listens on 127.0.0.1 (a free port, plaintext, LOGIN and AUTHENTICATE
// PLAIN allowed without TLS) and serves until the test ends (t.Cleanup),
// when it closes every connection and waits for their goroutines. Server
// log lines are shown (t.Logf) only if the test failed. Start fails the
// test if it cannot listen.
func Start(t testing.TB, o Options) *Server {
	t.Helper()
	s := &Server{
		t:        t,
		o:        o,
		delim:    o.Delim,
		users:    map[string]*user{},
		conns:    map[int]*wireConn{},
		commands: map[string]int{},
		done:     make(chan struct{}),
	}
	if s.delim == 0 {
		s.delim = '/'
	}
	s.permanent = o.PermanentFlags
	if s.permanent == nil {
		s.permanent = []imap.Flag{imap.FlagSeen, imap.FlagAnswered, imap.FlagFlagged, imap.FlagDeleted, imap.FlagDraft, imap.FlagWildcard}
	}
	start := s.now()
	s.nextUIDV = uint32(start.Unix())
	s.sharedUIDV = uint32(start.Unix())

	caps := imap.CapSet{imap.CapIMAP4rev1: {}, imap.CapMove: {}, imap.CapChildren: {}}
	add := func(on bool, c ...imap.Cap) {
		if on {
			for _, c := range c {
				caps[c] = struct{}{}
			}
		}
	}
	add(!o.NoNamespace, imap.CapNamespace)
	add(!o.NoUIDPlus, imap.CapUIDPlus)
	add(!o.NoSpecialUse, imap.CapSpecialUse, imap.CapCreateSpecialUse)
	add(!o.NoLiteralPlus, imap.CapLiteralPlus)
	add(!o.NoListStatus, imap.CapListStatus)
	add(!o.NoListStatus || !o.NoSpecialUse, imap.CapListExtended)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("fakeimap: listen: %v", err)
	}
	s.ln = ln
	s.imap = imapserver.New(&imapserver.Options{
		NewSession:   s.newSession,
		Caps:         caps,
		Logger:       logger{s},
		InsecureAuth: true,
	})
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.imap.Serve(&listener{Listener: ln, srv: s})
	}()
	t.Cleanup(s.stop)
	return s
}

// Addr is the "127.0.0.1:port" the server listens on.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// AddUser adds (or resets the password of) a user; a new user gets an
// empty INBOX.
func (s *Server) AddUser(name, password string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if u, ok := s.users[name]; ok {
		u.password = password
		return
	}
	u := &user{name: name, password: password, folders: map[string]*folder{}}
	s.users[name] = u
	s.createLocked(u, "INBOX", nil)
}

// CloseAll drops every client connection at once, as a server that was
// killed: held APPENDs see their connection gone. Data is kept and the
// listener goes on accepting.
func (s *Server) CloseAll() {
	s.mu.Lock()
	conns := make([]*wireConn, 0, len(s.conns))
	for _, c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.kill(false)
	}
}

// Stats returns a snapshot of the counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Stats{Commands: make(map[string]int, len(s.commands)), Conns: s.nconns, Open: len(s.conns)}
	for k, v := range s.commands {
		st.Commands[k] = v
	}
	return st
}

func (s *Server) now() time.Time {
	if s.o.Now != nil {
		return s.o.Now()
	}
	return time.Now()
}

// stop is the test's cleanup: close the listener and every connection,
// wait for their goroutines, show the log if the test failed.
func (s *Server) stop() {
	s.mu.Lock()
	s.stopping = true
	s.mu.Unlock()
	close(s.done)
	s.imap.Close()
	s.CloseAll()
	waited := make(chan struct{})
	go func() { s.wg.Wait(); close(waited) }()
	select {
	case <-waited:
	case <-time.After(10 * time.Second):
		s.logf("fakeimap: connections still busy 10s after the test ended (a hook blocked?)")
	}
	if s.t.Failed() {
		s.logMu.Lock()
		for _, l := range s.logs {
			s.t.Logf("fakeimap: %s", l)
		}
		s.logs = nil
		s.logMu.Unlock()
	}
}

// logf keeps a log line, shown only if the test fails.
func (s *Server) logf(format string, args ...any) {
	s.logMu.Lock()
	defer s.logMu.Unlock()
	if len(s.logs) < 5000 {
		s.logs = append(s.logs, time.Now().Format("15:04:05.000 ")+fmt.Sprintf(format, args...))
	}
}

type logger struct{ s *Server }

func (l logger) Printf(format string, args ...any) { l.s.logf(format, args...) }

// listener wraps every accepted connection in a wireConn.
type listener struct {
	net.Listener
	srv *Server
}

func (l *listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	s := l.srv
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nconns++
	w := newWireConn(c, s, s.nconns)
	if s.stopping {
		w.kill(false)
		return w, nil
	}
	s.conns[w.id] = w
	return w, nil
}

// newSession is imapserver's NewSession. The session type depends on the
// options: imapserver finds NAMESPACE and APPENDLIMIT support by type.
func (s *Server) newSession(c *imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
	w, ok := c.NetConn().(*wireConn)
	if !ok {
		return nil, nil, fmt.Errorf("fakeimap: unexpected connection type %T", c.NetConn())
	}
	s.mu.Lock()
	if s.stopping {
		s.mu.Unlock()
		return nil, nil, &imap.Error{Type: imap.StatusResponseTypeBye, Text: "server shutting down"}
	}
	s.wg.Add(1) // Done in session.Close, the last thing imapserver calls
	s.mu.Unlock()
	base := &session{srv: s, wire: w}
	ns, al := !s.o.NoNamespace, s.o.AppendLimit > 0
	switch {
	case ns && al:
		return sessionNSAL{base}, nil, nil
	case ns:
		return sessionNS{base}, nil, nil
	case al:
		return sessionAL{base}, nil, nil
	}
	return base, nil, nil
}

// untrack forgets a connection whose session ended.
func (s *Server) untrack(w *wireConn) {
	s.mu.Lock()
	delete(s.conns, w.id)
	s.mu.Unlock()
}

// commandHook counts a command and asks the Command hook about it.
func (s *Server) commandHook(ev CommandEvent) Action {
	s.mu.Lock()
	s.commands[ev.Name]++
	s.mu.Unlock()
	if s.o.Hooks.Command == nil {
		return Action{}
	}
	act := s.o.Hooks.Command(ev)
	if act != (Action{}) {
		s.logf("conn %d: hook on %s %s: %+v", ev.Conn, ev.Tag, ev.Name, act)
	}
	return act
}
