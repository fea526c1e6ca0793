package imapconn

import (
	"bytes"
	"net"
	"strconv"
	"sync"

	"github.com/emersion/go-imap/v2"
)

// BINARY APPEND (RFC 3516): a message that contains NUL bytes may only be
// sent as a literal8 ("~{N}"), and only to a server that advertises
// BINARY; in a plain literal a NUL is a protocol error, which Dovecot, for
// one, repairs silently by storing 0x80 instead. go-imap v2 beta.8 has no
// literal8 ("TODO: literal8 for BINARY" in imapclient/append.go), so:
//
//   - the sink adds Literal8Flag as the last flag of such an APPEND (a
//     flag name no server can hold: it never leaves this process);
//   - binaryConn, between imapclient and the rest of the connection,
//     buffers each command line (never literal bytes, which it passes
//     through by count), and in an APPEND line that carries the marker it
//     removes the marker and turns the final "{N}" into "~{N}".
//
// Dropping this file when go-imap gains literal8 is one deletion plus the
// sink's call.

// Literal8Flag marks an APPEND whose literal must go as a literal8.
const Literal8Flag = imap.Flag(`\X-Mailhaul-Literal8`)

var (
	literal8Marker = []byte(` ` + string(Literal8Flag))
	literal8Alone  = []byte(`(` + string(Literal8Flag) + `)`)
)

// binaryConn is the connection imapclient writes to (see above).
type binaryConn struct {
	net.Conn
	mu   sync.Mutex
	lit  int64  // literal bytes still to pass through
	line []byte // the command line being collected
	out  []byte

	// MultiAppends (multiappend.go): the command lines are rewritten
	// here, the completions in Read.
	multi multiState
	rmu   sync.Mutex
}

// Read passes the server's stream on (see multiState.read).
func (c *binaryConn) Read(p []byte) (int, error) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	return c.multi.read(c.Conn, p)
}

func (c *binaryConn) register(id uint64, ma *multiAppend) { c.multi.register(id, ma) }
func (c *binaryConn) forget(id uint64)                    { c.multi.forget(id) }

func (c *binaryConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := len(p)
	c.out = c.out[:0]
	for len(p) > 0 {
		if c.lit > 0 {
			k := int(min(c.lit, int64(len(p))))
			c.out = append(c.out, p[:k]...)
			c.lit -= int64(k)
			p = p[k:]
			continue
		}
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			c.line = append(c.line, p...)
			break
		}
		c.line = append(c.line, p[:i+1]...)
		p = p[i+1:]
		line := c.multi.rewriteMulti(c.rewrite(c.line))
		c.lit = literalAtEnd(line)
		c.out = append(c.out, line...)
		c.line = c.line[:0]
	}
	if len(c.out) > 0 {
		if _, err := c.Conn.Write(c.out); err != nil {
			return 0, err
		}
	}
	return n, nil
}

// rewrite strips the marker of an APPEND line and makes its literal a
// literal8; other lines are returned unchanged.
func (c *binaryConn) rewrite(line []byte) []byte {
	sp := bytes.IndexByte(line, ' ')
	if sp < 0 || !bytes.HasPrefix(bytes.ToUpper(line[sp+1:min(len(line), sp+8)]), []byte("APPEND ")) {
		return line
	}
	var out []byte
	switch {
	case bytes.Contains(line, literal8Marker): // after other flags
		out = bytes.Replace(line, literal8Marker, nil, 1)
	case bytes.Contains(line, literal8Alone): // the only flag
		out = bytes.Replace(line, literal8Alone, []byte("()"), 1)
	default:
		return line
	}
	if b := bytes.LastIndexByte(out, '{'); b >= 0 && literalAtEnd(out) >= 0 {
		out = append(out[:b], append([]byte{'~'}, out[b:]...)...)
	}
	return out
}

// literalAtEnd returns N if line ends with a literal header "{N}" or
// "{N+}" (with CRLF), else 0.
func literalAtEnd(line []byte) int64 {
	l := bytes.TrimRight(line, "\r\n")
	if len(l) < 3 || l[len(l)-1] != '}' {
		return 0
	}
	b := bytes.LastIndexByte(l, '{')
	if b < 0 {
		return 0
	}
	num := bytes.TrimSuffix(l[b+1:len(l)-1], []byte("+"))
	n, err := strconv.ParseInt(string(num), 10, 64)
	if err != nil || n < 0 {
		return 0
	}
	return n
}
