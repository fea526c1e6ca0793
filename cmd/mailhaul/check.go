package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/mailhaul/mailhaul/checkpoint"
	"github.com/mailhaul/mailhaul/internal/imapconn"
	"github.com/mailhaul/mailhaul/internal/maildir"
	"github.com/mailhaul/mailhaul/migrate"
	"github.com/mailhaul/mailhaul/sinks"
	"github.com/mailhaul/mailhaul/sources"
)

// `mailhaul check SRC DST`: the comparison is migrate.Check; this file
// parses the same endpoints and options as copy, opens the destination as
// a source (plus, for IMAP, the sink's naming, read-only), finds the
// checkpoint of the pair as copy does (read-only, never created), renders
// progress and the report, and maps the outcome to an exit code.

// Exit codes of check beyond the shared ones (documented in the README).
const (
	exitMissing     = 4 // some selected messages are not in the destination
	exitDifferences = 5 // complete, but extra or duplicate copies, or flags/dates differ
)

type checkFlags struct {
	copyFlags // the options shared with copy (only those that apply are registered)
	limit     int
	noCP      bool
	forget    bool // --forget-missing
}

func checkCommand(g *globalFlags) *cobra.Command {
	f := &checkFlags{}
	cmd := &cobra.Command{
		Use:   "check SRC DST",
		Short: "Prove, folder by folder, that every message of SRC is in DST (changes nothing)",
		Long: `Compare SRC with DST folder by folder: for every selected source message,
is it in the destination folder a copy puts it in? By the checkpoint of an
earlier copy when there is one (the recorded copy must still be there), else
by Message-ID and size (confirmed by content when that is ambiguous or there
is no Message-ID). A message a copy with --dedupe found already in the
destination (the checkpoint says so) is found by its Message-ID, in its
folder or, as --dedupe-across-folders allows, any other. Also listed: destination messages without a source
(extra or duplicate copies) and copies whose flags or internal date differ.

Takes the same endpoints and selection as copy (--include, --exclude, --map,
--since, --before, --max-size, --skip-deleted, --include-deleted,
--to-folder); run it with the options the copy ran with. Reads headers and
sizes, not bodies, except where a hash decides. Nothing is changed on either
side, nor in the checkpoint (but for --forget-missing: a message the
checkpoint records as copied whose copy has since been deleted from the
destination is missing, and a copy does not copy it again until check
--forget-missing has removed that record).

Exit codes: 0 complete; 4 messages missing; 3 some folders or messages could
not be read; 5 complete but with extra or duplicate copies or flag/date
differences; 1 fatal error; 2 usage error; 130 interrupted.`,
		Example: `  mailhaul check maildir:~/Maildir imaps://me@imap.example.org
  mailhaul check --json --limit 0 imaps://me@old.example.net imaps://me@new.example.org > proof.json
  mailhaul check --no-checkpoint "mbox:$HOME/.thunderbird/x.default/Mail/Local Folders" maildir:~/Maildir`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runCheck(g, f, args[0], args[1])
		},
	}
	fl := cmd.Flags()
	c := &f.copyFlags
	fl.StringArrayVar(&c.include, "include", nil, "check only folders matching this glob (repeatable; a folder also selects its subfolders)")
	fl.StringArrayVar(&c.exclude, "exclude", nil, "leave out folders matching this glob (repeatable)")
	fl.StringArrayVar(&c.maps, "map", nil, "the folder rename the copy used: SRC=DST (repeatable)")
	fl.StringVar(&c.since, "since", "", "only messages with an internal date on or after this date are required (YYYY-MM-DD or RFC 3339)")
	fl.StringVar(&c.before, "before", "", "only messages with an internal date before this date are required")
	fl.StringVar(&c.maxSize, "max-size", "", "messages larger than this are not required (e.g. 25M)")
	fl.BoolVar(&c.skipDeleted, "skip-deleted", false, `messages flagged \Deleted are not required (as copy --skip-deleted)`)
	fl.BoolVar(&c.includeDeleted, "include-deleted", false, "Thunderbird's deleted-but-not-compacted messages are required too (as copy --include-deleted)")
	fl.StringVar(&c.stateDir, "state-dir", defaultStateDir(), "where copy keeps its checkpoints (read only)")
	fl.IntVar(&c.transfers, "transfers", 8, "parallel connections per side for reading headers and hashing")
	fl.Var(folderName{&c.toFolder}, "to-folder", "folder name of a single-file mbox source (as given to copy)")
	fl.StringVar(&c.mboxFormat, "mbox-format", "auto", "dialect of an mbox source (as given to copy)")
	addIMAPFlags(fl, &c.imap)
	fl.IntVar(&f.limit, "limit", 20, "list at most this many messages per kind of problem (0: all); --json always has every message")
	fl.BoolVar(&f.noCP, "no-checkpoint", false, "ignore the checkpoint: match by Message-ID, size and content only")
	fl.BoolVar(&f.forget, "forget-missing", false, "remove from the checkpoint the records of copies found missing (deleted from the destination since), so that the next copy copies those messages again; the one change check makes, and only when the check completes")
	return cmd
}

