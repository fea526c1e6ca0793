// Package maildir holds what mailhaul's Maildir source and sink share:
// folder layout (Maildir++ and nested), folder-name encoding, the ":2,"
// info suffix and Dovecot's keyword file.
//
// Why not github.com/emersion/go-maildir: its Walk/Messages read only cur/,
// its Unseen() moves messages from new/ to cur/ (a Source must never change
// the store it reads), its Create never fsyncs, and it picks random unique
// names, while crash recovery needs names derived from the copy's identity
// so a copy written by a killed run can be found again. It also knows
// nothing of Maildir++ folder names or dovecot-keywords. The pieces needed
// here are small; they are written for these contracts.
package maildir

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/emersion/go-imap/utf7"

	"github.com/mailhaul/mailhaul/migrate"
)

// Layout is how folders are laid out under a Maildir root.
type Layout int

const (
	// PlusPlus is Maildir++ (Dovecot, Courier): the root is INBOX,
	// folders are root/.A.B with names in modified UTF-7.
	PlusPlus Layout = iota
	// Nested is a plain tree: root/A/B, each a maildir, names in UTF-8
	// (mutt, Dovecot LAYOUT=fs).
	Nested
)

func (l Layout) String() string {
	if l == Nested {
		return "fs"
	}
	return "maildir++"
}

// ParseLayout parses "maildir++" or "fs".
func ParseLayout(s string) (Layout, error) {
	switch strings.ToLower(s) {
	case "", "maildir++", "maildirplusplus", "plusplus":
		return PlusPlus, nil
	case "fs", "nested":
		return Nested, nil
	}
	return 0, fmt.Errorf("unknown maildir layout %q (want maildir++ or fs)", s)
}

// KeywordsFile is the name of Dovecot's keyword table in each folder.
const KeywordsFile = "dovecot-keywords"

// Folder is one maildir folder on disk.
type Folder struct {
	Name string // "/"-separated UTF-8; "INBOX" for the root
	Dir  string
}

// isDir reports whether p is a directory (following a symbolic link).
func isDir(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
}

// IsMaildir reports whether dir is a maildir folder: it has a cur/ or a
// new/ directory. One of them is enough (git, and archives made with it,
// drop empty directories, so a copied Maildir often lacks new/ or tmp/);
// a cur/ or new/ that is itself a maildir is a subfolder of that name in
// a nested tree, not dir's own.
func IsMaildir(dir string) bool {
	for _, sub := range []string{"cur", "new"} {
		if p := filepath.Join(dir, sub); isDir(p) && !hasMailDirs(p) {
			return true
		}
	}
	return false
}

// hasMailDirs reports whether dir has a cur/ or new/ directory.
func hasMailDirs(dir string) bool {
	return isDir(filepath.Join(dir, "cur")) || isDir(filepath.Join(dir, "new"))
}

// isOwnSubdir reports whether the entry n of dir is dir's own cur/, new/
// or tmp/ (and not a subfolder of that name).
func isOwnSubdir(dir, n string) bool {
	if n != "cur" && n != "new" && n != "tmp" {
		return false
	}
	return !hasMailDirs(filepath.Join(dir, n))
}

// MaxDepth bounds how deep a walk of a nested tree descends.
const MaxDepth = 64

// dirID identifies a directory by device and inode.
type dirID struct{ dev, ino uint64 }

// visited is the set of directories a walk has read, so that each is read
// once whatever the number of paths to it (symbolic links, loops).
type visited map[dirID]string

// enter records dir (reached as folder name) and reports whether it is
// new; else it returns the name it was first reached as.
func (v visited) enter(dir, name string) (first string, ok bool) {
	fi, err := os.Stat(dir)
	if err != nil {
		return "", true // reading it will report the error
	}
	st, isUnix := fi.Sys().(*syscall.Stat_t)
	if !isUnix {
		return "", true
	}
	id := dirID{uint64(st.Dev), uint64(st.Ino)}
	if f, seen := v[id]; seen {
		return f, false
	}
	v[id] = name
	return "", true
}

