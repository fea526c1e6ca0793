package migrate_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailhaul/mailhaul/checkpoint"
	"github.com/mailhaul/mailhaul/internal/maildir"
	"github.com/mailhaul/mailhaul/migrate"
	"github.com/mailhaul/mailhaul/sinks"
	"github.com/mailhaul/mailhaul/sources"
)

// memMsg is one message of a memStore.
type memMsg struct {
	id    string
	body  string
	flags []string
	date  time.Time
	prior time.Time // Message.PriorDate
}

// memStore is an in-memory Source. With imapLike it behaves as the IMAP
// source does for Check: it lists Message-IDs, its bytes are CRLF and its
// folder names are "server names" with a prefix (StoreName).
type memStore struct {
	folders  map[string][]memMsg
	epoch    string
	imapLike bool
	fetches  atomic.Int64
}

type imapStore struct{ *memStore }

func (imapStore) CRLF()                               {}
func (imapStore) ListsMessageIDs()                    {}
func (imapStore) StoreName(mb migrate.Mailbox) string { return "SRV." + mb.Name }
func (s *memStore) Limits() migrate.Limits            { return migrate.Limits{Connections: 2} }
func (s *memStore) Close() error                      { return nil }
func (s *memStore) Mailboxes(context.Context) ([]migrate.Mailbox, error) {
	var out []migrate.Mailbox
	for n := range s.folders {
		out = append(out, migrate.Mailbox{Name: n, Epoch: s.epoch})
	}
	migrate.SortMailboxes(out)
	return out, nil
}

func (s *memStore) List(ctx context.Context, mb migrate.Mailbox, fn func(migrate.Message) error) error {
	for _, m := range s.folders[mb.Name] {
		msg := migrate.Message{Mailbox: mb.Name, ID: m.id, Size: int64(len(m.body)), Flags: m.flags, Date: m.date, PriorDate: m.prior}
		if s.imapLike {
			msg.MessageID = migrate.MessageIDFromHeader([]byte(m.body))
		}
		if err := fn(msg); err != nil {
			return err
		}
	}
	return nil
}

func (s *memStore) Fetch(ctx context.Context, msg migrate.Message, w io.Writer) error {
	s.fetches.Add(1)
	for _, m := range s.folders[msg.Mailbox] {
		if m.id == msg.ID {
			_, err := io.WriteString(w, m.body)
			return err
		}
	}
	return migrate.SkipMessage(fmt.Errorf("message %s gone", msg.ID))
}

// prefixResolver names destination folders as imapStore does.
type prefixResolver struct{}

func (prefixResolver) Resolve(ctx context.Context, src migrate.Mailbox, name string) (string, error) {
	return "SRV." + name, nil
}
func (prefixResolver) RefCopy(folder, ref string) (string, string, bool) { return "", ref, true }

var checkBase = time.Date(2021, 3, 4, 5, 6, 7, 0, time.UTC)

// corpus returns LF messages with every case Check must count right: two
// byte-identical twins, two messages without Message-ID (one of them
// twice), keywords and flags.
func checkCorpus() map[string][]memMsg {
	mk := func(folder string, i int, mid string, flags ...string) memMsg {
		h := ""
		if mid != "" {
			h = "Message-ID: <" + mid + ">\n"
		}
		body := fmt.Sprintf("From: Sender %d <s%d@example.org>\nSubject: =?utf-8?q?caf=C3=A9?= %d in %s\n%s\nline one\nline two %s\n", i, i, i, folder, h, strings.Repeat("x", i))
		return memMsg{id: fmt.Sprintf("%s-%d", folder, i), body: body, flags: flags, date: checkBase.Add(time.Duration(i) * time.Hour)}
	}
	inbox := []memMsg{
		mk("INBOX", 0, "a0@x", `\Seen`),
		mk("INBOX", 1, "a1@x", `\Seen`, `\Flagged`, "Important"),
		mk("INBOX", 2, "a2@x"),
		mk("INBOX", 3, "", `\Seen`), // no Message-ID
		mk("INBOX", 4, "a4@x", `\Answered`, `\Seen`, "$Forwarded"),
	}
	twin := inbox[2]
	twin.id = "INBOX-2-twin"
	inbox = append(inbox, twin)
	nomid := inbox[3]
	nomid.id = "INBOX-3-twin"
	inbox = append(inbox, nomid)
	archive := []memMsg{mk("Archive", 0, "b0@x", `\Seen`), mk("Archive", 1, "", `\Seen`, `\Deleted`), mk("Archive", 2, "b2@x", "project")}
	return map[string][]memMsg{"INBOX": inbox, "Archive": archive}
}

