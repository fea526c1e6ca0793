package checkpoint

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailhaul/mailhaul/migrate"
)

func TestIntentDoneLifecycle(t *testing.T) {
	p := filepath.Join(t.TempDir(), "state", "x.db")
	s, err := Open(p, "maildir:/a", "maildir:/b")
	if err != nil {
		t.Fatal(err)
	}
	in := []migrate.Intent{
		{Folder: "INBOX", ID: "1", Dest: "INBOX", MessageID: "<1@x>", Size: 10, SHA256: "aa", Date: time.Unix(100, 0)},
		{Folder: "INBOX", ID: "2", Dest: "INBOX", Size: 20},
		{Folder: "Sent", Epoch: "77", ID: "1", Dest: "Sent", Size: 30},
	}
	if err := s.AddIntents(in); err != nil {
		t.Fatal(err)
	}
	pend, _ := s.Pending()
	if len(pend) != 3 {
		t.Fatalf("pending %d", len(pend))
	}
	if err := s.Complete(in[:2], []string{"ref1", ""}); err != nil {
		t.Fatal(err)
	}
	if ok, _ := s.Done("INBOX", "", "1"); !ok {
		t.Error("INBOX/1 not done")
	}
	if ok, _ := s.Done("INBOX", "", "2"); ok {
		t.Error("skipped INBOX/2 recorded as done")
	}
	if ok, _ := s.Done("Sent", "", "1"); ok {
		t.Error("epoch ignored")
	}
	r, ok, _ := s.Lookup("INBOX", "", "1")
	if !ok || r.Ref != "ref1" || r.MessageID != "<1@x>" || r.Date != 100 {
		t.Errorf("record %+v", r)
	}
	s.SetEpoch("Sent", "77")
	s.Close()

	// Reopen: everything durable.
	s, err = Open(p, "maildir:/a", "maildir:/b")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	pend, _ = s.Pending()
	if len(pend) != 1 || pend[0].Folder != "Sent" || pend[0].Epoch != "77" {
		t.Fatalf("pending after reopen %+v", pend)
	}
	if e, ok, _ := s.Epoch("Sent"); !ok || e != "77" {
		t.Errorf("epoch %q %v", e, ok)
	}
	if n, _ := s.Count("INBOX", ""); n != 1 {
		t.Errorf("count %d", n)
	}
}

func TestSecondOpenIsLocked(t *testing.T) {
	p := filepath.Join(t.TempDir(), "x.db")
	s, err := Open(p, "a", "b")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_, err = Open(p, "a", "b")
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second open: %v, want ErrLocked", err)
	}
	if _, err := OpenReadOnly(p); !errors.Is(err, ErrLocked) {
		t.Fatalf("read-only open while a run holds it: %v, want ErrLocked", err)
	}
}

func TestReadOnlyMissingFile(t *testing.T) {
	s, err := OpenReadOnly(filepath.Join(t.TempDir(), "none.db"))
	if s != nil || err != nil {
		t.Fatalf("got %v %v", s, err)
	}
}

func TestConcurrentCommits(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "x.db"), "a", "b")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				in := []migrate.Intent{{Folder: "F", ID: fmt.Sprintf("%d-%d", g, i)}}
				if err := s.AddIntents(in); err != nil {
					t.Error(err)
				}
				if err := s.Complete(in, []string{"r"}); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	if n, _ := s.Count("F", ""); n != 200 {
		t.Fatalf("count %d", n)
	}
}

func TestNoSecretsInPath(t *testing.T) {
	p := PathFor("/state", "imaps://alice@host", "maildir:/x")
	if strings.Contains(p, "alice") || !strings.HasPrefix(p, "/state/") {
		t.Errorf("path %q", p)
	}
	if PathFor("/s", "a", "b") == PathFor("/s", "b", "a") {
		t.Error("direction ignored")
	}
	_ = os.Remove
}

