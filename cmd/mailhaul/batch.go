package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/mailhaul/mailhaul/internal/batch"
	"github.com/mailhaul/mailhaul/internal/imapconn"
	"github.com/mailhaul/mailhaul/migrate"
)

// The batch command: a list of accounts from a CSV file, copied by the
// same code as `mailhaul copy` (prepareCopy, copyJob.open, migrate.Run),
// several at once, resumable, with one report. The queue, its state and
// the reports are internal/batch; this file turns rows into accounts
// (flags, endpoints, secrets, connection needs) and renders.

type batchFlags struct {
	parallel      int
	maxPerHost    int
	maxPerAccount int
	again         bool
	shard         string
	shards        int
	name          string
	reportOnly    bool
	reportDir     string
	allowSecrets  bool
	validate      bool

	copy   copyFlags      // defaults for every row
	copyFS *pflag.FlagSet // copy's flags as registered on batch
}

// Defaults of batch's connection settings (see the README, "Connections").
const (
	defaultBatchTransfers     = 4
	defaultBatchParallel      = 4
	defaultMaxConnsPerHost    = 10 // Dovecot: mail_max_userip_connections = 10 per user and IP; Gmail: 15 per account
	defaultMaxConnsPerAccount = 10
)

func batchCommand(g *globalFlags) *cobra.Command {
	cmd, _ := newBatchCommand(g)
	return cmd
}

// newBatchCommand returns the command and the flags it parses into.
func newBatchCommand(g *globalFlags) (*cobra.Command, *batchFlags) {
	f := &batchFlags{}
	cmd := &cobra.Command{
		Use:   "batch ACCOUNTS.csv",
		Short: "Copy a list of accounts from a CSV file: resumable, several at once, one report",
		Long: `Copy every account listed in ACCOUNTS.csv (one row per account) as
"mailhaul copy" would, several at once, and write one report.

The file has a header row naming its columns, in any order:
  source, destination       endpoints as copy takes them (required)
  source_password_env       name of an environment variable holding the source password
  source_password_file      file holding the source password
  source_oauth_token_cmd    command printing an OAuth2 access token (XOAUTH2 unless --src-auth)
  source_oauth_token_file   file holding an OAuth2 access token (re-read as it is refreshed)
  destination_password_env, destination_password_file, destination_oauth_token_cmd,
  destination_oauth_token_file
                            the same for the destination
  options                   copy flags for this row, e.g. --map 'Sent Items=Sent' --dedupe
  name                      a label for the reports (default: the endpoints)
An IMAP side needs one of its secret columns (or --src-password-file /
--dst-password-file for every row). Passwords in the file itself
(source_password, destination_password) need --allow-secrets-in-csv and a
file not readable by everyone. Lines starting with # are comments. The
whole file is checked before anything runs: a bad row is reported with its
line number and nothing is copied (exit 2).

Re-running the same command resumes: accounts done are kept (--again runs
them again to pick up new mail), failed and interrupted ones run again,
each from its checkpoint. The batch state lives in --state-dir beside the
accounts' checkpoints; two batch processes on one state refuse to run.

In a Kubernetes Indexed Job, each pod takes its shard of the rows from
JOB_COMPLETION_INDEX and MAILHAUL_SHARDS (set it to the Job's completions);
--report-only merges the state of every shard into one report.`,
		Example: `  mailhaul batch --parallel 4 accounts.csv
  mailhaul batch --validate accounts.csv
  mailhaul batch --again accounts.csv                  # pick up new mail everywhere
  mailhaul batch --shard 0/3 accounts.csv              # one of three machines
  mailhaul batch --report-only --state-dir /state accounts.csv`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runBatch(g, f, args[0])
		},
	}
	fl := cmd.Flags()
	fl.IntVar(&f.parallel, "parallel", defaultBatchParallel, "accounts copied at once")
	fl.IntVar(&f.maxPerHost, "max-connections-per-host", defaultMaxConnsPerHost, "connections to one server, summed over every account running (IMAP: each account holds --transfers + 1 per server)")
	fl.IntVar(&f.maxPerAccount, "max-connections-per-account", defaultMaxConnsPerAccount, "connections to one account on a server, summed over the rows that use it")
	fl.BoolVar(&f.again, "again", false, "run accounts that are done too (to pick up new mail)")
	fl.StringVar(&f.shard, "shard", "", "run only shard K of N (K/N, K from 0); default: from JOB_COMPLETION_INDEX and MAILHAUL_SHARDS in a Kubernetes Indexed Job")
	fl.IntVar(&f.shards, "shards", 0, "number of shards, with the index from JOB_COMPLETION_INDEX (instead of MAILHAUL_SHARDS)")
	fl.StringVar(&f.name, "name", "", "name of the batch: its state and reports are batch-NAME* in --state-dir (default: the file's name without extension)")
	fl.BoolVar(&f.reportOnly, "report-only", false, "run nothing: print and write the report from the state (of every shard, unless --shard)")
	fl.StringVar(&f.reportDir, "report-dir", "", "where the CSV and JSON reports are written (default: --state-dir)")
	fl.BoolVar(&f.allowSecrets, "allow-secrets-in-csv", false, "allow the source_password and destination_password columns (the file must not be readable by everyone)")
	fl.BoolVar(&f.validate, "validate", false, "check the file and the secrets, print the plan, run nothing")

	// copy's flags, as defaults for every row; rows add their options.
	f.copyFS = pflag.NewFlagSet("copy", pflag.ContinueOnError)
	addCopyFlags(f.copyFS, &f.copy)
	f.copy.transfers = defaultBatchTransfers
	tf := f.copyFS.Lookup("transfers")
	tf.DefValue = fmt.Sprint(defaultBatchTransfers)
	tf.Usage = "parallel transfers per side of each account, lowered to fit --max-connections-per-host / --parallel"
	f.copyFS.Lookup("dry-run").Hidden = true
	fl.AddFlagSet(f.copyFS)
	return cmd, f
}

