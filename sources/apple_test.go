package sources

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/mailhaul/mailhaul/migrate"
)

// appleExport writes mailboxes as Apple Mail exports them: a bundle
// "Name.mbox" holding the mail in "mbox" beside Info.plist and
// table_of_contents, children as bundles inside; Work has no mail of its
// own.
func appleExport(t *testing.T) string {
	t.Helper()
	root := filepath.Join(t.TempDir(), "Mail export")
	for dir, n := range map[string]int{"Inbox.mbox": 3, "Sent Messages.mbox": 2, "Work.mbox": 0, "Work.mbox/Projects.mbox": 1} {
		d := filepath.Join(root, dir)
		os.MkdirAll(d, 0o700)
		os.WriteFile(filepath.Join(d, "Info.plist"), []byte("<?xml version=\"1.0\"?>\n<plist version=\"1.0\"><dict/></plist>\n"), 0o600)
		if n == 0 {
			continue
		}
		os.WriteFile(filepath.Join(d, "table_of_contents"), []byte{0, 1, 2, 3}, 0o600)
		inboxMbox(t, filepath.Join(d, "mbox"), fmt.Sprintf("apple-%d", len(dir)), n)
	}
	return root
}

// TestMboxAppleMailExport: each bundle is one folder named after it
// (Inbox is INBOX, Sent Messages is the Sent folder, Work is structure
// only), Info.plist and table_of_contents are no folders, and everything
// is copied with nothing skipped; a bundle or its mbox file given alone
// is named after the bundle.
func TestMboxAppleMailExport(t *testing.T) {
	root := appleExport(t)
	s, err := OpenMbox(root, MboxOptions{})
	if err != nil {
		t.Fatal(err)
	}
	mbs, err := s.Mailboxes(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, mb := range mbs {
		got = append(got, fmt.Sprintf("%s:%s:%v", mb.Name, mb.SpecialUse, mb.NoSelect))
	}
	if fmt.Sprint(got) != `[INBOX::false Sent Messages:\Sent:false Work::true Work/Projects::false]` {
		t.Errorf("folders %v", got)
	}
	dst, state := t.TempDir(), t.TempDir()
	rep := runCopy(t, s, dst, state, migrate.Options{})
	if rep.Copied != 6 || len(rep.Skipped) != 0 {
		t.Errorf("copied %d, skipped %v; want 6, none", rep.Copied, rep.Skipped)
	}
	for arg, want := range map[string]string{
		filepath.Join(root, "Inbox.mbox"):                         "INBOX",
		filepath.Join(root, "Work.mbox", "Projects.mbox", "mbox"): "Projects",
		filepath.Join(root, "Work.mbox", "Projects.mbox"):         "Projects",
		filepath.Join(root, "Sent Messages.mbox", "mbox"):         "Sent Messages",
	} {
		s, err := OpenMbox(arg, MboxOptions{})
		if err != nil {
			t.Fatal(err)
		}
		mbs, err := s.Mailboxes(t.Context())
		if err != nil || len(mbs) != 1 || mbs[0].Name != want {
			t.Errorf("%s: folders %+v, %v; want one, %q", arg, mbs, err, want)
		}
	}
}
