package sources

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/mailhaul/mailhaul/internal/mbox"
	"github.com/mailhaul/mailhaul/migrate"
)

// MboxOptions configure OpenMbox.
type MboxOptions struct {
	// ToFolder names the folder of a single-file mbox (default: the file's
	// name; "Inbox" becomes "INBOX"). Ignored for a directory tree.
	ToFolder string
	// Format forces an mbox dialect; mbox.Auto detects it per file.
	Format mbox.Format
	// Location is the zone of From_ line dates without one (nil: UTC).
	Location *time.Location
	// Warn, if not nil, receives problems that do not stop a message from
	// being copied (unparseable From_ date, lying Content-Length, a NUL
	// byte, messages whose dialect is in doubt). Called from the lister
	// goroutine.
	Warn func(error)
	// Info, if not nil, receives one line per file saying which dialect
	// its messages were read in (log level info). Called from the lister
	// goroutine.
	Info func(msg string)
}

// Mbox reads one mbox file or a tree of them in Thunderbird's layout
// (`Inbox`, `Sent`, `Folder.sbd/Sub`; `.msf` indexes and the other files
// Thunderbird keeps beside its folders are not folders; any other file is
// one, and is skipped with a reason when it is not an mbox file). Files
// are opened read-only and never changed.
//
// Message IDs are content hashes: the first 32 hex digits of the SHA-256
// of the message bytes without the flag headers that clients rewrite in
// place (see mbox.Copy), with "-N" appended for the N-th byte-identical
// duplicate in one folder (the first has no suffix); an expunged
// Thunderbird message has "-del" before the ordinal and is counted apart.
// So a file that was compacted or appended to between runs, or whose
// messages were marked read, keeps the IDs of what was already copied.
//
// Msg.Loc is "start:length:dialect" of the raw message in the file (the
// dialect is chosen per message, see package mbox). Fetch reads that
// range again, unquotes it, and checks the content hash against the ID: a
// file changed since List gives a skipped message, never wrong bytes.
type Mbox struct {
	root string
	opts MboxOptions
	file bool // root is a single file

	mu      sync.Mutex
	folders map[string]*mboxFolder
}

type mboxFolder struct {
	path   string
	listed bool             // List has read the first message: eol is known
	eol    byte             // line break of the file
	bad    map[string]error // ID -> why it cannot be copied
	// notMbox says why the file is not an mbox file; nil if it is one.
	notMbox error
}

// locFormats names the dialect of a message in Msg.Loc.
var locFormats = map[mbox.Format]string{mbox.MboxO: "o", mbox.MboxRD: "rd", mbox.MboxCL2: "cl2"}

func parseLocFormat(s string) (mbox.Format, bool) {
	for f, n := range locFormats {
		if n == s {
			return f, true
		}
	}
	return mbox.Auto, false
}

// OpenMbox opens path: one mbox file (one folder) or a directory tree.
func OpenMbox(path string, opts MboxOptions) (*Mbox, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("mbox source %s: %w", path, err)
	}
	if opts.Warn == nil {
		opts.Warn = func(error) {}
	}
	if opts.Info == nil {
		opts.Info = func(string) {}
	}
	s := &Mbox{root: path, opts: opts, folders: map[string]*mboxFolder{}}
	switch {
	case fi.Mode().IsRegular():
		s.file = true
	case fi.IsDir():
	default:
		return nil, fmt.Errorf("mbox source %s: not a file or directory (%s)", path, fi.Mode().Type())
	}
	return s, nil
}

// folderName maps a file name to a folder name component: Thunderbird's
// "Inbox" at the top is "INBOX".
func folderName(parent, file string) string {
	if parent == "" {
		if strings.EqualFold(file, "inbox") {
			return "INBOX"
		}
		return file
	}
	return parent + "/" + file
}

// appleBundle reports whether directory name n is a mailbox as Apple Mail
// exports it ("Inbox.mbox": the mail in a file "mbox", beside Info.plist
// and table_of_contents, and the mailbox's children as bundles inside),
// and the mailbox's name.
func appleBundle(n string) (string, bool) {
	if len(n) > len(".mbox") && strings.EqualFold(filepath.Ext(n), ".mbox") {
		return n[:len(n)-len(".mbox")], true
	}
	return "", false
}

func isFile(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular()
}

