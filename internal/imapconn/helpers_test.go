package imapconn

import (
	"net"
	"testing"
)

func splitAddr(t *testing.T, addr string) (string, string) {
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	return h, p
}

// serveLocal accepts connections on 127.0.0.1 until the test ends and
// runs handle on each (which closes it when done); it returns the address.
func serveLocal(t *testing.T, handle func(net.Conn)) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go handle(c)
		}
	}()
	return ln.Addr().String()
}

// newSilentServer greets and then reads forever without answering; it
// returns the port.
func newSilentServer(t *testing.T) string {
	addr := serveLocal(t, func(c net.Conn) {
		defer c.Close()
		c.Write([]byte("* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] hi\r\n"))
		buf := make([]byte, 1024)
		for {
			if _, err := c.Read(buf); err != nil {
				return
			}
		}
	})
	_, p, _ := net.SplitHostPort(addr)
	return p
}
