package batch

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Status is where an account stands in a batch.
type Status string

const (
	// Pending: not run yet, or interrupted (Reason says so); the next run
	// runs it.
	Pending Status = "pending"
	// Running: a batch process is copying it (or, in a state file no live
	// process holds, was copying it when it died: Load shows it as
	// Pending).
	Running Status = "running"
	// Done: copied completely (exit 0). Run again only with Config.Again.
	Done Status = "done"
	// Partial: the copy finished but some messages were skipped (exit 3);
	// the next run retries it (the copy retries the skipped messages).
	Partial Status = "partial"
	// Failed: the copy stopped on a fatal error (ExitCode, Reason); the
	// next run retries it.
	Failed Status = "failed"
)

// Finished reports whether an account in status s needs no further run.
func (s Status) Finished() bool { return s == Done }

// Record is what the state keeps of one account: the outcome of its last
// run (counts are those of that run: a resumed account counts what the
// earlier runs copied as Already).
type Record struct {
	Key         string  `json:"key"`
	Line        int     `json:"line"`
	Account     string  `json:"account"`
	Source      string  `json:"source"`
	Destination string  `json:"destination"`
	Status      Status  `json:"status"`
	ExitCode    int     `json:"exit_code"`
	Reason      string  `json:"reason,omitempty"`
	Copied      int     `json:"copied"`
	Already     int     `json:"already"`
	Skipped     int     `json:"skipped"`
	Bytes       int64   `json:"bytes"`
	Seconds     float64 `json:"duration_seconds"`
	Attempts    int     `json:"attempts"`
	Started     string  `json:"started,omitempty"`  // RFC 3339, of the last run
	Finished    string  `json:"finished,omitempty"` // RFC 3339, of the last run
	// Updated orders records of one account found in several state files
	// (after the shard count changed): the newest wins.
	Updated time.Time `json:"updated"`
	Shard   string    `json:"shard,omitempty"`
	// Version is the mailhaul that ran the account last.
	Version string `json:"mailhaul_version,omitempty"`
}

// Header is the first line of a state file.
type Header struct {
	Format   int       `json:"mailhaul_batch_state"` // StateFormat
	Batch    string    `json:"batch"`
	Shard    string    `json:"shard,omitempty"`
	Accounts string    `json:"accounts_file,omitempty"`
	Created  time.Time `json:"created"`
	Version  string    `json:"mailhaul_version"` // of the process that opened it last
}

// StateFormat is the Header.Format this package writes and reads.
const StateFormat = 1

// ErrLocked is returned by Open when another process holds the state.
var ErrLocked = errors.New("another mailhaul batch is using this batch state")

// State is an open batch state: a journal of JSON lines (the Header, then
// one Record per change; the last Record of a key wins) beside a lock
// file. Open holds an exclusive flock on "<path>.lock" until Close, so two
// batch processes never interleave on one state. Every Put is written and
// fsynced before it returns, so kill -9 or a power loss loses at most the
// line being written, and a torn last line is ignored when read. Open
// rewrites the journal as one line per account (write-new, fsync, rename).
// Safe for concurrent use.
type State struct {
	path string
	lock *os.File
	mu   sync.Mutex
	f    *os.File
	head Header
	recs map[string]Record
}

// StatePath is the state file of a batch (or of one of its shards) in dir:
// "batch-NAME.state", "batch-NAME.shard-K-of-N.state".
func StatePath(dir, name string, s Shard) string {
	return filepath.Join(dir, "batch-"+name+shardSuffix(s)+".state")
}

// ReportPrefix is the path, without extension, of the report files of a
// batch (or shard) in dir: "batch-NAME[.shard-K-of-N].report".
func ReportPrefix(dir, name string, s Shard) string {
	return filepath.Join(dir, "batch-"+name+shardSuffix(s)+".report")
}

func shardSuffix(s Shard) string {
	if s.Whole() {
		return ""
	}
	return fmt.Sprintf(".shard-%d-of-%d", s.K, s.N)
}

// StatePaths returns every state file of the batch name in dir: the
// unsharded one and those of every shard of any shard count.
func StatePaths(dir, name string) ([]string, error) {
	var out []string
	for _, pat := range []string{"batch-" + name + ".state", "batch-" + name + ".shard-*-of-*.state"} {
		m, err := filepath.Glob(filepath.Join(dir, pat))
		if err != nil {
			return nil, err
		}
		out = append(out, m...)
	}
	slices.Sort(out)
	return out, nil
}

// Open opens (creating) the state at path for a batch run, locked; h is
// the header to write (its Created is kept from an existing file).
// Records left Running by a process that died become Pending, with a
// reason that says so. It fails with an error wrapping ErrLocked while
// another process holds the state.
func Open(path string, h Header) (*State, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("create state directory: %w", err)
	}
	lock, err := os.OpenFile(path+".lock", os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open batch lock: %w", err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		holder, _ := os.ReadFile(path + ".lock")
		lock.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			who := strings.TrimSpace(string(holder))
			if who == "" {
				who = "another process"
			}
			return nil, fmt.Errorf("batch state %s: %w (held by %s)", path, ErrLocked, who)
		}
		return nil, fmt.Errorf("lock batch state %s: %w", path, err)
	}
	host, _ := os.Hostname()
	lock.Truncate(0)
	lock.WriteAt(fmt.Appendf(nil, "pid %d on %s\n", os.Getpid(), host), 0)

	s := &State{path: path, lock: lock, recs: map[string]Record{}}
	old, recs, err := readState(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		h.Created = time.Now().UTC()
	case err != nil:
		lock.Close()
		return nil, err
	default:
		h.Created = old.Created
		if old.Batch != "" && old.Batch != h.Batch {
			lock.Close()
			return nil, fmt.Errorf("batch state %s belongs to batch %q, not %q", path, old.Batch, h.Batch)
		}
	}
	h.Format = StateFormat
	s.head = h
	for _, r := range recs {
		if r.Status == Running {
			r = interrupted(r)
		}
		s.recs[r.Key] = r
	}
	if err := s.compact(); err != nil {
		lock.Close()
		return nil, err
	}
	return s, nil
}

