package migrate

import (
	"context"
	"fmt"
	"testing"
)

// TestInterleave: every job comes out exactly once, jobs of one chunk keep
// their order, and up to window chunks are served in turn.
func TestInterleave(t *testing.T) {
	in := make(chan []*job, 10)
	out := make(chan *job, 1000)
	var all []*job
	for f, n := range []int{3, 1, 5, 2, 4} {
		var c []*job
		for i := 0; i < n; i++ {
			j := &job{mb: Mailbox{Name: fmt.Sprintf("F%d", f)}, msg: Message{ID: fmt.Sprint(i)}}
			c = append(c, j)
			all = append(all, j)
		}
		in <- c
	}
	in <- nil // empty chunks are ignored
	close(in)
	if err := interleave(context.Background(), in, out, 3); err != nil {
		t.Fatal(err)
	}
	close(out)
	var got []string
	seen := map[*job]bool{}
	last := map[string]int{}
	for j := range out {
		if seen[j] {
			t.Fatalf("job %s/%s sent twice", j.mb.Name, j.msg.ID)
		}
		seen[j] = true
		var i int
		fmt.Sscan(j.msg.ID, &i)
		if p, ok := last[j.mb.Name]; ok && i != p+1 {
			t.Fatalf("folder %s out of order: %d after %d", j.mb.Name, i, p)
		}
		last[j.mb.Name] = i
		got = append(got, j.mb.Name)
	}
	if len(seen) != len(all) {
		t.Fatalf("got %d jobs, want %d", len(seen), len(all))
	}
	// The first round takes one job of each of the first three folders.
	if fmt.Sprint(got[:3]) != "[F0 F1 F2]" {
		t.Fatalf("first round %v, want [F0 F1 F2]", got[:3])
	}
}

func TestInterleaveCancel(t *testing.T) {
	in := make(chan []*job, 1)
	in <- []*job{{}, {}}
	out := make(chan *job) // nobody reads
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := interleave(ctx, in, out, 2); err != context.Canceled {
		t.Fatalf("interleave with a cancelled context: %v", err)
	}
}
