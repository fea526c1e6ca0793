package migrate

import (
	"slices"
	"sort"
	"sync"
	"time"
)

// EventKind says what an Event reports.
type EventKind int

const (
	// FolderStart: the lister starts on a folder (Folder, Dest).
	FolderStart EventKind = iota
	// Queued: a message will be copied (Bytes = its listed size).
	Queued
	// Copied: a message was appended and recorded (Bytes).
	Copied
	// Already: a message was copied by an earlier run.
	Already
	// Duplicate: the destination already held this queued message (Dedupe,
	// or a first contact: contact.go); Bytes is its Queued size.
	Duplicate
	// Skipped: a message could not be copied (Err says why).
	Skipped
	// Filtered: a message is outside --since/--before/--max-size.
	Filtered
	// Recovered: a pending intent of a killed run was resolved (Found).
	Recovered
	// Retrying: a transient error, the operation is retried (Err). For
	// appends of unknown outcome, one event stands for Count messages of
	// the folder from ID on (Err names the last).
	Retrying
	// Warning: something the user should know that is not a message error.
	Warning
	// Settled: an append whose outcome was unknown was looked up (How).
	Settled
	// Waiting: the run waits (Err says for what, Bytes how many messages).
	Waiting
	// FlagsDropped: a message was stored without Flags, which the
	// destination does not keep (Err says why).
	FlagsDropped
	// Unchanged: a folder has not changed since a run finished it, and is
	// not listed (Count: its messages found copied then, Filtered: those
	// outside the selection).
	Unchanged
)

// Event is one thing that happened during a run. Reporters receive events
// from several goroutines at once.
type Event struct {
	Kind   EventKind
	Folder string // source folder
	Dest   string // destination folder
	ID     string // source message id
	Bytes  int64
	Found  bool
	How    string   // Settled: SettledFound, SettledResent, SettledRemoved, SettledPossibleDuplicate
	Flags  []string // FlagsDropped
	Count  int      // Unchanged, Retrying
	// Filtered counts a folder's filtered messages (Unchanged).
	Filtered int
	Err      error
}

// Reporter receives events. Implementations must be safe for concurrent
// use and must not block for long: they run on the pipeline's goroutines.
type Reporter interface {
	Event(Event)
}

// ReporterFunc adapts a function to Reporter.
type ReporterFunc func(Event)

// Event calls f.
func (f ReporterFunc) Event(e Event) { f(e) }

// SkippedMessage is one message that was not copied.
type SkippedMessage struct {
	Folder string `json:"folder"`
	ID     string `json:"id"`
	Reason string `json:"reason"`
}

// SettledCopy is one append whose outcome was unknown and how it was
// settled (see settle.go).
type SettledCopy struct {
	Folder string `json:"folder"`
	ID     string `json:"id"`
	Dest   string `json:"dest"`
	How    string `json:"how"`
	Detail string `json:"detail,omitempty"`
}

// DroppedFlag counts the messages stored without a flag the destination
// folder does not keep.
type DroppedFlag struct {
	Dest     string `json:"dest"`
	Flag     string `json:"flag"`
	Messages int    `json:"messages"`
	Reason   string `json:"reason"`
}

// FolderReport counts one folder.
type FolderReport struct {
	Name     string `json:"name"`
	Dest     string `json:"dest"`
	Messages int    `json:"messages"` // copied, or planned with DryRun
	Bytes    int64  `json:"bytes"`
	Already  int    `json:"already"`
	Skipped  int    `json:"skipped"`
	Filtered int    `json:"filtered"`
	// Unchanged: not listed, unchanged since a run finished it.
	Unchanged bool `json:"unchanged,omitempty"`
}

// Report is the outcome of a run.
type Report struct {
	DryRun bool  `json:"dry_run"`
	Copied int   `json:"copied"` // or planned with DryRun
	Bytes  int64 `json:"bytes"`
	// Already counts the messages not copied because the destination has
	// them: recorded as copied by this checkpoint, or Found.
	Already int `json:"already"`
	// Found counts those of Already found this run by Message-ID (Dedupe,
	// or the first-contact comparison: contact.go), copied by something
	// else; the next run counts them as recorded.
	Found     int `json:"found"`
	Filtered  int `json:"filtered"`
	Recovered int `json:"recovered"` // intents of a killed run found on the sink
	// Unchanged counts folders not listed: unchanged since a run finished
	// them (their messages count as already there).
	Unchanged int `json:"unchanged_folders"`
	// Settled lists every append whose outcome was unknown (connection
	// lost, process killed with it on the wire) and how it was settled.
	Settled []SettledCopy    `json:"settled"`
	Skipped []SkippedMessage `json:"skipped"`
	// DroppedFlags lists flags the destination did not keep, per folder.
	DroppedFlags []DroppedFlag  `json:"dropped_flags,omitempty"`
	Folders      []FolderReport `json:"folders"`
	Warnings     []string       `json:"warnings,omitempty"`
	Elapsed      time.Duration  `json:"elapsed_ns"`
	Error        string         `json:"error,omitempty"`
	// Interrupted is set when the context was cancelled before the end.
	Interrupted bool `json:"interrupted"`
}

// tally accumulates a Report from the pipeline goroutines. Folder rows
// are kept in the order folders were first seen, and handed to the
// Report as they are: an account may have 100,000 of them.
//
// Beside each row it keeps what unchanged.go needs to know whether the run
// finished the folder (folderRun), so that a folder costs one map entry.
type tally struct {
	mu      sync.Mutex
	r       Report
	index   map[string]int // folder name -> r.Folders and runs
	runs    []folderRun
	dropped map[[2]string]*DroppedFlag
	dorder  [][2]string
}