// checkSelection turns the flags copy and check share (which folders and
// messages, how many transfers) into engine options, or a usage error.
func checkSelection(f *copyFlags) (migrate.Options, error) {
	o := migrate.Options{Include: f.include, Exclude: f.exclude, Transfers: f.transfers,
		IncludeDeleted: f.includeDeleted, SkipDeleted: f.skipDeleted}
	if f.includeDeleted && f.skipDeleted {
		return o, usageErr("--include-deleted and --skip-deleted contradict each other (expunged messages are flagged \\Deleted too)")
	}
	if err := migrate.CheckGlobs(append(append([]string{}, f.include...), f.exclude...)); err != nil {
		return o, usageErr("%v", err)
	}
	var err error
	if o.Map, err = migrate.ParseMap(f.maps); err != nil {
		return o, usageErr("%v", err)
	}
	if o.Since, err = parseDate("--since", f.since); err != nil {
		return o, usageErr("%v", err)
	}
	if o.Before, err = parseDate("--before", f.before); err != nil {
		return o, usageErr("%v", err)
	}
	if o.MaxSize, err = parseSize(f.maxSize); err != nil {
		return o, usageErr("invalid --max-size: %v", err)
	}
	if f.transfers < 1 || f.transfers > 64 {
		return o, usageErr("--transfers must be between 1 and 64")
	}
	return o, nil
}

// checkDestSchemes are the destinations check can read.
var checkDestSchemes = map[string]bool{"maildir": true, "imap": true, "imaps": true}

