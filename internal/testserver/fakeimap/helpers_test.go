package fakeimap

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// start runs a server with user "u" (password "p").
func start(t *testing.T, o Options) *Server {
	t.Helper()
	s := Start(t, o)
	s.AddUser("u", "p")
	return s
}

// dial returns a logged-in imapclient for user "u".
func dial(t *testing.T, s *Server) *imapclient.Client {
	t.Helper()
	c, err := imapclient.DialInsecure(s.Addr(), nil)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Login("u", "p").Wait(); err != nil {
		t.Fatalf("login: %v", err)
	}
	return c
}

// appendMsg APPENDs body with imapclient.
func appendMsg(c *imapclient.Client, folder string, body []byte, o *imap.AppendOptions) (*imap.AppendData, error) {
	cmd := c.Append(folder, int64(len(body)), o)
	if _, err := cmd.Write(body); err != nil {
		cmd.Close()
		cmd.Wait()
		return nil, fmt.Errorf("write literal: %w", err)
	}
	if err := cmd.Close(); err != nil {
		cmd.Wait()
		return nil, fmt.Errorf("close literal: %w", err)
	}
	return cmd.Wait()
}

// fetchAll runs a UID FETCH of uids and collects the results.
func fetchAll(t *testing.T, c *imapclient.Client, uids imap.UIDSet, o *imap.FetchOptions) []*imapclient.FetchMessageBuffer {
	t.Helper()
	msgs, err := c.Fetch(uids, o).Collect()
	if err != nil {
		t.Fatalf("fetch %v: %v", uids, err)
	}
	return msgs
}

func msg(id, text string) []byte {
	return []byte("Message-ID: <" + id + ">\r\nSubject: " + text + "\r\n\r\n" + text + "\r\n")
}

// rawConn is a hand-driven IMAP connection, for what imapclient cannot
// show: exact bytes, LITERAL+, literals cut short.
type rawConn struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

func dialRaw(t *testing.T, s *Server) *rawConn {
	t.Helper()
	c, err := net.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	r := &rawConn{t: t, c: c, r: bufio.NewReader(c)}
	if l, err := r.line(); err != nil || !strings.HasPrefix(l, "* OK") {
		t.Fatalf("greeting %q %v", l, err)
	}
	return r
}

func (r *rawConn) send(s string) {
	r.t.Helper()
	if _, err := io.WriteString(r.c, s); err != nil {
		r.t.Fatalf("send: %v", err)
	}
}

// line reads one response line, literals included (as their bytes), with
// a 10 s deadline.
func (r *rawConn) line() (string, error) {
	r.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	var sb strings.Builder
	for {
		l, err := r.r.ReadString('\n')
		sb.WriteString(l)
		if err != nil {
			return sb.String(), err
		}
		n, _, ok := literalAtEnd([]byte(l))
		if !ok || strings.HasPrefix(l, "+") {
			return sb.String(), nil
		}
		buf := make([]byte, n)
		k, err := io.ReadFull(r.r, buf)
		sb.Write(buf[:k])
		if err != nil {
			return sb.String(), err
		}
	}
}

// until reads lines up to the tagged response of tag, which it returns
// with the lines before it.
func (r *rawConn) until(tag string) (string, []string) {
	r.t.Helper()
	var lines []string
	for {
		l, err := r.line()
		if err != nil {
			r.t.Fatalf("reading to %s: %q: %v (after %q)", tag, l, err, lines)
		}
		if strings.HasPrefix(l, tag+" ") {
			return strings.TrimRight(l, "\r\n"), lines
		}
		lines = append(lines, l)
	}
}

func (r *rawConn) login() {
	r.t.Helper()
	r.send("L LOGIN u p\r\n")
	if st, _ := r.until("L"); !strings.HasPrefix(st, "L OK") {
		r.t.Fatalf("login: %s", st)
	}
}

func (r *rawConn) expect(tag, prefix string) []string {
	r.t.Helper()
	st, lines := r.until(tag)
	if !strings.HasPrefix(st, tag+" "+prefix) {
		r.t.Fatalf("%s: got %q, want %q (untagged %q)", tag, st, prefix, lines)
	}
	return lines
}

// appendLiteral sends an APPEND with a non-synchronising literal.
func (r *rawConn) appendPlus(tag, folder string, body []byte) {
	r.send(tag + " APPEND " + folder + " {" + strconv.Itoa(len(body)) + "+}\r\n" + string(body) + "\r\n")
}
