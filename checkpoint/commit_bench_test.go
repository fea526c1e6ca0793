package checkpoint

import (
	"fmt"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/mailhaul/mailhaul/migrate"
)

// BenchmarkCommits replays the commits of an IMAP -> IMAP copy the way the
// engine makes them: each batch's intents go in with the previous batch's
// done records (CompleteAndAdd), folders one after another, UIDs rising.
// It reports the pages written and the bytes of the file per message,
// which is what the checkpoint's CPU and fsync cost follow.
func BenchmarkCommits(b *testing.B) {
	for _, batch := range []int{32, 96} {
		b.Run(fmt.Sprintf("batch%d", batch), func(b *testing.B) {
			const folders, perFolder = 12, 800
			var pages, msgs, fileBytes int64
			cpu0 := cpuTime()
			for n := 0; n < b.N; n++ {
				b.StopTimer()
				p := filepath.Join(b.TempDir(), "x.db")
				s, err := Open(p, "imap://a@src/", "imap://a@dst/")
				if err != nil {
					b.Fatal(err)
				}
				st := s.db.Stats()
				before := st.TxStats.GetWrite()
				b.StartTimer()
				var prev []migrate.Intent
				var refs []string
				for f := 0; f < folders; f++ {
					folder := fmt.Sprintf("Archive/%d/Folder-%02d", 2000+f, f)
					for uid := 1; uid <= perFolder; uid += batch {
						var in []migrate.Intent
						for u := uid; u < uid+batch && u <= perFolder; u++ {
							in = append(in, migrate.Intent{
								Folder: folder, Epoch: "1700000000", ID: fmt.Sprint(u), Dest: folder,
								Mark: "1700000001:" + fmt.Sprint(f*perFolder+u), MessageID: fmt.Sprintf("<%d.%d@example.org>", f, u),
								Size: 16000, SHA256: strings.Repeat("ab", 32), Date: time.Unix(1600000000+int64(u), 0),
								Flags: []string{`\Seen`},
							})
						}
						if err := s.CompleteAndAdd(prev, refs, in); err != nil {
							b.Fatal(err)
						}
						prev, refs = in, nil
						for _, i := range in {
							refs = append(refs, "1700000001:"+i.ID+":"+folder)
						}
						msgs += int64(len(in))
					}
				}
				if err := s.Complete(prev, refs); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				st = s.db.Stats()
				pages += st.TxStats.GetWrite() - before
				// The pages up to the last one used, free ones among them
				// (not the file's size: bbolt grows it by doubling).
				s.db.View(func(tx *bolt.Tx) error { fileBytes += tx.Size(); return nil })
				s.Close()
			}
			b.ReportMetric(float64(pages)/float64(msgs), "pages/msg")
			b.ReportMetric(float64(fileBytes)/float64(msgs), "db-bytes/msg")
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(msgs), "ns/msg")
			b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/float64(msgs), "cpu-ns/msg")
		})
	}
}

// cpuTime is the process's user+system CPU so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
