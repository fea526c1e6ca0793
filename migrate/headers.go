package migrate

import (
	"bufio"
	"bytes"
	"net/mail"
	"strings"
	"time"

	"github.com/emersion/go-message/textproto"
)

// HeaderDate returns the internal date a message's own header implies, for
// sources that know no arrival date (POP3): the newest date among its
// Received: fields (the part after the last ";", RFC 5321 section 4.4),
// else its Date: field, else the zero time. raw is the message or its
// header prefix; malformed dates are ignored.
func HeaderDate(raw []byte) time.Time {
	var received, date []string
	if h, err := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(raw))); err == nil {
		fs := h.FieldsByKey("Received")
		for fs.Next() {
			received = append(received, fs.Value())
		}
		date = append(date, h.Get("Date"))
	} else {
		received, date = scanFields(raw, "received"), scanFields(raw, "date")
	}
	var newest time.Time
	for _, r := range received {
		i := strings.LastIndexByte(r, ';')
		if i < 0 {
			continue
		}
		if t, err := mail.ParseDate(strings.TrimSpace(r[i+1:])); err == nil && t.After(newest) {
			newest = t
		}
	}
	if !newest.IsZero() {
		return newest
	}
	for _, d := range date {
		if t, err := mail.ParseDate(strings.TrimSpace(d)); err == nil {
			return t
		}
	}
	return time.Time{}
}

// scanFields is the tolerant fallback for headers textproto refuses: the
// unfolded values of every field called name (lower case) up to the first
// empty line.
func scanFields(raw []byte, name string) []string {
	var out []string
	lines := bytes.Split(raw, []byte("\n"))
	for i := 0; i < len(lines); i++ {
		l := bytes.TrimRight(lines[i], "\r")
		if len(l) == 0 {
			break
		}
		k, v, ok := bytes.Cut(l, []byte(":"))
		if !ok || !strings.EqualFold(strings.TrimSpace(string(k)), name) {
			continue
		}
		val := string(v)
		for i+1 < len(lines) {
			c := bytes.TrimRight(lines[i+1], "\r")
			if len(c) == 0 || (c[0] != ' ' && c[0] != '\t') {
				break
			}
			val += " " + strings.TrimSpace(string(c))
			i++
		}
		out = append(out, strings.TrimSpace(val))
	}
	return out
}
