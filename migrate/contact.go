package migrate

import (
	"context"
	"fmt"
	"slices"
	"time"
)

// First contact: a state dir that was lost must not duplicate the mail.
//
// The checkpoint is what keeps a run from copying a message twice. When
// it is gone — the state dir deleted, a copy started on another machine,
// a batch run with another --state-dir — every message looks new, and a
// copy into a destination that holds an earlier run's copies would append
// each of them beside itself. So when a run is about to hand on the first
// message of a source folder that the checkpoint records nothing of (no
// copy, no message found), and its destination folder holds mail that is
// not the checkpoint's own copies, the run compares each message of that
// source folder with what the destination folder held — same Message-ID,
// same stored size and same internal date (to the second), the date
// mailhaul gives every copy (dedupe.go) — and records a message it finds
// as found there (FoundPrefix and the ref of the copy it found) instead
// of copying it.
// Options.NoAutoDedupe turns this off.
//
// The decision is per source folder, and the checkpoint keeps it
// (Contacts) from that first contact until a run finishes the folder:
// listed to the end, in a run that ended without error or interruption,
// with none of its messages skipped or filtered out (a message left out
// by --since, --max-size, ... was not compared, and a later run without
// the filter must compare it). Until then every run compares the folder's
// new messages again — a run interrupted halfway resumes comparing.
//
// What is compared with is an index of the destination folder, read when
// the first source folder going there needs it (and kept for the next
// ones, merged into the same folder), without the copies the checkpoint
// records there or records as found (RefIndexer refs that the checkpoint
// names an Owner for) and without this run's own: source folders merged
// into one destination folder, or twins of one folder, never match this
// checkpoint's copies, in this run or after an interruption.
//
// Costs: nothing for a source folder that has nothing new (a POP3
// maildrop that stays empty, a re-run), or whose folder the checkpoint
// already records copies of; no index of a destination folder the sink
// saw empty (FreshFolders: the folders a first copy creates); else one
// read of the destination folder's Message-IDs, sizes and dates (the
// cheap index: a lost state's copies were written by mailhaul from the
// same source, size for size and date for date; --dedupe's body length,
// for a mail client's copy of a POP3 message, is --dedupe's own). The source's messages are still
// fetched, except where the source gives the Message-ID while listing
// (IMAP) and the size and date match (foundListed).
//
// Limits: a checkpoint that is stale rather than new (a state dir
// restored from an old backup, two state dirs used in turn or at once) is
// not noticed, since it records copies of the folder; a message without
// a date is always copied; a dry run does not compare (it fetches
// nothing).
// --delete-after-copy leaves a message found this way on the source: its
// copy in the destination is not one this checkpoint made (delete.go).

// Contacts is implemented by checkpoints that keep the first-contact
// decisions (package checkpoint's Store). ContactsPending is called when
// a run starts, HasCopies and SetContactPending from the lister goroutine,
// ClearContacts at the end of a run; errors are fatal.
type Contacts interface {
	// ContactsPending returns the source folders whose messages are
	// compared with a destination folder (by source folder), as
	// SetContactPending recorded and ClearContacts left them.
	ContactsPending() (map[string]string, error)
	// SetContactPending durably records that source folder's messages
	// are compared with destination folder dest (one commit).
	SetContactPending(folder, dest string) error
	// ClearContacts durably ends the comparison of folders (one commit).
	ClearContacts(folders []string) error
	// HasCopies reports whether the checkpoint records any message of
	// source folder+epoch as copied or found.
	HasCopies(folder, epoch string) (bool, error)
}

// RefIndexer is implemented by sinks that can give the Message-ID, size,
// internal date (zero if unknown) and ref (as Append returns it) of every
// message in a folder, for the first-contact comparison. Where it can, it leaves out the messages
// stored since this process first saw the folder (IMAP: UID at or above
// the UIDNEXT of its first SELECT), which covers this run's appends that
// have not returned yet (those that have are the engine's claims). Called
// from the lister goroutine after Prepare.
type RefIndexer interface {
	IndexRefs(ctx context.Context, folder string, fn func(messageID string, size int64, date time.Time, ref string) error) error
}

// FreshFolders is implemented by sinks that know, without asking the
// server again, that a destination folder held no message before this
// run wrote to it (IMAP: the SELECT of Prepare, or the CREATE with it,
// said so): the first contact then needs no index. Fresh may say false
// when it does not know. Called from the lister goroutine after Prepare
// returned, before the engine hands on any message for dest.
type FreshFolders interface {
	Fresh(dest string) bool
}

