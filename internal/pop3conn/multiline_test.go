package pop3conn

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	pop3 "github.com/knadh/go-pop3"
)

// stuff is the server side of RFC 1939 section 3: a "." at the start of a
// line is doubled, the body gets a final CRLF if it has no line end, and
// the terminator follows.
func stuff(msg []byte) []byte {
	var b bytes.Buffer
	bol := true
	for _, c := range msg {
		if bol && c == '.' {
			b.WriteByte('.')
		}
		b.WriteByte(c)
		bol = c == '\n'
	}
	if len(msg) > 0 && msg[len(msg)-1] != '\n' {
		b.WriteString("\r\n")
	}
	b.WriteString(".\r\n")
	return b.Bytes()
}

// served is what a reader must return for msg: msg, plus the CRLF the
// server adds when it does not end with a line end.
func served(msg []byte) []byte {
	if len(msg) > 0 && msg[len(msg)-1] != '\n' {
		return append(append([]byte{}, msg...), "\r\n"...)
	}
	return msg
}

// readChunks reads d to EOF with reads of size n (small sizes exercise the
// state machine across Read calls).
func readChunks(d *DotReader, n int) ([]byte, error) {
	var out []byte
	buf := make([]byte, n)
	for {
		m, err := d.Read(buf)
		out = append(out, buf[:m]...)
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		if m == 0 {
			return out, errors.New("Read returned 0, nil")
		}
	}
}

func TestDotReader(t *testing.T) {
	long := strings.Repeat("x", 10000)
	cases := map[string]struct{ wire, want string }{
		"empty":             {".\r\n", ""},
		"one line":          {"hello\r\n.\r\n", "hello\r\n"},
		"stuffed":           {"..hidden\r\n.\r\n", ".hidden\r\n"},
		"lone dot":          {"a\r\n..\r\nb\r\n.\r\n", "a\r\n.\r\nb\r\n"},
		"dot dot":           {"...\r\n.\r\n", "..\r\n"},
		"dot mid-line":      {"a.b\r\n.\r\n", "a.b\r\n"},
		"long line":         {long + "\r\n.\r\n", long + "\r\n"},
		"bare LF kept":      {"a\nb\r\n.\r\n", "a\nb\r\n"},
		"bare LF server":    {"a\n..b\n.\n", "a\n.b\n"},
		"CR only kept":      {"a\rb\r\n.\r\n", "a\rb\r\n"},
		"stuffed CR":        {".\r\r\n.\r\n", "\r\r\n"},
		"stuffed dot CR x":  {".\rx\r\n.\r\n", "\rx\r\n"},
		"no stuffing fixup": {".x\r\n.\r\n", "x\r\n"},
		"empty lines":       {"\r\n\r\n.\r\n", "\r\n\r\n"},
		"utf8 bom kept":     {"\xef\xbb\xbfSubject: x\r\n.\r\n", "\xef\xbb\xbfSubject: x\r\n"},
		"nul kept":          {"a\x00b\r\n.\r\n", "a\x00b\r\n"},
	}
	for name, tc := range cases {
		for _, size := range []int{1, 2, 3, 7, 4096} {
			br := bufio.NewReaderSize(strings.NewReader(tc.wire+"+OK next\r\n"), 16)
			got, err := readChunks(NewDotReader(br), size)
			if err != nil || string(got) != tc.want {
				t.Errorf("%s (reads of %d): got %q, %v; want %q", name, size, got, err, tc.want)
				continue
			}
			rest, _ := io.ReadAll(br)
			if string(rest) != "+OK next\r\n" {
				t.Errorf("%s: read past the terminator, left %q", name, rest)
			}
		}
	}
}

func TestDotReaderTruncated(t *testing.T) {
	for _, wire := range []string{"", "abc", "abc\r\n", "abc\r\n.", "abc\r\n.\r", "abc\r\n..\r\n"} {
		_, err := io.ReadAll(NewDotReader(bufio.NewReader(strings.NewReader(wire))))
		if !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("%q: err %v, want unexpected EOF", wire, err)
		}
	}
}