// Detect guesses the layout of root: Maildir++ if any ".X" subdirectory is
// a maildir, Nested if any other subdirectory holds a maildir (at most
// MaxDepth levels down), Maildir++ otherwise.
func Detect(root string) (Layout, error) {
	ents, err := os.ReadDir(root)
	if err != nil {
		return PlusPlus, err
	}
	nested := false
	seen := visited{}
	seen.enter(root, "INBOX")
	for _, e := range ents {
		n := e.Name()
		if !isDirEntry(root, e) || isOwnSubdir(root, n) {
			continue
		}
		if strings.HasPrefix(n, ".") && n != "." && n != ".." && IsMaildir(filepath.Join(root, n)) {
			return PlusPlus, nil
		}
		if !nested && !strings.HasPrefix(n, ".") && containsMaildir(filepath.Join(root, n), MaxDepth, seen) {
			nested = true
		}
	}
	if nested {
		return Nested, nil
	}
	return PlusPlus, nil
}

func isDirEntry(parent string, e fs.DirEntry) bool {
	if e.IsDir() {
		return true
	}
	if e.Type()&fs.ModeSymlink != 0 {
		return isDir(filepath.Join(parent, e.Name()))
	}
	return false
}

// containsMaildir reports whether dir or a directory below it (at most
// depth levels, each directory once) is a maildir.
func containsMaildir(dir string, depth int, seen visited) bool {
	if _, ok := seen.enter(dir, dir); !ok {
		return false
	}
	if IsMaildir(dir) {
		return true
	}
	if depth == 0 {
		return false
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return false
	}
	for _, e := range ents {
		if isDirEntry(dir, e) && !strings.HasPrefix(e.Name(), ".") && containsMaildir(filepath.Join(dir, e.Name()), depth-1, seen) {
			return true
		}
	}
	return false
}

// Folders is Walk without cancellation or warnings.
func Folders(root string, layout Layout) (folders []Folder, noSelect []string, err error) {
	return Walk(context.Background(), root, layout, nil)
}

// Walk lists the folders under root, INBOX first and parents before
// children. In the nested layout, directories that are not maildirs but
// hold maildirs below them are returned in noSelect (structure only).
//
// Symbolic links to folder directories are followed (a folder kept on
// another disk), but every directory is read once, identified by device
// and inode: a second path to a directory already listed (a symbolic link
// to a parent, which would loop, or a second link to one folder) is
// skipped and reported to warn (which may be nil). A nested tree is read
// at most MaxDepth levels deep (deeper directories are reported and
// skipped). Walk stops with ctx's error when ctx is cancelled.
func Walk(ctx context.Context, root string, layout Layout, warn func(error)) (folders []Folder, noSelect []string, err error) {
	if warn == nil {
		warn = func(error) {}
	}
	seen := visited{}
	seen.enter(root, "INBOX")
	if IsMaildir(root) {
		folders = append(folders, Folder{Name: "INBOX", Dir: root})
	}
	switch layout {
	case PlusPlus:
		ents, err := os.ReadDir(root)
		if err != nil {
			return nil, nil, fmt.Errorf("read maildir %s: %w", root, err)
		}
		for _, e := range ents {
			if err := ctx.Err(); err != nil {
				return nil, nil, err
			}
			n := e.Name()
			if !strings.HasPrefix(n, ".") || n == "." || n == ".." || !isDirEntry(root, e) {
				continue
			}
			dir := filepath.Join(root, n)
			if !IsMaildir(dir) {
				continue
			}
			name, err := DecodePlusPlus(n)
			if err != nil {
				return nil, nil, fmt.Errorf("folder %s: %w", dir, err)
			}
			if first, ok := seen.enter(dir, name); !ok {
				warn(fmt.Errorf("maildir %s: skipped: the same directory as folder %q (a symbolic link)", dir, first))
				continue
			}
			folders = append(folders, Folder{Name: name, Dir: dir})
		}
	case Nested:
		w := &nestedWalk{ctx: ctx, seen: seen, warn: warn, taken: map[string]int{}}
		for _, f := range folders {
			w.taken[f.Name] = selectable
		}
		if _, err := w.walk(root, "", 0); err != nil {
			return nil, nil, err
		}
		folders = append(folders, w.folders...)
		noSelect = w.noSelect
	}
	folders = uniqueFolders(folders, warn) // Maildir++ (nested names are unique already)
	sort.Slice(folders, func(i, j int) bool { return migrate.MailboxLess(folders[i].Name, folders[j].Name) })
	return folders, noSelect, nil
}

