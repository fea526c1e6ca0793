package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"github.com/mailhaul/mailhaul/migrate"
)

// renderer turns engine events into a progress bar (stderr is a terminal)
// or periodic log lines (it is not), and logs skips and warnings as they
// happen. Event is called from the engine's goroutines.
type renderer struct {
	g   *globalFlags
	out io.Writer
	tty bool

	mu       sync.Mutex
	bar      *progressbar.ProgressBar
	queued   int64
	queuedB  int64
	copied   int64
	copiedB  int64
	already  int64
	found    int64 // found already in the destination (not to copy)
	skipped  int64
	folder   string          // the folder being copied from: of the last copy, else the one being listed
	dropped  map[string]bool // dest \x00 flag already logged
	started  time.Time
	stopTick chan struct{}
	wg       sync.WaitGroup
}

func newRenderer(g *globalFlags, out *os.File) *renderer {
	return &renderer{g: g, out: out, tty: term.IsTerminal(int(out.Fd()))}
}

func (r *renderer) start() {
	r.started = time.Now()
	r.stopTick = make(chan struct{})
	if r.tty {
		r.bar = progressbar.NewOptions64(-1,
			progressbar.OptionSetWriter(r.out),
			progressbar.OptionShowBytes(true),
			progressbar.OptionShowCount(),
			progressbar.OptionSetWidth(30),
			progressbar.OptionThrottle(150*time.Millisecond),
			progressbar.OptionSetPredictTime(true),
			progressbar.OptionClearOnFinish(),
			progressbar.OptionSetDescription("listing"),
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
				r.logProgress()
			case <-r.stopTick:
				return
			}
		}
	}()
}

func (r *renderer) logProgress() {
	r.mu.Lock()
	defer r.mu.Unlock()
	el := time.Since(r.started).Seconds()
	r.g.log.Info("progress", "folder", r.folder, "copied", r.copied, "of_listed", r.queued,
		"bytes", humanBytes(r.copiedB), "already", r.already+r.found, "found", r.found, "skipped", r.skipped, // already counts found, as the summary does
		"rate", fmt.Sprintf("%.0f msg/s", float64(r.copied)/el))
}

func (r *renderer) finish() {
	if r.bar != nil {
		r.bar.Finish()
		fmt.Fprintln(r.out)
	}
	if r.stopTick != nil {
		close(r.stopTick)
		r.wg.Wait()
	}
}

// Event implements migrate.Reporter.
func (r *renderer) Event(e migrate.Event) {
	r.mu.Lock()
	switch e.Kind {
	case migrate.FolderStart:
		if r.copied == 0 {
			r.folder = e.Folder
		}
	case migrate.Queued:
		r.queued++
		r.queuedB += e.Bytes
		if r.bar != nil {
			r.bar.ChangeMax64(r.queuedB)
		}
	case migrate.Copied:
		r.copied++
		r.copiedB += e.Bytes
		r.folder = e.Folder // the lister runs ahead: it may be folders further
		if r.bar != nil {
			r.bar.Describe(fmt.Sprintf("%s  %d/%d msgs", r.folder, r.copied, r.queued))
			r.bar.Add64(e.Bytes)
		}
	case migrate.Already:
		r.already++
	case migrate.Duplicate:
		// Queued, then found in the destination: no longer to copy.
		r.found++
		r.queued--
		r.queuedB -= e.Bytes
		if r.bar != nil {
			r.bar.ChangeMax64(r.queuedB)
			r.bar.Describe(fmt.Sprintf("%s  %d/%d msgs", r.folder, r.copied, r.queued))
		}
	case migrate.Skipped:
		r.skipped++
	}
	r.mu.Unlock()

	log := r.g.log
	switch e.Kind {
	case migrate.FolderStart:
		log.Debug("folder", "source", e.Folder, "destination", e.Dest)
	case migrate.Skipped:
		log.Warn("message skipped", "folder", e.Folder, "id", e.ID, "reason", errString(e.Err))
	case migrate.Retrying:
		log.Warn("retrying", "folder", e.Folder, "id", e.ID, "error", errString(e.Err))
	case migrate.Warning:
		log.Warn(errString(e.Err))
	case migrate.Recovered:
		log.Debug("resolved interrupted copy", "folder", e.Folder, "id", e.ID, "found", e.Found)
	case migrate.Settled:
		if e.Err != nil {
			log.Warn(errString(e.Err))
		} else {
			log.Log(context.Background(), settledLevel(e.How), "append with unknown outcome settled", "folder", e.Folder, "id", e.ID, "destination", e.Dest, "how", e.How)
		}
	case migrate.Waiting:
		log.Info(errString(e.Err))
	case migrate.FlagsDropped:
		r.mu.Lock()
		if r.dropped == nil {
			r.dropped = map[string]bool{}
		}
		var first []string
		for _, f := range e.Flags {
			if !r.dropped[e.Dest+"\x00"+f] {
				r.dropped[e.Dest+"\x00"+f] = true
				first = append(first, f)
			}
		}
		r.mu.Unlock()
		if len(first) > 0 {
			log.Warn("destination folder does not keep these flags; messages are copied without them", "folder", e.Dest, "flags", strings.Join(first, " "), "reason", errString(e.Err))
		}
	case migrate.Copied:
		log.Debug("copied", "folder", e.Folder, "id", e.ID, "bytes", e.Bytes)
	}
}

// settledLevel is the log level of a settled append: one line per message
// only where the user has something to look at (a copy removed, a possible
// duplicate); found and sent-again copies are counted in the summary (a
// killed run leaves hundreds).
func settledLevel(how string) slog.Level {
	switch how {
	case migrate.SettledPossibleDuplicate:
		return slog.LevelWarn
	case migrate.SettledRemoved:
		return slog.LevelInfo
	}
	return slog.LevelDebug
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// dryRunSink stands in for the destination of a dry run; the engine never
// calls it (DryRun neither prepares nor appends).
type dryRunSink struct{}

func (dryRunSink) Prepare(context.Context, migrate.Mailbox, string) (string, error) {
	return "", fmt.Errorf("dry run: nothing is written")
}
func (dryRunSink) Append(context.Context, string, migrate.Message, *migrate.Body) (string, error) {
	return "", fmt.Errorf("dry run: nothing is written")
}
func (dryRunSink) Limits() migrate.Limits { return migrate.Limits{} }
func (dryRunSink) Close() error           { return nil }
