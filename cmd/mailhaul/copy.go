package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/mailhaul/mailhaul/checkpoint"
	"github.com/mailhaul/mailhaul/internal/spooldir"
	"github.com/mailhaul/mailhaul/migrate"
)

type copyFlags struct {
	dryRun         bool
	include        []string
	exclude        []string
	maps           []string
	since, before  string
	maxSize        string
	stateDir       string
	transfers      int
	includeDeleted bool
	skipDeleted    bool
	dedupe         bool
	dedupeAcross   bool
	noAutoDedupe   bool
	maildirLayout  string
	tempDir        string
	toFolder       string
	mboxFormat     string
	settleDelay    time.Duration
	relist         bool
	throttleWait   time.Duration
	maxConns       int
	bwlimit        string
	preset         string
	imap           imapFlags
	pop3           pop3Flags
	// deleteAfterCopy removes copied messages from the source (POP3).
	deleteAfterCopy bool
}

func copyCommand(g *globalFlags) *cobra.Command {
	f := &copyFlags{}
	cmd := &cobra.Command{
		Use:   "copy SRC DST",
		Short: "Copy every message of SRC not yet copied into DST (resumable, idempotent)",
		Long: `Copy every message of SRC that an earlier run has not copied into DST.

Folders keep their names (and hierarchy) unless --map renames them. Flags
(read, answered, flagged, draft, forwarded, deleted, keywords) and the
internal date are kept. Message bytes are not changed, except that an IMAP
destination gets CRLF line ends and an mbox source loses its ">From "
quoting. Messages flagged
\Deleted are copied with the flag (--skip-deleted leaves them out);
Thunderbird's deleted-but-not-compacted messages are left out
(--include-deleted copies them).

The run can be interrupted at any moment (Ctrl-C, kill -9, power loss);
running the same command again resumes without losing or duplicating a
message. The source is never modified, except that --delete-after-copy
deletes from a POP3 server what was safely copied.`,
		Example: `  mailhaul copy maildir:~/Maildir maildir:/backup/Maildir
  mailhaul copy --dry-run --include 'Archive/*' maildir:~/Maildir maildir:/tmp/out
  MAILHAUL_DST_PASSWORD=... mailhaul copy "mbox:$HOME/.thunderbird/x.default/Mail/Local Folders" imaps://me@imap.example.org
  mailhaul copy --src-password-file old.pw --dst-password-file new.pw imaps://me@old.example.net imaps://me@new.example.org
  mailhaul copy --dedupe-across-folders pop3s://me@pop.example.net imaps://me@imap.example.org`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := applyPreset(f, cmd.Flags().Changed); err != nil {
				return err
			}
			return runCopy(g, f, args[0], args[1])
		},
	}
	addCopyFlags(cmd.Flags(), f)
	return cmd
}

