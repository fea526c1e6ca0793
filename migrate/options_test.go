package migrate

import (
	"strings"
	"testing"
)

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

// TestSelectionMatchesNothing: an --include pattern that names no folder is a
// warning; a selection of no folder at all is an error that names the
// patterns and some of the source's folders (a mistyped folder name must
// not pass as a complete run, or check, of nothing).
func TestSelectionMatchesNothing(t *testing.T) {
	mbs := []Mailbox{{Name: "INBOX"}, {Name: "Work"}, {Name: "Work/Clients"}, {Name: "Archive", NoSelect: true}}
	for _, c := range []struct {
		include, exclude []string
		warnings         int
		err              string
	}{
		{nil, nil, 0, ""},
		{[]string{"Work*"}, nil, 0, ""},
		{[]string{"Work", "Wrok"}, nil, 1, ""},
		{[]string{"Wrok"}, nil, 1, `--include "Wrok" selects none of the source's 4 folders ("INBOX", "Work", "Work/Clients", "Archive")`},
		{nil, []string{"*"}, 0, "--include/--exclude select none of the source's 4 folders"},
		{[]string{"Archive"}, nil, 0, "--include/--exclude select none"}, // only structure
		{[]string{"INBOX"}, []string{"INBOX"}, 0, "select none"},
		{[]string{"Inbox", "inbox/*"}, nil, 1, ""}, // INBOX in any case; no INBOX/ child
		{nil, []string{"inbox", "Work"}, 0, "select none"},
		{[]string{"Inboxes"}, nil, 1, "selects none"},
		{[]string{"Work/", "INBOX//"}, nil, 0, ""}, // a trailing "/" is not part of the name
	} {
		o := Options{Include: c.include, Exclude: c.exclude}
		warns, err := o.checkSelection(mbs)
		if len(warns) != c.warnings {
			t.Errorf("include %q exclude %q: warnings %v, want %d", c.include, c.exclude, warns, c.warnings)
		}
		switch {
		case c.err == "" && err != nil:
			t.Errorf("include %q exclude %q: %v", c.include, c.exclude, err)
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
			t.Errorf("include %q exclude %q: error %v, want one with %q", c.include, c.exclude, err, c.err)
		}
	}
	if _, err := (&Options{Include: []string{"x"}}).checkSelection(nil); err != nil {
		t.Errorf("a source without folders: %v (nothing to select is not a typo)", err)
	}
}

// TestInboxAnyCase: INBOX is case-insensitive (RFC 3501 section 5.1) in
// patterns and --map sources; other names are not.
func TestInboxAnyCase(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"Inbox", "INBOX"}, {"inbox/Work", "INBOX/Work"}, {"INBOX", "INBOX"},
		{"Inboxes", "Inboxes"}, {"Work/Inbox", "Work/Inbox"}, {"inbo", "inbo"},
	} {
		if got := CanonInbox(c.in); got != c.want {
			t.Errorf("CanonInbox(%q) = %q, want %q", c.in, got, c.want)
		}
	}
	m, err := ParseMap([]string{"Inbox=Old/Inbox", "inbox/Work=Job"})
	if err != nil {
		t.Fatal(err)
	}
	o := Options{Map: m}
	for name, want := range map[string]string{"INBOX": "Old/Inbox", "INBOX/Work/A": "Job/A", "Work": "Work"} {
		if got := o.MapName(name); got != want {
			t.Errorf("MapName(%q) = %q, want %q", name, got, want)
		}
	}
	if !(&Options{Exclude: []string{"Work/inbox"}}).Selected("Work/Inbox") {
		t.Errorf("a folder named Inbox below another is not INBOX: matched in another case")
	}
}