// interrupted turns the Running record of an account whose batch died into
// a Pending one.
func interrupted(r Record) Record {
	r.Status = Pending
	r.Reason = "interrupted: the batch stopped while this account ran; the next run resumes it where it stopped"
	return r
}

// compact rewrites the journal as the header and one line per account,
// durably, and reopens it for appending.
func (s *State) compact() error {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.Encode(s.head)
	recs := make([]Record, 0, len(s.recs))
	for _, r := range s.recs {
		recs = append(recs, r)
	}
	slices.SortFunc(recs, func(a, b Record) int {
		if a.Line != b.Line {
			return a.Line - b.Line
		}
		return strings.Compare(a.Key, b.Key)
	})
	for _, r := range recs {
		if err := enc.Encode(r); err != nil {
			return err
		}
	}
	if err := writeFileSync(s.path, b.Bytes(), 0o600); err != nil {
		return fmt.Errorf("write batch state %s: %w", s.path, err)
	}
	f, err := os.OpenFile(s.path, os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("open batch state %s: %w", s.path, err)
	}
	if s.f != nil {
		s.f.Close()
	}
	s.f = f
	return nil
}

// writeFileSync writes data to path by write-new, fsync, rename, fsync of
// the directory: a crash leaves the old file or the new one, whole.
func writeFileSync(path string, data []byte, perm os.FileMode) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, perm)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// Path is the state file.
func (s *State) Path() string { return s.path }

// Get returns the record of key.
func (s *State) Get(key string) (Record, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.recs[key]
	return r, ok
}

// Records returns every record, in no particular order.
func (s *State) Records() map[string]Record {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]Record, len(s.recs))
	for k, r := range s.recs {
		out[k] = r
	}
	return out
}

// Put records r (Updated set to now) durably: when Put returns nil, the
// line is on disk.
func (s *State) Put(r Record) error {
	r.Updated = time.Now().UTC()
	line, err := json.Marshal(r)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f == nil {
		return errors.New("batch state closed")
	}
	if _, err := s.f.Write(append(line, '\n')); err != nil {
		return fmt.Errorf("write batch state %s: %w", s.path, err)
	}
	if err := s.f.Sync(); err != nil {
		return fmt.Errorf("sync batch state %s: %w", s.path, err)
	}
	s.recs[r.Key] = r
	return nil
}

// Close closes the journal and releases the lock.
func (s *State) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var err error
	if s.f != nil {
		err = s.f.Close()
		s.f = nil
	}
	if s.lock != nil {
		s.lock.Close()
		s.lock = nil
	}
	return err
}

// Load reads the state at path without locking it (for reports, while a
// batch may be running on it). live reports whether a process holds the
// state now; if none does, Running records are returned as Pending
// (interrupted).
func Load(path string) (h Header, recs map[string]Record, live bool, err error) {
	h, list, err := readState(path)
	if err != nil {
		return h, nil, false, err
	}
	live = isLocked(path + ".lock")
	recs = map[string]Record{}
	for _, r := range list {
		if r.Status == Running && !live {
			r = interrupted(r)
		}
		recs[r.Key] = r
	}
	return h, recs, live, nil
}

// isLocked reports whether a process holds the lock file (an exclusive
// flock), without waiting.
func isLocked(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB); err != nil {
		return errors.Is(err, syscall.EWOULDBLOCK)
	}
	syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	return false
}

// readState parses a journal: the header, then records (the last of a key
// wins). A last line without its newline is one a crash cut short: it is
// ignored. Any other line that does not parse is an error naming it.
func readState(path string) (Header, []Record, error) {
	var h Header
	data, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return h, nil, err
		}
		return h, nil, fmt.Errorf("read batch state: %w", err)
	}
	if i := bytes.LastIndexByte(data, '\n'); i != len(data)-1 {
		data = data[:i+1] // torn last line (or an empty file)
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
	byKey := map[string]int{}
	var recs []Record
	for n := 1; sc.Scan(); n++ {
		line := sc.Bytes()
		if n == 1 {
			if err := json.Unmarshal(line, &h); err != nil || h.Format == 0 {
				return h, nil, fmt.Errorf("batch state %s: line 1 is no batch state header", path)
			}
			if h.Format != StateFormat {
				return h, nil, fmt.Errorf("batch state %s: format %d, this mailhaul reads format %d", path, h.Format, StateFormat)
			}
			continue
		}
		var r Record
		if err := json.Unmarshal(line, &r); err != nil || r.Key == "" {
			return h, nil, fmt.Errorf("batch state %s: line %d is corrupt", path, n)
		}
		if i, ok := byKey[r.Key]; ok {
			recs[i] = r
		} else {
			byKey[r.Key] = len(recs)
			recs = append(recs, r)
		}
	}
	if err := sc.Err(); err != nil {
		return h, nil, fmt.Errorf("read batch state %s: %w", path, err)
	}
	if h.Format == 0 {
		return h, nil, fmt.Errorf("batch state %s: empty", path)
	}
	return h, recs, nil
}
