// Package pop3conn is mailhaul's POP3 client: dial, TLS (implicit or
// STLS), CAPA, authentication (USER/PASS, SASL PLAIN with an authorization
// identity, XOAUTH2, OAUTHBEARER), and the commands a mail copier needs
// (STAT, LIST, UIDL, TOP, RETR, DELE, NOOP, QUIT), with every wait bounded
// and RETR streamed. The POP3 source (sources/pop3.go) is its one user.
//
// Endpoints are URLs: pop3s://user@host[:995] (implicit TLS) and
// pop3://user@host[:110] (STLS required; plaintext only when
// Config.InsecurePlaintext is set, meant for loopback tests). Certificates
// are verified unless Config.SkipVerify. A password in the URL is refused.
//
// # Bounds
//
// Connect, TLS handshake, greeting, STLS, CAPA and login together are
// bounded by Config.DialTimeout (default 30 s). After that, every read from
// the server while a reply is awaited and every write has a deadline of
// Config.IdleTimeout (default 2 min) from the last byte that moved: a
// server that stops answering is detected after IdleTimeout, while a big
// message that keeps flowing never trips it. A command whose context is
// cancelled returns the context's error, but its reply is still read to
// its end and dropped, within drainBudget (5 s), so that the session
// stays usable — for RSET above all: Dovecot marks what a session
// retrieved \Seen when it ends, cut or not, unless RSET came first. A
// reply that does not end within that time closes the connection. A
// connection that broke (network error, timeout, a drain cut short, a
// reply that makes no sense) is never reused: every later command fails
// with an error for which Lost reports true, and the caller dials again.
//
// # Pipelining
//
// Commands may be issued from several goroutines at once. When the server
// lists PIPELINING in CAPA (RFC 2449), each command is written as soon as
// it is issued and replies are read in order, each by the goroutine that
// issued the command: N fetchers keep N RETRs in flight on one session,
// without a round trip per message. Without PIPELINING a command is written
// only after every earlier reply was read. Conn.Batch does the same for one
// goroutine (DELE and TOP in windows of 32).
//
// # What is taken from github.com/knadh/go-pop3, and why almost nothing
//
// go-pop3 v1.0.2 was read in full and is not used by this package; it is
// the independent reference client of the tests (multi-line parsing
// cross-checked in FuzzDotReader, UIDL lists read back from Dovecot). Where
// it does not fit, precisely:
//
//   - RETR: Conn.RetrRaw and Conn.Cmd collect the whole message in a
//     bytes.Buffer (a 30 MB message costs 30 MB and more while the buffer
//     doubles), and its ReadAll rewrites every line ending to CRLF (a bare
//     LF sent by the server becomes CRLF). Streaming RETR needs the
//     connection's bufio.Reader, which go-pop3 keeps unexported, so the
//     body cannot be read after its ReadOne has read the status line: the
//     reader would have to share the stream with go-pop3's buffer. So this
//     package owns the stream and reads bodies with DotReader.
//   - TLS: go-pop3 knows implicit TLS only, builds its own tls.Config (no
//     CA file, no minimum version) and has no STLS. Opt.Dialer could hand
//     it a connection on which STLS was done already, but its Conn would
//     still have no deadlines and no way to be cancelled.
//   - Deadlines and cancellation: none; a silent server blocks its reads
//     forever.
//   - CAPA, SASL (AUTH with continuations, needed for XOAUTH2 as Microsoft
//     runs it), response codes ([IN-USE], [AUTH]): none (Cmd can send CAPA
//     but -ERR texts lose their structure).
//   - Pipelining: possible with Send + ReadOne + ReadAll, but every reply
//     is again buffered whole, and Send flushes per command.
//
// What would be left (USER/PASS, STAT, LIST, UIDL parsing) is a few lines
// each; sharing one stream between two readers to save them is not worth
// the fragility.
//
// # Secrets
//
// The wire trace (Config.Trace) is written per protocol line, and the
// lines that carry a secret are written redacted where they are built:
// "PASS <redacted>", "AUTH PLAIN" followed by "<redacted>" for every SASL
// response. The trace shows commands and status lines; a multi-line body
// is shown as its line count and size for RETR and TOP and in full for
// CAPA, LIST and UIDL. Errors never contain a password or token.
package pop3conn

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mailhaul/mailhaul/internal/bwlimit"
	"github.com/mailhaul/mailhaul/internal/connauth"
	"github.com/mailhaul/mailhaul/internal/tlsprobe"
	"github.com/mailhaul/mailhaul/migrate"
)

