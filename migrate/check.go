package migrate

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
)

// Check: the comparison behind `mailhaul check SRC DST`.
//
// The destination is read as a Source too (an IMAP destination is an IMAP
// account, a Maildir destination a Maildir tree), so both sides are listed
// with the same machinery. Each selected source folder is paired with the
// destination folder a copy puts its messages in: Options.MapName, then the
// sink's own naming and special-use redirection asked through a Resolver
// (read-only: nothing is created). Source folders that land in one
// destination folder are compared with it together.
//
// For every source message Check decides whether it is in the destination:
//
//  1. By the checkpoint's record, when there is one: the recorded copy
//     must still be there (for IMAP the UID under the same UIDVALIDITY in
//     that folder, for Maildir the file's unique name), with the same
//     Message-ID when both sides list one and a size that fits.
//  2. Else by fingerprint: Message-ID and size, the size in the form the
//     destination stores (an IMAP destination stores the CRLF form, see
//     crlf.go; a source that is not IMAP is read to count its bare LFs).
//     A Message-ID whose messages pair off one to one by size is matched;
//     anything else under one Message-ID (twins, a different size, a
//     second copy) is decided by the SHA-256 of the stored form, and so is
//     every message without a Message-ID (same size, then same hash).
//  3. A message the checkpoint records as found already in the
//     destination by --dedupe (no copy of its own: the destination held
//     it, from another source, when the copy ran) that neither rule found
//     stands for a destination message with its Message-ID, whatever its
//     size — the copy compared Message-ID and body length, and another
//     source's copy may carry other header fields — in its destination
//     folder, else (--dedupe-across-folders) in any folder. Flags and date
//     are not compared: that copy came from elsewhere.
//
// Destination messages no source message claimed are extra: a duplicate
// when they have the fingerprint (or the content) of a matched copy, else
// a message without a source. Messages outside --since/--before/
// --max-size/--skip-deleted take part in matching (so their copies are not
// called extra) but are not required.
//
// Matched pairs are compared for flags and internal date:
//
//   - \Recent is ignored; the system flags (\Seen \Answered \Flagged
//     \Draft \Deleted) must be equal; keywords are compared without regard
//     to case. A keyword of the source that no message of the destination
//     folder carries is "not kept" (its PERMANENTFLAGS refuse keywords, or
//     Dovecot's 26-keyword limit of a Maildir folder was reached: copy
//     warned and dropped it), reported per folder but not a difference.
//   - Dates are compared to the second (IMAP INTERNALDATE has no finer
//     precision, Maildir mtimes do); an unknown date is not compared.
//
// Cost: both sides are listed as `copy` lists (IMAP: EXAMINE, UID SEARCH,
// one UID FETCH of FLAGS INTERNALDATE RFC822.SIZE and the Message-ID field
// per 500 messages: a round trip and about 150 bytes per message); a
// Maildir or mbox side reads each message's header from the file. Bodies
// are read only to decide: a local source checked against an IMAP
// destination without a checkpoint is read once to count its line ends
// (local reads, nothing over the network), and messages whose fingerprint
// is ambiguous or who have no Message-ID are fetched from both sides and
// hashed. Missing and extra messages cost one more UID FETCH of four header
// fields per 500. The two sides are listed at once, each a few folders
// ahead of the comparison (up to listWindow folders at once on a side
// that is a ConcurrentLister, else one); reads and hashes use up to
// Options.Transfers connections per side, as copy does.
// No body is ever held in memory (hashes are computed as bytes arrive);
// what is held is the metadata of the folders being compared (a few
// hundred bytes per message).
//
// Check changes nothing on either side, nor in the checkpoint.

// CheckHeaderFields are the header fields Check reads to match and show a
// message (HeaderReader).
var CheckHeaderFields = []string{"Message-ID", "From", "Subject", "Date"}

// HeaderLimit is the most Check keeps of a message's header.
const HeaderLimit = 64 << 10

// HeaderReader is implemented by sources that can read a message's header
// without its body. Headers calls fn(i, header) for msgs[i] (all of one
// mailbox, as List gave them) with at least the fields CheckHeaderFields
// (it may be the whole header), in order; a message that cannot be read
// (gone since List) is left out. Safe for concurrent use; errors are
// classified as Fetch's. Sources without it are read with Fetch.
type HeaderReader interface {
	Headers(ctx context.Context, msgs []Message, fn func(i int, header []byte) error) error
}

