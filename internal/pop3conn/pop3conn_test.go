package pop3conn

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	pop3 "github.com/knadh/go-pop3"

	"github.com/mailhaul/mailhaul/internal/testserver"
	"github.com/mailhaul/mailhaul/migrate"
)

func endpointOf(t *testing.T, addr, user string, tls bool) Endpoint {
	t.Helper()
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	return Endpoint{TLS: tls, Host: host, Port: port, User: user}
}

func TestParseURL(t *testing.T) {
	for in, want := range map[string]string{
		"pop3s://alice@mail.example.org":          "pop3s://alice@mail.example.org:995",
		"pop3://alice@mail.example.org":           "pop3://alice@mail.example.org:110",
		"pop3s://me@example.com@outlook.com:1995": "pop3s://me@example.com@outlook.com:1995",
		"POP3S://bob@[::1]/INBOX":                 "pop3s://bob@[::1]:995",
	} {
		e, err := ParseURL(in)
		if err != nil || e.String() != want {
			t.Errorf("ParseURL(%q) = %q, %v; want %q", in, e, err, want)
		}
	}
	for in, msg := range map[string]string{
		"pop3s://alice:hunter2@mail.example.org": "password in the URL is refused",
		"pop3s://mail.example.org":               "no user",
		"imap://alice@mail.example.org":          "want pop3 or pop3s",
		"pop3s://alice@mail.example.org/Sent":    "single mailbox",
	} {
		_, err := ParseURL(in)
		if err == nil || !strings.Contains(err.Error(), msg) || strings.Contains(err.Error(), "hunter2") {
			t.Errorf("ParseURL(%q) = %v, want an error about %q", in, err, msg)
		}
	}
}

// seedBodies are stored in the Dovecot maildrop; servedBodies is what POP3
// serves for them (CRLF line ends, a final CRLF added).
var seedBodies = [][]byte{
	[]byte("Subject: crlf\r\nMessage-ID: <1@x>\r\n\r\nline\r\n.leading dot\r\n.\r\n..\r\nend\r\n"),
	[]byte("Subject: bare lf\nMessage-ID: <2@x>\n\nbare\n.dot\nno final line end"),
	append([]byte("Subject: long\r\n\r\n"), append(bytes.Repeat([]byte("z"), 10000), "\r\n"...)...),
}

var servedBodies = []string{
	"Subject: crlf\r\nMessage-ID: <1@x>\r\n\r\nline\r\n.leading dot\r\n.\r\n..\r\nend\r\n",
	"Subject: bare lf\r\nMessage-ID: <2@x>\r\n\r\nbare\r\n.dot\r\nno final line end\r\n",
	"Subject: long\r\n\r\n" + strings.Repeat("z", 10000) + "\r\n",
}