// Mechanisms accepted by Config.Auth.
const (
	AuthAuto        = ""            // SASL PLAIN when offered (or an admin user is set), else USER/PASS
	AuthUser        = "user"        // USER and PASS (RFC 1939)
	AuthPlain       = "plain"       // AUTH PLAIN (RFC 5034, RFC 4616), with optional authorization identity
	AuthXOAUTH2     = "xoauth2"     // Google / Microsoft XOAUTH2 with a bearer token
	AuthOAuthBearer = "oauthbearer" // RFC 7628 OAUTHBEARER
)

// Default bounds (see the package documentation).
const (
	DefaultIdleTimeout = 2 * time.Minute
	DefaultDialTimeout = 30 * time.Second
)

// Endpoint is a parsed pop3:// or pop3s:// URL.
type Endpoint struct {
	TLS  bool // pop3s: implicit TLS
	Host string
	Port string
	User string
}

// ParseURL parses pop3s://user@host[:port] or pop3://user@host[:port]. A
// password in the URL is refused (it would show in ps, shell history and
// the checkpoint key), and so is a path: POP3 has one mailbox.
func ParseURL(raw string) (Endpoint, error) {
	u, err := connauth.ParseURL(raw, "POP3", "pop3s://user@host[:port]",
		"MAILHAUL_SRC_PASSWORD, --src-password-file, or the prompt",
		connauth.Scheme{Name: "pop3", Port: "110"}, connauth.Scheme{Name: "pop3s", Port: "995", TLS: true})
	if err != nil {
		return Endpoint{}, err
	}
	e := Endpoint{TLS: u.Scheme.TLS, Host: u.Host, Port: u.Port, User: u.User}
	if u.Path != "" && !strings.EqualFold(u.Path, "INBOX") {
		return Endpoint{}, fmt.Errorf("POP3 URL %s: POP3 has a single mailbox, a folder %q cannot be given (use --to-folder for the destination)", e, u.Path)
	}
	return e, nil
}

// Addr is host:port.
func (e Endpoint) Addr() string { return net.JoinHostPort(e.Host, e.Port) }

// String is the normalised URL, never with a secret: it is used in
// messages and as the checkpoint key.
func (e Endpoint) String() string {
	s := "pop3"
	if e.TLS {
		s = "pop3s"
	}
	return s + "://" + url.PathEscape(e.User) + "@" + e.Addr()
}

// Config is everything needed to open sessions on one maildrop.
type Config struct {
	Endpoint
	// InsecurePlaintext allows pop3:// without STLS.
	InsecurePlaintext bool
	// CAFile is a PEM file of extra trusted CAs.
	CAFile string
	// SkipVerify turns certificate verification off.
	SkipVerify bool
	// Auth is one of the Auth* mechanisms.
	Auth string
	// AdminUser, when set, is the admin or master user whose credentials
	// are given: AUTH PLAIN is sent with authcid=AdminUser (and its
	// Password) and authzid=User (Dovecot master users).
	AdminUser string
	// Password for USER/PASS and PLAIN (the admin's when AdminUser is set).
	Password string
	// PasswordFrom says where Password came from, for a refused login's
	// message ("" says nothing).
	PasswordFrom string
	// Token returns an OAuth2 access token for XOAUTH2 / OAUTHBEARER; it
	// is called for every new session (tokens expire).
	Token func(ctx context.Context) (string, error)
	// Trace, if set, receives the protocol with secrets redacted.
	Trace io.Writer
	// IdleTimeout bounds each wait for the server (default 2 minutes).
	IdleTimeout time.Duration
	// Limit, if not nil, bounds the bandwidth of the connections made
	// with this Config together (--bwlimit).
	Limit *bwlimit.Limit
	// DialTimeout bounds connect + TLS + greeting + login (default 30 s).
	DialTimeout time.Duration
}

func (cfg *Config) idle() time.Duration {
	if cfg.IdleTimeout > 0 {
		return cfg.IdleTimeout
	}
	return DefaultIdleTimeout
}

// where names the server and account in errors.
func (cfg *Config) where() string {
	return fmt.Sprintf("POP3 server %s (account %s)", cfg.Addr(), cfg.User)
}

// Caps is the server's CAPA reply: upper-case capability name -> its
// arguments. Empty when the server does not know CAPA.
type Caps map[string][]string

// Has reports whether the server listed capability name.
func (c Caps) Has(name string) bool {
	_, ok := c[strings.ToUpper(name)]
	return ok
}

// SASL reports whether the server listed mech in its SASL capability.
func (c Caps) SASL(mech string) bool {
	for _, m := range c["SASL"] {
		if strings.EqualFold(m, mech) {
			return true
		}
	}
	return false
}

