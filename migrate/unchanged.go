package migrate

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
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
// FolderVersion from the preparer goroutine (while the lister, fetchers and
// appenders use the checkpoint too) and SetFolderVersions at the end
// of a run, in chunks of versionChunk folders; an error of either is fatal.
type FolderVersions interface {
	// FolderVersion returns what SetFolderVersions recorded for folder.
	FolderVersion(folder string) (string, bool, error)
	// SetFolderVersions durably records values by source folder (one
	// commit per call).
	SetFolderVersions(map[string]string) error
}

// versionChunk is how many folders one SetFolderVersions call records: a
// commit of 100,000 folders at once held the whole transaction in memory
// (over 60 MB in bbolt's nodes and pages).
const versionChunk = 1000

// versionRecord is what is recorded for a finished folder: the key that
// must match (a hash of Version, destination and selection) and the
// counts the report gives a skipped folder. It is stored in a compact
// binary form (encode): 100,000 folders of it are read by every re-run.
type versionRecord struct {
	Key      versionKey
	Already  int
	Filtered int
	// Dest is the destination folder the sink's Prepare chose ("Sent" for
	// a source's "Sent Items" by special use), which the report gives a
	// skipped folder: without it, the report said the name before
	// Prepare. Empty in a record of format 2.
	Dest string
}

// versionFormat starts an encoded versionRecord; format 2 is format 3
// without Dest. Records of another form (an older mailhaul wrote JSON)
// match no key: their folders are listed once more and recorded anew.
const versionFormat = 3

func (r versionRecord) encode() string {
	b := append([]byte{versionFormat}, r.Key[:]...)
	b = binary.AppendUvarint(b, uint64(r.Already))
	b = binary.AppendUvarint(b, uint64(r.Filtered))
	b = binary.AppendUvarint(b, uint64(len(r.Dest)))
	b = append(b, r.Dest...)
	return string(b)
}

func decodeVersion(s string) (r versionRecord, ok bool) {
	b := []byte(s)
	if len(b) < 1+len(r.Key) || (b[0] != versionFormat && b[0] != 2) {
		return r, false
	}
	format := b[0]
	copy(r.Key[:], b[1:])
	b = b[1+len(r.Key):]
	already, n := binary.Uvarint(b)
	if n <= 0 {
		return r, false
	}
	b = b[n:]
	filtered, n := binary.Uvarint(b)
	if n <= 0 {
		return r, false
	}
	b = b[n:]
	r.Already, r.Filtered = int(already), int(filtered)
	if format == 2 {
		return r, len(b) == 0
	}
	l, n := binary.Uvarint(b)
	if n <= 0 || l != uint64(len(b)-n) {
		return r, false
	}
	r.Dest = string(b[n:])
	return r, true
}

// versionKey is a hash of what must match for a folder to be skipped.
type versionKey [16]byte

// folderRun is what one run did in one folder that may be recorded, from
// its events: a few dozen bytes, as an account may have 100,000 folders.
// The tally keeps one beside each folder's report row (its counts of
// messages already there and filtered are the row's).
type folderRun struct {
	key              versionKey
	queued, resolved int32
	tracked          bool // listed with a Version (versions.listing)
	listed           bool // List returned without error
	skipped          bool
}

// add follows one event of the folder.
func (f *folderRun) add(e Event) {
	switch e.Kind {
	case Queued:
		f.queued++
	case Copied, Duplicate:
		f.resolved++
	case Skipped:
		f.resolved++
		f.skipped = true
	}
}

// finished reports whether the run finished the folder completely.
func (f *folderRun) finished() bool {
	return f.tracked && f.listed && !f.skipped && f.resolved == f.queued
}

// versions decides which folders may be skipped and records those a run
// finished; what each folder did is in the run's tally.
type versions struct {
	cp     FolderVersions
	relist bool // Options.Relist: record, never skip
	t      *tally
}

// newVersions returns nil (no fast path) when the options or the
// checkpoint rule it out.
func newVersions(o *Options, t *tally) *versions {
	cp, ok := o.Checkpoint.(FolderVersions)
	if !ok || o.DryRun || o.DeleteAfterCopy || o.SkipDeleted || !o.Before.IsZero() {
		return nil
	}
	return &versions{cp: cp, relist: o.Relist, t: t}
}

// key is what must match for mb to be skipped; ok is false when mb has no
// Version.
func (v *versions) key(o *Options, mb Mailbox, dest string) (k versionKey, ok bool) {
	if v == nil || mb.Version == "" {
		return k, false
	}
	h := sha256.Sum256(fmt.Appendf(nil, "%s|%s|dest=%q use=%q|since=%d max=%d incdel=%v", mb.Version, mb.Epoch, dest, mb.SpecialUse,
		o.Since.Unix(), o.MaxSize, o.IncludeDeleted))
	copy(k[:], h[:])
	return k, true
}

// unchanged reports whether mb was finished by an earlier run as it is
// now, and the counts that run left.
func (v *versions) unchanged(key versionKey, ok bool, folder string) (versionRecord, bool, error) {
	if !ok || v.relist {
		return versionRecord{}, false, nil
	}
	raw, ok, err := v.cp.FolderVersion(folder)
	if err != nil || !ok {
		return versionRecord{}, false, err
	}
	r, ok := decodeVersion(raw)
	if !ok || r.Key != key {
		return versionRecord{}, false, nil
	}
	return r, true, nil
}

// listing starts tracking folder (listed with key, going to dest).
func (v *versions) listing(folder, dest string, key versionKey, ok bool) {
	if v == nil || !ok {
		return
	}
	v.t.run(folder, dest, func(f *folderRun) { *f = folderRun{key: key, tracked: true} })
}

// listed notes that folder's listing ended without error.
func (v *versions) listed(folder string) {
	if v == nil {
		return
	}
	v.t.run(folder, "", func(f *folderRun) { f.listed = true })
}

// record writes the Version of every folder this run finished completely,
// versionChunk folders per commit. Call it only when the run ended without
// error or interruption.
func (v *versions) record() error {
	if v == nil {
		return nil
	}
	out := make(map[string]string, versionChunk)
	flush := func() error {
		if len(out) == 0 {
			return nil
		}
		if err := v.cp.SetFolderVersions(out); err != nil {
			return fmt.Errorf("record folder versions: %w", err)
		}
		clear(out)
		return nil
	}
	return v.t.finished(func(row *FolderReport, f *folderRun) error {
		out[row.Name] = versionRecord{Key: f.key, Already: row.Messages + row.Already, Filtered: row.Filtered, Dest: row.Dest}.encode()
		if len(out) < versionChunk {
			return nil
		}
		return flush()
	}, flush)
}

// recordVersions makes the folders the sink created durable, then records
// the Version of every folder the run finished.
func (e *engine) recordVersions(ctx context.Context) error {
	if e.versions == nil {
		return nil
	}
	if fs, ok := e.o.Sink.(FolderSyncer); ok {
		if err := fs.SyncFolders(ctx); err != nil {
			return fmt.Errorf("make destination folders durable: %w", err)
		}
	}
	return e.versions.record()
}
