package sinks_test

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/mailhaul/mailhaul/checkpoint"
	"github.com/mailhaul/mailhaul/internal/maildir"
	"github.com/mailhaul/mailhaul/internal/testserver"
	"github.com/mailhaul/mailhaul/migrate"
	"github.com/mailhaul/mailhaul/sinks"
)

// fakeSource is an in-process source whose folder names and flags the
// test chooses: one message per folder, its body naming the folder.
type fakeSource struct {
	names []string
	flags []string
	msgs  int // messages per folder (default 1)
}

func (f *fakeSource) Mailboxes(ctx context.Context) ([]migrate.Mailbox, error) {
	var out []migrate.Mailbox
	for _, n := range f.names {
		out = append(out, migrate.Mailbox{Name: n})
	}
	return out, nil
}

func (f *fakeSource) List(ctx context.Context, mb migrate.Mailbox, fn func(migrate.Message) error) error {
	for i := 0; i < max(1, f.msgs); i++ {
		if err := fn(migrate.Message{Mailbox: mb.Name, ID: fmt.Sprint(i), Size: -1, Flags: f.flags}); err != nil {
			return err
		}
	}
	return nil
}

func bodyOf(folder, id string) string {
	return fmt.Sprintf("Subject: folder %q\nMessage-ID: <%s.%x@hostile>\n\nmessage %s of %q\n", folder, id, folder, id, folder)
}

func (f *fakeSource) Fetch(ctx context.Context, m migrate.Message, w io.Writer) error {
	_, err := io.WriteString(w, bodyOf(m.Mailbox, m.ID))
	return err
}

func (f *fakeSource) Limits() migrate.Limits { return migrate.Limits{} }
func (f *fakeSource) Close() error           { return nil }

// copyInto runs the engine from src into a Maildir at dst.
func copyInto(t *testing.T, src migrate.Source, dst string, layout maildir.Layout) migrate.Report {
	t.Helper()
	sink, err := sinks.OpenMaildir(dst, layout)
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	cp, err := checkpoint.Open(filepath.Join(t.TempDir(), "cp.db"), "fake:", "maildir:"+dst)
	if err != nil {
		t.Fatal(err)
	}
	defer cp.Close()
	rep, err := migrate.Run(context.Background(), migrate.Options{Source: src, Sink: sink, Checkpoint: cp})
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	return rep
}

// tree lists every path under root (relative), for before/after checks.
func tree(t *testing.T, root string, skip string) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		rel, _ := filepath.Rel(root, p)
		out = append(out, rel)
		if p == skip {
			return filepath.SkipDir
		}
		return nil
	})
	sort.Strings(out)
	return out
}

// hostile are folder names a source controls: traversal, Maildir's own
// directory names, empty and dot components, NUL, names that collide
// after a lossy translation (non-UTF-8 bytes, '.' against '_'), names
// too long for a file system.
var hostile = []string{
	"INBOX", "../../../../tmp/mailhaul-traversal", "..", ".", "a/../../b", "/abs", "a//b", "new", "cur", "tmp",
	"INBOX/new", "Caf\xe8", "Caf\xe9", "a.b", "a_b", "x\x00y", ".hidden", "~", "a~2Eb",
	strings.Repeat("L", 300), "Work/" + strings.Repeat("ü", 150), strings.Repeat("P", 250) + "/" + strings.Repeat("C", 250),
}