// uniqueFolders gives each Maildir++ folder a name of its own, in the
// order they were found (the root first): a later directory whose name is
// taken — ".INBOX" beside the root, two names that decode alike — is
// named after its directory as it is on disk, and warn says so. Each is
// then read once; without it one would be read twice and the other never.
// (Maildir++ names are flat: a child's name does not hang on its
// parent's. The nested walk names folders as it goes: see claim.)
func uniqueFolders(folders []Folder, warn func(error)) []Folder {
	taken := make(map[string]bool, len(folders))
	for i, f := range folders {
		if taken[f.Name] {
			n := migrate.UniqueName(f.Name, filepath.Base(f.Dir), func(x string) bool { return taken[x] })
			warn(fmt.Errorf("maildir %s: read as folder %q, since folder %q is another directory (if an earlier run read this one as %[3]q, run with --dedupe once, or its messages are copied again)", f.Dir, n, f.Name))
			folders[i].Name = n
		}
		taken[folders[i].Name] = true
	}
	return folders
}

type nestedWalk struct {
	ctx      context.Context
	seen     visited
	warn     func(error)
	folders  []Folder
	noSelect []string
	taken    map[string]int // names given: selectable or structureOnly
}

// What a name given by the nested walk stands for.
const (
	selectable    = 1 // a maildir
	structureOnly = 2 // a directory that only holds maildirs below it
)

// claim lists the maildir at dir as folder want, unless another maildir
// has that name (a nested "inbox/" or "Inbox/" beside a root that is
// INBOX, then their children "INBOX/Work"; "X/Y" and KMail's
// ".X.directory/Y"; two names that decode alike): it is then named alt —
// its name on disk under its parent — or alt " (2)"..., and warn says so.
// A structure-only name of the same name becomes this maildir. The walk
// goes on below dir under want: the children of every inbox are INBOX's,
// where a destination merges the inboxes themselves.
func (w *nestedWalk) claim(want, alt, dir string) {
	name := want
	switch w.taken[want] {
	case selectable:
		name = migrate.UniqueName(want, alt, func(x string) bool { return w.taken[x] != 0 })
		w.warn(fmt.Errorf("maildir %s: read as folder %q, since folder %q is another directory (if an earlier run read this one as %[3]q, run with --dedupe once, or its messages are copied again)", dir, name, want))
	case structureOnly:
		w.noSelect = slices.DeleteFunc(w.noSelect, func(n string) bool { return n == want })
	}
	w.taken[name] = selectable
	w.folders = append(w.folders, Folder{Name: name, Dir: dir})
}

// structure records name as structure only, listed before its children
// (at: where w.noSelect ended before they were walked), unless the name
// is given already (a maildir of that name: the children are its).
func (w *nestedWalk) structure(name string, at int) {
	if w.taken[name] != 0 {
		return
	}
	w.taken[name] = structureOnly
	w.noSelect = append(w.noSelect[:at], append([]string{name}, w.noSelect[at:]...)...)
}