// addCopyFlags registers copy's flags on fl, bound to f: the copy command
// and batch (whose rows take the same flags in their options column) share
// them.
func addCopyFlags(fl *pflag.FlagSet, f *copyFlags) {
	fl.BoolVarP(&f.dryRun, "dry-run", "n", false, "print what would be copied per folder; write nothing")
	fl.StringArrayVar(&f.include, "include", nil, "copy only folders matching this glob (repeatable; 'A/*', a folder also selects its subfolders)")
	fl.StringArrayVar(&f.exclude, "exclude", nil, "skip folders matching this glob (repeatable)")
	fl.StringArrayVar(&f.maps, "map", nil, "rename a folder (and its subfolders): SRC=DST (repeatable)")
	fl.StringVar(&f.since, "since", "", "only messages with an internal date on or after this date (YYYY-MM-DD or RFC 3339)")
	fl.StringVar(&f.before, "before", "", "only messages with an internal date before this date (YYYY-MM-DD or RFC 3339)")
	fl.StringVar(&f.maxSize, "max-size", "", "skip messages larger than this (e.g. 25M, 1G)")
	fl.StringVar(&f.stateDir, "state-dir", defaultStateDir(), "where checkpoints are kept")
	fl.IntVar(&f.transfers, "transfers", 8, "parallel transfers per side: connections to an IMAP server (each pipelining several commands), files written at once for Maildir")
	fl.BoolVar(&f.dedupe, "dedupe", false, "skip messages the destination folder already holds (same Message-ID, and same size or same body length): for merging a second source, e.g. a POP3 server and the mail a client downloaded from it (a lost state dir needs no flag: see --no-auto-dedupe)")
	fl.BoolVar(&f.dedupeAcross, "dedupe-across-folders", false, "with --dedupe (implied), look for the message in every destination folder, not only the one it goes to: for a POP3 server whose downloaded mail was filed into folders")
	fl.BoolVar(&f.noAutoDedupe, "no-auto-dedupe", false, "copy every message the checkpoint does not record, even when the destination folder holds mail this state dir did not copy (by default a source folder the checkpoint records nothing of is then compared with that mail by Message-ID and size, so that a lost state dir does not duplicate it)")
	fl.BoolVar(&f.skipDeleted, "skip-deleted", false, `leave out messages flagged \Deleted (Maildir "T", mbox Status "D"); by default they are copied with the flag`)
	fl.BoolVar(&f.includeDeleted, "include-deleted", false, `also copy messages that are already gone for the user: Thunderbird's deleted-but-not-compacted (X-Mozilla-Status 0x0008), with \Deleted`)
	fl.StringVar(&f.maildirLayout, "maildir-layout", "maildir++", "layout of a Maildir destination: maildir++ (Dovecot, Courier) or fs (nested directories)")
	fl.StringVar(&f.tempDir, "temp-dir", "", "where bodies too large to keep in memory are spooled, in a directory of the run's own (default: the state directory), and the large FETCH responses of servers that send the UID last (default: $TMPDIR)")
	fl.Var(folderName{&f.toFolder}, "to-folder", `destination folder of a POP3 source (default INBOX), or the folder name of a single-file mbox source (default: the file's name), e.g. "POP3 import"`)
	fl.BoolVar(&f.deleteAfterCopy, "delete-after-copy", false, "POP3 source: delete from the server the messages whose copy is recorded done (and, for IMAP, confirmed by the server), at the end of a run without errors")
	addIMAPFlags(fl, &f.imap)
	addPOP3Flags(fl, &f.pop3)
	fl.StringVar(&f.mboxFormat, "mbox-format", "auto", "dialect of an mbox source: auto (detected per file), mboxo, mboxrd or mboxcl2")
	fl.IntVar(&f.maxConns, "max-connections", 0, "at most this many connections to each server (source and destination each, the one for listing included; 0: --transfers + 1)")
	fl.StringVar(&f.bwlimit, "bwlimit", "", "bandwidth limit per server and direction, all connections together, e.g. 2M (bytes per second)")
	fl.StringVar(&f.preset, "preset", "", "settings for a provider's published limits: gmail or office365 (flags given explicitly win; see the README)")
	fl.DurationVar(&f.throttleWait, "throttle-wait", migrate.DefaultThrottleWait, "how long to wait when a server throttles without saying how long (a suggested time, as Microsoft 365 gives, is honoured as it is)")
	fl.BoolVar(&f.relist, "relist", false, "list every source folder, also those unchanged (same UIDVALIDITY, UIDNEXT and message count) since a run finished them")
	fl.DurationVar(&f.settleDelay, "settle-delay", migrate.DefaultSettleDelay, "how long an IMAP append whose outcome is unknown (connection lost, run killed) is given to show up before it is sent again")
}

// presets are the provider limits --preset applies (README, "Providers").
var presets = map[string]struct {
	maxConns     int
	maxSize      string
	throttleWait time.Duration
}{
	// Gmail allows 15 simultaneous IMAP connections per account; leave
	// room for the user's own clients.
	"gmail": {maxConns: 10, throttleWait: time.Minute},
	// Exchange Online: 150 MB per message at most; throttling answers
	// say how long to wait, which is honoured anyway.
	"office365": {maxConns: 8, maxSize: "150M", throttleWait: time.Minute},
}

