package imapconn

import (
	"bytes"
	"encoding/base64"
	"io"
	"strings"
	"sync"
	"time"
)

// redactor writes the wire trace: both directions of one connection, a
// line at a time, each prefixed "C: " (client to server) or "S: ", with
// credentials removed. It knows which bytes are credentials by direction
// and protocol state, never by the shape of a line (a password may begin
// with "+" or "*", contain spaces or quotes, or be sent as a literal):
//
//   - a client line "TAG LOGIN ..." or "TAG AUTHENTICATE MECH ..." is
//     written as "TAG LOGIN <redacted>" / "TAG AUTHENTICATE MECH
//     <redacted>", and every further byte the client sends (literals, SASL
//     responses) is redacted until the server's tagged reply to TAG;
//   - server lines pass;
//   - as a second line of defence, every known secret (the password, an
//     access token, and their base64 forms) is replaced in every line of
//     either direction.
//
// The connection wrapper (literalPlusConn) calls client and server with the
// cleartext bytes as they cross the wire.
type redactor struct {
	mu      sync.Mutex
	w       io.Writer
	cbuf    []byte // client bytes of an unfinished line
	sbuf    []byte
	authTag string // tag of the LOGIN/AUTHENTICATE in progress
	secrets []string
}

func newRedactor(w io.Writer, secrets ...string) *redactor {
	r := &redactor{w: w}
	for _, s := range secrets {
		r.addSecret(s)
	}
	return r
}

// addSecret adds a value that must never appear in the trace.
func (r *redactor) addSecret(s string) {
	if len(s) < 3 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.secrets = append(r.secrets, s, base64.StdEncoding.EncodeToString([]byte(s)))
}

// client traces bytes sent to the server.
func (r *redactor) client(p []byte) { r.feed(p, true) }

// server traces bytes received from the server.
func (r *redactor) server(p []byte) { r.feed(p, false) }

func (r *redactor) feed(p []byte, fromClient bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	buf := &r.sbuf
	if fromClient {
		buf = &r.cbuf
	}
	*buf = append(*buf, p...)
	for {
		i := bytes.IndexByte(*buf, '\n')
		if i < 0 {
			break
		}
		line := string((*buf)[:i+1])
		*buf = (*buf)[i+1:]
		r.emit(line, fromClient)
	}
	// An unfinished line is held back, a partial "TAG LOGIN ..." must not
	// leak; but a huge literal (a message body) without line ends is
	// written in pieces, except while credentials are being sent.
	if len(*buf) > 64<<10 && r.authTag == "" && !looksLikeAuth(*buf) {
		r.emit(string(*buf), fromClient)
		*buf = (*buf)[:0]
	}
}

func looksLikeAuth(b []byte) bool {
	u := strings.ToUpper(string(b[:min(len(b), 64)]))
	return strings.Contains(u, " LOGIN") || strings.Contains(u, " AUTHENTICATE")
}

func (r *redactor) emit(line string, fromClient bool) {
	prefix := "S: "
	if fromClient {
		prefix = "C: "
		line = r.filterClient(line)
	} else if r.authTag != "" && strings.HasPrefix(line, r.authTag+" ") {
		r.authTag = ""
	}
	for _, s := range r.secrets {
		line = strings.ReplaceAll(line, s, "<redacted>")
	}
	// The time of each line: where a run waits shows in the trace.
	prefix = time.Now().Format("15:04:05.000 ") + prefix
	if _, err := io.WriteString(r.w, prefix+line); err != nil {
		return // a broken trace must not break the session
	}
}

func (r *redactor) filterClient(line string) string {
	body := strings.TrimRight(line, "\r\n")
	eol := line[len(body):]
	if r.authTag != "" {
		return "<redacted>" + eol
	}
	f := strings.SplitN(body, " ", 4)
	if len(f) >= 2 {
		switch strings.ToUpper(f[1]) {
		case "LOGIN":
			r.authTag = f[0]
			return f[0] + " LOGIN <redacted>" + eol
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
