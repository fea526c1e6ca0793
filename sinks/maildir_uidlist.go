package sinks

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/mailhaul/mailhaul/internal/maildir"
)

// POP3 UIDLs in Dovecot's dovecot-uidlist (--keep-pop3-uidl).
//
// Dovecot keeps, per Maildir folder, the file dovecot-uidlist mapping
// IMAP UIDs to file names (src/lib-storage/index/maildir/maildir-uidlist.c,
// format version 3, Dovecot 1.1 and later):
//
//	3 V<uidvalidity> N<next uid> [G<mailbox guid>] [other header fields]
//	<uid> [<key><value> ...] :<file name>
//
// Record keys are single upper-case letters; 'P' is "POP3 UIDL overriding
// the default format" and 'O' the "POP3 message ordering number" (lower
// numbers are listed first, messages without one after them). Dovecot's
// pop3 server answers UIDL with a record's P value when there is one
// (pop3-commands.c: MAIL_FETCH_UIDL_BACKEND is tried before
// pop3_uidl_format) and lists messages in O order. Dovecot's own migration
// script (courier-dovecot-migrate.pl) writes records the same way:
// "<uid> O<order> P<uidl> :<file name>".
//
// The file is replaced under Dovecot's lock protocol: the new content is
// written into dovecot-uidlist.lock, created with O_EXCL (the lock), then
// renamed over dovecot-uidlist. A lock older than two minutes is stale, as
// Dovecot judges it (MAILDIR_UIDLIST_LOCK_STALE_TIMEOUT); a fresh one is
// waited for.
//
// When: Append queues a record for each message it stores, Sync writes the
// folder's queued records before it flushes the file system, so the
// uidlist is durable with the batch; Find, which recognises a copy a killed
// run stored, writes its record at once. A record is added only for a file
// the uidlist does not list yet; a listed file without P gets P (and O)
// added. A UIDL that is not 1 to 70 printable characters without spaces
// (RFC 1939) is not written, with a warning.

// uidlistKeeper holds the records waiting for the next Sync, per folder
// directory. Safe for concurrent use.
type uidlistKeeper struct {
	uidl func(folder, id string) (uidl string, order int, ok bool)
	warn func(error)

	mu      sync.Mutex
	pending map[string][]uidlRec // dir -> records to write
	dirMu   map[string]*sync.Mutex
}

type uidlRec struct {
	file  string // file name in cur/ (with :2,flags)
	uidl  string
	order int
}

// KeepPOP3UIDL makes the sink record the POP3 UIDL of every message it
// stores in the dovecot-uidlist of its folder (see maildir_uidlist.go).
// uidl gives the UIDL of source message id of source folder and its POP3
// order (0: unknown); ok false means there is none; warn receives what
// cannot be recorded. Call before the run.
func (s *Maildir) KeepPOP3UIDL(uidl func(folder, id string) (string, int, bool), warn func(error)) {
	if warn == nil {
		warn = func(error) {}
	}
	s.uidl = &uidlistKeeper{uidl: uidl, warn: warn, pending: map[string][]uidlRec{}, dirMu: map[string]*sync.Mutex{}}
}

// validUIDL reports whether u is what RFC 1939 allows: 1 to 70 characters
// in 0x21..0x7E.
func validUIDL(u string) bool {
	if len(u) == 0 || len(u) > 70 {
		return false
	}
	for i := 0; i < len(u); i++ {
		if u[i] < 0x21 || u[i] > 0x7e {
			return false
		}
	}
	return true
}

// add queues the record of file (in dir) for source message id of folder.
// A nil keeper does nothing.
func (k *uidlistKeeper) add(dir, file, folder, id string) {
	if k == nil {
		return
	}
	u, order, ok := k.uidl(folder, id)
	if !ok {
		return
	}
	if !validUIDL(u) {
		k.warn(fmt.Errorf("--keep-pop3-uidl: UIDL %q of message %s is not a valid POP3 UIDL; not written to %s", u, id, filepath.Join(dir, "dovecot-uidlist")))
		return
	}
	k.mu.Lock()
	k.pending[dir] = append(k.pending[dir], uidlRec{file: file, uidl: u, order: order})
	k.mu.Unlock()
}

// flush writes the records queued for dir. Records of a failed flush are
// dropped: the error fails the engine's Sync, the batch stays pending, and
// recovery (Find) queues them again.
func (k *uidlistKeeper) flush(dir string) error {
	if k == nil {
		return nil
	}
	k.mu.Lock()
	recs := k.pending[dir]
	delete(k.pending, dir)
	m := k.dirMu[dir]
	if m == nil {
		m = &sync.Mutex{}
		k.dirMu[dir] = m
	}
	k.mu.Unlock()
	if len(recs) == 0 {
		return nil
	}
	m.Lock()
	defer m.Unlock()
	if err := writeUIDList(dir, recs, time.Now()); err != nil {
		return fmt.Errorf("--keep-pop3-uidl: %w", err)
	}
	return nil
}

// uidlistLockStale is Dovecot's MAILDIR_UIDLIST_LOCK_STALE_TIMEOUT.
const uidlistLockStale = 2 * time.Minute