// contacts is the first-contact state of a run. The lister goroutine owns
// it while the pipeline runs (decide, listed); the end of the run reads it
// (record).
type contacts struct {
	e       *engine
	cp      Contacts
	ix      RefIndexer
	compare bool              // false with Dedupe: record only
	pending map[string]string // source folder -> destination folder, as recorded
	// explained: the run's first warning of a first contact said what the
	// comparison does; the next ones are a line each (an account of 16
	// folders printed 16 paragraphs).
	explained bool
	// The last destination folder read (held) and what it held.
	indexDest string
	index     *dedupSet
	listed    map[string]bool // pending source folders listed to the end

	// Taken by foundListed, not recorded yet (recordFound).
	found     []Intent
	foundRefs []string
}

// newContacts reads the pending decisions, or returns nil when the options
// or the checkpoint or the sink rule the comparison out. With Dedupe the
// run compares anyway, with more: it only ends the pending decisions of
// the folders it finishes.
func newContacts(e *engine) (*contacts, error) {
	cp, ok := e.o.Checkpoint.(Contacts)
	ix, indexes := e.o.Sink.(RefIndexer)
	if !ok || !indexes || e.o.NoAutoDedupe || e.o.DryRun {
		return nil, nil
	}
	pending, err := cp.ContactsPending()
	if err != nil {
		return nil, fmt.Errorf("read checkpoint: %w", err)
	}
	return &contacts{e: e, cp: cp, ix: ix, compare: !e.o.Dedupe, pending: pending, listed: map[string]bool{}}, nil
}

// foundListed matches m, before it is fetched, with what d holds, when the
// source gave m's Message-ID while listing (IMAP) and its size is that of
// a held message: m is then recorded as found there (recordFound), and
// never fetched — a lost state's run over a large mailbox reads headers,
// not the mail again. Any other message is compared once fetched, with
// its stored size (appendBatch). Called by the lister goroutine, after
// the folder's epoch is recorded.
func (c *contacts) foundListed(d *dedupSet, mb Mailbox, dest string, m Message) (bool, error) {
	if m.MessageID == "" || m.Size <= 0 {
		return false, nil
	}
	ok, as := d.take(m.MessageID, m.Size, -1, unixDate(m.Date), false)
	if !ok {
		return false, nil
	}
	c.found = append(c.found, Intent{Folder: mb.Name, Epoch: mb.Epoch, ID: m.ID, Dest: dest, MessageID: m.MessageID,
		Size: m.Size, Date: m.Date, Flags: m.Flags})
	c.foundRefs = append(c.foundRefs, foundRef(as))
	if len(c.found) >= listChunk {
		return true, c.recordFound()
	}
	return true, nil
}

// recordFound records the messages foundListed took, in one commit, and
// reports them. Called by the lister goroutine, at least at the end of
// every listing.
func (c *contacts) recordFound() error {
	if c == nil || len(c.found) == 0 {
		return nil
	}
	if err := c.e.o.Checkpoint.Complete(c.found, c.foundRefs); err != nil {
		return fmt.Errorf("record messages found in the destination: %w", err)
	}
	for _, in := range c.found {
		c.e.rep(Event{Kind: Duplicate, Folder: in.Folder, Dest: in.Dest, ID: in.ID, Bytes: in.Size})
	}
	c.found, c.foundRefs = c.found[:0], c.foundRefs[:0]
	return nil
}

