package imapconn

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailhaul/mailhaul/internal/testserver"
	"github.com/mailhaul/mailhaul/migrate"
)

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestParseURL(t *testing.T) {
	e, err := ParseURL("imaps://alice@mail.example.org/Archive/2020")
	if err != nil {
		t.Fatal(err)
	}
	if !e.TLS || e.Port != "993" || e.User != "alice" || e.Folder != "Archive/2020" || e.String() != "imaps://alice@mail.example.org:993/Archive/2020" {
		t.Errorf("got %+v %s", e, e)
	}
	e, err = ParseURL("imap://bob%40example.org@[::1]:1143")
	if err != nil || e.User != "bob@example.org" || e.Port != "1143" || e.TLS {
		t.Errorf("got %+v, %v", e, err)
	}
	_, err = ParseURL("imaps://alice:hunter2@mail.example.org")
	if err == nil || strings.Contains(err.Error(), "hunter2") || !strings.Contains(err.Error(), "MAILHAUL_") {
		t.Errorf("password URL: %v", err)
	}
	if _, err := ParseURL("imaps://mail.example.org"); err == nil {
		t.Error("URL without user accepted")
	}
}

func TestRedactor(t *testing.T) {
	type step struct {
		client bool
		data   string
	}
	c := func(s string) step { return step{true, s} }
	sv := func(s string) step { return step{false, s} }
	secrets := []string{"s3cret-pw", "+Pässwörd-Carol", "* x y", "AHMzY3JldC1wdw==", "dXNlcj1zM2NyZXQtcHc="}
	steps := []step{
		sv("* OK ready\r\n"), c("T1 LOG"), c("IN alice \"s3cret-pw\"\r\n"), sv("T1 OK done\r\n"),
		// A non-ASCII password goes as a literal; its line begins with "+".
		c("T2 LOGIN {5}\r\n"), sv("+ OK\r\n"), c("alice {16}\r\n"), sv("+ OK\r\n"), c("+Pässwörd-Carol\r\n"), sv("T2 NO bad\r\n"),
		// One that looks like an untagged response.
		c("T6 LOGIN alice {5}\r\n"), sv("+ go\r\n"), c("* x y\r\n"), sv("T6 NO bad\r\n"),
		c("T3 AUTHENTICATE PLAIN AHMzY3JldC1wdw==\r\n"), sv("T3 OK\r\n"),
		c("T4 AUTHENTICATE XOAUTH2\r\n"), sv("+ \r\n"), c("dXNlcj1zM2NyZXQtcHc=\r\n"), sv("+ eyJzdGF0dXMiOiI0MDEifQ==\r\n"), c("\r\n"), sv("T4 NO failed\r\n"),
		c("T5 SELECT INBOX\r\n"), sv("T5 OK [READ-WRITE] done\r\n"),
	}
	var out bytes.Buffer
	r := newRedactor(&out)
	for _, st := range steps {
		if st.client {
			r.client([]byte(st.data))
		} else {
			r.server([]byte(st.data))
		}
	}
	got := out.String()
	for _, secret := range secrets {
		if strings.Contains(got, secret) {
			t.Errorf("trace leaks %q:\n%s", secret, got)
		}
	}
	for _, want := range []string{"C: T1 LOGIN <redacted>", "C: T3 AUTHENTICATE PLAIN <redacted>", "C: T5 SELECT INBOX", "S: T4 NO failed", "S: + OK", "S: T5 OK"} {
		if !strings.Contains(got, want) {
			t.Errorf("trace lacks %q:\n%s", want, got)
		}
	}
	// Known secrets are scrubbed in any direction and line.
	out.Reset()
	r = newRedactor(&out, "hunter2-long")
	r.server([]byte("* OK your password is hunter2-long\r\n"))
	r.client([]byte("T9 NOOP " + base64.StdEncoding.EncodeToString([]byte("hunter2-long")) + "\r\n"))
	if strings.Contains(out.String(), "hunter2") || strings.Contains(out.String(), base64.StdEncoding.EncodeToString([]byte("hunter2-long"))) {
		t.Errorf("known secret not scrubbed:\n%s", out.String())
	}
}