func runCheck(g *globalFlags, f *checkFlags, srcArg, dstArg string) error {
	o, err := checkSelection(&f.copyFlags)
	if err != nil {
		return err
	}
	if f.limit < 0 {
		return usageErr("--limit must be 0 (all) or more")
	}
	if f.forget && f.noCP {
		return usageErr("--forget-missing removes records from the checkpoint: it cannot go with --no-checkpoint")
	}
	srcEP, err := parseEndpoint(srcArg)
	if err != nil {
		return usageErr("%v", err)
	}
	dstEP, err := parseEndpoint(dstArg)
	if err != nil {
		return usageErr("%v", err)
	}
	if err := noLoginFlags(&f.imap, srcEP, dstEP); err != nil {
		return err
	}
	if err := pop3ToFolder(&o, &f.copyFlags, srcEP); err != nil {
		return err
	}
	if _, ok := sourceSchemes[srcEP.Scheme]; !ok {
		return usageErr("source %q: scheme %q cannot be read from (sources: %s)", srcEP.Raw, srcEP.Scheme, keys(sourceSchemes))
	}
	if !checkDestSchemes[dstEP.Scheme] {
		return usageErr("destination %q: scheme %q cannot be checked (destinations: %s)", dstEP.Raw, dstEP.Scheme, keys(checkDestSchemes))
	}

	ctx, stop := signalContext(g.log)
	defer stop()
	rend := newCheckRenderer(g, os.Stderr)
	env := endpointEnv{g: g, c: &f.copyFlags, warn: func(err error) { g.log.Warn(err.Error()) }, info: func(s string) { g.log.Info(s) }}
	src, dst, resolver, closeAll, err := openCheckSides(ctx, srcEP, dstEP, env)
	if err != nil {
		return &exitError{exitFatal, err}
	}
	defer closeAll()
	co := migrate.CheckOptions{Options: o, Dest: dst, Resolver: resolver, Events: rend}
	co.Source = src

	cpPath := ""
	var writable *checkpoint.Store // --forget-missing
	if !f.noCP {
		path, _, note := checkpointPath(ctx, f.stateDir, srcEP, dstEP)
		open := checkpoint.OpenReadOnly
		if f.forget {
			open = func(path string) (*checkpoint.Store, error) {
				// Read first: a copy interrupted with appends in flight
				// is finished by the next copy, not second-guessed here
				// (and opening for writing would restart its settling
				// delay).
				ro, err := checkpoint.OpenReadOnly(path)
				if ro == nil || err != nil {
					return nil, err // no checkpoint: nothing to forget
				}
				pending, err := ro.Pending()
				ro.Close()
				if err != nil {
					return nil, err
				}
				if len(pending) > 0 {
					return nil, fmt.Errorf("--forget-missing: the last copy of this pair was interrupted with %s in flight; run that copy again to the end first", plural(len(pending), "message"))
				}
				return checkpoint.Open(path, srcEP.describe(), dstEP.describe())
			}
		}
		store, err := open(path)
		if errors.Is(err, checkpoint.ErrLocked) {
			return &exitError{exitFatal, fmt.Errorf("a mailhaul copy from %s to %s is running (checkpoint %s): check when it has finished", srcEP.describe(), dstEP.describe(), path)}
		}
		if err != nil {
			return &exitError{exitFatal, err}
		}
		if store != nil {
			defer store.Close()
			co.Checkpoint = store
			cpPath = path
			if f.forget {
				writable = store
			}
			if note != "" {
				g.log.Info(note, "checkpoint", path)
			}
		} else {
			g.log.Info("no checkpoint for this pair: matching by Message-ID, size and content", "state-dir", f.stateDir)
		}
	}
	rend.collect = g.json
	rend.start()
	rep, runErr := migrate.Check(ctx, co)
	rend.finish()

	var forgotten int
	var forgetErr error
	forgetting := writable != nil && runErr == nil && !rep.Interrupted
	if forgetting {
		forgotten, forgetErr = forgetMissing(writable, rep)
	}
	code := checkExitCode(rep, runErr)
	if code == exitUsage {
		return &exitError{code, runErr} // nothing was compared: no report
	}
	if g.json {
		out := checkJSON{Source: srcEP.describe(), Destination: dstEP.describe(), Checkpoint: cpPath,
			Result: checkResult(rep, runErr), ExitCode: code, CheckReport: rep, ElapsedSec: rep.Elapsed.Seconds()}
		if err := writeJSON(os.Stdout, out, "messages", rend.sortedVerdicts()); err != nil {
			return &exitError{exitFatal, fmt.Errorf("write report: %w", err)}
		}
		printCheck(os.Stderr, rep, srcEP.describe(), dstEP.describe(), cpPath, f.limit, code, forgetting && forgetErr == nil)
	} else {
		printCheck(os.Stdout, rep, srcEP.describe(), dstEP.describe(), cpPath, f.limit, code, forgetting && forgetErr == nil)
	}
	switch {
	case forgetErr != nil:
		return &exitError{exitFatal, fmt.Errorf("--forget-missing: %w", forgetErr)}
	case f.forget && forgotten > 0:
		fmt.Fprintf(os.Stderr, "--forget-missing: removed the checkpoint's records of %s whose copies are gone; the same copy command copies them again\n", plural(forgotten, "message"))
	case f.forget:
		fmt.Fprintln(os.Stderr, "--forget-missing: the checkpoint records no copy that is missing; nothing removed")
	}
	switch {
	case code == exitOK:
		return nil
	case code == exitInterrupted:
		return &exitError{code, errors.New("interrupted")}
	case runErr != nil:
		return &exitError{code, runErr}
	}
	return &exitError{code, nil}
}

// forgetMissing removes from the checkpoint the records of the source
// messages rep found missing whose recorded copies are gone (forgettable),
// folder by folder under the epoch check read them with, and returns how
// many it removed.
func forgetMissing(store *checkpoint.Store, rep migrate.CheckReport) (int, error) {
	type key struct{ folder, epoch string }
	byFolder := map[key][]string{}
	var keys []key
	for _, v := range rep.Problems {
		if !forgettable(v) {
			continue
		}
		k := key{v.Folder, v.Epoch}
		if byFolder[k] == nil {
			keys = append(keys, k)
		}
		byFolder[k] = append(byFolder[k], v.ID)
	}
	total := 0
	for _, k := range keys {
		n, err := store.Forget(k.folder, k.epoch, byFolder[k])
		if err != nil {
			return total, fmt.Errorf("folder %q: %w", k.folder, err)
		}
		total += n
	}
	return total, nil
}