// Conn is one POP3 session in the TRANSACTION state. Its methods are safe
// for concurrent use (see Pipelining in the package documentation).
type Conn struct {
	cfg  *Config
	raw  net.Conn   // the TCP connection
	tc   *timedConn // raw or TLS over raw, with deadlines
	br   *bufio.Reader
	bw   *bufio.Writer
	tr   *tracer
	caps Caps
	pipe bool

	wmu  sync.Mutex    // serialises writes and the order of replies
	turn chan struct{} // closed once every reply asked for so far was read

	emu  sync.Mutex
	err  error // set once the connection broke; never cleared
	dele int   // DELEs sent (accepted or not: a reply dropped after a cancel may be +OK) and not committed by QUIT
	quit bool
}

// timedConn puts a deadline on every read and write: the fixed one
// while the session is set up, then idle from the start of each operation.
// Reads only happen while a reply is awaited, so an idle session never
// times out on our side, and a flowing transfer renews the deadline with
// every chunk. fixed is only changed while no other goroutine uses the
// connection.
type timedConn struct {
	net.Conn
	idle  time.Duration
	fixed time.Time
	got   atomic.Bool  // something was received
	until atomic.Int64 // UnixNano: no read or write beyond (0: none); see drainBudget
}

// capAt bounds every read and write to end by at, those under way too
// (the earliest of the bounds asked for stays). Safe from any goroutine.
func (t *timedConn) capAt(at time.Time) {
	for {
		old := t.until.Load()
		if old != 0 && old <= at.UnixNano() {
			return
		}
		if t.until.CompareAndSwap(old, at.UnixNano()) {
			t.Conn.SetDeadline(at)
			return
		}
	}
}

// uncap lifts the bound of capAt.
func (t *timedConn) uncap() { t.until.Store(0) }

// heard reports whether the server has sent anything yet.
func (t *timedConn) heard() bool { return t.got.Load() }

func (t *timedConn) deadline() time.Time {
	d := t.fixed
	if d.IsZero() {
		d = time.Now().Add(t.idle)
	}
	if u := t.until.Load(); u != 0 && u < d.UnixNano() {
		d = time.Unix(0, u)
	}
	return d
}

func (t *timedConn) Read(p []byte) (int, error) {
	t.Conn.SetReadDeadline(t.deadline())
	n, err := t.Conn.Read(p)
	if n > 0 && !t.got.Load() {
		t.got.Store(true)
	}
	return n, err
}

func (t *timedConn) Write(p []byte) (int, error) {
	t.Conn.SetWriteDeadline(t.deadline())
	return t.Conn.Write(p)
}

// Dial connects, negotiates TLS, reads CAPA and authenticates. Errors name
// the server and account and are classified for the engine: refused
// logins, untrusted certificates and a server without STLS are fatal;
// network failures, timeouts, -ERR [SYS/TEMP] and a maildrop in use
// ([IN-USE], [LOGIN-DELAY]: InUse reports true) are retryable.
func Dial(ctx context.Context, cfg *Config) (*Conn, error) {
	dt := cfg.DialTimeout
	if dt <= 0 {
		dt = DefaultDialTimeout
	}
	where := cfg.where()
	tcfg, err := connauth.TLSConfig(cfg.Host, cfg.CAFile, cfg.SkipVerify)
	if err != nil {
		return nil, migrate.FatalError(err)
	}
	dctx, cancel := context.WithTimeout(ctx, dt)
	defer cancel()
	raw, err := (&net.Dialer{}).DialContext(dctx, "tcp", cfg.Addr())
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, migrate.Retryable(fmt.Errorf("connect to %s: %w", where, err))
	}
	raw = bwlimit.Wrap(raw, cfg.Limit)
	c := &Conn{cfg: cfg, raw: raw, turn: make(chan struct{})}
	close(c.turn)
	if cfg.Trace != nil {
		c.tr = &tracer{w: cfg.Trace}
	}
	// Until login is done, one deadline bounds everything and a
	// cancelled context closes the socket.
	c.tc = &timedConn{Conn: raw, idle: cfg.idle(), fixed: time.Now().Add(dt)}
	c.br = bufio.NewReaderSize(c.tc, 64<<10)
	c.bw = bufio.NewWriterSize(c.tc, 4<<10)
	stop := context.AfterFunc(dctx, func() { raw.Close() })
	var probe *tlsprobe.Probe
	if !cfg.TLS {
		probe = tlsprobe.Start(dctx, cfg.Addr(), cfg.Host, raw, tlsprobe.Wait(dt), c.tc.heard)
	}
	err = c.handshake(dctx, tcfg)
	stopped := stop()
	if probe.FoundTLS() {
		raw.Close()
		return nil, migrate.FatalError(fmt.Errorf("%s: the server sent no POP3 greeting but answers a TLS handshake on this port: use pop3s:// for it (pop3:// is for port 110, plaintext or STLS)", where))
	}
	if err == nil && !stopped {
		err = errors.New("timed out")
	}
	if err != nil {
		raw.Close()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		var ne net.Error
		if dctx.Err() != nil || errors.As(err, &ne) && ne.Timeout() {
			hint := ""
			if !cfg.TLS {
				hint = " (a TLS port, such as 995, wants pop3s://)"
			}
			err = fmt.Errorf("no greeting and login within %s%s: %w", dt, hint, err)
		}
		if rh := (tls.RecordHeaderError{}); cfg.TLS && errors.As(err, &rh) {
			// The server answered the TLS handshake in plaintext.
			return nil, migrate.FatalError(fmt.Errorf("%s: the server does not speak TLS on this port (it answered %q): use pop3:// (STLS) for port 110, or the TLS port (995) with pop3s://", where, connauth.Printable(rh.RecordHeader[:])))
		}
		return nil, classifyDial(where, err)
	}
	c.tc.fixed = time.Time{}
	c.raw.SetDeadline(time.Time{})
	return c, nil
}