// notMbox lists files found beside mbox files in a Thunderbird profile.
// And what Windows leaves in a directory it showed (Thumbs.db,
// desktop.ini), in a profile copied off a Windows machine.
var notMbox = map[string]bool{
	"filterlog.html": true, "msgfilterrules.dat": true, "popstate.dat": true,
	"folders.json": true, "virtualfolders.dat": true, "junklog.html": true,
	"thumbs.db": true, "ehthumbs.db": true, "desktop.ini": true,
}

// notMboxExt: the extensions of a profile's other files (prefs.js,
// compatibility.ini, cert9.db, ...). A file of these names or extensions
// that is an mbox file all the same is read (see holdsMail).
var notMboxExt = map[string]bool{
	".msf": true, ".dat": true, ".json": true, ".sqlite": true, ".html": true,
	".sqlite-wal": true, ".sqlite-shm": true, ".log": true, ".lock": true, ".bak": true,
	".js": true, ".ini": true, ".db": true,
}

// holdsMail reports whether the file at p is an mbox file with messages
// in it (not empty: an empty .msf is no folder).
func holdsMail(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Size() > 0 && looksLikeMbox(p) == nil
}

// sniffLen is how much of a file looksLikeMbox reads.
const sniffLen = 64 << 10

// looksLikeMbox returns nil if the file at p is empty or an mbox file: it
// starts with "From " after an optional UTF-8 byte-order mark and blank or
// whitespace-only lines, or a valid From_ line (`From <sender> <date>`)
// starts a line in its first 64 KiB (junk at the top is then reported by
// the reader with its offset). Otherwise it says why the file is not one.
func looksLikeMbox(p string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	buf := make([]byte, sniffLen)
	n, err := io.ReadFull(f, buf)
	if err != nil && err != io.EOF && err != io.ErrUnexpectedEOF {
		return fmt.Errorf("read %s: %w", p, err)
	}
	buf = buf[:n]
	if n == 0 {
		return nil
	}
	head := bytes.TrimLeft(bytes.TrimPrefix(buf, []byte("\xef\xbb\xbf")), " \t\r\n")
	if bytes.HasPrefix(head, []byte("From ")) || len(head) == 0 {
		return nil
	}
	for rest := buf; ; {
		i := bytes.Index(rest, []byte("\nFrom "))
		if i < 0 {
			break
		}
		rest = rest[i+1:]
		line, _, _ := bytes.Cut(rest, []byte("\n"))
		if _, _, ok := mbox.ParseFromLine(strings.TrimSuffix(string(line[len("From "):]), "\r"), nil); ok {
			return nil
		}
	}
	return fmt.Errorf("%s is not an mbox file (no From_ line at its start or in its first %d KiB)", p, sniffLen>>10)
}

// maxTreeDepth bounds how deep the tree walk descends (Thunderbird's own
// nesting is far shallower).
const maxTreeDepth = 64

// dirID identifies a directory by device and inode, to recognise one
// reached twice (a bind mount of a parent inside itself).
type dirID struct{ dev, ino uint64 }

func dirIDOf(fi os.FileInfo) (dirID, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return dirID{}, false
	}
	return dirID{uint64(st.Dev), uint64(st.Ino)}, true
}

