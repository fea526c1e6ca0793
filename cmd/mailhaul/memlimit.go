package main

import (
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// defaultMemoryLimit is the Go runtime's soft memory limit when GOMEMLIMIT
// is not set. Message bodies held in memory are bounded by the engine's
// budget (migrate.DefaultMemBudget), the rest of the heap is small; the
// limit makes the collector keep the heap near what is live instead of
// letting it grow to twice that, so that the whole process stays under the
// 64 MiB the README promises.
const defaultMemoryLimit = 40 << 20

// setMemoryLimit sets the soft limit and keeps it above what is live
// (adaptMemoryLimit). Called once, by main, before anything else runs.
func setMemoryLimit() {
	debug.SetMemoryLimit(defaultMemoryLimit)
	go adaptMemoryLimit(defaultMemoryLimit, time.Second)
}

// adaptMemoryLimit raises the soft limit when the live heap comes near
// it, every period, for the life of the process. A soft limit below the
// live heap does not bound memory — nothing live can be freed — but makes
// the collector run back to back: an account of 100,000 folders (whose
// names and numbers are live for the whole run) spent most of its CPU
// collecting. Raised to one and a half times what is live, the limit
// leaves the collector room to work in long strides and goes on keeping
// the heap near the live size; it is never lowered.
func adaptMemoryLimit(limit int64, period time.Duration) {
	sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	for range time.Tick(period) {
		metrics.Read(sample)
		if sample[0].Value.Kind() != metrics.KindUint64 {
			return // not measured by this runtime
		}
		if next := nextMemoryLimit(limit, int64(sample[0].Value.Uint64())); next != limit {
			limit = next
			debug.SetMemoryLimit(limit)
		}
	}
}

// nextMemoryLimit is the limit for a live heap of live bytes: unchanged
// while live stays under nine tenths of it, else one and a half times
// live. (At three quarters, an account of 100,000 folders — 23–29 MB live
// — had the limit raised in some runs and not others, and its peak RSS
// went from 53 to 61 MiB, near the README's bound; with 4 MB of room the
// collector runs often but not back to back.)
func nextMemoryLimit(limit, live int64) int64 {
	if live > limit/10*9 {
		return live + live/2
	}
	return limit
}
