// Command mailhaul moves and syncs mail between mailbox backends.
//
// This package is the only one that talks to the terminal: it parses flags,
// turns endpoint arguments into backends, handles signals, renders progress
// and the final report, and maps the outcome to an exit code.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/mailhaul/mailhaul/migrate"
)

// Exit codes (documented in the README).
const (
	exitOK          = 0
	exitFatal       = 1
	exitUsage       = 2
	exitSkipped     = 3
	exitInterrupted = 130
)

// exitError carries an exit code out of a cobra command.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit %d", e.code)
	}
	return e.err.Error()
}

type globalFlags struct {
	logLevel string
	verbose  int
	json     bool
	progress string
	log      *slog.Logger
}

func main() {
	if _, set := os.LookupEnv("GOMEMLIMIT"); !set {
		setMemoryLimit()
	}
	os.Exit(profiled(os.Args[1:]))
}

func run(args []string) int {
	g := &globalFlags{}
	root := &cobra.Command{
		Use:   "mailhaul",
		Short: "Move and sync mail between mailbox backends, resumably",
		Long: `mailhaul copies mail between IMAP accounts, Maildir trees and mbox files
(single files or whole Thunderbird profiles), and from POP3 maildrops.
Every copy is checkpointed: an interrupted run (Ctrl-C, kill -9, lost
network, full disk) resumes where it stopped and never loses or duplicates a
message. The source is never modified (unless --delete-after-copy, for POP3).

Endpoints: ` + strings.Join(schemes(), ", ") + `, e.g. maildir:~/Maildir,
imaps://me@imap.example.org, "mbox:~/.thunderbird/x.default/Mail/Local Folders".
IMAP and POP3 passwords come from $MAILHAUL_SRC_PASSWORD / $MAILHAUL_DST_PASSWORD, a
file (--src-password-file, --dst-password-file) or a prompt; never argv.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			return g.setup()
		},
	}
	root.PersistentFlags().StringVar(&g.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	root.PersistentFlags().CountVarP(&g.verbose, "verbose", "v", "more detail (-v = debug)")
	root.PersistentFlags().BoolVar(&g.json, "json", false, "print a machine-readable report on stdout")
	root.Version = buildVersion()
	root.SetVersionTemplate("mailhaul {{.Version}}\n")
	root.AddCommand(copyCommand(g), lsCommand(g), checkCommand(g), batchCommand(g))

	root.SetArgs(args)
	err := root.Execute()
	if err == nil {
		return exitOK
	}
	var ee *exitError
	if errors.As(err, &ee) {
		// A usage error found while opening an endpoint (a missing
		// token or password flag) arrives wrapped as fatal: the inner
		// code is the precise one.
		for inner := (*exitError)(nil); ee.err != nil && errors.As(ee.err, &inner); {
			ee = inner
		}
		if ee.err != nil {
			fmt.Fprintln(os.Stderr, "mailhaul:", ee.err)
			if errors.Is(ee.err, syscall.ENOSPC) && !strings.Contains(ee.err.Error(), "--state-dir") {
				// An errno of this machine's, not a server's reply.
				fmt.Fprintln(os.Stderr, "mailhaul: a disk of this machine is full (the one the path above is on: a local destination's, the state dir's or the temporary files'): free space there, or choose another place (--state-dir, --temp-dir), then run the same command again: it resumes where this run stopped")
			}
		}
		return ee.code
	}
	fmt.Fprintln(os.Stderr, "mailhaul:", err)
	if isUsageError(err) {
		return exitUsage
	}
	return exitFatal
}

func isUsageError(err error) bool {
	s := err.Error()
	return strings.Contains(s, "unknown flag") || strings.Contains(s, "unknown command") ||
		strings.Contains(s, "accepts ") || strings.Contains(s, "invalid argument") ||
		strings.Contains(s, "flag needs an argument")
}

func (g *globalFlags) setup() error {
	level := slog.LevelInfo
	switch strings.ToLower(g.logLevel) {
	case "debug":
		level = slog.LevelDebug
	case "info", "":
	case "warn", "warning":
		level = slog.LevelWarn
	case "error":
		level = slog.LevelError
	default:
		return &exitError{exitUsage, fmt.Errorf("invalid --log-level %q (want debug, info, warn or error)", g.logLevel)}
	}
	if g.verbose > 0 {
		level = slog.LevelDebug
	}
	g.log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	return nil
}

// signalContext is cancelled by the first SIGINT/SIGTERM (commands that
// have nothing in flight worth finishing, such as ls); a second signal
// exits at once.
func signalContext(log *slog.Logger) (context.Context, func()) {
	ctx, _, stop := gracefulSignals(log, false)
	return ctx, stop
}

// gracefulSignals handles SIGINT/SIGTERM for a copy: the first closes
// stop, a graceful stop (the messages in flight are finished and recorded,
// the summary printed); with graceful false it cancels ctx instead. A
// second signal exits at once with exitInterrupted — as safe as kill -9:
// the next run resumes from the checkpoint.
func gracefulSignals(log *slog.Logger, graceful bool) (context.Context, <-chan struct{}, func()) {
	ctx, cancel := context.WithCancelCause(context.Background())
	stopCh := make(chan struct{})
	ch := make(chan os.Signal, 2)
	signal.Notify(ch, os.Interrupt, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		select {
		case s := <-ch:
			if graceful {
				log.Warn("stopping after the appends on the wire; a second Ctrl-C (or signal) quits at once (the next run resumes either way)", "signal", s.String())
				close(stopCh)
			} else {
				log.Warn("stopping; a second Ctrl-C (or signal) quits at once", "signal", s.String())
				cancel(fmt.Errorf("received %s", s))
			}
		case <-done:
			return
		}
		select {
		case <-ch:
			fmt.Fprintln(os.Stderr, "mailhaul: quit at once; the next run of the same command settles what was in flight and resumes")
			os.Exit(exitInterrupted)
		case <-done:
		}
	}()
	return ctx, stopCh, func() {
		signal.Stop(ch)
		close(done)
		cancel(nil)
	}
}

// defaultStateDir is $XDG_STATE_HOME/mailhaul or ~/.local/state/mailhaul.
func defaultStateDir() string {
	if d := os.Getenv("XDG_STATE_HOME"); d != "" {
		return filepath.Join(d, "mailhaul")
	}
	if home, err := os.UserHomeDir(); err == nil {
		return filepath.Join(home, ".local", "state", "mailhaul")
	}
	return filepath.Join(os.TempDir(), "mailhaul-state")
}

// exitCodeFor maps a run's outcome to the documented exit codes.
func exitCodeFor(r migrate.Report, err error) int {
	switch {
	case errors.Is(err, migrate.ErrInterrupted):
		return exitInterrupted
	case errors.Is(err, migrate.ErrNothingSelected):
		return exitUsage
	case err != nil:
		return exitFatal
	case len(r.Skipped) > 0:
		return exitSkipped
	}
	return exitOK
}