// classifyDial gives a handshake error its class and names the server.
func classifyDial(where string, err error) error {
	var fd *fatalDial
	switch {
	case errors.As(err, &fd):
		return migrate.FatalError(fd.err)
	case connauth.IsCertError(err):
		return migrate.FatalError(connauth.CertError(where, err))
	case InUse(err) || Temporary(err):
		return migrate.Retryable(fmt.Errorf("%s: %w", where, err))
	case ServerError(err) != nil:
		return migrate.FatalError(fmt.Errorf("%s: %w", where, err))
	}
	return migrate.Retryable(fmt.Errorf("%s: %w", where, err))
}

// fatalDial marks a handshake error that no retry can fix.
type fatalDial struct{ err error }

func (f *fatalDial) Error() string { return f.err.Error() }
func (f *fatalDial) Unwrap() error { return f.err }

func (c *Conn) handshake(ctx context.Context, tcfg *tls.Config) error {
	cfg := c.cfg
	if cfg.TLS {
		tc := tls.Client(c.raw, tcfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			return fmt.Errorf("TLS handshake: %w", err)
		}
		c.tc.Conn = tc
	}
	greet, err := c.rawLine()
	if err != nil {
		return fmt.Errorf("read greeting: %w", err)
	}
	if rest, ok := strings.CutPrefix(greet, "-ERR"); ok {
		return fmt.Errorf("server refused the connection: %w", parseErr("greeting", rest))
	}
	if !strings.HasPrefix(greet, "+OK") {
		return &fatalDial{fmt.Errorf("%s: not a POP3 server (greeting %q): check the port (POP3 is 110 with pop3://, 995 with pop3s://; IMAP is 143 and 993)", cfg.where(), clip(greet))}
	}
	c.caps = c.capa(ctx)
	if !cfg.TLS && !cfg.InsecurePlaintext {
		if !c.caps.Has("STLS") {
			return &fatalDial{fmt.Errorf("%s offers no STLS, so the password would travel in clear text; use pop3s:// (port 995) or, on a trusted network only, --insecure-plaintext", cfg.where())}
		}
		if err := c.simple("STLS", "STLS"); err != nil {
			if ServerError(err) != nil {
				return &fatalDial{fmt.Errorf("%s refused STLS (%v); use pop3s:// or, on a trusted network only, --insecure-plaintext", cfg.where(), err)}
			}
			return err
		}
		if c.br.Buffered() > 0 {
			// Bytes before the TLS handshake would be read as if they
			// had been protected (a STARTTLS injection).
			return &fatalDial{fmt.Errorf("%s sent data after +OK to STLS, before TLS started", cfg.where())}
		}
		tc := tls.Client(c.raw, tcfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			return fmt.Errorf("TLS handshake after STLS: %w", err)
		}
		c.tc.Conn = tc
		c.br.Reset(c.tc)     // empty, checked above
		c.caps = c.capa(ctx) // RFC 2595: forget what was learnt in clear
	}
	if err := c.login(ctx); err != nil {
		return err
	}
	// Capabilities may change after login (RFC 2449 section 5):
	// PIPELINING is often announced only now.
	if caps := c.capa(ctx); len(caps) > 0 {
		c.caps = caps
	}
	c.pipe = c.caps.Has("PIPELINING")
	return nil
}

