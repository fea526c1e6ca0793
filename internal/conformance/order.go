package conformance

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// OrderCase: each destination folder receives its source folder's
// messages in the source's order (a client's "order received"), with
// fetches and appends in parallel and large messages, fetched alone,
// among small ones, and messages with a NUL byte (which an IMAP sink
// appends on their own, between batches). A Maildir has no storage order to check (its file
// names; a server numbers them when it first reads the folder).
func OrderCase(t *testing.T, tf TargetFunc) {
	tgt := tf.New(t)
	if tgt.Q.NoOrder {
		t.Skipf("%s keeps no storage order", tgt.Name)
	}
	var msgs []Msg
	base := time.Date(2021, 3, 1, 8, 0, 0, 0, time.UTC)
	for _, f := range []string{"INBOX", "Lists", "Projects/2021"} {
		for i := 0; i < 70; i++ {
			body := fmt.Sprintf("Message-ID: <order-%s-%d@example.org>\r\nSubject: %s %d\r\n\r\n", strings.ReplaceAll(f, "/", "."), i, f, i)
			switch {
			case i%9 == 4:
				body += strings.Repeat("a large message, fetched alone\r\n", 8000)
			case i%11 == 6 && tgt.Q.NUL != "refused":
				body += "a NUL byte \x00, appended on its own among a batch\r\n"
			default:
				body += "small\r\n"
			}
			// Dates out of order: the order kept is the source's, not
			// the dates'.
			msgs = append(msgs, Msg{Folder: f, Body: []byte(body), Date: base.Add(time.Duration((i*37)%70) * time.Hour)})
		}
	}
	copyWith(t, tgt, NewMemSource(msgs, nil), "", nil)
	got := checkExactlyOnce(t, tgt, msgs)
	index := map[string]int{} // body as stored -> position in its source folder
	for i, m := range msgs {
		index[want(tgt, m.Body)] = i % 70
	}
	last := map[string]int{}
	for _, s := range got {
		i, ok := index[string(s.Body)]
		if !ok {
			continue // reported by checkExactlyOnce
		}
		if p, seen := last[s.Folder]; seen && i != p+1 {
			t.Fatalf("%s: folder %q holds message %d right after %d: the source's order is not kept", tgt.Name, s.Folder, i, p)
		}
		last[s.Folder] = i
	}
}
