// Package imapconn is the one place where mailhaul dials and authenticates
// IMAP connections; the IMAP source and sink both use it.
//
// Endpoints are URLs: imaps://user@host[:993][/folder] (implicit TLS) and
// imap://user@host[:143][/folder] (STARTTLS required; plaintext only when
// Config.InsecurePlaintext is set, meant for loopback tests). Certificates
// are verified unless Config.SkipVerify (the caller warns about it).
// Passwords never appear in URLs (a URL with user:pass@ is refused), in
// errors, or in the wire trace (LOGIN and AUTHENTICATE lines are redacted).
//
// go-imap v2 has no context support: every command runs under Conn.Do,
// which closes the connection when the context is cancelled and when the
// server stays silent for Config.IdleTimeout while a command is pending (a
// watchdog; a big literal that keeps flowing never trips it). A closed
// connection is not reused: Pool redials the slot on its next Get.
//
// On imaps:// and plaintext connections to a server that advertises
// LITERAL+ after login, APPEND literals go out non-synchronising ("{N+}"),
// which go-imap does not do by itself: see literalplus.go for the wrapper,
// its contract and the one-line upstream fix that would make it redundant.
// Config.NoLiteralPlus turns it off.
package imapconn

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-sasl"

	"github.com/mailhaul/mailhaul/internal/bwlimit"
	"github.com/mailhaul/mailhaul/internal/connauth"
	"github.com/mailhaul/mailhaul/internal/tlsprobe"
	"github.com/mailhaul/mailhaul/migrate"
)

// Mechanisms accepted by Config.Auth.
const (
	AuthAuto        = ""            // PLAIN when advertised (or an admin user is set), else LOGIN
	AuthLogin       = "login"       // the LOGIN command
	AuthPlain       = "plain"       // AUTHENTICATE PLAIN, with optional authzid
	AuthXOAUTH2     = "xoauth2"     // Google / Microsoft XOAUTH2 with a bearer token
	AuthOAuthBearer = "oauthbearer" // RFC 7628 OAUTHBEARER
)

// Endpoint is a parsed imap:// or imaps:// URL.
type Endpoint struct {
	TLS    bool   // imaps: implicit TLS
	Host   string // host name or address, without port
	Port   string
	User   string
	Folder string // "/"-separated folder the endpoint is limited to; "" for the whole account
}

// ParseURL parses imaps://user@host[:port][/folder] or imap://... A
// password in the URL is refused: it would end up in shell history, ps
// output and the checkpoint key.
func ParseURL(raw string) (Endpoint, error) {
	u, err := connauth.ParseURL(raw, "IMAP", "imaps://user@host[:port][/folder]",
		"MAILHAUL_SRC_PASSWORD / MAILHAUL_DST_PASSWORD, --src-password-file / --dst-password-file, or the prompt",
		connauth.Scheme{Name: "imap", Port: "143"}, connauth.Scheme{Name: "imaps", Port: "993", TLS: true})
	if err != nil {
		return Endpoint{}, err
	}
	return Endpoint{TLS: u.Scheme.TLS, Host: u.Host, Port: u.Port, User: u.User, Folder: u.Path}, nil
}

func (e Endpoint) hostPort() string { return net.JoinHostPort(e.Host, e.Port) }

// Addr is host:port.
func (e Endpoint) Addr() string { return e.hostPort() }

// String is the normalised URL, never with a secret: it is used in
// messages and as the checkpoint key.
func (e Endpoint) String() string {
	s := "imap"
	if e.TLS {
		s = "imaps"
	}
	s += "://" + url.PathEscape(e.User) + "@" + e.hostPort()
	if e.Folder != "" {
		s += "/" + e.Folder
	}
	return s
}

