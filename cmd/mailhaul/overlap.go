package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/mailhaul/mailhaul/migrate"
)

// checkOverlap refuses a copy whose destination is its own source, or
// lies inside it, or holds it: such a copy writes into what it reads (new
// folders in a source Maildir, a second copy of every message in the same
// IMAP folder, a folder tree that grows under the lister) and breaks the
// promise that the source is never changed. Called by copyJob.open before
// anything is opened; the error is a usage error.
//
// Local endpoints overlap when one path is the other or lies under it
// (symlinks resolved, also for a destination that does not exist yet).
// IMAP endpoints overlap when they are one account (user, port, and a host
// spelled alike or sharing an address) and the destination's root folder
// is the account's root, or the source is the whole account, or the
// destination's root lies among the copied folders. POP3 into the same
// account's IMAP INBOX is refused without --dedupe: where the server's
// POP3 maildrop is its IMAP INBOX (Dovecot, most servers) every message
// would be appended beside itself; with --dedupe what is already there is
// found and not copied again (a POP3 user moving to IMAP on one server,
// the README's two commands).
func checkOverlap(ctx context.Context, src, dst endpoint, o migrate.Options) error {
	switch {
	case isPOP3(src.Scheme) && (dst.Scheme == "imap" || dst.Scheme == "imaps"):
		a, b := src.account(ctx), dst.account(ctx)
		a.Kind, a.Port = b.Kind, b.Port // one server's two protocols
		if o.Dedupe || !sameServerAccount(a, b) || b.Path != "" {
			return nil
		}
		if to, ok := o.Map["INBOX"]; ok && to != "" && !strings.EqualFold(to, "INBOX") {
			return nil
		}
		return usageErr("the POP3 source and the IMAP destination are the same account (%s@%s): its POP3 messages are its IMAP INBOX, and a copy would append each of them beside itself. Add --dedupe-across-folders to copy only what is not in the account yet, or --to-folder for another folder", b.User, b.Host)
	case isLocal(src.Scheme) && isLocal(dst.Scheme):
		sp, err1 := src.localPath()
		dp, err2 := dst.localPath()
		if err1 != nil || err2 != nil {
			return nil // reported by whoever opens them
		}
		sp, dp = resolveExisting(sp), resolveExisting(dp)
		switch {
		case sp == dp:
			return usageErr("the destination %s is the source itself: a copy would write into the mail it reads", dp)
		case within(dp, sp, "/"):
			return usageErr("the destination %s lies inside the source %s: a copy would write into the mail it reads; pick a destination outside it", dp, sp)
		case within(sp, dp, "/") && isDir(sp):
			return usageErr("the source %s lies inside the destination %s: a copy would write beside (and into) the mail it reads; pick a destination outside it", sp, dp)
		}
	case (src.Scheme == "imap" || src.Scheme == "imaps") && (dst.Scheme == "imap" || dst.Scheme == "imaps"):
		a, b := src.account(ctx), dst.account(ctx)
		if !sameServerAccount(a, b) {
			return nil
		}
		s, d := a.Path, b.Path
		var why string
		switch {
		case s == "":
			why = "the source is the whole account"
		case d == "":
			why = "the destination is the account's root, where the source folders already are"
		case within(d, s, "/") || within(d, s, "."):
			why = fmt.Sprintf("the destination folder %q lies among the copied folders (%q and below)", d, s)
		default:
			return nil
		}
		return usageErr("source and destination are the same IMAP account (%s@%s) and %s: a copy would write into the folders it reads. To copy within one account, name a source folder and a destination folder outside it, e.g. imaps://%s@%s/Sent -> imaps://%s@%s/Backup",
			b.User, b.Host, why, b.User, b.Host, b.User, b.Host)
	}
	return nil
}

// sameServerAccount reports whether a and b are one account on one server,
// whatever folders they are limited to.
func sameServerAccount(a, b accountID) bool {
	if a.Host == "" || a.Kind != b.Kind || !strings.EqualFold(a.User, b.User) || a.Port != b.Port {
		return false
	}
	return sameHost(a, b)
}

// isDir: a source directory (a Maildir, an mbox tree) inside the
// destination is read while the copy writes beside it; an mbox file is
// only read.
func isDir(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
}

// within reports whether p is root or lies under it (sep-separated).
func within(p, root, sep string) bool {
	return p == root || strings.HasPrefix(p, strings.TrimSuffix(root, sep)+sep)
}

// resolveExisting resolves the symlinks of p's longest existing prefix and
// appends the rest: a destination that does not exist yet is compared as
// the path it will be created at.
func resolveExisting(p string) string {
	p = filepath.Clean(p)
	rest := ""
	for {
		if r, err := filepath.EvalSymlinks(p); err == nil {
			return filepath.Join(r, rest)
		}
		parent := filepath.Dir(p)
		if parent == p {
			return filepath.Join(p, rest)
		}
		rest = filepath.Join(filepath.Base(p), rest)
		p = parent
	}
}
