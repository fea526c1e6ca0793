package sinks_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/emersion/go-imap/v2"

	"github.com/mailhaul/mailhaul/internal/maildir"
	"github.com/mailhaul/mailhaul/internal/testserver"
	"github.com/mailhaul/mailhaul/migrate"
	"github.com/mailhaul/mailhaul/sinks"
)

// TestNoSelectParentsStayStructural: a source folder that is only
// structure (a Courier "\Noselect" parent) is not created as a real,
// empty folder: its children are, and the destination keeps the parent
// as structure (Dovecot: not selectable; Maildir: no cur/ of its own).
func TestNoSelectParentsStayStructural(t *testing.T) {
	ctx := context.Background()
	parent := migrate.Mailbox{Name: "Projects", NoSelect: true}
	child := migrate.Mailbox{Name: "Projects/2024"}

	t.Run("imap", func(t *testing.T) {
		d := testserver.StartDovecot(t)
		s, err := sinks.OpenIMAP(ctx, cfgFor(t, d, "alice"), 1, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		prepareAll(t, s, parent, child)
		c := client(t, d, "alice")
		if _, err := c.Select("Projects/2024", nil).Wait(); err != nil {
			t.Fatalf("the child folder was not created: %v", err)
		}
		list, err := c.List("", "Projects", nil).Collect()
		if err != nil {
			t.Fatal(err)
		}
		if len(list) != 1 {
			t.Fatalf("LIST Projects: %d answers, want the parent: %v", len(list), list)
		}
		for _, l := range list {
			for _, a := range l.Attrs {
				if a == imap.MailboxAttrNoSelect || a == imap.MailboxAttrNonExistent {
					return
				}
			}
			t.Errorf("the parent is a real folder: %v", l.Attrs)
		}
	})
	for _, layout := range []maildir.Layout{maildir.PlusPlus, maildir.Nested} {
		t.Run("maildir-"+layout.String(), func(t *testing.T) {
			root := t.TempDir()
			s, err := sinks.OpenMaildir(root, layout)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			prepareAll(t, s, parent, child)
			var parentDir, childDir string
			if layout == maildir.Nested {
				parentDir, childDir = filepath.Join(root, "Projects"), filepath.Join(root, "Projects", "2024")
			} else {
				parentDir, childDir = filepath.Join(root, ".Projects"), filepath.Join(root, ".Projects.2024")
			}
			if _, err := os.Stat(filepath.Join(childDir, "cur")); err != nil {
				t.Errorf("the child folder was not created: %v", err)
			}
			if _, err := os.Stat(filepath.Join(parentDir, "cur")); err == nil {
				t.Errorf("the parent was made a real folder (%s/cur exists)", parentDir)
			}
		})
	}
}

// prepareAll prepares each of mbs under its own name, in order.
func prepareAll(t *testing.T, s migrate.Sink, mbs ...migrate.Mailbox) {
	t.Helper()
	for _, mb := range mbs {
		if _, err := s.Prepare(context.Background(), mb, mb.Name); err != nil {
			t.Fatalf("prepare %s: %v", mb.Name, err)
		}
	}
}
