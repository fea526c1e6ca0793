// Package mbox reads mbox files (mboxo, mboxrd, mboxcl2) in one sequential,
// bounded-memory pass and hands out each message as a byte range of the
// file plus the metadata parsed on the way (From_ line date, flags,
// keywords, size and a content hash).
//
// # Why not go-mbox
//
// github.com/emersion/go-mbox v1.0.4 reads mboxo only (a `>>From ` line
// stays quoted, which is wrong for mboxrd), throws the From_ line and its
// date away, rewrites line endings to CRLF and gives no byte offsets. A
// migration needs the date (it is the internal date), exact bytes, and
// offsets (a message is fetched again later by seeking, and a changed file
// must be detected), so this package is our own. go-mbox is used in the
// tests as a cross-check for mboxo samples.
//
// # Message boundaries
//
// A message starts with a From_ line. At the top of the file (after an
// optional UTF-8 byte-order mark and blank or whitespace-only lines) any
// line beginning with "From " is one. Further down, a line starts a new
// message when it is a valid From_ line, `From <sender> <asctime date>`
// whose date parses, with or without a blank line before it (several
// writers put none); right after a blank line, a "From " line followed by
// a header field starts one too (a From_ line with a date we cannot
// read). Any other line beginning with "From " is a body line that a
// writer failed to quote: it does not split the message.
//
// The message bytes are everything after the From_ line up to, not
// including, the next From_ line; a blank line ("\n" or "\r\n") right
// before it is the separator and not part of the message, and so is one
// trailing blank line at EOF.
//
// A Content-Length header (mboxcl, mboxcl2) is trusted only when it checks
// out: the body then ends at a line break, and the bytes that follow are
// EOF, a blank line and EOF, a blank line and a From_ line, or a From_
// line. A trusted Content-Length lets a body contain unquoted "From " lines
// (mboxcl2). A Content-Length that lies is ignored with a recorded
// Problem, and the message ends at the next From_ line as usual.
//
// # The >From policy
//
// Line endings are kept exactly as in the file. The only change made to
// message bytes is the removal of the quoting the writer added:
//
//   - mboxrd: one '>' is removed from every line matching `^>+From `
//     (so `>>From ` becomes `>From `): exact round trip.
//   - mboxo: one '>' is removed from a line matching `^>From ` only
//     (exactly one '>'); `>>From ` stays. mboxo is lossy by design: an
//     original `>From ` line cannot be told from a quoted `From ` line, and
//     both come out as `From `.
//   - mboxcl2: nothing is unquoted; `>From ` lines are content.
//
// Unquoting applies to header and body lines alike (writers quote every
// line after the From_ line).
//
// # Choosing the dialect
//
// With Auto the dialect is chosen per message, from evidence in the
// message that cannot mislead, never from a sample of the file: a file
// may mix dialects (Thunderbird wrote mboxo, and mboxrd since its mbox
// code was rewritten, into the same folder files), and a decision per
// message does not change when mail is appended to the file or the file
// is compacted, so message identities stay stable across runs.
//
//   - A trusted Content-Length body holding an unquoted "From " line was
//     written without quoting: mboxcl2.
//   - A message with no `>>+From ` line reads the same in mboxo and mboxrd:
//     mboxo (and mboxrd) it is.
//   - A message with `>>+From ` lines and an X-Mozilla-Status header was
//     written by Thunderbird, which reads every mbox as mboxrd (its own
//     reader removes one '>'): mboxrd, so the copy shows what Thunderbird
//     showed.
//   - Otherwise the doubt cannot be settled from the bytes (a `>>From `
//     line is an mboxrd-quoted `>From ` or an mboxo original): the message
//     is read as mboxo, which keeps those lines as written, and the doubt
//     is counted in Stats so that the caller can say so (and the user can
//     force mboxrd with Options.Format).
//
// The Reader follows the three readings of a message at once, hashing
// twice only from the first line they disagree on (most messages have
// none), so the choice costs no second pass over the file.
//
// # Line endings
//
// LF and CRLF (also mixed) are line breaks. A file whose first line ends
// in a lone CR (classic Mac OS) is read with CR as the line break; such
// messages are handed out unchanged with a recorded Problem.
//
// # Bad input
//
// Nothing aborts a scan except an I/O error of the underlying reader.
// Every oddity is a Problem naming the file and byte offset; a Problem with
// Bad set means the message should not be copied. A message is only
// refused when it truly is not one:
//
//   - bytes before the first From_ line that are not blank (a file that
//     does not start with "From "): handed out as a Junk message, Bad;
//   - a From_ line not followed by something a mail reader takes for a
//     header: a header field (also the obsolete "Name : value" form), a
//     blank or whitespace-only line, a folded line, a (quoted) "From "
//     line, each possibly after a byte-order mark: Bad (binary junk);
//   - a message that ends inside its header at EOF, or whose
//     Content-Length reaches past EOF (truncated file): Bad;
//   - a From_ line and nothing else: Bad;
//   - a NUL byte (legal in mbox and Maildir bodies), a From_ line whose
//     date cannot be parsed (zero Date), a lying Content-Length, CR-only
//     line breaks, a byte-order mark at the top, a missing final line
//     break: recorded, not Bad.
//
// Memory is bounded by the bufio buffer (64 KiB) whatever the line or
// message length: a 1 MB line or a 100 MB message is read in fragments.
package mbox