// walk lists the folders below dir (folder name prefix) and reports
// whether it found any.
func (w *nestedWalk) walk(dir, prefix string, depth int) (bool, error) {
	if err := w.ctx.Err(); err != nil {
		return false, err
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return false, fmt.Errorf("read maildir folder %s: %w", dir, err)
	}
	under := func(n string) string { // the name of n, as written on disk, under prefix
		if depth > 0 {
			return prefix + "/" + n
		}
		return n
	}
	nameOf := func(n string) string {
		if depth == 0 && strings.EqualFold(n, "INBOX") && IsMaildir(filepath.Join(dir, n)) {
			return "INBOX"
		}
		return under(DecodeNested(n))
	}
	found := false
	for _, e := range ents {
		if err := w.ctx.Err(); err != nil {
			return false, err
		}
		n := e.Name()
		if parent, ok := kmailSubfolders(n); ok && isDirEntry(dir, e) {
			below, err := w.kmail(filepath.Join(dir, n), nameOf(parent), depth)
			if err != nil {
				return false, err
			}
			found = found || below
			continue
		}
		if strings.HasPrefix(n, ".") || !isDirEntry(dir, e) || isOwnSubdir(dir, n) {
			continue
		}
		sub := filepath.Join(dir, n)
		name := nameOf(n)
		if first, ok := w.seen.enter(sub, name); !ok {
			w.warn(fmt.Errorf("maildir %s: skipped: the same directory as folder %q (a symbolic link loop or a second link)", sub, first))
			continue
		}
		if depth+1 > MaxDepth {
			w.warn(fmt.Errorf("maildir %s: skipped: deeper than %d levels", sub, MaxDepth))
			continue
		}
		isMail := IsMaildir(sub)
		if isMail {
			w.claim(name, under(n), sub)
		}
		at := len(w.noSelect)
		below, err := w.walk(sub, name, depth+1)
		if err != nil {
			return false, err
		}
		if !isMail && below {
			w.structure(name, at)
		}
		found = found || isMail || below
	}
	return found, nil
}

// kmailSubfolders reports whether directory name n is where KMail keeps
// the subfolders of folder parent (".parent.directory", beside the
// maildir "parent").
func kmailSubfolders(n string) (parent string, ok bool) {
	if !strings.HasPrefix(n, ".") || !strings.HasSuffix(n, ".directory") || len(n) <= len("..directory") {
		return "", false
	}
	return n[1 : len(n)-len(".directory")], true
}

// kmail walks dir, KMail's ".X.directory" of folder name, and reports
// whether it found any: its maildirs are name's subfolders. A name that
// is no maildir is structure only (noSelect), once.
func (w *nestedWalk) kmail(dir, name string, depth int) (bool, error) {
	if first, ok := w.seen.enter(dir, name+" (subfolders)"); !ok {
		w.warn(fmt.Errorf("maildir %s: skipped: the same directory as %q (a symbolic link loop or a second link)", dir, first))
		return false, nil
	}
	if depth+1 > MaxDepth {
		w.warn(fmt.Errorf("maildir %s: skipped: deeper than %d levels", dir, MaxDepth))
		return false, nil
	}
	at := len(w.noSelect)
	below, err := w.walk(dir, name, depth+1)
	if err != nil {
		return false, err
	}
	if below {
		w.structure(name, at)
	}
	return below, nil
}

// # Folder names on disk
//
// Folder names come from sources mailhaul does not control (an IMAP server
// may list "../../etc"), so every component of a "/"-separated name is
// escaped before it becomes part of a path, the same way in both layouts,
// and the mapping is one to one: two different names never share a
// directory, and no name reaches outside the root.
//
// The escape character is '~'; an escaped byte is "~XX" (two upper-case
// hex digits). Escaped are: '~' itself; control bytes (NUL included) and
// DEL; bytes that are not valid UTF-8 (so "Caf\xe8" and "Caf\xe9" stay
// apart); '.' in Maildir++ (the hierarchy separator) and a leading '.' in
// the fs layout (".", "..", hidden directories). An empty component is
// "~". In the fs layout a component named cur, new or tmp (any case) has
// its first letter escaped ("~63ur"), so that it cannot land in a
// maildir's own directories. Maildir++ names are then written in modified
// UTF-7, as Dovecot does. A directory name longer than 255 bytes keeps its
// first part and ends in "~~" and 16 hex digits of the SHA-256 of the full
// name (a Maildir++ subfolder whose parent's name leaves no room is "."
// and that tag alone); such a name cannot be decoded back.
//
// Readers decode "~XX" and "~" (DecodePlusPlus, DecodeNested). Earlier
// versions of mailhaul wrote '.' in Maildir++ names as '_'; such
// directories are read with their '_'.

