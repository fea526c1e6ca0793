package imapconn

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"strings"
	"time"
)

// STARTTLS (RFC 3501 section 6.2.1), negotiated here rather than by
// go-imap's NewStartTLS: go-imap builds the TLS connection itself on top of
// the connection it is given, so a wrapper there sees only ciphertext. Done
// here, the cleartext stream inside TLS passes through the same wrapper as
// on imaps:// (literalPlusConn: LITERAL+ rewriting, the direction-aware
// redacting trace), and go-imap is handed what looks like an implicit-TLS
// connection that starts with a greeting.

// starttlsGreeting is the greeting go-imap reads on the TLS connection.
// It carries no capabilities, so go-imap asks for them again, as RFC 3501
// requires after STARTTLS.
const starttlsGreeting = "* OK mailhaul: TLS established\r\n"

// startTLS reads the server's greeting on raw, sends STARTTLS, waits for
// its tagged OK and performs the TLS handshake. It returns the TLS
// connection; trace, if not nil, sees the cleartext exchange. Errors: a
// NO/BAD reply is returned as *refusedError, others as they are.
func startTLS(ctx context.Context, raw net.Conn, cfg *tls.Config, trace *redactor) (net.Conn, error) {
	br := bufio.NewReader(raw)
	line := func() (string, error) {
		l, err := br.ReadString('\n')
		if trace != nil && l != "" {
			trace.server([]byte(l))
		}
		return l, err
	}
	greet, err := line()
	if err != nil {
		return nil, err
	}
	if err := checkGreeting(greet); err != nil {
		return nil, err
	}
	switch {
	case strings.HasPrefix(greet, "* OK"):
	case strings.HasPrefix(greet, "* PREAUTH"):
		return nil, &refusedError{"the server greets with PREAUTH, so it cannot start TLS: " + strings.TrimSpace(greet)}
	default:
		return nil, &refusedError{"greeting: " + strings.TrimSpace(greet)}
	}
	const cmd = "mh0 STARTTLS\r\n"
	if trace != nil {
		trace.client([]byte(cmd))
	}
	if _, err := raw.Write([]byte(cmd)); err != nil {
		return nil, err
	}
	for {
		l, err := line()
		if err != nil {
			return nil, err
		}
		if strings.HasPrefix(l, "* ") {
			continue
		}
		if !strings.HasPrefix(l, "mh0 ") {
			return nil, fmt.Errorf("unexpected reply to STARTTLS: %q", strings.TrimSpace(l))
		}
		if !strings.HasPrefix(strings.ToUpper(l), "MH0 OK") {
			return nil, &refusedError{strings.TrimSpace(l[4:])}
		}
		break
	}
	if br.Buffered() > 0 {
		return nil, fmt.Errorf("server sent data after accepting STARTTLS before the TLS handshake")
	}
	tc := tls.Client(raw, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		return nil, err
	}
	return &greetingConn{Conn: tc, greeting: []byte(starttlsGreeting)}, nil
}

// notIMAPError is a greeting that no IMAP server sends: the port is
// another service's (a POP3 server's "+OK", an SMTP server's "220").
type notIMAPError struct{ greeting string }

func (e *notIMAPError) Error() string {
	return fmt.Sprintf("not an IMAP server (greeting %q): check the port (IMAP is 143 with imap://, 993 with imaps://; POP3 is 110 and 995)", e.greeting)
}

// checkGreeting returns a *notIMAPError unless line can start an IMAP
// session (RFC 9051 7.1: an untagged OK, PREAUTH or BYE).
func checkGreeting(line string) error {
	l := strings.TrimRight(line, "\r\n")
	for _, p := range []string{"* OK", "* PREAUTH", "* BYE"} {
		if len(l) >= len(p) && strings.EqualFold(l[:len(p)], p) {
			return nil
		}
	}
	if len(l) > 80 {
		l = l[:80] + "..."
	}
	return &notIMAPError{l}
}

// plainGreeting reads the greeting line of a connection (after its TLS
// handshake, or without TLS) and returns a connection that replays it
// (and whatever came with it) to go-imap, after checking that it is an
// IMAP greeting.
func plainGreeting(raw net.Conn, trace *redactor) (net.Conn, error) {
	br := bufio.NewReader(raw)
	greet, err := br.ReadString('\n')
	if err != nil {
		return nil, err
	}
	if err := checkGreeting(greet); err != nil {
		if trace != nil {
			trace.server([]byte(greet))
		}
		return nil, err
	}
	rest, _ := br.Peek(br.Buffered())
	return &greetingConn{Conn: raw, greeting: append([]byte(greet), rest...)}, nil
}

// refusedError is a server's refusal of STARTTLS.
type refusedError struct{ reply string }

func (e *refusedError) Error() string { return "server refused STARTTLS: " + e.reply }

// greetingConn replays a greeting before the bytes of Conn.
type greetingConn struct {
	net.Conn
	greeting []byte
}

func (g *greetingConn) Read(p []byte) (int, error) {
	if len(g.greeting) > 0 {
		n := copy(p, g.greeting)
		g.greeting = g.greeting[n:]
		return n, nil
	}
	return g.Conn.Read(p)
}

// SetDeadline and friends reach the TLS connection (greetingConn only
// prepends bytes).
func (g *greetingConn) SetDeadline(t time.Time) error { return g.Conn.SetDeadline(t) }