// MessageIDLister is implemented by sources whose List fills
// Message.MessageID of every message that has one (IMAP), so that an
// empty MessageID means the message has none.
type MessageIDLister interface {
	ListsMessageIDs()
}

// ConcurrentLister is implemented by sources whose List may run for
// several mailboxes at once (each call takes its own connection or opens
// its own file): Check lists up to listWindow folders of such a side at
// once. Other sources are listed one folder at a time.
type ConcurrentLister interface {
	ListsConcurrently()
}

// StoreNamer is implemented by sources whose own name for a mailbox is not
// its "/" name (IMAP: the server's name, with prefix and delimiter). Check
// pairs a source folder with the destination folder whose StoreName is
// what the Resolver returned. Without it the store name is Mailbox.Name.
type StoreNamer interface {
	StoreName(mb Mailbox) string
}

// Resolver is implemented by sinks that can say, without creating or
// changing anything, where a copy goes and which copy a ref names.
type Resolver interface {
	// Resolve returns the folder Prepare(ctx, src, name) would return.
	Resolve(ctx context.Context, src Mailbox, name string) (string, error)
	// RefCopy returns the Epoch and ID under which the destination, read
	// as a Source, lists the copy that ref (returned by Append into
	// folder) names; ok is false when ref names no particular copy.
	RefCopy(folder, ref string) (epoch, id string, ok bool)
}

// CheckOptions configure Check.
type CheckOptions struct {
	// Options gives the Source, the Checkpoint (nil: none; only read),
	// folder selection and mapping, the message filters, Transfers, the
	// retry policy and TempDir. Sink, Reporter, Dedupe, DryRun and the
	// copy-only settings are not used.
	Options
	// Dest is the destination, read as a Source.
	Dest Source
	// Resolver is the destination's naming (a sink's); nil: folder names
	// are those Options.MapName gives.
	Resolver Resolver
	// Events, if set, receives progress and every message's verdict.
	Events CheckReporter
}

// Verdicts.
const (
	VerdictFound      = "found"      // in the destination
	VerdictMissing    = "missing"    // selected, not in the destination
	VerdictFiltered   = "filtered"   // outside the selection: not required
	VerdictUnreadable = "unreadable" // could not be read: not checked
	VerdictExtra      = "extra"      // destination message without a source message
	VerdictDuplicate  = "duplicate"  // another copy of a source message that has one
)

// How a message was found.
const (
	MatchCheckpoint  = "checkpoint"  // the recorded copy is there
	MatchFingerprint = "fingerprint" // Message-ID and stored size
	MatchContent     = "content"     // SHA-256 of the stored form
	MatchDedupe      = "dedupe"      // the checkpoint's --dedupe record, by Message-ID
)

// Verdict is what Check found for one message of either side.
type Verdict struct {
	Side    string `json:"side"`   // "source" or "destination"
	Folder  string `json:"folder"` // the message's folder on its side
	ID      string `json:"id"`
	Verdict string `json:"verdict"`
	How     string `json:"how,omitempty"`
	// Dest is the destination folder (source side); DestID the copy found.
	Dest   string `json:"dest,omitempty"`
	DestID string `json:"dest_id,omitempty"`
	// SourceFolder and SourceID name the source message a duplicate is
	// another copy of.
	SourceFolder string    `json:"source_folder,omitempty"`
	SourceID     string    `json:"source_id,omitempty"`
	Size         int64     `json:"size"`
	Date         time.Time `json:"date,omitzero"`
	MessageID    string    `json:"message_id,omitempty"`
	From         string    `json:"from,omitempty"`
	Subject      string    `json:"subject,omitempty"`
	// FlagsLost are on the source message and not on its copy, FlagsAdded
	// on the copy and not on the source message; NotKept are keywords the
	// destination folder keeps on no message (not a difference).
	FlagsLost  []string `json:"flags_lost,omitempty"`
	FlagsAdded []string `json:"flags_added,omitempty"`
	NotKept    []string `json:"keywords_not_kept,omitempty"`
	// DestDate is the copy's internal date when it differs (to the second).
	DestDate time.Time `json:"dest_date,omitzero"`
	// Elsewhere is, for a missing message, a destination folder that holds
	// a message with its Message-ID (and size): moved, or a renamed folder.
	Elsewhere string `json:"elsewhere,omitempty"`
	Reason    string `json:"reason,omitempty"`
	// RecordGone: missing, and the checkpoint records a copy of it in its
	// destination folder that is not there any more (deleted, its folder
	// deleted or re-created): a copy does not copy it again until the
	// record is removed (check --forget-missing). Epoch is the source
	// folder's epoch, under which the checkpoint keeps the record.
	RecordGone bool   `json:"recorded_copy_gone,omitempty"`
	Epoch      string `json:"-"`
}