// TestDotReaderBig streams a 40 MB body with a stuffed line every 1000
// lines: the bytes read are the unstuffed ones, whatever the chunking.
func TestDotReaderBig(t *testing.T) {
	line := []byte(strings.Repeat("0123456789", 7) + "\r\n")
	const n = 40 << 20 / 72
	want := sha256.New()
	pr, pw := io.Pipe()
	go func() {
		bw := bufio.NewWriter(pw)
		for i := 0; i < n; i++ {
			if i%1000 == 0 {
				bw.WriteString("..dot line\r\n")
				want.Write([]byte(".dot line\r\n"))
			}
			bw.Write(line)
			want.Write(line)
		}
		bw.WriteString(".\r\n")
		bw.Flush()
		pw.Close()
	}()
	got := sha256.New()
	if _, err := io.Copy(got, NewDotReader(bufio.NewReaderSize(pr, 64<<10))); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Sum(nil), want.Sum(nil)) {
		t.Fatal("40 MB body read back differs")
	}
}

// goPOP3ReadAll decodes wire with github.com/knadh/go-pop3's multi-line
// reader, the reference implementation.
func goPOP3ReadAll(t *testing.T, wire []byte) ([]byte, error) {
	cli, srv := net.Pipe()
	go func() {
		srv.Write([]byte("+OK hi\r\n"))
		srv.Write(wire)
		srv.Close()
	}()
	defer cli.Close()
	cli.SetDeadline(time.Now().Add(10 * time.Second))
	c, err := pop3.New(pop3.Opt{Host: "x", Port: 1, Dialer: pipeDialer{cli}}).NewConn()
	if err != nil {
		return nil, err
	}
	b, err := c.ReadAll()
	if err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

type pipeDialer struct{ c net.Conn }

func (p pipeDialer) Dial(string, string) (net.Conn, error) { return p.c, nil }

func crlfOnly(b []byte) bool {
	for i, c := range b {
		if c == '\n' && (i == 0 || b[i-1] != '\r') {
			return false
		}
	}
	return true
}

// FuzzDotReader checks, for any message: (1) what a server sends for it
// (stuffed, terminated) reads back as the message, with reads of any size
// and a reader buffer of 16 bytes, and nothing after the terminator is
// consumed; (2) for CRLF-only messages the result is what go-pop3's
// ReadAll returns; (3) any byte string read as a reply never makes the
// reader return more bytes than it consumed, panic, or read past a
// terminator.
func FuzzDotReader(f *testing.F) {
	for _, s := range []string{"", "a", "a\r\n", ".", "..", ".\r\n", "x\r\n.\r\ny", ".\r\r\n", "a\nb\n.c\n", "\r\n.\r\n", "\r.\n", strings.Repeat("y", 300) + "\r\n.x"} {
		f.Add([]byte(s), uint8(3))
	}
	f.Fuzz(func(t *testing.T, msg []byte, chunk uint8) {
		wire := stuff(msg)
		size := int(chunk%9) + 1
		br := bufio.NewReaderSize(bytes.NewReader(append(append([]byte{}, wire...), "+OK next\r\n"...)), 16)
		got, err := readChunks(NewDotReader(br), size)
		if err != nil || !bytes.Equal(got, served(msg)) {
			t.Fatalf("round trip of %q: got %q, %v", msg, got, err)
		}
		if rest, _ := io.ReadAll(br); string(rest) != "+OK next\r\n" {
			t.Fatalf("read past the terminator of %q: left %q", msg, rest)
		}
		if crlfOnly(served(msg)) && len(msg) < 4096 {
			ref, err := goPOP3ReadAll(t, wire)
			if err != nil || !bytes.Equal(ref, got) {
				t.Fatalf("%q: go-pop3 read %q (%v), we read %q", msg, ref, err, got)
			}
		}
		// The message bytes as a reply of their own.
		br = bufio.NewReaderSize(bytes.NewReader(msg), 16)
		d := NewDotReader(br)
		out, err := readChunks(d, size)
		consumed := len(msg) - br.Buffered()
		if rest, _ := io.ReadAll(br); len(rest) > 0 {
			consumed = len(msg) - len(rest)
		}
		if len(out) > consumed {
			t.Fatalf("%q: returned %d bytes from %d consumed", msg, len(out), consumed)
		}
		if err == nil && !d.Done() {
			t.Fatalf("%q: EOF without terminator", msg)
		}
		if d.Done() {
			// The consumed prefix ends with the terminator line.
			pre := msg[:consumed]
			if !bytes.HasSuffix(pre, []byte("\n")) || !(bytes.HasSuffix(pre, []byte(".\r\n")) || bytes.HasSuffix(pre, []byte(".\n"))) {
				t.Fatalf("%q: done after %q", msg, pre)
			}
		}
	})
}