func TestDialDovecot(t *testing.T) {
	d := testserver.StartDovecot(t, testserver.WithUser("alice", "pw-alice-1"), testserver.WithMasterUser("admin", "pw-admin-1"))
	ctx := context.Background()
	host, port := splitAddr(t, d.IMAPSAddr)
	_, pport := splitAddr(t, d.IMAPAddr)
	base := Endpoint{TLS: true, Host: host, Port: port, User: "alice"}

	cases := []struct {
		name string
		cfg  Config
	}{
		{"imaps-login", Config{Endpoint: base, CAFile: d.CAFile, Password: "pw-alice-1", Auth: AuthLogin}},
		{"imaps-plain", Config{Endpoint: base, CAFile: d.CAFile, Password: "pw-alice-1", Auth: AuthPlain}},
		{"starttls-auto", Config{Endpoint: Endpoint{Host: host, Port: pport, User: "alice"}, CAFile: d.CAFile, Password: "pw-alice-1"}},
		{"plaintext", Config{Endpoint: Endpoint{Host: host, Port: pport, User: "alice"}, InsecurePlaintext: true, Password: "pw-alice-1"}},
		{"master-user", Config{Endpoint: base, CAFile: d.CAFile, AdminUser: "admin", Password: "pw-admin-1"}},
		{"skip-verify", Config{Endpoint: base, SkipVerify: true, Password: "pw-alice-1"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			trace := &syncBuf{}
			cfg := tc.cfg
			cfg.Trace = trace
			c, err := Dial(ctx, &cfg)
			if err != nil {
				t.Fatalf("dial: %v", err)
			}
			if _, err := c.Select(ctx, "INBOX", true); err != nil {
				t.Fatalf("examine: %v", err)
			}
			c.Close()
			tr := trace.String()
			if strings.Contains(tr, cfg.Password) {
				t.Errorf("password in trace:\n%s", tr)
			}
			if !strings.Contains(tr, "EXAMINE") {
				t.Errorf("trace incomplete:\n%s", tr)
			}
		})
	}

	t.Run("wrong-password", func(t *testing.T) {
		trace := &syncBuf{}
		_, err := Dial(ctx, &Config{Endpoint: base, CAFile: d.CAFile, Password: "wrong-pw-xyz", Trace: trace})
		if err == nil {
			t.Fatal("wrong password accepted")
		}
		msg := err.Error()
		if migrate.Classify(err) != migrate.Fatal || !strings.Contains(msg, d.IMAPSAddr) || !strings.Contains(msg, "alice") ||
			strings.Contains(msg, "wrong-pw-xyz") || strings.Contains(msg, "\n") {
			t.Errorf("error %q (class %v)", msg, migrate.Classify(err))
		}
		if strings.Contains(trace.String(), "wrong-pw-xyz") {
			t.Errorf("password in trace")
		}
	})
	t.Run("untrusted-cert", func(t *testing.T) {
		_, err := Dial(ctx, &Config{Endpoint: base, Password: "pw-alice-1"})
		if err == nil || migrate.Classify(err) != migrate.Fatal || !strings.Contains(err.Error(), "--ca-file") {
			t.Fatalf("self-signed certificate: %v", err)
		}
	})
	t.Run("cancel", func(t *testing.T) {
		c, err := Dial(ctx, &Config{Endpoint: base, CAFile: d.CAFile, Password: "pw-alice-1"})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		if err := c.Do(cctx, func() error { return c.Noop().Wait() }); err != context.Canceled {
			t.Fatalf("got %v", err)
		}
	})
}

func TestWatchdog(t *testing.T) {
	// A server that accepts, greets and then never answers.
	ln := newSilentServer(t)
	cfg := &Config{Endpoint: Endpoint{Host: "127.0.0.1", Port: ln, User: "u"}, InsecurePlaintext: true,
		Password: "p", IdleTimeout: 300 * time.Millisecond}
	start := time.Now()
	_, err := Dial(context.Background(), cfg)
	if err == nil || migrate.Classify(err) != migrate.Retry {
		t.Fatalf("got %v (class %v)", err, migrate.Classify(err))
	}
	if time.Since(start) > 5*time.Second {
		t.Fatalf("watchdog took %s", time.Since(start))
	}
}