func TestDovecot(t *testing.T) {
	d := testserver.StartDovecot(t, testserver.WithUser("alice", "Al1ce-pw-77"), testserver.WithMasterUser("admin", "Adm1n-pw-33"), testserver.WithoutAuthDelay())
	d.SeedMaildir(t, "alice", "", seedBodies, nil)
	ctx := context.Background()
	cases := []struct {
		name string
		cfg  Config
	}{
		{"pop3s-auto", Config{Endpoint: endpointOf(t, d.POP3SAddr, "alice", true), CAFile: d.CAFile, Password: "Al1ce-pw-77"}},
		{"stls-user", Config{Endpoint: endpointOf(t, d.POP3Addr, "alice", false), CAFile: d.CAFile, Password: "Al1ce-pw-77", Auth: AuthUser}},
		{"plaintext-plain", Config{Endpoint: endpointOf(t, d.POP3Addr, "alice", false), InsecurePlaintext: true, Password: "Al1ce-pw-77", Auth: AuthPlain}},
		{"admin", Config{Endpoint: endpointOf(t, d.POP3SAddr, "alice", true), CAFile: d.CAFile, AdminUser: "admin", Password: "Adm1n-pw-33"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var trace bytes.Buffer
			cfg := tc.cfg
			cfg.Trace = &trace
			c, err := Dial(ctx, &cfg)
			if err != nil {
				t.Fatal(err)
			}
			if !c.Pipelining() || !c.Caps().Has("UIDL") {
				t.Errorf("caps after login: %v", c.Caps())
			}
			n, _, err := c.Stat(ctx)
			if err != nil || n != len(seedBodies) {
				t.Fatalf("STAT: %d, %v", n, err)
			}
			list, err := c.List(ctx)
			if err != nil || len(list) != n {
				t.Fatalf("LIST: %v, %v", list, err)
			}
			uidl, err := c.UIDL(ctx)
			if err != nil || len(uidl) != n || uidl[0].UID == "" {
				t.Fatalf("UIDL: %v, %v", uidl, err)
			}
			for i, e := range list {
				var b bytes.Buffer
				got, err := c.Retr(ctx, e.Num, &b)
				if err != nil || b.String() != servedBodies[i] || got != int64(b.Len()) {
					t.Errorf("RETR %d: %q, %v; want %q", e.Num, b.String(), err, servedBodies[i])
				}
			}
			var hdr bytes.Buffer
			if _, err := c.Top(ctx, 1, 0, &hdr); err != nil || hdr.String() != "Subject: crlf\r\nMessage-ID: <1@x>\r\n\r\n" {
				t.Errorf("TOP 1 0: %q, %v", hdr.String(), err)
			}
			if err := c.Noop(ctx); err != nil {
				t.Error(err)
			}
			c.Close()
			tr := trace.String()
			if strings.Contains(tr, cfg.Password) || leaksBase64(tr, cfg.Password) {
				t.Errorf("password in the trace:\n%s", tr)
			}
			switch tc.name {
			case "stls-user":
				if !strings.Contains(tr, "C: STLS") || !strings.Contains(tr, "C: PASS <redacted>") {
					t.Errorf("trace:\n%s", tr)
				}
			case "plaintext-plain":
				if strings.Contains(tr, "STLS\r\nS: +OK") || !strings.Contains(tr, "C: AUTH PLAIN\r\nS: + \r\nC: <redacted>") {
					t.Errorf("trace:\n%s", tr)
				}
			}
		})
	}
	t.Run("go-pop3-agrees", func(t *testing.T) {
		// go-pop3 as an independent client (it converts line ends to
		// CRLF, which Dovecot sends anyway).
		cl := pop3.New(pop3.Opt{Host: "127.0.0.1", Port: 1, Dialer: tlsDialer{d.POP3SAddr, d.TLSConfig()}})
		pc, err := cl.NewConn()
		if err != nil {
			t.Fatal(err)
		}
		defer pc.Quit()
		if err := pc.Auth("alice", "Al1ce-pw-77"); err != nil {
			t.Fatal(err)
		}
		for i := range seedBodies {
			b, err := pc.RetrRaw(i + 1)
			if err != nil || b.String() != servedBodies[i] {
				t.Errorf("go-pop3 RETR %d = %q, %v", i+1, b, err)
			}
		}
	})
	t.Run("wrong-password", func(t *testing.T) {
		cfg := Config{Endpoint: endpointOf(t, d.POP3SAddr, "alice", true), CAFile: d.CAFile, Password: "wrong-pw-4711"}
		_, err := Dial(ctx, &cfg)
		if err == nil || migrate.Classify(err) != migrate.Fatal || !strings.Contains(err.Error(), "alice") ||
			!strings.Contains(err.Error(), d.POP3SAddr) || !strings.Contains(err.Error(), "[AUTH]") || strings.Contains(err.Error(), "wrong-pw-4711") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("untrusted-certificate", func(t *testing.T) {
		cfg := Config{Endpoint: endpointOf(t, d.POP3SAddr, "alice", true), Password: "Al1ce-pw-77"}
		_, err := Dial(ctx, &cfg)
		if err == nil || migrate.Classify(err) != migrate.Fatal || !strings.Contains(err.Error(), "--ca-file") {
			t.Fatalf("got %v", err)
		}
		cfg.SkipVerify = true
		c, err := Dial(ctx, &cfg)
		if err != nil {
			t.Fatalf("--tls-skip-verify: %v", err)
		}
		c.Close()
	})
}

type tlsDialer struct {
	addr string
	cfg  *tls.Config
}

func (d tlsDialer) Dial(string, string) (net.Conn, error) { return tls.Dial("tcp", d.addr, d.cfg) }

func leaksBase64(s, secret string) bool {
	for _, w := range strings.Fields(s) {
		if b, err := base64.StdEncoding.DecodeString(w); err == nil && strings.Contains(string(b), secret) {
			return true
		}
	}
	return false
}

func TestDovecotOAuth2(t *testing.T) {
	o := testserver.StartOAuth2Server(t)
	d := testserver.StartDovecot(t, testserver.WithUser("alice", "Al1ce-pw-77"), testserver.WithOAuth2(o.URL), testserver.WithoutAuthDelay())
	tok := o.Issue("alice")
	for _, mech := range []string{AuthXOAUTH2, AuthOAuthBearer} {
		t.Run(mech, func(t *testing.T) {
			var trace bytes.Buffer
			cfg := Config{Endpoint: endpointOf(t, d.POP3SAddr, "alice", true), CAFile: d.CAFile, Auth: mech, Trace: &trace,
				Token: func(context.Context) (string, error) { return tok, nil }}
			c, err := Dial(context.Background(), &cfg)
			if err != nil {
				t.Fatal(err)
			}
			c.Close()
			if strings.Contains(trace.String(), tok) || leaksBase64(trace.String(), tok) {
				t.Errorf("token in the trace:\n%s", trace.String())
			}
			bad := o.Issue("alice")
			o.Expire(bad)
			cfg.Token = func(context.Context) (string, error) { return bad, nil }
			_, err = Dial(context.Background(), &cfg)
			if err == nil || migrate.Classify(err) != migrate.Fatal || !strings.Contains(err.Error(), "alice") {
				t.Fatalf("expired token: %v", err)
			}
		})
	}
}

func fakeMsgs(n int) []testserver.FakeMessage {
	var out []testserver.FakeMessage
	for i := 0; i < n; i++ {
		out = append(out, testserver.FakeMessage{UIDL: fmt.Sprintf("uid-%03d", i),
			Body: []byte(fmt.Sprintf("Subject: %d\r\n\r\n.%d\r\n%s\r\n", i, i, strings.Repeat("b", i*37)))})
	}
	return out
}

func fakeCfg(t *testing.T, f *testserver.FakePOP3) *Config {
	return &Config{Endpoint: endpointOf(t, f.Addr, "alice", false), InsecurePlaintext: true, Password: "secret"}
}

func TestFakeXOAUTH2TwoStep(t *testing.T) {
	f := testserver.StartFakePOP3(t, testserver.FakePOP3Options{Token: "good-token"}, fakeMsgs(1))
	cfg := fakeCfg(t, f)
	cfg.Auth = AuthXOAUTH2
	cfg.Token = func(context.Context) (string, error) { return "good-token", nil }
	c, err := Dial(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	cfg.Token = func(context.Context) (string, error) { return "stale-token", nil }
	_, err = Dial(context.Background(), cfg)
	if err == nil || migrate.Classify(err) != migrate.Fatal || !strings.Contains(err.Error(), "status 401") || strings.Contains(err.Error(), "stale-token") {
		t.Fatalf("refused token: %v", err)
	}
}

func TestFakeInUse(t *testing.T) {
	f := testserver.StartFakePOP3(t, testserver.FakePOP3Options{}, fakeMsgs(1))
	f.InUse(1)
	_, err := Dial(context.Background(), fakeCfg(t, f))
	if !InUse(err) || migrate.Classify(err) != migrate.Retry {
		t.Fatalf("got %v (in use %v, class %v)", err, InUse(err), migrate.Classify(err))
	}
	c, err := Dial(context.Background(), fakeCfg(t, f))
	if err != nil {
		t.Fatal(err)
	}
	// A second session on the same maildrop is refused while one is open.
	if _, err := Dial(context.Background(), fakeCfg(t, f)); !InUse(err) {
		t.Errorf("second session: %v", err)
	}
	c.Close()
}

// scriptServer accepts one connection, greets, answers CAPA (caps), USER
// and PASS, then hands the connection to fn.
func scriptServer(t *testing.T, caps []string, fn func(r *bufio.Reader, w *bufio.Writer)) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { ln.Close(); <-done })
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(20 * time.Second))
		r, w := bufio.NewReader(c), bufio.NewWriter(c)
		fmt.Fprintf(w, "+OK hi\r\n")
		w.Flush()
		for i := 0; i < 4; i++ {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			if strings.HasPrefix(line, "CAPA") {
				fmt.Fprintf(w, "+OK\r\n%s.\r\n", strings.Join(append(caps, ""), "\r\n"))
			} else {
				fmt.Fprintf(w, "+OK\r\n")
			}
			w.Flush()
		}
		fn(r, w)
	}()
	return ln.Addr().String()
}

