// Package sinks holds mailhaul's Sink implementations: Maildir (this file)
// and IMAP. Every Sink follows migrate.Sink: it classifies its errors
// (migrate.SkipMessage when one message cannot be stored, migrate.Retryable
// for transient faults; anything else — disk full, read-only, quota — is
// fatal) and implements migrate.Finder so that a copy written by a killed
// run is recognised instead of written twice.
package sinks

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mailhaul/mailhaul/internal/maildir"
	"github.com/mailhaul/mailhaul/migrate"
)

// Maildir writes into a Maildir tree, Maildir++ by default (what Dovecot
// and Courier read), folder names encoded as Dovecot expects.
//
// Delivery is atomic and durable: the message is written to tmp/, given
// the internal date as mtime (Dovecot's INTERNALDATE) and renamed into cur/
// with its flags. Append does not fsync each file: Sync, which the engine
// calls once per batch before it records the batch as done, flushes the
// whole destination file system with syncfs(2) — file data, inodes and the
// renames in one journal commit instead of two fsyncs per message. Find
// verifies size and SHA-256 of a copy it recognises, so a copy torn by a
// power failure before Sync is replaced, never trusted. The directories
// Prepare makes are not synced one by one either (an account of 100,000
// folders paid a directory fsync for each): the next Sync covers them,
// and SyncFolders, which the engine calls before it records folders as
// finished, covers a run that appended nothing after them.
//
// File names are derived from the copy's identity (source folder, epoch,
// id and content hash), not chosen at random, so Find recognises a copy
// that a killed run wrote but did not record. Message bytes are written
// exactly as the source gave them (no line-ending conversion).
type Maildir struct {
	root   string
	layout maildir.Layout

	mu       sync.Mutex
	keywords map[string]*folderKeywords // dir -> table
	dropped  func(dest string, msg migrate.Message, flags []string, why string)
	uidl     *uidlistKeeper // --keep-pop3-uidl (maildir_uidlist.go); nil: off

	unsynced atomic.Bool // Prepare made directories no sync has covered yet
}

type folderKeywords struct {
	mu sync.Mutex
	kw *maildir.Keywords
}

// OpenMaildir opens (creating if needed) a Maildir tree at root. Keywords
// it cannot store are reported through SetDropped.
func OpenMaildir(root string, layout maildir.Layout) (*Maildir, error) {
	if err := os.MkdirAll(root, 0o700); err != nil {
		return nil, fmt.Errorf("maildir destination %s: %w", root, err)
	}
	return &Maildir{root: root, layout: layout, keywords: map[string]*folderKeywords{}}, nil
}

func (s *Maildir) dir(folder string) string { return maildir.FolderDir(s.root, s.layout, folder) }

// Prepare implements migrate.Sink: it creates the folder (cur, new, tmp and,
// for Maildir++, the maildirfolder marker). Names keep the source's name;
// Maildir has no special-use metadata to map.
//
// Folder names are untrusted (a source may call a folder "../../x"): the
// directory comes from maildir.FolderDir, which escapes every component so
// that it stays inside the destination and two names never share one
// directory, and shortens names longer than a file system takes; a
// directory that would still be outside the destination is refused. A
// folder whose directory cannot be created for reasons of its own (name
// too long for the path, a file in the way, bytes the file system
// refuses) is a Skip-classified error: the engine skips that folder's
// messages and goes on. Anything else (disk full, read-only, no
// permission) is fatal.
func (s *Maildir) Prepare(ctx context.Context, src migrate.Mailbox, name string) (string, error) {
	if strings.EqualFold(name, "INBOX") {
		name = "INBOX"
	}
	dir := s.dir(name)
	if rel, err := filepath.Rel(s.root, dir); err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return "", migrate.SkipMessage(fmt.Errorf("maildir folder %q: directory %s would be outside the destination %s", name, dir, s.root))
	}
	if src.NoSelect && name != "INBOX" {
		// Structure only (a \Noselect parent): nothing to create. In the
		// fs layout its children's directories make it a directory
		// without cur/, which a Maildir reader takes for structure; in
		// Maildir++ it has no directory of its own.
		return name, nil
	}
	for _, sub := range []string{"cur", "new", "tmp"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
			return "", folderError(fmt.Errorf("create maildir folder %s: %w", dir, err))
		}
	}
	if s.layout == maildir.PlusPlus && name != "INBOX" {
		marker := filepath.Join(dir, "maildirfolder")
		if _, err := os.Stat(marker); errors.Is(err, os.ErrNotExist) {
			if err := os.WriteFile(marker, nil, 0o600); err != nil {
				return "", folderError(fmt.Errorf("create maildir folder %s: %w", dir, err))
			}
		}
	}
	s.unsynced.Store(true)
	return name, nil
}

