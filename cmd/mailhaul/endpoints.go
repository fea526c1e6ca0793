package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/mailhaul/mailhaul/internal/maildir"
	"github.com/mailhaul/mailhaul/internal/mbox"
	"github.com/mailhaul/mailhaul/migrate"
	"github.com/mailhaul/mailhaul/sinks"
	"github.com/mailhaul/mailhaul/sources"
)

// endpoint is a parsed SRC or DST argument: "scheme:rest".
type endpoint struct {
	Raw    string
	Scheme string
	Rest   string
}

// parseEndpoint splits "maildir:PATH", "maildir://PATH" or a URL.
func parseEndpoint(s string) (endpoint, error) {
	scheme, rest, ok := strings.Cut(s, ":")
	if !ok || scheme == "" || strings.ContainsAny(scheme, "/\\.") {
		return endpoint{}, fmt.Errorf("endpoint %q: want SCHEME:..., e.g. maildir:~/Maildir (schemes: %s)", s, strings.Join(schemes(), ", "))
	}
	return endpoint{Raw: s, Scheme: strings.ToLower(scheme), Rest: rest}, nil
}

// localPath returns the path of a local endpoint ("maildir:~/x", "maildir:///x").
func (e endpoint) localPath() (string, error) {
	p := e.Rest
	if strings.HasPrefix(p, "//") {
		p = p[2:]
	}
	if p == "" {
		return "", fmt.Errorf("endpoint %q: no path", e.Raw)
	}
	if p == "~" || strings.HasPrefix(p, "~/") {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("endpoint %q: %w", e.Raw, err)
		}
		p = filepath.Join(home, p[1:])
	}
	return filepath.Abs(p)
}

// describe is the endpoint as recorded in the checkpoint and shown in
// logs: never a secret.
func (e endpoint) describe() string {
	if e.Scheme == "imap" || e.Scheme == "imaps" {
		return describeIMAP(e)
	}
	if isPOP3(e.Scheme) {
		return describePOP3(e)
	}
	if p, err := e.localPath(); err == nil && isLocal(e.Scheme) {
		return e.Scheme + ":" + p
	}
	return e.Scheme + ":" + e.Rest
}

func isLocal(scheme string) bool { return scheme == "maildir" || scheme == "mbox" }

// endpointEnv is what backends may need from the command line.
type endpointEnv struct {
	g    *globalFlags
	c    *copyFlags // nil for commands that only read
	im   *imapFlags // IMAP flags of commands without copyFlags (ls)
	warn func(error)
	info func(string)      // a log line at info level (may be nil)
	hook func(step string) // crash-test kill hook (MAILHAUL_TEST_KILL_AT), may be nil
	// password, when set and ok, gives the password of a side ("src",
	// "dst") before the flags, the environment and the prompt are asked
	// (batch rows: a password from a named variable or the CSV itself).
	// from says where, for a refused login's error.
	password func(side string) (pw, from string, ok bool)
}

type sourceOpener func(ctx context.Context, ep endpoint, env endpointEnv) (migrate.Source, error)
type sinkOpener func(ctx context.Context, ep endpoint, env endpointEnv) (migrate.Sink, error)

// The registry: one line per scheme. Backends plug in here.
var (
	sourceSchemes = map[string]sourceOpener{
		"maildir": openMaildirSource,
		"mbox":    openMboxSource,
	}
	sinkSchemes = map[string]sinkOpener{
		"maildir": openMaildirSink,
	}
)

func schemes() []string {
	set := map[string]bool{}
	for s := range sourceSchemes {
		set[s] = true
	}
	for s := range sinkSchemes {
		set[s] = true
	}
	var out []string
	for s := range set {
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}

func openSource(ctx context.Context, ep endpoint, env endpointEnv) (migrate.Source, error) {
	open, ok := sourceSchemes[ep.Scheme]
	if !ok {
		return nil, fmt.Errorf("source %q: scheme %q cannot be read from (sources: %s)", ep.Raw, ep.Scheme, keys(sourceSchemes))
	}
	return open(ctx, ep, env)
}

// noLoginFlags refuses a side's login flags (--src-password-file and the
// like) when that side is local: a flag given for nothing is a mistake,
// maybe a swapped source and destination. For copy, check and ls; batch
// applies its batch-wide flags to the rows that log in, and refuses a
// local row's own secret columns itself (applySecret).
// src is "src"'s endpoint; dst, when given, "dst"'s.
func noLoginFlags(f *imapFlags, src endpoint, dst ...endpoint) error {
	sides := map[string]endpoint{"src": src}
	if len(dst) > 0 {
		sides["dst"] = dst[0]
	}
	for _, side := range []string{"src", "dst"} {
		ep, ok := sides[side]
		if !ok || !isLocal(ep.Scheme) {
			continue
		}
		auth, admin, pwFile, tokCmd, tokFile := f.side(side)
		for _, fl := range []struct{ name, v string }{{"password-file", pwFile}, {"oauth-token-cmd", tokCmd}, {"oauth-token-file", tokFile}, {"admin-user", admin}, {"auth", auth}} {
			if fl.v != "" {
				return usageErr("--%s-%s is for a server, and %s is a local %s", side, fl.name, ep.Raw, ep.Scheme)
			}
		}
	}
	return nil
}

func openSink(ctx context.Context, ep endpoint, env endpointEnv) (migrate.Sink, error) {
	open, ok := sinkSchemes[ep.Scheme]
	if !ok {
		return nil, fmt.Errorf("destination %q: scheme %q cannot be written to (destinations: %s)", ep.Raw, ep.Scheme, keys(sinkSchemes))
	}
	return open(ctx, ep, env)
}

func keys[V any](m map[string]V) string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return strings.Join(out, ", ")
}

func openMaildirSource(ctx context.Context, ep endpoint, env endpointEnv) (migrate.Source, error) {
	p, err := ep.localPath()
	if err != nil {
		return nil, err
	}
	s, err := sources.OpenMaildir(p)
	if err != nil {
		return nil, err
	}
	s.Warn = env.warn
	return s, nil
}

// openMboxSource opens "mbox:PATH": one mbox file or a Thunderbird-style
// tree. From_ dates without a zone are read as local time.
func openMboxSource(ctx context.Context, ep endpoint, env endpointEnv) (migrate.Source, error) {
	p, err := ep.localPath()
	if err != nil {
		return nil, err
	}
	o := sources.MboxOptions{Location: time.Local, Warn: env.warn, Info: env.info}
	if env.c != nil {
		o.ToFolder = env.c.toFolder
		if fi, err := os.Stat(p); err == nil && fi.IsDir() && o.ToFolder != "" {
			return nil, usageErr("--to-folder names the folder of a single mbox file; %s is a directory of folders, which keep their names (--map renames them)", p)
		}
		if o.Format, err = mbox.ParseFormat(env.c.mboxFormat); err != nil {
			return nil, usageErr("invalid --mbox-format: %v", err)
		}
	}
	return sources.OpenMbox(p, o)
}

func openMaildirSink(ctx context.Context, ep endpoint, env endpointEnv) (migrate.Sink, error) {
	p, err := ep.localPath()
	if err != nil {
		return nil, err
	}
	layout := maildir.PlusPlus
	if env.c != nil {
		if layout, err = maildir.ParseLayout(env.c.maildirLayout); err != nil {
			return nil, usageErr("--maildir-layout: %v", err)
		}
	}
	return sinks.OpenMaildir(p, layout)
}