// capa asks for the capabilities; a server that does not know CAPA (or
// answers nonsense) has none.
func (c *Conn) capa(ctx context.Context) Caps {
	caps := Caps{}
	err := c.rawMulti("CAPA", func(line string) {
		f := strings.Fields(line)
		if len(f) > 0 {
			caps[strings.ToUpper(f[0])] = f[1:]
		}
	})
	if err != nil {
		return Caps{}
	}
	return caps
}

// Caps returns the capabilities the server listed after login.
func (c *Conn) Caps() Caps { return c.caps }

// Pipelining reports whether commands are pipelined on this session.
func (c *Conn) Pipelining() bool { return c.pipe }

// Config returns the configuration c was dialled with.
func (c *Conn) Config() *Config { return c.cfg }

// --- low-level I/O, used by the handshake only (one goroutine, nothing
// pipelined) ---

// rawLine reads one line and strips its line end.
func (c *Conn) rawLine() (string, error) {
	line, err := c.br.ReadSlice('\n')
	if err == bufio.ErrBufferFull {
		return "", fmt.Errorf("reply line longer than %d bytes", c.br.Size())
	}
	if err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return "", err
	}
	s := strings.TrimRight(string(line), "\r\n")
	c.tr.server(s)
	return s, nil
}

// rawSend writes one command line; traced is what the trace shows.
func (c *Conn) rawSend(line, traced string) error {
	c.tr.client(traced)
	if _, err := c.bw.WriteString(line + "\r\n"); err != nil {
		return err
	}
	return c.bw.Flush()
}

// simple sends a command with a one-line reply.
func (c *Conn) simple(line, traced string) error {
	verb, _, _ := strings.Cut(line, " ")
	if err := c.rawSend(line, traced); err != nil {
		return err
	}
	reply, err := c.rawLine()
	if err != nil {
		return err
	}
	return checkStatus(verb, reply)
}

