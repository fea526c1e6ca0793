package migrate

import (
	"context"
	"fmt"
	"testing"
	"time"
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
	if err := interleave(context.Background(), in, out, 3, func([]*job) int { return 1 }, nil); err != nil {
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
	if err := interleave(ctx, in, out, 2, unitLen, nil); err != context.Canceled {
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
	if err := interleave(context.Background(), in, out, 2, func([]*job) int { return 3 }, nil); err != nil {
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

// TestInterleaveOrder: a folder's later chunks join its place in the
// window, so its units go out in listing order with tickets 0, 1, 2, ...
// in that order, whatever the lister's chunking.
func TestInterleaveOrder(t *testing.T) {
	in := make(chan []*job, 10)
	out := make(chan []*job, 1000)
	mk := func(f string, from, n int) []*job {
		var c []*job
		for i := from; i < from+n; i++ {
			c = append(c, &job{mb: Mailbox{Name: f}, msg: Message{ID: fmt.Sprint(i)}})
		}
		return c
	}
	in <- mk("A", 0, 3)
	in <- mk("B", 0, 2)
	in <- mk("A", 3, 4) // A's second chunk while its first is in the window
	in <- mk("A", 7, 2)
	close(in)
	var tk turns
	if err := interleave(context.Background(), in, out, 3, func([]*job) int { return 2 }, &tk); err != nil {
		t.Fatal(err)
	}
	close(out)
	next := map[string]int{}
	tickets := map[string]int{}
	for u := range out {
		f := u[0].mb.Name
		if u[0].turn == nil || u[0].ticket != tickets[f] {
			t.Fatalf("unit of %s with ticket %d, want %d", f, u[0].ticket, tickets[f])
		}
		tickets[f]++
		for _, j := range u {
			var i int
			fmt.Sscan(j.msg.ID, &i)
			if i != next[f] {
				t.Fatalf("folder %s: message %d after %d", f, i, next[f]-1)
			}
			next[f]++
		}
	}
	if next["A"] != 9 || next["B"] != 2 {
		t.Fatalf("sent %v", next)
	}
}

// TestTurns: a unit waits for the units of its folder before it, not for
// other folders'; a folder is full at its limit of messages in flight and
// forgotten when none is; folders go to the least loaded appender.
func TestTurns(t *testing.T) {
	tk := turns{limit: 3}
	a0, n0 := tk.ticket("A", 1)
	a1, n1 := tk.ticket("A", 1)
	b0, m0 := tk.ticket("B", 1)
	if a0 != a1 || n0 != 0 || n1 != 1 || m0 != 0 {
		t.Fatalf("tickets %d %d %d", n0, n1, m0)
	}
	ctx := context.Background()
	if err := tk.await(ctx, b0, m0); err != nil {
		t.Fatal(err)
	}
	waited := make(chan error)
	go func() { waited <- tk.await(ctx, a1, n1) }()
	select {
	case err := <-waited:
		t.Fatalf("A's second unit went before the first (%v)", err)
	case <-time.After(50 * time.Millisecond):
	}
	tk.done(a0, n0)
	if err := <-waited; err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithCancel(ctx)
	if tk.full("A") {
		t.Fatal("A full with 2 of 3 in flight")
	}
	a2, n2 := tk.ticket("A", 1)
	if !tk.full("A") || tk.full("B") {
		t.Fatalf("full: A %v (3 of 3), B %v (1 of 3)", tk.full("A"), tk.full("B"))
	}
	go func() { waited <- tk.await(cctx, a2, n2) }()
	cancel()
	if err := <-waited; err != context.Canceled {
		t.Fatalf("await after cancel: %v", err)
	}
	freed := tk.freedCh()
	tk.left(a0) // A's first message through its appender
	select {
	case <-freed:
	default:
		t.Fatal("a message left without a wake-up")
	}
	if tk.full("A") {
		t.Fatal("A still full")
	}
	tk.done(a1, n1)
	tk.done(a2, n2)
	tk.left(a1)
	tk.done(b0, m0)
	tk.left(b0)
	if len(tk.folders) != 1 || tk.folders["A"] != a2 {
		t.Fatalf("folders left: %v, want A (a message in flight)", tk.folders)
	}
	tk.left(a2)
	if len(tk.folders) != 0 {
		t.Fatalf("folders left: %v", tk.folders)
	}
	tk2 := turns{appenders: 3}
	x, _ := tk2.ticket("X", 1)
	y, _ := tk2.ticket("Y", 1)
	z, _ := tk2.ticket("Z", 1)
	if x.appender == y.appender || y.appender == z.appender || x.appender == z.appender {
		t.Fatalf("appenders %d %d %d: three folders on three appenders", x.appender, y.appender, z.appender)
	}
}

// TestInterleaveFullFolder: a folder with its limit in flight waits while
// the other folders are served, and goes on when its messages leave.
func TestInterleaveFullFolder(t *testing.T) {
	in := make(chan []*job, 2)
	out := make(chan []*job, 100)
	mk := func(f string, n int) []*job {
		var c []*job
		for i := 0; i < n; i++ {
			c = append(c, &job{mb: Mailbox{Name: f}, msg: Message{ID: fmt.Sprint(i)}})
		}
		return c
	}
	in <- mk("A", 5)
	in <- mk("B", 4)
	close(in)
	tk := turns{limit: 2}
	done := make(chan error, 1)
	go func() { done <- interleave(context.Background(), in, out, 2, func([]*job) int { return 1 }, &tk) }()
	var got []string
	for len(got) < 6 { // A0 B0 A1 B1 B2 B3: A is full after two
		select {
		case u := <-out:
			got = append(got, u[0].mb.Name+u[0].msg.ID)
			if u[0].mb.Name == "B" {
				tk.left(u[0].turn) // B's appender keeps up
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("stuck after %v", got)
		}
	}
	if fmt.Sprint(got) != "[A0 B0 A1 B1 B2 B3]" {
		t.Fatalf("sent %v", got)
	}
	select {
	case u := <-out:
		t.Fatalf("sent %s%s with A full", u[0].mb.Name, u[0].msg.ID)
	case <-time.After(50 * time.Millisecond):
	}
	ft := tk.folders["A"]
	for i := 0; i < 3; i++ {
		tk.left(ft)
		u := <-out
		if want := fmt.Sprint(2 + i); u[0].mb.Name != "A" || u[0].msg.ID != want {
			t.Fatalf("sent %s%s, want A%s", u[0].mb.Name, u[0].msg.ID, want)
		}
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