// copyToMaildir copies src into a new Maildir with a checkpoint and
// returns the Maildir root and the checkpoint path.
func copyToMaildir(t *testing.T, src migrate.Source, maps ...string) (string, string) {
	t.Helper()
	dir := t.TempDir()
	root := filepath.Join(dir, "Maildir")
	sink, err := sinks.OpenMaildir(root, maildir.PlusPlus)
	if err != nil {
		t.Fatal(err)
	}
	cp := filepath.Join(dir, "cp.db")
	store, err := checkpoint.Open(cp, "src", "dst")
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	m, err := migrate.ParseMap(maps)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := migrate.Run(context.Background(), migrate.Options{Source: src, Sink: sink, Checkpoint: store, Map: m})
	if err != nil || len(rep.Skipped) > 0 {
		t.Fatalf("copy: %v %+v", err, rep.Skipped)
	}
	return root, cp
}

type checkRun struct {
	rep      migrate.CheckReport
	verdicts []migrate.Verdict
}

func runCheck(t *testing.T, o migrate.CheckOptions) checkRun {
	t.Helper()
	var out checkRun
	var got []migrate.Verdict
	o.Events = migrate.CheckReporterFunc(func(e migrate.CheckEvent) {
		if e.Kind == migrate.CheckMessage {
			got = append(got, *e.Verdict) // the engine reports verdicts from one goroutine
		}
	})
	rep, err := migrate.Check(context.Background(), o)
	if err != nil {
		t.Fatalf("check: %v", err)
	}
	out.rep, out.verdicts = rep, got
	return out
}

// checkMaildir checks src against the Maildir at root, with the
// checkpoint at cp ("" for none).
func checkMaildir(t *testing.T, src migrate.Source, root, cp string, mod func(*migrate.CheckOptions)) checkRun {
	t.Helper()
	dst, err := sources.OpenMaildir(root)
	if err != nil {
		t.Fatal(err)
	}
	sink, err := sinks.OpenMaildir(root, maildir.PlusPlus)
	if err != nil {
		t.Fatal(err)
	}
	o := migrate.CheckOptions{Options: migrate.Options{Source: src}, Dest: dst, Resolver: sink}
	if cp != "" {
		store, err := checkpoint.OpenReadOnly(cp)
		if err != nil {
			t.Fatal(err)
		}
		defer store.Close()
		o.Checkpoint = store
	}
	if mod != nil {
		mod(&o)
	}
	return runCheck(t, o)
}

func (r checkRun) by(side, verdict string) []migrate.Verdict {
	var out []migrate.Verdict
	for _, v := range r.verdicts {
		if v.Side == side && v.Verdict == verdict {
			out = append(out, v)
		}
	}
	return out
}

func (r checkRun) ids(side, verdict string) []string {
	var out []string
	for _, v := range r.by(side, verdict) {
		out = append(out, v.ID)
	}
	sort.Strings(out)
	return out
}

func wantTotals(t *testing.T, r checkRun, found, missing, extra, dup, flags, dates int) {
	t.Helper()
	tt := r.rep.Totals
	if tt.Found != found || tt.Missing != missing || tt.Extra != extra || tt.Duplicate != dup || tt.FlagDiff != flags || tt.DateDiff != dates {
		t.Errorf("totals found %d missing %d extra %d duplicate %d flags %d dates %d, want %d %d %d %d %d %d\nproblems: %+v",
			tt.Found, tt.Missing, tt.Extra, tt.Duplicate, tt.FlagDiff, tt.DateDiff, found, missing, extra, dup, flags, dates, r.rep.Problems)
	}
	n := 0
	for _, v := range r.verdicts {
		if v.Side == "source" {
			n++
		}
	}
	if n != tt.Source {
		t.Errorf("%d source verdicts for %d source messages", n, tt.Source)
	}
}

// maildirFiles returns every message file under root by folder directory.
func maildirFiles(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			if d := filepath.Base(filepath.Dir(p)); d == "cur" || d == "new" {
				out = append(out, p)
			}
		}
		return nil
	})
	sort.Strings(out)
	return out
}