// Config is everything needed to open connections to one account.
type Config struct {
	Endpoint
	// InsecurePlaintext allows imap:// without STARTTLS.
	InsecurePlaintext bool
	// CAFile is a PEM file of extra trusted CAs (a private CA or a
	// self-signed server certificate).
	CAFile string
	// SkipVerify turns certificate verification off.
	SkipVerify bool
	// Auth is one of the Auth* mechanisms.
	Auth string
	// AdminUser, when set, is the admin or master user whose credentials
	// are given: AUTHENTICATE PLAIN is sent with authcid=AdminUser (and its
	// Password) and authzid=User, so the session acts as User (Dovecot
	// master users, Cyrus/Zimbra admins).
	AdminUser string
	// Password for LOGIN and PLAIN (the admin's when AdminUser is set).
	Password string
	// PasswordFrom says where Password came from ("$MAILHAUL_SRC_PASSWORD",
	// "--src-password-file FILE", "the prompt"), for a refused login's
	// message; "" says nothing.
	PasswordFrom string
	// Token returns an OAuth2 access token for XOAUTH2 / OAUTHBEARER; it is
	// called for every new connection (tokens expire).
	Token func(ctx context.Context) (string, error)
	// Trace, if set, receives the wire protocol with credentials redacted.
	Trace io.Writer
	// IdleTimeout is how long a pending command may go without a byte
	// moving in either direction before the connection is closed and
	// replaced (default DefaultIdleTimeout). It is the only bound on a
	// command's duration: a literal that keeps flowing, however large and
	// slow, never trips it.
	IdleTimeout time.Duration
	// DialTimeout bounds TCP connect + TLS + greeting (default 30s).
	DialTimeout time.Duration
	// Limit, if not nil, bounds the bandwidth of every connection made
	// with this Config together (--bwlimit).
	Limit *bwlimit.Limit
	// NoLiteralPlus keeps go-imap's synchronising APPEND literals even when
	// the server advertises LITERAL+ (see literalplus.go: by default they
	// are rewritten to non-synchronising ones on imaps:// and plaintext
	// connections, saving a round trip per APPEND).
	NoLiteralPlus bool
	// Role names the side the account plays, in messages: "source" (""
	// too) or "destination" (check reads the destination as a source).
	Role string
	// SpillDir holds the temporary files of large FETCH responses whose
	// UID came after their body (see orphans.go); "" is os.TempDir().
	SpillDir string
}

// Conn is one authenticated connection. It is used by one goroutine at a
// time (a Pool slot); commands must run inside Do.
type Conn struct {
	*imapclient.Client
	cfg      *Config
	act      *activityConn
	lp       *literalPlusConn // the cleartext stream (trace, LITERAL+)
	bin      *binaryConn      // what go-imap writes to (literal8, MULTIAPPEND)
	trace    *redactor        // nil without Config.Trace
	orphans  *orphans         // FETCH responses no command got (orphans.go)
	timedOut atomic.Bool
	done     chan struct{}
	once     sync.Once

	// Selected is the mailbox selected on this connection ("" if none)
	// and SelectData what SELECT/EXAMINE returned; maintained by Select.
	Selected   string
	ReadOnly   bool
	SelectData *imap.SelectData
}

