package conformance

import "testing"

// TestSinks runs every sink case against every sink target.
func TestSinks(t *testing.T) { RunSinks(t, SinkTargets()) }
