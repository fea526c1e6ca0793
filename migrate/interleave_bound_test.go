package migrate

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// TestInterleaveBounded: one folder, its appender behind (nothing leaves):
// interleave takes no more of the lister's chunks than window*listChunk
// jobs (found in review: joined to the folder's place in the window, they
// were taken without end).
func TestInterleaveBounded(t *testing.T) {
	in := make(chan []*job) // unbuffered: count what interleave accepts
	out := make(chan []*job, 1000)
	tk := turns{limit: 2}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go interleave(ctx, in, out, 4, func([]*job) int { return 1 }, &tk)
	taken := 0
	for c := 0; c < 1000; c++ {
		chunk := make([]*job, listChunk)
		for i := range chunk {
			chunk[i] = &job{mb: Mailbox{Name: "A"}, msg: Message{ID: fmt.Sprint(c*listChunk + i)}}
		}
		select {
		case in <- chunk:
			taken++
		case <-time.After(100 * time.Millisecond):
			c = 1000
		}
	}
	if taken > 5 {
		t.Fatalf("interleave took %d chunks (%d jobs) of one folder with window 4", taken, taken*listChunk)
	}
}