// rowDenied are the copy flags a row's options may not set, and why.
var rowDenied = map[string]string{
	"state-dir":            "every checkpoint of a batch is kept in its --state-dir",
	"transfers":            "the batch sets it (--transfers, --max-connections-per-host, --parallel)",
	"dry-run":              "use mailhaul batch --validate, or mailhaul copy --dry-run for one account",
	"src-password-file":    "use the source_password_file column",
	"dst-password-file":    "use the destination_password_file column",
	"src-oauth-token-cmd":  "use the source_oauth_token_cmd column",
	"dst-oauth-token-cmd":  "use the destination_oauth_token_cmd column",
	"src-oauth-token-file": "use the source_oauth_token_file column",
	"dst-oauth-token-file": "use the destination_oauth_token_file column",
}

// rowJob is a validated row: its copy and where its passwords come from.
type rowJob struct {
	job     *copyJob
	secrets map[string]batch.Secret // "src", "dst"
}

// password implements endpointEnv.password: a password named by a
// variable, or written in the file, is read when the account opens;
// files and token commands go through the IMAP flags, as with copy.
func (r *rowJob) password(side string) (pw, from string, ok bool) {
	s := r.secrets[side]
	name := map[string]string{"src": "source", "dst": "destination"}[side]
	switch {
	case s.Env != "":
		return os.Getenv(s.Env), "$" + s.Env + " (the row's " + name + "_password_env)", true
	case s.Value != "":
		return s.Value, "the row's " + name + "_password column", true
	}
	return "", "", false
}

// batchPlan is the validated file: every account, and the ones of this
// shard.
type batchPlan struct {
	file      string
	name      string
	shard     batch.Shard
	transfers int
	all       []*batch.Account
	mine      []*batch.Account
	jobs      map[string]*rowJob
}

