package imapconn

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// fetchScriptServer is an IMAP server that answers the n-th UID FETCH (from
// 1) with fetch(n, the mailbox selected, its tag): the FETCH responses
// and the tagged reply. It takes any LOGIN, and every mailbox holds 2
// messages.
func fetchScriptServer(t *testing.T, fetch func(n int, selected, tag string) string) (host, port string) {
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
				io.WriteString(c, "* 2 EXISTS\r\n* OK [UIDVALIDITY 7] v\r\n"+tag+" OK [READ-ONLY] done\r\n")
			case "UID":
				fetches++
				io.WriteString(c, fetch(fetches, selected, tag))
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

// uidLastServer sends FETCH responses with the UID after the body. Its
// first UID FETCH (in mailbox A) answers with an orphan and then NO;
// every later UID FETCH sends body "B-1" for UID 1 only if B is selected.
func uidLastServer(t *testing.T) (host, port string) {
	return fetchScriptServer(t, func(n int, selected, tag string) string {
		switch {
		case n == 1:
			return "* 1 FETCH (BODY[] {3}\r\nA-1 UID 1)\r\n" + tag + " NO [UNAVAILABLE] try later\r\n"
		case selected == "B":
			return "* 1 FETCH (BODY[] {3}\r\nB-1 UID 1)\r\n" + tag + " OK done\r\n"
		}
		return tag + " OK done\r\n"
	})
}

func dialScripted(t *testing.T, host, port string) *Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := Dial(ctx, &Config{Endpoint: Endpoint{Host: host, Port: port, User: "u"}, InsecurePlaintext: true, Password: "p"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
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
			if r, _, ok := o.Section(WholeBody(nil)); ok {
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
	ctx := context.Background()
	c := dialScripted(t, host, port)
	if _, err := c.Select(ctx, "A", true); err != nil {
		t.Fatal(err)
	}
	// fetchOne takes no orphan after a failed command: A's stays kept.
	if _, err := fetchOne(t, c); err == nil {
		t.Fatal("the scripted NO was not an error")
	}
	c.TakeOrphans(func(*Orphan) bool { return false }) // waits for the handler
	if n := len(c.orphans.kept); n != 1 {
		t.Fatalf("%d orphans kept after the failed FETCH, want 1", n)
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

// TestOrphansFailedCommand: a listing whose UID FETCH fails after its
// responses (NO [UNAVAILABLE], retried on the same connection with the
// mailbox still selected) leaves nothing for the retry to get twice.
func TestOrphansFailedCommand(t *testing.T) {
	host, port := fetchScriptServer(t, func(n int, _, tag string) string {
		resp := "* 1 FETCH (BODY[HEADER.FIELDS (MESSAGE-ID)] {3}\r\nh-1 UID 1)\r\n* 2 FETCH (BODY[HEADER.FIELDS (MESSAGE-ID)] {3}\r\nh-2 UID 2)\r\n"
		if n == 1 {
			return resp + tag + " NO [UNAVAILABLE] try later\r\n"
		}
		return resp + tag + " OK done\r\n"
	})
	ctx := context.Background()
	c := dialScripted(t, host, port)
	sec := &imap.FetchItemBodySection{Specifier: imap.PartSpecifierHeader, HeaderFields: []string{"Message-ID"}, Peek: true}
	list := func() ([]imap.UID, error) {
		if _, err := c.Select(ctx, "F", true); err != nil { // the second time: no EXAMINE sent
			t.Fatal(err)
		}
		var got []imap.UID
		err := c.Do(ctx, func() error {
			set := imap.UIDSetNum(1, 2)
			return CollectEach(c, c.Fetch(set, &imap.FetchOptions{UID: true, BodySection: []*imap.FetchItemBodySection{sec}}), set,
				func(b *imapclient.FetchMessageBuffer) { got = append(got, b.UID) })
		})
		return got, err
	}
	if _, err := list(); err == nil {
		t.Fatal("the scripted NO was not an error")
	}
	got, err := list()
	slices.Sort(got)
	if err != nil || fmt.Sprint(got) != "[1 2]" {
		t.Fatalf("the retry listed %v (%v), want [1 2]", got, err)
	}
}

// TestOrphansClosedConnection: what a connection kept is dropped however
// its client closes (as Pool.Discard closes a broken one), not only by
// Conn.Close.
func TestOrphansClosedConnection(t *testing.T) {
	big := strings.Repeat("x", 300<<10) // kept in a temporary file
	host, port := fetchScriptServer(t, func(_ int, _, tag string) string {
		return fmt.Sprintf("* 1 FETCH (BODY[] {%d}\r\n%s UID 1)\r\n%s NO [SERVERBUG] Some messages could not be FETCHed\r\n", len(big), big, tag)
	})
	c := dialScripted(t, host, port)
	if _, err := c.Select(context.Background(), "A", true); err != nil {
		t.Fatal(err)
	}
	fetchOne(t, c)
	c.TakeOrphans(func(*Orphan) bool { return false })
	c.orphans.mu.Lock()
	kept := append([]*Orphan(nil), c.orphans.kept...)
	c.orphans.mu.Unlock()
	if len(kept) != 1 || len(kept[0].files) != 1 {
		t.Fatalf("kept %d orphans, want 1 with its body in a file", len(kept))
	}
	f := kept[0].files[0].f
	c.Client.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c.orphans.mu.Lock()
		n := len(c.orphans.kept)
		c.orphans.mu.Unlock()
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the closed connection still keeps its orphan")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := f.Stat(); err == nil {
		t.Error("the orphan's temporary file is still open")
	}
}