func TestCheckAfterCopy(t *testing.T) {
	src := &memStore{folders: checkCorpus()}
	root, cp := copyToMaildir(t, src)
	total := 10
	t.Run("checkpoint", func(t *testing.T) {
		fetched := src.fetches.Load()
		r := checkMaildir(t, src, root, cp, nil)
		wantTotals(t, r, total, 0, 0, 0, 0, 0)
		if r.rep.Totals.ByCheckpoint != total || !r.rep.Complete() || r.rep.Differences() {
			t.Errorf("by checkpoint %d of %d, complete %v, differences %v", r.rep.Totals.ByCheckpoint, total, r.rep.Complete(), r.rep.Differences())
		}
		if n := src.fetches.Load() - fetched; n != 0 {
			t.Errorf("a check by checkpoint read %d source messages", n)
		}
	})
	t.Run("fingerprint", func(t *testing.T) {
		r := checkMaildir(t, src, root, "", nil)
		wantTotals(t, r, total, 0, 0, 0, 0, 0)
		// Twins (same Message-ID and size) and messages without
		// Message-ID are decided by content: 2 twins + 3 without.
		if r.rep.Totals.ByContent != 5 || r.rep.Totals.ByCheckpoint != 0 {
			t.Errorf("by content %d (want 5), by checkpoint %d", r.rep.Totals.ByContent, r.rep.Totals.ByCheckpoint)
		}
		for _, v := range r.by("source", migrate.VerdictFound) {
			if v.DestID == "" || v.Dest == "" {
				t.Errorf("found without its copy: %+v", v)
			}
		}
	})
	t.Run("recorded-copy-replaced", func(t *testing.T) {
		// The recorded copy of one message is gone, an identical file
		// under another name is there (written again by another tool):
		// found, by fingerprint.
		p := maildirFiles(t, root)[0]
		q := filepath.Join(filepath.Dir(p), "1700000000.Mother.host:2,S")
		if err := os.Rename(p, q); err != nil {
			t.Fatal(err)
		}
		defer os.Rename(q, p)
		r := checkMaildir(t, src, root, cp, nil)
		wantTotals(t, r, total, 0, 0, 0, r.rep.Totals.FlagDiff, 0)
		if r.rep.Totals.ByCheckpoint != total-1 {
			t.Errorf("by checkpoint %d, want %d", r.rep.Totals.ByCheckpoint, total-1)
		}
	})
}

