package sources

import (
	"fmt"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"
)

// TestKeepFlags: a message listed with thousands of keywords, keywords of
// 1 KB, repeated system flags and \Recent keeps each system flag once and
// the first keywords within maxKeywords and maxKeywordBytes.
func TestKeepFlags(t *testing.T) {
	in := []imap.Flag{`\Recent`, imap.FlagSeen, `\SEEN`, imap.FlagFlagged}
	for i := 0; i < 5000; i++ {
		in = append(in, imap.Flag(fmt.Sprintf("$kw%04d", i)), imap.FlagSeen)
	}
	in = append(in, imap.FlagDraft)
	out, cut := keepFlags(in)
	if !cut || len(out) != 3+maxKeywords || out[0] != `\Seen` || out[1] != `\Flagged` || out[2] != "$kw0000" || out[len(out)-1] != `\Draft` {
		t.Errorf("cut %v, %d flags: %q", cut, len(out), out)
	}
	var big []imap.Flag
	for i := 0; i < 10; i++ {
		big = append(big, imap.Flag(strings.Repeat(string(rune('a'+i)), 1024)))
	}
	if out, cut := keepFlags(big); !cut || len(out) != maxKeywordBytes/1024 {
		t.Errorf("1 KB keywords: cut %v, kept %d", cut, len(out))
	}
	if out, cut := keepFlags([]imap.Flag{imap.FlagAnswered, "$Label1"}); cut || len(out) != 2 {
		t.Errorf("ordinary flags: cut %v, %q", cut, out)
	}
}
