package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/spf13/pflag"
	"golang.org/x/term"

	"github.com/mailhaul/mailhaul/internal/bwlimit"
	"github.com/mailhaul/mailhaul/internal/imapconn"
	"github.com/mailhaul/mailhaul/migrate"
	"github.com/mailhaul/mailhaul/sinks"
	"github.com/mailhaul/mailhaul/sources"
)

// IMAP endpoints: imaps://user@host[:993][/folder] and
// imap://user@host[:143][/folder] (STARTTLS). They register themselves in
// the scheme registry here, so that endpoints.go stays one line per scheme
// for the other backends.
func init() {
	sourceSchemes["imap"] = openIMAPSource
	sourceSchemes["imaps"] = openIMAPSource
	sinkSchemes["imap"] = openIMAPSink
	sinkSchemes["imaps"] = openIMAPSink
}

// imapFlags are the IMAP options of copy and ls.
type imapFlags struct {
	insecurePlaintext bool
	caFile            string
	skipVerify        bool
	srcPasswordFile   string
	dstPasswordFile   string
	srcAuth, dstAuth  string
	srcAdminUser      string
	dstAdminUser      string
	srcTokenCmd       string
	dstTokenCmd       string
	srcTokenFile      string
	dstTokenFile      string
	ioTimeout         time.Duration
}

// addIMAPFlags registers the IMAP flags on a command with a source and a
// destination.
func addIMAPFlags(fl *pflag.FlagSet, f *imapFlags) {
	addIMAPSourceFlags(fl, f)
	fl.StringVar(&f.dstPasswordFile, "dst-password-file", "", "file holding the destination password (else $MAILHAUL_DST_PASSWORD, else a prompt)")
	fl.StringVar(&f.dstAuth, "dst-auth", "", "destination IMAP authentication: login, plain, xoauth2 or oauthbearer")
	fl.StringVar(&f.dstAdminUser, "dst-admin-user", "", "log in to the destination as this admin/master user acting as the URL's user")
	fl.StringVar(&f.dstTokenCmd, "dst-oauth-token-cmd", "", "command printing an OAuth2 access token for the destination")
	fl.StringVar(&f.dstTokenFile, "dst-oauth-token-file", "", "file holding an OAuth2 access token for the destination")
}

// addIMAPSourceFlags registers the IMAP flags of a command that reads one
// endpoint, the source (ls), and those shared by both sides.
func addIMAPSourceFlags(fl *pflag.FlagSet, f *imapFlags) {
	fl.BoolVar(&f.insecurePlaintext, "insecure-plaintext", false, "allow imap:// without STARTTLS and pop3:// without STLS (password sent in clear: loopback tests only)")
	fl.StringVar(&f.caFile, "ca-file", "", "PEM file of a CA (or self-signed server certificate) to trust for IMAP and POP3 TLS")
	fl.BoolVar(&f.skipVerify, "tls-skip-verify", false, "do not verify IMAP and POP3 server certificates (insecure; prints a warning)")
	fl.StringVar(&f.srcPasswordFile, "src-password-file", "", "file holding the source password (else $MAILHAUL_SRC_PASSWORD, else a prompt)")
	fl.StringVar(&f.srcAuth, "src-auth", "", "source authentication: IMAP login, plain, xoauth2 or oauthbearer (default: plain if offered, else login); POP3 user, plain, xoauth2 or oauthbearer (default: plain if offered, else user)")
	fl.StringVar(&f.srcAdminUser, "src-admin-user", "", "log in to the source as this admin/master user acting as the URL's user (SASL PLAIN); the password is the admin's")
	fl.StringVar(&f.srcTokenCmd, "src-oauth-token-cmd", "", "command printing an OAuth2 access token for the source (run with sh -c)")
	fl.StringVar(&f.srcTokenFile, "src-oauth-token-file", "", "file holding an OAuth2 access token for the source")
	fl.DurationVar(&f.ioTimeout, "io-timeout", imapconn.DefaultIdleTimeout, "give up on an IMAP or POP3 server that sends nothing for this long while mailhaul waits for a reply (the connection is replaced and the operation resumed)")
}

// side returns the authentication flags of "src" or "dst": mechanism (lower
// case), admin user, password file, token command, token file.
func (f *imapFlags) side(side string) (auth, admin, pwFile, tokCmd, tokFile string) {
	if side == "src" {
		return strings.ToLower(f.srcAuth), f.srcAdminUser, f.srcPasswordFile, f.srcTokenCmd, f.srcTokenFile
	}
	return strings.ToLower(f.dstAuth), f.dstAdminUser, f.dstPasswordFile, f.dstTokenCmd, f.dstTokenFile
}

