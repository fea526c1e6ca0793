package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/mailhaul/mailhaul/internal/bwlimit"
	"github.com/mailhaul/mailhaul/internal/pop3conn"
	"github.com/mailhaul/mailhaul/migrate"
	"github.com/mailhaul/mailhaul/sinks"
	"github.com/mailhaul/mailhaul/sources"
)

// POP3 endpoints: pop3s://user@host[:995] and pop3://user@host[:110]
// (STLS). Sources only. TLS, password, token and trace flags are the IMAP
// ones (imapFlags); the flags below are POP3's own.
func init() {
	sourceSchemes["pop3"] = openPOP3Source
	sourceSchemes["pop3s"] = openPOP3Source
}

func isPOP3(scheme string) bool { return scheme == "pop3" || scheme == "pop3s" }

// pop3Flags are the POP3 options of copy.
type pop3Flags struct {
	markSeen        bool
	deleteOlderThan string
	keepUIDL        bool
	olderThan       time.Duration // parsed deleteOlderThan
}

func addPOP3Flags(fl *pflag.FlagSet, f *pop3Flags) {
	fl.BoolVar(&f.markSeen, "mark-seen", false, `POP3 source: store the messages as read (\Seen); POP3 has no flags, so by default they arrive unread`)
	fl.StringVar(&f.deleteOlderThan, "delete-older-than", "", "POP3 source: with --delete-after-copy (implied), delete only copied messages whose header date is older than this (30d, 2w, 720h): the server keeps recent mail")
	fl.BoolVar(&f.keepUIDL, "keep-pop3-uidl", false, "POP3 source, Maildir destination: write each message's POP3 UIDL into Dovecot's dovecot-uidlist, so POP3 clients of the new server do not download everything again")
}

// parseAge parses a duration with the extra units d (24h) and w (7d).
func parseAge(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	for suffix, unit := range map[string]time.Duration{"d": 24 * time.Hour, "w": 7 * 24 * time.Hour} {
		if n, ok := strings.CutSuffix(s, suffix); ok {
			v, err := strconv.ParseFloat(n, 64)
			if err != nil || v < 0 {
				return 0, fmt.Errorf("%q is not a duration (want e.g. 30d, 2w, 720h)", s)
			}
			return time.Duration(v * float64(unit)), nil
		}
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("%q is not a duration (want e.g. 30d, 2w, 720h)", s)
	}
	return d, nil
}

// describePOP3 is the checkpoint key / log name of a POP3 endpoint: the
// normalised URL, never a secret.
func describePOP3(e endpoint) string {
	u, err := pop3conn.ParseURL(e.Raw)
	if err != nil {
		return e.Scheme + "://invalid"
	}
	return u.String()
}

func openPOP3Source(ctx context.Context, ep endpoint, env endpointEnv) (migrate.Source, error) {
	cfg, err := pop3Config(ep, env)
	if err != nil {
		return nil, err
	}
	o := sources.POP3Options{Warn: env.warn, StepHook: env.hook}
	if env.g != nil && env.g.log != nil {
		o.Info = func(s string) { env.g.log.Info(s) }
	}
	if env.c != nil {
		o.MarkSeen = env.c.pop3.markSeen
		o.DeleteOlderThan = env.c.pop3.olderThan
	}
	return sources.OpenPOP3(ctx, cfg, o)
}