// Mailboxes implements migrate.Source. A directory "X.sbd" without a file
// "X", and any other directory, is a NoSelect folder holding the folders
// found in it.
//
// The walk reads every directory once (by device and inode: a bind mount
// of a parent inside itself is no loop), descends at most 64 levels,
// stops when ctx is cancelled, and does not follow symbolic links to
// directories (they are reported with Warn); a symbolic link to a file is
// read like the file. A file that is not an mbox file (see looksLikeMbox)
// is still a folder: it is reported as skipped (CheckMailbox), so that
// the run's summary and exit code say that something was not copied.
func (s *Mbox) Mailboxes(ctx context.Context) ([]migrate.Mailbox, error) {
	var out []migrate.Mailbox
	listed := map[string]int{} // folder name -> its index in out
	// add lists folder name (path "" and noSelect: structure only). A
	// folder whose name another file already has (Thunderbird's "Inbox"
	// beside Pine's "INBOX"; then their children "INBOX/Sub") is named
	// alt — its name as on disk, under its parent — or alt " (2)"...,
	// with a warning; a structure-only name is shared, and becomes the
	// file's that has it. The walk goes on under the name asked for:
	// the children of every inbox are INBOX's, where a destination
	// merges the inboxes themselves.
	add := func(name, alt, path string, noSelect bool, bad error) {
		if i, ok := listed[name]; ok {
			if noSelect {
				return // "Inbox.sbd" beside "INBOX": its parent is listed
			}
			if out[i].NoSelect {
				out[i].NoSelect = false // a bundle "INBOX.mbox" without mail beside "Inbox.mbox" with
			} else {
				was := name
				name = migrate.UniqueName(name, alt, func(x string) bool { _, ok := listed[x]; return ok })
				s.opts.Warn(fmt.Errorf("mbox source: %s is read as folder %q, since another file is folder %q (a destination merges an Inbox into its INBOX; if an earlier run read this file as %[3]q, run with --dedupe once, or its messages are copied again)", path, name, was))
			}
		}
		if _, ok := listed[name]; !ok {
			listed[name] = len(out)
			out = append(out, migrate.Mailbox{Name: name, NoSelect: noSelect})
			migrate.GuessSpecialUse(&out[len(out)-1])
		}
		if !noSelect {
			s.mu.Lock()
			s.folders[name] = &mboxFolder{path: path, notMbox: bad}
			s.mu.Unlock()
		}
	}
	if s.file {
		name := s.opts.ToFolder
		if name == "" {
			name = folderName("", filepath.Base(s.root))
			if b, ok := appleBundle(filepath.Base(filepath.Dir(s.root))); ok && filepath.Base(s.root) == "mbox" {
				name = folderName("", b) // ".../Inbox.mbox/mbox"
			}
		}
		name = strings.Trim(name, "/")
		if strings.EqualFold(name, "inbox") {
			name = "INBOX"
		}
		add(name, name, s.root, false, looksLikeMbox(s.root))
		return out, nil
	}
	seen := map[dirID]bool{}
	if fi, err := os.Stat(s.root); err == nil {
		if id, ok := dirIDOf(fi); ok {
			seen[id] = true
		}
	}
	prefix, bundle := "", false
	if b, ok := appleBundle(filepath.Base(s.root)); ok {
		// One mailbox exported by Apple Mail ("Inbox.mbox"), given
		// itself: its folder is named after it.
		prefix, bundle = folderName("", b), true
		if !isFile(filepath.Join(s.root, "mbox")) {
			add(prefix, prefix, "", true, nil)
		}
	}
	if fi, err := os.Stat(filepath.Join(s.root, "Local Folders")); err == nil && fi.IsDir() {
		// Thunderbird's Mail/ (or ImapMail/): a directory per account.
		s.opts.Warn(fmt.Errorf("mbox source: %s looks like a Thunderbird profile's Mail directory, which holds a directory per account (\"Local Folders\", one per POP3 server): each account's folders are copied under a folder named after it, and its Inbox and Sent do not become the destination's; to copy one account's folders to the top, give its directory (%s)", s.root, filepath.Join(s.root, "Local Folders")))
	}
	if err := s.walk(ctx, s.root, prefix, 0, bundle, seen, add); err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("mbox source %s: no mbox files here (files starting with \"From \")", s.root)
	}
	migrate.SortMailboxes(out)
	return out, nil
}