// escChar is the escape character of folder name components on disk.
const escChar = '~'

// maxNameLen is the longest directory name most file systems take.
const maxNameLen = 255

// escapeComponent escapes one name component for layout l (see "Folder
// names on disk").
func escapeComponent(c string, l Layout) string {
	if c == "" {
		return string(escChar)
	}
	var b strings.Builder
	esc := func(x byte) { fmt.Fprintf(&b, "%c%02X", escChar, x) }
	for i := 0; i < len(c); {
		r, size := utf8.DecodeRuneInString(c[i:])
		x := c[i]
		switch {
		case r == utf8.RuneError && size <= 1:
			esc(x)
		case x == escChar || x < 0x20 || x == 0x7f:
			esc(x)
		case x == '.' && (l == PlusPlus || i == 0):
			esc(x)
		case i == 0 && l == Nested && isReserved(c):
			esc(x)
		default:
			b.WriteString(c[i : i+size])
		}
		i += size
	}
	return b.String()
}

// isReserved reports whether c would collide with a maildir's own
// directories in the fs layout.
func isReserved(c string) bool {
	return strings.EqualFold(c, "cur") || strings.EqualFold(c, "new") || strings.EqualFold(c, "tmp")
}

// unescapeComponent undoes escapeComponent (not the shortening).
func unescapeComponent(c string) string {
	if c == string(escChar) {
		return ""
	}
	if strings.IndexByte(c, escChar) < 0 || strings.Contains(c, "~~") {
		return c
	}
	var b strings.Builder
	for i := 0; i < len(c); i++ {
		if c[i] == escChar && i+2 < len(c) && isUpperHex(c[i+1]) && isUpperHex(c[i+2]) {
			v, _ := strconv.ParseUint(c[i+1:i+3], 16, 8)
			b.WriteByte(byte(v))
			i += 2
			continue
		}
		b.WriteByte(c[i])
	}
	return b.String()
}

func isUpperHex(c byte) bool { return c >= '0' && c <= '9' || c >= 'A' && c <= 'F' }

// shorten returns prefix+encode(c) if it fits maxNameLen bytes. Else it
// keeps the longest prefix of c (cut at a rune, never inside "~XX") whose
// encoded form fits with a tag, "~~" and 16 hex digits of the SHA-256 of
// the full name, appended. prefix is kept whole (a Maildir++ parent's
// name and the separator); when it alone leaves no room, the result is
// lead and the tag (the hierarchy cannot be kept).
func shorten(lead, prefix, c string, encode func(string) string) string {
	full := prefix + encode(c)
	if len(full) <= maxNameLen {
		return full
	}
	sum := sha256.Sum256([]byte(full))
	tag := "~~" + hex.EncodeToString(sum[:8])
	if len(prefix)+len(tag) > maxNameLen {
		return lead + tag
	}
	var cuts []int // rune and escape boundaries of c
	for i := 0; i < len(c); {
		n := 1
		if c[i] == escChar && i+2 < len(c) {
			n = 3
		} else {
			_, n = utf8.DecodeRuneInString(c[i:])
		}
		i += n
		cuts = append(cuts, i)
	}
	best := prefix + tag
	for _, cut := range cuts {
		cand := prefix + encode(c[:cut]) + tag
		if len(cand) > maxNameLen {
			break
		}
		best = cand
	}
	return best
}

func identity(s string) string { return s }

func encodeUTF7(s string) string {
	e, err := utf7.Encoding.NewEncoder().String(s)
	if err != nil {
		return s // cannot happen: escaped names are valid UTF-8
	}
	return e
}

// DecodePlusPlus turns a Maildir++ directory name (".A.B", modified UTF-7,
// escaped as described in "Folder names on disk") into a "/" folder name.
func DecodePlusPlus(dir string) (string, error) {
	segs := strings.Split(strings.TrimPrefix(dir, "."), ".")
	for i, s := range segs {
		d, err := utf7.Encoding.NewDecoder().String(s)
		if err != nil {
			// Not valid modified UTF-7: keep the raw name rather than fail.
			d = s
		}
		segs[i] = unescapeComponent(d)
	}
	return strings.Join(segs, "/"), nil
}