// TestPipelinedRetr: with PIPELINING, five goroutines' RETRs are all on
// the wire before the first reply. The server reads all five commands
// before answering any, so a client that waited for replies would hang
// (and fail on the deadline).
func TestPipelinedRetr(t *testing.T) {
	serverErr := make(chan error, 1)
	addr := scriptServer(t, []string{"PIPELINING", "UIDL"}, func(r *bufio.Reader, w *bufio.Writer) {
		var nums []string
		for len(nums) < 5 {
			line, err := r.ReadString('\n')
			if err != nil {
				serverErr <- fmt.Errorf("after %d commands: %v", len(nums), err)
				return
			}
			nums = append(nums, strings.TrimSpace(strings.TrimPrefix(line, "RETR ")))
		}
		for _, n := range nums {
			fmt.Fprintf(w, "+OK\r\nSubject: %s\r\n\r\n..%s\r\n.\r\n", n, n)
		}
		w.Flush()
		serverErr <- nil
		r.ReadString('\n') // QUIT
		fmt.Fprintf(w, "+OK\r\n")
		w.Flush()
	})
	c, err := Dial(context.Background(), &Config{Endpoint: endpointOf(t, addr, "u", false), InsecurePlaintext: true, Password: "p", IdleTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make([]error, 5)
	for i := 1; i <= 5; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var b bytes.Buffer
			_, err := c.Retr(context.Background(), i, &b)
			if err == nil && b.String() != fmt.Sprintf("Subject: %d\r\n\r\n.%d\r\n", i, i) {
				err = fmt.Errorf("RETR %d got %q", i, b.String())
			}
			errs[i-1] = err
		}()
	}
	wg.Wait()
	if err := <-serverErr; err != nil {
		t.Fatalf("server: %v", err)
	}
	for _, err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	c.Close()
}