// writeUIDList merges recs into dir/dovecot-uidlist under Dovecot's lock.
func writeUIDList(dir string, recs []uidlRec, now time.Time) error {
	path := filepath.Join(dir, "dovecot-uidlist")
	lock := path + ".lock"
	f, err := createLock(lock)
	if err != nil {
		return err
	}
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(lock)
		}
	}()
	old, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("read %s: %w", path, err)
	}
	content, err := mergeUIDList(old, recs, now)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if _, err := f.Write(content); err != nil {
		return fmt.Errorf("write %s: %w", lock, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("write %s: %w", lock, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", lock, err)
	}
	if err := os.Rename(lock, path); err != nil {
		return fmt.Errorf("replace %s: %w", path, err)
	}
	ok = true
	return syncDir(dir)
}

// createLock creates the lock file, waiting while a fresh one exists and
// removing a stale one (unchanged for uidlistLockStale).
func createLock(lock string) (*os.File, error) {
	deadline := time.Now().Add(uidlistLockStale + 10*time.Second)
	for {
		f, err := os.OpenFile(lock, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
		if err == nil {
			return f, nil
		}
		if !errors.Is(err, os.ErrExist) {
			return nil, fmt.Errorf("lock %s: %w", lock, err)
		}
		if fi, serr := os.Stat(lock); serr == nil && time.Since(fi.ModTime()) > uidlistLockStale {
			os.Remove(lock)
			continue
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("lock %s: held by another process for over %s", lock, uidlistLockStale)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// mergeUIDList returns old (a dovecot-uidlist, or empty) with recs added.
func mergeUIDList(old []byte, recs []uidlRec, now time.Time) ([]byte, error) {
	type record struct {
		uid  uint64
		ext  []string
		file string
	}
	var (
		header  []string // header fields other than V and N
		uidv    uint64
		next    uint64 = 1
		records []record
	)
	lines := strings.Split(strings.TrimRight(string(old), "\n"), "\n")
	if len(old) == 0 {
		lines = nil
	}
	if len(lines) > 0 {
		h := strings.Fields(lines[0])
		if len(h) == 0 {
			return nil, errors.New("empty header line")
		}
		switch h[0] {
		case "3":
			for _, f := range h[1:] {
				switch f[0] {
				case 'V':
					uidv, _ = strconv.ParseUint(f[1:], 10, 32)
				case 'N':
					next, _ = strconv.ParseUint(f[1:], 10, 32)
				default:
					header = append(header, f)
				}
			}
		case "1":
			if len(h) < 3 {
				return nil, errors.New("bad version 1 header")
			}
			uidv, _ = strconv.ParseUint(h[1], 10, 32)
			next, _ = strconv.ParseUint(h[2], 10, 32)
		default:
			return nil, fmt.Errorf("unsupported format version %q", h[0])
		}
		for _, l := range lines[1:] {
			if strings.TrimSpace(l) == "" {
				continue
			}
			uidS, rest, _ := strings.Cut(l, " ")
			uid, err := strconv.ParseUint(uidS, 10, 32)
			if err != nil {
				return nil, fmt.Errorf("bad record %q", l)
			}
			r := record{uid: uid}
			if h[0] == "1" {
				r.file = strings.TrimSpace(rest)
			} else {
				// As Dovecot reads it: fields up to the first one that
				// starts with ':', whose rest is the file name.
				for {
					rest = strings.TrimLeft(rest, " ")
					if rest == "" {
						return nil, fmt.Errorf("bad record %q", l)
					}
					if rest[0] == ':' {
						r.file = rest[1:]
						break
					}
					f, more, _ := strings.Cut(rest, " ")
					r.ext = append(r.ext, f)
					rest = more
				}
			}
			records = append(records, r)
			if uid >= next {
				next = uid + 1
			}
		}
	}
	if uidv == 0 {
		uidv = uint64(now.Unix())
		g := make([]byte, 16)
		rand.Read(g)
		header = append([]string{"G" + hex.EncodeToString(g)}, header...)
	}
	byBase := map[string]int{}
	for i, r := range records {
		base, _ := maildir.SplitName(r.file)
		byBase[base] = i
	}
	setExt := func(ext []string, key byte, value string) []string {
		for i, e := range ext {
			if e != "" && e[0] == key {
				ext[i] = string(key) + value
				return ext
			}
		}
		return append(ext, string(key)+value)
	}
	for _, rc := range recs {
		base, _ := maildir.SplitName(rc.file)
		if i, ok := byBase[base]; ok {
			if rc.order > 0 {
				records[i].ext = setExt(records[i].ext, 'O', strconv.Itoa(rc.order))
			}
			records[i].ext = setExt(records[i].ext, 'P', rc.uidl)
			continue
		}
		r := record{uid: next, file: rc.file}
		if rc.order > 0 {
			r.ext = append(r.ext, "O"+strconv.Itoa(rc.order))
		}
		r.ext = append(r.ext, "P"+rc.uidl)
		next++
		byBase[base] = len(records)
		records = append(records, r)
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "3 V%d N%d", uidv, next)
	for _, h := range header {
		b.WriteString(" " + h)
	}
	b.WriteByte('\n')
	for _, r := range records {
		fmt.Fprintf(&b, "%d ", r.uid)
		for _, e := range r.ext {
			b.WriteString(e + " ")
		}
		b.WriteString(":" + r.file + "\n")
	}
	return b.Bytes(), nil
}
