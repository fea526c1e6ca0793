package migrate

import "testing"

// TestDeletedPolicy: \Deleted messages are copied unless SkipDeleted;
// expunged ones (already gone for the user) only with IncludeDeleted.
func TestDeletedPolicy(t *testing.T) {
	deleted := Message{Flags: []string{`\Seen`, `\deleted`}}
	expunged := Message{Flags: []string{`\Deleted`}, Expunged: true}
	plain := Message{Flags: []string{`\Seen`}}
	for _, c := range []struct {
		o                  Options
		del, exp, plainOut bool // filtered out?
	}{
		{Options{}, false, true, false},
		{Options{SkipDeleted: true}, true, true, false},
		{Options{IncludeDeleted: true}, false, false, false},
	} {
		if got := c.o.filter(deleted) != ""; got != c.del {
			t.Errorf("%+v: \\Deleted filtered %v", c.o, got)
		}
		if got := c.o.filter(expunged) != ""; got != c.exp {
			t.Errorf("%+v: expunged filtered %v", c.o, got)
		}
		if got := c.o.filter(plain) != ""; got != c.plainOut {
			t.Errorf("%+v: plain filtered %v", c.o, got)
		}
	}
}
