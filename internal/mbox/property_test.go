package mbox

import (
	"bytes"
	"fmt"
	"io"
	"math/rand"
	"strings"
	"testing"
)

// propLines are the body lines random messages are made of: the quoting
// cases of every dialect, From_ lines that would split a message if a
// writer did not quote them, blank lines, CRLF, and lines longer than the
// reader's buffer.
var propLines = []string{
	"text", "", "From x", "From a@b Sat Jan  1 00:00:00 2000", ">From y", ">>From z", ">>>From w",
	"From", " From x", "> From x", "F", "Subject: not a header", ">", "From - Mon Jan  7 09:00:00 2019",
	strings.Repeat("y", 70<<10), ">From " + strings.Repeat("z", 70<<10),
}

type propMsg struct {
	body string
	moz  bool // carries X-Mozilla-Status (written by Thunderbird)
}

// genMessages returns n random messages. Messages never end in a blank
// line when blankSep is false (without a separator, a trailing blank line
// before the next From_ line is the separator). allow filters lines.
func genMessages(rng *rand.Rand, n int, blankSep, moz bool, allow func(string) bool) []propMsg {
	var out []propMsg
	for i := 0; i < n; i++ {
		var b strings.Builder
		eol := "\n"
		if rng.Intn(4) == 0 {
			eol = "\r\n"
		}
		fmt.Fprintf(&b, "Subject: message %d%sMessage-ID: <%d@prop>%s", i, eol, i, eol)
		if moz {
			b.WriteString("X-Mozilla-Status: 0001" + eol)
		}
		b.WriteString(eol)
		lines := rng.Intn(8)
		last := ""
		for j := 0; j < lines; j++ {
			l := propLines[rng.Intn(len(propLines))]
			if !allow(l) {
				continue
			}
			b.WriteString(l + eol)
			last = l
		}
		if !blankSep && (lines == 0 || last == "") {
			b.WriteString("end" + eol)
		}
		out = append(out, propMsg{body: b.String(), moz: moz})
	}
	return out
}

// withContentLength adds a Content-Length header (the body's length) to
// every message, as mboxcl2 writers do.
func withContentLength(msgs []propMsg) []propMsg {
	out := make([]propMsg, len(msgs))
	for i, m := range msgs {
		eol := "\n"
		if strings.HasSuffix(strings.SplitAfter(m.body, "\n")[0], "\r\n") {
			eol = "\r\n"
		}
		h, rest, _ := strings.Cut(m.body, eol+eol)
		out[i] = propMsg{body: fmt.Sprintf("%s%sContent-Length: %d%s%s%s", h, eol, len(rest), eol, eol, rest), moz: m.moz}
	}
	return out
}

// writeMbox writes msgs in format f: mboxo quotes `^From `, mboxrd quotes
// `^>*From `, mboxcl2 quotes nothing and writes Content-Length.
func writeMbox(msgs []propMsg, f Format, blankSep bool) []byte {
	var w bytes.Buffer
	for i, m := range msgs {
		fmt.Fprintf(&w, "From sender%d@example.org Sat Jan  1 00:00:%02d 2000\n", i, i%60)
		body := m.body
		if f == MboxCL2 {
			w.WriteString(body) // withContentLength added the header
		} else {
			for _, l := range strings.SplitAfter(body, "\n") {
				switch {
				case f == MboxO && strings.HasPrefix(l, "From "):
					w.WriteString(">")
				case f == MboxRD && strings.HasPrefix(strings.TrimLeft(l, ">"), "From "):
					w.WriteString(">")
				}
				w.WriteString(l)
			}
		}
		if blankSep {
			w.WriteString("\n")
		}
	}
	return w.Bytes()
}

// TestPropertyRoundTrip: random message sets written as mboxo, mboxrd and
// mboxcl2, with and without blank lines between messages, read back give
// exactly the messages written: with the dialect forced, and with Auto
// where the message carries the evidence Auto decides by (mboxo: no
// Thunderbird header; mboxrd: Thunderbird's header; mboxcl2: forced only).
func TestPropertyRoundTrip(t *testing.T) {
	rounds := 300
	if testing.Short() {
		rounds = 60
	}
	noSingleQuote := func(l string) bool { return !strings.HasPrefix(l, ">From ") } // mboxo cannot keep an original >From
	any := func(string) bool { return true }
	for round := 0; round < rounds; round++ {
		rng := rand.New(rand.NewSource(int64(round)))
		blankSep := round%2 == 0
		n := 1 + rng.Intn(6)
		cases := []struct {
			name  string
			write Format
			read  Format
			msgs  []propMsg
		}{
			{"mboxo", MboxO, MboxO, genMessages(rng, n, blankSep, false, noSingleQuote)},
			{"mboxo/auto", MboxO, Auto, genMessages(rng, n, blankSep, false, noSingleQuote)},
			{"mboxrd", MboxRD, MboxRD, genMessages(rng, n, blankSep, rng.Intn(2) == 0, any)},
			{"mboxrd/auto-thunderbird", MboxRD, Auto, genMessages(rng, n, blankSep, true, any)},
			{"mboxcl2", MboxCL2, MboxCL2, withContentLength(genMessages(rng, n, blankSep, false, any))},
		}
		for _, c := range cases {
			data := writeMbox(c.msgs, c.write, blankSep)
			name := fmt.Sprintf("round %d %s blank=%v", round, c.name, blankSep)
			ra := bytes.NewReader(data)
			r := NewReader(ra, int64(len(data)), name, Options{Format: c.read})
			var got []string
			for {
				m, err := r.Next()
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				if err := m.Err(); err != nil {
					t.Fatalf("%s: message at %d: %v", name, m.Offset, err)
				}
				var b bytes.Buffer
				if _, _, err := Copy(&b, ra, name, m.Start, m.Len, m.Layout); err != nil {
					t.Fatal(err)
				}
				got = append(got, b.String())
			}
			if len(got) != len(c.msgs) {
				t.Fatalf("%s: %d messages, wrote %d\n%q", name, len(got), len(c.msgs), data)
			}
			for i := range got {
				if got[i] != c.msgs[i].body {
					t.Fatalf("%s: message %d:\n got %.300q\nwant %.300q", name, i, got[i], c.msgs[i].body)
				}
			}
		}
	}
}