// folderError classifies an error creating one folder: Skip when the
// cause is that folder's own name or path, fatal otherwise.
func folderError(err error) error {
	for _, e := range []error{syscall.ENAMETOOLONG, syscall.ENOTDIR, syscall.EEXIST, syscall.EINVAL, syscall.EILSEQ, syscall.ELOOP, syscall.EISDIR} {
		if errors.Is(err, e) {
			return migrate.SkipMessage(err)
		}
	}
	return err
}

// baseName is the deterministic unique part of the file name of a copy:
// "<internal date>.M<identity hash>.mailhaul,S=<size>". The identity is
// the source folder, the source id and the content hash, so an id reused
// after a UIDVALIDITY change names a different file unless the content is
// the same too (then it is the same message).
func baseName(folder, id, sum string, date time.Time, size int64) string {
	h := sha256.Sum256([]byte(folder + "\x00" + id + "\x00" + sum))
	ts := int64(0)
	if !date.IsZero() {
		ts = date.Unix()
	}
	return fmt.Sprintf("%d.M%s.mailhaul,S=%d", ts, hex.EncodeToString(h[:12]), size)
}

func (s *Maildir) keywordTable(dir string) (*folderKeywords, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if fk, ok := s.keywords[dir]; ok {
		return fk, nil
	}
	kw, err := maildir.ReadKeywords(dir)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", filepath.Join(dir, maildir.KeywordsFile), err)
	}
	fk := &folderKeywords{kw: kw}
	s.keywords[dir] = fk
	return fk, nil
}

// info returns the ":2," letters for msg's flags in dir, persisting new
// keywords to dovecot-keywords before any message refers to them; keywords
// past the table's 26 are reported (SetDropped).
func (s *Maildir) info(dir, folder string, msg migrate.Message) (string, error) {
	flags := msg.Flags
	fk, err := s.keywordTable(dir)
	if err != nil {
		return "", err
	}
	fk.mu.Lock()
	defer fk.mu.Unlock()
	info, dropped := maildir.InfoFromFlags(flags, fk.kw)
	if fk.kw.Dirty() {
		if err := fk.kw.Write(dir); err != nil {
			return "", fmt.Errorf("write %s: %w", filepath.Join(dir, maildir.KeywordsFile), err)
		}
	}
	if len(dropped) > 0 && s.dropped != nil {
		s.dropped(folder, msg, dropped, "a Dovecot Maildir folder keeps at most 26 keywords (dovecot-keywords)")
	}
	return info, nil
}

// Append implements migrate.Sink. Retrying an Append whose copy is already
// in cur/ returns the existing copy. It costs no directory scan: a copy
// moved or re-flagged by a mail client is the business of Find (recovery).
func (s *Maildir) Append(ctx context.Context, folder string, msg migrate.Message, body *migrate.Body) (string, error) {
	dir := s.dir(folder)
	base := baseName(msg.Mailbox, msg.ID, body.SHA256(), msg.Date, body.Size())
	info, err := s.info(dir, folder, msg)
	if err != nil {
		return "", err
	}
	final := filepath.Join(dir, "cur", base+":2,"+info)
	if _, err := os.Lstat(final); err == nil {
		s.uidl.add(dir, filepath.Base(final), msg.Mailbox, msg.ID)
		return base, nil // a retried Append that had succeeded
	}
	tmp := filepath.Join(dir, "tmp", base)
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return "", fmt.Errorf("create %s: %w", tmp, err)
	}
	_, err = io.Copy(f, body.Reader())
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("write %s: %w", tmp, err)
	}
	if !msg.Date.IsZero() {
		if err := os.Chtimes(tmp, msg.Date, msg.Date); err != nil {
			os.Remove(tmp)
			return "", fmt.Errorf("set date of %s: %w", tmp, err)
		}
	}
	if err := os.Rename(tmp, final); err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("deliver %s: %w", final, err)
	}
	s.uidl.add(dir, filepath.Base(final), msg.Mailbox, msg.ID)
	return base, nil
}

