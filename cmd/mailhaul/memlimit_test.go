package main

import "testing"

func TestNextMemoryLimit(t *testing.T) {
	for _, c := range []struct{ limit, live, want int64 }{
		{40 << 20, 10 << 20, 40 << 20}, // well under: unchanged
		{40 << 20, 30 << 20, 40 << 20}, // at three quarters: unchanged
		{40 << 20, 36 << 20, 40 << 20}, // at nine tenths: unchanged
		{40 << 20, 38 << 20, 57 << 20}, // above: one and a half times live
		{40 << 20, 90 << 20, 135 << 20},
		{135 << 20, 20 << 20, 135 << 20}, // never lowered
	} {
		if got := nextMemoryLimit(c.limit, c.live); got != c.want {
			t.Errorf("nextMemoryLimit(%d MiB, %d MiB) = %d MiB, want %d MiB", c.limit>>20, c.live>>20, got>>20, c.want>>20)
		}
	}
}
