package batch

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestStateJournal(t *testing.T) {
	dir := t.TempDir()
	p := StatePath(dir, "accounts", Shard{1, 3})
	if filepath.Base(p) != "batch-accounts.shard-1-of-3.state" {
		t.Fatalf("path %s", p)
	}
	s, err := Open(p, Header{Batch: "accounts", Shard: "1/3", Version: "v1"})
	if err != nil {
		t.Fatal(err)
	}
	// A second process (here: a second Open) is refused while the first
	// holds the state, and a reader sees it live.
	if _, err := Open(p, Header{Batch: "accounts"}); !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), "pid ") {
		t.Fatalf("second Open: %v", err)
	}
	for _, r := range []Record{
		{Key: "a", Line: 2, Status: Running},
		{Key: "b", Line: 3, Status: Running},
		{Key: "a", Line: 2, Status: Done, Copied: 5},
	} {
		if err := s.Put(r); err != nil {
			t.Fatal(err)
		}
	}
	_, recs, live, err := Load(p)
	if err != nil || !live || recs["a"].Status != Done || recs["a"].Copied != 5 || recs["b"].Status != Running {
		t.Fatalf("Load while held: live %v %+v %v", live, recs, err)
	}
	// A crash in the middle of a line: the torn line is ignored.
	f, _ := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
	f.WriteString(`{"key":"b","status":"do`)
	f.Close()
	s.Close() // as if killed: the lock goes with the process

	_, recs, live, err = Load(p)
	if err != nil || live {
		t.Fatalf("Load after the crash: live %v, %v", live, err)
	}
	if recs["b"].Status != Pending || !strings.Contains(recs["b"].Reason, "interrupted") {
		t.Errorf("running account of a dead batch: %+v, want pending (interrupted)", recs["b"])
	}
	s, err = Open(p, Header{Batch: "accounts", Shard: "1/3", Version: "v2"})
	if err != nil {
		t.Fatal(err)
	}
	if r, _ := s.Get("b"); r.Status != Pending {
		t.Errorf("reopened: b is %s", r.Status)
	}
	if r, _ := s.Get("a"); r.Status != Done || r.Copied != 5 {
		t.Errorf("reopened: a is %+v", r)
	}
	s.Close()
	// Compacted: the header and one line per account.
	data, _ := os.ReadFile(p)
	if n := strings.Count(string(data), "\n"); n != 3 {
		t.Errorf("compacted journal has %d lines:\n%s", n, data)
	}
	if _, err := Open(p, Header{Batch: "other"}); err == nil || !strings.Contains(err.Error(), "belongs to batch") {
		t.Errorf("state of another batch: %v", err)
	}
	// A line in the middle that does not parse is corruption, not a crash.
	os.WriteFile(p, []byte(string(data[:strings.Index(string(data), "\n")+1])+"garbage\n"+string(data[strings.Index(string(data), "\n")+1:])), 0o600)
	if _, _, _, err := Load(p); err == nil || !strings.Contains(err.Error(), "line 2 is corrupt") {
		t.Errorf("corrupt line: %v", err)
	}
}

func TestStatePaths(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []string{"batch-x.state", "batch-x.shard-0-of-2.state", "batch-x.shard-1-of-2.state", "batch-x.y.state", "batch-xy.shard-0-of-2.state", "batch-x.shard-0-of-2.state.lock"} {
		os.WriteFile(filepath.Join(dir, n), nil, 0o600)
	}
	ps, _ := StatePaths(dir, "x")
	var names []string
	for _, p := range ps {
		names = append(names, filepath.Base(p))
	}
	if got := strings.Join(names, " "); got != "batch-x.shard-0-of-2.state batch-x.shard-1-of-2.state batch-x.state" {
		t.Errorf("StatePaths: %s", got)
	}
}
