package sources

import "testing"

// TestSomeNames: the folders an error lists are INBOX first, then sorted,
// without empty names or repeats, and say how many are left out.
func TestSomeNames(t *testing.T) {
	got := someNames([]string{"Trash", "", "Drafts", "INBOX", "Archive", "Drafts", "Sent", "Z", "Y"}, 4)
	if want := `"INBOX", "Archive", "Drafts", "Sent", and 3 more`; got != want {
		t.Errorf("got %s, want %s", got, want)
	}
	if got := someNames([]string{"B", "A"}, 8); got != `"A", "B"` {
		t.Errorf("got %s", got)
	}
}