func newTally(dry bool) *tally {
	return &tally{r: Report{DryRun: dry, Skipped: []SkippedMessage{}, Settled: []SettledCopy{}, Folders: []FolderReport{}},
		index: map[string]int{}, dropped: map[[2]string]*DroppedFlag{}}
}

// expect makes room for n more folder rows at once, so that the rows of
// an account of 100,000 folders are not copied to an array twice the size
// each time they outgrow one. Called by the lister, once it knows the
// run's folders.
func (t *tally) expect(n int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.r.Folders = slices.Grow(t.r.Folders, n)
	t.runs = slices.Grow(t.runs, n)
}

// row returns the index of name's row, adding it. Called with t.mu held.
func (t *tally) row(name, dest string) int {
	i, ok := t.index[name]
	if !ok {
		i = len(t.r.Folders)
		t.index[name] = i
		t.r.Folders = append(t.r.Folders, FolderReport{Name: name, Dest: dest})
		t.runs = append(t.runs, folderRun{})
	}
	if dest != "" {
		t.r.Folders[i].Dest = dest
	}
	return i
}

// folder returns name's row, valid until the next call. Called with t.mu
// held.
func (t *tally) folder(name, dest string) *FolderReport {
	return &t.r.Folders[t.row(name, dest)]
}

// run applies fn to what the run did in folder (adding its row).
func (t *tally) run(folder, dest string, fn func(*folderRun)) {
	t.mu.Lock()
	defer t.mu.Unlock()
	fn(&t.runs[t.row(folder, dest)])
}

// finished calls fn for every folder the run finished completely, in the
// order they were seen, then done; it stops at the first error.
func (t *tally) finished(fn func(*FolderReport, *folderRun) error, done func() error) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	for i := range t.runs {
		if t.runs[i].finished() {
			if err := fn(&t.r.Folders[i], &t.runs[i]); err != nil {
				return err
			}
		}
	}
	return done()
}

// complete reports whether the run left none of source folder name's
// messages skipped or filtered out.
func (t *tally) complete(name string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	i, ok := t.index[name]
	if !ok {
		return true // nothing reported: nothing left out
	}
	f := t.r.Folders[i]
	return f.Skipped == 0 && f.Filtered == 0
}

func (t *tally) add(e Event) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if i, ok := t.index[e.Folder]; ok && t.runs[i].tracked {
		t.runs[i].add(e)
	}
	switch e.Kind {
	case FolderStart:
		t.folder(e.Folder, e.Dest)
	case Queued:
		if t.r.DryRun {
			f := t.folder(e.Folder, e.Dest)
			f.Messages++
			f.Bytes += e.Bytes
			t.r.Copied++
			t.r.Bytes += e.Bytes
		}
	case Copied:
		f := t.folder(e.Folder, e.Dest)
		f.Messages++
		f.Bytes += e.Bytes
		t.r.Copied++
		t.r.Bytes += e.Bytes
	case Already:
		t.folder(e.Folder, e.Dest).Already++
		t.r.Already++
	case Duplicate:
		t.folder(e.Folder, e.Dest).Already++
		t.r.Already++
		t.r.Found++
	case Filtered:
		t.folder(e.Folder, e.Dest).Filtered++
		t.r.Filtered++
	case Unchanged:
		f := t.folder(e.Folder, e.Dest)
		f.Already += e.Count
		f.Filtered += e.Filtered
		f.Unchanged = true
		t.r.Already += e.Count
		t.r.Filtered += e.Filtered
		t.r.Unchanged++
	case Skipped:
		t.folder(e.Folder, e.Dest).Skipped++
		reason := "unknown"
		if e.Err != nil {
			reason = e.Err.Error()
		}
		t.r.Skipped = append(t.r.Skipped, SkippedMessage{Folder: e.Folder, ID: e.ID, Reason: reason})
	case Recovered:
		if e.Found {
			t.r.Recovered++
		}
	case FlagsDropped:
		for _, f := range e.Flags {
			k := [2]string{e.Dest, f}
			d, ok := t.dropped[k]
			if !ok {
				d = &DroppedFlag{Dest: e.Dest, Flag: f}
				if e.Err != nil {
					d.Reason = e.Err.Error()
				}
				t.dropped[k] = d
				t.dorder = append(t.dorder, k)
			}
			d.Messages++
		}
	case Settled:
		sc := SettledCopy{Folder: e.Folder, ID: e.ID, Dest: e.Dest, How: e.How}
		if e.Err != nil {
			sc.Detail = e.Err.Error()
			t.r.Warnings = append(t.r.Warnings, e.Err.Error())
		}
		t.r.Settled = append(t.r.Settled, sc)
	case Warning:
		if e.Err != nil {
			t.r.Warnings = append(t.r.Warnings, e.Err.Error())
		}
	}
}

// report returns the Report. Its folder rows are the tally's own (no copy
// of 100,000 rows): call it when no event can come any more, at the end of
// the run.
func (t *tally) report() Report {
	t.mu.Lock()
	defer t.mu.Unlock()
	r := t.r
	r.Folders = slices.Clip(t.r.Folders)
	r.Skipped = append([]SkippedMessage{}, t.r.Skipped...)
	r.Settled = append([]SettledCopy{}, t.r.Settled...)
	r.DroppedFlags = nil
	for _, k := range t.dorder {
		r.DroppedFlags = append(r.DroppedFlags, *t.dropped[k])
	}
	sort.SliceStable(r.Skipped, func(i, j int) bool {
		if r.Skipped[i].Folder != r.Skipped[j].Folder {
			return r.Skipped[i].Folder < r.Skipped[j].Folder
		}
		return r.Skipped[i].ID < r.Skipped[j].ID
	})
	return r
}
