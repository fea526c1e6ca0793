package sinks_test

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailhaul/mailhaul/internal/testserver"
	"github.com/mailhaul/mailhaul/migrate"
	"github.com/mailhaul/mailhaul/sinks"
	"github.com/mailhaul/mailhaul/sources"
)

// TestMboxToIMAP copies the Thunderbird sample profile into Dovecot: every
// message is served back byte-identical (with the CRLF line ends IMAP
// serves), with its flags and keywords, the From_ line date as
// INTERNALDATE, the .sbd hierarchy and non-ASCII names as folders, and
// Thunderbird's Sent/Drafts/Trash in the server's special-use folders.
func TestMboxToIMAP(t *testing.T) {
	d := testserver.StartDovecot(t)
	ctx := context.Background()
	root, _ := filepath.Abs("../testdata/thunderbird/Mail/Local Folders")
	mb, err := sources.OpenMbox(root, sources.MboxOptions{})
	if err != nil {
		t.Fatal(err)
	}
	src := withoutFolder{mb, "notes.txt"} // not an mbox file: a skipped folder
	// What the source hands out: folder -> bodies, flags, dates.
	type want struct {
		folder string
		body   []byte
		flags  []string
		date   time.Time
	}
	var wants []want
	mbs, err := src.Mailboxes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, mb := range mbs {
		err := src.List(ctx, mb, func(m migrate.Message) error {
			var b bytes.Buffer
			if err := src.Fetch(ctx, m, &b); err != nil {
				return err
			}
			wants = append(wants, want{mb.Name, b.Bytes(), m.Flags, m.Date})
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	sink, err := sinks.OpenIMAP(ctx, cfgFor(t, d, "alice"), 2, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	rep := run(t, src, sink, filepath.Join(t.TempDir(), "cp.db"))
	if rep.Copied != len(wants) || len(wants) < 10 {
		t.Fatalf("copied %d of %d", rep.Copied, len(wants))
	}
	got := dump(t, client(t, d, "alice"))
	byBody := map[string]stored{}
	where := map[string]string{}
	for f, ms := range got {
		for _, m := range ms {
			byBody[m.body] = m
			where[m.body] = f
		}
	}
	// Thunderbird's folders land in the server's folders of the same use.
	destOf := map[string]string{"INBOX": "INBOX", "Sent": "Sent", "Drafts": "Drafts", "Trash": "Trash", "Geschäftlich/Kunden": "Geschäftlich/Kunden", "Archives/2019": "Archives/2019"}
	for _, w := range wants {
		body := string(toCRLF(w.body))
		m, ok := byBody[body]
		if !ok {
			t.Errorf("%s: %q not served byte-identical", w.folder, firstLine(body))
			continue
		}
		if df, ok := destOf[w.folder]; ok && where[body] != df {
			t.Errorf("%s: message landed in %q, want %q", w.folder, where[body], df)
		}
		for _, f := range w.flags {
			if !strings.Contains(m.flags, f) {
				t.Errorf("%s %q: flag %s lost (have %q)", w.folder, firstLine(body), f, m.flags)
			}
		}
		if !w.date.IsZero() && !m.date.Equal(w.date.UTC()) {
			t.Errorf("%s %q: INTERNALDATE %v, want the From_ date %v", w.folder, firstLine(body), m.date, w.date.UTC())
		}
	}
}

// withoutFolder hides one folder of a source.
type withoutFolder struct {
	*sources.Mbox
	name string
}

func (w withoutFolder) Mailboxes(ctx context.Context) ([]migrate.Mailbox, error) {
	mbs, err := w.Mbox.Mailboxes(ctx)
	var out []migrate.Mailbox
	for _, mb := range mbs {
		if mb.Name != w.name {
			out = append(out, mb)
		}
	}
	return out, err
}