// pop3Config builds the session settings of a POP3 source from the URL,
// the (shared) connection flags and the environment.
func pop3Config(ep endpoint, env endpointEnv) (*pop3conn.Config, error) {
	u, err := pop3conn.ParseURL(ep.Raw)
	if err != nil {
		return nil, usageErr("%v", err)
	}
	f := imapFlagsOf(env)
	cfg := &pop3conn.Config{Endpoint: u, InsecurePlaintext: f.insecurePlaintext, CAFile: f.caFile, SkipVerify: f.skipVerify, IdleTimeout: f.ioTimeout}
	if env.c != nil {
		bw, _ := parseSize(env.c.bwlimit) // checked by runCopy
		cfg.Limit = bwlimit.New(bw)
	}
	auth, admin, pwFile, tokCmd, tokFile := f.side("src")
	switch auth {
	case "login":
		auth = pop3conn.AuthUser // the IMAP spelling of "the protocol's own login"
	case pop3conn.AuthAuto, pop3conn.AuthUser, pop3conn.AuthPlain, pop3conn.AuthXOAUTH2, pop3conn.AuthOAuthBearer:
	default:
		return nil, usageErr("invalid --src-auth %q for POP3 (want user, plain, xoauth2 or oauthbearer)", auth)
	}
	cfg.Auth, cfg.AdminUser = auth, admin
	cfg.Trace = connectionWarnings(env, "src", u.Addr(), u.Host, u.TLS, cfg.SkipVerify, f.insecurePlaintext)
	if auth == pop3conn.AuthXOAUTH2 || auth == pop3conn.AuthOAuthBearer {
		if tokCmd == "" && tokFile == "" {
			return nil, usageErr("--src-auth %s needs --src-oauth-token-cmd or --src-oauth-token-file", auth)
		}
		cfg.Token = tokenSource(tokCmd, tokFile)
		return cfg, nil
	}
	if cfg.Password, cfg.PasswordFrom, err = sidePassword(env, "src", pwFile, u.User, u.Addr()); err != nil {
		return nil, err
	}
	return cfg, nil
}

// checkPOP3Flags validates the POP3 flags against the endpoints before
// anything is opened.
func checkPOP3Flags(f *copyFlags, src, dst endpoint) error {
	p := &f.pop3
	if p.deleteOlderThan != "" {
		d, err := parseAge(p.deleteOlderThan)
		if err != nil {
			return usageErr("invalid --delete-older-than: %v", err)
		}
		p.olderThan = d
		f.deleteAfterCopy = true
	}
	if (p.markSeen || p.deleteOlderThan != "" || p.keepUIDL) && !isPOP3(src.Scheme) {
		return usageErr("--mark-seen, --delete-older-than and --keep-pop3-uidl are for a POP3 source (pop3:// or pop3s://)")
	}
	if p.keepUIDL && dst.Scheme != "maildir" {
		return usageErr("--keep-pop3-uidl writes Dovecot's dovecot-uidlist: it needs a maildir: destination")
	}
	return nil
}

// wirePOP3 connects what a POP3 source gives other parts of the run:
// --keep-pop3-uidl hands its UIDLs to the Maildir sink.
func wirePOP3(f *copyFlags, src migrate.Source, sink migrate.Sink, warn func(error)) {
	p, ok := src.(*sources.POP3)
	if !ok || !f.pop3.keepUIDL {
		return
	}
	m, ok := sink.(*sinks.Maildir)
	if !ok {
		return
	}
	if _, _, ok := p.POP3UIDL("INBOX", ""); !ok {
		warn(fmt.Errorf("--keep-pop3-uidl: the server gives no UIDL, so there is none to keep"))
		return
	}
	m.KeepPOP3UIDL(p.POP3UIDL, warn)
}

// pop3ToFolder makes --to-folder of a POP3 source a folder mapping: POP3's
// one mailbox is INBOX in the checkpoint whatever the destination folder.
// copy and check call it, so that check looks where copy wrote. Any other
// source but mbox (a single file's folder name: openMboxSource) refuses
// --to-folder: its folders keep their names.
func pop3ToFolder(o *migrate.Options, f *copyFlags, src endpoint) error {
	if f.toFolder == "" {
		return nil
	}
	if !isPOP3(src.Scheme) {
		if src.Scheme == "mbox" {
			return nil
		}
		return usageErr("--to-folder is for a POP3 source or a single mbox file: the folders of %s keep their names (--map renames them)", src.describe())
	}
	if o.Map == nil {
		o.Map = map[string]string{}
	}
	if _, ok := o.Map["INBOX"]; !ok {
		o.Map["INBOX"] = strings.Trim(f.toFolder, "/ ")
	}
	return nil
}