// TestNoPipelining: without PIPELINING in CAPA, concurrent callers and
// Batch still get their replies, one command at a time.
func TestNoPipelining(t *testing.T) {
	msgs := fakeMsgs(40)
	f := testserver.StartFakePOP3(t, testserver.FakePOP3Options{NoPipelining: true}, msgs)
	c, err := Dial(context.Background(), fakeCfg(t, f))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.Pipelining() {
		t.Fatal("pipelining without PIPELINING")
	}
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := g; i < len(msgs); i += 8 {
				var b bytes.Buffer
				if _, err := c.Retr(context.Background(), i+1, &b); err != nil || b.String() != string(msgs[i].Body) {
					t.Errorf("RETR %d: %q, %v", i+1, b.String(), err)
				}
			}
		}()
	}
	wg.Wait()
	var tops []string
	err = c.Batch(context.Background(), len(msgs), func(i int) Command {
		return Command{Verb: "TOP", Args: []string{fmt.Sprint(i + 1), "0"}, Multi: true, Body: func(r io.Reader) error {
			b, err := io.ReadAll(r)
			tops = append(tops, string(b))
			return err
		}}
	}, func(i int, err error) error { return err })
	if err != nil || len(tops) != len(msgs) || tops[7] != "Subject: 7\r\n\r\n" {
		t.Fatalf("batch: %v, %d tops", err, len(tops))
	}
	if st := f.Stats(); st.PipelineFault > 0 {
		t.Errorf("%d commands sent before the previous reply without PIPELINING", st.PipelineFault)
	}
}

func TestDropMidRetr(t *testing.T) {
	msgs := fakeMsgs(3)
	f := testserver.StartFakePOP3(t, testserver.FakePOP3Options{}, msgs)
	f.DropDuringRetr("uid-002", 1)
	c, err := Dial(context.Background(), fakeCfg(t, f))
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	_, err = c.Retr(context.Background(), 3, &b)
	if !Lost(err) || !c.Broken() {
		t.Fatalf("cut RETR: %v", err)
	}
	if _, err := c.Retr(context.Background(), 1, io.Discard); !Lost(err) {
		t.Fatalf("broken connection reused: %v", err)
	}
	c.Close()
	c, err = Dial(context.Background(), fakeCfg(t, f))
	if err != nil {
		t.Fatal(err)
	}
	b.Reset()
	if _, err := c.Retr(context.Background(), 3, &b); err != nil || b.String() != string(msgs[2].Body) {
		t.Fatalf("RETR again: %v", err)
	}
	c.Close()
}