import (
	"bytes"
	"fmt"
	"net/mail"
	"strconv"
	"strings"
	"time"
)

// Format is an mbox dialect.
type Format int

const (
	// Auto detects the format per file (see the package doc).
	Auto Format = iota
	// MboxO: `From ` quoted as `>From `; only `>From ` is unquoted.
	MboxO
	// MboxRD: `>*From ` quoted with one more '>'; one '>' is removed.
	MboxRD
	// MboxCL2: no quoting; Content-Length delimits bodies.
	MboxCL2
)

func (f Format) String() string {
	switch f {
	case MboxO:
		return "mboxo"
	case MboxRD:
		return "mboxrd"
	case MboxCL2:
		return "mboxcl2"
	}
	return "auto"
}

// ParseFormat parses "auto", "mboxo", "mboxrd" or "mboxcl2" (also "o",
// "rd", "cl2").
func ParseFormat(s string) (Format, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "auto":
		return Auto, nil
	case "mboxo", "o":
		return MboxO, nil
	case "mboxrd", "rd":
		return MboxRD, nil
	case "mboxcl2", "cl2", "mboxcl":
		return MboxCL2, nil
	}
	return Auto, fmt.Errorf("unknown mbox format %q: want auto, mboxo, mboxrd or mboxcl2", s)
}

// Layout is how the bytes of a message are laid out in a file: what Copy
// needs to extract it again.
type Layout struct {
	// Format is the dialect a message was read in (never Auto in a
	// Message's Layout; Reader.Layout reports Auto when it chooses per
	// message).
	Format Format
	EOL    byte // '\n', or '\r' for a CR-only file
}

// Problem is something wrong in a file, at a byte offset.
type Problem struct {
	File   string
	Offset int64
	// Bad means the message it belongs to should not be copied.
	Bad bool
	Msg string
}

func (p *Problem) Error() string {
	return fmt.Sprintf("mbox %s: offset %d: %s", p.File, p.Offset, p.Msg)
}

// Message is one message found by a Reader. It holds metadata only: the
// bytes are [Start, Start+Len) of the file, to be extracted with Copy.
type Message struct {
	// Offset is where the From_ line starts (for junk: where the junk
	// starts).
	Offset int64
	// FromLine is the From_ line without "From " and the line break
	// (at most 1 KiB of it).
	FromLine string
	// Date is the From_ line's date; zero if it could not be parsed.
	Date time.Time
	// WrittenDate: the From_ line is Mozilla's ("From - <date>"), whose
	// date is when Thunderbird wrote the message into this file — its
	// download, or the day it was moved or archived there — not when the
	// message arrived: HeaderDate dates it better (sources/mbox.go).
	WrittenDate bool
	// HeaderDate is the date the header implies, as migrate.HeaderDate
	// has it: the newest date of its Received: fields (when it arrived),
	// else its Date: field's; zero if none is valid.
	HeaderDate time.Time
	// Start and Len are the raw (still quoted) message bytes in the file.
	Start, Len int64
	// Size is the length after unquoting: what Copy writes.
	Size int64
	// Layout is the dialect this message was read in and the file's line
	// break: pass it to Copy.
	Layout Layout
	// Sum is the content hash computed by Copy (see Copy); not set for
	// Junk.
	Sum [32]byte
	// Flags in IMAP spelling from Status, X-Status, X-Mozilla-Status and
	// X-Mozilla-Keys (keywords).
	Flags []string
	// Expunged is Thunderbird's expunged bit (X-Mozilla-Status 0x0008): the
	// message was deleted but the folder not compacted yet. Flags then
	// holds \Deleted.
	Expunged bool
	// Junk is set for bytes that are not a message (before the first From_
	// line); Problems then holds a Bad problem.
	Junk bool
	// FolderData is set for the first message of a file written by UW
	// IMAP's c-client (Pine, Alpine, UW imapd): "DON'T DELETE THIS MESSAGE
	// -- FOLDER INTERNAL DATA", with an X-IMAP field holding the folder's
	// UIDVALIDITY and keywords. It is no mail; those programs hide it.
	FolderData bool
	// Problems found in this message, in file order.
	Problems []*Problem
}