// applyPreset fills the flags a --preset sets, unless given explicitly.
func applyPreset(f *copyFlags, changed func(string) bool) error {
	if f.preset == "" {
		return nil
	}
	p, ok := presets[strings.ToLower(f.preset)]
	if !ok {
		return usageErr("unknown --preset %q (want gmail or office365)", f.preset)
	}
	if !changed("max-connections") {
		f.maxConns = p.maxConns
	}
	if !changed("max-size") && p.maxSize != "" {
		f.maxSize = p.maxSize
	}
	if !changed("throttle-wait") {
		f.throttleWait = p.throttleWait
	}
	return nil
}

// folderName is the value of a flag naming one folder: an empty name
// (--to-folder "") is refused where it is given, not taken for "no
// flag".
type folderName struct{ p *string }

func (v folderName) String() string {
	if v.p == nil {
		return ""
	}
	return *v.p
}

func (v folderName) Set(s string) error {
	if strings.Trim(s, "/ ") == "" {
		return fmt.Errorf("want a folder name, e.g. \"POP3 import\"")
	}
	*v.p = s
	return nil
}

func (folderName) Type() string { return "folder" }

func usageErr(format string, a ...any) error {
	return &exitError{exitUsage, fmt.Errorf(format, a...)}
}

func runCopy(g *globalFlags, f *copyFlags, srcArg, dstArg string) error {
	j, err := prepareCopy(f, srcArg, dstArg)
	if err != nil {
		return err
	}
	if err := noLoginFlags(&f.imap, j.src, j.dst); err != nil {
		return err
	}
	ctx, stopCh, stop := gracefulSignals(g.log, true)
	defer stop()
	rend := newRenderer(g, os.Stderr)
	hook := testKillHook()
	env := endpointEnv{g: g, c: f, hook: hook, warn: func(err error) { rend.Event(migrate.Event{Kind: migrate.Warning, Err: err}) },
		info: func(s string) { g.log.Info(s) }}
	oc, err := j.open(ctx, env, g.log)
	if err != nil {
		return err
	}
	defer oc.close()
	o := oc.opts
	o.Stop = stopCh
	o.Reporter = rend
	o.StepHook = hook
	rend.start()
	report, runErr := migrate.Run(ctx, o)
	rend.finish()
	if errors.Is(runErr, migrate.ErrNothingSelected) {
		return &exitError{exitUsage, runErr} // nothing ran: no summary
	}

	if g.json {
		head, folders := jsonReport(report, j.src, j.dst, oc.cpPath)
		if err := writeJSON(os.Stdout, head, "folders", folders); err != nil {
			return &exitError{exitFatal, fmt.Errorf("write report: %w", err)}
		}
	}
	// A dry run's plan is what was asked for: on stdout, unless --json
	// has it there already.
	plan := io.Writer(os.Stdout)
	if g.json {
		plan = os.Stderr
	}
	printSummary(os.Stderr, plan, report)
	code := exitCodeFor(report, runErr)
	if code == exitOK {
		return nil
	}
	if code == exitInterrupted {
		return &exitError{code, errors.New("interrupted; run the same command again to resume")}
	}
	if runErr != nil {
		if msg := runErr.Error(); code == exitFatal && !j.f.dryRun && !errors.Is(runErr, syscall.ENOSPC) && // main says what to do about a full disk
			!strings.Contains(msg, "run again") && !strings.Contains(msg, "next run") && !strings.Contains(msg, "run the same command") {
			runErr = fmt.Errorf("%w (what was copied is recorded: once the cause is fixed, the same command resumes from there)", runErr)
		}
		return &exitError{code, runErr}
	}
	return &exitError{code, nil}
}

// copyJob is one account's copy, validated: what the copy command and each
// row of a batch run, by the same code (prepareCopy, then open, then
// migrate.Run).
type copyJob struct {
	f        *copyFlags
	opts     migrate.Options // without Source, Sink, Checkpoint, Reporter, Stop
	src, dst endpoint
}