// Differs reports whether a found message's copy differs in flags or date.
func (v *Verdict) Differs() bool {
	return len(v.FlagsLost)+len(v.FlagsAdded) > 0 || !v.DestDate.IsZero()
}

// FolderCheck counts one source folder. Selected = Source - Filtered =
// Found + Missing + Unreadable. Extra and Duplicate count the destination
// folder's messages; when several source folders share one destination
// folder, they are counted on the first.
type FolderCheck struct {
	Name         string   `json:"name"`
	Dest         string   `json:"dest"`
	DestExists   bool     `json:"dest_exists"`
	Source       int      `json:"source"`
	Filtered     int      `json:"filtered"`
	Found        int      `json:"found"`
	ByCheckpoint int      `json:"found_by_checkpoint"`
	ByContent    int      `json:"found_by_content"`
	ByDedupe     int      `json:"found_by_dedupe"`
	Missing      int      `json:"missing"`
	Unreadable   int      `json:"unreadable"`
	Extra        int      `json:"extra"`
	Duplicate    int      `json:"duplicate"`
	FlagDiff     int      `json:"flag_differences"`
	DateDiff     int      `json:"date_differences"`
	NotKept      []string `json:"keywords_not_kept,omitempty"`
	// Error says why the folder (or its destination folder) could not be
	// read; its messages were not checked.
	Error string `json:"error,omitempty"`
}

// CheckReport is the outcome of Check.
type CheckReport struct {
	Checkpoint bool          `json:"used_checkpoint"`
	Folders    []FolderCheck `json:"folders"`
	Totals     FolderCheck   `json:"totals"`
	// Problems are the verdicts worth a look: missing, unreadable, extra,
	// duplicate, and found messages whose copy differs.
	Problems []Verdict `json:"problems"`
	// Unmapped are destination folders no source folder maps to.
	Unmapped    []string      `json:"unmapped_destination_folders,omitempty"`
	Warnings    []string      `json:"warnings,omitempty"`
	Elapsed     time.Duration `json:"elapsed_ns"`
	Error       string        `json:"error,omitempty"`
	Interrupted bool          `json:"interrupted"`
}

// Complete reports whether every selected message was found and every
// selected folder could be read.
func (r CheckReport) Complete() bool {
	return r.Totals.Missing == 0 && !r.Unchecked() && r.Error == "" && !r.Interrupted
}

// Unchecked reports whether some selected folder or message could not be
// read (so the check is not a proof for it).
func (r CheckReport) Unchecked() bool {
	if r.Totals.Unreadable > 0 {
		return true
	}
	for _, f := range r.Folders {
		if f.Error != "" {
			return true
		}
	}
	return false
}

// Differences reports whether the destination holds extra or duplicate
// copies or copies whose flags or dates differ.
func (r CheckReport) Differences() bool {
	t := r.Totals
	return t.Extra+t.Duplicate+t.FlagDiff+t.DateDiff > 0
}

// CheckEventKind says what a CheckEvent reports.
type CheckEventKind int

const (
	// CheckPlanned: N source folders will be compared.
	CheckPlanned CheckEventKind = iota
	// CheckFolderStart: Folder (source) is compared with Dest.
	CheckFolderStart
	// CheckListed: a folder was listed, N messages; Dest is set when it
	// is a destination folder.
	CheckListed
	// CheckFolderDone: Result holds the counts of source folder Folder.
	CheckFolderDone
	// CheckMessage: Verdict holds one message's verdict. Found and
	// filtered messages are reported as their folder is compared, the
	// others (Differs included) at the end.
	CheckMessage
	// CheckWarning: Err is something the user should know.
	CheckWarning
	// CheckRetrying: a transient error (Err); the step is retried.
	CheckRetrying
)

