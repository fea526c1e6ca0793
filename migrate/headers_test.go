package migrate

import (
	"testing"
	"time"
)

func TestHeaderDate(t *testing.T) {
	for _, c := range []struct {
		name, raw string
		want      string
	}{
		{"newest Received wins", "Received: from a by b; Tue, 1 Mar 2022 10:00:00 +0000\r\nReceived: from c by a;\r\n\tMon, 28 Feb 2022 09:00:00 +0000\r\nReceived: from x by y; Wed, 2 Mar 2022 08:00:00 +0100\r\nDate: Sun, 27 Feb 2022 00:00:00 +0000\r\n\r\nbody", "2022-03-02T07:00:00Z"},
		{"Date when no Received", "Subject: x\nDate: Sun, 27 Feb 2022 12:30:00 -0500\n\nbody\n", "2022-02-27T17:30:00Z"},
		{"bad Received falls back to Date", "Received: garbage\nDate: Sun, 27 Feb 2022 12:30:00 +0000\n\n", "2022-02-27T12:30:00Z"},
		{"malformed header, tolerant scan", "Subject : obsolete space\nDate: Sun, 27 Feb 2022 12:30:00 +0000\n\n", "2022-02-27T12:30:00Z"},
		{"nothing", "Subject: x\n\nDate: Sun, 27 Feb 2022 12:30:00 +0000\n", ""},
	} {
		got := HeaderDate([]byte(c.raw))
		if c.want == "" {
			if !got.IsZero() {
				t.Errorf("%s: got %v, want zero", c.name, got)
			}
			continue
		}
		if w, _ := time.Parse(time.RFC3339, c.want); !got.Equal(w) {
			t.Errorf("%s: got %v, want %v", c.name, got.UTC(), w)
		}
	}
}
