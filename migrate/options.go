package migrate

import (
	"errors"
	"fmt"
	"path"
	"strings"
	"time"
)

// Options configure Run.
type Options struct {
	Source     Source
	Sink       Sink
	Checkpoint Checkpoint // nil only with DryRun
	Reporter   Reporter   // may be nil

	// Include and Exclude are folder globs (path.Match syntax on "/"
	// names; a pattern also matches every subfolder of what it matches).
	// A folder is copied if it matches some Include (or Include is empty)
	// and no Exclude.
	Include, Exclude []string
	// Map renames source folders: "Old=New" also renames Old's subfolders.
	Map map[string]string
	// Since/Before bound the internal date; zero means unbounded.
	Since, Before time.Time
	// MaxSize skips (as filtered) messages larger than this; 0 = no limit.
	MaxSize int64
	// Messages flagged \Deleted (IMAP; Maildir "T"; mbox Status "D") are
	// copied with the flag, as mbsync, dsync and imapsync do: a user of a
	// "mark as deleted" mail client still sees them. SkipDeleted leaves
	// them out (as filtered).
	SkipDeleted bool
	// IncludeDeleted also copies messages the source already treats as
	// gone (Message.Expunged: Thunderbird's expunged-but-not-compacted),
	// which are left out (as filtered) by default.
	IncludeDeleted bool

	// Dedupe skips a message when the destination folder already holds a
	// message with the same Message-ID and either the same size or, with
	// a sink that implements BodyIndexer, the same body length (see
	// Body.BodyLen: headers a mail client added on download and LF versus
	// CRLF line ends do not count; failing an equal one, one line end more
	// or less: see dedupSet.take). For merging a second source into an
	// account, or after losing the state dir. Needs a sink that implements
	// Indexer; messages without a Message-ID are always copied.
	Dedupe bool
	// DedupeAcrossFolders makes Dedupe look in every folder of the
	// destination, not only the one a message goes to: for merging a
	// one-folder source (POP3) into an account whose mail was filed into
	// folders. Needs a sink that implements FolderLister.
	DedupeAcrossFolders bool
	// NoAutoDedupe turns off the comparison at the first contact with a
	// destination folder that already holds mail this checkpoint did not
	// copy (contact.go): every message the checkpoint does not record is
	// copied.
	NoAutoDedupe bool

	// DeleteAfterCopy removes from the source (a Deleter) every message
	// whose copy is recorded done, once the run ends without error.
	DeleteAfterCopy bool

	// Transfers bounds concurrent fetches and appends (default 8); each
	// side is further bounded by its Limits, and a side whose Limits
	// pipeline several calls per connection runs Transfers connections,
	// each with that many calls.
	Transfers int
	// DryRun lists and counts, writes nothing (not even the checkpoint).
	DryRun bool
	// MemLimit is the largest body kept in memory (default DefaultMemLimit).
	MemLimit int64
	// MemBudget bounds the bytes of all bodies held in memory at once
	// (default DefaultMemBudget); beyond it bodies go to temporary files.
	MemBudget int64
	// TempDir holds spool files for large bodies ("" = os.TempDir()).
	TempDir string
	// BatchSize bounds how many messages one appender groups into one
	// checkpoint commit and sink sync (default 32).
	BatchSize int
	// Retries is how many times a retryable error is retried (default 5);
	// RetryBase is the first backoff (default 500ms, doubling).
	Retries   int
	RetryBase time.Duration

	// Stop, when closed, asks for a graceful stop: no new message is
	// listed, fetched or started; the appends in flight finish and are
	// recorded, and Run returns ErrInterrupted. (Cancelling Run's context
	// stops at once instead; the checkpoint resumes either way.)
	Stop <-chan struct{}

	// SettleDelay is how long after an append became uncertain (its
	// connection broke, or its run died) the engine waits before the lookup
	// that decides whether to send it again, for destinations that may
	// store an APPEND late (default DefaultSettleDelay; see settle.go).
	SettleDelay time.Duration
	// Relist lists every folder, also those whose Version says they are
	// unchanged since a run finished them (unchanged.go).
	Relist bool

	// ThrottleWait is how long to wait when a server throttles without
	// saying for how long (default DefaultThrottleWait); a suggested time
	// ("Suggested Backoff Time") is honoured as it is.
	ThrottleWait time.Duration

	// StepHook, if set, is called at each crash-relevant step of an
	// appender ("intent", "append", "sync", "done") with the number of
	// messages involved. Tests use it to kill the process at exact points.
	StepHook func(step string)
}