// TestMaildirHostileFolderNames proves for both layouts that no folder
// name a source can send writes outside the destination root: the
// destination is base/a/dest, and after the run nothing but dest exists
// in base and base/a. Every folder lands in its own directory (nothing
// merged, nothing in INBOX's cur/new/tmp), reading the tree back gives the
// source's names, and over-long names are shortened instead of failing.
func TestMaildirHostileFolderNames(t *testing.T) {
	for _, layout := range []maildir.Layout{maildir.PlusPlus, maildir.Nested} {
		t.Run(layout.String(), func(t *testing.T) {
			base := t.TempDir()
			dst := filepath.Join(base, "a", "dest")
			os.MkdirAll(filepath.Dir(dst), 0o700)
			_, errBefore := os.Lstat("/tmp/mailhaul-traversal")
			rep := copyInto(t, &fakeSource{names: hostile}, dst, layout)
			if rep.Copied != len(hostile) || len(rep.Skipped) != 0 {
				t.Fatalf("copied %d of %d, skipped %+v", rep.Copied, len(hostile), rep.Skipped)
			}
			if got := tree(t, base, dst); strings.Join(got, ",") != ".,a,a/dest" {
				t.Errorf("files outside the destination: %q", got)
			}
			if _, err := os.Lstat("/tmp/mailhaul-traversal"); err == nil && errBefore != nil {
				t.Errorf("/tmp/mailhaul-traversal created")
			}
			// Read back: one directory per folder, one message each, the
			// source's names.
			folders, _, err := maildir.Walk(context.Background(), dst, layout, nil)
			if err != nil {
				t.Fatal(err)
			}
			found := map[string]bool{}
			for _, f := range folders {
				var files []string
				for _, sub := range []string{"cur", "new"} {
					ents, _ := os.ReadDir(filepath.Join(f.Dir, sub))
					for _, e := range ents {
						files = append(files, filepath.Join(f.Dir, sub, e.Name()))
					}
				}
				if len(files) != 1 {
					t.Errorf("folder %q (%s): %d messages, want 1", f.Name, f.Dir, len(files))
					continue
				}
				b, _ := os.ReadFile(files[0])
				var name string
				if _, err := fmt.Sscanf(string(b), "Subject: folder %q", &name); err != nil {
					t.Errorf("%s: %q", files[0], b)
				}
				found[name] = true
				if name != f.Name && !strings.Contains(f.Dir, "~~") {
					t.Errorf("folder %q read back as %q (%s)", name, f.Name, f.Dir)
				}
				if rel, _ := filepath.Rel(dst, f.Dir); len(filepath.Base(rel)) > 255 {
					t.Errorf("%s: name longer than 255 bytes", f.Dir)
				}
			}
			for _, n := range hostile {
				if !found[n] {
					t.Errorf("folder %q not found in its own directory", n)
				}
			}
		})
	}
}

// TestMaildirFolderCannotBeCreated: a folder whose directory cannot be
// made (here a file is in the way) is skipped with every message counted
// as skipped; the other folders are copied.
func TestMaildirFolderCannotBeCreated(t *testing.T) {
	dst := t.TempDir()
	if err := os.WriteFile(filepath.Join(dst, ".Blocked"), []byte("a file, not a folder"), 0o600); err != nil {
		t.Fatal(err)
	}
	rep := copyInto(t, &fakeSource{names: []string{"INBOX", "Blocked", "Fine"}, msgs: 3}, dst, maildir.PlusPlus)
	if rep.Copied != 6 || len(rep.Skipped) != 3 {
		t.Fatalf("copied %d, skipped %+v", rep.Copied, rep.Skipped)
	}
	for _, sk := range rep.Skipped {
		if sk.Folder != "Blocked" || sk.ID == "" || !strings.Contains(sk.Reason, filepath.Join(dst, ".Blocked")) {
			t.Errorf("skipped %+v", sk)
		}
	}
	for _, f := range rep.Folders {
		if f.Name == "Blocked" && f.Skipped != 3 {
			t.Errorf("folder report %+v", f)
		}
	}
}

// TestMaildirForwardedDovecot serves a Maildir written by the sink with
// Dovecot: a message flagged $Forwarded shows $Forwarded there (Dovecot
// reads the keyword, not mutt's 'P', which is written too).
func TestMaildirForwardedDovecot(t *testing.T) {
	d := testserver.StartDovecot(t)
	root := d.MaildirPath("alice")
	rep := copyInto(t, &fakeSource{names: []string{"INBOX", "Sent"}, flags: []string{`\Seen`, "$Forwarded"}}, root, maildir.PlusPlus)
	if rep.Copied != 2 {
		t.Fatalf("copied %d", rep.Copied)
	}
	files, _ := filepath.Glob(filepath.Join(root, "cur", "*"))
	if len(files) != 1 || !strings.HasSuffix(files[0], ":2,PSa") {
		t.Errorf("INBOX files %v, want info PSa (P and the $Forwarded keyword)", files)
	}
	if err := d.Chown("alice"); err != nil {
		t.Fatal(err)
	}
	got := dump(t, client(t, d, "alice"))
	for _, f := range []string{"INBOX", "Sent"} {
		if len(got[f]) != 1 || got[f][0].flags != `$Forwarded \Seen` {
			t.Errorf("%s as Dovecot serves it: %+v", f, got[f])
		}
	}
}