// Dial connects, negotiates TLS and authenticates. Errors name the server
// and account; authentication and certificate failures are classified
// fatal, network failures retryable.
func Dial(ctx context.Context, cfg *Config) (*Conn, error) {
	idle := cfg.IdleTimeout
	if idle <= 0 {
		idle = DefaultIdleTimeout
	}
	dt := cfg.DialTimeout
	if dt <= 0 {
		dt = 30 * time.Second
	}
	where := fmt.Sprintf("IMAP server %s (account %s)", cfg.Addr(), cfg.User)
	tcfg, err := cfg.tlsConfig()
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
	act := &activityConn{Conn: raw}
	act.touch()
	in := newReadBuffer(act)
	var trace *redactor
	if cfg.Trace != nil {
		trace = newRedactor(cfg.Trace, cfg.Password)
	}
	c := &Conn{cfg: cfg, act: act, done: make(chan struct{}), trace: trace, orphans: newOrphans()}
	opts := &imapclient.Options{TLSConfig: tcfg, UnilateralDataHandler: &imapclient.UnilateralDataHandler{Fetch: c.orphanFetch}}
	// Until the client exists, a deadline bounds the handshake.
	handshake := time.Now().Add(dt)
	raw.SetDeadline(handshake)
	stop := context.AfterFunc(dctx, func() { raw.Close() })
	// Every connection's cleartext stream passes through literalPlusConn,
	// which writes the trace and, once enabled after login, the LITERAL+
	// rewriting (see literalplus.go); go-imap sees it through noDeadlines.
	var lp *literalPlusConn
	var nc net.Conn
	var probe *tlsprobe.Probe
	if !cfg.TLS {
		probe = tlsprobe.Start(dctx, cfg.Addr(), cfg.Host, raw, tlsprobe.Wait(dt), act.heard)
	}
	switch {
	case cfg.TLS:
		tc := tls.Client(in, tcfg)
		if err = tc.HandshakeContext(dctx); err == nil {
			nc, err = plainGreeting(tc, nil)
		}
	case cfg.InsecurePlaintext:
		nc, err = plainGreeting(in, nil)
	default:
		nc, err = startTLS(dctx, in, tcfg, trace)
	}
	if probe.FoundTLS() {
		stop()
		raw.Close()
		return nil, migrate.FatalError(fmt.Errorf("%s: the server sent no IMAP greeting but answers a TLS handshake on this port: use imaps:// for it (imap:// is for port 143, plaintext or STARTTLS)", where))
	}
	var cl *imapclient.Client
	if err == nil {
		lp = newLiteralPlusConn(nc, trace)
		lp.SetDeadline(handshake)
		c.bin = &binaryConn{Conn: lp}
		cl = imapclient.New(noDeadlines{c.bin}, opts)
	}
	if err == nil {
		err = cl.WaitGreeting()
	}
	stopped := stop()
	raw.SetDeadline(time.Time{})
	if lp != nil {
		lp.SetDeadline(time.Time{})
	}
	if err != nil || !stopped {
		raw.Close()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if err == nil || isTimeout(err) || dctx.Err() != nil {
			if cfg.TLS {
				err = fmt.Errorf("connected, but the server sent no TLS handshake or IMAP greeting within %s", dt)
			} else {
				err = fmt.Errorf("connected, but the server sent no IMAP greeting within %s (a TLS port, such as 993, wants imaps://)", dt)
			}
		}
		if connauth.IsCertError(err) {
			return nil, migrate.FatalError(connauth.CertError(where, err))
		}
		if ni := (*notIMAPError)(nil); errors.As(err, &ni) {
			return nil, migrate.FatalError(fmt.Errorf("%s: %v", where, ni))
		}
		if rh := (tls.RecordHeaderError{}); cfg.TLS && errors.As(err, &rh) {
			// The server answered the TLS handshake in plaintext.
			return nil, migrate.FatalError(fmt.Errorf("%s: the server does not speak TLS on this port (it answered %q): use imap:// (STARTTLS) for port 143, or the TLS port (993) with imaps://", where, connauth.Printable(rh.RecordHeader[:])))
		}
		if re := (*refusedError)(nil); errors.As(err, &re) {
			return nil, migrate.FatalError(fmt.Errorf("%s: %v; use imaps:// or, on a trusted network only, --insecure-plaintext", where, re))
		}
		if isIMAPError(err) {
			return nil, migrate.FatalError(fmt.Errorf("%s: %v", where, err))
		}
		return nil, migrate.Retryable(fmt.Errorf("%s: %w", where, err))
	}
	c.Client = cl
	c.lp = lp
	go c.watchdog(idle)
	go func() {
		// However the client closes (Close, a discarded or broken
		// connection), what it kept goes with it.
		<-cl.Closed()
		c.closeOrphans()
	}()
	if err := c.login(ctx, where); err != nil {
		c.Client.Close()
		return nil, err
	}
	// Capabilities may change at login: read them now.
	var caps imap.CapSet
	c.Do(ctx, func() error { caps = c.Caps(); return nil })
	if caps.Has(imap.CapLiteralPlus) && !cfg.NoLiteralPlus {
		lp.enable()
	}
	return c, nil
}