// TestCheckMaildirChanges deletes a destination message, duplicates
// another, changes a flag and renames a folder: each shows up as what it
// is, with and without the checkpoint.
func TestCheckMaildirChanges(t *testing.T) {
	for _, withCP := range []bool{true, false} {
		t.Run(fmt.Sprintf("checkpoint=%v", withCP), func(t *testing.T) {
			src := &memStore{folders: checkCorpus()}
			root, cp := copyToMaildir(t, src)
			if !withCP {
				cp = ""
			}
			files := map[string]string{} // subject marker -> path
			for _, p := range maildirFiles(t, root) {
				b, _ := os.ReadFile(p)
				for _, m := range []string{" 0 in INBOX", " 1 in INBOX", " 4 in INBOX", " 0 in Archive"} {
					if bytes.Contains(b, []byte(m+"\n")) {
						files[m] = p
					}
				}
			}
			// A second copy of INBOX-0, under another name.
			b, _ := os.ReadFile(files[" 0 in INBOX"])
			dup := filepath.Join(filepath.Dir(files[" 0 in INBOX"]), "1600000000.Mdup.host:2,S")
			os.WriteFile(dup, b, 0o600)
			// INBOX-1 deleted.
			os.Remove(files[" 1 in INBOX"])
			// INBOX-4 flagged.
			p := files[" 4 in INBOX"]
			if err := os.Rename(p, p+"F"); err != nil {
				t.Fatal(err)
			}
			r := checkMaildir(t, src, root, cp, nil)
			wantTotals(t, r, 9, 1, 0, 1, 1, 0)
			if got := r.ids("source", migrate.VerdictMissing); fmt.Sprint(got) != "[INBOX-1]" {
				t.Errorf("missing %v", got)
			}
			d := r.by("destination", migrate.VerdictDuplicate)
			if len(d) != 1 || d[0].SourceID != "INBOX-0" || d[0].Folder != "INBOX" ||
				!strings.HasPrefix(d[0].Reason, "message "+d[0].ID+" is a second copy of source message INBOX-0 of \"INBOX\", whose copy is message ") {
				t.Errorf("duplicates %+v", d)
			}
			var diff []migrate.Verdict
			for _, v := range r.rep.Problems {
				if v.Verdict == migrate.VerdictFound {
					diff = append(diff, v)
				}
			}
			if len(diff) != 1 || diff[0].ID != "INBOX-4" || fmt.Sprint(diff[0].FlagsAdded) != `[\Flagged]` || len(diff[0].FlagsLost) != 0 {
				t.Errorf("differences %+v", diff)
			}
			for _, v := range r.rep.Problems {
				if v.Side == "source" && (v.From == "" || !strings.Contains(v.Subject, "café")) {
					t.Errorf("problem without sender or decoded subject: %+v", v)
				}
			}
			// Rename the destination's Archive: every message of it is
			// missing, and the renamed folder is named.
			if err := os.Rename(filepath.Join(root, ".Archive"), filepath.Join(root, ".Archiv-alt")); err != nil {
				t.Fatal(err)
			}
			r = checkMaildir(t, src, root, cp, nil)
			if got := r.ids("source", migrate.VerdictMissing); fmt.Sprint(got) != "[Archive-0 Archive-1 Archive-2 INBOX-1]" {
				t.Errorf("missing after rename %v", got)
			}
			elsewhere := 0
			for _, v := range r.by("source", migrate.VerdictMissing) {
				if v.Elsewhere == "Archiv-alt" {
					elsewhere++
				}
			}
			// Archive-1 has no Message-ID: it cannot be looked for.
			if elsewhere != 2 || fmt.Sprint(r.rep.Unmapped) != "[Archiv-alt]" || len(r.rep.Warnings) != 1 || !strings.Contains(r.rep.Warnings[0], "Archiv-alt") {
				t.Errorf("renamed folder: %d found elsewhere, unmapped %v, warnings %v", elsewhere, r.rep.Unmapped, r.rep.Warnings)
			}
			for _, f := range r.rep.Folders {
				if f.Name == "Archive" && (f.DestExists || f.Missing != 3) {
					t.Errorf("Archive row %+v", f)
				}
			}
		})
	}
}

// crlfForm is what an IMAP server stores of an LF message.
func crlfForm(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "\r\n", "\n"), "\n", "\r\n")
}

// TestCheckCRLF checks an LF source against a destination that stores
// the CRLF form (as IMAP does), without a checkpoint: sizes are compared
// in that form, and a copy one byte off is a different message.
func TestCheckCRLF(t *testing.T) {
	corpus := checkCorpus()
	dstFolders := map[string][]memMsg{}
	for f, msgs := range corpus {
		for _, m := range msgs {
			m.body = crlfForm(m.body)
			m.id = "d" + m.id
			dstFolders[f] = append(dstFolders[f], m)
		}
	}
	src := &memStore{folders: corpus}
	dst := imapStore{&memStore{folders: dstFolders, epoch: "7", imapLike: true}}
	check := func() checkRun {
		return runCheck(t, migrate.CheckOptions{Options: migrate.Options{Source: src}, Dest: dst, Resolver: prefixResolver{}})
	}
	r := check()
	wantTotals(t, r, 10, 0, 0, 0, 0, 0)
	for _, f := range r.rep.Folders {
		if !f.DestExists || !strings.HasPrefix(f.Dest, "SRV.") {
			t.Errorf("folder %+v", f)
		}
	}
	// The copy of Archive-0 altered (one byte more), that of INBOX-3 (no
	// Message-ID) too.
	for i, m := range dstFolders["Archive"] {
		if m.id == "dArchive-0" {
			dstFolders["Archive"][i].body = strings.Replace(m.body, "line one", "line one!", 1)
		}
	}
	for i, m := range dstFolders["INBOX"] {
		if m.id == "dINBOX-3" {
			dstFolders["INBOX"][i].body = strings.Replace(m.body, "line one", "line 1", 1)
		}
	}
	r = check()
	wantTotals(t, r, 8, 2, 2, 0, 0, 0)
	// INBOX-3 and INBOX-3-twin are identical: either is the one missing.
	if got := fmt.Sprint(r.ids("source", migrate.VerdictMissing)); got != "[Archive-0 INBOX-3]" && got != "[Archive-0 INBOX-3-twin]" {
		t.Errorf("missing %v", got)
	}
	for _, v := range r.by("destination", migrate.VerdictExtra) {
		if v.ID == "dArchive-0" && !strings.Contains(v.Reason, "same Message-ID as source message Archive-0") {
			t.Errorf("extra %+v", v)
		}
	}
}