// prepareCopy validates the flags and both endpoints without touching
// either store or the state directory. Every error is a usage error
// (exitError with exitUsage).
func prepareCopy(f *copyFlags, srcArg, dstArg string) (*copyJob, error) {
	o, err := checkSelection(f)
	if err != nil {
		return nil, err
	}
	o.DryRun, o.Dedupe, o.TempDir = f.dryRun, f.dedupe || f.dedupeAcross, f.tempDir
	o.DedupeAcrossFolders, o.SettleDelay, o.ThrottleWait, o.Relist = f.dedupeAcross, f.settleDelay, f.throttleWait, f.relist
	o.NoAutoDedupe = f.noAutoDedupe
	if f.maxConns == 1 || f.maxConns < 0 {
		return nil, usageErr("--max-connections must be at least 2 (one connection lists folders while others move messages)")
	}
	if _, err := parseSize(f.bwlimit); err != nil {
		return nil, usageErr("invalid --bwlimit: %v", err)
	}
	srcEP, err := parseEndpoint(srcArg)
	if err != nil {
		return nil, usageErr("%v", err)
	}
	dstEP, err := parseEndpoint(dstArg)
	if err != nil {
		return nil, usageErr("%v", err)
	}
	if err := checkPOP3Flags(f, srcEP, dstEP); err != nil {
		return nil, err
	}
	o.DeleteAfterCopy = f.deleteAfterCopy
	if err := pop3ToFolder(&o, f, srcEP); err != nil {
		return nil, err
	}

	if _, ok := sourceSchemes[srcEP.Scheme]; !ok {
		return nil, usageErr("source %q: scheme %q cannot be read from (sources: %s)", srcEP.Raw, srcEP.Scheme, keys(sourceSchemes))
	}
	if _, ok := sinkSchemes[dstEP.Scheme]; !ok {
		return nil, usageErr("destination %q: scheme %q cannot be written to (destinations: %s)", dstEP.Raw, dstEP.Scheme, keys(sinkSchemes))
	}
	return &copyJob{f: f, opts: o, src: srcEP, dst: dstEP}, nil
}

// openCopy is a copyJob with both stores and the checkpoint open: opts is
// ready for migrate.Run but for Reporter, Stop and StepHook.
type openCopy struct {
	opts    migrate.Options
	cpPath  string
	closers []func() error
}

// close closes the checkpoint, the sink and the source, in that order.
func (oc *openCopy) close() {
	for i := len(oc.closers) - 1; i >= 0; i-- {
		oc.closers[i]()
	}
}

// open opens the source, the sink (not with --dry-run) and the pair's
// checkpoint (locked). Errors are exitErrors: exitFatal, or the usage
// error of an endpoint inside one.
func (j *copyJob) open(ctx context.Context, env endpointEnv, log *slog.Logger) (_ *openCopy, err error) {
	if err := checkOverlap(ctx, j.src, j.dst, j.opts); err != nil {
		return nil, err
	}
	oc := &openCopy{opts: j.opts}
	defer func() {
		if err != nil {
			oc.close()
		}
	}()
	src, err := openSource(ctx, j.src, env)
	if err != nil {
		return nil, &exitError{exitFatal, err}
	}
	oc.closers = append(oc.closers, src.Close)
	oc.opts.Source = src
	if _, ok := src.(migrate.Deleter); j.f.deleteAfterCopy && !ok {
		return nil, usageErr("--delete-after-copy: %s sources cannot delete messages (it is for POP3)", j.src.Scheme)
	}
	if !j.f.dryRun {
		sink, err := openSink(ctx, j.dst, env)
		if err != nil {
			return nil, &exitError{exitFatal, err}
		}
		oc.closers = append(oc.closers, sink.Close)
		oc.opts.Sink = sink
		wirePOP3(j.f, src, sink, env.warn)
	} else {
		oc.opts.Sink = dryRunSink{}
	}

	if err := checkStateDir(j.f.stateDir); err != nil {
		return nil, &exitError{exitFatal, err}
	}

	cpPath, ids, note := checkpointPath(ctx, j.f.stateDir, j.src, j.dst)
	if note != "" {
		log.Info(note, "checkpoint", cpPath)
	}
	oc.cpPath = cpPath
	var store *checkpoint.Store
	if j.f.dryRun {
		store, err = checkpoint.OpenReadOnly(cpPath)
	} else {
		store, err = checkpoint.Open(cpPath, j.src.describe(), j.dst.describe())
		if err == nil {
			if err = recordAccounts(cpPath, ids); err != nil {
				store.Close()
				err = fmt.Errorf("write checkpoint %s: %w", cpPath, err)
			}
		}
	}
	if err != nil {
		if errors.Is(err, checkpoint.ErrLocked) {
			err = fmt.Errorf("%w: another mailhaul copy or batch from %s to %s is running (checkpoint %s); run this again once it has ended", err, j.src.describe(), j.dst.describe(), cpPath)
		} else if hint := stateDirHint(err); hint != "" {
			err = fmt.Errorf("%w; %s", err, hint)
		}
		return nil, &exitError{exitFatal, err}
	}
	if store != nil {
		oc.closers = append(oc.closers, store.Close)
		oc.opts.Checkpoint = store
	}
	log.Debug("checkpoint", "path", cpPath)
	if !j.f.dryRun {
		// Bodies too large for memory go to a directory of this run's,
		// removed at the end; the next run removes a killed run's.
		root := filepath.Join(j.f.stateDir, "spool")
		if j.f.tempDir != "" {
			root = filepath.Join(j.f.tempDir, "mailhaul-spool")
		}
		sd, err := spooldir.Open(root)
		if err != nil {
			return nil, &exitError{exitFatal, err}
		}
		oc.closers = append(oc.closers, sd.Close)
		oc.opts.TempDir = sd.Path
	}
	return oc, nil
}