func (o *Options) defaults() {
	if o.Transfers <= 0 {
		o.Transfers = 8
	}
	if o.MemLimit <= 0 {
		o.MemLimit = DefaultMemLimit
	}
	if o.MemBudget <= 0 {
		o.MemBudget = DefaultMemBudget
	}
	if o.BatchSize <= 0 {
		o.BatchSize = 32
	}
	if o.Retries <= 0 {
		o.Retries = 5
	}
	if o.RetryBase <= 0 {
		o.RetryBase = 500 * time.Millisecond
	}
	if o.SettleDelay <= 0 {
		o.SettleDelay = DefaultSettleDelay
	}
	if o.ThrottleWait <= 0 {
		o.ThrottleWait = DefaultThrottleWait
	}
	if o.Reporter == nil {
		o.Reporter = ReporterFunc(func(Event) {})
	}
}

// DefaultSettleDelay is the default Options.SettleDelay: a server that has
// the whole message stores it within milliseconds; seconds cover a loaded
// server waiting for a folder lock and a proxy draining its buffers.
const DefaultSettleDelay = 3 * time.Second

// DefaultThrottleWait is the default Options.ThrottleWait.
const DefaultThrottleWait = 30 * time.Second

// ParseMap parses "SRC=DST" folder renames.
func ParseMap(specs []string) (map[string]string, error) {
	m := map[string]string{}
	for _, s := range specs {
		src, dst, ok := strings.Cut(s, "=")
		src, dst = strings.Trim(src, "/ "), strings.Trim(dst, "/ ")
		if !ok || src == "" || dst == "" {
			return nil, fmt.Errorf("invalid --map %q: want SRC=DST with both folder names non-empty", s)
		}
		src = CanonInbox(src)
		m[src] = dst
	}
	return m, nil
}

// CheckGlobs reports the first malformed pattern.
func CheckGlobs(patterns []string) error {
	for _, p := range patterns {
		if _, err := path.Match(p, ""); err != nil {
			return fmt.Errorf("invalid folder pattern %q: %w", p, err)
		}
	}
	return nil
}

// CanonInbox spells a folder name's first level "INBOX" when it is INBOX
// in any case ("Inbox", "inbox/Work"): the name INBOX is case-insensitive
// (RFC 3501 section 5.1) and every source names it "INBOX", so a pattern
// or --map source typed as "Inbox" must find it.
func CanonInbox(name string) string {
	if len(name) >= 5 && strings.EqualFold(name[:5], "INBOX") && (len(name) == 5 || name[5] == '/') {
		return "INBOX" + name[5:]
	}
	return name
}

// globMatch reports whether name or one of its parents matches pattern;
// INBOX matches in any case (CanonInbox), and a pattern's trailing "/"
// ("Projects/") is not part of it.
func globMatch(pattern, name string) bool {
	if p := strings.TrimRight(pattern, "/"); p != "" {
		pattern = p
	}
	pattern, name = CanonInbox(pattern), CanonInbox(name)
	for n := name; n != ""; {
		if ok, _ := path.Match(pattern, n); ok {
			return true
		}
		i := strings.LastIndex(n, "/")
		if i < 0 {
			break
		}
		n = n[:i]
	}
	return false
}

// Selected reports whether folder name passes Include/Exclude.
func (o *Options) Selected(name string) bool {
	if len(o.Include) > 0 {
		in := false
		for _, p := range o.Include {
			if globMatch(p, name) {
				in = true
				break
			}
		}
		if !in {
			return false
		}
	}
	for _, p := range o.Exclude {
		if globMatch(p, name) {
			return false
		}
	}
	return true
}

// ErrNothingSelected is matched (errors.Is) by the error of a run or a
// check whose --include/--exclude, or URL folder (SelectionError), select
// none of the source's folders: a mistake in the command line, found once
// the source's folders are known.
var ErrNothingSelected = errors.New("nothing selected")

// SelectionError is an error, msg, that matches ErrNothingSelected: for
// a source whose own selection (an IMAP URL's folder) names nothing.
func SelectionError(msg string) error { return selectionError{msg} }

type selectionError struct{ msg string }

func (e selectionError) Error() string        { return e.msg }
func (e selectionError) Is(target error) bool { return target == ErrNothingSelected }

