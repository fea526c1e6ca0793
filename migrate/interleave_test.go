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
	out := make(chan []*job, 1000)
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
	if err := interleave(context.Background(), in, out, 3, func([]*job) int { return 1 }); err != nil {
		t.Fatal(err)
	}
	close(out)
	var got []string
	seen := map[*job]bool{}
	last := map[string]int{}
	for u := range out {
		if len(u) != 1 {
			t.Fatalf("unit of %d jobs, want 1", len(u))
		}
		j := u[0]
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
	out := make(chan []*job) // nobody reads
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := interleave(ctx, in, out, 2, unitLen); err != context.Canceled {
		t.Fatalf("interleave with a cancelled context: %v", err)
	}
}

// TestInterleaveUnits: units are cut as unit says, in turn across chunks,
// each a run of its chunk in order, and together they hold every job once.
func TestInterleaveUnits(t *testing.T) {
	in := make(chan []*job, 10)
	out := make(chan []*job, 1000)
	want := 0
	for f, n := range []int{7, 2} {
		var c []*job
		for i := 0; i < n; i++ {
			c = append(c, &job{mb: Mailbox{Name: fmt.Sprintf("F%d", f)}, msg: Message{ID: fmt.Sprint(i)}})
		}
		want += n
		in <- c
	}
	close(in)
	if err := interleave(context.Background(), in, out, 2, func([]*job) int { return 3 }); err != nil {
		t.Fatal(err)
	}
	close(out)
	var got []string
	n := 0
	for u := range out {
		s := u[0].mb.Name + ":"
		for _, j := range u {
			s += j.msg.ID
			n++
		}
		got = append(got, s)
	}
	if fmt.Sprint(got) != "[F0:012 F1:01 F0:345 F0:6]" || n != want {
		t.Fatalf("units %v (%d jobs), want [F0:012 F1:01 F0:345 F0:6] (%d)", got, n, want)
	}
}

// TestUnitLen: a fetch unit is a run of small messages of one folder and
// destination, within the count and byte bounds; anything else goes alone.
func TestUnitLen(t *testing.T) {
	mk := func(folder, loc string, sizes ...int64) []*job {
		var c []*job
		for i, s := range sizes {
			c = append(c, &job{mb: Mailbox{Name: folder}, dest: folder, msg: Message{ID: fmt.Sprint(i), Size: s, Loc: loc}})
		}
		return c
	}
	many := make([]int64, maxUnitMessages+5)
	for i := range many {
		many[i] = 100
	}
	cases := []struct {
		name  string
		chunk []*job
		want  int
	}{
		{"one", mk("A", "", 10), 1},
		{"small run", mk("A", "", 10, 20, 30), 3},
		{"count bound", mk("A", "", many...), maxUnitMessages},
		{"byte bound", mk("A", "", maxUnitMessageLen, maxUnitMessageLen, 1), 2},
		{"large first goes alone", mk("A", "", maxUnitMessageLen+1, 10, 10), 1},
		{"large ends the run", mk("A", "", 10, maxUnitMessageLen+1, 10), 1},
		{"empty messages", mk("A", "", 0, 0), 2},
		{"folder ends the run", append(mk("A", "", 10, 10), mk("B", "", 10)...), 2},
		{"server name ends the run", append(mk("A", "x", 10), mk("A", "y", 10)...), 1},
	}
	for _, c := range cases {
		if got := unitLen(c.chunk); got != c.want {
			t.Errorf("%s: unitLen %d, want %d", c.name, got, c.want)
		}
	}
}