// Err returns the first Bad problem of m, or nil if m can be copied.
func (m *Message) Err() error {
	for _, p := range m.Problems {
		if p.Bad {
			return p
		}
	}
	return nil
}

// dateLayouts are the asctime variants seen in From_ lines, after runs of
// spaces are collapsed to one.
var dateLayouts = []string{
	"Mon Jan 2 15:04:05 2006",
	"Mon Jan 2 15:04:05 2006 -0700",
	"Mon Jan 2 15:04:05 2006 MST",
	"Mon Jan 2 15:04:05 MST 2006",
	"Mon Jan 2 15:04:05 -0700 2006",
	"Mon Jan 2 15:04:05 MST -0700 2006",
	"Mon Jan 2 15:04 2006",
	"Mon Jan 2 15:04 MST 2006",
	"Mon Jan 2 15:04 2006 -0700",
	"Mon, 2 Jan 2006 15:04:05 -0700",
	"Mon Jan 2 15:04:05.000000 2006",
}

// zoneByName corrects a date parsed with a zone name only ("Tue Mar 1
// 10:00:00 EST 2005", as some mailers write From_ lines): Go gives a zone
// name that loc does not define the offset 0. A name of RFC 822 (EST,
// PDT, ...) or of the few unambiguous others in zoneOffsets gets its
// offset; an unknown name is read like no zone at all, in loc.
func zoneByName(t time.Time, loc *time.Location) time.Time {
	name, off := t.Zone()
	if off != 0 || utcNames[name] {
		return t
	}
	z := loc
	if o, ok := zoneOffsets[strings.ToUpper(name)]; ok {
		z = time.FixedZone(name, o)
	}
	y, mo, d := t.Date()
	h, mi, sec := t.Clock()
	return time.Date(y, mo, d, h, mi, sec, t.Nanosecond(), z)
}

var utcNames = map[string]bool{"UTC": true, "UT": true, "GMT": true, "Z": true}

// zoneOffsets: RFC 822's zone names (CST is its Central, not China's),
// and European, Russian, Japanese and Australasian ones that name one
// offset only (IST and BST, which name several, are read as unknown).
var zoneOffsets = map[string]int{
	"EST": -5 * 3600, "EDT": -4 * 3600, "CST": -6 * 3600, "CDT": -5 * 3600,
	"MST": -7 * 3600, "MDT": -6 * 3600, "PST": -8 * 3600, "PDT": -7 * 3600,
	"WET": 0, "WEST": 3600, "CET": 3600, "CEST": 2 * 3600, "MET": 3600, "MEST": 2 * 3600,
	"EET": 2 * 3600, "EEST": 3 * 3600, "MSK": 3 * 3600, "JST": 9 * 3600,
	"AEST": 10 * 3600, "AEDT": 11 * 3600, "NZST": 12 * 3600, "NZDT": 13 * 3600,
}

var weekdays = map[string]bool{"mon": true, "tue": true, "wed": true, "thu": true, "fri": true, "sat": true, "sun": true}

// ParseFromLine splits the part of a From_ line after "From " into the
// envelope sender and the date. Dates without a zone are read in loc
// (UTC if nil). ok is false if no date could be parsed.
func ParseFromLine(rest string, loc *time.Location) (sender string, date time.Time, ok bool) {
	if loc == nil {
		loc = time.UTC
	}
	fields := strings.Fields(rest)
	// The sender may itself contain spaces (a quoted local part): the date
	// starts at the last weekday name that can start a valid date.
	for i := len(fields) - 1; i >= 0; i-- {
		w := strings.ToLower(strings.TrimSuffix(fields[i], ","))
		if !weekdays[w] {
			continue
		}
		s := strings.Join(fields[i:], " ")
		for _, l := range dateLayouts {
			if t, err := time.ParseInLocation(l, s, loc); err == nil {
				if strings.Contains(l, "MST") && !strings.Contains(l, "-0700") {
					t = zoneByName(t, loc) // a zone name, no offset
				}
				return strings.Join(fields[:i], " "), t, true
			}
		}
	}
	if len(fields) > 0 {
		sender = fields[0]
	}
	return sender, time.Time{}, false
}