func runBatch(g *globalFlags, f *batchFlags, file string) error {
	plan, err := planBatch(f, file, !f.reportOnly)
	if err != nil {
		return err
	}
	if f.reportOnly {
		return batchReportOnly(g, f, plan)
	}
	if f.validate {
		printPlan(os.Stderr, f, plan)
		return nil
	}
	return batchRun(g, f, plan)
}

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// planBatch checks the flags, reads and checks every row (checkSecrets:
// that the secrets can be had) and selects the shard. Any error is a
// usage error; a bad file yields every bad row, each with its line.
func planBatch(f *batchFlags, file string, checkSecrets bool) (*batchPlan, error) {
	switch {
	case f.parallel < 1 || f.parallel > 256:
		return nil, usageErr("--parallel must be between 1 and 256")
	case f.maxPerHost < 2:
		return nil, usageErr("--max-connections-per-host must be at least 2 (an IMAP account needs one connection for listing and one for transfers)")
	case f.maxPerAccount < 2:
		return nil, usageErr("--max-connections-per-account must be at least 2")
	case f.copy.transfers < 1 || f.copy.transfers > 64:
		return nil, usageErr("--transfers must be between 1 and 64")
	case f.copy.dryRun:
		return nil, usageErr("batch has no --dry-run: --validate checks the file, mailhaul copy --dry-run shows one account's plan")
	}
	p := &batchPlan{file: file, jobs: map[string]*rowJob{}}
	var err error
	if f.shard != "" {
		if f.shards != 0 {
			return nil, usageErr("give --shard K/N or --shards N (with JOB_COMPLETION_INDEX), not both")
		}
		if p.shard, err = batch.ParseShard(f.shard); err != nil {
			return nil, usageErr("--shard: %v", err)
		}
	} else if !f.reportOnly {
		if p.shard, _, err = batch.ShardFromEnv(os.Getenv, f.shards); err != nil {
			return nil, usageErr("%v", err)
		}
	}
	p.name = f.name
	if p.name == "" {
		p.name = strings.TrimSuffix(filepath.Base(file), filepath.Ext(file))
	}
	p.name = unsafeName.ReplaceAllString(p.name, "_")

	// Each account holds transfers+1 connections per IMAP server; P of
	// them must fit under the per-server cap, and one under the
	// per-account cap.
	p.transfers = min(f.copy.transfers, f.maxPerAccount-1, f.maxPerHost/f.parallel-1)
	p.transfers = max(p.transfers, 1)

	rows, err := batch.Read(file, batch.ParseOptions{AllowInlineSecrets: f.allowSecrets})
	var errs batch.Errors
	if err != nil && !errors.As(err, &errs) {
		return nil, usageErr("%v", err)
	}
	base := changedArgs(f.copyFS)
	seen := map[string]int{}
	for _, row := range rows {
		a, rj, err := prepareRow(f, p, base, row, checkSecrets)
		if err != nil {
			errs = append(errs, &batch.LineError{File: file, Line: row.Line, Err: err})
			continue
		}
		if first, dup := seen[a.Key]; dup {
			errs = append(errs, &batch.LineError{File: file, Line: row.Line, Err: fmt.Errorf("duplicate account: line %d already copies %s", first, a.Label)})
			continue
		}
		seen[a.Key] = row.Line
		p.all = append(p.all, a)
		p.jobs[a.Key] = rj
		if p.shard.Owns(a.ShardKey) {
			p.mine = append(p.mine, a)
		}
	}
	if len(errs) == 0 {
		errs = respelled(file, p)
	}
	if len(errs) > 0 {
		errs.Sort()
		return nil, fileErrors(errs)
	}
	return p, nil
}

// respelled finds rows that copy the same accounts as an earlier row
// under another spelling of a host (a name and its address, two names of
// one server), as copy finds their checkpoint (sameAccount): run, they
// would share one checkpoint. Only rows alike but for their hosts are
// compared, and only their hosts resolved (once each, briefly).
func respelled(file string, p *batchPlan) batch.Errors {
	type side = [2]accountID
	groups := map[string][]*batch.Account{}
	ids := map[*batch.Account]side{}
	for _, a := range p.all {
		j := p.jobs[a.Key].job
		id := side{j.src.accountUnresolved(), j.dst.accountUnresolved()}
		if id[0].Host == "" && id[1].Host == "" {
			continue
		}
		ids[a] = id
		hostless := id // alike but for their hosts (the user and port stay in the key)
		for i := range hostless {
			if hostless[i].Host != "" {
				hostless[i].Host = "*"
			}
		}
		k := hostless[0].key() + " -> " + hostless[1].key()
		groups[k] = append(groups[k], a)
	}
	addrs := map[string][]string{}
	resolved := func(id accountID) accountID {
		if id.Host != "" {
			if _, ok := addrs[id.Host]; !ok {
				addrs[id.Host] = resolve(context.Background(), id.Host)
			}
			id.Addrs = addrs[id.Host]
		}
		return id
	}
	var errs batch.Errors
	for _, g := range groups {
		for i, a := range g {
			for _, b := range g[:i] {
				x, y := ids[a], ids[b]
				if sameAccount(resolved(x[0]), resolved(y[0])) && sameAccount(resolved(x[1]), resolved(y[1])) {
					errs = append(errs, &batch.LineError{File: file, Line: a.Line, Err: fmt.Errorf("duplicate account: line %d already copies %s (the same accounts, spelled differently)", b.Line, b.Label)})
					break
				}
			}
		}
	}
	return errs
}

