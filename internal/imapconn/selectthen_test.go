package imapconn

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// scriptedServer logs any user in and hands each later command line to
// answer, which writes the replies (answer may read more lines first).
func scriptedServer(t *testing.T, answer func(r *bufio.Reader, w net.Conn, tag, cmd string)) *Config {
	addr := serveLocal(t, func(c net.Conn) {
		defer c.Close()
		fmt.Fprint(c, "* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=PLAIN] hi\r\n")
		r := bufio.NewReader(c)
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			tag, cmd, _ := strings.Cut(strings.TrimRight(line, "\r\n"), " ")
			switch {
			case strings.HasPrefix(cmd, "AUTHENTICATE"), strings.HasPrefix(cmd, "LOGIN"):
				fmt.Fprintf(c, "%s OK [CAPABILITY IMAP4rev1] in\r\n", tag)
			case strings.HasPrefix(cmd, "CAPABILITY"):
				fmt.Fprintf(c, "* CAPABILITY IMAP4rev1\r\n%s OK done\r\n", tag)
			case strings.HasPrefix(cmd, "LOGOUT"):
				fmt.Fprintf(c, "* BYE bye\r\n%s OK done\r\n", tag)
				return
			default:
				answer(r, c, tag, cmd)
			}
		}
	})
	host, port := splitAddr(t, addr)
	return &Config{Endpoint: Endpoint{Host: host, Port: port, User: "u"}, InsecurePlaintext: true, Password: "p", IdleTimeout: 10 * time.Second}
}

// TestSelectThenPipelines: the command SelectThen sends behind an EXAMINE
// reaches the server before the EXAMINE is answered (the server here
// answers neither until it has both lines: without pipelining the test
// times out), its results are read, and the folder counts as selected.
// After a refused EXAMINE the error is the EXAMINE's and no folder is
// selected.
func TestSelectThenPipelines(t *testing.T) {
	cfg := scriptedServer(t, func(r *bufio.Reader, w net.Conn, tag, cmd string) {
		if !strings.HasPrefix(cmd, "EXAMINE ") {
			fmt.Fprintf(w, "%s BAD unexpected\r\n", tag)
			return
		}
		next, err := r.ReadString('\n')
		if err != nil {
			return
		}
		ftag, fcmd, _ := strings.Cut(strings.TrimRight(next, "\r\n"), " ")
		if strings.Contains(cmd, "Missing") {
			fmt.Fprintf(w, "%s NO [NONEXISTENT] no such folder\r\n%s BAD No mailbox selected\r\n", tag, ftag)
			return
		}
		fmt.Fprintf(w, "* 2 EXISTS\r\n* OK [UIDVALIDITY 7] ok\r\n%s OK [READ-ONLY] examined\r\n", tag)
		if !strings.HasPrefix(fcmd, "UID FETCH 1:* ") {
			fmt.Fprintf(w, "%s BAD expected UID FETCH 1:*, got %q\r\n", ftag, fcmd)
			return
		}
		fmt.Fprintf(w, "* 1 FETCH (UID 3 FLAGS (\\Seen))\r\n* 2 FETCH (UID 9 FLAGS ())\r\n%s OK fetched\r\n", ftag)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := Dial(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var uids []imap.UID
	send := func() func() error {
		cmd := c.Fetch(imap.UIDSet{imap.UIDRange{Start: 1}}, &imap.FetchOptions{UID: true, Flags: true})
		return func() error {
			return CollectEach(c, cmd, imap.UIDSet{imap.UIDRange{Start: 1}}, func(b *imapclient.FetchMessageBuffer) { uids = append(uids, b.UID) })
		}
	}
	data, err := c.SelectThen(ctx, "Work", true, send)
	if err != nil {
		t.Fatal(err)
	}
	if data.NumMessages != 2 || data.UIDValidity != 7 || len(uids) != 2 || uids[0] != 3 || uids[1] != 9 {
		t.Fatalf("EXAMINE data %+v, UIDs %v", data, uids)
	}
	if c.Selected != "Work" || !c.ReadOnly {
		t.Fatalf("selected %q read-only %v after SelectThen", c.Selected, c.ReadOnly)
	}
	uids = nil
	data, err = c.SelectThen(ctx, "Missing", true, send)
	if data != nil || IMAPError(err) == nil || !strings.Contains(err.Error(), "no such folder") {
		t.Fatalf("refused EXAMINE: data %v, error %v (want the EXAMINE's NO)", data, err)
	}
	if c.Selected != "" || len(uids) != 0 {
		t.Fatalf("after a refused EXAMINE: selected %q, UIDs %v", c.Selected, uids)
	}
}
