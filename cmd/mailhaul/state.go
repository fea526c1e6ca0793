package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/mailhaul/mailhaul/checkpoint"
	"github.com/mailhaul/mailhaul/internal/imapconn"
	"github.com/mailhaul/mailhaul/internal/pop3conn"
)

// Which checkpoint a copy uses.
//
// A checkpoint belongs to a pair of accounts, not to the spelling of two
// endpoints: switching from imap:// (STARTTLS) to imaps:// mid-migration,
// or from a server's address to its name, must resume the same record
// (and be locked out by a copy running under the other spelling), never
// copy everything again. An account is identified by its accountID:
//
//   - IMAP: the user, the host (case-folded) and the port only when it is
//     not the scheme's standard one (143 and 993 are the same server's
//     two doors), and the folder the endpoint is limited to. POP3 alike
//     (110 and 995). Two spellings
//     of the host are the same account when they resolve to a common
//     address (checked when no checkpoint exists under the exact key).
//   - Maildir and mbox: the absolute path with symlinks resolved.
type accountID struct {
	Kind  string   `json:"kind"` // "imap", "maildir", "mbox", ...
	User  string   `json:"user,omitempty"`
	Host  string   `json:"host,omitempty"`
	Port  string   `json:"port,omitempty"` // "" = the standard port
	Path  string   `json:"path,omitempty"` // folder (network) or file path (local)
	Addrs []string `json:"addrs,omitempty"`
}

func (a accountID) key() string {
	if a.Host == "" {
		return a.Kind + ":" + a.Path
	}
	s := a.Kind + ":" + a.User + "@" + a.Host
	if a.Port != "" {
		s += ":" + a.Port
	}
	if a.Path != "" {
		s += "/" + a.Path
	}
	return s
}

// sameAccount reports whether a and b name one account, a and b spelled
// with different hosts that share an address included.
func sameAccount(a, b accountID) bool {
	if a.key() == b.key() {
		return true
	}
	if a.Kind != b.Kind || a.User != b.User || a.Port != b.Port || a.Path != b.Path || a.Host == "" {
		return false
	}
	return sameHost(a, b)
}

// sameHost reports whether a and b name one host: spelled alike, or
// resolving to a common address.
func sameHost(a, b accountID) bool {
	if a.Host == b.Host {
		return true
	}
	for _, x := range a.Addrs {
		if slices.Contains(b.Addrs, x) {
			return true
		}
	}
	return false
}

// account returns the accountID of an endpoint; addresses are resolved
// (briefly) only for network endpoints.
func (e endpoint) account(ctx context.Context) accountID {
	a := e.accountUnresolved()
	if a.Host != "" {
		a.Addrs = resolve(ctx, a.Host)
	}
	return a
}

// accountUnresolved is account without Addrs: no name lookup (batch uses
// it to key thousands of rows).
func (e endpoint) accountUnresolved() accountID {
	switch e.Scheme {
	case "imap", "imaps":
		u, err := imapconn.ParseURL(e.Raw)
		if err != nil {
			return accountID{Kind: "imap", Path: "invalid"}
		}
		a := accountID{Kind: "imap", User: u.User, Host: strings.ToLower(u.Host), Path: u.Folder}
		if !(u.TLS && u.Port == "993") && !(!u.TLS && u.Port == "143") {
			a.Port = u.Port
		}
		return a
	case "pop3", "pop3s":
		u, err := pop3conn.ParseURL(e.Raw)
		if err != nil {
			return accountID{Kind: "pop3", Path: "invalid"}
		}
		a := accountID{Kind: "pop3", User: u.User, Host: strings.ToLower(u.Host)}
		if !(u.TLS && u.Port == "995") && !(!u.TLS && u.Port == "110") {
			a.Port = u.Port
		}
		return a
	}
	p, err := e.localPath()
	if err != nil {
		return accountID{Kind: e.Scheme, Path: e.Rest}
	}
	if r, err := filepath.EvalSymlinks(p); err == nil {
		p = r
	}
	return accountID{Kind: e.Scheme, Path: p}
}