// TestDialOAuth2 logs in with XOAUTH2 and OAUTHBEARER to a Dovecot whose
// oauth2 passdb asks the test's introspection endpoint about the token.
func TestDialOAuth2(t *testing.T) {
	o := testserver.StartOAuth2Server(t)
	d := testserver.StartDovecot(t, testserver.WithUser("alice", "pw-alice-1"), testserver.WithOAuth2(o.URL), testserver.WithoutAuthDelay())
	ctx := context.Background()
	host, port := splitAddr(t, d.IMAPSAddr)
	_, pport := splitAddr(t, d.IMAPAddr)
	good := o.Issue("alice")
	expired := o.Issue("alice")
	o.Expire(expired)

	for _, mech := range []string{AuthXOAUTH2, AuthOAuthBearer} {
		for _, ep := range []Endpoint{{TLS: true, Host: host, Port: port, User: "alice"}, {Host: host, Port: pport, User: "alice"}} {
			t.Run(mech+"/"+ep.String(), func(t *testing.T) {
				trace := &syncBuf{}
				calls := 0
				cfg := &Config{Endpoint: ep, CAFile: d.CAFile, Auth: mech, Trace: trace,
					Token: func(context.Context) (string, error) { calls++; return good, nil }}
				c, err := Dial(ctx, cfg)
				if err != nil {
					t.Fatalf("valid token: %v", err)
				}
				if _, err := c.Select(ctx, "INBOX", true); err != nil {
					t.Fatalf("examine: %v", err)
				}
				c.Close()
				if calls != 1 {
					t.Errorf("token source called %d times", calls)
				}
				tr := trace.String()
				if !strings.Contains(tr, "AUTHENTICATE "+strings.ToUpper(mech)+" <redacted>") || !strings.Contains(tr, "EXAMINE") {
					t.Errorf("trace incomplete:\n%s", tr)
				}
				if leaks(tr, good) {
					t.Errorf("token in trace:\n%s", tr)
				}
			})
		}
		t.Run(mech+"/expired", func(t *testing.T) {
			trace := &syncBuf{}
			_, err := Dial(ctx, &Config{Endpoint: Endpoint{TLS: true, Host: host, Port: port, User: "alice"}, CAFile: d.CAFile,
				Auth: mech, Trace: trace, Token: func(context.Context) (string, error) { return expired, nil }})
			if err == nil {
				t.Fatal("expired token accepted")
			}
			msg := err.Error()
			t.Logf("error: %s", msg)
			if migrate.Classify(err) != migrate.Fatal || !strings.Contains(msg, d.IMAPSAddr) || !strings.Contains(msg, "alice") ||
				!strings.Contains(msg, mech) || strings.Contains(msg, "\n") {
				t.Errorf("error %q (class %v)", msg, migrate.Classify(err))
			}
			// The reason is the refusal, not a protocol error.
			if strings.Contains(msg, "BAD") || strings.Contains(strings.ToLower(msg), "base64") {
				t.Errorf("error is a protocol error, not the refusal: %q", msg)
			}
			if leaks(msg, expired) || leaks(trace.String(), expired) {
				t.Errorf("token in error or trace: %q\n%s", msg, trace.String())
			}
		})
	}
	if known, _ := o.Requests(); known != 6 {
		t.Errorf("introspection endpoint saw %d requests for issued tokens, want 6", known)
	}

	t.Run("token-source-fails", func(t *testing.T) {
		_, err := Dial(ctx, &Config{Endpoint: Endpoint{TLS: true, Host: host, Port: port, User: "alice"}, CAFile: d.CAFile,
			Auth: AuthXOAUTH2, Token: func(context.Context) (string, error) { return "", errors.New("token command failed") }})
		if err == nil || migrate.Classify(err) != migrate.Fatal || !strings.Contains(err.Error(), "token command failed") || !strings.Contains(err.Error(), "alice") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("no-token-source", func(t *testing.T) {
		_, err := Dial(ctx, &Config{Endpoint: Endpoint{TLS: true, Host: host, Port: port, User: "alice"}, CAFile: d.CAFile, Auth: AuthOAuthBearer})
		if err == nil || migrate.Classify(err) != migrate.Fatal {
			t.Fatalf("got %v", err)
		}
	})
	// Passwords still work on the same server.
	c, err := Dial(ctx, &Config{Endpoint: Endpoint{TLS: true, Host: host, Port: port, User: "alice"}, CAFile: d.CAFile, Password: "pw-alice-1"})
	if err != nil {
		t.Fatalf("password login beside oauth2: %v", err)
	}
	c.Close()
}

// leaks reports whether s holds secret, as such or base64-encoded in a
// word (SASL messages are base64 on the wire).
func leaks(s, secret string) bool {
	if strings.Contains(s, secret) {
		return true
	}
	for _, w := range strings.Fields(s) {
		if b, err := base64.StdEncoding.DecodeString(w); err == nil && strings.Contains(string(b), secret) {
			return true
		}
	}
	return false
}

// deadlineConn records deadlines set on it.
type deadlineConn struct {
	net.Conn
	set int
}

func (d *deadlineConn) SetDeadline(time.Time) error      { d.set++; return nil }
func (d *deadlineConn) SetReadDeadline(time.Time) error  { d.set++; return nil }
func (d *deadlineConn) SetWriteDeadline(time.Time) error { d.set++; return nil }

// TestNoDeadlines: the deadlines go-imap sets (30 s per response, 5
// minutes per literal) never reach the connection.
func TestNoDeadlines(t *testing.T) {
	d := &deadlineConn{}
	nd := noDeadlines{d}
	nd.SetDeadline(time.Now())
	nd.SetReadDeadline(time.Now())
	nd.SetWriteDeadline(time.Now())
	if d.set != 0 {
		t.Fatalf("%d deadlines passed through", d.set)
	}
}

// TestDialWrongPort: the usual mistakes of a URL's scheme and port each
// end in an error that says what the port is and what to use, and those
// that cannot succeed on a retry are fatal: imap:// (STARTTLS or
// plaintext) on a POP3 port, imaps:// on a POP3S port, imaps:// on the
// plaintext IMAP port; imap:// on the TLS port, where the server waits
// for a TLS handshake as the client waits for a greeting, is found out by
// a TLS probe (internal/tlsprobe) within seconds, not at the dial timeout.
func TestDialWrongPort(t *testing.T) {
	d := testserver.StartDovecot(t, testserver.WithUser("alice", "pw-alice-1"))
	host, imapPort := splitAddr(t, d.IMAPAddr)
	_, imapsPort := splitAddr(t, d.IMAPSAddr)
	_, pop3Port := splitAddr(t, d.POP3Addr)
	_, pop3sPort := splitAddr(t, d.POP3SAddr)
	ep := func(tls bool, port string) Endpoint { return Endpoint{TLS: tls, Host: host, Port: port, User: "alice"} }
	for _, c := range []struct {
		name  string
		cfg   Config
		want  string
		fatal bool
	}{
		{"imap-on-pop3", Config{Endpoint: ep(false, pop3Port), CAFile: d.CAFile}, "not an IMAP server (greeting \"+OK", true},
		{"plaintext-on-pop3", Config{Endpoint: ep(false, pop3Port), InsecurePlaintext: true}, "not an IMAP server (greeting \"+OK", true},
		{"imaps-on-pop3s", Config{Endpoint: ep(true, pop3sPort), CAFile: d.CAFile}, "not an IMAP server (greeting \"+OK", true},
		{"imaps-on-imap", Config{Endpoint: ep(true, imapPort), CAFile: d.CAFile}, "does not speak TLS on this port (it answered \"* OK ", true},
		// The dial timeout is the default 30 s: the probe answers first.
		{"imap-on-imaps", Config{Endpoint: ep(false, imapsPort), CAFile: d.CAFile}, "answers a TLS handshake on this port: use imaps://", true},
		{"plaintext-on-imaps", Config{Endpoint: ep(false, imapsPort), InsecurePlaintext: true}, "answers a TLS handshake on this port: use imaps://", true},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := c.cfg
			cfg.Password = "pw-alice-1"
			start := time.Now()
			conn, err := Dial(context.Background(), &cfg)
			if err == nil {
				conn.Close()
				t.Fatal("connected")
			}
			if took := time.Since(start); took > 15*time.Second {
				t.Errorf("took %v to say so", took)
			}
			if !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), cfg.Addr()) {
				t.Errorf("error %q, want one naming %s with %q", err, cfg.Addr(), c.want)
			}
			if fatal := migrate.Classify(err) == migrate.Fatal; fatal != c.fatal {
				t.Errorf("fatal %v, want %v (%v)", fatal, c.fatal, err)
			}
		})
	}
}

// TestDialSilentServer: a server that accepts and says nothing (not TLS
// either) is waited for until the dial timeout, and that is retryable: the
// probe concludes only on a TLS handshake.
func TestDialSilentServer(t *testing.T) {
	addr := serveLocal(t, func(c net.Conn) {
		defer c.Close()
		io.Copy(io.Discard, c)
	})
	host, port := splitAddr(t, addr)
	for _, plain := range []bool{false, true} {
		cfg := Config{Endpoint: Endpoint{Host: host, Port: port, User: "alice"}, Password: "pw", InsecurePlaintext: plain, DialTimeout: 3 * time.Second}
		start := time.Now()
		conn, err := Dial(context.Background(), &cfg)
		if err == nil {
			conn.Close()
			t.Fatal("connected")
		}
		if !strings.Contains(err.Error(), "no IMAP greeting within 3s") || migrate.Classify(err) != migrate.Retry || time.Since(start) < 3*time.Second {
			t.Errorf("plaintext %v: %v (%v, after %v), want the retryable timeout at 3s", plain, err, migrate.Classify(err), time.Since(start))
		}
	}
}
