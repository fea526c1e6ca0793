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