// fileErrors prints every error of the accounts file and returns the
// usage error that ends the command.
func fileErrors(err error) error {
	var es batch.Errors
	if !errors.As(err, &es) {
		return usageErr("%v", err)
	}
	for _, e := range es {
		fmt.Fprintln(os.Stderr, "mailhaul:", e)
	}
	what := "1 error"
	if len(es) != 1 {
		what = fmt.Sprintf("%d errors", len(es))
	}
	return &exitError{exitUsage, fmt.Errorf("accounts file: %s; nothing was run", what)}
}

// changedArgs turns the copy flags given to batch back into arguments, so
// that a row's flags are parsed as batch's followed by the row's options:
// a row's scalar option overrides batch's, a repeatable one (--include,
// --map) adds to them.
func changedArgs(fs *pflag.FlagSet) []string {
	var args []string
	fs.VisitAll(func(fl *pflag.Flag) {
		if !fl.Changed {
			return
		}
		if sv, ok := fl.Value.(pflag.SliceValue); ok {
			for _, v := range sv.GetSlice() {
				args = append(args, "--"+fl.Name+"="+v)
			}
			return
		}
		args = append(args, "--"+fl.Name+"="+fl.Value.String())
	})
	return args
}

// prepareRow validates one row as copy would validate its command line,
// checks its secrets and computes its identity and connection needs.
func prepareRow(f *batchFlags, p *batchPlan, base []string, row batch.Row, checkSecrets bool) (*batch.Account, *rowJob, error) {
	scratch := pflag.NewFlagSet("options", pflag.ContinueOnError)
	scratch.SetOutput(io.Discard)
	addCopyFlags(scratch, &copyFlags{})
	if err := scratch.Parse(row.Options); err != nil {
		return nil, nil, fmt.Errorf("options: %v", err)
	}
	if scratch.NArg() > 0 {
		return nil, nil, fmt.Errorf("options: unexpected argument %q (options are copy flags, e.g. --map 'Sent Items=Sent')", scratch.Arg(0))
	}
	var denied error
	scratch.Visit(func(fl *pflag.Flag) {
		if why, ok := rowDenied[fl.Name]; ok && denied == nil {
			denied = fmt.Errorf("options: --%s cannot be set per row: %s", fl.Name, why)
		}
	})
	if denied != nil {
		return nil, nil, denied
	}
	rf := &copyFlags{}
	fs := pflag.NewFlagSet("row", pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	addCopyFlags(fs, rf)
	if err := fs.Parse(append(append([]string{}, base...), row.Options...)); err != nil {
		return nil, nil, fmt.Errorf("options: %v", err)
	}
	rf.transfers, rf.stateDir, rf.dryRun = p.transfers, f.copy.stateDir, false

	job, err := prepareCopy(rf, row.Source, row.Destination)
	if err != nil {
		return nil, nil, unwrapUsage(err)
	}
	rj := &rowJob{job: job, secrets: map[string]batch.Secret{}}
	sides := []struct {
		side, name string
		ep         endpoint
		sec        batch.Secret
	}{{"src", "source", job.src, row.SourceSecret}, {"dst", "destination", job.dst, row.DestinationSecret}}
	for _, s := range sides {
		if err := applySecret(rf, s.side, s.name, s.ep, s.sec, checkSecrets); err != nil {
			return nil, nil, err
		}
		rj.secrets[s.side] = s.sec
	}

	a := &batch.Account{Row: row, Source: job.src.describe(), Destination: job.dst.describe()}
	a.Key = job.src.accountUnresolved().key() + " -> " + job.dst.accountUnresolved().key()
	a.Label = row.Name
	if a.Label == "" {
		a.Label = a.Source + " -> " + a.Destination
	}
	for _, ep := range []endpoint{job.src, job.dst} {
		if c, ok := connsOf(ep, p.transfers); ok {
			a.Conns = append(a.Conns, c)
		}
	}
	a.ShardKey = job.dst.accountUnresolved().key()
	if c, ok := connsOf(job.dst, p.transfers); ok {
		a.ShardKey = c.Account
	}
	return a, rj, nil
}

// unwrapUsage returns the message of a usage error without its code.
func unwrapUsage(err error) error {
	var ee *exitError
	if errors.As(err, &ee) && ee.err != nil {
		return ee.err
	}
	return err
}

// networkScheme reports whether an endpoint of this scheme logs in to a
// server (and so needs a secret).
func networkScheme(s string) bool {
	switch s {
	case "imap", "imaps", "pop3", "pop3s":
		return true
	}
	return false
}

// applySecret checks one side's secret and routes it: a file or a token
// command through the IMAP flags (as copy reads them), a variable or an
// inline password through rowJob.password.
func applySecret(rf *copyFlags, side, name string, ep endpoint, sec batch.Secret, check bool) error {
	im := &rf.imap
	pwFile, tokCmd, tokFile, auth := &im.srcPasswordFile, &im.srcTokenCmd, &im.srcTokenFile, &im.srcAuth
	if side == "dst" {
		pwFile, tokCmd, tokFile, auth = &im.dstPasswordFile, &im.dstTokenCmd, &im.dstTokenFile, &im.dstAuth
	}
	if !networkScheme(ep.Scheme) {
		if sec.Given() {
			return fmt.Errorf("the %s %s logs in nowhere: leave its secret columns empty", name, ep.describe())
		}
		return nil
	}
	if ep.Scheme == "imap" || ep.Scheme == "imaps" {
		if _, err := imapconn.ParseURL(ep.Raw); err != nil {
			return fmt.Errorf("%s: %v", name, err)
		}
	}
	if !sec.Given() {
		if (*tokCmd != "" || *tokFile != "") && *auth == "" {
			*auth = "xoauth2" // a batch-wide token, as a row's
		}
		if *pwFile != "" || *tokCmd != "" || *tokFile != "" {
			return nil // batch-wide --src-password-file and the like
		}
		return fmt.Errorf("no secret for the %s %s: fill %s_password_env, %s_password_file, %s_oauth_token_cmd or %s_oauth_token_file (or give --%s-password-file for every row)",
			name, ep.describe(), name, name, name, name, side)
	}
	if sec.Env != "" {
		addSecretVar(sec.Env)
	}
	if check {
		if err := sec.Check(name, os.Getenv); err != nil {
			return err
		}
	}
	oauth := *auth == "xoauth2" || *auth == "oauthbearer"
	switch {
	case sec.OAuth():
		if *auth != "" && !oauth {
			return fmt.Errorf("an OAuth2 token with --%s-auth %s: a token needs --%s-auth xoauth2 or oauthbearer", side, *auth, side)
		}
		if *auth == "" {
			*auth = "xoauth2"
		}
		*tokCmd, *tokFile, *pwFile = sec.Cmd, sec.TokenFile, ""
	case oauth:
		return fmt.Errorf("--%s-auth %s needs a token: use %s_oauth_token_cmd or %s_oauth_token_file", side, *auth, name, name)
	case sec.File != "":
		*pwFile, *tokCmd, *tokFile = sec.File, "", ""
	default: // Env or Value: rowJob.password
		*pwFile, *tokCmd, *tokFile = "", "", ""
	}
	return nil
}

// connsOf is what an account's side holds on its server at most: an IMAP
// source or sink opens a pool of transfers+1 connections (sources.OpenIMAP,
// sinks.OpenIMAP), a POP3 source one session. ok is false for local
// stores.
func connsOf(ep endpoint, transfers int) (batch.Conn, bool) {
	if !networkScheme(ep.Scheme) {
		return batch.Conn{}, false
	}
	n := transfers + 1
	if strings.HasPrefix(ep.Scheme, "pop3") {
		n = 1
	}
	var server, user string
	if ep.Scheme == "imap" || ep.Scheme == "imaps" {
		// imap:// and imaps:// on their standard ports are one server.
		id := ep.accountUnresolved()
		server = "imap:" + id.Host
		if id.Port != "" {
			server += ":" + id.Port
		}
		user = id.User
	} else if u, err := url.Parse(ep.Raw); err == nil {
		server, user = ep.Scheme+":"+strings.ToLower(u.Host), u.User.Username()
	}
	return batch.Conn{Server: server, Account: server + " " + user, N: n}, true
}

// batchRunner runs the accounts of a plan and renders their progress.
type batchRunner struct {
	g         *globalFlags
	plan      *batchPlan
	stop      <-chan struct{}
	hook      func(string)
	memBudget int64
	out       io.Writer

	mu      sync.Mutex
	done    int
	total   int
	kept    int
	running []string
}

func batchRun(g *globalFlags, f *batchFlags, p *batchPlan) error {
	if len(p.mine) == 0 {
		g.log.Warn("no account of the file falls in this shard", "shard", p.shard.String(), "accounts", len(p.all))
	}
	network := false
	for _, a := range p.mine {
		network = network || len(a.Conns) > 0
	}
	if network && p.transfers < f.copy.transfers {
		g.log.Info(fmt.Sprintf("each account runs with --transfers %d (%d connections per IMAP server) so that --parallel %d accounts fit in --max-connections-per-host %d",
			p.transfers, p.transfers+1, f.parallel, f.maxPerHost))
	}
	ver := buildVersion()
	statePath := batch.StatePath(f.copy.stateDir, p.name, p.shard)
	abs, _ := filepath.Abs(p.file)
	st, err := batch.Open(statePath, batch.Header{Batch: p.name, Shard: p.shard.String(), Accounts: abs, Version: ver})
	if err != nil {
		if errors.Is(err, batch.ErrLocked) {
			return &exitError{exitFatal, fmt.Errorf("%w; run this command again once that batch has ended: it then resumes where that one stopped", err)}
		}
		return &exitError{exitFatal, err}
	}
	defer st.Close()
	g.log.Debug("batch state", "path", statePath)

	ctx, stopCh, stop := gracefulSignals(g.log, true)
	defer stop()
	b := &batchRunner{g: g, plan: p, stop: stopCh, hook: testKillHook(), out: os.Stderr,
		memBudget: max(migrate.DefaultMemBudget/int64(f.parallel), 4<<20)}
	tick := b.progress(30 * time.Second)
	err = batch.Run(ctx, p.mine, batch.Config{
		State: st, Parallel: f.parallel, Again: f.again, Version: ver, Shard: p.shard.String(),
		Limits:   batch.Limits{PerServer: f.maxPerHost, PerAccount: f.maxPerAccount},
		Copy:     b.copyAccount,
		Event:    b.event,
		Stop:     stopCh,
		StepHook: b.hook,
	})
	tick()
	if b.kept > 0 {
		fmt.Fprintf(os.Stderr, "%d of %d accounts were done by an earlier run and were not run again (--again runs them to pick up new mail)\n", b.kept, len(p.mine))
	}
	interrupted := false
	select {
	case <-stopCh:
		interrupted = true
	default:
	}
	rep := batch.NewReport(p.mine, st.Records())
	rep.Version, rep.Batch, rep.File, rep.Shard = ver, p.name, abs, p.shard.String()
	rep.States = []batch.StateInfo{{Path: statePath, Shard: p.shard.String(), Live: true, Version: ver}}
	if werr := writeBatchReport(g, f, p, rep); werr != nil && err == nil {
		err = werr
	}
	if err != nil {
		return &exitError{exitFatal, err}
	}
	return batchExit(rep, interrupted, false)
}

// writeBatchReport prints the table (stderr), the JSON report (stdout,
// with --json) and writes the CSV and JSON files.
func writeBatchReport(g *globalFlags, f *batchFlags, p *batchPlan, rep batch.Report) error {
	dir := f.reportDir
	if dir == "" {
		dir = f.copy.stateDir
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("report directory: %w", err)
	}
	csvPath, jsonPath, err := rep.WriteFiles(batch.ReportPrefix(dir, p.name, p.shard))
	printBatchTable(os.Stderr, rep)
	if err == nil {
		fmt.Fprintf(os.Stderr, "report: %s, %s\n", csvPath, jsonPath)
	}
	if g.json {
		if jerr := rep.WriteJSON(os.Stdout); jerr != nil && err == nil {
			err = fmt.Errorf("write report: %w", jerr)
		}
	}
	return err
}

// batchExit maps a report to the exit code: 0 every account done, 3
// every account finished but some with skipped messages, 130 this run was
// interrupted, 1 some account failed (or, for a report, has not finished).
func batchExit(rep batch.Report, interrupted, reportOnly bool) error {
	t := rep.Totals
	switch {
	case interrupted:
		return &exitError{exitInterrupted, fmt.Errorf("interrupted with %d of %d accounts not finished; run the same command again to resume", t.Accounts-t.Done-t.Partial-t.Failed, t.Accounts)}
	case t.Failed > 0:
		again := "run the same command again to retry them"
		if reportOnly {
			again = "run the batch again (without --report-only) to retry them"
		}
		return &exitError{exitFatal, fmt.Errorf("%d of %d accounts failed; %s", t.Failed, t.Accounts, again)}
	case t.Pending+t.Running > 0:
		what := "not finished"
		if reportOnly && t.Running > 0 {
			what = fmt.Sprintf("not finished (%d running)", t.Running)
		}
		return &exitError{exitFatal, fmt.Errorf("%d of %d accounts %s", t.Pending+t.Running, t.Accounts, what)}
	case t.Partial > 0:
		return &exitError{exitSkipped, fmt.Errorf("%d of %d accounts finished with skipped messages (listed in their reasons); the next run retries them", t.Partial, t.Accounts)}
	}
	return nil
}

// copyAccount runs one account exactly as copy does.
func (b *batchRunner) copyAccount(ctx context.Context, a *batch.Account) batch.Result {
	rj := b.plan.jobs[a.Key]
	log := b.g.log.With("account", a.Label)
	env := endpointEnv{g: b.g, c: rj.job.f, warn: func(err error) { log.Warn(err.Error()) },
		info: func(s string) { log.Info(s) }, password: rj.password}
	start := time.Now()
	oc, err := rj.job.open(ctx, env, log)
	if err != nil {
		code, e := exitOf(err)
		return batch.Result{ExitCode: code, Reason: oneLineReason(e), Duration: time.Since(start)}
	}
	defer oc.close()
	o := oc.opts
	o.Stop, o.Reporter, o.StepHook, o.MemBudget = b.stop, accountReporter{log}, b.hook, b.memBudget
	rep, runErr := migrate.Run(ctx, o)
	res := batch.Result{ExitCode: exitCodeFor(rep, runErr), Copied: rep.Copied, Already: rep.Already,
		Skipped: len(rep.Skipped), Bytes: rep.Bytes, Duration: time.Since(start)}
	switch {
	case runErr != nil:
		res.Reason = oneLineReason(runErr)
	case len(rep.Skipped) > 0:
		s := rep.Skipped[0]
		res.Reason = oneLineReason(fmt.Errorf("%d messages skipped, the first: %s %s: %s", len(rep.Skipped), s.Folder, s.ID, s.Reason))
	}
	return res
}

// exitOf unwraps nested exitErrors as run does: the innermost code wins.
func exitOf(err error) (int, error) {
	code := exitFatal
	var ee *exitError
	for errors.As(err, &ee) {
		code = ee.code
		if ee.err == nil {
			break
		}
		err = ee.err
	}
	return code, err
}

// oneLineReason is an error as one line of at most 300 characters.
func oneLineReason(err error) string {
	if err == nil {
		return ""
	}
	s := strings.Join(strings.Fields(err.Error()), " ")
	if r := []rune(s); len(r) > 300 {
		s = string(r[:299]) + "…"
	}
	return s
}

// accountReporter logs what one account's engine reports that a person
// should see; counting is the engine's Report.
type accountReporter struct{ log *slog.Logger }

func (r accountReporter) Event(e migrate.Event) {
	switch e.Kind {
	case migrate.Skipped:
		r.log.Warn("message skipped", "folder", e.Folder, "id", e.ID, "reason", errString(e.Err))
	case migrate.Retrying:
		r.log.Warn("retrying", "folder", e.Folder, "id", e.ID, "error", errString(e.Err))
	case migrate.Warning:
		r.log.Warn(errString(e.Err))
	case migrate.Settled:
		if e.Err != nil {
			r.log.Warn(errString(e.Err))
		} else {
			r.log.Log(context.Background(), settledLevel(e.How), "append with unknown outcome settled", "folder", e.Folder, "id", e.ID, "how", e.How)
		}
	case migrate.Waiting:
		r.log.Info(errString(e.Err))
	case migrate.FolderStart:
		r.log.Debug("folder", "source", e.Folder, "destination", e.Dest)
	}
}

// event renders the queue: a line per account as it finishes.
func (b *batchRunner) event(e batch.Event) {
	b.mu.Lock()
	b.done, b.total, b.running = e.Done, e.Total, e.Running
	b.mu.Unlock()
	a, r := e.Account, e.Record
	w := len(fmt.Sprint(e.Total))
	switch e.Kind {
	case batch.Kept:
		b.mu.Lock()
		b.kept++
		b.mu.Unlock()
		b.g.log.Debug("done by an earlier run (--again runs it again)", "account", a.Label, "line", a.Line)
	case batch.Started:
		b.g.log.Debug("account started", "account", a.Label, "line", a.Line, "attempt", r.Attempts)
	case batch.Finished:
		var what string
		switch r.Status {
		case batch.Done:
			what = fmt.Sprintf("copied %d (%s), %d already there, %.1fs", r.Copied, humanBytes(r.Bytes), r.Already, r.Seconds)
		case batch.Partial:
			what = fmt.Sprintf("copied %d, %d skipped: %s", r.Copied, r.Skipped, r.Reason)
		case batch.Pending:
			what = "interrupted; the next run resumes it"
		default:
			what = fmt.Sprintf("exit %d: %s", r.ExitCode, r.Reason)
		}
		status := string(r.Status)
		if r.Status == batch.Failed {
			status = "FAILED"
		} else if r.Status == batch.Pending {
			status = "stopped"
		}
		done := strconv.Itoa(e.Done)
		if r.Status == batch.Pending {
			done = "-" // not finished: it does not count
		}
		fmt.Fprintf(b.out, "[%*s/%d] %-7s %s (line %d): %s\n", w, done, e.Total, status, a.Label, a.Line, what)
	}
}

// progress logs the queue every period until the returned func is called.
func (b *batchRunner) progress(period time.Duration) func() {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(period)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				b.mu.Lock()
				b.g.log.Info("batch progress", "finished", fmt.Sprintf("%d/%d", b.done, b.total), "running", strings.Join(b.running, ", "))
				b.mu.Unlock()
			case <-done:
				return
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}

// batchReportOnly merges the state of every shard (or of --shard's) into
// one report of the file's accounts.
func batchReportOnly(g *globalFlags, f *batchFlags, p *batchPlan) error {
	var paths []string
	var err error
	if f.shard != "" {
		if sp := batch.StatePath(f.copy.stateDir, p.name, p.shard); fileExists(sp) {
			paths = []string{sp}
		}
	} else if paths, err = batch.StatePaths(f.copy.stateDir, p.name); err != nil {
		return &exitError{exitFatal, err}
	}
	if len(paths) == 0 {
		g.log.Warn("no batch state found: no account has run yet", "state-dir", f.copy.stateDir, "batch", p.name)
	}
	recs, infos, err := batch.MergeStates(paths)
	if err != nil {
		return &exitError{exitFatal, err}
	}
	accounts := p.all
	if f.shard != "" {
		accounts = p.mine
	}
	rep := batch.NewReport(accounts, recs)
	abs, _ := filepath.Abs(p.file)
	rep.Version, rep.Batch, rep.File, rep.Shard, rep.States = buildVersion(), p.name, abs, p.shard.String(), infos
	if err := writeBatchReport(g, f, p, rep); err != nil {
		return &exitError{exitFatal, err}
	}
	return batchExit(rep, false, true)
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// printPlan shows what --validate found.
func printPlan(w io.Writer, f *batchFlags, p *batchPlan) {
	fmt.Fprintf(w, "%s: %d accounts, every row valid\n", p.file, len(p.all))
	if !p.shard.Whole() {
		fmt.Fprintf(w, "shard %s: %d accounts\n", p.shard, len(p.mine))
	}
	fmt.Fprintf(w, "%d accounts at once; each with --transfers %d (%d connections per IMAP server); at most %d connections per server and %d per account\n",
		f.parallel, p.transfers, p.transfers+1, f.maxPerHost, f.maxPerAccount)
	fmt.Fprintf(w, "state: %s\n", batch.StatePath(f.copy.stateDir, p.name, p.shard))
}

// printBatchTable renders a report as a table.
func printBatchTable(w io.Writer, rep batch.Report) {
	nameW := len("ACCOUNT")
	for _, a := range rep.Accounts {
		nameW = max(nameW, min(width(a.Account), 48))
	}
	fmt.Fprintf(w, "%s %8s %8s %8s %10s %9s  %s\n", pad("ACCOUNT", nameW), "COPIED", "ALREADY", "SKIPPED", "BYTES", "DURATION", "STATUS")
	for _, a := range rep.Accounts {
		status := string(a.Status)
		if a.Status == batch.Failed || a.Status == batch.Partial {
			status += fmt.Sprintf(" (exit %d)", a.ExitCode)
		}
		fmt.Fprintf(w, "%s %8d %8d %8d %10s %8.1fs  %s\n", pad(a.Account, nameW), a.Copied, a.Already, a.Skipped, humanBytes(a.Bytes), a.Seconds, status)
	}
	t := rep.Totals
	fmt.Fprintf(w, "%s: %d done, %d partial, %d failed, %d not finished; copied %s (%s), %d already there, %d skipped\n",
		plural(t.Accounts, "account"), t.Done, t.Partial, t.Failed, t.Pending+t.Running, plural(t.Copied, "message"), humanBytes(t.Bytes), t.Already, t.Skipped)
	for _, a := range rep.Accounts {
		if a.Reason != "" && a.Status != batch.Done && (a.Status != batch.Pending || a.Attempts > 0) {
			fmt.Fprintf(w, "  line %d %s: %s: %s\n", a.Line, a.Account, a.Status, a.Reason)
		}
	}
	fmt.Fprintf(w, "mailhaul %s\n", rep.Version)
}
