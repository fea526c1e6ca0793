package sources_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailhaul/mailhaul/internal/testserver/fakeimap"
	"github.com/mailhaul/mailhaul/migrate"
)

// TestIMAPEmptyFoldersAreNotExamined: a folder that LIST-STATUS (or,
// without it, STATUS) says is empty is listed without an EXAMINE — an
// account of 100,000 mostly empty folders is not 100,000 round trips —
// while a folder with messages is examined and listed in full. Mailboxes
// says which folders are empty (Mailbox.Empty).
func TestIMAPEmptyFoldersAreNotExamined(t *testing.T) {
	for _, noListStatus := range []bool{false, true} {
		var mu sync.Mutex
		examined := map[string]int{}
		o := fakeimap.Options{NoListStatus: noListStatus}
		o.Hooks.Command = func(ev fakeimap.CommandEvent) fakeimap.Action {
			if ev.Name == "EXAMINE" || ev.Name == "SELECT" {
				mu.Lock()
				examined[ev.Line]++
				mu.Unlock()
			}
			return fakeimap.Action{}
		}
		srv := fakeimap.Start(t, o)
		srv.AddUser("u", "p")
		for _, f := range []string{"Empty1", "Empty2", "Full"} {
			if err := srv.Create("u", f); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := srv.Append("u", "Full", []byte("Subject: x\r\n\r\nx\r\n"), nil, time.Now()); err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		src := openFake(t, srv)
		mbs, err := src.Mailboxes(ctx)
		if err != nil {
			t.Fatal(err)
		}
		counts := map[string]int{}
		for _, mb := range mbs {
			// What the sink is told (migrate.Mailbox.Empty): it creates
			// an empty folder without selecting it.
			if want := mb.Name != "Full"; mb.Empty != want {
				t.Errorf("LIST-STATUS off %v: %s has Empty %v, want %v", noListStatus, mb.Name, mb.Empty, want)
			}
			if err := src.List(ctx, mb, func(migrate.Message) error { counts[mb.Name]++; return nil }); err != nil {
				t.Fatalf("list %s: %v", mb.Name, err)
			}
		}
		src.Close()
		if counts["Full"] != 1 || counts["Empty1"] != 0 || counts["Empty2"] != 0 {
			t.Errorf("LIST-STATUS off %v: listed %v", noListStatus, counts)
		}
		mu.Lock()
		n := 0
		for line, k := range examined {
			n += k
			if k > 0 && !containsAny(line, "Full", "INBOX") {
				t.Errorf("LIST-STATUS off %v: an empty folder was examined: %q", noListStatus, line)
			}
		}
		if n == 0 {
			t.Errorf("LIST-STATUS off %v: the folder with a message was not examined", noListStatus)
		}
		mu.Unlock()
	}
}

func containsAny(s string, subs ...string) bool {
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}
