package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mailhaul/mailhaul/checkpoint"
	"github.com/mailhaul/mailhaul/internal/imapconn"
	"github.com/mailhaul/mailhaul/internal/maildir"
	"github.com/mailhaul/mailhaul/internal/testserver"
	"github.com/mailhaul/mailhaul/migrate"
	"github.com/mailhaul/mailhaul/sinks"
	"github.com/mailhaul/mailhaul/sources"
)

// Load and leaks (issue 9): one IMAP folder of 100,000 small messages
// (MAILHAUL_LOAD_MESSAGES changes the count) and a folder holding one
// 50 MB message, copied IMAP -> Maildir by the binary: peak RSS within the
// README's 64 MiB, every message there, and a re-run that copies nothing.
// Then the same copy in-process, whose goroutines and file descriptors
// must be back to what they were once everything is closed.

const readmeRSSBound = 64 << 20

func loadCorpus(t *testing.T) (d *testserver.Dovecot, small int, big []byte) {
	t.Helper()
	small = 100000
	if s := os.Getenv("MAILHAUL_LOAD_MESSAGES"); s != "" {
		small, _ = strconv.Atoi(s)
	}
	d = testserver.StartDovecot(t)
	msgs := make([][]byte, small)
	for i := range msgs {
		msgs[i] = []byte(fmt.Sprintf("From: load%d@example.org\r\nSubject: load %d\r\nMessage-ID: <load-%d@example.org>\r\n\r\nsmall body %d\r\n", i%97, i, i, i))
	}
	d.SeedMaildir(t, "alice", "", msgs, func(i int) time.Time { return time.Unix(1600000000+int64(i), 0) })
	var b bytes.Buffer
	b.WriteString("From: big@example.org\r\nSubject: fifty megabytes\r\nMessage-ID: <big@example.org>\r\n\r\n")
	line := strings.Repeat("0123456789abcdef", 4)[:62] + "\r\n"
	for b.Len() < 50<<20 {
		b.WriteString(line)
	}
	big = b.Bytes()
	d.SeedMaildir(t, "alice", ".Big", [][]byte{big}, nil)
	return d, small, big
}

func TestLoadLargeMailbox(t *testing.T) {
	d, small, big := loadCorpus(t)
	dst, state := t.TempDir(), t.TempDir()
	env := []string{"MAILHAUL_SRC_PASSWORD=" + d.Password("alice")}
	args := []string{"copy", "--insecure-plaintext", "--state-dir", state, "imap://alice@" + d.IMAPAddr, "maildir:" + dst}
	start := time.Now()
	r, rss := runMailhaulRSS(t, env, args...)
	took := time.Since(start)
	if r.code != 0 {
		t.Fatalf("exit %d\n%s", r.code, lastLines(r.stderr, 20))
	}
	t.Logf("%d + 1 messages copied in %s, peak RSS %.1f MiB", small, took.Round(time.Millisecond), float64(rss)/(1<<20))
	if rss > readmeRSSBound {
		t.Errorf("peak RSS %.1f MiB, above the README's 64 MiB", float64(rss)/(1<<20))
	}
	inbox := filepath.Join(dst, "cur")
	if n := countFiles(t, inbox) + countFiles(t, filepath.Join(dst, "new")); n != small {
		t.Errorf("INBOX holds %d messages, want %d", n, small)
	}
	bigs, _ := filepath.Glob(filepath.Join(dst, ".Big", "cur", "*"))
	if len(bigs) != 1 {
		t.Fatalf("Big holds %d messages, want 1", len(bigs))
	}
	if got, err := os.ReadFile(bigs[0]); err != nil || !bytes.Equal(got, big) {
		t.Errorf("the 50 MB message differs (%d bytes, %v)", len(got), err)
	}

	start = time.Now()
	r, rss = runMailhaulRSS(t, env, args...)
	again := time.Since(start)
	if r.code != 0 || !strings.Contains(r.stderr, fmt.Sprintf("copied 0 messages (0 B), %d already there", small+1)) {
		t.Fatalf("re-run: exit %d\n%s", r.code, lastLines(r.stderr, 5))
	}
	t.Logf("re-run with nothing to copy: %s, peak RSS %.1f MiB", again.Round(time.Millisecond), float64(rss)/(1<<20))
}

// openFDs counts this process's open file descriptors.
func openFDs(t *testing.T) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc/self/fd: %v", err)
	}
	return len(ents)
}

// TestLoadNoLeaks runs the same copy in this process (smaller: 5,000
// messages and the 50 MB one, twice: a first copy and a re-run) and
// checks that closing the source, the sink and the checkpoint leaves no
// goroutine and no file descriptor behind.
func TestLoadNoLeaks(t *testing.T) {
	if os.Getenv("MAILHAUL_LOAD_MESSAGES") == "" {
		t.Setenv("MAILHAUL_LOAD_MESSAGES", "5000")
	}
	d, small, _ := loadCorpus(t)
	dst, state := t.TempDir(), t.TempDir()
	host, port := splitHostPort(t, d.IMAPAddr)
	cfg := &imapconn.Config{Endpoint: imapconn.Endpoint{Host: host, Port: port, User: "alice"}, InsecurePlaintext: true, Password: d.Password("alice")}
	runtime.GC()
	goroutines, fds := runtime.NumGoroutine(), openFDs(t)
	for run := 0; run < 2; run++ {
		ctx := context.Background()
		src, err := sources.OpenIMAP(ctx, cfg, 4)
		if err != nil {
			t.Fatal(err)
		}
		sink, err := sinks.OpenMaildir(dst, maildir.PlusPlus)
		if err != nil {
			t.Fatal(err)
		}
		cp, err := checkpoint.Open(filepath.Join(state, "cp.db"), "src", "dst")
		if err != nil {
			t.Fatal(err)
		}
		rep, err := migrate.Run(ctx, migrate.Options{Source: src, Sink: sink, Checkpoint: cp, Transfers: 4})
		if err != nil {
			t.Fatal(err)
		}
		if got := rep.Copied + rep.Already; got != small+1 || len(rep.Skipped) != 0 {
			t.Fatalf("run %d: copied %d, already %d, skipped %v", run, rep.Copied, rep.Already, rep.Skipped)
		}
		if fi, err := os.Stat(filepath.Join(state, "cp.db")); err == nil {
			t.Logf("run %d: checkpoint %.1f MB for %d messages", run, float64(fi.Size())/1e6, small+1)
		}
		cp.Close()
		sink.Close()
		src.Close()
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		runtime.GC()
		g, f := runtime.NumGoroutine(), openFDs(t)
		if g <= goroutines && f <= fds {
			break
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			n := runtime.Stack(buf, true)
			t.Fatalf("after closing everything: %d goroutines (%d before), %d file descriptors (%d before)\n%s", g, goroutines, f, fds, buf[:n])
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func splitHostPort(t *testing.T, addr string) (string, string) {
	i := strings.LastIndexByte(addr, ':')
	if i < 0 {
		t.Fatalf("address %q", addr)
	}
	return addr[:i], addr[i+1:]
}
