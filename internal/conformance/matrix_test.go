package conformance

import "testing"

// TestSinks runs every sink case against every sink target.
func TestSinks(t *testing.T) { RunSinks(t, SinkTargets()) }

// TestSources runs every source case against every source target.
func TestSources(t *testing.T) { RunSources(t, SourceTargets()) }
