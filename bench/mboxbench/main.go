// Command mboxbench measures `mailhaul copy mbox:... maildir:...`: it
// writes an mbox of about -size bytes (messages of 2 KiB to 1 MiB, a few
// quoted From lines, one 50 MiB message) into a temporary directory,
// copies it into a Maildir with the mailhaul binary, and prints the
// throughput and the child's peak RSS (rusage Maxrss).
//
//	go build -o /tmp/mailhaul ./cmd/mailhaul
//	go run ./bench/mboxbench -bin /tmp/mailhaul -size 1G
package main

import (
	"bufio"
	"flag"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	bin := flag.String("bin", "mailhaul", "mailhaul binary")
	sizeS := flag.String("size", "1G", "mbox size (K, M, G suffixes)")
	dir := flag.String("dir", "", "work directory (default: a new temporary directory, removed at the end)")
	flag.Parse()
	size, err := parseSize(*sizeS)
	if err != nil {
		fail(err)
	}
	work := *dir
	if work == "" {
		if work, err = os.MkdirTemp("", "mboxbench-"); err != nil {
			fail(err)
		}
		defer os.RemoveAll(work)
	}
	src := filepath.Join(work, "big.mbox")
	t0 := time.Now()
	n, err := generate(src, size)
	if err != nil {
		fail(err)
	}
	fi, _ := os.Stat(src)
	fmt.Printf("generated %s: %d messages, %.1f MB in %.1fs\n", src, n, float64(fi.Size())/1e6, time.Since(t0).Seconds())

	cmd := exec.Command(*bin, "copy", "--state-dir", filepath.Join(work, "state"), "mbox:"+src, "maildir:"+filepath.Join(work, "out"))
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	t1 := time.Now()
	if err := cmd.Run(); err != nil {
		fail(fmt.Errorf("mailhaul: %w", err))
	}
	el := time.Since(t1)
	ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	fmt.Printf("copied %.1f MB in %.2fs: %.1f MB/s, %.0f msg/s; peak RSS %.1f MiB; user %.2fs sys %.2fs\n",
		float64(fi.Size())/1e6, el.Seconds(), float64(fi.Size())/1e6/el.Seconds(), float64(n)/el.Seconds(),
		float64(ru.Maxrss)/1024, time.Duration(ru.Utime.Nano()).Seconds(), time.Duration(ru.Stime.Nano()).Seconds())
}

func generate(path string, size int64) (int, error) {
	f, err := os.Create(path)
	if err != nil {
		return 0, err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	rng := rand.New(rand.NewSource(1))
	line := strings.Repeat("The quick brown fox jumps over the lazy dog. ", 2)[:76] + "\n"
	var written int64
	n := 0
	big := false
	for written < size {
		body := 2<<10 + rng.Intn(64<<10)
		if rng.Intn(100) == 0 {
			body = 1 << 20
		}
		if !big && written > size/2 {
			body, big = 50<<20, true
		}
		hdr := fmt.Sprintf("From sender%d@example.org Mon Jan %2d 10:%02d:00 2022\nX-Mozilla-Status: %04x\nMessage-ID: <%d@bench.example>\nFrom: Sender <sender%d@example.org>\nSubject: message %d\nDate: Mon, %d Jan 2022 10:%02d:00 +0000\n\n",
			n%100, n%28+1, n%60, n%2, n, n%100, n, n%28+1, n%60)
		w.WriteString(hdr)
		written += int64(len(hdr))
		for b := 0; b < body; b += len(line) {
			if b%(16<<10) == 0 {
				w.WriteString(">From a quoted line\n")
				written += 20
			}
			w.WriteString(line)
			written += int64(len(line))
		}
		w.WriteString("\n")
		written++
		n++
	}
	if err := w.Flush(); err != nil {
		return n, err
	}
	return n, f.Close()
}

func parseSize(s string) (int64, error) {
	mult := int64(1)
	switch {
	case strings.HasSuffix(s, "K"):
		mult, s = 1<<10, s[:len(s)-1]
	case strings.HasSuffix(s, "M"):
		mult, s = 1<<20, s[:len(s)-1]
	case strings.HasSuffix(s, "G"):
		mult, s = 1<<30, s[:len(s)-1]
	}
	v, err := strconv.ParseFloat(s, 64)
	return int64(v * float64(mult)), err
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "mboxbench:", err)
	os.Exit(1)
}