// walk lists the folders in dir, whose folder name is prefix; bundle: dir
// is an Apple Mail bundle, whose own mail (the file "mbox") is folder
// prefix.
func (s *Mbox) walk(ctx context.Context, dir, prefix string, depth int, bundle bool, seen map[dirID]bool, add func(name, alt, path string, noSelect bool, bad error)) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("mbox source: read directory %s: %w", dir, err)
	}
	onDisk := func(n string) string { // n under prefix, as it is on disk
		if prefix == "" {
			return n
		}
		return prefix + "/" + n
	}
	if bundle {
		if p := filepath.Join(dir, "mbox"); isFile(p) {
			alt, _ := appleBundle(filepath.Base(dir)) // "Inbox" of "Inbox.mbox", not folded to INBOX
			if i := strings.LastIndex(prefix, "/"); i >= 0 {
				alt = prefix[:i+1] + alt
			}
			add(prefix, alt, p, false, looksLikeMbox(p)) // the bundle's own mail
		}
	}
	files := map[string]bool{}
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return err
		}
		n := e.Name()
		if strings.HasPrefix(n, ".") || e.IsDir() {
			continue
		}
		p := filepath.Join(dir, n)
		if (notMbox[strings.ToLower(n)] || notMboxExt[strings.ToLower(filepath.Ext(n))]) && !holdsMail(p) {
			continue // a folder may be named "node.js" or "Clients.db": read it if it is mail
		}
		if bundle && (n == "Info.plist" || n == "table_of_contents") {
			continue // Apple Mail's index of the bundle's mbox
		}
		fi, err := os.Stat(p)
		if err != nil {
			s.opts.Warn(fmt.Errorf("mbox source: %s skipped: %w", p, err))
			continue
		}
		if fi.IsDir() {
			s.opts.Warn(fmt.Errorf("mbox source: %s skipped: a symbolic link to a directory (not followed)", p))
			continue
		}
		if !fi.Mode().IsRegular() {
			continue
		}
		if bundle && n == "mbox" {
			continue // listed above
		}
		files[n] = true
		add(folderName(prefix, n), onDisk(n), p, false, looksLikeMbox(p))
	}
	for _, e := range entries {
		n := e.Name()
		if strings.HasPrefix(n, ".") || !e.IsDir() {
			continue
		}
		sub := filepath.Join(dir, n)
		fi, err := os.Stat(sub)
		if err != nil {
			return fmt.Errorf("mbox source: read directory %s: %w", sub, err)
		}
		if id, ok := dirIDOf(fi); ok {
			if seen[id] {
				s.opts.Warn(fmt.Errorf("mbox source: %s skipped: the same directory was already read (a loop)", sub))
				continue
			}
			seen[id] = true
		}
		if depth+1 > maxTreeDepth {
			s.opts.Warn(fmt.Errorf("mbox source: %s skipped: deeper than %d levels", sub, maxTreeDepth))
			continue
		}
		base, isBundle := appleBundle(n)
		if !isBundle {
			base = strings.TrimSuffix(n, ".sbd")
		}
		name := folderName(prefix, base)
		if isBundle && !isFile(filepath.Join(sub, "mbox")) || !isBundle && !files[base] {
			add(name, name, "", true, nil) // else the file X of "X.sbd", or the bundle's mbox, is listed
		}
		if err := s.walk(ctx, sub, name, depth+1, isBundle, seen, add); err != nil {
			return err
		}
	}
	return nil
}

// CheckMailbox implements migrate.Checker: a folder whose file is not an
// mbox file is skipped before the destination creates it.
func (s *Mbox) CheckMailbox(ctx context.Context, mb migrate.Mailbox) error {
	if f, ok := s.folder(mb.Name); ok && f.notMbox != nil {
		return migrate.SkipMessage(fmt.Errorf("mbox source: %w", f.notMbox))
	}
	return nil
}

func (s *Mbox) folder(name string) (*mboxFolder, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f, ok := s.folders[name]
	return f, ok
}

// List implements migrate.Source: one sequential pass over the file.
// Messages with a Bad problem (junk, NUL bytes, truncation) are listed
// with an ID "bad-OFFSET" and Fetch skips them with the problem as reason;
// other problems go to MboxOptions.Warn.
func (s *Mbox) List(ctx context.Context, mb migrate.Mailbox, fn func(migrate.Message) error) error {
	f, ok := s.folder(mb.Name)
	if !ok {
		return migrate.SkipMessage(fmt.Errorf("mbox folder %q not found under %s", mb.Name, s.root))
	}
	if f.notMbox != nil {
		return migrate.SkipMessage(fmt.Errorf("mbox source: %w", f.notMbox))
	}
	fh, err := os.Open(f.path)
	if err != nil {
		return migrate.SkipMessage(fmt.Errorf("open mbox %s: %w", f.path, err))
	}
	defer fh.Close()
	fi, err := fh.Stat()
	if err != nil {
		return migrate.SkipMessage(fmt.Errorf("stat mbox %s: %w", f.path, err))
	}
	r := mbox.NewReader(fh, fi.Size(), f.path, mbox.Options{Format: s.opts.Format, Location: s.opts.Location})
	seen := map[string]int{}
	bad := map[string]error{}
	first := true
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		m, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return migrate.SkipMessage(err)
		}
		if first {
			// The layout is known once the first message is read; Fetch
			// may run before List returns.
			first = false
			s.mu.Lock()
			f.listed, f.eol = true, r.Layout().EOL
			f.bad = bad
			s.mu.Unlock()
		}
		if m.FolderData && m.Err() == nil {
			s.opts.Info(fmt.Sprintf("mbox %s: the first message is Pine's folder internal data (%q), not mail: not copied", f.path, "DON'T DELETE THIS MESSAGE -- FOLDER INTERNAL DATA"))
			continue
		}
		msg := migrate.Message{
			Mailbox: mb.Name, Size: m.Size, Flags: m.Flags, Date: m.Date, Expunged: m.Expunged,
			Loc: strconv.FormatInt(m.Start, 10) + ":" + strconv.FormatInt(m.Len, 10) + ":" + locFormats[m.Layout.Format],
		}
		if msg.Date.IsZero() || (m.WrittenDate && !m.HeaderDate.IsZero()) {
			// No From_ date, or Thunderbird's: the day it wrote the
			// message into this file (an archived message's is the day it
			// was archived). The header's Received:, else Date:, as a
			// POP3 message is dated.
			if !msg.Date.IsZero() {
				msg.PriorDate = msg.Date // what mailhaul before 2026-12 dated it by
			}
			msg.Date = m.HeaderDate
		}
		if perr := m.Err(); perr != nil {
			msg.ID = "bad-" + strconv.FormatInt(m.Offset, 10)
			s.mu.Lock()
			bad[msg.ID] = perr
			s.mu.Unlock()
		} else {
			for _, p := range m.Problems {
				s.opts.Warn(p)
			}
			base := hex.EncodeToString(m.Sum[:16])
			if m.Expunged {
				base += "-del"
			}
			n := seen[base]
			seen[base] = n + 1
			msg.ID = base
			if n > 0 {
				msg.ID += "-" + strconv.Itoa(n)
			}
		}
		if err := fn(msg); err != nil {
			return err
		}
	}
	st := r.Stats()
	s.opts.Info(fmt.Sprintf("mbox %s: %s", f.path, st))
	if st.Doubtful > 0 {
		s.opts.Warn(fmt.Errorf("mbox %s: %d message(s) (the first at offset %d) hold >>From lines, which mboxo keeps and mboxrd unquotes to >From, and nothing tells which program wrote them: copied as written; if this file is mboxrd, copy it with --mbox-format mboxrd (before the first run: the choice changes those messages' identity)", f.path, st.Doubtful, st.FirstDoubtful))
	}
	return nil
}

