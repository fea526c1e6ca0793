package imapconn

import (
	"bytes"
	"io"
	"strings"
	"sync"
)

// redactor is the wire-trace writer: it passes the protocol through line by
// line but replaces credentials. Both directions go to one writer (go-imap's
// DebugWriter, or literalPlusConn, which traces the bytes on the wire after
// its rewriting), so the rules key on what the client sends:
//
//   - "TAG LOGIN user password" becomes "TAG LOGIN user <redacted>";
//   - "TAG AUTHENTICATE MECH initial-response" keeps only the mechanism;
//   - after either, every line until the tagged reply that is not a
//     server continuation ("+ ...") or untagged line ("* ...") is a SASL
//     response or a literal holding a secret, and is redacted.
type redactor struct {
	mu      sync.Mutex
	w       io.Writer
	buf     []byte
	authTag string // tag of the LOGIN/AUTHENTICATE in progress
}

func newRedactor(w io.Writer) *redactor { return &redactor{w: w} }

func (r *redactor) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.buf = append(r.buf, p...)
	for {
		i := bytes.IndexByte(r.buf, '\n')
		if i < 0 {
			break
		}
		line := string(r.buf[:i+1])
		r.buf = r.buf[i+1:]
		if _, err := io.WriteString(r.w, r.filter(line)); err != nil {
			return len(p), nil // a broken trace must not break the session
		}
	}
	// A line without newline is held back: a partial "TAG LOGIN ..." must
	// not leak. Protect memory from huge unterminated literals.
	if len(r.buf) > 64<<10 && r.authTag == "" && !looksLikeAuth(r.buf) {
		io.WriteString(r.w, string(r.buf))
		r.buf = r.buf[:0]
	}
	return len(p), nil
}

func looksLikeAuth(b []byte) bool {
	u := strings.ToUpper(string(b[:min(len(b), 64)]))
	return strings.Contains(u, " LOGIN") || strings.Contains(u, " AUTHENTICATE")
}

func (r *redactor) filter(line string) string {
	body := strings.TrimRight(line, "\r\n")
	eol := line[len(body):]
	if r.authTag != "" {
		if strings.HasPrefix(body, r.authTag+" ") {
			r.authTag = ""
			return line
		}
		if strings.HasPrefix(body, "+") || strings.HasPrefix(body, "* ") {
			return line
		}
		return "<redacted>" + eol
	}
	f := strings.SplitN(body, " ", 4)
	if len(f) >= 2 {
		switch strings.ToUpper(f[1]) {
		case "LOGIN":
			r.authTag = f[0]
			user := ""
			if len(f) >= 3 {
				user = f[2]
			}
			return f[0] + " LOGIN " + user + " <redacted>" + eol
		case "AUTHENTICATE":
			r.authTag = f[0]
			mech := ""
			if len(f) >= 3 {
				mech = f[2]
			}
			return f[0] + " AUTHENTICATE " + mech + " <redacted>" + eol
		}
	}
	return line
}
