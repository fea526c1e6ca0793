package sinks_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/mailhaul/mailhaul/internal/testserver/fakeimap"
	"github.com/mailhaul/mailhaul/migrate"
)

// TestIMAPPrepareManyFolders: creating n folders costs n CREATEs and no
// LIST after the first (a LIST after every CREATE read n²/2 lines: for
// 100,000 folders, 5 billion); the folders created are known to the sink
// without asking again, and a sink opened afterwards finds them all and
// creates none again.
func TestIMAPPrepareManyFolders(t *testing.T) {
	const n = 2000
	ctx := context.Background()
	srv := fakeimap.Start(t, fakeimap.Options{})
	srv.AddUser("u", "p")
	open := fakeSinkOpener(t, "imap://u@"+srv.Addr())
	s := open()
	lists := srv.Stats().Commands["LIST"]
	sent := migrate.Mailbox{Name: "Sent Messages", SpecialUse: migrate.UseSent}
	if d, err := s.Prepare(ctx, sent, sent.Name); err != nil || d != "Sent Messages" {
		t.Fatalf("Prepare %q: %q, %v", sent.Name, d, err)
	}
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("a%02d/b%04d", i%50, i)
		if d, err := s.Prepare(ctx, migrate.Mailbox{Name: name}, name); err != nil || d != name {
			t.Fatalf("Prepare %q: %q, %v", name, d, err)
		}
	}
	// A second source folder of the same use goes where the first went.
	if d, err := s.Prepare(ctx, migrate.Mailbox{Name: "Sent", SpecialUse: migrate.UseSent}, "Sent"); err != nil || d != "Sent" {
		t.Errorf("second Sent folder: %q, %v (the first has the use: it goes to a folder of its own name)", d, err)
	}
	st := srv.Stats()
	if got := st.Commands["LIST"] - lists; got != 0 {
		t.Errorf("%d LISTs while creating %d folders, want none", got, n+2)
	}
	if got := st.Commands["CREATE"]; got != n+2 {
		t.Errorf("%d CREATEs for %d folders", got, n+2)
	}
	s2 := open()
	for _, name := range []string{"a07/b0007", "Sent Messages", fmt.Sprintf("a%02d/b%04d", (n-1)%50, n-1)} {
		if d, err := s2.Resolve(ctx, migrate.Mailbox{Name: name}, name); err != nil || d != name {
			t.Errorf("a new sink resolves %q to %q, %v", name, d, err)
		}
	}
	before := st.Commands["CREATE"]
	for _, name := range []string{"a07/b0007", "Sent Messages"} {
		if _, err := s2.Prepare(ctx, migrate.Mailbox{Name: name}, name); err != nil {
			t.Fatal(err)
		}
	}
	if got := srv.Stats().Commands["CREATE"] - before; got != 0 {
		t.Errorf("a new sink created %d folders that exist", got)
	}
}