// TestCheckFlagsAndDates: keywords a destination does not keep at all
// are reported as not kept, not as differences; a keyword it keeps on
// other messages is a difference; dates differ only to the second.
func TestCheckFlagsAndDates(t *testing.T) {
	corpus := checkCorpus()
	mkDst := func(edit func(f string, m *memMsg)) imapStore {
		dst := map[string][]memMsg{}
		for f, msgs := range corpus {
			for _, m := range msgs {
				m.body = crlfForm(m.body)
				m.id = "d" + m.id
				var fl []string
				for _, x := range m.flags {
					if strings.HasPrefix(x, `\`) {
						fl = append(fl, strings.ToUpper(x[:2])+strings.ToLower(x[2:]))
					}
				}
				m.flags = append(fl, `\Recent`)
				edit(f, &m)
				dst[f] = append(dst[f], m)
			}
		}
		return imapStore{&memStore{folders: dst, imapLike: true}}
	}
	src := &memStore{folders: corpus}
	// No keyword anywhere in the destination; dates off by less than a second.
	dst := mkDst(func(f string, m *memMsg) { m.date = m.date.Add(700 * time.Millisecond) })
	r := runCheck(t, migrate.CheckOptions{Options: migrate.Options{Source: src}, Dest: dst, Resolver: prefixResolver{}})
	wantTotals(t, r, 10, 0, 0, 0, 0, 0)
	for _, f := range r.rep.Folders {
		want := map[string]string{"INBOX": "[$Forwarded Important]", "Archive": "[project]"}[f.Name]
		if fmt.Sprint(f.NotKept) != want {
			t.Errorf("%s: keywords not kept %v, want %s", f.Name, f.NotKept, want)
		}
	}
	// The destination keeps "Important" (another message has it), so
	// INBOX-1's copy without it differs; INBOX-0's date is a second off.
	dst = mkDst(func(f string, m *memMsg) {
		switch m.id {
		case "dINBOX-2":
			m.flags = append(m.flags, "important")
		case "dINBOX-0":
			m.date = m.date.Add(time.Second)
		}
	})
	r = runCheck(t, migrate.CheckOptions{Options: migrate.Options{Source: src}, Dest: dst, Resolver: prefixResolver{}})
	wantTotals(t, r, 10, 0, 0, 0, 2, 1)
	for _, v := range r.rep.Problems {
		switch v.ID {
		case "INBOX-1":
			if fmt.Sprint(v.FlagsLost) != "[Important]" {
				t.Errorf("INBOX-1: %+v", v)
			}
		case "INBOX-2", "INBOX-2-twin":
			// One of the twins got the keyword: a flag added.
			if fmt.Sprint(v.FlagsAdded) != "[important]" {
				t.Errorf("%s: %+v", v.ID, v)
			}
		case "INBOX-0":
			if v.DestDate.IsZero() {
				t.Errorf("INBOX-0: %+v", v)
			}
		default:
			t.Errorf("unexpected problem %+v", v)
		}
	}

	// A copy dated as an earlier mailhaul dated its message (an mbox
	// message's PriorDate) is no date difference; another date is.
	prior := &memStore{folders: map[string][]memMsg{}}
	for f, msgs := range corpus {
		for _, m := range msgs {
			if m.id == "INBOX-0" || m.id == "INBOX-1" {
				m.prior = m.date.Add(time.Hour)
			}
			prior.folders[f] = append(prior.folders[f], m)
		}
	}
	dst = mkDst(func(f string, m *memMsg) {
		if m.id == "dINBOX-0" || m.id == "dINBOX-3" {
			m.date = m.date.Add(time.Hour)
		}
		if m.id == "dINBOX-2" {
			m.flags = append(m.flags, "important")
		}
	})
	r = runCheck(t, migrate.CheckOptions{Options: migrate.Options{Source: prior}, Dest: dst, Resolver: prefixResolver{}})
	var dated []string
	for _, v := range r.rep.Problems {
		if !v.DestDate.IsZero() {
			dated = append(dated, v.ID)
		}
	}
	if len(dated) != 1 || !strings.HasPrefix(dated[0], "INBOX-3") { // INBOX-3 or its twin, whichever got that copy
		t.Errorf("date differences %v, want INBOX-3's only (INBOX-0's copy has its prior date)", dated)
	}
}

// TestCheckSelection: messages outside the filters are not required and
// their copies are not extra; destination messages outside them are not
// extra either; two source folders mapped to one destination folder are
// compared with it together.
func TestCheckSelection(t *testing.T) {
	corpus := checkCorpus()
	src := &memStore{folders: corpus}
	root, _ := copyToMaildir(t, src)
	// The copies of INBOX-0 and INBOX-1 (the oldest) deleted, an old
	// message of the destination's own added.
	for _, p := range maildirFiles(t, root) {
		b, _ := os.ReadFile(p)
		if bytes.Contains(b, []byte(" 0 in INBOX\n")) || bytes.Contains(b, []byte(" 1 in INBOX\n")) {
			os.Remove(p)
		}
	}
	old := filepath.Join(root, "cur", "1000.Mold.host:2,S")
	os.WriteFile(old, []byte("Message-ID: <own@x>\n\nold\n"), 0o600)
	os.Chtimes(old, checkBase.Add(-time.Hour), checkBase.Add(-time.Hour))
	since := checkBase.Add(90 * time.Minute) // INBOX-0, -1 and Archive-0, -1 are older
	r := checkMaildir(t, src, root, "", func(o *migrate.CheckOptions) { o.Since = since })
	if r.rep.Totals.Missing != 0 || r.rep.Totals.Extra != 0 || r.rep.Totals.Filtered != 4 || r.rep.Totals.Found != 6 {
		t.Errorf("with --since: %+v\n%+v", r.rep.Totals, r.rep.Problems)
	}
	r = checkMaildir(t, src, root, "", nil)
	if r.rep.Totals.Missing != 2 || r.rep.Totals.Extra != 1 {
		t.Errorf("without --since: %+v", r.rep.Totals)
	}

	// Two source folders into one destination folder.
	src2 := &memStore{folders: map[string][]memMsg{"A": corpus["INBOX"][:2], "B": corpus["Archive"]}}
	root2, cp2 := copyToMaildir(t, src2, "A=X", "B=X")
	r = checkMaildir(t, src2, root2, cp2, func(o *migrate.CheckOptions) { o.Map = map[string]string{"A": "X", "B": "X"} })
	wantTotals(t, r, 5, 0, 0, 0, 0, 0)
	if len(r.rep.Folders) != 2 || r.rep.Folders[0].Dest != "X" || r.rep.Folders[1].Dest != "X" || r.rep.Totals.ByCheckpoint != 5 {
		t.Errorf("folders %+v", r.rep.Folders)
	}
}

func TestHeaderEnd(t *testing.T) {
	for in, want := range map[string]int{
		"A: b\n\nbody":       6,
		"A: b\r\n\r\nbody":   8,
		"A: b\n\r\nbody":     7,
		"\nbody":             1,
		"\r\nbody":           2,
		"A: b\nC: d":         -1,
		"A: b\r\n\nx\n\nyy":  7,
		"":                   -1,
		"A: b\n \n folded\n": -1,
	} {
		if got := migrate.HeaderEnd([]byte(in)); got != want {
			t.Errorf("HeaderEnd(%q) = %d, want %d", in, got, want)
		}
	}
}

// TestCheckAfterDedupe: the POP3 merge of the README. A local copy
// (Thunderbird's, with its own header fields) is copied first; the server's
// messages are copied after it with --dedupe-across-folders, which finds
// three of them already there (two in the same folder, one filed in
// another) and copies the fourth. Check with that copy's checkpoint finds
// all four — the three by the dedupe record, by Message-ID whatever the
// size — and calls nothing extra; without a checkpoint there is no such
// record, and the three are missing.
func TestCheckAfterDedupe(t *testing.T) {
	msg := func(mid, extra string) string {
		return fmt.Sprintf("From: a@example.org\nSubject: %s\nMessage-ID: <%s>\n%s\nbody of %s\n", mid, mid, extra, mid)
	}
	moz := "X-Mozilla-Status: 0001\nX-Mozilla-Status2: 00000000\n"
	local := &memStore{folders: map[string][]memMsg{
		"INBOX":    {{id: "l1", body: msg("d1@x", moz), flags: []string{`\Seen`}, date: checkBase}, {id: "l2", body: msg("d2@x", moz), date: checkBase}},
		"Archives": {{id: "l3", body: msg("d3@x", moz), flags: []string{`\Seen`, `\Flagged`}, date: checkBase}},
	}}
	server := &memStore{folders: map[string][]memMsg{"INBOX": {
		{id: "s1", body: msg("d1@x", ""), date: checkBase.Add(time.Hour)},
		{id: "s2", body: msg("d2@x", ""), date: checkBase.Add(time.Hour)},
		{id: "s3", body: msg("d3@x", ""), date: checkBase.Add(time.Hour)},
		{id: "s4", body: msg("d4@x", ""), date: checkBase.Add(time.Hour)},
	}}}
	dir := t.TempDir()
	root := filepath.Join(dir, "Maildir")
	copyInto := func(src migrate.Source, cp string, dedupe bool) migrate.Report {
		t.Helper()
		sink, err := sinks.OpenMaildir(root, maildir.PlusPlus)
		if err != nil {
			t.Fatal(err)
		}
		store, err := checkpoint.Open(cp, "src", "dst")
		if err != nil {
			t.Fatal(err)
		}
		defer store.Close()
		rep, err := migrate.Run(context.Background(), migrate.Options{Source: src, Sink: sink, Checkpoint: store, Dedupe: dedupe, DedupeAcrossFolders: dedupe})
		if err != nil || len(rep.Skipped) > 0 {
			t.Fatalf("copy: %v %+v", err, rep.Skipped)
		}
		return rep
	}
	copyInto(local, filepath.Join(dir, "local.db"), false)
	cp := filepath.Join(dir, "server.db")
	if rep := copyInto(server, cp, true); rep.Copied != 1 || rep.Found != 3 {
		t.Fatalf("server copy: copied %d, duplicates %d, want 1 and 3", rep.Copied, rep.Found)
	}
	r := checkMaildir(t, server, root, cp, nil)
	wantTotals(t, r, 4, 0, 0, 0, 0, 0)
	if tt := r.rep.Totals; tt.ByDedupe != 3 || !r.rep.Complete() || r.rep.Differences() {
		t.Errorf("by dedupe %d (want 3), complete %v, differences %v; problems %+v", tt.ByDedupe, r.rep.Complete(), r.rep.Differences(), r.rep.Problems)
	}
	for _, v := range r.by("source", migrate.VerdictFound) {
		switch {
		case v.ID == "s3" && (v.How != migrate.MatchDedupe || v.Dest != "Archives" || v.DestID == ""):
			t.Errorf("s3 (filed in Archives by the local copy): %+v", v)
		case (v.ID == "s1" || v.ID == "s2") && (v.How != migrate.MatchDedupe || v.Dest != "INBOX" || v.DestID == ""):
			t.Errorf("%s: %+v", v.ID, v)
		}
	}
	// s1 and s2 have other sizes than the local copies in INBOX (which are
	// extra then), s3's copy is in a folder no source folder maps to.
	r = checkMaildir(t, server, root, "", nil)
	if tt := r.rep.Totals; tt.Found != 1 || tt.Missing != 3 || tt.Extra != 2 || r.rep.Complete() {
		t.Errorf("without a checkpoint (nothing records the dedupe): found %d, missing %d, extra %d, complete %v; want 1, 3, 2, false",
			tt.Found, tt.Missing, tt.Extra, r.rep.Complete())
	}

	// The copy s2 was matched to is deleted: s2 is missing, and its record
	// can be forgotten (check --forget-missing) like a lost copy's, so that
	// the next copy compares or copies it again.
	files, _ := filepath.Glob(filepath.Join(root, "*", "*"))
	for _, f := range files {
		if b, err := os.ReadFile(f); err == nil && strings.Contains(string(b), "<d2@x>") {
			os.Remove(f)
		}
	}
	r = checkMaildir(t, server, root, cp, nil)
	m := r.by("source", migrate.VerdictMissing)
	if len(m) != 1 || m[0].ID != "s2" || !m[0].RecordGone || !strings.Contains(m[0].Reason, "records it as found in the destination") {
		t.Errorf("after its match was deleted: missing %+v, want s2, its record forgettable", m)
	}
}