// TestJournalSlots: the slots of a batch are set by one Sending and
// cleared by one Replied that may leave some of them (an unknown outcome)
// as they were; a next run sees exactly the appends still on the wire —
// and only those whose intents are still pending — and carries them into
// its own journal for the run after it.
func TestJournalSlots(t *testing.T) {
	p := filepath.Join(t.TempDir(), "x.db")
	s, err := Open(p, "a", "b")
	if err != nil {
		t.Fatal(err)
	}
	var in []migrate.Intent
	for i := 0; i < 6; i++ {
		in = append(in, migrate.Intent{Folder: "INBOX", ID: fmt.Sprint(i), Dest: "INBOX", Size: 10})
	}
	if err := s.AddIntents(in); err != nil {
		t.Fatal(err)
	}
	if err := s.Sending(2, in[0].Key(), in[1].Key(), in[2].Key(), in[3].Key()); err != nil {
		t.Fatal(err)
	}
	if err := s.Sending(9, in[4].Key()); err != nil {
		t.Fatal(err)
	}
	if err := s.Sending(0, in[5].Key()); err != nil {
		t.Fatal(err)
	}
	// in[1] and in[4] stay "maybe on the wire"; in[5] is answered but its
	// intent stays pending.
	if err := s.Replied(2, 4, 5, 0); err != nil {
		t.Fatal(err)
	}
	if err := s.Complete(in[3:4], []string{"r3"}); err != nil {
		t.Fatal(err)
	}
	s.Close()

	want := map[int]bool{1: true, 4: true}
	for run := 1; run <= 2; run++ {
		s, err = Open(p, "a", "b")
		if err != nil {
			t.Fatal(err)
		}
		for i, x := range in {
			if got := s.WasSending(x.Key()); got != want[i] {
				t.Errorf("run %d: WasSending(%s) = %v, want %v", run, x.ID, got, want[i])
			}
		}
		s.Close()
	}
}

// TestForget: forgotten copies are no longer done, their refs no longer
// owned, and their folder no longer recorded as unchanged; others stay.
func TestForget(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "x.db"), "a", "b")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	in := []migrate.Intent{
		{Folder: "INBOX", Epoch: "7", ID: "1", Dest: "INBOX", Size: 10},
		{Folder: "INBOX", Epoch: "7", ID: "2", Dest: "INBOX", Size: 20},
		{Folder: "Sent", Epoch: "8", ID: "1", Dest: "Sent", Size: 30},
	}
	s.AddIntents(in)
	if err := s.Complete(in, []string{"5:1:INBOX", "5:2:INBOX", "6:1:Sent"}); err != nil {
		t.Fatal(err)
	}
	s.SetFolderVersions(map[string]string{"INBOX": "v1", "Sent": "v2"})
	n, err := s.Forget("INBOX", "7", []string{"2", "99"})
	if err != nil || n != 1 {
		t.Fatalf("Forget = %d, %v", n, err)
	}
	if ok, _ := s.Done("INBOX", "7", "2"); ok {
		t.Error("INBOX/2 still done")
	}
	if ok, _ := s.Done("INBOX", "7", "1"); !ok {
		t.Error("INBOX/1 forgotten too")
	}
	if _, ok, _ := s.Owner("INBOX", "5:2:INBOX"); ok {
		t.Error("the forgotten copy's ref is still owned")
	}
	if _, ok, _ := s.Owner("INBOX", "5:1:INBOX"); !ok {
		t.Error("INBOX/1's ref lost")
	}
	if _, ok, _ := s.FolderVersion("INBOX"); ok {
		t.Error("INBOX still recorded as unchanged")
	}
	if _, ok, _ := s.FolderVersion("Sent"); !ok {
		t.Error("Sent's record lost")
	}
	if n, err := s.Forget("Nowhere", "1", []string{"1"}); err != nil || n != 0 {
		t.Errorf("Forget in an unknown folder = %d, %v", n, err)
	}
}