// TestStalledServer: a server that stops in the middle of a reply is
// given up on after IdleTimeout (not waited for), with an error that says
// so; a cancelled context ends the wait within drainBudget (the reply is
// given that long to end, so that the session could go on).
func TestStalledServer(t *testing.T) {
	f := testserver.StartFakePOP3(t, testserver.FakePOP3Options{}, fakeMsgs(3))
	f.StallDuringRetr("uid-002", 2)
	cfg := fakeCfg(t, f)
	cfg.IdleTimeout = 300 * time.Millisecond
	c, err := Dial(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	// The context is a safety net far above the idle bound: if the
	// watchdog failed, the error would be the context's.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	start := time.Now()
	_, err = c.Retr(ctx, 3, io.Discard)
	if !Lost(err) || !strings.Contains(err.Error(), "did not answer for 300ms") || ctx.Err() != nil {
		t.Fatalf("stalled RETR: %v", err)
	}
	if el := time.Since(start); el < 300*time.Millisecond {
		t.Fatalf("gave up after %s, before the idle timeout", el)
	}
	c.Close()

	cfg.IdleTimeout = time.Hour
	c, err = Dial(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel = context.WithCancel(context.Background())
	go func() {
		for f.Stats().Retrs < 2 {
			time.Sleep(10 * time.Millisecond)
		}
		cancel()
	}()
	start = time.Now()
	_, err = c.Retr(ctx, 3, io.Discard)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled RETR: %v", err)
	}
	if el := time.Since(start); el > drainBudget+2*time.Second {
		t.Errorf("a cancelled RETR of a stalled server took %s, want at most drainBudget (%s)", el, drainBudget)
	}
	c.Close()
}

// Test30MB: a 30 MB message streams through the client without being
// held: bytes allocated while it is read stay far below its size.
func Test30MB(t *testing.T) {
	const size = 30 << 20
	line := []byte(strings.Repeat("q", 78) + "\r\n")
	gen := func(w io.Writer) error {
		w.Write([]byte("Subject: big\r\n\r\n"))
		for n := int64(16); n < size; n += int64(len(line)) {
			if _, err := w.Write(line); err != nil {
				return err
			}
		}
		return nil
	}
	want := sha256.New()
	gen(want)
	f := testserver.StartFakePOP3(t, testserver.FakePOP3Options{}, []testserver.FakeMessage{{UIDL: "big", Gen: gen, Size: size}})
	c, err := Dial(context.Background(), fakeCfg(t, f))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	h := sha256.New()
	n, err := c.Retr(context.Background(), 1, h)
	runtime.ReadMemStats(&after)
	if err != nil || !bytes.Equal(h.Sum(nil), want.Sum(nil)) {
		t.Fatalf("RETR of %d bytes: %v", n, err)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 4<<20 {
		t.Errorf("%d MiB allocated while streaming a 30 MB message", alloc>>20)
	}
}

// TestDeleNeedsQuit: DELE only marks; Close without Quit deletes nothing,
// Quit deletes.
func TestDeleNeedsQuit(t *testing.T) {
	f := testserver.StartFakePOP3(t, testserver.FakePOP3Options{}, fakeMsgs(3))
	ctx := context.Background()
	c, err := Dial(ctx, fakeCfg(t, f))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Dele(ctx, 2); err != nil {
		t.Fatal(err)
	}
	c.Close()
	if got := len(f.UIDLs()); got != 3 {
		t.Fatalf("Close after DELE removed messages: %d left", got)
	}
	c, err = Dial(ctx, fakeCfg(t, f))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Dele(ctx, 2); err != nil {
		t.Fatal(err)
	}
	if err := c.Quit(ctx); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(f.UIDLs(), " "); got != "uid-000 uid-002" {
		t.Fatalf("after QUIT: %s", got)
	}
}

func TestNoUIDL(t *testing.T) {
	f := testserver.StartFakePOP3(t, testserver.FakePOP3Options{NoUIDL: true}, fakeMsgs(2))
	c, err := Dial(context.Background(), fakeCfg(t, f))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.UIDL(context.Background()); ServerError(err) == nil {
		t.Fatalf("UIDL on a server without it: %v", err)
	}
	// The session goes on.
	if _, err := c.List(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// TestForget: RSET is sent where LAST is not answered, and not where it
// is (there RSET would clear every \Seen flag); the session still ends
// with QUIT.
func TestForget(t *testing.T) {
	for _, last := range []bool{false, true} {
		f := testserver.StartFakePOP3(t, testserver.FakePOP3Options{Last: last}, fakeMsgs(2))
		c, err := Dial(context.Background(), fakeCfg(t, f))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Retr(context.Background(), 1, io.Discard); err != nil {
			t.Fatal(err)
		}
		if err := c.Forget(context.Background()); err != nil {
			t.Fatalf("LAST answered %v: %v", last, err)
		}
		c.Close()
		st := f.Stats()
		if want := map[bool]int{false: 1, true: 0}[last]; st.Rsets != want || st.Quits != 1 {
			t.Errorf("LAST answered %v: %d RSETs (want %d), %d QUITs (want 1)", last, st.Rsets, want, st.Quits)
		}
	}
}

// TestDialWrongPort: pop3s:// on the plaintext POP3 port is a fatal error
// that says so and what to use; pop3:// on the TLS port, where the server
// waits for a handshake as the client waits for a greeting, is found out
// by a TLS probe (internal/tlsprobe) within seconds and says which scheme
// such a port wants; pop3:// on an IMAP port is not a POP3 server.
func TestDialWrongPort(t *testing.T) {
	d := testserver.StartDovecot(t, testserver.WithUser("alice", "Al1ce-pw-77"), testserver.WithoutAuthDelay())
	for _, c := range []struct {
		name  string
		cfg   Config
		want  string
		fatal bool
	}{
		{"pop3s-on-pop3", Config{Endpoint: endpointOf(t, d.POP3Addr, "alice", true), CAFile: d.CAFile}, "does not speak TLS on this port (it answered \"+OK D\")", true},
		// The dial timeout is the default: the TLS probe answers first.
		{"pop3-on-pop3s", Config{Endpoint: endpointOf(t, d.POP3SAddr, "alice", false), CAFile: d.CAFile}, "answers a TLS handshake on this port: use pop3s://", true},
		{"pop3-on-imap", Config{Endpoint: endpointOf(t, d.IMAPAddr, "alice", false), CAFile: d.CAFile}, "not a POP3 server", true},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := c.cfg
			cfg.Password = "Al1ce-pw-77"
			start := time.Now()
			conn, err := Dial(context.Background(), &cfg)
			if err == nil {
				conn.Close()
				t.Fatal("connected")
			}
			if took := time.Since(start); took > 15*time.Second {
				t.Errorf("took %v to say so", took)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q, want one with %q", err, c.want)
			}
			if fatal := migrate.Classify(err) == migrate.Fatal; fatal != c.fatal {
				t.Errorf("fatal %v, want %v (%v)", fatal, c.fatal, err)
			}
		})
	}
}

// cancelOnWrite cancels its context at the first Write, and takes the
// rest: a RETR whose caller stops while its body arrives.
type cancelOnWrite struct{ cancel context.CancelFunc }

func (w cancelOnWrite) Write(p []byte) (int, error) { w.cancel(); return len(p), nil }

// TestCancelKeepsUnseen: Dovecot marks every message RETRieved in a
// session \Seen when the session ends — with QUIT or without — unless
// RSET came first. RETRs whose context ends (a first Ctrl-C) while one
// body arrives and others wait their turn return the context's error,
// but leave the session in step: RSET and QUIT still go through, and
// no message is marked read.
func TestCancelKeepsUnseen(t *testing.T) {
	d := testserver.StartDovecot(t, testserver.WithUser("alice", "Al1ce-pw-77"), testserver.WithoutAuthDelay())
	var bodies [][]byte
	for i := 0; i < 6; i++ {
		bodies = append(bodies, append([]byte(fmt.Sprintf("Subject: m%d\r\nMessage-ID: <%d@x>\r\n\r\n", i, i)), bytes.Repeat([]byte("b\r\n"), 200000)...))
	}
	d.SeedMaildir(t, "alice", "", bodies, nil)
	c, err := Dial(context.Background(), &Config{Endpoint: endpointOf(t, d.POP3Addr, "alice", false), InsecurePlaintext: true, Password: "Al1ce-pw-77"})
	if err != nil {
		t.Fatal(err)
	}
	if !c.Pipelining() {
		t.Fatal("Dovecot offers PIPELINING")
	}
	if _, err := c.Retr(context.Background(), 1, io.Discard); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, 7)
	for n := 2; n <= 6; n++ {
		wg.Add(1)
		go func(n int) {
			defer wg.Done()
			var w io.Writer = io.Discard
			if n == 2 {
				w = cancelOnWrite{cancel}
			}
			_, errs[n] = c.Retr(ctx, n, w)
		}(n)
		time.Sleep(20 * time.Millisecond) // sent in this order
	}
	wg.Wait()
	for n := 2; n <= 6; n++ {
		if errs[n] != nil && !errors.Is(errs[n], context.Canceled) {
			t.Errorf("RETR %d: %v, want the context's error", n, errs[n])
		}
	}
	if !errors.Is(errs[2], context.Canceled) {
		t.Errorf("RETR 2, cancelled while its body arrived: %v", errs[2])
	}
	if err := c.Forget(context.Background()); err != nil {
		t.Fatalf("RSET after the cancelled RETRs: %v", err)
	}
	c.Close()
	time.Sleep(200 * time.Millisecond) // the session's end is Dovecot's to finish
	seen, _ := filepath.Glob(filepath.Join(d.MaildirPath("alice"), "cur", "*:2,*S*"))
	if len(seen) != 0 {
		t.Errorf("%d messages marked read after a cancelled session: %v", len(seen), seen)
	}
}

// slowWriter takes its time over the first write: a caller still busy
// with one body while later commands wait their turn.
type slowWriter struct{ d time.Duration }

func (w *slowWriter) Write(p []byte) (int, error) {
	if w.d > 0 {
		time.Sleep(w.d)
		w.d = 0
	}
	return len(p), nil
}

// TestCancelledDeleNoQuit: a DELE whose context ends while it waits its
// turn has its reply dropped (the session stays in step), but it was
// sent, and may have been accepted: Close must not QUIT, or the server
// would delete a message its caller was told was not deleted.
func TestCancelledDeleNoQuit(t *testing.T) {
	f := testserver.StartFakePOP3(t, testserver.FakePOP3Options{}, fakeMsgs(3))
	c, err := Dial(context.Background(), fakeCfg(t, f))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { _, err := c.Retr(context.Background(), 1, &slowWriter{300 * time.Millisecond}); done <- err }()
	time.Sleep(50 * time.Millisecond) // the RETR first
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := c.Dele(ctx, 2); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("DELE behind a slow RETR: %v, want the context's error", err)
	}
	if err := <-done; err != nil {
		t.Fatalf("RETR: %v", err)
	}
	c.Close()
	if st := f.Stats(); st.Quits != 0 || st.Deleted != 0 {
		t.Errorf("after a cancelled DELE: %d QUITs, %d deleted; want none", st.Quits, st.Deleted)
	}
}

