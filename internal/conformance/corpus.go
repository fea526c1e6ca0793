package conformance

import (
	"fmt"
	"strings"
	"time"
)

// A Msg is one message of a generated corpus.
type Msg struct {
	Folder string // "/"-separated source folder
	Body   []byte
	Flags  []string
	Date   time.Time
}

var baseDate = time.Date(2021, 3, 4, 5, 6, 7, 0, time.UTC)

// header returns a small header; every message of a corpus has a unique
// Subject (so tests can recognise it) unless twin is set.
func header(subject, mid string) string {
	h := "From: Alice <alice@example.org>\r\nTo: bob@example.org\r\nSubject: " + subject + "\r\nDate: Thu, 04 Mar 2021 05:06:07 +0000\r\n"
	if mid != "" {
		h += "Message-ID: <" + mid + ">\r\n"
	}
	return h
}

// BytesCorpus is the byte-level corpus: every line-ending style and the
// contents mail programs choke on. big is the size of the large message
// (0: none).
func BytesCorpus(big int) []Msg {
	var out []Msg
	add := func(name, body string) {
		out = append(out, Msg{Folder: "INBOX", Body: []byte(body), Date: baseDate.Add(time.Duration(len(out)) * time.Hour)})
	}
	add("crlf", header("crlf", "crlf@x")+"\r\nline one\r\nline two\r\n")
	add("lf", strings.ReplaceAll(header("lf", "lf@x")+"\r\nline one\r\nline two\r\n", "\r\n", "\n"))
	add("mixed", header("mixed", "mixed@x")+"\r\nlf line\nthen crlf\r\nand a bare cr\r here\n")
	add("nul", header("nul", "nul@x")+"\r\nbefore\x00after\r\n")
	add("8bit", "From: J\xc3\xbcrgen <j@example.org>\r\nSubject: Gr\xc3\xbc\xc3\x9fe \xe8\xa1\xa8\r\nMessage-ID: <8bit@x>\r\n\r\n\xc3\xa4\xc3\xb6\xc3\xbc raw 8-bit \xff\xfe\r\n")
	add("longline", header("longline", "longline@x")+"\r\n"+strings.Repeat("0123456789", 100000)+"\r\n")
	add("headeronly", header("headeronly", "headeronly@x"))
	add("nobody", header("nobody", "nobody@x")+"\r\n")
	add("dotlines", header("dotlines", "dotlines@x")+"\r\n.\r\n..\r\n.leading dot\r\nFrom here\r\n>From there\r\n")
	add("tiny", "x")
	if big > 0 {
		add("big", header("big", "big@x")+"\r\n"+strings.Repeat(strings.Repeat("b", 998)+"\r\n", big/1000))
	}
	return out
}

// FlagsCorpus has one message per flag combination, keywords included.
func FlagsCorpus() []Msg {
	sets := [][]string{
		nil, {`\Seen`}, {`\Seen`, `\Answered`}, {`\Flagged`}, {`\Draft`}, {`\Seen`, `\Deleted`},
		{`$Forwarded`, `\Seen`}, {`Important`, `$Label1`}, {`\Seen`, `NonJunk`, `$Label2`},
	}
	var out []Msg
	for i, f := range sets {
		out = append(out, Msg{Folder: "INBOX", Flags: f, Date: baseDate.Add(time.Duration(i) * 24 * time.Hour),
			Body: []byte(header(fmt.Sprintf("flags %d", i), fmt.Sprintf("flags-%d@x", i)) + "\r\nflags " + strings.Join(f, " ") + "\r\n")})
	}
	return out
}

// NamesCorpus has one message in each folder of awkward names, the body
// naming the folder.
func NamesCorpus() []Msg {
	names := []string{
		"INBOX", "Archive", "Archive/2019", "Archive/2019/Q1", "Entwürfe", "日本語/子", "a.b", "Release 1.2",
		"x_y", "x.y", "new", "cur", "tmp", "..", "../escape", "Caf\xe8", "Caf\xe9", "sp ace", "per%cent",
		strings.Repeat("long", 75), "tilde~2E",
	}
	var out []Msg
	for i, n := range names {
		out = append(out, Msg{Folder: n, Date: baseDate.Add(time.Duration(i) * time.Minute),
			Body: []byte(header(fmt.Sprintf("name %d", i), fmt.Sprintf("name-%d@x", i)) + "\r\nfolder " + n + "\r\n")})
	}
	return out
}

// TwinsCorpus holds byte-identical twins (twice, three times), messages
// without a Message-ID (one pair of them identical) and messages that share
// a Message-ID but differ.
func TwinsCorpus() []Msg {
	var out []Msg
	add := func(folder, body string, n int) {
		for k := 0; k < n; k++ {
			out = append(out, Msg{Folder: folder, Body: []byte(body), Date: baseDate})
		}
	}
	add("INBOX", header("twin", "twin@x")+"\r\nsame\r\n", 2)
	add("INBOX", header("triplet", "triplet@x")+"\r\nsame\r\n", 3)
	add("INBOX", header("no id", "")+"\r\nanonymous\r\n", 2)
	add("INBOX", header("no id 2", "")+"\r\nanonymous 2\r\n", 1)
	add("INBOX", header("shared id a", "shared@x")+"\r\nversion a\r\n", 1)
	add("INBOX", header("shared id b", "shared@x")+"\r\nversion b!\r\n", 1)
	add("Other", header("twin", "twin@x")+"\r\nsame\r\n", 1) // the twin again, elsewhere
	return out
}

// CrashCorpus is n varied messages in three folders, twins, messages
// without a Message-ID, with LF and with mixed line endings among them,
// for the crash and fault cases.
func CrashCorpus(n, pad int) []Msg {
	var out []Msg
	for i := 0; i < n; i++ {
		folder := []string{"INBOX", "Work", "Work/Clients"}[i%3]
		mid := fmt.Sprintf("crash-%d@example.org", i)
		switch {
		case i%17 == 0:
			mid = ""
		case i%13 == 0:
			mid = "shared@example.org"
		}
		body := header(fmt.Sprintf("crash %d", i%40), mid) + "\r\n" + strings.Repeat("line\r\n", i%9)
		if pad > 0 {
			body += strings.Repeat(fmt.Sprintf("padding %d\r\n", i), (i*7919)%pad/12)
		}
		switch {
		case i%7 == 3:
			body = strings.ReplaceAll(body, "\r\n", "\n") // written on Unix
		case i%19 == 5:
			body = strings.Replace(body, "\r\n", "\n", 3) // mixed
		}
		copies := 1
		if i%11 == 0 {
			copies = 2
		}
		for k := 0; k < copies; k++ {
			out = append(out, Msg{Folder: folder, Body: []byte(body), Flags: []string{`\Seen`}, Date: baseDate.Add(time.Duration(i) * time.Minute)})
		}
	}
	return out
}

// CRLF returns the CRLF form of b (every LF not preceded by CR becomes
// CRLF), what an IMAP destination holds.
func CRLF(b []byte) []byte {
	out := make([]byte, 0, len(b)+len(b)/40)
	for i, c := range b {
		if c == '\n' && (i == 0 || b[i-1] != '\r') {
			out = append(out, '\r')
		}
		out = append(out, c)
	}
	return out
}
