package fakeimap

import (
	"bytes"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
)

// SEARCH criteria, matched against the stored bytes. HEADER, BODY and TEXT
// are case-insensitive substring matches (RFC 3501 6.4.4); header fields
// are read from the raw header (unfolded), so a message go-message cannot
// parse is still searchable. Dates compare calendar days, ignoring time
// and zone.

type searchCtx struct {
	maxSeq uint32
	maxUID imap.UID
}

func (c searchCtx) match(m *message, cseq uint32, cr *imap.SearchCriteria) bool {
	for _, set := range cr.SeqNum {
		if cseq == 0 || !inRanges(seqRanges(set, c.maxSeq), cseq) {
			return false
		}
	}
	for _, set := range cr.UID {
		if !inRanges(uidRanges(set, c.maxUID), uint32(m.uid)) {
			return false
		}
	}
	if !cr.Since.IsZero() && day(m.date) < day(cr.Since) {
		return false
	}
	if !cr.Before.IsZero() && day(m.date) >= day(cr.Before) {
		return false
	}
	if !cr.SentSince.IsZero() || !cr.SentBefore.IsZero() {
		sent := imapserver.ExtractEnvelope(readHeader(m.body)).Date
		if sent.IsZero() ||
			!cr.SentSince.IsZero() && day(sent) < day(cr.SentSince) ||
			!cr.SentBefore.IsZero() && day(sent) >= day(cr.SentBefore) {
			return false
		}
	}
	if len(cr.Header) > 0 {
		fields := headerFields(m.body)
		for _, h := range cr.Header {
			if !matchHeader(fields, h.Key, h.Value) {
				return false
			}
		}
	}
	for _, s := range cr.Body {
		if !containsFold(m.body[headerEnd(m.body):], s) {
			return false
		}
	}
	for _, s := range cr.Text {
		if !containsFold(m.body, s) {
			return false
		}
	}
	for _, f := range cr.Flag {
		if !hasFlag(m.flags, f) {
			return false
		}
	}
	for _, f := range cr.NotFlag {
		if hasFlag(m.flags, f) {
			return false
		}
	}
	if cr.Larger > 0 && int64(len(m.body)) <= cr.Larger {
		return false
	}
	if cr.Smaller > 0 && int64(len(m.body)) >= cr.Smaller {
		return false
	}
	for i := range cr.Not {
		if c.match(m, cseq, &cr.Not[i]) {
			return false
		}
	}
	for i := range cr.Or {
		if !c.match(m, cseq, &cr.Or[i][0]) && !c.match(m, cseq, &cr.Or[i][1]) {
			return false
		}
	}
	return true
}

// day numbers a calendar date in t's own zone.
func day(t time.Time) int64 {
	y, mo, d := t.Date()
	return time.Date(y, mo, d, 0, 0, 0, 0, time.UTC).Unix() / 86400
}

type field struct{ key, value string }

// headerFields reads the raw header: "Key: value" lines, continuation
// lines (starting with space or tab) unfolded into the value.
func headerFields(body []byte) []field {
	var out []field
	for _, line := range bytes.Split(body[:headerEnd(body)], []byte("\n")) {
		line = bytes.TrimSuffix(line, []byte("\r"))
		if len(line) == 0 {
			continue
		}
		if (line[0] == ' ' || line[0] == '\t') && len(out) > 0 {
			out[len(out)-1].value += " " + string(bytes.TrimSpace(line))
			continue
		}
		k, v, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		out = append(out, field{string(bytes.TrimSpace(k)), string(bytes.TrimSpace(v))})
	}
	return out
}

func matchHeader(fields []field, key, value string) bool {
	for _, f := range fields {
		if strings.EqualFold(f.key, key) && containsFold([]byte(f.value), value) {
			return true
		}
	}
	return false
}

func containsFold(b []byte, s string) bool {
	return bytes.Contains(bytes.ToLower(b), bytes.ToLower([]byte(s)))
}