func (c *Conn) rawMulti(line string, fn func(string)) error {
	if err := c.simple(line, line); err != nil {
		return err
	}
	r := bufio.NewReader(NewDotReader(c.br))
	for {
		l, err := r.ReadString('\n')
		if l != "" {
			l = strings.TrimRight(l, "\r\n")
			c.tr.server(l)
			fn(l)
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// checkStatus turns a status line into nil (+OK) or an error.
func checkStatus(verb, line string) error {
	switch {
	case line == "+OK" || strings.HasPrefix(line, "+OK "):
		return nil
	case line == "-ERR" || strings.HasPrefix(line, "-ERR "):
		return parseErr(verb, strings.TrimPrefix(line, "-ERR"))
	}
	return fmt.Errorf("reply to %s is neither +OK nor -ERR: %q", verb, clip(line))
}

func clip(s string) string {
	if len(s) > 100 {
		return s[:100] + "..."
	}
	return s
}

// --- the command machinery of a logged-in session ---

// fail marks the connection broken with cause and closes it. The first
// cause wins. Safe from any goroutine.
func (c *Conn) fail(cause error) {
	c.emu.Lock()
	defer c.emu.Unlock()
	if c.err != nil {
		return
	}
	if errors.Is(cause, os.ErrDeadlineExceeded) {
		if c.tc != nil && c.tc.until.Load() != 0 {
			cause = fmt.Errorf("the reply to a cancelled command did not end within %s (%w)", drainBudget, cause)
		} else {
			cause = fmt.Errorf("server did not answer for %s (%w)", c.cfg.idle(), cause)
		}
	}
	c.err = &lostError{where: c.cfg.where(), err: cause}
	c.raw.Close()
}

func (c *Conn) broken() error {
	c.emu.Lock()
	defer c.emu.Unlock()
	return c.err
}

// Broken reports whether the connection can no longer be used.
func (c *Conn) Broken() bool { return c.broken() != nil }

// pending is a command written (or about to be) whose reply is still to
// be read.
type pending struct {
	c    *Conn
	verb string
	mine chan struct{} // closed when this command's reply is next on the wire
	next chan struct{} // closed by this command once its reply was read
	once sync.Once
}

func (p *pending) finish() { p.once.Do(func() { close(p.next) }) }

// drainBudget is how long a command whose context ended may still take
// to read its reply (waiting for its turn, then the reply, discarded):
// the session stays in step and usable for RSET. A POP3 server such as
// Dovecot marks every message RETRieved in a session \Seen when the
// session ends, even without QUIT, unless RSET came first; breaking the
// connection at the first Ctrl-C would leave the messages in flight
// marked read. Beyond the budget the connection is broken, as before.
var drainBudget = 5 * time.Second // a variable for tests only

// wait blocks until it is p's turn to read. When ctx ends first, it waits
// on for at most drainBudget (canceled is then true: the caller is to
// read and drop its reply, see drop), and breaks the connection if the
// turn does not come.
func (p *pending) wait(ctx context.Context) (canceled bool, err error) {
	select {
	case <-p.mine:
		if ctx.Err() == nil {
			return false, p.c.broken()
		}
	case <-ctx.Done():
	}
	t := time.NewTimer(drainBudget)
	defer t.Stop()
	select {
	case <-p.mine:
		if err := p.c.broken(); err != nil {
			return true, err
		}
		return true, nil
	case <-t.C:
		p.c.fail(context.Cause(ctx))
		return true, ctx.Err()
	}
}

// drop reads and discards the reply of a command whose context ended,
// within drainBudget, and returns ctx's error (or the lost connection's).
func (c *Conn) drop(ctx context.Context, verb string, multi bool) error {
	c.tc.capAt(time.Now().Add(drainBudget))
	defer c.tc.uncap() // replies are read one at a time: the next is not this one's to bound
	line, err := c.rawLine()
	if err != nil {
		c.fail(err)
		return c.lostOr(ctx)
	}
	if err := checkStatus(verb, line); err != nil {
		if ServerError(err) == nil {
			c.fail(err)
			return c.lostOr(ctx)
		}
		return ctx.Err()
	}
	if multi {
		if err := NewDotReader(c.br).Drain(); err != nil {
			c.fail(fmt.Errorf("%s: %w", verb, err))
			return c.lostOr(ctx)
		}
	}
	return ctx.Err()
}

// send writes a command. With pipelining it is written at once; without,
// only after every earlier reply was read.
func (c *Conn) send(ctx context.Context, verb string, args ...string) (*pending, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	line := verb
	for _, a := range args {
		line += " " + a
	}
	c.wmu.Lock()
	if err := c.broken(); err != nil {
		c.wmu.Unlock()
		return nil, err
	}
	p := &pending{c: c, verb: verb, mine: c.turn, next: make(chan struct{})}
	c.turn = p.next
	if !c.pipe {
		c.wmu.Unlock()
		canceled, err := p.wait(ctx)
		if err == nil && canceled {
			err = ctx.Err() // not sent: no reply to read
		}
		if err != nil {
			p.finish()
			return nil, err
		}
		c.wmu.Lock()
	}
	if verb == "DELE" {
		// Counted once written: its reply may be read by nobody (a
		// cancelled caller's is dropped), and Close must not then QUIT.
		c.emu.Lock()
		c.dele++
		c.emu.Unlock()
	}
	err := c.rawSend(line, line)
	c.wmu.Unlock()
	if err != nil {
		c.fail(err)
		p.finish()
		return nil, c.broken()
	}
	return p, nil
}

// read reads p's reply. For a multi-line reply, body (if not nil) reads
// the body; whatever it leaves is drained. It returns the text after
// "+OK", an *Error for -ERR, or a lost-connection error.
func (p *pending) read(ctx context.Context, multi bool, body func(io.Reader) error) (string, error) {
	defer p.finish()
	c := p.c
	canceled, err := p.wait(ctx)
	if err != nil {
		return "", err
	}
	if canceled {
		return "", c.drop(ctx, p.verb, multi)
	}
	// Ended while the reply is read: it is read to its end within
	// drainBudget (body goes on receiving it), then ctx's error returned.
	var capMu sync.Mutex
	done := false
	stop := context.AfterFunc(ctx, func() {
		capMu.Lock()
		defer capMu.Unlock()
		if !done {
			c.tc.capAt(time.Now().Add(drainBudget))
		}
	})
	defer func() {
		stop()
		capMu.Lock()
		done = true
		capMu.Unlock()
		c.tc.uncap() // the next reply, a live command's, is not bound by this one's cancel
	}()
	line, err := c.rawLine()
	if err != nil {
		c.fail(err)
		return "", c.lostOr(ctx)
	}
	if err := checkStatus(p.verb, line); err != nil {
		if ServerError(err) == nil {
			c.fail(err)
			return "", c.lostOr(ctx)
		}
		return "", err
	}
	rest := strings.TrimPrefix(strings.TrimPrefix(line, "+OK"), " ")
	if !multi {
		return rest, nil
	}
	dr := NewDotReader(c.br)
	var berr error
	if body != nil {
		berr = body(dr)
	}
	if berr == nil && !dr.Done() {
		berr = dr.Drain()
	}
	if berr != nil {
		// Stopped inside the body: the stream is out of step.
		c.fail(fmt.Errorf("%s: %w", p.verb, berr))
		return "", c.lostOr(ctx)
	}
	if p.verb == "RETR" || p.verb == "TOP" {
		c.tr.server(fmt.Sprintf("[%d bytes of message data]", dr.N()))
		c.tr.server(".")
	}
	if err := ctx.Err(); err != nil {
		return "", err
	}
	return rest, nil
}

// lostOr is the error of a broken connection, or ctx's.
func (c *Conn) lostOr(ctx context.Context) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return c.broken()
}

// cmd sends one command and reads its reply.
func (c *Conn) cmd(ctx context.Context, multi bool, body func(io.Reader) error, verb string, args ...string) (string, error) {
	p, err := c.send(ctx, verb, args...)
	if err != nil {
		return "", err
	}
	return p.read(ctx, multi, body)
}

// Entry is one line of a LIST or UIDL reply.
type Entry struct {
	Num  int    // message number in this session, from 1
	Size int64  // LIST: octets as the server will send them
	UID  string // UIDL: the unique id
}

// parseEntries reads "num value" lines.
func parseEntries(r io.Reader, uid bool, out *[]Entry, tr *tracer) error {
	br := bufio.NewReader(r)
	for {
		line, err := br.ReadString('\n')
		if t := strings.TrimRight(line, "\r\n"); t != "" {
			tr.server(t)
			f := strings.Fields(t)
			if len(f) < 2 {
				return fmt.Errorf("malformed line %q", clip(t))
			}
			n, perr := strconv.Atoi(f[0])
			if perr != nil || n < 1 {
				return fmt.Errorf("malformed message number in %q", clip(t))
			}
			e := Entry{Num: n}
			if uid {
				e.UID = f[1]
			} else if e.Size, perr = strconv.ParseInt(f[1], 10, 64); perr != nil || e.Size < 0 {
				return fmt.Errorf("malformed size in %q", clip(t))
			}
			*out = append(*out, e)
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// Stat returns the number of messages and their total size.
func (c *Conn) Stat(ctx context.Context) (int, int64, error) {
	rest, err := c.cmd(ctx, false, nil, "STAT")
	if err != nil {
		return 0, 0, err
	}
	f := strings.Fields(rest)
	if len(f) < 2 {
		return 0, 0, fmt.Errorf("%s: malformed STAT reply %q", c.cfg.where(), clip(rest))
	}
	n, err1 := strconv.Atoi(f[0])
	size, err2 := strconv.ParseInt(f[1], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, 0, fmt.Errorf("%s: malformed STAT reply %q", c.cfg.where(), clip(rest))
	}
	return n, size, nil
}

// List returns the number and size of every message (LIST).
func (c *Conn) List(ctx context.Context) ([]Entry, error) {
	var out []Entry
	_, err := c.cmd(ctx, true, func(r io.Reader) error { return parseEntries(r, false, &out, c.tr) }, "LIST")
	return out, err
}

// UIDL returns the number and unique id of every message. A server
// without UIDL answers with an *Error.
func (c *Conn) UIDL(ctx context.Context) ([]Entry, error) {
	var out []Entry
	_, err := c.cmd(ctx, true, func(r io.Reader) error { return parseEntries(r, true, &out, c.tr) }, "UIDL")
	return out, err
}

// Retr streams message n into w (dot-stuffing undone, bytes otherwise as
// sent) and returns how many bytes it wrote. Safe to call from several
// goroutines: with pipelining their RETRs are in flight together.
func (c *Conn) Retr(ctx context.Context, n int, w io.Writer) (int64, error) {
	var got int64
	_, err := c.cmd(ctx, true, func(r io.Reader) error {
		var err error
		got, err = io.Copy(w, r)
		return err
	}, "RETR", strconv.Itoa(n))
	return got, err
}

// Top streams the header of message n and lines lines of its body into w.
func (c *Conn) Top(ctx context.Context, n, lines int, w io.Writer) (int64, error) {
	var got int64
	_, err := c.cmd(ctx, true, func(r io.Reader) error {
		var err error
		got, err = io.Copy(w, r)
		return err
	}, "TOP", strconv.Itoa(n), strconv.Itoa(lines))
	return got, err
}

// Dele marks message n deleted; the server removes it only when QUIT
// succeeds. Close on a session with marked messages does not send QUIT.
func (c *Conn) Dele(ctx context.Context, n int) error {
	_, err := c.cmd(ctx, false, nil, "DELE", strconv.Itoa(n))
	return err // counted by send
}

// Forget asks the server, before a session that deleted nothing ends, to
// forget what the session did: RSET, which RFC 1939 defines as unmarking
// deletions and which Dovecot also takes as forgetting what was retrieved
// (otherwise it marks every RETRieved message \Seen when the session
// ends, with QUIT or without). Where LAST is answered (RFC 1460, Dovecot's
// pop3_enable_last) RSET is not sent: there it would remove \Seen from
// every message. It must not be called on a session with DELEs to keep.
func (c *Conn) Forget(ctx context.Context) error {
	if _, err := c.cmd(ctx, false, nil, "LAST"); err == nil {
		return nil
	} else if ServerError(err) == nil {
		return err
	}
	_, err := c.cmd(ctx, false, nil, "RSET")
	if err == nil {
		c.emu.Lock()
		c.dele = 0
		c.emu.Unlock()
	}
	return err
}

// Noop asks the server for +OK (a cheap liveness check).
func (c *Conn) Noop(ctx context.Context) error {
	_, err := c.cmd(ctx, false, nil, "NOOP")
	return err
}

// Command is one command of a Batch.
type Command struct {
	Verb  string
	Args  []string
	Multi bool
	// Body reads the body of a multi-line reply (nil: discarded).
	Body func(io.Reader) error
}

// BatchWindow is how many commands Batch keeps in flight when the server
// offers PIPELINING. Commands are tiny, so a window of them never fills the
// socket's send buffer while the server waits for us to read its replies.
const BatchWindow = 32

// Batch runs n commands, cmd(i) giving the i-th, pipelined in windows of
// BatchWindow when the server offers PIPELINING (one at a time
// otherwise), and calls result(i, err) for each in order, err being nil,
// an *Error or a lost-connection error. If result returns an error, the
// replies already asked for are read and discarded and Batch returns that
// error. A lost connection ends Batch with its error. Called by one
// goroutine; other goroutines may use c meanwhile.
func (c *Conn) Batch(ctx context.Context, n int, cmd func(i int) Command, result func(i int, err error) error) error {
	window := 1
	if c.pipe {
		window = BatchWindow
	}
	type sent struct {
		p  *pending
		cm Command
	}
	var q []sent
	drain := func() {
		for _, s := range q {
			s.p.read(ctx, s.cm.Multi, nil)
		}
		q = nil
	}
	next := 0
	for i := 0; i < n; i++ {
		for next < n && next-i < window {
			cm := cmd(next)
			p, err := c.send(ctx, cm.Verb, cm.Args...)
			if err != nil {
				drain()
				return err
			}
			q = append(q, sent{p, cm})
			next++
		}
		s := q[0]
		q = q[1:]
		_, err := s.p.read(ctx, s.cm.Multi, s.cm.Body)
		if err != nil && ServerError(err) == nil {
			drain()
			return err
		}
		if rerr := result(i, err); rerr != nil {
			drain()
			return rerr
		}
	}
	return nil
}

// MarkedDeleted records that the caller marked messages with DELE through
// Batch; Close will then not commit them.
func (c *Conn) MarkedDeleted(n int) {
	c.emu.Lock()
	c.dele += n
	c.emu.Unlock()
}

// Quit ends the session with QUIT: the server enters the UPDATE state and
// removes the messages marked with DELE. An error means the removal is not
// confirmed: nothing, or everything marked, may have been removed (a
// connection lost after QUIT was sent), or the server says it could not
// remove some (-ERR). The connection is closed either way.
func (c *Conn) Quit(ctx context.Context) error {
	c.emu.Lock()
	c.quit = true
	c.emu.Unlock()
	_, err := c.cmd(ctx, false, nil, "QUIT")
	c.fail(errors.New("session ended with QUIT"))
	return err
}

// Close ends the session. It sends QUIT (bounded by 5 seconds) unless
// messages were marked with DELE and not committed by Quit: then it only
// closes the connection, and the server deletes nothing (RFC 1939: a
// session that ends without QUIT does not enter the UPDATE state).
func (c *Conn) Close() error {
	c.emu.Lock()
	skip := c.err != nil || c.quit || c.dele > 0
	c.emu.Unlock()
	if !skip {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		c.Quit(ctx)
		cancel()
	}
	c.Abort()
	return nil
}

// Abort closes the connection without QUIT: nothing marked is deleted.
func (c *Conn) Abort() { c.fail(errors.New("connection closed")) }

// tracer writes the protocol, one line at a time with "C: " or "S: ".
type tracer struct {
	mu sync.Mutex
	w  io.Writer
}

func (t *tracer) line(dir, s string) {
	if t == nil {
		return
	}
	t.mu.Lock()
	io.WriteString(t.w, dir+s+"\r\n")
	t.mu.Unlock()
}

func (t *tracer) client(s string) { t.line("C: ", s) }
func (t *tracer) server(s string) { t.line("S: ", s) }
