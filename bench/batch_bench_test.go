package bench

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"

	"github.com/mailhaul/mailhaul/internal/testserver"
)

// Batch benchmark: many small accounts copied IMAP -> IMAP between two
// Dovecots on loopback by one `mailhaul batch`, at several --parallel.
//
//	go test -run '^$' -bench Batch -benchtime 1x ./bench
//
// Environment:
//
//	MAILHAUL_BENCH_ACCOUNTS          accounts (default 100)
//	MAILHAUL_BENCH_ACCOUNT_MESSAGES  messages per account (default 50; sizes and
//	                                 folders as in BenchmarkIMAP: 12 folders, 1-64 KiB)
//	MAILHAUL_BENCH_CAP               --max-connections-per-host (default: mailhaul's, 10)
//
// Each --parallel copies into a fresh destination Dovecot with a fresh
// state directory; the figures are accounts per minute (wall time of the
// whole batch) and the batch process's peak RSS (GNU time when installed,
// see runChild).
func BenchmarkBatch(b *testing.B) {
	accounts, msgs := 100, 50
	if s := os.Getenv("MAILHAUL_BENCH_ACCOUNTS"); s != "" {
		fmt.Sscan(s, &accounts)
	}
	if s := os.Getenv("MAILHAUL_BENCH_ACCOUNT_MESSAGES"); s != "" {
		fmt.Sscan(s, &msgs)
	}
	var extra []string
	if s := os.Getenv("MAILHAUL_BENCH_CAP"); s != "" {
		extra = append(extra, "--max-connections-per-host", s)
	}
	work := b.TempDir()
	bin := buildMailhaul(b, work)
	var users []testserver.Option
	for i := 0; i < accounts; i++ {
		users = append(users, testserver.WithUser(fmt.Sprintf("u%03d", i), benchPass))
	}
	src := testserver.StartDovecot(b, users...)
	total := 0
	var bytes int64
	for i := 0; i < accounts; i++ {
		u := fmt.Sprintf("u%03d", i)
		cp := seedDovecot(b, src, u, msgs, 0)
		total += cp.messages
		bytes += cp.bytes
		warmUser(b, src, u, benchPass)
	}
	b.Logf("%d accounts, %d messages, %.1f MB in all", accounts, total, float64(bytes)/1e6)
	pw := filepath.Join(work, "pw")
	os.WriteFile(pw, []byte(benchPass), 0o600)
	var dstAddr string // the destination of the run being written
	write := func(dir string) string {
		var csv strings.Builder
		csv.WriteString("source,destination\n")
		for i := 0; i < accounts; i++ {
			fmt.Fprintf(&csv, "imap://u%03d@%s,imap://u%03d@%s\n", i, src.IMAPAddr, i, dstAddr)
		}
		p := filepath.Join(dir, "accounts.csv")
		if err := os.WriteFile(p, []byte(csv.String()), 0o644); err != nil {
			b.Fatal(err)
		}
		return p
	}
	for _, par := range []int{1, 4, 8} {
		b.Run(fmt.Sprintf("parallel-%d", par), func(b *testing.B) {
			if b.N > 1 {
				b.Skip("run with -benchtime 1x")
			}
			dst := testserver.StartDovecot(b, users...)
			dstAddr = dst.IMAPAddr
			dir := b.TempDir()
			file := write(dir)
			args := append([]string{"batch", "--parallel", fmt.Sprint(par), "--insecure-plaintext",
				"--src-password-file", pw, "--dst-password-file", pw, "--state-dir", filepath.Join(dir, "state")}, extra...)
			el, rss := runChild(b, nil, bin, append(args, file)...)
			got := 0
			for i := 0; i < accounts; i++ {
				got += imapTotal(b, dst, fmt.Sprintf("u%03d", i), benchPass)
			}
			if got != total {
				b.Fatalf("destinations hold %d messages, want %d", got, total)
			}
			perMin := float64(accounts) / el.Minutes()
			b.ReportMetric(perMin, "accounts/min")
			b.ReportMetric(float64(total)/el.Seconds(), "msg/s")
			b.ReportMetric(rss, "peak-RSS-MiB")
			b.Logf("--parallel %d: %d accounts in %.1fs: %.0f accounts/min, %.0f msg/s, peak RSS %.0f MiB", par, accounts, el.Seconds(), perMin, float64(total)/el.Seconds(), rss)
		})
	}
}

// warmUser makes Dovecot index every folder of user and pulls the files
// into the page cache (see warmSource).
func warmUser(b *testing.B, d *testserver.Dovecot, user, pass string) {
	b.Helper()
	c := imapLogin(b, d, user, pass)
	defer c.Close()
	list, err := c.List("", "*", nil).Collect()
	if err != nil {
		b.Fatal(err)
	}
	all := imap.SeqSet{}
	all.AddRange(1, 0)
	for _, l := range list {
		sd, err := c.Select(l.Mailbox, &imap.SelectOptions{ReadOnly: true}).Wait()
		if err != nil || sd.NumMessages == 0 {
			continue
		}
		if _, err := c.Fetch(all, &imap.FetchOptions{UID: true, RFC822Size: true, BodySection: []*imap.FetchItemBodySection{{Peek: true}}}).Collect(); err != nil {
			b.Fatal(err)
		}
	}
}