// Binary reports whether the server takes literal8 (RFC 3516 BINARY): an
// APPEND flagged Literal8Flag can carry NUL bytes.
func (c *Conn) Binary() bool {
	return c.Caps().Has(imap.CapBinary)
}

// LiteralPlus reports whether APPEND literals on c are sent
// non-synchronising (see literalplus.go): the server advertised LITERAL+
// after login and Config.NoLiteralPlus is off.
func (c *Conn) LiteralPlus() bool { return c.lp != nil && c.lp.enabled() }

func (cfg *Config) tlsConfig() (*tls.Config, error) {
	return connauth.TLSConfig(cfg.Host, cfg.CAFile, cfg.SkipVerify)
}

func (c *Conn) login(ctx context.Context, where string) error {
	cfg := c.cfg
	mech := cfg.Auth
	if mech == AuthAuto {
		mech = AuthLogin
		if cfg.AdminUser != "" || c.Caps().Has(imap.Cap("AUTH=PLAIN")) {
			mech = AuthPlain
		}
	}
	who := fmt.Sprintf("account %s", cfg.User)
	if cfg.AdminUser != "" {
		who = fmt.Sprintf("account %s (as admin user %s)", cfg.User, cfg.AdminUser)
	}
	var err error
	switch mech {
	case AuthLogin:
		if cfg.AdminUser != "" {
			return migrate.FatalError(fmt.Errorf("IMAP server %s: an admin/authorization identity needs --auth plain, not login", cfg.Addr()))
		}
		if c.Caps().Has(imap.CapLoginDisabled) {
			return migrate.FatalError(fmt.Errorf("IMAP server %s refuses LOGIN (LOGINDISABLED) for %s; use TLS or another --auth", cfg.Addr(), who))
		}
		err = c.Do(ctx, func() error { return c.Login(cfg.User, cfg.Password).Wait() })
	case AuthPlain:
		// RFC 4616: identity is the user to act as, username the one
		// whose password is given (the admin when AdminUser is set).
		identity, username := "", cfg.User
		if cfg.AdminUser != "" {
			identity, username = cfg.User, cfg.AdminUser
		}
		err = c.Do(ctx, func() error { return c.Authenticate(sasl.NewPlainClient(identity, username, cfg.Password)) })
	case AuthXOAUTH2, AuthOAuthBearer:
		if cfg.Token == nil {
			return migrate.FatalError(fmt.Errorf("%s: --auth %s needs an access token (--src/dst-oauth-token-cmd or --src/dst-oauth-token-file)", where, mech))
		}
		tok, terr := cfg.Token(ctx)
		if terr != nil {
			return migrate.FatalError(fmt.Errorf("get OAuth2 token for %s on %s: %w", cfg.User, cfg.Addr(), terr))
		}
		if c.trace != nil {
			c.trace.addSecret(tok)
		}
		var bc *bearerClient
		if mech == AuthXOAUTH2 {
			bc = &bearerClient{mech: "XOAUTH2", ir: connauth.XOAUTH2(cfg.User, tok)}
		} else {
			bc = &bearerClient{mech: "OAUTHBEARER", ir: connauth.OAuthBearer(cfg.User, cfg.Host, cfg.Port, tok)}
		}
		err = c.Do(ctx, func() error { return c.Authenticate(bc) })
		if err != nil && bc.detail != "" && !errors.Is(err, errTokenRefused) {
			err = fmt.Errorf("%w (server said: %s)", err, bc.detail)
		}
	default:
		return migrate.FatalError(fmt.Errorf("unknown IMAP authentication %q (want login, plain, xoauth2 or oauthbearer)", mech))
	}
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if t := Throttled(err); t != nil {
			return migrate.Backoff(fmt.Errorf("%s: login as %s throttled: %v", where, who, oneLine(err)), waitIn(err.Error()))
		}
		if isIMAPError(err) || !isNetError(err) {
			return migrate.FatalError(fmt.Errorf("%s: login as %s failed (%s): %v%s", where, who, mech, oneLine(err), passwordFrom(cfg.PasswordFrom, mech)))
		}
		return migrate.Retryable(fmt.Errorf("%s: login as %s: %w", where, who, err))
	}
	return nil
}