// Fetch implements migrate.Source. It may be called from several
// goroutines: each call opens the file itself. Errors of the file (gone,
// changed since List, unreadable) skip the message; errors of w are
// returned unchanged.
func (s *Mbox) Fetch(ctx context.Context, msg migrate.Message, w io.Writer) error {
	f, ok := s.folder(msg.Mailbox)
	if !ok {
		return migrate.SkipMessage(fmt.Errorf("mbox folder %q not listed", msg.Mailbox))
	}
	s.mu.Lock()
	perr := f.bad[msg.ID]
	listed, eol := f.listed, f.eol
	s.mu.Unlock()
	if perr != nil {
		return migrate.SkipMessage(perr)
	}
	parts := strings.Split(msg.Loc, ":")
	var start, length int64
	var err1, err2 error
	format, ok := mbox.Auto, false
	if len(parts) == 3 {
		start, err1 = strconv.ParseInt(parts[0], 10, 64)
		length, err2 = strconv.ParseInt(parts[1], 10, 64)
		format, ok = parseLocFormat(parts[2])
	}
	if !ok || err1 != nil || err2 != nil || start < 0 || length < 0 {
		return migrate.SkipMessage(fmt.Errorf("mbox %s: bad locator %q for message %s", f.path, msg.Loc, msg.ID))
	}
	if !listed {
		return migrate.SkipMessage(fmt.Errorf("mbox %s: folder %q not listed yet", f.path, msg.Mailbox))
	}
	layout := mbox.Layout{Format: format, EOL: eol}
	fh, err := os.Open(f.path)
	if err != nil {
		return migrate.SkipMessage(fmt.Errorf("open mbox %s: %w", f.path, err))
	}
	defer fh.Close()
	_, sum, err := mbox.Copy(w, fh, f.path, start, length, layout)
	if err != nil {
		var we *mbox.WriteError
		if errors.As(err, &we) {
			return we.Err
		}
		return migrate.SkipMessage(fmt.Errorf("read message %s at offset %d: %w", msg.ID, start, err))
	}
	want, _, _ := strings.Cut(msg.ID, "-")
	if got := hex.EncodeToString(sum[:16]); got != want {
		return migrate.SkipMessage(fmt.Errorf("mbox %s: offset %d: the file changed since it was listed (content hash %s, expected %s); run again to pick up the new contents", f.path, start, got, want))
	}
	return nil
}

// Limits implements migrate.Source: one sequential reader per file.
func (s *Mbox) Limits() migrate.Limits { return migrate.Limits{Connections: 1} }

// Close implements migrate.Source.
func (s *Mbox) Close() error { return nil }

var (
	_ migrate.Source  = (*Mbox)(nil)
	_ migrate.Checker = (*Mbox)(nil)
)
