// Package sources holds mailhaul's Source implementations: Maildir (this
// file), and the other stores in their own files. Every Source follows the
// contract of migrate.Source: it never changes the store it reads, and it
// classifies its errors (migrate.SkipMessage for one bad message,
// migrate.Retryable for transient faults, anything else is fatal).
package sources

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/mailhaul/mailhaul/internal/maildir"
	"github.com/mailhaul/mailhaul/migrate"
)

// Maildir reads a Maildir tree: Maildir++ (Dovecot/Courier ".A.B" folders,
// modified UTF-7 names) or a plain nested tree, auto-detected. Messages in
// new/ and cur/ are read in place; nothing is moved, renamed or touched. A
// folder needs only one of cur/ and new/ (archives kept in git have no
// empty directories). Symbolic links to folders are followed, each
// directory once (see maildir.Walk).
type Maildir struct {
	// Warn, if not nil, receives problems of the walk that do not stop the
	// run (a symbolic link loop, a second link to one folder, a tree
	// deeper than maildir.MaxDepth). Set it before Mailboxes.
	Warn func(error)

	root    string
	layout  maildir.Layout
	folders map[string]string // name -> dir
}

// OpenMaildir opens the Maildir tree at root.
func OpenMaildir(root string) (*Maildir, error) {
	fi, err := os.Stat(root)
	if err != nil {
		return nil, fmt.Errorf("maildir source %s: %w", root, err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("maildir source %s: not a directory", root)
	}
	layout, err := maildir.Detect(root)
	if err != nil {
		return nil, fmt.Errorf("maildir source %s: %w", root, err)
	}
	return &Maildir{root: root, layout: layout, folders: map[string]string{}}, nil
}

// Layout is the detected layout.
func (s *Maildir) Layout() maildir.Layout { return s.layout }

// Mailboxes implements migrate.Source.
func (s *Maildir) Mailboxes(ctx context.Context) ([]migrate.Mailbox, error) {
	folders, noSelect, err := maildir.Walk(ctx, s.root, s.layout, s.Warn)
	if err != nil {
		return nil, err
	}
	if len(folders) == 0 && len(noSelect) == 0 {
		return nil, fmt.Errorf("maildir source %s: no maildir here (no cur/ or new/ in it or in its folders)", s.root)
	}
	var out []migrate.Mailbox
	for _, n := range noSelect {
		out = append(out, migrate.Mailbox{Name: n, NoSelect: true})
		migrate.GuessSpecialUse(&out[len(out)-1])
	}
	for _, f := range folders {
		s.folders[f.Name] = f.Dir
		out = append(out, migrate.Mailbox{Name: f.Name})
		migrate.GuessSpecialUse(&out[len(out)-1])
	}
	migrate.SortMailboxes(out)
	return out, nil
}

// List implements migrate.Source. Messages come in the order they were
// delivered — by the time their names start with (maildir.DeliveryTime),
// then by name, new/ and cur/ together — which an IMAP destination keeps
// as its UID order (a client's "order received"); a folder without one of
// new/ and cur/ lists the other. A file present in both (a client moved
// it while we listed) is listed once.
func (s *Maildir) List(ctx context.Context, mb migrate.Mailbox, fn func(migrate.Message) error) error {
	dir, ok := s.folders[mb.Name]
	if !ok {
		return migrate.SkipMessage(fmt.Errorf("maildir folder %q not found under %s", mb.Name, s.root))
	}
	kw, err := maildir.ReadKeywords(dir)
	if err != nil {
		// Keywords are lost for this folder, not messages: go on.
		kw = &maildir.Keywords{}
	}
	type entry struct {
		sub, name string
		at        int64 // delivery time; math.MaxInt64 when the name has none
	}
	var ents []entry
	for _, sub := range []string{"new", "cur"} {
		subdir := filepath.Join(dir, sub)
		if maildir.IsMaildir(subdir) {
			continue // a subfolder named cur or new, not dir's own
		}
		f, err := os.Open(subdir)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return migrate.SkipMessage(fmt.Errorf("read maildir folder %s: %w", subdir, err))
		}
		names, err := f.Readdirnames(-1)
		f.Close()
		if err != nil {
			return migrate.SkipMessage(fmt.Errorf("read maildir folder %s: %w", subdir, err))
		}
		for _, n := range names {
			if strings.HasPrefix(n, ".") || notMessage[strings.ToLower(n)] {
				continue
			}
			at := int64(math.MaxInt64)
			if t, ok := maildir.DeliveryTime(n); ok {
				at = t.Unix()
			}
			ents = append(ents, entry{sub, n, at})
		}
	}
	sort.Slice(ents, func(i, j int) bool {
		if ents[i].at != ents[j].at {
			return ents[i].at < ents[j].at
		}
		if ents[i].name != ents[j].name {
			return ents[i].name < ents[j].name
		}
		return ents[i].sub == "new" && ents[j].sub == "cur"
	})
	seen := map[string]bool{}
	for _, en := range ents {
		if err := ctx.Err(); err != nil {
			return err
		}
		base, info := maildir.SplitName(en.name)
		if seen[base] {
			continue
		}
		seen[base] = true
		p := filepath.Join(dir, en.sub, en.name)
		m := migrate.Message{Mailbox: mb.Name, ID: base, Loc: p, Size: -1}
		if fi, err := os.Lstat(p); err == nil {
			m.Size = fi.Size()
			m.Date = maildir.ReceivedDate(base, fi.ModTime())
		}
		if en.sub == "cur" {
			m.Flags = maildir.FlagsFromInfo(info, kw)
		}
		if err := fn(m); err != nil {
			return err
		}
	}
	return nil
}