func oneLine(err error) string {
	return strings.Join(strings.Fields(err.Error()), " ")
}

// errTokenRefused is returned by bearerClient when the server refuses an
// XOAUTH2 token.
var errTokenRefused = errors.New("access token refused")

// bearerClient is the SASL client of XOAUTH2 (Google, Microsoft: one
// message "user=U^Aauth=Bearer T^A^A") and OAUTHBEARER (RFC 7628). Either
// succeeds at once or the server sends a JSON error challenge, kept in
// detail, that the client must answer before the server sends its tagged
// NO.
//
// OAUTHBEARER's answer is the single byte 0x01 (RFC 7628 section 3.2.3).
// XOAUTH2's is an empty response, an empty line, which go-imap cannot send:
// it encodes an empty response as "=", which Dovecot rejects as invalid
// base64 (answering BAD and disconnecting, so the real reason is lost). So
// XOAUTH2 gives up at the challenge with errTokenRefused and the server's
// status; the caller closes the connection.
type bearerClient struct {
	mech, ir string
	detail   string
}

func (b *bearerClient) Start() (string, []byte, error) {
	return b.mech, []byte(b.ir), nil
}

func (b *bearerClient) Next(challenge []byte) ([]byte, error) {
	b.detail = connauth.BearerDetail(challenge)
	if b.mech == "XOAUTH2" {
		return nil, fmt.Errorf("%w (server said: %s)", errTokenRefused, b.detail)
	}
	return []byte{1}, nil
}

// Do runs fn, which issues commands on c and waits for them, under ctx and
// the watchdog. If ctx ends or the server stays silent for IdleTimeout the
// connection is closed (fn then fails) and Do returns ctx.Err() or a
// retryable timeout error. Call from the goroutine that owns c.
func (c *Conn) Do(ctx context.Context, fn func() error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	stop := context.AfterFunc(ctx, func() { c.Client.Close() })
	c.act.busy.Add(1)
	c.act.touch()
	err := func() error {
		// A panic in fn goes on up, but leaves the connection idle.
		defer func() {
			c.act.busy.Add(-1)
			stop()
		}()
		return fn()
	}()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if err != nil && c.timedOut.Load() {
		return migrate.Retryable(fmt.Errorf("IMAP server %s did not answer for %s: %w", c.cfg.Addr(), c.idle(), err))
	}
	if err != nil && !isIMAPError(err) && c.lp != nil {
		if bye := c.lp.byeText(); bye != "" {
			err = fmt.Errorf("%w (server said: BYE %s)", err, bye)
		}
	}
	return err
}

func (c *Conn) idle() time.Duration {
	if c.cfg.IdleTimeout > 0 {
		return c.cfg.IdleTimeout
	}
	return DefaultIdleTimeout
}

// DefaultIdleTimeout is Config.IdleTimeout's default: a server that sends
// nothing for a minute while it owes a reply is taken for dead (a stalled
// or half-open link) and the connection replaced.
const DefaultIdleTimeout = 60 * time.Second

func (c *Conn) watchdog(idle time.Duration) {
	tick := idle / 4
	if tick < 20*time.Millisecond {
		tick = 20 * time.Millisecond
	}
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-c.Closed():
			return
		case <-c.done:
			return
		case <-t.C:
			if c.act.busy.Load() > 0 && time.Since(time.Unix(0, c.act.last.Load())) > idle {
				c.timedOut.Store(true)
				c.Client.Close()
				return
			}
		}
	}
}

// StaleAfter is how long a connection may sit idle before it is checked
// with NOOP (or replaced) when it is taken up again: servers log idle
// clients out after 30 minutes at the earliest (RFC 9051), NAT devices
// forget idle connections much sooner.
const StaleAfter = 2 * time.Minute

// stale reports whether c has been idle (no byte either way) for
// StaleAfter.
func (c *Conn) stale() bool {
	return time.Since(time.Unix(0, c.act.last.Load())) > StaleAfter
}