// TestDrainBoundsOnlyTheDrained: the time a cancelled command's reply may
// take bounds that reply only, not a live command's queued behind it.
func TestDrainBoundsOnlyTheDrained(t *testing.T) {
	defer func(d time.Duration) { drainBudget = d }(drainBudget)
	drainBudget = time.Second
	slow := func(w io.Writer) error { // 2.5 s in all, flowing
		io.WriteString(w, "Subject: slow\r\n\r\n")
		for i := 0; i < 25; i++ {
			time.Sleep(100 * time.Millisecond)
			if _, err := io.WriteString(w, "line\r\n"); err != nil {
				return err
			}
		}
		return nil
	}
	big := append([]byte("Subject: big\r\n\r\n"), bytes.Repeat([]byte("0123456789\r\n"), 80000)...) // still arriving when cancelled, read well within drainBudget
	msgs := []testserver.FakeMessage{{UIDL: "big", Body: big}}
	msgs = append(msgs, testserver.FakeMessage{UIDL: "slow", Gen: slow, Size: int64(len("Subject: slow\r\n\r\n") + 25*len("line\r\n"))})
	f := testserver.StartFakePOP3(t, testserver.FakePOP3Options{}, msgs)
	c, err := Dial(context.Background(), fakeCfg(t, f))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if !c.Pipelining() {
		t.Skip("the fake server offers no PIPELINING")
	}
	ctx, cancel := context.WithCancel(context.Background())
	first := make(chan error, 1)
	go func() { _, err := c.Retr(ctx, 1, cancelOnWrite{cancel}); first <- err }()
	time.Sleep(20 * time.Millisecond)
	var b bytes.Buffer
	if _, err := c.Retr(context.Background(), 2, &b); err != nil || !strings.HasSuffix(b.String(), "line\r\n") {
		t.Errorf("live RETR behind a cancelled one: %v (%d bytes)", err, b.Len())
	}
	if err := <-first; !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled RETR: %v", err)
	}
}