// describeIMAP is the checkpoint key / log name of an IMAP endpoint:
// the normalised URL, never a secret.
func describeIMAP(e endpoint) string {
	u, err := imapconn.ParseURL(e.Raw)
	if err != nil {
		// Never echo the raw argument: it may hold a password.
		return e.Scheme + "://invalid"
	}
	return u.String()
}

func imapFlagsOf(env endpointEnv) *imapFlags {
	if env.im != nil {
		return env.im
	}
	if env.c != nil {
		return &env.c.imap
	}
	return &imapFlags{}
}

func openIMAPSource(ctx context.Context, ep endpoint, env endpointEnv) (migrate.Source, error) {
	cfg, err := imapConfig(ep, env, "src")
	if err != nil {
		return nil, err
	}
	s, err := sources.OpenIMAP(ctx, cfg, dataConns(env, 1))
	if err != nil {
		return nil, err
	}
	s.Warn = env.warn
	return s, nil
}

// dataConns is how many connections a side moves messages on: --transfers,
// within --max-connections (one more connection lists and prepares).
func dataConns(env endpointEnv, def int) int {
	if env.c == nil {
		return def
	}
	n := env.c.transfers
	if env.c.maxConns > 0 {
		n = min(n, env.c.maxConns-1)
	}
	return max(n, 1)
}

func openIMAPSink(ctx context.Context, ep endpoint, env endpointEnv) (migrate.Sink, error) {
	cfg, err := imapConfig(ep, env, "dst")
	if err != nil {
		return nil, err
	}
	return sinks.OpenIMAP(ctx, cfg, dataConns(env, 4), env.warn)
}

// imapConfig builds the connection settings of one side ("src" or "dst")
// from the URL, the flags and the environment.
func imapConfig(ep endpoint, env endpointEnv, side string) (*imapconn.Config, error) {
	u, err := imapconn.ParseURL(ep.Raw)
	if err != nil {
		return nil, usageErr("%v", err)
	}
	f := imapFlagsOf(env)
	cfg := &imapconn.Config{Endpoint: u, InsecurePlaintext: f.insecurePlaintext, CAFile: f.caFile, SkipVerify: f.skipVerify, IdleTimeout: f.ioTimeout}
	if env.c != nil {
		cfg.SpillDir = env.c.tempDir      // large FETCH responses with the UID last
		bw, _ := parseSize(env.c.bwlimit) // checked by runCopy
		cfg.Limit = bwlimit.New(bw)
	}
	var pwFile, tokCmd, tokFile string
	cfg.Auth, cfg.AdminUser, pwFile, tokCmd, tokFile = f.side(side)
	switch cfg.Auth {
	case imapconn.AuthAuto, imapconn.AuthLogin, imapconn.AuthPlain, imapconn.AuthXOAUTH2, imapconn.AuthOAuthBearer:
	default:
		return nil, usageErr("invalid --%s-auth %q (want login, plain, xoauth2 or oauthbearer)", side, cfg.Auth)
	}
	cfg.IdleTimeout = f.ioTimeout
	cfg.Trace = connectionWarnings(env, side, u.Addr(), u.Host, u.TLS, cfg.SkipVerify, f.insecurePlaintext)
	if cfg.Auth == imapconn.AuthXOAUTH2 || cfg.Auth == imapconn.AuthOAuthBearer {
		if tokCmd == "" && tokFile == "" {
			return nil, usageErr("--%s-auth %s needs --%s-oauth-token-cmd or --%s-oauth-token-file", side, cfg.Auth, side, side)
		}
		cfg.Token = tokenSource(tokCmd, tokFile)
		return cfg, nil
	}
	if cfg.Password, cfg.PasswordFrom, err = sidePassword(env, side, pwFile, u.User, u.Addr()); err != nil {
		return nil, err
	}
	return cfg, nil
}

// sidePassword is the password of a side ("src", "dst") of an IMAP or
// POP3 endpoint and where it came from: a batch row's own first
// (env.password), else password's flags, environment and prompt.
func sidePassword(env endpointEnv, side, file, user, addr string) (pw, from string, err error) {
	if env.password != nil {
		if pw, from, ok := env.password(side); ok {
			return pw, from, nil
		}
	}
	return password(side, file, user, addr)
}

// connectionWarnings prints the warnings about an insecure connection of
// one side and returns the -vv wire trace writer (nil without -vv). Shared
// by IMAP and POP3 endpoints.
func connectionWarnings(env endpointEnv, side, addr, host string, tls, skipVerify, plaintext bool) io.Writer {
	if skipVerify {
		warn := "TLS certificate verification is OFF for " + addr + " (--tls-skip-verify): the connection can be intercepted"
		if env.g != nil && env.g.log != nil {
			env.g.log.Warn(warn)
		} else {
			fmt.Fprintln(os.Stderr, "mailhaul: warning:", warn)
		}
	}
	if !tls && plaintext && !isLoopback(host) {
		fmt.Fprintf(os.Stderr, "mailhaul: warning: --insecure-plaintext sends the password for %s in clear text\n", addr)
	}
	if env.g != nil && env.g.verbose >= 2 {
		return &prefixWriter{prefix: side + " " + addr + ": "}
	}
	return nil
}