// ping sends NOOP, bounded by a short timeout.
func (c *Conn) ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	return c.Do(ctx, func() error { return c.Noop().Wait() })
}

// Broken reports whether the connection is closed (by the server, a
// network error, the watchdog or a cancelled context).
func (c *Conn) Broken() bool {
	select {
	case <-c.Closed():
		return true
	default:
		return false
	}
}

// Close logs out (briefly) and closes the connection.
func (c *Conn) Close() error {
	c.once.Do(func() { close(c.done) })
	if !c.Broken() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		c.Do(ctx, func() error { return c.Logout().Wait() })
		cancel()
	}
	err := c.Client.Close()
	c.closeOrphans()
	return err
}

// Select selects (readOnly: examines) mailbox unless it is already
// selected in that mode.
func (c *Conn) Select(ctx context.Context, mailbox string, readOnly bool) (*imap.SelectData, error) {
	if c.Selected == mailbox && c.ReadOnly == readOnly && c.SelectData != nil {
		return c.SelectData, nil
	}
	c.Selected, c.SelectData = "", nil
	c.orphans.newMailbox()
	var data *imap.SelectData
	err := c.Do(ctx, func() error {
		var err error
		data, err = c.Client.Select(mailbox, &imap.SelectOptions{ReadOnly: readOnly}).Wait()
		return err
	})
	if err != nil {
		return nil, err
	}
	c.Selected, c.ReadOnly, c.SelectData = mailbox, readOnly, data
	return data, nil
}

// SelectThen is Select followed by commands that need the mailbox
// selected, sent without waiting for the SELECT's answer: one round trip
// for both instead of two. send issues the commands (on c.Client) and
// returns the function that waits for them; both run on the caller's
// goroutine, inside one Do. They run whatever the SELECT answers: a
// refused SELECT leaves no mailbox selected (RFC 3501 6.3.1, RFC 9051
// 6.3.2), so the commands fail rather than act on the mailbox selected
// before (a server that kept the old mailbox selected would answer them
// for that one: the caller throws away what the commands read when the
// SELECT failed). The SELECT's error comes first (with nil data); the wait's
// error is returned only when the SELECT succeeded, with its data. When
// mailbox is already selected in that mode no SELECT is sent.
func (c *Conn) SelectThen(ctx context.Context, mailbox string, readOnly bool, send func() (wait func() error)) (*imap.SelectData, error) {
	if c.Selected == mailbox && c.ReadOnly == readOnly && c.SelectData != nil {
		data := c.SelectData
		return data, c.Do(ctx, func() error { return send()() })
	}
	var data *imap.SelectData
	var selErr error
	err := c.Do(ctx, func() error {
		sel := c.SendSelect(mailbox, readOnly)
		wait := send()
		data, selErr = sel()
		werr := wait()
		if selErr != nil {
			return selErr
		}
		return werr
	})
	if selErr != nil || data == nil {
		return nil, err
	}
	return data, err
}

// SendSelect sends SELECT (readOnly: EXAMINE) for mailbox without waiting
// for the answer, for a caller that pipelines it with other commands
// inside one Do (on the caller's goroutine, like every use of c's state).
// wait returns the answer and, when the server selected the mailbox,
// records it on c as Select does; until then no mailbox counts as
// selected.
func (c *Conn) SendSelect(mailbox string, readOnly bool) (wait func() (*imap.SelectData, error)) {
	c.Selected, c.SelectData = "", nil
	c.orphans.newMailbox()
	cmd := c.Client.Select(mailbox, &imap.SelectOptions{ReadOnly: readOnly})
	return func() (*imap.SelectData, error) {
		data, err := cmd.Wait()
		if err != nil {
			return nil, err
		}
		c.Selected, c.ReadOnly, c.SelectData = mailbox, readOnly, data
		return data, nil
	}
}

// Config returns the configuration c was dialled with.
func (c *Conn) Config() *Config { return c.cfg }

