package faultproxy

import (
	"net"
	"time"

	"golang.org/x/sys/unix"
)

// waitSent waits until the kernel has no unacknowledged bytes left in c's
// send queue (SIOCOUTQ), at most max or until done is closed, so that an
// RST sent next does not throw away bytes already forwarded: closing with
// SO_LINGER 0 discards the send queue.
func waitSent(c *net.TCPConn, max time.Duration, done <-chan struct{}) {
	rc, err := c.SyscallConn()
	if err != nil {
		return
	}
	deadline := time.Now().Add(max)
	for time.Now().Before(deadline) {
		queued := 0
		var ioErr error
		if err := rc.Control(func(fd uintptr) { queued, ioErr = unix.IoctlGetInt(int(fd), unix.SIOCOUTQ) }); err != nil || ioErr != nil || queued == 0 {
			return
		}
		select {
		case <-done:
			return
		case <-time.After(time.Millisecond):
		}
	}
}
