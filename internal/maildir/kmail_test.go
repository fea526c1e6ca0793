package maildir

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// nestedNames lists the folders of the nested tree at root: their names,
// and the structure-only ones.
func nestedNames(t *testing.T, root string) (names, noSelect []string) {
	t.Helper()
	folders, noSelect, err := Folders(root, Nested)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range folders {
		names = append(names, f.Name)
	}
	return names, noSelect
}

// TestWalkKMail: KMail keeps the subfolders of folder X in ".X.directory"
// beside the maildir X, nested as deep as the user made them; a
// ".X.directory" without a maildir X makes X structure only. Every maildir
// is a folder, under the name KMail shows.
func TestWalkKMail(t *testing.T) {
	root := t.TempDir()
	for _, d := range []string{"inbox", ".inbox.directory/Family", ".inbox.directory/.Family.directory/Kids", "sent-mail",
		".Projects.directory/Alpha", "Trash"} {
		if err := os.MkdirAll(filepath.Join(root, d, "cur"), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if l, err := Detect(root); err != nil || l != Nested {
		t.Fatalf("layout %v, %v; want nested", l, err)
	}
	names, noSelect := nestedNames(t, root)
	if got := fmt.Sprint(names); got != "[INBOX INBOX/Family INBOX/Family/Kids Projects/Alpha Trash sent-mail]" {
		t.Errorf("folders %s", got)
	}
	if fmt.Sprint(noSelect) != "[Projects]" {
		t.Errorf("structure-only folders %v, want [Projects]", noSelect)
	}
}

// TestWalkRenamedKeepsChildren: a maildir that cannot have its name (a
// nested "Inbox/" and "inbox/" beside a root that is INBOX) is named as on
// disk; the children of every inbox — directories inside it, KMail's
// ".X.directory" beside it — are INBOX's (where a destination merges the
// inboxes), a child whose name is taken by another's named as on disk
// under INBOX; a structure-only directory named like the child that
// would once have fallen back to the top stays structure only, once.
func TestWalkRenamedKeepsChildren(t *testing.T) {
	root := t.TempDir()
	for _, d := range []string{"", "Inbox", "Inbox/Work", "inbox", "inbox/Work", ".inbox.directory/Kids", "Work/X"} {
		if err := os.MkdirAll(filepath.Join(root, d, "cur"), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	var warned []string
	folders, noSelect, err := Walk(context.Background(), root, Nested, func(err error) { warned = append(warned, err.Error()) })
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	var names []string
	for _, f := range folders {
		rel, _ := filepath.Rel(root, f.Dir)
		got[f.Name] = rel
		names = append(names, f.Name)
	}
	want := map[string]string{"INBOX": ".", "Inbox": "Inbox", "INBOX/Work": "Inbox/Work", "inbox": "inbox",
		"INBOX/Work (2)": "inbox/Work", "INBOX/Kids": ".inbox.directory/Kids", "Work/X": "Work/X"}
	if fmt.Sprint(got) != fmt.Sprint(want) || len(names) != len(want) {
		t.Errorf("folders %v (%v), want %v", got, names, want)
	}
	if fmt.Sprint(noSelect) != "[Work]" {
		t.Errorf("structure-only folders %v, want [Work]", noSelect)
	}
	if len(warned) != 3 || !strings.Contains(warned[2], `inbox/Work: read as folder "INBOX/Work (2)", since folder "INBOX/Work" is another directory`) {
		t.Errorf("warnings %q, want one for each renamed folder", warned)
	}
}

// TestWalkStructureThenMaildir: two directories whose names decode alike
// are one folder: a structure-only one found first becomes the maildir
// found later, listed once, with the children of both; the other way
// round, the children go under the maildir.
func TestWalkStructureThenMaildir(t *testing.T) {
	root := t.TempDir()
	// "~C3~A9" decodes to "é" and sorts before it; "~41" decodes to
	// "A" and sorts after it.
	for _, d := range []string{"~C3~A9/Sub", "é", "A", "~41/Sub"} {
		if err := os.MkdirAll(filepath.Join(root, d, "cur"), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	names, noSelect := nestedNames(t, root)
	if fmt.Sprint(names) != "[A A/Sub é é/Sub]" || len(noSelect) != 0 {
		t.Errorf("folders %v, structure only %v; want [A A/Sub é é/Sub] and none", names, noSelect)
	}
}