// noDeadlines is the connection imapclient sees: it ignores go-imap's own
// deadlines (30 s per response, a fixed 5 minutes per literal in
// beta.8), which cut a large message on a slow link however steadily it
// flows. Every wait is bounded by Conn's watchdog instead: IdleTimeout
// without a byte while a command is pending, whatever the literal's size.
type noDeadlines struct{ net.Conn }

func (noDeadlines) SetDeadline(time.Time) error      { return nil }
func (noDeadlines) SetReadDeadline(time.Time) error  { return nil }
func (noDeadlines) SetWriteDeadline(time.Time) error { return nil }

// readBuffer reads the transport readBufferSize bytes at a time where
// the kernel has them: go-imap reads through a 4 KiB buffer, so a stream
// of pipelined FETCH responses (several messages a read) cost a system
// call per 4 KiB or per literal. Below TLS, what it holds is records TLS
// has still to check. A plaintext connection's STARTTLS reply is read
// above it (startTLS), which refuses bytes that follow the reply in its
// own 4 KiB buffer; bytes beyond those are left here and go into the TLS
// handshake, which fails on them: nothing sent before TLS is taken as
// sent inside it.
type readBuffer struct {
	net.Conn
	r *bufio.Reader
}

const readBufferSize = 64 << 10

func newReadBuffer(c net.Conn) *readBuffer {
	return &readBuffer{Conn: c, r: bufio.NewReaderSize(c, readBufferSize)}
}

func (b *readBuffer) Read(p []byte) (int, error) { return b.r.Read(p) }

// activityConn records when bytes last moved, for the watchdog.
type activityConn struct {
	net.Conn
	last  atomic.Int64
	busy  atomic.Int32
	bytes atomic.Bool // something was received
}

func (a *activityConn) touch() { a.last.Store(time.Now().UnixNano()) }

// heard reports whether the peer has sent anything yet.
func (a *activityConn) heard() bool { return a.bytes.Load() }

func (a *activityConn) Read(p []byte) (int, error) {
	n, err := a.Conn.Read(p)
	if n > 0 {
		a.touch()
		if !a.bytes.Load() {
			a.bytes.Store(true)
		}
	}
	return n, err
}

func (a *activityConn) Write(p []byte) (int, error) {
	n, err := a.Conn.Write(p)
	if n > 0 {
		a.touch()
	}
	return n, err
}

func isIMAPError(err error) bool {
	var ie *imap.Error
	return errors.As(err, &ie)
}

// IMAPError returns the server's NO/BAD response in err, if any — but not
// a throttling reply (Throttled), which says "not now", not "no".
func IMAPError(err error) *imap.Error {
	var ie *imap.Error
	if errors.As(err, &ie) && Throttled(err) == nil {
		return ie
	}
	return nil
}

func isNetError(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed)
}

// Classify turns an error of a command on c into the engine's classes:
// throttling replies become Retry with the server's suggested wait
// (Throttled), other server NO/BAD responses are returned unchanged (the
// caller knows what they mean for its command), ctx errors and errors
// classified already (migrate.Classified: a skip, or a fatal error such as
// a folder the URL names that does not exist) unchanged, and everything
// else (a dropped or timed-out connection) retryable. The caller must drop a conn
// that failed with a non-IMAP error.
func Classify(err error) error {
	if t := Throttled(err); t != nil {
		return t
	}
	if err == nil || isIMAPError(err) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	if migrate.Classified(err) {
		return err // Skip, Retry, or explicitly Fatal
	}
	return migrate.Retryable(err)
}

// HasAttr reports whether a LIST reply carries attr (case-insensitive, as
// servers differ in spelling).
func HasAttr(l *imap.ListData, attr imap.MailboxAttr) bool {
	for _, a := range l.Attrs {
		if strings.EqualFold(string(a), string(attr)) {
			return true
		}
	}
	return false
}

// passwordFrom is the note a refused login adds about where its password
// came from (not for token logins).
func passwordFrom(from, mech string) string {
	if from == "" || mech == AuthXOAUTH2 || mech == AuthOAuthBearer {
		return ""
	}
	return "; the password came from " + from
}
