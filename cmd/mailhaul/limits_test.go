package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailhaul/mailhaul/internal/testserver"
	"github.com/mailhaul/mailhaul/internal/testserver/fakeimap"
)

// writeMaildir writes n messages of about size bytes into a new Maildir.
func writeMaildir(t *testing.T, n, size int) string {
	t.Helper()
	dir := t.TempDir()
	for _, s := range []string{"cur", "new", "tmp"} {
		os.MkdirAll(filepath.Join(dir, s), 0o755)
	}
	for i := 0; i < n; i++ {
		body := fmt.Sprintf("Message-ID: <lim-%d@x>\r\nSubject: %d\r\n\r\n%s", i, i, strings.Repeat("x", size))
		os.WriteFile(filepath.Join(dir, "cur", fmt.Sprintf("%d.M%d.lim:2,S", 1600000000+i, i)), []byte(body), 0o644)
	}
	return dir
}

// TestMaxConnectionsAndBandwidth: --max-connections caps the connections
// a run holds open to a server at once, and --bwlimit bounds the bytes per
// second (a lower bound on the time, which load cannot break).
func TestMaxConnectionsAndBandwidth(t *testing.T) {
	var mu sync.Mutex
	most := 0
	var srv *fakeimap.Server
	o := fakeimap.Options{}
	o.Hooks.Command = func(ev fakeimap.CommandEvent) fakeimap.Action {
		if n := srv.Stats().Open; n > 0 {
			mu.Lock()
			most = max(most, n)
			mu.Unlock()
		}
		return fakeimap.Action{}
	}
	srv = fakeimap.Start(t, o)
	srv.AddUser("u", "p")
	src := writeMaildir(t, 40, 50_000) // 2 MB
	start := time.Now()
	r := runMailhaul(t, []string{"MAILHAUL_DST_PASSWORD=p"}, "copy", "--insecure-plaintext", "--transfers", "8", "--max-connections", "3",
		"--bwlimit", "512K", "--state-dir", t.TempDir(), "maildir:"+src, "imap://u@"+srv.Addr())
	took := time.Since(start)
	if r.code != 0 {
		t.Fatalf("exit %d\n%s", r.code, r.stderr)
	}
	if len(srv.Messages("u", "INBOX")) != 40 {
		t.Fatalf("%d messages", len(srv.Messages("u", "INBOX")))
	}
	mu.Lock()
	defer mu.Unlock()
	if most > 3 || most == 0 {
		t.Errorf("%d connections open at once, want at most 3", most)
	}
	// 2,000,000 bytes at 512 KiB/s, less one burst of 256 KiB: 3.3 s at
	// least.
	if took < 3*time.Second {
		t.Errorf("2 MB in %s with --bwlimit 512K", took)
	}
	if r := runMailhaul(t, nil, "copy", "--preset", "nosuch", "maildir:"+src, "maildir:"+t.TempDir()); r.code != exitUsage {
		t.Errorf("--preset nosuch: exit %d", r.code)
	}
}

// TestPOP3Bandwidth: --bwlimit bounds a POP3 source too.
func TestPOP3Bandwidth(t *testing.T) {
	var msgs []testserver.FakeMessage
	for i := 0; i < 10; i++ {
		body := fmt.Sprintf("Message-ID: <bw%d@fake>\r\nSubject: %d\r\n\r\n%s", i, i, strings.Repeat("z123456789\r\n", 8500)) // 100 KB
		msgs = append(msgs, testserver.FakeMessage{UIDL: fmt.Sprintf("bw%d", i), Body: []byte(body)})
	}
	f := testserver.StartFakePOP3(t, testserver.FakePOP3Options{}, msgs)
	start := time.Now()
	r := runMailhaul(t, []string{"MAILHAUL_SRC_PASSWORD=secret"}, "copy", "--insecure-plaintext", "--bwlimit", "256K",
		"--state-dir", t.TempDir(), "pop3://alice@"+f.Addr, "maildir:"+t.TempDir())
	took := time.Since(start)
	if r.code != 0 {
		t.Fatalf("exit %d\n%s", r.code, r.stderr)
	}
	// 1,020,000 bytes at 256 KiB/s, less one burst of 256 KiB: 2.9 s at
	// least.
	if took < 2500*time.Millisecond {
		t.Errorf("1 MB from POP3 in %s with --bwlimit 256K", took)
	}
}

// TestDovecotMaxMailSize: a destination that refuses a message for its
// size with [LIMIT] (Dovecot's quota_max_mail_size says "NO [LIMIT] Mail
// size is larger than the maximum size allowed by server configuration")
// skips that message at once and copies the rest: it is not throttling,
// which would wait and retry it for minutes and then stop the run.
func TestDovecotMaxMailSize(t *testing.T) {
	d := testserver.StartDovecot(t, testserver.WithUser("u", "Size-Pw-1"),
		testserver.WithConfig("mail_plugins = $mail_plugins quota\nplugin {\n  quota = maildir:User quota\n  quota_max_mail_size = 100k\n}"))
	src := writeMaildir(t, 6, 20_000)
	big := fmt.Sprintf("Message-ID: <lim-big@x>\r\nSubject: big\r\n\r\n%s", strings.Repeat("y", 300_000))
	os.WriteFile(filepath.Join(src, "cur", "1600000003.M99.lim:2,S"), []byte(big), 0o644)
	start := time.Now()
	r := runMailhaul(t, []string{"MAILHAUL_DST_PASSWORD=Size-Pw-1"}, "copy", "--insecure-plaintext", "--throttle-wait", "20s",
		"--state-dir", t.TempDir(), "maildir:"+src, "imap://u@"+d.IMAPAddr)
	if r.code != exitSkipped || !strings.Contains(r.stderr, "too big") || !strings.Contains(r.stderr, "1600000003.M99.lim") {
		t.Fatalf("exit %d, want %d with the big message skipped as too big\n%s", r.code, exitSkipped, r.stderr)
	}
	if strings.Contains(r.stderr, "retrying") {
		t.Errorf("the refusal was retried:\n%s", r.stderr)
	}
	if took := time.Since(start); took > 15*time.Second {
		t.Errorf("took %s: the refusal was waited on", took)
	}
	if n := len(imapFolder(t, d, "u", "INBOX")); n != 6 {
		t.Errorf("%d messages in INBOX, want the 6 small ones", n)
	}
}