// forgettable: a missing source message whose recorded copy is gone from
// the folder a copy puts it in, and that is not somewhere else in the
// destination (moved, or its folder renamed: forgetting it would copy it
// again beside the moved copy).
func forgettable(v migrate.Verdict) bool {
	return v.Side == "source" && v.Verdict == migrate.VerdictMissing && v.RecordGone && v.Elsewhere == ""
}

// openCheckSides opens the source, and the destination for reading: as
// a source, with the sink's naming as Resolver. Credentials are asked for
// first, one side after the other (a terminal prompt each, at most); then
// every connection is dialled at once. An IMAP sink is opened only to read
// the server's namespace, delimiter and folder list (LIST, NAMESPACE: one
// connection, logged out while the check starts); a Maildir destination
// must exist. closeAll closes everything, both sides at once.
func openCheckSides(ctx context.Context, srcEP, dstEP endpoint, env endpointEnv) (src, dst migrate.Source, res migrate.Resolver, closeAll func(), err error) {
	imapEP := func(e endpoint) bool { return e.Scheme == "imap" || e.Scheme == "imaps" }
	var srcCfg, dstCfg *imapconn.Config
	if imapEP(srcEP) {
		if srcCfg, err = imapConfig(srcEP, env, "src"); err != nil {
			return nil, nil, nil, nil, err
		}
	}
	if imapEP(dstEP) {
		if dstCfg, err = imapConfig(dstEP, env, "dst"); err != nil {
			return nil, nil, nil, nil, err
		}
		dstCfg.Role = "destination" // read through a Source: say which side
	}
	var (
		wg                   sync.WaitGroup
		sink                 *sinks.IMAP
		srcErr, dstErr, rErr error
		closing              sync.WaitGroup
	)
	wg.Add(2)
	go func() {
		defer wg.Done()
		if srcCfg != nil {
			var s *sources.IMAP
			if s, srcErr = sources.OpenIMAP(ctx, srcCfg, env.c.transfers); srcErr == nil {
				src = s
			}
			return
		}
		src, srcErr = openSource(ctx, srcEP, env)
	}()
	go func() {
		defer wg.Done()
		switch {
		case dstCfg != nil:
			var inner sync.WaitGroup
			inner.Add(1)
			go func() {
				defer inner.Done()
				if sink, rErr = sinks.OpenIMAP(ctx, dstCfg, 1, env.warn); rErr == nil {
					closing.Add(1)
					go func() { defer closing.Done(); sink.Close() }() // Resolve and RefCopy work from what was read
				}
			}()
			var s *sources.IMAP
			if s, dstErr = sources.OpenIMAP(ctx, dstCfg, env.c.transfers); dstErr == nil {
				dst = s
			} else {
				dstErr = fmt.Errorf("IMAP destination %s: %w", dstCfg.Addr(), dstErr)
			}
			inner.Wait()
			if rErr == nil {
				res = sink
			}
		default:
			p, err := dstEP.localPath()
			if err != nil {
				dstErr = err
				return
			}
			s, err := sources.OpenMaildir(p)
			if err != nil {
				dstErr = fmt.Errorf("destination: %w", err)
				return
			}
			s.Warn = env.warn
			// The tree exists (OpenMaildir checked): opening the sink
			// creates nothing.
			ms, err := sinks.OpenMaildir(p, maildir.PlusPlus)
			if err != nil {
				dstErr = err
				return
			}
			dst, res = s, ms
		}
	}()
	wg.Wait()
	closeAll = func() {
		for _, s := range []migrate.Source{src, dst} {
			if s != nil {
				closing.Add(1)
				go func() { defer closing.Done(); s.Close() }()
			}
		}
		closing.Wait()
	}
	if dstErr != nil {
		// The resolver logs in to the same account beside the reader:
		// its error, when both fail, is the reader's once more.
		rErr = nil
	}
	if err = errors.Join(srcErr, dstErr, rErr); err != nil {
		closeAll()
		return nil, nil, nil, nil, err
	}
	return src, dst, res, closeAll, nil
}