// decide returns what the messages of source folder mb going to dest are
// compared with (nil: nothing). rematching: the checkpoint records copies
// of mb under another epoch (its UIDVALIDITY changed), which the listing
// re-matches; that is no first contact. Called by the lister goroutine
// once per listing of mb, before it hands on mb's first message.
func (c *contacts) decide(ctx context.Context, mb Mailbox, dest string, rematching bool) (*dedupSet, error) {
	if c == nil {
		return nil, nil
	}
	if _, ok := c.pending[mb.Name]; ok {
		if !c.compare {
			return nil, nil // --dedupe compares with its own index
		}
		d, err := c.held(ctx, dest)
		if err != nil {
			return nil, err
		}
		c.e.rep(Event{Kind: Warning, Folder: mb.Name, Dest: dest, Err: fmt.Errorf(
			"folder %q: no run has finished it since its destination %q was found holding mail this source's checkpoint did not copy; comparing its messages with that mail again, so that nothing is copied twice", mb.Name, dest)})
		return d, nil
	}
	if rematching {
		return nil, nil
	}
	has, err := c.cp.HasCopies(mb.Name, mb.Epoch)
	if err != nil || has {
		return nil, err
	}
	if fr, ok := c.e.o.Sink.(FreshFolders); ok && fr.Fresh(dest) {
		return nil, nil
	}
	d, err := c.held(ctx, dest)
	if err != nil {
		return nil, err
	}
	n := d.len()
	if n == 0 {
		return nil, nil
	}
	// Recorded under --dedupe too, which compares with its own index: a
	// run after it without the flag (an interrupted one resumed) must go
	// on comparing.
	if err := c.cp.SetContactPending(mb.Name, dest); err != nil {
		return nil, fmt.Errorf("record first contact of folder %q with destination folder %q: %w", mb.Name, dest, err)
	}
	c.pending[mb.Name] = dest
	if !c.compare {
		return nil, nil
	}
	held := countOf(n, "message with a Message-ID", "messages with a Message-ID")
	if c.explained {
		c.e.rep(Event{Kind: Warning, Folder: mb.Name, Dest: dest, Err: fmt.Errorf(
			"destination folder %q also holds %s that this source's checkpoint did not copy: %q is compared with them, as above", dest, held, mb.Name)})
		return d, nil
	}
	c.explained = true
	c.e.rep(Event{Kind: Warning, Folder: mb.Name, Dest: dest, Err: fmt.Errorf(
		"destination folder %q already holds %s that this source's checkpoint did not copy (another source merged into the account, or a new or lost state dir?): each message of %q is compared with them by Message-ID, size and date, and one found there is not copied again; a mail client's copy (other header fields, another size) is not found this way: merge such copies with --dedupe, or --dedupe-across-folders where that mail was filed into other folders (--no-auto-dedupe copies all)", dest, held, mb.Name)})
	return d, nil
}

// held returns what destination folder dest holds that is not a copy the
// checkpoint records (or records as found for a message: FoundPrefix),
// nor one this run made (claims; a sink's IndexRefs leaves out what it
// stored since this run first saw the folder where it can), with
// retries. The index of the last destination folder read is kept for the
// next source folder going there (merged folders share one, so that an
// entry taken for one is taken for all); an earlier one is let go (the
// jobs that compare with it hold it), so that an account of many large
// folders holds one index at a time. A server without UIDPLUS gives its
// copies no ref the checkpoint can recognise: they are compared with like
// foreign mail.
func (c *contacts) held(ctx context.Context, dest string) (*dedupSet, error) {
	if c.index != nil && c.indexDest == dest {
		return c.index, nil
	}
	var d *dedupSet
	err := c.e.retry(ctx, &job{dest: dest}, "read destination folder", func() error {
		d = newDedupSet()
		return c.ix.IndexRefs(ctx, dest, func(mid string, size int64, date time.Time, ref string) error {
			if mid == "" {
				return nil
			}
			if ref != "" {
				if _, mine := c.e.claims.owner(dest, ref); mine {
					return nil
				}
				if _, mine, err := c.e.o.Checkpoint.Owner(dest, ref); err != nil || mine {
					return err
				}
			}
			d.add(mid, size, -1, unixDate(date), ref)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("read destination folder %q (to compare with at the first copy into it): %w", dest, err)
	}
	c.indexDest, c.index = dest, d
	return d, nil
}

// finished notes that source folder name was listed to the end. Called by
// the lister goroutine.
func (c *contacts) finished(name string) {
	if c == nil {
		return
	}
	if _, ok := c.pending[name]; ok {
		c.listed[name] = true
	}
}

// record ends the pending decisions of the folders this run finished:
// listed to the end, none of their messages skipped or filtered out. Call
// it only when the run ended without error or interruption.
func (c *contacts) record(t *tally) error {
	if c == nil {
		return nil
	}
	var done []string
	for name := range c.listed {
		if t.complete(name) {
			done = append(done, name)
		}
	}
	if len(done) == 0 {
		return nil
	}
	slices.Sort(done)
	for len(done) > 0 {
		n := min(len(done), contactChunk)
		if err := c.cp.ClearContacts(done[:n]); err != nil {
			return fmt.Errorf("record finished folders: %w", err)
		}
		done = done[n:]
	}
	return nil
}

// contactChunk is how many folders one ClearContacts call ends.
const contactChunk = 1000

func countOf(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}
