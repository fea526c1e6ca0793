// Package bench holds side-by-side benchmarks of mailhaul against peer
// tools and plain file copies. They are benchmarks, not tests: run them with
//
//	go test -run XXX -bench . -benchtime 1x ./bench
//
// Each reports messages/s, MB/s, peak RSS of the mailhaul process and the
// ratio to the peer measured in the same run.
package bench

import (
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// buildMailhaul builds the binary into dir.
func buildMailhaul(b *testing.B, dir string) string {
	b.Helper()
	bin := filepath.Join(dir, "mailhaul")
	out, err := exec.Command("go", "build", "-o", bin, "../cmd/mailhaul").CombinedOutput()
	if err != nil {
		b.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// genMaildir writes n messages (sizes from 1 KiB to ~64 KiB, a few larger)
// into a Maildir++ tree with 10 folders and returns the total bytes.
func genMaildir(b *testing.B, root string, n int) int64 {
	b.Helper()
	rng := rand.New(rand.NewSource(42))
	folders := []string{"", ".Sent", ".Archive", ".Archive.2019", ".Archive.2020", ".Lists", ".Lists.go-dev", ".Work", ".Trash", ".Drafts"}
	line := strings.Repeat("The quick brown fox jumps over the lazy dog. ", 2)[:76] + "\n"
	var total int64
	for _, f := range folders {
		for _, s := range []string{"cur", "new", "tmp"} {
			os.MkdirAll(filepath.Join(root, f, s), 0o755)
		}
	}
	for i := 0; i < n; i++ {
		f := folders[i%len(folders)]
		size := 1024 + rng.Intn(16<<10)
		if i%10 == 0 {
			size += rng.Intn(48 << 10)
		}
		if i%500 == 0 {
			size += 2 << 20
		}
		var sb strings.Builder
		fmt.Fprintf(&sb, "From: sender%d@example.org\nTo: me@example.net\nSubject: message %d\nMessage-ID: <%d@bench.example>\nDate: Mon, 1 Jan 2018 00:00:00 +0000\n\n", i, i, i)
		for sb.Len() < size {
			sb.WriteString(line)
		}
		date := time.Unix(1514764800+int64(i)*60, 0)
		p := filepath.Join(root, f, "cur", fmt.Sprintf("%d.M%dP1.bench:2,S", date.Unix(), i))
		if err := os.WriteFile(p, []byte(sb.String()), 0o644); err != nil {
			b.Fatal(err)
		}
		os.Chtimes(p, date, date)
		total += int64(sb.Len())
	}
	return total
}

// timed runs a command and returns its wall time and peak RSS in MiB
// (see runChild, which syncs first so that earlier writes do not land in
// its time).
func timed(b *testing.B, name string, args ...string) (time.Duration, float64) {
	b.Helper()
	return runChild(b, nil, name, args...)
}

// BenchmarkMaildirToMaildir copies 10,000 generated messages Maildir ->
// Maildir with mailhaul (fsync per message, checkpointed) and with cp -a
// (no fsync, no checkpoint) in the same run.
func BenchmarkMaildirToMaildir(b *testing.B) {
	n := 10000
	if s := os.Getenv("MAILHAUL_BENCH_MESSAGES"); s != "" {
		fmt.Sscan(s, &n)
	}
	work := b.TempDir()
	bin := buildMailhaul(b, work)
	src := filepath.Join(work, "src")
	total := genMaildir(b, src, n)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		dst := filepath.Join(work, fmt.Sprintf("dst%d", i))
		state := filepath.Join(work, fmt.Sprintf("state%d", i))
		el, rss := timed(b, bin, "copy", "--state-dir", state, "maildir:"+src, "maildir:"+dst)
		cpEl, _ := timed(b, "cp", "-a", src, filepath.Join(work, fmt.Sprintf("cp%d", i)))
		again, _ := timed(b, bin, "copy", "--state-dir", state, "maildir:"+src, "maildir:"+dst)
		b.ReportMetric(float64(n)/el.Seconds(), "msgs/s")
		b.ReportMetric(float64(total)/1e6/el.Seconds(), "MB/s")
		b.ReportMetric(rss, "peakRSS_MiB")
		b.ReportMetric(el.Seconds()/cpEl.Seconds(), "x_cp_time")
		b.ReportMetric(again.Seconds(), "rerun_s")
		b.Logf("%d messages, %.1f MB: mailhaul %.2fs (rss %.0f MiB), cp -a %.2fs, second run %.2fs", n, float64(total)/1e6, el.Seconds(), rss, cpEl.Seconds(), again.Seconds())
	}
}