// checkExitCode maps a check's outcome to the documented exit codes.
func checkExitCode(r migrate.CheckReport, err error) int {
	switch {
	case errors.Is(err, migrate.ErrInterrupted):
		return exitInterrupted
	case errors.Is(err, migrate.ErrNothingSelected):
		return exitUsage
	case err != nil:
		return exitFatal
	case r.Totals.Missing > 0:
		return exitMissing
	case r.Unchecked():
		return exitSkipped
	case r.Differences():
		return exitDifferences
	}
	return exitOK
}

func checkResult(r migrate.CheckReport, err error) string {
	switch checkExitCode(r, err) {
	case exitOK:
		return "complete"
	case exitDifferences:
		return "complete-with-differences"
	case exitMissing:
		return "incomplete"
	case exitSkipped:
		return "not-all-checked"
	case exitInterrupted:
		return "interrupted"
	}
	return "error"
}

type checkJSON struct {
	Source      string `json:"source"`
	Destination string `json:"destination"`
	Checkpoint  string `json:"checkpoint,omitempty"`
	Result      string `json:"result"`
	ExitCode    int    `json:"exit_code"`
	migrate.CheckReport
	ElapsedSec float64 `json:"elapsed_seconds"`
	// Messages holds every message's verdict: each source message, and
	// each destination message that is extra or a duplicate. Left empty
	// when writing: writeJSON writes them after the rest, one at a time.
	Messages []migrate.Verdict `json:"messages,omitempty"`
}