type reportJSON struct {
	Source      string `json:"source"`
	Destination string `json:"destination"`
	Checkpoint  string `json:"checkpoint"`
	migrate.Report
	ElapsedSec float64 `json:"elapsed_seconds"`
	// Folders hides the Report's: the rows are written after the rest,
	// one at a time (writeJSON).
	Folders []migrate.FolderReport `json:"folders,omitempty"`
}

// jsonReport returns what --json prints of r: the report without its
// folder rows, and the rows.
func jsonReport(r migrate.Report, src, dst endpoint, cp string) (reportJSON, []migrate.FolderReport) {
	folders := r.Folders
	r.Folders = nil
	return reportJSON{Source: src.describe(), Destination: dst.describe(), Checkpoint: cp, Report: r, ElapsedSec: r.Elapsed.Seconds()}, folders
}

// printSummary writes the human summary of a run to w, and a dry run's
// plan (a row per folder) to plan.
func printSummary(w, plan io.Writer, r migrate.Report) {
	verb := "copied"
	if r.DryRun {
		verb = "would copy"
		fmt.Fprintf(plan, "%s %s %10s %12s %8s\n", pad("FOLDER", 40), pad("DESTINATION", 40), "MESSAGES", "BYTES", "ALREADY")
		for _, f := range r.Folders {
			fmt.Fprintf(plan, "%s %s %10d %12d %8d\n", pad(f.Name, 40), pad(f.Dest, 40), f.Messages, f.Bytes, f.Already)
		}
	}
	secs := r.Elapsed.Seconds()
	rate := ""
	if secs > 0 && !r.DryRun && r.Copied > 0 {
		rate = fmt.Sprintf(", %.0f msg/s, %s/s", float64(r.Copied)/secs, humanBytes(int64(float64(r.Bytes)/secs)))
	}
	already := fmt.Sprintf("%d already there", r.Already)
	if r.Found > 0 {
		// Found by Message-ID this run, as a later run counts them.
		already += fmt.Sprintf(" (%d of them found by Message-ID, copied by something else)", r.Found)
	}
	folders := plural(len(r.Folders), "folder")
	if len(r.Folders) == 0 && r.Interrupted {
		folders = "stopped before the first folder" // (settling a killed run's copies, or listing)
	}
	fmt.Fprintf(w, "%s %s (%s), %s, %d skipped, %d filtered, %s; %.1fs%s\n",
		verb, plural(r.Copied, "message"), humanBytes(r.Bytes), already, len(r.Skipped), r.Filtered, folders, secs, rate)
	if r.Unchanged > 0 {
		fmt.Fprintf(w, "%d folders unchanged since the run that finished them: not listed again (--relist lists them)\n", r.Unchanged)
	}
	if r.Recovered > 0 {
		fmt.Fprintf(w, "recovered %d copies written by an interrupted run\n", r.Recovered)
	}
	if len(r.Settled) > 0 {
		n := map[string]int{}
		for _, s := range r.Settled {
			n[s.How]++
		}
		fmt.Fprintf(w, "appends with unknown outcome (connection lost or run killed): %d settled: %d found in the destination, %d sent again, %d late copies removed, %d possible duplicates\n",
			len(r.Settled), n[migrate.SettledFound], n[migrate.SettledResent], n[migrate.SettledRemoved], n[migrate.SettledPossibleDuplicate])
	}
	if len(r.Skipped) > 0 {
		fmt.Fprintf(w, "skipped messages (not copied; the next run tries them again):\n")
		for _, s := range r.Skipped {
			id := s.ID
			if id == "" {
				id = "(whole folder)"
			}
			fmt.Fprintf(w, "  %s %s: %s\n", s.Folder, id, s.Reason)
		}
	}
	if len(r.DroppedFlags) > 0 {
		fmt.Fprintf(w, "flags the destination does not keep (the messages were copied without them):\n")
		for _, d := range r.DroppedFlags {
			fmt.Fprintf(w, "  %s: %s on %d messages (%s)\n", d.Dest, d.Flag, d.Messages, d.Reason)
		}
	}
	if len(r.Warnings) > 0 {
		// A recap: each was logged when it happened, perhaps far above.
		fmt.Fprintf(w, "warnings of this run:\n")
		for _, wn := range r.Warnings {
			fmt.Fprintf(w, "  %s\n", wn)
		}
	}
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

func parseDate(flag, s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	for _, layout := range []string{"2006-01-02", time.RFC3339} {
		if t, err := time.ParseInLocation(layout, s, time.Local); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("invalid %s %q: want YYYY-MM-DD or RFC 3339 (2006-01-02T15:04:05Z)", flag, s)
}

// parseSize parses "123", "10K", "25M", "1G" (binary units, optional "B"/"iB").
func parseSize(s string) (int64, error) {
	s = strings.TrimSpace(strings.ToUpper(s))
	if s == "" {
		return 0, nil
	}
	s = strings.TrimSuffix(strings.TrimSuffix(s, "B"), "I")
	mult := int64(1)
	switch {
	case strings.HasSuffix(s, "K"):
		mult, s = 1<<10, s[:len(s)-1]
	case strings.HasSuffix(s, "M"):
		mult, s = 1<<20, s[:len(s)-1]
	case strings.HasSuffix(s, "G"):
		mult, s = 1<<30, s[:len(s)-1]
	}
	n, err := strconv.ParseFloat(s, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%q is not a size", s)
	}
	return int64(n * float64(mult)), nil
}

// testKillHook lets the crash tests stop this process at an exact step:
// MAILHAUL_TEST_KILL_AT=append:17 sends SIGKILL to itself right after the
// 17th append, before the copy is recorded; append:17:INT sends SIGINT
// instead (a clean stop). It does nothing when unset.
func testKillHook() func(string) {
	spec := os.Getenv("MAILHAUL_TEST_KILL_AT")
	if spec == "" {
		return nil
	}
	parts := strings.Split(spec, ":")
	if len(parts) < 2 {
		return nil
	}
	n, err := strconv.ParseInt(parts[1], 10, 64)
	if err != nil || n < 1 {
		return nil
	}
	sig := syscall.SIGKILL
	if len(parts) > 2 && parts[2] == "INT" {
		sig = syscall.SIGINT
	}
	var count atomic.Int64
	return func(s string) {
		if s == parts[0] && count.Add(1) == n {
			syscall.Kill(os.Getpid(), sig)
			if sig == syscall.SIGKILL {
				select {}
			}
		}
	}
}

// plural is "1 message", "0 messages", "2 messages".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
