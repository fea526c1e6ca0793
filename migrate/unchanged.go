package migrate

import (
	"encoding/json"
	"fmt"
	"sync"
)

// Unchanged folders: a re-run that finds nothing new should cost a
// constant number of round trips, not a listing of every folder.
//
// A source that can tell cheaply whether a folder gained messages sets
// Mailbox.Version (IMAP: UIDVALIDITY, UIDNEXT and MESSAGES, all folders in
// one LIST-STATUS). When a run finishes a folder completely — listed to
// the end, every queued message copied or found, none skipped, and the run
// itself ended without error or interruption — the engine records the
// folder's Version, with what the run was asked to select, in the
// checkpoint (FolderVersions). The next run skips a folder whose Version
// and selection match: no listing, no destination folder opened. Anything
// else lists it as before.
//
// What the fast path relies on: a message added to a folder changes its
// Version (IMAP: UIDNEXT grows with every new message), and nothing that
// leaves it unchanged can make a message eligible that was not. So it is
// off when eligibility depends on flags (SkipDeleted: undeleting changes
// no UID) or on the clock (Before: a relative --before lets messages in as
// days pass), and with DeleteAfterCopy, which must see every listed
// message. Flags changed on the source after the copy are not copied by
// any run, so they need no listing either.

// FolderVersions is implemented by checkpoints that remember the Version
// of folders a run finished (package checkpoint's Store). The engine calls
// FolderVersion from the lister goroutine and SetFolderVersions once at the
// end of a run; an error of either is fatal.
type FolderVersions interface {
	// FolderVersion returns what SetFolderVersions recorded for folder.
	FolderVersion(folder string) (string, bool, error)
	// SetFolderVersions durably records values by source folder (one
	// commit).
	SetFolderVersions(map[string]string) error
}

// versionRecord is what is recorded for a finished folder: the key that
// must match (Version, destination and selection) and the counts the
// report gives a skipped folder.
type versionRecord struct {
	Key      string `json:"key"`
	Already  int    `json:"already"`
	Filtered int    `json:"filtered"`
}

// folderRun is what one run did in one folder, from its events.
type folderRun struct {
	key              string
	listed           bool // List returned without error
	queued, resolved int
	already          int // found done, copied or found by Dedupe
	filtered         int
	skipped          bool
}

// versions tracks the folders of a run that may be recorded. Safe for
// concurrent use: events come from every stage.
type versions struct {
	cp     FolderVersions
	relist bool // Options.Relist: record, never skip
	mu     sync.Mutex
	f      map[string]*folderRun
}

// newVersions returns nil (no fast path) when the options or the
// checkpoint rule it out.
func newVersions(o *Options) *versions {
	cp, ok := o.Checkpoint.(FolderVersions)
	if !ok || o.DryRun || o.DeleteAfterCopy || o.SkipDeleted || !o.Before.IsZero() {
		return nil
	}
	return &versions{cp: cp, relist: o.Relist, f: map[string]*folderRun{}}
}

// key is what must match for mb to be skipped: "" when mb has no Version.
func (v *versions) key(o *Options, mb Mailbox, dest string) string {
	if v == nil || mb.Version == "" {
		return ""
	}
	return fmt.Sprintf("%s|%s|dest=%q use=%q|since=%d max=%d incdel=%v", mb.Version, mb.Epoch, dest, mb.SpecialUse,
		o.Since.Unix(), o.MaxSize, o.IncludeDeleted)
}

// unchanged reports whether mb was finished by an earlier run as it is
// now, and the counts that run left.
func (v *versions) unchanged(key, folder string) (versionRecord, bool, error) {
	if key == "" || v.relist {
		return versionRecord{}, false, nil
	}
	raw, ok, err := v.cp.FolderVersion(folder)
	if err != nil || !ok {
		return versionRecord{}, false, err
	}
	var r versionRecord
	if json.Unmarshal([]byte(raw), &r) != nil || r.Key != key {
		return versionRecord{}, false, nil
	}
	return r, true, nil
}

// listing starts tracking folder (listed with key).
func (v *versions) listing(folder, key string) {
	if v == nil || key == "" {
		return
	}
	v.mu.Lock()
	v.f[folder] = &folderRun{key: key}
	v.mu.Unlock()
}

// listed notes that folder's listing ended without error.
func (v *versions) listed(folder string) {
	if v == nil {
		return
	}
	v.mu.Lock()
	if f := v.f[folder]; f != nil {
		f.listed = true
	}
	v.mu.Unlock()
}

// add follows one event.
func (v *versions) add(e Event) {
	if v == nil {
		return
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	f := v.f[e.Folder]
	if f == nil {
		return
	}
	switch e.Kind {
	case Queued:
		f.queued++
	case Copied, Duplicate:
		f.resolved++
		f.already++
	case Already:
		f.already++
	case Filtered:
		f.filtered++
	case Skipped:
		f.resolved++
		f.skipped = true
	}
}

// record writes the Version of every folder this run finished completely.
// Call it only when the run ended without error or interruption.
func (v *versions) record() error {
	if v == nil {
		return nil
	}
	v.mu.Lock()
	out := map[string]string{}
	for name, f := range v.f {
		if !f.listed || f.skipped || f.resolved != f.queued {
			continue
		}
		b, _ := json.Marshal(versionRecord{Key: f.key, Already: f.already, Filtered: f.filtered})
		out[name] = string(b)
	}
	v.mu.Unlock()
	if len(out) == 0 {
		return nil
	}
	if err := v.cp.SetFolderVersions(out); err != nil {
		return fmt.Errorf("record folder versions: %w", err)
	}
	return nil
}