// printCheck writes the human report: the per-folder table, the problems
// (at most limit of each kind, 0: all), notes and the conclusion.
func printCheck(w io.Writer, r migrate.CheckReport, src, dst, cp string, limit, code int, forgetting bool) {
	how := "by the checkpoint " + cp + " where it records a copy, else by Message-ID, size and content"
	if cp == "" {
		how = "by Message-ID, size and content (no checkpoint)"
	}
	fmt.Fprintf(w, "check %s -> %s\n%s\n\n", src, dst, how)
	nameW, destW := len("FOLDER"), len("DESTINATION")
	for _, f := range r.Folders {
		d := width(f.Dest)
		if !f.DestExists {
			d += len(" (none)")
		}
		nameW, destW = max(nameW, min(40, width(f.Name))), max(destW, min(48, d))
	}
	row := func(name, dest string, cols ...any) {
		fmt.Fprintf(w, "%s  %s  %7v %7v %7v %7v %7v %7v %7v %7v\n", pad(name, nameW), pad(dest, destW), cols[0], cols[1], cols[2], cols[3], cols[4], cols[5], cols[6], cols[7])
	}
	row("FOLDER", "DESTINATION", "SOURCE", "FILTER", "FOUND", "MISSING", "EXTRA", "DUPL", "FLAGS", "DATES")
	for _, f := range r.Folders {
		dest := f.Dest
		if !f.DestExists {
			dest += " (none)"
		}
		row(f.Name, dest, f.Source, f.Filtered, f.Found, f.Missing, f.Extra, f.Duplicate, f.FlagDiff, f.DateDiff)
		if f.Error != "" {
			fmt.Fprintf(w, "  not checked: %s\n", f.Error)
		}
	}
	t := r.Totals
	row("TOTAL", "", t.Source, t.Filtered, t.Found, t.Missing, t.Extra, t.Duplicate, t.FlagDiff, t.DateDiff)

	kinds := []struct {
		title string
		match func(v migrate.Verdict) bool
	}{
		{"missing from the destination", func(v migrate.Verdict) bool { return v.Verdict == migrate.VerdictMissing }},
		{"not checked (could not be read)", func(v migrate.Verdict) bool { return v.Verdict == migrate.VerdictUnreadable }},
		{"extra in the destination (no source message)", func(v migrate.Verdict) bool { return v.Verdict == migrate.VerdictExtra }},
		{"duplicate copies in the destination", func(v migrate.Verdict) bool { return v.Verdict == migrate.VerdictDuplicate }},
		{"copies whose flags or date differ", func(v migrate.Verdict) bool { return v.Verdict == migrate.VerdictFound && v.Differs() }},
	}
	for _, k := range kinds {
		var l []migrate.Verdict
		for _, v := range r.Problems {
			if k.match(v) {
				l = append(l, v)
			}
		}
		if len(l) == 0 {
			continue
		}
		fmt.Fprintf(w, "\n%s (%d):\n", k.title, len(l))
		for i, v := range l {
			if limit > 0 && i == limit {
				fmt.Fprintf(w, "  ... and %d more (--limit 0 lists all, --json has every message)\n", len(l)-limit)
				break
			}
			fmt.Fprintf(w, "  %s\n", problemLine(v))
		}
	}
	var notes []string
	recorded := 0
	for _, v := range r.Problems {
		if forgettable(v) {
			recorded++
		}
	}
	if recorded > 0 && !forgetting { // else --forget-missing says what it removed
		notes = append(notes, fmt.Sprintf("%s missing here the checkpoint records as copied (their copies were deleted or changed since): a copy does not copy them again until `mailhaul check --forget-missing` with these arguments has removed those records", plural(recorded, "message")))
	}
	for _, f := range r.Folders {
		if len(f.NotKept) > 0 {
			notes = append(notes, fmt.Sprintf("destination folder %q keeps no keyword %s (on no message of it; its server refuses them or copy dropped them with a warning): not counted as a difference", f.Dest, strings.Join(f.NotKept, " ")))
		}
	}
	if len(r.Unmapped) > 0 {
		notes = append(notes, fmt.Sprintf("destination folders no source folder maps to (not compared): %s", strings.Join(quoteAll(r.Unmapped), ", ")))
	}
	for _, wn := range r.Warnings {
		notes = append(notes, wn)
	}
	if len(notes) > 0 {
		fmt.Fprintln(w)
		for _, n := range notes {
			fmt.Fprintf(w, "note: %s\n", n)
		}
	}
	sel := t.Source - t.Filtered
	by := fmt.Sprintf("%d by the checkpoint, %d by Message-ID and size, %d by content", t.ByCheckpoint, t.Found-t.ByCheckpoint-t.ByContent-t.ByDedupe, t.ByContent)
	if t.ByDedupe > 0 {
		by += fmt.Sprintf(", %d found already there when copied (a message with its Message-ID)", t.ByDedupe)
	}
	fmt.Fprintln(w)
	switch code {
	case exitOK:
		fmt.Fprintf(w, "COMPLETE: all %s of %s are in the destination (%s); %.1fs\n", plural(sel, "selected message"), plural(len(r.Folders), "folder"), by, r.Elapsed.Seconds())
	case exitDifferences:
		fmt.Fprintf(w, "COMPLETE WITH DIFFERENCES: all %d selected messages are in the destination (%s), but %d extra, %d duplicate copies, %d flag and %d date differences; %.1fs (exit 5)\n",
			sel, by, t.Extra, t.Duplicate, t.FlagDiff, t.DateDiff, r.Elapsed.Seconds())
	case exitMissing:
		fmt.Fprintf(w, "INCOMPLETE: %d of %d selected messages are missing from the destination; %.1fs (exit 4)\n", t.Missing, sel, r.Elapsed.Seconds())
	case exitSkipped:
		bad := 0
		for _, f := range r.Folders {
			if f.Error != "" {
				bad++
			}
		}
		fmt.Fprintf(w, "NOT ALL CHECKED: nothing was found missing, but %s and %s could not be read; %.1fs (exit 3)\n", plural(bad, "folder"), plural(t.Unreadable, "message"), r.Elapsed.Seconds())
	case exitInterrupted:
		fmt.Fprintf(w, "INTERRUPTED after %.1fs: the check is not complete\n", r.Elapsed.Seconds())
	default:
		// The error itself follows on standard error (main), once.
		fmt.Fprintln(w, "FAILED: the check could not finish (the error follows); exit 1")
	}
}

// problemLine is one listed message: folder, date, sender, subject, size,
// what is wrong.
func problemLine(v migrate.Verdict) string {
	date := "(no date)"
	if !v.Date.IsZero() {
		date = v.Date.Local().Format("2006-01-02 15:04")
	}
	from, subj := v.From, v.Subject
	if from == "" {
		from = "(no sender)"
	}
	if subj == "" {
		subj = "(no subject)"
	}
	s := fmt.Sprintf("%s  %s  %s  %s  %s", v.Folder, date, clip(from, 40), clip(subj, 60), humanBytes(v.Size))
	var what []string
	if len(v.FlagsLost) > 0 {
		what = append(what, "flags lost "+strings.Join(v.FlagsLost, " "))
	}
	if len(v.FlagsAdded) > 0 {
		what = append(what, "flags added "+strings.Join(v.FlagsAdded, " "))
	}
	if !v.DestDate.IsZero() {
		what = append(what, "date in the destination "+v.DestDate.Local().Format("2006-01-02 15:04:05"))
	}
	if v.Reason != "" {
		what = append(what, v.Reason)
	}
	if v.Elsewhere != "" {
		what = append(what, fmt.Sprintf("a message with its Message-ID is in destination folder %q", v.Elsewhere))
	}
	if len(what) > 0 {
		s += "  — " + strings.Join(what, "; ")
	}
	return s
}

