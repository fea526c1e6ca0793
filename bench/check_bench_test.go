package bench

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/mailhaul/mailhaul/internal/delayproxy"
	"github.com/mailhaul/mailhaul/internal/testserver"
)

// Check benchmark: `mailhaul check` of an account against an identical
// copy, without a checkpoint (the fingerprint path: a migration made by
// another tool, or a lost state directory), on loopback and over added
// round-trip time.
//
//	go test -run '^$' -bench Check -benchtime 1x ./bench
//
// Environment: MAILHAUL_BENCH_MESSAGES (default 10000), MAILHAUL_BENCH_DELAY
// (one-way latency of the remote rows, default 10ms: a 20 ms round trip).
//
// Both accounts live on one Dovecot (seeded with the same generated corpus,
// so they hold the same messages, flags and dates); each side reaches it
// through its own internal/delayproxy, which counts the bytes. Rows:
// IMAP -> IMAP on loopback and remote, and Maildir -> IMAP remote (the
// source account's Maildir read directly: every file is read once to count
// its line ends for the CRLF size, locally).

type checkRow struct {
	name           string
	el             time.Duration
	rss            float64
	fromSrc, toSrc int64
	fromDst, toDst int64
}

func BenchmarkCheck(b *testing.B) {
	n := 10000
	if s := os.Getenv("MAILHAUL_BENCH_MESSAGES"); s != "" {
		fmt.Sscan(s, &n)
	}
	delay := 10 * time.Millisecond
	if s := os.Getenv("MAILHAUL_BENCH_DELAY"); s != "" {
		var err error
		if delay, err = time.ParseDuration(s); err != nil {
			b.Fatalf("MAILHAUL_BENCH_DELAY: %v", err)
		}
	}
	work := b.TempDir()
	bin := buildMailhaul(b, work)
	d := testserver.StartDovecot(b, testserver.WithUser(benchUser, benchPass), testserver.WithUser("mh", "mh-pw"))
	setup := time.Now()
	cp := seedDovecot(b, d, benchUser, n, 0)
	seedDovecot(b, d, "mh", n, 0)
	warmAccount(b, d, benchUser, benchPass)
	warmAccount(b, d, "mh", "mh-pw")
	b.Logf("corpus: %d messages, %.1f MB in %d folders, twice (seeded and indexed in %s)", cp.messages, float64(cp.bytes)/1e6, cp.folders, time.Since(setup).Round(time.Millisecond))
	env := []string{"MAILHAUL_SRC_PASSWORD=" + benchPass, "MAILHAUL_DST_PASSWORD=mh-pw"}

	var rows []checkRow
	for _, r := range []struct {
		name  string
		lat   time.Duration
		local bool
	}{
		{"IMAP-IMAP/loopback", 0, false},
		{fmt.Sprintf("IMAP-IMAP/rtt%s", 2*delay), delay, false},
		{fmt.Sprintf("Maildir-IMAP/rtt%s", 2*delay), delay, true},
	} {
		b.Run(r.name, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				sp, err := delayproxy.Start(d.IMAPAddr, r.lat)
				if err != nil {
					b.Fatal(err)
				}
				dp, err := delayproxy.Start(d.IMAPAddr, r.lat)
				if err != nil {
					b.Fatal(err)
				}
				src := "imap://" + benchUser + "@" + sp.Addr()
				if r.local {
					src = "maildir:" + d.MaildirPath(benchUser)
				}
				// Through sh, to keep the report and accept exit 5: the
				// Maildir row finds flag differences that are real (the seed
				// writes Maildir "P", which mailhaul reads as $Forwarded and
				// Dovecot does not show).
				report := filepath.Join(work, "report.txt")
				script := `"$0" "$@" > ` + report + `; e=$?; [ $e -eq 0 ] || [ $e -eq 5 ] || { cat ` + report + `; exit $e; }`
				args := []string{"-c", script, bin, "check", "--no-checkpoint", "--insecure-plaintext", src, "imap://mh@" + dp.Addr()}
				b.StartTimer()
				el, rss := runChild(b, env, "sh", args...)
				b.StopTimer()
				out, _ := os.ReadFile(report)
				if !strings.Contains(string(out), "COMPLETE") || strings.Contains(string(out), "INCOMPLETE") {
					b.Fatalf("%s: not complete:\n%s", r.name, out)
				}
				b.Logf("%s: %s", r.name, lastLine(string(out)))
				sp.Close()
				dp.Close()
				row := checkRow{name: r.name, el: el, rss: rss}
				row.toSrc, row.fromSrc = sp.Bytes()
				row.toDst, row.fromDst = dp.Bytes()
				rows = append(rows, row)
				b.ReportMetric(el.Seconds(), "s/check")
				b.ReportMetric(float64(row.fromSrc+row.fromDst)/float64(cp.messages), "read_B/msg")
				b.ReportMetric(rss, "peakRSS_MiB")
				b.StartTimer()
			}
		})
	}
	fmt.Printf("\nmailhaul check, %d messages (%.1f MB) in %d folders against an identical account, no checkpoint\n", cp.messages, float64(cp.bytes)/1e6, cp.folders)
	fmt.Printf("%-24s %8s %9s %12s %12s %10s %8s\n", "row", "time", "msgs/s", "src read", "dst read", "read/msg", "RSS MiB")
	for _, r := range rows {
		fmt.Printf("%-24s %7.2fs %9.0f %11.1fK %11.1fK %9.0fB %8.0f\n", r.name, r.el.Seconds(), float64(cp.messages)/r.el.Seconds(),
			float64(r.fromSrc)/1024, float64(r.fromDst)/1024, float64(r.fromSrc+r.fromDst)/float64(cp.messages), r.rss)
	}
	if len(rows) >= 2 && delay > 0 {
		// Wall time added by the latency, in round trips: the length of
		// the chain of requests that wait for each other.
		extra := rows[1].el - rows[0].el
		fmt.Printf("IMAP-IMAP: %.0f round trips of %s on the critical path (time added by the latency / RTT)\n", extra.Seconds()/(2*delay).Seconds(), 2*delay)
	}
}

// warmAccount makes Dovecot build its indexes and caches for every folder
// of user (as warmSource does for the source account).
func warmAccount(b *testing.B, d *testserver.Dovecot, user, pass string) {
	b.Helper()
	c := imapLogin(b, d, user, pass)
	defer c.Close()
	list, err := c.List("", "*", nil).Collect()
	if err != nil {
		b.Fatal(err)
	}
	all := imap.SeqSet{}
	all.AddRange(1, 0)
	hdr := &imap.FetchItemBodySection{Specifier: imap.PartSpecifierHeader, HeaderFields: []string{"Message-ID", "From", "Subject", "Date"}, Peek: true}
	for _, l := range list {
		sd, err := c.Select(l.Mailbox, &imap.SelectOptions{ReadOnly: true}).Wait()
		if err != nil || sd.NumMessages == 0 {
			continue
		}
		cmd := c.Fetch(all, &imap.FetchOptions{UID: true, Flags: true, InternalDate: true, RFC822Size: true, BodySection: []*imap.FetchItemBodySection{hdr}})
		for m := cmd.Next(); m != nil; m = cmd.Next() {
			if _, err := m.Collect(); err != nil {
				b.Fatal(err)
			}
		}
		if err := cmd.Close(); err != nil {
			b.Fatal(err)
		}
	}
	// The Maildir row reads the files: have them in the page cache too.
	filepath.Walk(d.MaildirPath(user), func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() && strings.Contains(p, "/cur/") {
			os.ReadFile(p)
		}
		return nil
	})
}
