package maildir

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

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
	folders, noSelect, err := Folders(root, Nested)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range folders {
		names = append(names, f.Name)
	}
	if got := fmt.Sprint(names); got != "[INBOX INBOX/Family INBOX/Family/Kids Projects/Alpha Trash sent-mail]" {
		t.Errorf("folders %s", got)
	}
	if fmt.Sprint(noSelect) != "[Projects]" {
		t.Errorf("structure-only folders %v, want [Projects]", noSelect)
	}
}