func quoteAll(l []string) []string {
	out := make([]string, len(l))
	for i, s := range l {
		out[i] = fmt.Sprintf("%q", s)
	}
	return out
}

// checkRenderer shows a check's progress on stderr (a bar on a terminal,
// a log line every 10 seconds otherwise) and collects the verdicts for
// --json. CheckEvent is called from the engine's goroutines.
type checkRenderer struct {
	g       *globalFlags
	out     *os.File
	tty     bool
	collect bool

	mu       sync.Mutex
	bar      *progressbar.ProgressBar
	planned  int
	done     int
	listed   int
	folder   string
	verdicts []migrate.Verdict
	stopTick chan struct{}
	wg       sync.WaitGroup
}

func newCheckRenderer(g *globalFlags, out *os.File) *checkRenderer {
	return &checkRenderer{g: g, out: out, tty: term.IsTerminal(int(out.Fd()))}
}

func (r *checkRenderer) start() {
	r.stopTick = make(chan struct{})
	if r.tty {
		r.bar = progressbar.NewOptions(-1,
			progressbar.OptionSetWriter(r.out),
			progressbar.OptionShowCount(),
			progressbar.OptionSetWidth(30),
			progressbar.OptionThrottle(150*time.Millisecond),
			progressbar.OptionClearOnFinish(),
			progressbar.OptionSetDescription("listing folders"),
		)
		return
	}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		t := time.NewTicker(10 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				r.mu.Lock()
				r.g.log.Info("check progress", "folders", fmt.Sprintf("%d/%d", r.done, r.planned), "messages listed", r.listed, "folder", r.folder)
				r.mu.Unlock()
			case <-r.stopTick:
				return
			}
		}
	}()
}

func (r *checkRenderer) finish() {
	if r.bar != nil {
		r.bar.Finish()
		fmt.Fprintln(r.out)
	}
	if r.stopTick != nil {
		close(r.stopTick)
		r.wg.Wait()
	}
}

// CheckEvent implements migrate.CheckReporter.
func (r *checkRenderer) CheckEvent(e migrate.CheckEvent) {
	switch e.Kind {
	case migrate.CheckWarning:
		r.g.log.Warn(errString(e.Err))
		return
	case migrate.CheckRetrying:
		r.g.log.Warn("retrying", "folder", e.Folder, "error", errString(e.Err))
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	switch e.Kind {
	case migrate.CheckPlanned:
		r.planned = e.N
		if r.bar != nil {
			r.bar.ChangeMax(e.N)
		}
	case migrate.CheckListed:
		r.listed += e.N
	case migrate.CheckFolderStart:
		r.folder = e.Folder
		r.g.log.Debug("comparing", "folder", e.Folder, "destination", e.Dest)
	case migrate.CheckFolderDone:
		r.done++
		if r.bar != nil {
			r.bar.Describe(fmt.Sprintf("%s  %d messages listed", clip(e.Folder, 30), r.listed))
			r.bar.Set(r.done)
		}
	case migrate.CheckMessage:
		if r.collect {
			r.verdicts = append(r.verdicts, *e.Verdict)
		}
	}
}

// sortedVerdicts returns the collected verdicts, source messages first,
// by folder and ID.
func (r *checkRenderer) sortedVerdicts() []migrate.Verdict {
	r.mu.Lock()
	defer r.mu.Unlock()
	v := append([]migrate.Verdict{}, r.verdicts...)
	sort.SliceStable(v, func(i, j int) bool {
		a, b := v[i], v[j]
		if a.Side != b.Side {
			return a.Side == "source"
		}
		if a.Folder != b.Folder {
			return migrate.MailboxLess(a.Folder, b.Folder)
		}
		return a.ID < b.ID
	})
	return v
}