func isLoopback(host string) bool {
	return host == "localhost" || strings.HasPrefix(host, "127.") || host == "::1"
}

// bothPasswords holds the sides already told that their password file
// wins over their variable (once per run, not once per connection).
var bothPasswords sync.Map

// password returns the password of one side (user on addr) and where it
// came from (for a refused login's message): --X-password-file, else
// $MAILHAUL_X_PASSWORD, else a prompt on the terminal.
func password(side, file, user, addr string) (pw, from string, err error) {
	env := "MAILHAUL_" + strings.ToUpper(side) + "_PASSWORD"
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return "", "", usageErr("--%s-password-file: %v", side, err)
		}
		if os.Getenv(env) != "" {
			if _, said := bothPasswords.LoadOrStore(side, true); !said {
				fmt.Fprintf(os.Stderr, "mailhaul: note: both the password file %s and $%s are set; the file is used\n", file, env)
			}
		}
		return strings.TrimRight(string(b), "\r\n"), "--" + side + "-password-file " + file, nil
	}
	if pw := os.Getenv(env); pw != "" {
		return pw, "$" + env, nil
	}
	if term.IsTerminal(int(os.Stdin.Fd())) {
		what := map[string]string{"src": "source", "dst": "destination"}[side]
		fmt.Fprintf(os.Stderr, "Password for %s on %s (%s): ", user, addr, what)
		b, err := term.ReadPassword(int(os.Stdin.Fd()))
		fmt.Fprintln(os.Stderr)
		if err != nil {
			return "", "", fmt.Errorf("read password: %w", err)
		}
		return string(b), "the prompt", nil
	}
	return "", "", usageErr("no password for %s on %s: set %s, pass --%s-password-file, or run on a terminal to be prompted", user, addr, env, side)
}

// tokenSource returns a Token func: the file is read, or the command run,
// for each new connection, and the result cached for a few minutes.
func tokenSource(cmd, file string) func(ctx context.Context) (string, error) {
	var (
		mu   sync.Mutex
		tok  string
		when time.Time
	)
	return func(ctx context.Context) (string, error) {
		mu.Lock()
		defer mu.Unlock()
		if tok != "" && time.Since(when) < 5*time.Minute {
			return tok, nil
		}
		var out []byte
		var err error
		if file != "" {
			out, err = os.ReadFile(file)
		} else {
			c := exec.CommandContext(ctx, "sh", "-c", cmd)
			c.Stderr = os.Stderr
			c.Env = childEnv(os.Environ())
			out, err = c.Output()
			if err != nil {
				err = fmt.Errorf("oauth token command %q: %w", cmd, err)
			}
		}
		if err != nil {
			return "", err
		}
		t := strings.TrimSpace(string(out))
		if t == "" {
			return "", errors.New("empty OAuth2 access token")
		}
		tok, when = t, time.Now()
		return tok, nil
	}
}

// secretVars names the environment variables that hold passwords: the
// MAILHAUL_*_PASSWORD of copy, check and ls, and those a batch's rows name
// (their *_password_env columns, added by addSecretVar). Token commands
// run without them (childEnv): a command that prints a token has no use
// for a password, and a helper script that logs its environment must not
// write one down.
var secretVars = struct {
	sync.Mutex
	names map[string]bool
}{names: map[string]bool{"MAILHAUL_SRC_PASSWORD": true, "MAILHAUL_DST_PASSWORD": true}}

// addSecretVar adds a variable that holds a password to secretVars.
func addSecretVar(name string) {
	secretVars.Lock()
	defer secretVars.Unlock()
	secretVars.names[name] = true
}

// childEnv is env without the variables of secretVars.
func childEnv(env []string) []string {
	secretVars.Lock()
	defer secretVars.Unlock()
	out := make([]string, 0, len(env))
	for _, kv := range env {
		name, _, _ := strings.Cut(kv, "=")
		if !secretVars.names[name] {
			out = append(out, kv)
		}
	}
	return out
}

// prefixWriter writes the (redacted) wire trace to stderr, one prefixed
// line per protocol line.
type prefixWriter struct {
	mu     sync.Mutex
	prefix string
	buf    []byte
}

func (w *prefixWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		os.Stderr.Write(append([]byte(w.prefix), w.buf[:i+1]...))
		w.buf = w.buf[i+1:]
	}
	return len(p), nil
}
