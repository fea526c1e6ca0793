package sinks

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestEscapeComponent(t *testing.T) {
	for _, c := range []struct {
		in    string
		rules nameRules
		want  string
	}{
		{"Archive", nameRules{}, "Archive"},
		{"a.b", nameRules{}, "a~2Eb"},
		{"x~y", nameRules{}, "x~7Ey"},
		{"Caf\xe8", nameRules{}, "Caf~E8"},
		{"Entwürfe", nameRules{}, "Entwürfe"},
		{"tab\there", nameRules{}, "tab~09here"},
		{"Release 1.2", nameRules{refused: "."}, "Release 1~2E2"},
		{"..", nameRules{lead: true}, "_~2E~2E"},
		{"_x", nameRules{lead: true}, "_~5Fx"},
	} {
		if got := escapeComponent(c.in, '.', c.rules, false); got != c.want {
			t.Errorf("escapeComponent(%q, %+v) = %q, want %q", c.in, c.rules, got, c.want)
		}
	}
	long := strings.Repeat("ä", 100)
	if got := escapeComponent(long, '/', nameRules{}, true); len(got) > shortComponent+2+8 || !utf8.ValidString(got) || !strings.Contains(got, "~~") {
		t.Errorf("short form %q", got)
	}
}

// FuzzEscapeComponent: different components never escape to the same
// name, and an escaped name never holds the delimiter or invalid UTF-8.
func FuzzEscapeComponent(f *testing.F) {
	for _, s := range [][2]string{{"a.b", "a_b"}, {"Caf\xe8", "Caf\xe9"}, {"~", "~7E"}, {"_~x", "~x"}, {"..", "_.."}} {
		f.Add(s[0], s[1], true, ".")
	}
	f.Fuzz(func(t *testing.T, a, b string, lead bool, refused string) {
		for _, delim := range []rune{'.', '/'} {
			r := nameRules{refused: strings.ReplaceAll(refused, "~", ""), lead: lead}
			ea, eb := escapeComponent(a, delim, r, false), escapeComponent(b, delim, r, false)
			if a != b && ea == eb {
				t.Fatalf("%q and %q both escape to %q (rules %+v, delim %q)", a, b, ea, r, delim)
			}
			if delim != '/' && strings.ContainsRune(ea, delim) || !utf8.ValidString(ea) || (lead && strings.HasPrefix(ea, "~")) {
				t.Fatalf("escape of %q = %q", a, ea)
			}
		}
	})
}
