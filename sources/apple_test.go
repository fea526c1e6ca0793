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

// TestMboxAppleInboxTwice: two bundles that both read as INBOX, each with
// a child Sub. The second is named after its bundle ("Inbox", which the
// destination merges into INBOX), the children are INBOX's, the second
// Sub is "INBOX/Sub (2)"; a bundle without
// mail that takes the name first yields it to the one with mail. Every
// message is copied, into the destination INBOX and INBOX/Sub.
func TestMboxAppleInboxTwice(t *testing.T) {
	for _, tc := range []struct {
		name  string
		mail  map[string]int
		want  string
		inbox int
	}{
		{"both with mail", map[string]int{"INBOX.mbox": 1, "Inbox.mbox": 2, "INBOX.mbox/Sub.mbox": 3, "Inbox.mbox/Sub.mbox": 4},
			"[INBOX:false INBOX/Sub:false INBOX/Sub (2):false Inbox:false]", 3},
		{"placeholder first", map[string]int{"INBOX.mbox": 0, "Inbox.mbox": 2, "INBOX.mbox/Sub.mbox": 3},
			"[INBOX:false INBOX/Sub:false]", 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			total := 0
			for dir, n := range tc.mail {
				d := filepath.Join(root, dir)
				os.MkdirAll(d, 0o700)
				os.WriteFile(filepath.Join(d, "Info.plist"), []byte("<plist/>\n"), 0o600)
				if n > 0 {
					inboxMbox(t, filepath.Join(d, "mbox"), fmt.Sprintf("b%d", n), n)
				}
				total += n
			}
			s, err := OpenMbox(root, MboxOptions{Warn: func(error) {}})
			if err != nil {
				t.Fatal(err)
			}
			mbs, err := s.Mailboxes(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, mb := range mbs {
				got = append(got, fmt.Sprintf("%s:%v", mb.Name, mb.NoSelect))
			}
			if fmt.Sprint(got) != tc.want {
				t.Errorf("folders %v, want %s", got, tc.want)
			}
			dst, state := t.TempDir(), t.TempDir()
			if rep := runCopy(t, s, dst, state, migrate.Options{}); rep.Copied != total || len(rep.Skipped) != 0 {
				t.Errorf("copied %d, skipped %v; want %d", rep.Copied, rep.Skipped, total)
			}
			if m := readMaildir(t, dst); len(m["INBOX"]) != tc.inbox {
				t.Errorf("destination INBOX holds %d, want %d (folders %v)", len(m["INBOX"]), tc.inbox, len(m))
			}
		})
	}
}