// CheckEvent is one thing that happened during a check.
type CheckEvent struct {
	Kind    CheckEventKind
	Folder  string
	Dest    string
	N       int
	Result  *FolderCheck
	Verdict *Verdict
	Err     error
}

// CheckReporter receives check events, from several goroutines at once;
// it must not block for long.
type CheckReporter interface {
	CheckEvent(CheckEvent)
}

// CheckReporterFunc adapts a function to CheckReporter.
type CheckReporterFunc func(CheckEvent)

// CheckEvent calls f.
func (f CheckReporterFunc) CheckEvent(e CheckEvent) { f(e) }

// Check compares o.Source with o.Dest folder by folder (see the comment
// at the top of this file) and returns the report. It returns a non-nil
// error only for a fatal error or an interruption (wrapping
// ErrInterrupted); folders and messages that cannot be read are in the
// report. It changes nothing and closes nothing.
func Check(ctx context.Context, o CheckOptions) (CheckReport, error) {
	o.Options.defaults()
	if o.Source == nil || o.Dest == nil {
		return CheckReport{}, fmt.Errorf("check: source and destination needed")
	}
	start := time.Now()
	c := &checker{o: o, missing: map[string][]*citem{}, extras: map[string][]*citem{}}
	c.emit = func(ev CheckEvent) {
		if o.Events != nil {
			o.Events.CheckEvent(ev)
		}
	}
	c.e = &engine{o: o.Options, rep: func(ev Event) {
		switch ev.Kind {
		case Retrying:
			c.emit(CheckEvent{Kind: CheckRetrying, Folder: ev.Folder, Err: ev.Err})
		case Warning:
			c.warn(ev.Err)
		}
	}}
	_, c.crlf = o.Dest.(CRLFSink)
	_, c.srcCRLF = o.Source.(CRLFSink)
	_, c.srcMIDs = o.Source.(MessageIDLister)
	_, c.dstMIDs = o.Dest.(MessageIDLister)
	err := c.run(ctx)
	r := c.report()
	r.Checkpoint = o.Checkpoint != nil
	r.Elapsed = time.Since(start)
	if ctx.Err() != nil {
		r.Interrupted = true
		err = fmt.Errorf("%w: %v", ErrInterrupted, context.Cause(ctx))
	}
	if err != nil {
		r.Error = err.Error()
	}
	return r, err
}

// citem is one listed message of either side.
type citem struct {
	m        Message
	dest     bool
	fc       *FolderCheck // source side: its folder's counts
	mid      string       // normalised Message-ID, valid when midKnown
	midKnown bool
	hdr      []byte // header (display fields), nil until read
	stored   int64  // size in the destination's form; -1 until known
	sum      string // SHA-256 of the destination's form; "" until computed
	skip     error  // could not be read
	filtered string // source: why it is outside the selection
	outside  bool   // destination: outside the selection
	peer     *citem
	how      string
	note     string // why the checkpoint's record did not decide
	gone     bool   // source: the checkpoint records a copy, and it is not there any more
	epoch    string // source: its folder's epoch (the checkpoint's key)
	dedupe   bool   // source: the checkpoint records --dedupe found it in the destination
	claimed  bool   // destination: an extra message a dedupe record stands for (lookElsewhere)
	v        *Verdict
}

func (it *citem) setHeader(h []byte) {
	it.hdr = h
	if !it.midKnown {
		it.mid, it.midKnown = normMessageID(MessageIDFromHeader(h)), true
	}
}

func normMessageID(mid string) string {
	return strings.TrimSpace(strings.Trim(strings.TrimSpace(mid), "<>"))
}

func pair(s, d *citem, how string) {
	s.peer, d.peer, s.how, d.how = d, s, how, how
}

// checkGroup is one destination folder and the selected source folders
// whose messages a copy puts into it.
type checkGroup struct {
	dest string   // as the sink names it
	dmb  *Mailbox // the destination folder read as a source; nil: none
	srcs []Mailbox
	fcs  []*FolderCheck
}

