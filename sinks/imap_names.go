package sinks

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"regexp"
	"strings"
	"unicode/utf8"
)

// Folder names on an IMAP destination.
//
// mailhaul's names are "/"-separated components of any bytes (a folder
// name is untrusted input: it comes from a server or disk mailhaul does not
// control). A component is written to the server escaped so that two
// different source folders never become one destination folder:
//
//   - "~" becomes "~7E" (so the escape itself is unambiguous);
//   - the server's hierarchy delimiter inside a component (a "." on
//     Courier or Cyrus) becomes "~" and its hex code ("a.b" -> "a~2Eb"), as
//     it would otherwise split the folder;
//   - bytes that are not UTF-8 and control characters become "~XX" (IMAP
//     names are UTF-8; the replacement character would merge "Caf\xe8" and
//     "Caf\xe9");
//   - characters the server refuses in names (it said so with NO [CANNOT],
//     e.g. Dovecot's Maildir++ layout refuses ".") become "~XX" too, learned
//     at the first refusal and applied to every later name;
//   - a server that refuses names beginning with "~" (Dovecot: "Begins with
//     '~'") gets "_" before a component whose escaped form would begin with
//     one, and a leading "_" of a name is then escaped as well (so the
//     mapping stays one-to-one);
//   - a name the server said is too long has its components longer than
//     shortComponent bytes cut to their start, "~~" and 8 hex digits of the
//     SHA-256 of the whole component (for that name only).
//
// The mapping depends only on the name and on what the server refuses, not
// on the order folders come in. What the server refuses is learned anew
// by every run (it is not kept), so a name is first tried as it is; a
// folder an earlier run made under an escaped name is found by trying
// the stricter rules that run may have learned (IMAP.escapedTwinLocked):
// a re-run does not ask to create the refused name again, and check,
// which creates nothing, looks in the folder the copy made.

const shortComponent = 60

// nameRules are what the server refuses in folder names, learned from its
// NO [CANNOT] replies; they apply to every name from then on.
type nameRules struct {
	refused string // characters to escape
	lead    bool   // no name may begin with "~"
}

// escapeComponent escapes one name component for the server.
func escapeComponent(c string, delim rune, rules nameRules, short bool) string {
	var b strings.Builder
	for i := 0; i < len(c); {
		r, size := utf8.DecodeRuneInString(c[i:])
		switch {
		case r == utf8.RuneError && size <= 1,
			r < 0x20 || r == 0x7f,
			r == '~', r == delim && delim != '/', strings.ContainsRune(rules.refused, r),
			rules.lead && i == 0 && r == '_':
			for k := 0; k < size; k++ {
				fmt.Fprintf(&b, "~%02X", c[i+k])
			}
		default:
			b.WriteString(c[i : i+size])
		}
		i += size
	}
	out := b.String()
	if rules.lead && strings.HasPrefix(out, "~") {
		out = "_" + out
	}
	if short && len(out) > shortComponent {
		h := sha256.Sum256([]byte(c))
		cut := shortComponent / 2
		for cut > 0 && !utf8.RuneStart(out[cut]) {
			cut--
		}
		out = out[:cut] + "~~" + hex.EncodeToString(h[:4])
	}
	return out
}

// refusablePunct is what learn escapes for a refusal about characters
// that names none: every ASCII punctuation character but "-", "_", "/"
// and "~".
const refusablePunct = `!"#$%&'()*+,.:;<=>?@[\]^{|}`

var (
	refusedChar = regexp.MustCompile(`(?i)not allowed[^']*'(.)'`)
	beginsWith  = regexp.MustCompile(`(?i)begins? with '~'`)
)

// learn reads a server's refusal of a CREATE and says what to escape from
// now on: the character it names (Dovecot: "Character not allowed in
// mailbox name: '.'"), a leading "~", or, for a refusal about characters
// that names none, every ASCII punctuation character but "-" and "_"; a
// too-long name asks for short components (for that name: tooLong). It
// reports false for refusals it does not understand or already knew.
func (r *nameRules) learn(text string) (learned, tooLong bool) {
	t := strings.ToLower(text)
	switch {
	case strings.Contains(t, "too long"):
		return false, true
	case beginsWith.MatchString(text):
		if r.lead {
			return false, false
		}
		r.lead = true
		return true, false
	case refusedChar.MatchString(text):
		ch := refusedChar.FindStringSubmatch(text)[1]
		if strings.Contains(r.refused, ch) || ch == "~" {
			return false, false
		}
		r.refused += ch
		return true, false
	case strings.Contains(t, "character") || strings.Contains(t, "invalid") || strings.Contains(t, "not allowed"):
		if strings.Contains(r.refused, refusablePunct) {
			return false, false
		}
		r.refused += refusablePunct
		return true, false
	}
	return false, false
}