// statusFlags maps Status/X-Status letters (mutt, Pine, elm) to flags. 'O'
// (old, not \Recent) has no flag of its own.
func statusFlags(v string, add func(string)) {
	for _, c := range v {
		switch c {
		case 'R':
			add(`\Seen`)
		case 'A':
			add(`\Answered`)
		case 'F':
			add(`\Flagged`)
		case 'D':
			add(`\Deleted`)
		case 'T':
			add(`\Draft`)
		}
	}
}

// Thunderbird's X-Mozilla-Status bits (nsMsgMessageFlags).
const (
	mozRead      = 0x0001
	mozReplied   = 0x0002
	mozMarked    = 0x0004
	mozExpunged  = 0x0008
	mozForwarded = 0x1000
)

// mozillaFlags parses X-Mozilla-Status (4 hex digits).
func mozillaFlags(v string, add func(string)) (expunged, ok bool) {
	n, err := strconv.ParseUint(strings.TrimSpace(v), 16, 32)
	if err != nil {
		return false, false
	}
	if n&mozRead != 0 {
		add(`\Seen`)
	}
	if n&mozReplied != 0 {
		add(`\Answered`)
	}
	if n&mozMarked != 0 {
		add(`\Flagged`)
	}
	if n&mozExpunged != 0 {
		add(`\Deleted`)
		expunged = true
	}
	if n&mozForwarded != 0 {
		add(`$Forwarded`)
	}
	return expunged, true
}

// Evolution's message flags (Camel's CamelMessageFlags), the low 16 bits
// of which X-Evolution carries after the message's UID.
const (
	evoAnswered  = 1 << 0
	evoDeleted   = 1 << 1
	evoDraft     = 1 << 2
	evoFlagged   = 1 << 3
	evoSeen      = 1 << 4
	evoJunk      = 1 << 7
	evoForwarded = 1 << 10
)

// evolutionFlags parses X-Evolution ("00000002-0011": the UID, then the
// flags, both hex) as Evolution writes it into its mbox files. A deleted
// message is only marked \Deleted: Evolution expunges by rewriting the
// file.
func evolutionFlags(v string, add func(string)) bool {
	_, f, ok := strings.Cut(strings.TrimSpace(v), "-")
	if !ok {
		return false
	}
	n, err := strconv.ParseUint(strings.TrimSpace(f), 16, 32)
	if err != nil {
		return false
	}
	for _, b := range []struct {
		bit  uint64
		flag string
	}{{evoAnswered, `\Answered`}, {evoDeleted, `\Deleted`}, {evoDraft, `\Draft`}, {evoFlagged, `\Flagged`}, {evoSeen, `\Seen`},
		{evoJunk, "$Junk"}, {evoForwarded, `$Forwarded`}} {
		if n&b.bit != 0 {
			add(b.flag)
		}
	}
	return true
}

// validKeyword reports whether k is an IMAP atom usable as a keyword.
func validKeyword(k string) bool {
	if k == "" || k[0] == '\\' {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`(){%*"\]`, c) >= 0 {
			return false
		}
	}
	return true
}

func parseHeaderDate(v string) time.Time {
	t, err := mail.ParseDate(strings.TrimSpace(v))
	if err != nil {
		return time.Time{}
	}
	return t
}

// flagHeaders are the header fields that mail clients rewrite in place when
// flags change; they are left out of the content hash (see Copy).
var flagHeaders = [][]byte{
	[]byte("status:"), []byte("x-status:"), []byte("x-mozilla-status:"),
	[]byte("x-mozilla-status2:"), []byte("x-mozilla-keys:"),
}

func isFlagHeader(line []byte) bool {
	for _, h := range flagHeaders {
		if len(line) >= len(h) && bytes.EqualFold(line[:len(h)], h) {
			return true
		}
	}
	return false
}

// isHeaderField reports whether line starts like a header field: a field
// name (printable ASCII except ':') and a colon, with the white space the
// obsolete syntax allows before the colon ("Subject : x", RFC 5322
// section 4.5.3).
func isHeaderField(line []byte) bool {
	i := 0
	for i < len(line) && line[i] > ' ' && line[i] < 0x7f && line[i] != ':' {
		i++
	}
	if i == 0 {
		return false
	}
	for i < len(line) && (line[i] == ' ' || line[i] == '\t') {
		i++
	}
	return i < len(line) && line[i] == ':'
}