// sideListing is what one side listed for a group: per folder, the items
// or a Skip-classified error.
type sideListing struct {
	items [][]*citem
	errs  []error
}

type checker struct {
	o       CheckOptions
	e       *engine
	emit    func(CheckEvent)
	crlf    bool // the destination stores the CRLF form
	srcCRLF bool // the source's sizes and bytes are in CRLF form already
	srcMIDs bool // the source lists Message-IDs
	dstMIDs bool

	mu       sync.Mutex
	folders  []*FolderCheck
	problems []*citem
	warnings []string
	unmapped []Mailbox
	missing  map[string][]*citem // Message-ID -> missing source messages
	extras   map[string][]*citem // Message-ID -> extra destination messages
}

func (c *checker) warn(err error) {
	if err == nil {
		return
	}
	c.mu.Lock()
	c.warnings = append(c.warnings, err.Error())
	c.mu.Unlock()
	c.emit(CheckEvent{Kind: CheckWarning, Err: err})
}

func normInbox(name string) string {
	if strings.EqualFold(name, "INBOX") {
		return "INBOX"
	}
	return name
}

func storeName(s Source, mb Mailbox) string {
	if n, ok := s.(StoreNamer); ok {
		return normInbox(n.StoreName(mb))
	}
	return normInbox(mb.Name)
}

func (c *checker) run(ctx context.Context) error {
	var srcMbs, dstMbs []Mailbox
	lg, lctx := errgroup.WithContext(ctx)
	lg.Go(func() error {
		err := c.e.retry(lctx, &job{}, "list source folders", func() error {
			var err error
			srcMbs, err = c.o.Source.Mailboxes(lctx)
			return err
		})
		if err != nil {
			return fmt.Errorf("list source folders: %w", err)
		}
		return nil
	})
	lg.Go(func() error {
		err := c.e.retry(lctx, &job{}, "list destination folders", func() error {
			var err error
			dstMbs, err = c.o.Dest.Mailboxes(lctx)
			return err
		})
		if err != nil {
			return fmt.Errorf("list destination folders: %w", err)
		}
		return nil
	})
	if err := lg.Wait(); err != nil {
		return err
	}
	warns, err := c.o.checkSelection(srcMbs)
	for _, w := range warns {
		c.warn(w)
	}
	if err != nil {
		return err
	}
	dst := map[string]Mailbox{}
	for _, mb := range dstMbs {
		dst[storeName(c.o.Dest, mb)] = mb
	}
	claimed := map[string]bool{}
	byDest := map[string]*checkGroup{}
	var groups []*checkGroup
	planned := map[string]Mailbox{}
	pl := c.o.Planned(srcMbs)
	for _, mb := range pl {
		planned[mb.Name] = mb
	}
	if p, ok := c.o.Resolver.(Planner); ok {
		p.Plan(c.o.plan(pl))
	}
	for _, mb := range srcMbs {
		if err := ctx.Err(); err != nil {
			return err
		}
		// As the lister of copy prepares a folder (list.go): the uses as
		// Planned gives them (a folder not copied claims none).
		name := c.o.MapName(mb.Name)
		prep, ok := planned[mb.Name]
		if !ok {
			prep = mb
			prep.SpecialUse, prep.UseGuessed = "", false
		}
		dest := name
		if c.o.Resolver != nil {
			var err error
			if dest, err = c.o.Resolver.Resolve(ctx, prep, name); err != nil {
				return fmt.Errorf("destination folder of %q: %w", mb.Name, err)
			}
		}
		dest = normInbox(dest)
		claimed[dest] = true
		if !c.o.Selected(mb.Name) || mb.NoSelect {
			continue
		}
		fc := &FolderCheck{Name: mb.Name, Dest: dest}
		c.folders = append(c.folders, fc)
		if ch, ok := c.o.Source.(Checker); ok {
			if err := ch.CheckMailbox(ctx, mb); err != nil {
				if Classify(err) != Skip {
					return err
				}
				fc.Error = fmt.Sprintf("source folder %q could not be read: %v", mb.Name, err)
				c.emit(CheckEvent{Kind: CheckFolderDone, Folder: mb.Name, Dest: dest, Result: fc})
				continue
			}
		}
		g := byDest[dest]
		if g == nil {
			g = &checkGroup{dest: dest}
			if d, ok := dst[dest]; ok && !d.NoSelect {
				g.dmb = &d
			}
			byDest[dest] = g
			groups = append(groups, g)
		}
		fc.DestExists = g.dmb != nil
		g.srcs = append(g.srcs, mb)
		g.fcs = append(g.fcs, fc)
	}
	for _, mb := range dstMbs {
		if !claimed[storeName(c.o.Dest, mb)] && !mb.NoSelect {
			c.unmapped = append(c.unmapped, mb)
		}
	}
	n := 0
	for _, g := range groups {
		n += len(g.srcs)
	}
	c.emit(CheckEvent{Kind: CheckPlanned, N: n})

	// Each side is listed a few folders ahead of the comparison: one
	// folder at a time (as Source requires), or up to listWindow at once
	// for a ConcurrentLister. A listing waits in its slot until compared,
	// so at most window listings per side are held.
	eg, gctx := errgroup.WithContext(ctx)
	lister := func(dest bool) ([]chan sideListing, chan struct{}) {
		window := 1
		if _, ok := c.side(dest).(ConcurrentLister); ok {
			window = listWindow
		}
		slots := make([]chan sideListing, len(groups))
		for i := range slots {
			slots[i] = make(chan sideListing, 1)
		}
		sem := make(chan struct{}, window)
		eg.Go(func() error {
			for i, g := range groups {
				select {
				case sem <- struct{}{}:
				case <-gctx.Done():
					return gctx.Err()
				}
				eg.Go(func() error {
					l, err := c.listGroup(gctx, g, dest)
					if err != nil {
						return err
					}
					slots[i] <- l
					return nil
				})
			}
			return nil
		})
		return slots, sem
	}
	srcSlots, srcSem := lister(false)
	dstSlots, dstSem := lister(true)
	eg.Go(func() error {
		for i, g := range groups {
			var sl, dl sideListing
			for _, x := range []struct {
				l    *sideListing
				slot chan sideListing
			}{{&sl, srcSlots[i]}, {&dl, dstSlots[i]}} {
				select {
				case *x.l = <-x.slot:
				case <-gctx.Done():
					return gctx.Err()
				}
			}
			<-srcSem
			<-dstSem
			if err := c.compare(gctx, g, sl, dl); err != nil {
				return err
			}
		}
		return c.lookElsewhere(gctx)
	})
	return eg.Wait()
}

