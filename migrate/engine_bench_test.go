package migrate_test

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailhaul/mailhaul/checkpoint"
	"github.com/mailhaul/mailhaul/migrate"
)

// BenchmarkRun measures the engine's own cost per message — listing,
// spooling, hashing, the checkpoint's intents and records (a real bbolt
// file), the in-flight journal, batching, reporting — with a source and a
// sink that cost next to nothing: what a copy costs mailhaul beyond the
// protocols. One op is one message; the sink batches as the IMAP sink
// does with MULTIAPPEND.
func BenchmarkRun(b *testing.B) {
	for _, size := range []int{1 << 10, 20 << 10} {
		b.Run(fmt.Sprintf("%dKiB", size>>10), func(b *testing.B) {
			src := &benchSource{n: b.N, body: strings.Repeat("x", size-80) + "\r\n"}
			cp, err := checkpoint.Open(filepath.Join(b.TempDir(), "cp.db"), "src", "dst")
			if err != nil {
				b.Fatal(err)
			}
			defer cp.Close()
			b.SetBytes(int64(size))
			b.ReportAllocs()
			b.ResetTimer()
			r, err := migrate.Run(context.Background(), migrate.Options{Source: src, Sink: &benchSink{}, Checkpoint: cp})
			if err != nil || r.Copied != b.N {
				b.Fatalf("copied %d of %d: %v", r.Copied, b.N, err)
			}
		})
	}
}

// benchSource is one folder of n messages, each a distinct header over the
// same body.
type benchSource struct {
	n    int
	body string
}

func (s *benchSource) Mailboxes(context.Context) ([]migrate.Mailbox, error) {
	return []migrate.Mailbox{{Name: "INBOX", Epoch: "1"}}, nil
}

func (s *benchSource) header(i int) string {
	return "Message-ID: <" + strconv.Itoa(i) + "@bench>\r\nSubject: message " + strconv.Itoa(i) + "\r\n\r\n"
}

func (s *benchSource) List(ctx context.Context, mb migrate.Mailbox, fn func(migrate.Message) error) error {
	for i := 0; i < s.n; i++ {
		h := s.header(i)
		m := migrate.Message{Mailbox: mb.Name, ID: strconv.Itoa(i + 1), Size: int64(len(h) + len(s.body)),
			Date: time.Unix(1e9+int64(i), 0), Flags: []string{`\Seen`}, MessageID: "<" + strconv.Itoa(i) + "@bench>"}
		if err := fn(m); err != nil {
			return err
		}
	}
	return nil
}

func (s *benchSource) Fetch(ctx context.Context, m migrate.Message, w io.Writer) error {
	i, _ := strconv.Atoi(m.ID)
	if _, err := io.WriteString(w, s.header(i-1)); err != nil {
		return err
	}
	_, err := io.WriteString(w, s.body)
	return err
}

func (s *benchSource) Limits() migrate.Limits { return migrate.Limits{Connections: 4} }
func (s *benchSource) Close() error           { return nil }

// benchSink reads every body and forgets it; refs are sequence numbers.
type benchSink struct{ next atomic.Int64 }

func (k *benchSink) Prepare(ctx context.Context, mb migrate.Mailbox, name string) (string, error) {
	return name, nil
}

func (k *benchSink) Append(ctx context.Context, folder string, m migrate.Message, b *migrate.Body) (string, error) {
	if _, err := io.Copy(io.Discard, b.Reader()); err != nil {
		return "", err
	}
	return strconv.FormatInt(k.next.Add(1), 10), nil
}

func (k *benchSink) BatchLimits() (int, int64) { return 50, 4 << 20 }

func (k *benchSink) AppendBatch(ctx context.Context, folder string, msgs []migrate.Message, bodies []*migrate.Body) ([]string, []error) {
	refs, errs := make([]string, len(msgs)), make([]error, len(msgs))
	for i := range msgs {
		refs[i], errs[i] = k.Append(ctx, folder, msgs[i], bodies[i])
	}
	return refs, errs
}

func (k *benchSink) Mark(context.Context, string) (string, error) { return "0", nil }
func (k *benchSink) Locate(ctx context.Context, folder string, ins []migrate.Intent) ([][]string, error) {
	return make([][]string, len(ins)), nil
}
func (k *benchSink) Limits() migrate.Limits { return migrate.Limits{Connections: 4} }
func (k *benchSink) Close() error           { return nil }
