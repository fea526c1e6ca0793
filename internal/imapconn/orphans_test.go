package imapconn

import (
	"bufio"
	"context"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// uidLastServer is a scripted IMAP server that sends FETCH responses with
// the UID after the body. Its first UID FETCH (in mailbox A) answers
// with an orphan and then NO, so that no command takes the orphan; every
// later UID FETCH sends body "B-1" for UID 1 only if B is selected.
func uidLastServer(t *testing.T) (host, port string) {
	addr := serveLocal(t, func(c net.Conn) {
		defer c.Close()
		r := bufio.NewReader(c)
		io.WriteString(c, "* OK [CAPABILITY IMAP4rev1] scripted\r\n")
		selected, fetches := "", 0
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			tag, rest, _ := strings.Cut(strings.TrimRight(line, "\r\n"), " ")
			verb, args, _ := strings.Cut(rest, " ")
			switch strings.ToUpper(verb) {
			case "CAPABILITY":
				io.WriteString(c, "* CAPABILITY IMAP4rev1\r\n"+tag+" OK done\r\n")
			case "LOGIN", "NOOP":
				io.WriteString(c, tag+" OK done\r\n")
			case "SELECT", "EXAMINE":
				selected = strings.Trim(strings.Fields(args)[0], `"`)
				io.WriteString(c, "* 1 EXISTS\r\n* OK [UIDVALIDITY 7] v\r\n"+tag+" OK [READ-ONLY] done\r\n")
			case "UID":
				fetches++
				switch {
				case fetches == 1:
					io.WriteString(c, "* 1 FETCH (BODY[] {3}\r\nA-1 UID 1)\r\n"+tag+" NO [UNAVAILABLE] try later\r\n")
				case selected == "B":
					io.WriteString(c, "* 1 FETCH (BODY[] {3}\r\nB-1 UID 1)\r\n"+tag+" OK done\r\n")
				default:
					io.WriteString(c, tag+" OK done\r\n")
				}
			case "LOGOUT":
				io.WriteString(c, "* BYE bye\r\n"+tag+" OK done\r\n")
				return
			default:
				io.WriteString(c, tag+" BAD unknown\r\n")
			}
		}
	})
	return splitAddr(t, addr)
}

// fetchOne runs UID FETCH 1 BODY.PEEK[] and returns the body it got,
// routed or orphaned.
func fetchOne(t *testing.T, c *Conn) (string, error) {
	var body string
	err := c.Do(context.Background(), func() error {
		cmd := c.Fetch(imap.UIDSetNum(1), &imap.FetchOptions{UID: true, BodySection: []*imap.FetchItemBodySection{{Peek: true}}})
		for m := cmd.Next(); m != nil; m = cmd.Next() {
			for it := m.Next(); it != nil; it = m.Next() {
				if b, ok := it.(imapclient.FetchItemDataBodySection); ok && b.Literal != nil {
					data, _ := io.ReadAll(b.Literal)
					body = string(data)
				}
			}
		}
		if err := cmd.Close(); err != nil {
			return err
		}
		for _, o := range c.TakeOrphans(func(o *Orphan) bool { return o.UID == 1 }) {
			if r, _, ok := o.Section(WholeBody(0)); ok {
				data, _ := io.ReadAll(r)
				body = string(data)
			}
			o.Close()
		}
		return nil
	})
	return body, err
}

// TestOrphans: a FETCH response whose UID comes after its body reaches
// its command through TakeOrphans; one left behind by a failed command is
// dropped when another mailbox is selected, so that a UID of that mailbox
// never gets a message of the one before.
func TestOrphans(t *testing.T) {
	host, port := uidLastServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := Dial(ctx, &Config{Endpoint: Endpoint{Host: host, Port: port, User: "u"}, InsecurePlaintext: true, Password: "p"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Select(ctx, "A", true); err != nil {
		t.Fatal(err)
	}
	if _, err := fetchOne(t, c); err == nil {
		t.Fatal("the scripted NO was not an error")
	}
	if _, err := c.Select(ctx, "C", true); err != nil {
		t.Fatal(err)
	}
	if body, err := fetchOne(t, c); err != nil || body != "" {
		t.Fatalf("UID 1 of C: got %q (%v), want nothing: A's orphan was kept across EXAMINE", body, err)
	}
	if _, err := c.Select(ctx, "B", true); err != nil {
		t.Fatal(err)
	}
	if body, err := fetchOne(t, c); err != nil || body != "B-1" {
		t.Fatalf("UID 1 of B: got %q (%v), want B-1", body, err)
	}
}
