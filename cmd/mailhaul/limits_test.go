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