func resolve(ctx context.Context, host string) []string {
	if ip := net.ParseIP(host); ip != nil {
		return []string{ip.String()}
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	addrs, _ := net.DefaultResolver.LookupHost(ctx, host)
	slices.Sort(addrs)
	return addrs
}

// checkpointPath finds the checkpoint of the pair (src, dst) in dir: the
// one under the exact key, else one recorded for the same accounts spelled
// otherwise, else one written by a version that keyed by the endpoints'
// spelling; else the path a new one gets. note says which was taken when it
// is not the first.
func checkpointPath(ctx context.Context, dir string, src, dst endpoint) (path string, ids [2]accountID, note string) {
	ids = [2]accountID{src.account(ctx), dst.account(ctx)}
	path = checkpoint.PathFor(dir, ids[0].key(), ids[1].key())
	if _, err := os.Stat(path); err == nil {
		return path, ids, ""
	}
	if legacy := checkpoint.PathFor(dir, src.describe(), dst.describe()); legacy != path {
		if _, err := os.Stat(legacy); err == nil {
			return legacy, ids, ""
		}
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.db.accounts"))
	for _, f := range files {
		var rec [2]accountID
		b, err := os.ReadFile(f)
		if err != nil || json.Unmarshal(b, &rec) != nil {
			continue
		}
		if sameAccount(rec[0], ids[0]) && sameAccount(rec[1], ids[1]) {
			return strings.TrimSuffix(f, ".accounts"), ids, fmt.Sprintf("resuming the checkpoint of %s -> %s (the same accounts, spelled differently)", rec[0].key(), rec[1].key())
		}
	}
	return path, ids, ""
}

// recordAccounts stores what identifies the pair beside the checkpoint at
// path (a plain file, readable while a running copy holds the checkpoint's
// lock, so that a second spelling of the same accounts finds the checkpoint
// and is locked out by that copy).
func recordAccounts(path string, ids [2]accountID) error {
	b, err := json.Marshal(ids)
	if err != nil {
		return err
	}
	side := path + ".accounts"
	if old, err := os.ReadFile(side); err == nil && string(old) == string(b) {
		return nil
	}
	tmp := side + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, side)
}

// checkStateDir refuses a state directory that others may write to: the
// checkpoint decides what is copied (and, with --delete-after-copy, what is
// deleted from the source), and the spool holds mail.
func checkStateDir(dir string) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return nil // created 0700 by the checkpoint
	}
	if fi.Mode().Perm()&0o022 != 0 {
		return fmt.Errorf("state directory %s is writable by other users (mode %s): it holds the record of what was copied and spooled mail; chmod go-w %s, or pass another --state-dir (a directory of your own)", dir, octalMode(fi.Mode()), dir)
	}
	return nil
}

// octalMode is m as chmod spells it ("1777" for a sticky /tmp), which
// os.FileMode's String does not ("-rwxrwxrwx" for that directory).
func octalMode(m os.FileMode) string {
	n := uint32(m.Perm())
	if m&os.ModeSticky != 0 {
		n |= 0o1000
	}
	if m&os.ModeSetgid != 0 {
		n |= 0o2000
	}
	if m&os.ModeSetuid != 0 {
		n |= 0o4000
	}
	return fmt.Sprintf("%04o", n)
}

// stateDirHint says what to do about err, a failure to create or open a
// checkpoint in the state dir, if it is one a user can fix there.
func stateDirHint(err error) string {
	switch {
	case errors.Is(err, syscall.EROFS):
		return "the state dir must be writable: pass --state-dir a directory on a writable file system"
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		return "free space where the state dir is, or pass --state-dir a directory with room"
	case errors.Is(err, os.ErrPermission):
		return "the state dir must be writable by you: pass --state-dir a directory of your own"
	}
	return ""
}