// notMessage lists files that file managers leave in any directory they
// showed (Windows' thumbnail cache and folder settings): in cur/ or new/
// of a maildir copied from such a machine they are no mail, and are not
// listed. (Dot files, macOS's .DS_Store among them, never are.)
var notMessage = map[string]bool{"thumbs.db": true, "desktop.ini": true, "ehthumbs.db": true}

// Fetch implements migrate.Source. If the file was moved or renamed by a
// mail client since List (flags changed, new -> cur), it is found again by
// its unique name.
func (s *Maildir) Fetch(ctx context.Context, msg migrate.Message, w io.Writer) error {
	p := msg.Loc
	fi, err := os.Stat(p)
	if errors.Is(err, os.ErrNotExist) {
		if q := s.relocate(msg); q != "" {
			p = q
			fi, err = os.Stat(p)
		}
	}
	if err != nil {
		if target, lerr := os.Readlink(p); lerr == nil && errors.Is(err, os.ErrNotExist) {
			return migrate.SkipMessage(fmt.Errorf("read %s: a symbolic link to %s, which does not exist", p, target))
		}
		return migrate.SkipMessage(fmt.Errorf("read %s: %w", p, err))
	}
	// Checked before opening: opening a FIFO would block forever.
	if !fi.Mode().IsRegular() {
		return migrate.SkipMessage(fmt.Errorf("read %s: not a regular file (%s)", p, fi.Mode().Type()))
	}
	f, err := os.Open(p)
	if err != nil {
		return migrate.SkipMessage(fmt.Errorf("read %s: %w", p, err))
	}
	defer f.Close()
	// A failing spool (w) is recognised by the engine as fatal; what is
	// left is this file's fault.
	if _, err := io.Copy(w, f); err != nil {
		return migrate.SkipMessage(fmt.Errorf("read %s: %w", p, err))
	}
	return nil
}

func (s *Maildir) relocate(msg migrate.Message) string {
	dir := s.folders[msg.Mailbox]
	for _, sub := range []string{"cur", "new"} {
		matches, _ := filepath.Glob(filepath.Join(dir, sub, globEscape(msg.ID)+"*"))
		for _, m := range matches {
			if b, _ := maildir.SplitName(filepath.Base(m)); b == msg.ID {
				return m
			}
		}
	}
	return ""
}

func globEscape(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `*`, `\*`, `?`, `\?`, `[`, `\[`)
	return r.Replace(s)
}

// Limits implements migrate.Source: local files take any parallelism.
func (s *Maildir) Limits() migrate.Limits { return migrate.Limits{} }

// Close implements migrate.Source.
func (s *Maildir) Close() error { return nil }

var _ migrate.Source = (*Maildir)(nil)