// findCopy returns the path of the copy with unique part base in cur/ or
// new/ (a mail client may have moved it or changed its flags), or "".
func findCopy(dir, base string) string {
	for _, sub := range []string{"cur", "new"} {
		d := filepath.Join(dir, sub)
		if _, err := os.Lstat(filepath.Join(d, base)); err == nil {
			return filepath.Join(d, base)
		}
		matches, _ := filepath.Glob(filepath.Join(d, globEscape(base)+":*"))
		if len(matches) > 0 {
			return matches[0]
		}
	}
	return ""
}

func globEscape(s string) string {
	return strings.NewReplacer(`\`, `\\`, `*`, `\*`, `?`, `\?`, `[`, `\[`).Replace(s)
}

// Sync implements migrate.Syncer: every message appended to folder so far
// (data, inode, rename into cur/) becomes durable, and so does every
// folder Prepare made.
func (s *Maildir) Sync(ctx context.Context, folder string) error {
	if err := s.uidl.flush(s.dir(folder)); err != nil {
		return err
	}
	return s.syncfs(filepath.Join(s.dir(folder), "cur"))
}

// SyncFolders implements migrate.FolderSyncer: the folders Prepare made
// become durable (one syncfs, none when nothing was made since the last).
func (s *Maildir) SyncFolders(ctx context.Context) error {
	if !s.unsynced.Load() {
		return nil
	}
	return s.syncfs(s.root)
}

// syncfs flushes the file system that holds dir: syncfs(2) commits every
// pending change of it, so it covers Prepare's directories too.
func (s *Maildir) syncfs(dir string) error {
	was := s.unsynced.Swap(false) // a Prepare that ends after this is not covered
	f, err := os.Open(dir)
	if err == nil {
		err = unix.Syncfs(int(f.Fd()))
		f.Close()
	}
	if err != nil {
		if was {
			s.unsynced.Store(true)
		}
		return fmt.Errorf("sync file system of %s: %w", dir, err)
	}
	return nil
}

// Mark implements migrate.Finder; names are deterministic, no mark needed.
// A killed run leaves no late copy (no server stores anything after this
// process died), so uncertain appends settle at once (Immediate); a copy
// whose rename was not yet durable when the power failed is simply not
// found, and one torn is found but fails the hash check: both are written
// again under the same name, never twice.
func (s *Maildir) Mark(ctx context.Context, folder string) (string, error) { return "", nil }

// Locate implements migrate.Finder: the copy of an intent, if a killed
// run wrote it, has the deterministic name derived from the source
// message's identity (so it cannot belong to another source message), in
// cur/ or new/ with any flags; it counts only if its size and SHA-256 are
// the intent's. A partial file left in tmp/ is removed, and so is a copy
// torn by a power failure before Sync (it will be written again).
func (s *Maildir) Locate(ctx context.Context, folder string, ins []migrate.Intent) ([][]string, error) {
	out := make([][]string, len(ins))
	dir := s.dir(folder)
	for i, in := range ins {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		base := baseName(in.Folder, in.ID, in.SHA256, in.Date, in.Size)
		os.Remove(filepath.Join(dir, "tmp", base))
		p := findCopy(dir, base)
		if p == "" {
			continue
		}
		ok, err := sameContent(p, in.Size, in.SHA256)
		if err != nil {
			return nil, fmt.Errorf("verify %s: %w", p, err)
		}
		if !ok {
			if err := os.Remove(p); err != nil {
				return nil, fmt.Errorf("remove incomplete copy %s: %w", p, err)
			}
			continue
		}
		s.uidl.add(dir, filepath.Base(p), in.Folder, in.ID)
		if err := s.uidl.flush(dir); err != nil {
			return nil, err
		}
		out[i] = []string{base}
	}
	return out, nil
}

// Verify implements migrate.Verifier: each ref is the unique part of a
// file name in cur/ or new/ (as IndexRefs gives it), found with one read
// of those directories and hashed; a copy flagged T (trashed) is false.
// Nothing is removed: a copy that differs is only reported as such.
func (s *Maildir) Verify(ctx context.Context, folder string, refs []string, sizes []int64, sums []string) ([]bool, error) {
	byBase := map[string]string{}
	err := s.eachMessage(ctx, folder, func(p string) error {
		base, _, _ := strings.Cut(filepath.Base(p), ":")
		byBase[base] = p
		return nil
	})
	if err != nil {
		return nil, err
	}
	out := make([]bool, len(refs))
	for i, ref := range refs {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		p, ok := byBase[ref]
		if !ok || trashed(p) {
			continue // a trashed copy (flag T, \Deleted) is about to go
		}
		same, err := sameContent(p, sizes[i], sums[i])
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("read back %s: %w", p, err)
		}
		out[i] = same
	}
	return out, nil
}

// trashed reports whether the Maildir file p carries the T flag (trashed:
// IMAP's \Deleted, removed at the next expunge).
func trashed(p string) bool {
	_, info, ok := strings.Cut(filepath.Base(p), ":2,")
	return ok && strings.ContainsRune(info, 'T')
}

// Immediate implements migrate.Immediate: an Append of this sink has no
// effect once it returned or its process died.
func (s *Maildir) Immediate() {}

// Remove implements migrate.Remover: deletes the copy with unique part ref
// (the engine asks only for a copy this run wrote).
func (s *Maildir) Remove(ctx context.Context, folder, ref string) error {
	p := findCopy(s.dir(folder), ref)
	if p == "" {
		return nil
	}
	if err := os.Remove(p); err != nil {
		return fmt.Errorf("remove %s: %w", p, err)
	}
	return nil
}

// Index implements migrate.Indexer: the Message-ID and size of every
// message in folder (cur/ and new/). Only the header of each file is read.
func (s *Maildir) Index(ctx context.Context, folder string, fn func(string, int64) error) error {
	return s.IndexRefs(ctx, folder, func(mid string, size int64, _ time.Time, _ string) error { return fn(mid, size) })
}

// IndexRefs implements migrate.RefIndexer: Index with the date (the
// file's modification time, which Append sets to the internal date) and
// ref of each message (the unique part of its file name, as Append
// returns it).
func (s *Maildir) IndexRefs(ctx context.Context, folder string, fn func(string, int64, time.Time, string) error) error {
	buf := make([]byte, 64<<10)
	return s.eachMessage(ctx, folder, func(p string) error {
		f, err := os.Open(p)
		if err != nil {
			return nil // vanished or unreadable: it cannot be a duplicate we rely on
		}
		n, _ := io.ReadFull(f, buf)
		fi, serr := f.Stat()
		f.Close()
		if serr != nil {
			return nil
		}
		base, _, _ := strings.Cut(filepath.Base(p), ":")
		return fn(migrate.MessageIDFromHeader(buf[:n]), fi.Size(), fi.ModTime(), base)
	})
}

// eachMessage calls fn with the path of every message file of folder
// (cur/ and new/; no dot files, nothing but regular files), stopping at
// fn's first error or when ctx is done. A missing cur/ or new/ holds
// nothing.
func (s *Maildir) eachMessage(ctx context.Context, folder string, fn func(path string) error) error {
	dir := s.dir(folder)
	for _, sub := range []string{"cur", "new"} {
		ents, err := os.ReadDir(filepath.Join(dir, sub))
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			return fmt.Errorf("read %s: %w", filepath.Join(dir, sub), err)
		}
		for _, e := range ents {
			if err := ctx.Err(); err != nil {
				return err
			}
			if strings.HasPrefix(e.Name(), ".") || !e.Type().IsRegular() {
				continue
			}
			if err := fn(filepath.Join(dir, sub, e.Name())); err != nil {
				return err
			}
		}
	}
	return nil
}

// SetDropped implements migrate.FlagDropper.
func (s *Maildir) SetDropped(f func(dest string, msg migrate.Message, flags []string, why string)) {
	s.dropped = f
}

// Limits implements migrate.Sink.
func (s *Maildir) Limits() migrate.Limits { return migrate.Limits{} }

// Orderless implements migrate.Orderless: a Maildir's order is its file
// names, which begin with the internal date.
func (s *Maildir) Orderless() {}

// Close implements migrate.Sink.
func (s *Maildir) Close() error { return nil }

// sameContent reports whether the file at p has the given size and hex
// SHA-256.
func sameContent(p string, size int64, sum string) (bool, error) {
	f, err := os.Open(p)
	if err != nil {
		return false, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return false, err
	}
	return n == size && hex.EncodeToString(h.Sum(nil)) == sum, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

var (
	_ migrate.Sink         = (*Maildir)(nil)
	_ migrate.Syncer       = (*Maildir)(nil)
	_ migrate.FolderSyncer = (*Maildir)(nil)
	_ migrate.Finder       = (*Maildir)(nil)
	_ migrate.Remover      = (*Maildir)(nil)
	_ migrate.Indexer      = (*Maildir)(nil)
)
