package main

import (
	"bytes"
	"os"
	"runtime/metrics"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"
)

// Profiles for benchmarks and for finding where memory goes (see the
// README's Development section). Both are off unless the environment asks:
//
//	MAILHAUL_CPUPROFILE=FILE  a CPU profile of the whole run
//	MAILHAUL_MEMPROFILE=FILE  a heap profile taken when the live heap was
//	                          at its largest (sampled every 100 ms)
//
// A %p in FILE is replaced by the process ID: one file per process.

// profiled runs the command line with the profiles the environment asks
// for and returns its exit code. Called once, by main.
func profiled(args []string) int {
	if p := os.Getenv("MAILHAUL_CPUPROFILE"); p != "" {
		if f, err := os.Create(profilePath(p)); err == nil {
			pprof.StartCPUProfile(f)
			defer func() { pprof.StopCPUProfile(); f.Close() }()
		}
	}
	if p := os.Getenv("MAILHAUL_MEMPROFILE"); p != "" {
		stop := make(chan struct{})
		done := make(chan []byte)
		go peakHeapProfile(stop, done, 100*time.Millisecond)
		defer func() {
			close(stop)
			os.WriteFile(profilePath(p), <-done, 0o600)
		}()
	}
	return run(args)
}

// peakHeapProfile takes a heap profile every time the live heap passes
// its largest size so far by a tenth, until stop is closed, and sends the
// last one on done.
func peakHeapProfile(stop <-chan struct{}, done chan<- []byte, period time.Duration) {
	sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	var peak uint64
	var prof bytes.Buffer
	tick := time.NewTicker(period)
	defer tick.Stop()
	for {
		metrics.Read(sample)
		if live := sample[0].Value.Uint64(); live > peak+peak/10 || prof.Len() == 0 {
			peak = live
			prof.Reset()
			pprof.Lookup("heap").WriteTo(&prof, 0)
		}
		select {
		case <-stop:
			done <- prof.Bytes()
			return
		case <-tick.C:
		}
	}
}

// profilePath puts the process ID in place of %p.
func profilePath(p string) string {
	return strings.ReplaceAll(p, "%p", strconv.Itoa(os.Getpid()))
}
