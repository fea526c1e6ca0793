//go:build !linux

package faultproxy

import (
	"net"
	"time"
)

// waitSent gives the kernel a moment to send what was written to c before
// an RST discards it (no portable way to look at the send queue).
func waitSent(c *net.TCPConn, max time.Duration, done <-chan struct{}) {
	select {
	case <-done:
	case <-time.After(min(max, 50*time.Millisecond)):
	}
}