// DecodeNested turns a directory name of the fs layout into a folder name
// component.
func DecodeNested(dir string) string { return unescapeComponent(dir) }

// EncodePlusPlus turns a "/" folder name into a Maildir++ directory name
// (".A.B"), escaped as described in "Folder names on disk".
func EncodePlusPlus(name string) string {
	dir := ""
	for _, seg := range strings.Split(name, "/") {
		dir = shorten(".", dir+".", escapeComponent(seg, PlusPlus), encodeUTF7)
	}
	return dir
}

// FolderDir is the directory of folder name under root: root itself for
// INBOX, else a path that is always inside root (see "Folder names on
// disk").
func FolderDir(root string, layout Layout, name string) string {
	if strings.EqualFold(name, "INBOX") {
		return root
	}
	if layout == Nested {
		segs := strings.Split(name, "/")
		for i, s := range segs {
			segs[i] = shorten("", "", escapeComponent(s, Nested), identity)
		}
		return filepath.Join(append([]string{root}, segs...)...)
	}
	return filepath.Join(root, EncodePlusPlus(name))
}

// SplitName splits a maildir file name into its unique part and the info
// letters after ":2,". Files without info (new/) return "".
func SplitName(file string) (base, info string) {
	if i := strings.Index(file, ":2,"); i >= 0 {
		return file[:i], file[i+3:]
	}
	if i := strings.Index(file, ":1,"); i >= 0 {
		return file[:i], ""
	}
	return file, ""
}

// ReceivedDate is the date a message in file base (the name without its
// info part) was received: its mtime, as Dovecot and mutt keep it —
// unless the time the name starts with (the delivery's, Unix seconds:
// "1700000000.M1P2.host") is more than a day earlier. A maildir copied
// without keeping mtimes (cp, a USB stick, a backup restored) has every
// mtime set to the day of the copy, while its names still hold the days
// of delivery; no delivery takes a day, so a message whose mtime is the
// delivery's keeps it to the nanosecond (an earlier run's copy of it has
// that date). A name that does not start with a plausible time (after
// 1995, when Maildir was made, and not in the future) leaves the mtime.
func ReceivedDate(base string, mtime time.Time) time.Time {
	if t, ok := DeliveryTime(base); ok && mtime.Sub(t) > 24*time.Hour {
		return t
	}
	return mtime
}

// DeliveryTime is the time a maildir file name starts with — the
// delivery's, Unix seconds ("1700000000.M1P2.host") — if it is a
// plausible one: after 1995, when Maildir was made, and not in the future.
func DeliveryTime(name string) (time.Time, bool) {
	digits, _, ok := strings.Cut(name, ".")
	if !ok || len(digits) < 9 || len(digits) > 10 {
		return time.Time{}, false
	}
	sec, err := strconv.ParseInt(digits, 10, 64)
	if err != nil {
		return time.Time{}, false
	}
	t := time.Unix(sec, 0)
	if t.Before(maildirEpoch) || t.After(time.Now().Add(24*time.Hour)) {
		return time.Time{}, false
	}
	return t, true
}

// maildirEpoch: no maildir file was delivered before Maildir existed.
var maildirEpoch = time.Date(1995, 1, 1, 0, 0, 0, 0, time.UTC)

var letterFlags = map[byte]string{
	'P': Forwarded, 'R': `\Answered`, 'S': `\Seen`, 'T': `\Deleted`, 'D': `\Draft`, 'F': `\Flagged`,
}

// Forwarded is the IMAP keyword for a forwarded message (RFC 5788). In a
// Maildir it is the info letter 'P' ("passed", what mutt reads) and also
// the keyword "$Forwarded" in dovecot-keywords (Dovecot does not map 'P'
// to any flag, but shows keywords): InfoFromFlags writes both, and
// FlagsFromInfo reads either.
const Forwarded = "$Forwarded"

