package sources_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/mailhaul/mailhaul/internal/testserver/fakeimap"
	"github.com/mailhaul/mailhaul/migrate"
)

// TestIMAPListSmallAndLarge: a folder of a few messages is listed with one
// EXAMINE and one UID FETCH 1:* (no SEARCH: one round trip, the two are
// pipelined), a folder of more than one listing batch (500) with a SEARCH
// and batches of at most 500 UIDs; both list every message once, in UID
// order, with its flags and Message-ID, with LIST-STATUS and without it.
func TestIMAPListSmallAndLarge(t *testing.T) {
	for _, noListStatus := range []bool{false, true} {
		var mu sync.Mutex
		cmds := map[string][]string{} // folder being examined -> commands
		current := map[int]string{}   // connection -> folder examined on it
		o := fakeimap.Options{NoListStatus: noListStatus}
		o.Hooks.Command = func(ev fakeimap.CommandEvent) fakeimap.Action {
			mu.Lock()
			defer mu.Unlock()
			if ev.Name == "EXAMINE" {
				current[ev.Conn] = strings.Trim(strings.Fields(ev.Line)[2], `"`)
			}
			if f := current[ev.Conn]; f != "" && ev.Name != "LOGOUT" {
				_, line, _ := strings.Cut(ev.Line, " ") // without the tag
				cmds[f] = append(cmds[f], line)
			}
			return fakeimap.Action{}
		}
		srv := fakeimap.Start(t, o)
		srv.AddUser("u", "p")
		sizes := map[string]int{"Small": 3, "Big": 1203}
		for f, n := range sizes {
			if err := srv.Create("u", f); err != nil {
				t.Fatal(err)
			}
			for i := 0; i < n; i++ {
				var flags []imap.Flag
				if i%2 == 0 {
					flags = []imap.Flag{imap.FlagSeen}
				}
				msg := fmt.Sprintf("Message-ID: <%s-%d@x>\r\nSubject: %d\r\n\r\nbody %d\r\n", f, i, i, i)
				if _, err := srv.Append("u", f, []byte(msg), flags, time.Unix(1600000000+int64(i), 0)); err != nil {
					t.Fatal(err)
				}
			}
		}
		ctx := context.Background()
		src := openFake(t, srv)
		mbs, err := src.Mailboxes(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, mb := range mbs {
			n, ok := sizes[mb.Name]
			if !ok {
				continue
			}
			var got []migrate.Message
			if err := src.List(ctx, mb, func(m migrate.Message) error { got = append(got, m); return nil }); err != nil {
				t.Fatalf("list %s: %v", mb.Name, err)
			}
			if len(got) != n {
				t.Fatalf("LIST-STATUS off %v: %s listed %d messages, want %d", noListStatus, mb.Name, len(got), n)
			}
			for i, m := range got {
				uid, _ := strconv.Atoi(m.ID)
				if uid != i+1 || m.MessageID != fmt.Sprintf("<%s-%d@x>", mb.Name, i) || (len(m.Flags) == 1) != (i%2 == 0) {
					t.Fatalf("%s message %d: UID %s, Message-ID %q, flags %v", mb.Name, i, m.ID, m.MessageID, m.Flags)
				}
			}
		}
		src.Close()
		mu.Lock()
		if c := cmds["Small"]; len(c) != 2 || !strings.HasPrefix(c[0], "EXAMINE ") || !strings.HasPrefix(c[1], "UID FETCH 1:* ") {
			t.Errorf("LIST-STATUS off %v: Small listed with %q, want an EXAMINE and UID FETCH 1:*", noListStatus, c)
		}
		var fetches, searches int
		for _, c := range cmds["Big"] {
			switch {
			case strings.HasPrefix(c, "UID SEARCH"):
				searches++
			case strings.HasPrefix(c, "UID FETCH"):
				fetches++
			}
		}
		if searches != 1 || fetches != 3 {
			t.Errorf("LIST-STATUS off %v: Big listed with %d SEARCHes and %d FETCHes (want 1 and 3): %v", noListStatus, searches, fetches, cmds["Big"])
		}
		mu.Unlock()
	}
}