// listWindow is how many folders of a ConcurrentLister side are listed at
// once: enough to hide a few round trips per folder, few enough to hold
// little.
const listWindow = 4

// listGroup lists what one side holds for g: its source folders, or its
// destination folder.
func (c *checker) listGroup(ctx context.Context, g *checkGroup, dest bool) (sideListing, error) {
	var l sideListing
	mbs := g.srcs
	if dest {
		mbs = nil
		if g.dmb != nil {
			mbs = []Mailbox{*g.dmb}
		}
	}
	for _, mb := range mbs {
		items, err := c.list(ctx, mb, dest)
		if err != nil && (Classify(err) != Skip || ctx.Err() != nil) {
			return l, err
		}
		l.items = append(l.items, items)
		l.errs = append(l.errs, err)
		ev := CheckEvent{Kind: CheckListed, Folder: mb.Name, N: len(items)}
		if dest {
			ev.Folder, ev.Dest = g.dest, g.dest
		}
		c.emit(ev)
	}
	return l, nil
}

// list lists one folder of one side, starting over on a transient error.
func (c *checker) list(ctx context.Context, mb Mailbox, dest bool) ([]*citem, error) {
	s, what := c.o.Source, "list source folder"
	if dest {
		s, what = c.o.Dest, "list destination folder"
	}
	var items []*citem
	err := c.e.retry(ctx, &job{mb: mb}, what, func() error {
		items = items[:0]
		return s.List(ctx, mb, func(m Message) error {
			it := &citem{m: m, dest: dest, stored: -1}
			if (dest && c.dstMIDs) || (!dest && c.srcMIDs) {
				it.mid, it.midKnown = normMessageID(m.MessageID), true
			}
			if dest || !c.crlf || c.srcCRLF {
				it.stored = m.Size
			}
			items = append(items, it)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("%s %q: %w", what, mb.Name, err)
	}
	return items, nil
}