// FlagsFromInfo converts info letters to IMAP flags; lowercase letters are
// looked up in kw (Dovecot keywords). A flag is returned once, however
// many letters stand for it ('P' and the keyword $Forwarded).
func FlagsFromInfo(info string, kw *Keywords) []string {
	var flags []string
	add := func(f string) {
		for _, g := range flags {
			if strings.EqualFold(g, f) {
				return
			}
		}
		flags = append(flags, f)
	}
	for i := 0; i < len(info); i++ {
		c := info[i]
		if f, ok := letterFlags[c]; ok {
			add(f)
		} else if c >= 'a' && c <= 'z' && kw != nil {
			if name := kw.Name(int(c - 'a')); name != "" {
				if strings.EqualFold(name, Forwarded) {
					name = Forwarded
				}
				add(name)
			}
		}
	}
	return flags
}

// InfoFromFlags converts IMAP flags to sorted info letters, assigning
// keyword letters through kw (which may grow). $Forwarded becomes 'P' and,
// when kw has room, its keyword letter too. Keywords beyond the 26
// letters are returned in dropped. \Recent is never stored.
func InfoFromFlags(flags []string, kw *Keywords) (info string, dropped []string) {
	var letters []byte
	for _, f := range flags {
		if strings.EqualFold(f, Forwarded) {
			letters = append(letters, 'P')
			if kw != nil {
				if idx := kw.Index(Forwarded); idx >= 0 {
					letters = append(letters, byte('a'+idx))
				}
			}
			continue
		}
		found := false
		for c, name := range letterFlags {
			if strings.EqualFold(f, name) {
				letters = append(letters, c)
				found = true
				break
			}
		}
		if found || strings.HasPrefix(f, `\`) {
			continue
		}
		if kw == nil {
			dropped = append(dropped, f)
			continue
		}
		idx := kw.Index(f)
		if idx < 0 {
			dropped = append(dropped, f)
			continue
		}
		letters = append(letters, byte('a'+idx))
	}
	sort.Slice(letters, func(i, j int) bool { return letters[i] < letters[j] })
	out := letters[:0]
	for i, c := range letters {
		if i == 0 || c != letters[i-1] {
			out = append(out, c)
		}
	}
	return string(out), dropped
}

// Keywords is a folder's dovecot-keywords table: index (0-25) -> keyword.
type Keywords struct {
	names [26]string
	dirty bool
}

// ReadKeywords reads dir/dovecot-keywords; a missing file is an empty table.
func ReadKeywords(dir string) (*Keywords, error) {
	kw := &Keywords{}
	f, err := os.Open(filepath.Join(dir, KeywordsFile))
	if errors.Is(err, os.ErrNotExist) {
		return kw, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		idxs, name, ok := strings.Cut(strings.TrimSpace(sc.Text()), " ")
		if !ok {
			continue
		}
		idx, err := strconv.Atoi(idxs)
		if err != nil || idx < 0 || idx >= len(kw.names) {
			continue
		}
		kw.names[idx] = strings.TrimSpace(name)
	}
	return kw, sc.Err()
}

// Name returns the keyword at idx, or "".
func (k *Keywords) Name(idx int) string {
	if idx < 0 || idx >= len(k.names) {
		return ""
	}
	return k.names[idx]
}

// Index returns the index of keyword name, adding it if there is room;
// -1 if the table is full.
func (k *Keywords) Index(name string) int {
	free := -1
	for i, n := range k.names {
		if n == name {
			return i
		}
		if n == "" && free < 0 {
			free = i
		}
	}
	if free >= 0 {
		k.names[free] = name
		k.dirty = true
	}
	return free
}

// Dirty reports whether Index added a keyword since the last Write.
func (k *Keywords) Dirty() bool { return k.dirty }

// Write stores the table in dir atomically (temp file, fsync, rename).
func (k *Keywords) Write(dir string) error {
	var b strings.Builder
	for i, n := range k.names {
		if n != "" {
			fmt.Fprintf(&b, "%d %s\n", i, n)
		}
	}
	tmp := filepath.Join(dir, KeywordsFile+".mailhaul-tmp")
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(b.String()); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(dir, KeywordsFile)); err != nil {
		return err
	}
	k.dirty = false
	return nil
}
