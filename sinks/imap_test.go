package sinks_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/mailhaul/mailhaul/checkpoint"
	"github.com/mailhaul/mailhaul/internal/imapconn"
	"github.com/mailhaul/mailhaul/internal/maildir"
	"github.com/mailhaul/mailhaul/internal/testserver"
	"github.com/mailhaul/mailhaul/migrate"
	"github.com/mailhaul/mailhaul/sinks"
	"github.com/mailhaul/mailhaul/sources"
)

func cfgFor(t *testing.T, d *testserver.Dovecot, user string) *imapconn.Config {
	e, err := imapconn.ParseURL("imaps://" + user + "@" + d.IMAPSAddr)
	if err != nil {
		t.Fatal(err)
	}
	return &imapconn.Config{Endpoint: e, CAFile: d.CAFile, Password: d.Password(user)}
}

func client(t *testing.T, d *testserver.Dovecot, user string) *imapclient.Client {
	c, err := imapclient.DialTLS(d.IMAPSAddr, &imapclient.Options{TLSConfig: d.TLSConfig()})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Login(user, d.Password(user)).Wait(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

type seedMsg struct {
	folder string
	body   string
	flags  []imap.Flag
	date   time.Time
}

func seed(t *testing.T, c *imapclient.Client, msgs []seedMsg) {
	made := map[string]bool{"INBOX": true}
	for _, m := range msgs {
		if !made[m.folder] {
			if err := c.Create(m.folder, nil).Wait(); err != nil && !strings.Contains(err.Error(), "exists") {
				t.Fatalf("create %s: %v", m.folder, err)
			}
			made[m.folder] = true
		}
		cmd := c.Append(m.folder, int64(len(m.body)), &imap.AppendOptions{Flags: m.flags, Time: m.date})
		cmd.Write([]byte(m.body))
		cmd.Close()
		if _, err := cmd.Wait(); err != nil {
			t.Fatalf("append to %s: %v", m.folder, err)
		}
	}
}

type stored struct {
	body  string
	flags string
	date  time.Time
}

// dump reads every message of every folder (BODY.PEEK[], flags without
// \Recent, INTERNALDATE), keyed by folder, sorted by body.
func dump(t *testing.T, c *imapclient.Client) map[string][]stored {
	list, err := c.List("", "*", nil).Collect()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]stored{}
	for _, l := range list {
		if sd, err := c.Select(l.Mailbox, &imap.SelectOptions{ReadOnly: true}).Wait(); err != nil || sd.NumMessages == 0 {
			continue
		}
		sec := &imap.FetchItemBodySection{Peek: true}
		msgs, err := c.Fetch(imap.SeqSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{Flags: true, InternalDate: true, BodySection: []*imap.FetchItemBodySection{sec}}).Collect()
		if err != nil {
			t.Fatalf("fetch %s: %v", l.Mailbox, err)
		}
		for _, m := range msgs {
			var fl []string
			for _, f := range m.Flags {
				if !strings.EqualFold(string(f), `\Recent`) {
					fl = append(fl, string(f))
				}
			}
			sort.Strings(fl)
			out[l.Mailbox] = append(out[l.Mailbox], stored{body: string(m.FindBodySection(sec)), flags: strings.Join(fl, " "), date: m.InternalDate.UTC()})
		}
		sort.Slice(out[l.Mailbox], func(i, j int) bool { return out[l.Mailbox][i].body < out[l.Mailbox][j].body })
	}
	return out
}

func msg(id, subject, extra string) string {
	h := "From: a@example.org\r\nTo: b@example.org\r\nSubject: " + subject + "\r\n"
	if id != "" {
		h += "Message-ID: <" + id + "@example.org>\r\n"
	}
	return h + "\r\n" + "Body of " + subject + "\r\n" + extra
}

func run(t *testing.T, src migrate.Source, dst migrate.Sink, cp string) migrate.Report {
	t.Helper()
	store, err := checkpoint.Open(cp, "src", "dst")
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	rep, err := migrate.Run(context.Background(), migrate.Options{Source: src, Sink: dst, Checkpoint: store, IncludeDeleted: true, RetryBase: 10 * time.Millisecond})
	if err != nil {
		t.Fatalf("run: %v (report %+v)", err, rep)
	}
	if len(rep.Skipped) > 0 {
		t.Fatalf("skipped: %+v", rep.Skipped)
	}
	return rep
}

func TestIMAPToIMAP(t *testing.T) {
	src := testserver.StartDovecot(t, testserver.WithMailbox("Sent Items", `\Sent`), testserver.WithMailbox("Papierkorb", `\Trash`))
	dst := testserver.StartDovecot(t, testserver.WithUser("bob", "bob-pw-42"))
	d1 := time.Date(2019, 6, 3, 10, 0, 0, 0, time.FixedZone("", 2*3600))
	d2 := time.Date(2021, 1, 15, 23, 59, 58, 0, time.UTC)
	big := msg("big1", "large", strings.Repeat("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde\r\n", 80000)) // ~5 MiB: spooled to a file
	msgs := []seedMsg{
		{"INBOX", msg("m1", "hello", ""), []imap.Flag{imap.FlagSeen}, d1},
		{"INBOX", msg("m2", "keywords", ""), []imap.Flag{imap.FlagSeen, imap.FlagFlagged, "$Forwarded", "Important"}, d2},
		{"INBOX", msg("", "no message-id", "8-bit: gr\xc3\xbc\xc3\x9fe\r\n"), nil, d1},
		{"INBOX", big, []imap.Flag{imap.FlagAnswered}, d2},
		{"Sent Items", msg("s1", "sent one", ""), []imap.Flag{imap.FlagSeen}, d1},
		{"Papierkorb", msg("t1", "trashed", ""), []imap.Flag{imap.FlagSeen, imap.FlagDeleted}, d1},
		{"Archiv/2020/Überweisungen", msg("a1", "nested non-ascii", ""), []imap.Flag{imap.FlagDraft}, d2},
		{"Projekte/日本", msg("a2", "cjk folder", ""), nil, d2},
	}
	sc := client(t, src, "alice")
	seed(t, sc, msgs)

	ctx := context.Background()
	source, err := sources.OpenIMAP(ctx, cfgFor(t, src, "alice"), 3)
	if err != nil {
		t.Fatal(err)
	}
	defer source.Close()
	var warnings []error
	sink, err := sinks.OpenIMAP(ctx, cfgFor(t, dst, "bob"), 3, func(err error) { warnings = append(warnings, err) })
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()

	mbs, err := source.Mailboxes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	uses := map[string]string{}
	for _, mb := range mbs {
		uses[mb.Name] = mb.SpecialUse
		if mb.Epoch == "" && !mb.NoSelect {
			t.Errorf("folder %q has no epoch", mb.Name)
		}
	}
	if uses["Sent Items"] != `\Sent` || uses["Papierkorb"] != `\Trash` || uses["INBOX"] != "" {
		t.Errorf("special use of source folders: %v", uses)
	}
	if _, ok := uses["Archiv/2020/Überweisungen"]; !ok {
		t.Errorf("nested folder missing: %v", uses)
	}

	cp := filepath.Join(t.TempDir(), "state.db")
	opts := migrate.Options{Source: source, Sink: sink, IncludeDeleted: true, RetryBase: 10 * time.Millisecond}
	store, err := checkpoint.Open(cp, "src", "dst")
	if err != nil {
		t.Fatal(err)
	}
	opts.Checkpoint = store
	rep, err := migrate.Run(ctx, opts)
	store.Close()
	if err != nil || len(rep.Skipped) > 0 {
		t.Fatalf("run: %v %+v", err, rep.Skipped)
	}
	if rep.Copied != len(msgs) {
		t.Errorf("copied %d, want %d", rep.Copied, len(msgs))
	}

	got := dump(t, client(t, dst, "bob"))
	want := dump(t, sc)
	rename := map[string]string{"Sent Items": "Sent", "Papierkorb": "Trash"}
	for f, ms := range want {
		df := f
		if r, ok := rename[f]; ok {
			df = r
		}
		if len(got[df]) != len(ms) {
			t.Errorf("folder %q -> %q: %d messages, want %d", f, df, len(got[df]), len(ms))
			continue
		}
		for i := range ms {
			g, w := got[df][i], ms[i]
			if g.body != w.body {
				t.Errorf("folder %q message %d: body differs (%d vs %d bytes)", df, i, len(g.body), len(w.body))
			}
			if g.flags != w.flags {
				t.Errorf("folder %q message %d: flags %q, want %q", df, i, g.flags, w.flags)
			}
			if !g.date.Equal(w.date) {
				t.Errorf("folder %q message %d: date %v, want %v", df, i, g.date, w.date)
			}
		}
	}
	for _, f := range []string{"Sent Items", "Papierkorb"} {
		if len(got[f]) > 0 {
			t.Errorf("special-use folder %q was copied by name, not mapped", f)
		}
	}

	// A second run copies nothing.
	store, err = checkpoint.Open(cp, "src", "dst")
	if err != nil {
		t.Fatal(err)
	}
	opts.Checkpoint = store
	rep, err = migrate.Run(ctx, opts)
	store.Close()
	if err != nil || rep.Copied != 0 || rep.Already != len(msgs) {
		t.Errorf("second run: %v copied %d already %d", err, rep.Copied, rep.Already)
	}
	_ = warnings
}

// TestMaildirToIMAPToMaildir copies the Maildir corpus into Dovecot and
// back out: Dovecot's own files hold exactly the bytes of the source files,
// and the final Maildir has the same bytes (as Dovecot serves them).
func TestMaildirToIMAPToMaildir(t *testing.T) {
	d := testserver.StartDovecot(t)
	ctx := context.Background()
	srcDir, _ := filepath.Abs("../testdata/maildir")
	src, err := sources.OpenMaildir(srcDir)
	if err != nil {
		t.Fatal(err)
	}
	sink, err := sinks.OpenIMAP(ctx, cfgFor(t, d, "alice"), 2, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	rep := run(t, src, sink, filepath.Join(t.TempDir(), "a.db"))
	want := messageFiles(t, srcDir)
	if rep.Copied != len(want) || len(want) < 5 {
		t.Fatalf("copied %d of %d", rep.Copied, len(want))
	}
	// IMAP serves CRLF line ends: every source file comes back from
	// BODY.PEEK[] byte-identical (bare-LF files with CRLF line ends).
	all := dump(t, client(t, d, "alice"))
	served := map[string]bool{}
	for _, ms := range all {
		for _, m := range ms {
			served[sum([]byte(m.body))] = true
		}
	}
	for _, f := range want {
		b, _ := os.ReadFile(f)
		if !served[sum(toCRLF(b))] {
			t.Errorf("%s is not served byte-identical by Dovecot", f)
		}
	}
	// Flags and keywords survived.
	var flags []string
	for _, ms := range all {
		for _, m := range ms {
			flags = append(flags, m.flags)
		}
	}
	joined := strings.Join(flags, "|")
	for _, f := range []string{`\Flagged`, `\Answered`, `$Forwarded-Invoice`, `\Draft`} {
		if !strings.Contains(joined, f) {
			t.Errorf("flag %s lost: %s", f, joined)
		}
	}

	// IMAP -> Maildir.
	source, err := sources.OpenIMAP(ctx, cfgFor(t, d, "alice"), 2)
	if err != nil {
		t.Fatal(err)
	}
	defer source.Close()
	out := t.TempDir()
	msink, err := sinks.OpenMaildir(out, maildir.PlusPlus)
	if err != nil {
		t.Fatal(err)
	}
	store, err := checkpoint.Open(filepath.Join(t.TempDir(), "b.db"), "s", "d")
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	rep2, err := migrate.Run(ctx, migrate.Options{Source: source, Sink: msink, Checkpoint: store, IncludeDeleted: true})
	if err != nil || rep2.Copied != len(want) {
		t.Fatalf("imap -> maildir: %v, copied %d", err, rep2.Copied)
	}
	got := messageFiles(t, out)
	for f, ms := range all {
		for _, m := range ms {
			if _, ok := got[sum([]byte(m.body))]; !ok {
				t.Errorf("%s: message %q not byte-identical in the Maildir copy", f, firstLine(m.body))
			}
		}
	}
}

// messageFiles maps the hash of every message file under a Maildir tree
// (cur/ and new/ of every folder) to its path.
func messageFiles(t *testing.T, root string) map[string]string {
	out := map[string]string{}
	filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil || fi.IsDir() || strings.HasPrefix(fi.Name(), ".") {
			return nil
		}
		if d := filepath.Base(filepath.Dir(p)); d != "cur" && d != "new" {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		out[sum(b)] = p
		return nil
	})
	return out
}

func toCRLF(b []byte) []byte {
	return bytes.ReplaceAll(bytes.ReplaceAll(b, []byte("\r\n"), []byte("\n")), []byte("\n"), []byte("\r\n"))
}

func sum(b []byte) string { h := sha256.Sum256(b); return hex.EncodeToString(h[:]) }

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// TestIMAPRecovery simulates a run killed after appending but before
// recording the copies, then runs again: no message may be duplicated.
func TestIMAPRecovery(t *testing.T) {
	src := testserver.StartDovecot(t)
	dst := testserver.StartDovecot(t)
	var msgs []seedMsg
	for i := 0; i < 6; i++ {
		id := fmt.Sprintf("r%d", i)
		if i == 4 {
			id = "" // no Message-ID: recognised by hash
		}
		msgs = append(msgs, seedMsg{"INBOX", msg(id, fmt.Sprintf("msg %d", i), ""), nil, time.Date(2020, 1, 1+i, 0, 0, 0, 0, time.UTC)})
	}
	// Two byte-identical messages: each must end up once.
	msgs = append(msgs, seedMsg{"INBOX", msg("dup", "twin", ""), nil, time.Date(2020, 2, 1, 0, 0, 0, 0, time.UTC)})
	msgs = append(msgs, seedMsg{"INBOX", msg("dup", "twin", ""), nil, time.Date(2020, 2, 1, 0, 0, 0, 0, time.UTC)})
	seed(t, client(t, src, "alice"), msgs)
	// The destination already holds an unrelated copy of m "r0" below the
	// mark: it must not be mistaken for this run's copy.
	seed(t, client(t, dst, "alice"), []seedMsg{{"INBOX", msgs[0].body, nil, msgs[0].date}})

	ctx := context.Background()
	source, err := sources.OpenIMAP(ctx, cfgFor(t, src, "alice"), 2)
	if err != nil {
		t.Fatal(err)
	}
	defer source.Close()
	sink, err := sinks.OpenIMAP(ctx, cfgFor(t, dst, "alice"), 2, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	cp := filepath.Join(t.TempDir(), "state.db")

	// The "killed" run: intents for everything, appends for all but the
	// last message, no Complete.
	store, err := checkpoint.Open(cp, "src", "dst")
	if err != nil {
		t.Fatal(err)
	}
	mbs, _ := source.Mailboxes(ctx)
	var inbox migrate.Mailbox
	for _, mb := range mbs {
		if mb.Name == "INBOX" {
			inbox = mb
		}
	}
	store.SetEpoch("INBOX", inbox.Epoch)
	dest, err := sink.Prepare(ctx, inbox, "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	mark, err := sink.Mark(ctx, dest)
	if err != nil {
		t.Fatal(err)
	}
	var list []migrate.Message
	source.List(ctx, inbox, func(m migrate.Message) error { list = append(list, m); return nil })
	var intents []migrate.Intent
	var bodies []*migrate.Body
	for _, m := range list {
		var buf bytes.Buffer
		if err := source.Fetch(ctx, m, &buf); err != nil {
			t.Fatal(err)
		}
		b, _ := migrate.NewBody(&buf, 0, "")
		bodies = append(bodies, b)
		intents = append(intents, migrate.Intent{Folder: "INBOX", Epoch: inbox.Epoch, ID: m.ID, Dest: dest, Mark: mark,
			MessageID: b.MessageID(), Size: b.Size(), SHA256: b.SHA256(), Date: m.Date, Flags: m.Flags})
	}
	if err := store.AddIntents(intents); err != nil {
		t.Fatal(err)
	}
	for i, m := range list[:len(list)-1] {
		if _, err := sink.Append(ctx, dest, m, bodies[i]); err != nil {
			t.Fatal(err)
		}
	}
	store.Close()

	// The next run.
	rep := run(t, source, sink, cp)
	if rep.Recovered != len(list)-1 {
		t.Errorf("recovered %d, want %d", rep.Recovered, len(list)-1)
	}
	if rep.Copied != 1 {
		t.Errorf("copied %d, want 1", rep.Copied)
	}
	got := dump(t, client(t, dst, "alice"))["INBOX"]
	if len(got) != len(msgs)+1 {
		t.Fatalf("destination holds %d messages, want %d", len(got), len(msgs)+1)
	}
	count := map[string]int{}
	for _, m := range got {
		count[m.body]++
	}
	for _, m := range msgs {
		want := 1
		if m.body == msgs[0].body {
			want = 2 // the pre-existing copy + ours
		}
		if m.body == msgs[len(msgs)-1].body {
			want = 2 // the twins
		}
		if count[m.body] != want {
			t.Errorf("%q: %d copies, want %d", firstLine(strings.SplitN(m.body, "Subject: ", 2)[1]), count[m.body], want)
		}
	}
	_ = io.Discard
}