// checkSelection says what of the selection matched nothing among the
// source's folders mbs: a warning for each --include pattern that names no
// folder, and an error when patterns were given and no folder is selected
// at all (a mistyped name must not pass as a run, or a check, of nothing).
// Called by the lister of copy and by check, once, with every folder.
func (o *Options) checkSelection(mbs []Mailbox) (warnings []error, err error) {
	if len(o.Include) == 0 && len(o.Exclude) == 0 {
		return nil, nil
	}
	selected := 0
	for _, mb := range mbs {
		if o.Selected(mb.Name) && !mb.NoSelect {
			selected++
		}
	}
	var none []string
	for _, p := range o.Include {
		found := false
		for _, mb := range mbs {
			if globMatch(p, mb.Name) {
				found = true
				break
			}
		}
		if !found {
			none = append(none, fmt.Sprintf("%q", p))
			warnings = append(warnings, fmt.Errorf("--include %q matches no folder of the source", p))
		}
	}
	if selected == 0 && len(mbs) > 0 {
		names := make([]string, 0, 8)
		for _, mb := range mbs {
			if len(names) == 8 {
				names = append(names, "...")
				break
			}
			names = append(names, fmt.Sprintf("%q", mb.Name))
		}
		what := "--include/--exclude select"
		if len(none) > 0 {
			what = "--include " + strings.Join(none, ", ") + " selects"
		}
		return warnings, selectionError{fmt.Sprintf("%s none of the source's %d folders (%s)", what, len(mbs), strings.Join(names, ", "))}
	}
	return warnings, nil
}

// MapName applies Map to a source folder name; the longest matching prefix
// wins.
func (o *Options) MapName(name string) string {
	best := ""
	for src := range o.Map {
		if (name == src || strings.HasPrefix(name, src+"/")) && len(src) > len(best) {
			best = src
		}
	}
	if best == "" {
		return name
	}
	return o.Map[best] + name[len(best):]
}

// Mapped reports whether the user gave an explicit --map for name (the
// sink then must not redirect it by special use).
func (o *Options) Mapped(name string) bool {
	for src := range o.Map {
		if name == src || strings.HasPrefix(name, src+"/") {
			return true
		}
	}
	return false
}

// filter returns a non-empty reason if msg is outside the message filters.
func (o *Options) filter(m Message) string {
	if !o.Since.IsZero() && !m.Date.IsZero() && m.Date.Before(o.Since) {
		return "before --since"
	}
	if !o.Before.IsZero() && !m.Date.IsZero() && !m.Date.Before(o.Before) {
		return "not before --before"
	}
	if o.MaxSize > 0 && m.Size > o.MaxSize {
		return "larger than --max-size"
	}
	if m.Expunged && !o.IncludeDeleted {
		return "expunged on the source (deleted, folder not compacted yet): --include-deleted copies it"
	}
	if o.SkipDeleted {
		for _, f := range m.Flags {
			if strings.EqualFold(f, `\Deleted`) {
				return `flagged \Deleted (--skip-deleted)`
			}
		}
	}
	return ""
}

// Planned returns the mailboxes of mbs that a run copies, in order: the
// selected ones (Include/Exclude), each special use given to one folder
// at most (AssignSpecialUses), none to a folder renamed by --map (an
// explicit --map wins over special-use mapping). The result is a new
// slice: mbs is left as it was.
func (o *Options) Planned(mbs []Mailbox) []Mailbox {
	return o.plannedInto(make([]Mailbox, 0, len(mbs)), mbs)
}

// plannedInto is Planned appending to sel, which may be mbs[:0]: the
// lister, which owns the source's list, plans it in place (an account of
// 100,000 folders holds one list, not two).
func (o *Options) plannedInto(sel, mbs []Mailbox) []Mailbox {
	for _, mb := range mbs {
		if o.Selected(mb.Name) {
			if o.Mapped(mb.Name) {
				mb.SpecialUse, mb.UseGuessed = "", false
			}
			sel = append(sel, mb)
		}
	}
	AssignSpecialUses(sel)
	return sel
}

// plan lists the folders Prepare will be asked for, for a Planner.
func (o *Options) plan(mbs []Mailbox) []PlannedFolder {
	out := make([]PlannedFolder, 0, len(mbs))
	for _, mb := range mbs {
		out = append(out, PlannedFolder{Source: mb.Name, Name: o.MapName(mb.Name)})
	}
	return out
}
