package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/mailhaul/mailhaul/checkpoint"
	"github.com/mailhaul/mailhaul/internal/maildir"
	"github.com/mailhaul/mailhaul/internal/testserver"
	"github.com/mailhaul/mailhaul/migrate"
)

// End-to-end tests of `mailhaul check`: after complete copies (Maildir ->
// IMAP, IMAP -> IMAP, mbox -> Maildir), with and without the checkpoint,
// after changes to the destination, and proof that check changes nothing
// and prints no secret.

// checkCLI runs `mailhaul --json check ARGS` and decodes the report.
func checkCLI(t *testing.T, env []string, args ...string) (result, checkJSON) {
	t.Helper()
	r := runMailhaul(t, env, append([]string{"--json", "check"}, args...)...)
	var out checkJSON
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
		t.Fatalf("exit %d, report not JSON: %v\n%s\n%s", r.code, err, r.stdout, r.stderr)
	}
	if out.ExitCode != r.code {
		t.Errorf("report says exit %d, process exited %d", out.ExitCode, r.code)
	}
	return r, out
}

// wantComplete asserts exit 0 and every folder complete.
func wantComplete(t *testing.T, r result, out checkJSON, messages int) {
	t.Helper()
	if r.code != 0 || out.Result != "complete" {
		t.Fatalf("exit %d (%s):\n%s", r.code, out.Result, r.stderr)
	}
	for _, f := range out.Folders {
		if f.Found != f.Source-f.Filtered || f.Missing+f.Extra+f.Duplicate+f.FlagDiff+f.DateDiff+f.Unreadable != 0 || f.Error != "" || !f.DestExists && f.Source > 0 {
			t.Errorf("folder not complete: %+v", f)
		}
	}
	if out.Totals.Found != messages {
		t.Errorf("found %d messages, want %d", out.Totals.Found, messages)
	}
	n := 0
	for _, v := range out.Messages {
		if v.Side == "source" && v.Verdict == migrate.VerdictFound {
			n++
		}
	}
	if n != messages {
		t.Errorf("%d found verdicts in --json, want %d", n, messages)
	}
}

func verdicts(out checkJSON, side, verdict string) []migrate.Verdict {
	var l []migrate.Verdict
	for _, v := range out.Messages {
		if v.Side == side && v.Verdict == verdict {
			l = append(l, v)
		}
	}
	return l
}

func differing(out checkJSON) []migrate.Verdict {
	var l []migrate.Verdict
	for _, v := range out.Messages {
		if v.Verdict == migrate.VerdictFound && v.Differs() {
			l = append(l, v)
		}
	}
	return l
}

// addSpecials adds to INBOX of the Maildir++ tree at root what a check
// must count right: a byte-identical twin of a message, and two messages
// without Message-ID, one of them twice. It returns how many it added.
func addSpecials(t *testing.T, root string) int {
	t.Helper()
	cur := filepath.Join(root, "cur")
	ents, _ := os.ReadDir(cur)
	var first string
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), ".") {
			first = filepath.Join(cur, e.Name())
			break
		}
	}
	b, err := os.ReadFile(first)
	if err != nil {
		t.Fatal(err)
	}
	date := time.Unix(1300000000, 0)
	write := func(name string, body []byte) {
		p := filepath.Join(cur, name)
		if err := os.WriteFile(p, body, 0o644); err != nil {
			t.Fatal(err)
		}
		os.Chtimes(p, date, date)
	}
	write("1300000000.Mtwin.testhost:2,S", b)
	nomid := []byte("From: nobody@example.org\nSubject: no message id\n\nI have no Message-ID.\n")
	write("1300000001.Mnomid1.testhost:2,S", nomid)
	write("1300000002.Mnomid2.testhost:2,S", nomid)
	write("1300000003.Mnomid3.testhost:2,", []byte("From: other@example.org\nSubject: no message id either\n\nNeither have I.\n"))
	return 4
}

func imapDial(t *testing.T, d *testserver.Dovecot, user string) *imapclient.Client {
	t.Helper()
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

// dovecotTiming matches the timing Dovecot adds to a reply's text
// ("(0.001 + 0.000 secs)"), which differs between two snapshots of an
// unchanged account.
var dovecotTiming = regexp.MustCompile(` \([0-9.+ ]+ secs\)`)

// imapSnapshot describes everything of an account that check could
// change: folders, their UIDVALIDITY, UIDNEXT, HIGHESTMODSEQ (any flag
// change raises it), unseen counts, and every message's UID,
// flags, date, size and content hash. It only EXAMINEs.
func imapSnapshot(t *testing.T, d *testserver.Dovecot, user string) string {
	t.Helper()
	c := imapDial(t, d, user)
	list, err := c.List("", "*", nil).Collect()
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	sort.Slice(list, func(i, j int) bool { return list[i].Mailbox < list[j].Mailbox })
	for _, l := range list {
		st, err := c.Status(l.Mailbox, &imap.StatusOptions{NumMessages: true, UIDNext: true, UIDValidity: true, NumUnseen: true, HighestModSeq: true}).Wait()
		if err != nil {
			fmt.Fprintf(&b, "%s: %s\n", l.Mailbox, dovecotTiming.ReplaceAllString(err.Error(), ""))
			continue
		}
		fmt.Fprintf(&b, "%s uidvalidity=%d uidnext=%d modseq=%d messages=%d unseen=%d\n", l.Mailbox, st.UIDValidity, st.UIDNext,
			st.HighestModSeq, deref(st.NumMessages), deref(st.NumUnseen))
		if deref(st.NumMessages) == 0 {
			continue
		}
		if _, err := c.Select(l.Mailbox, &imap.SelectOptions{ReadOnly: true}).Wait(); err != nil {
			t.Fatal(err)
		}
		all := imap.SeqSet{}
		all.AddRange(1, 0)
		msgs, err := c.Fetch(all, &imap.FetchOptions{UID: true, Flags: true, InternalDate: true, RFC822Size: true,
			BodySection: []*imap.FetchItemBodySection{{Peek: true}}}).Collect()
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range msgs {
			var sum [32]byte
			for _, bs := range m.BodySection {
				sum = sha256.Sum256(bs.Bytes)
			}
			fmt.Fprintf(&b, "  %d %v %s %d %s\n", m.UID, m.Flags, m.InternalDate.UTC().Format(time.RFC3339), m.RFC822Size, hex.EncodeToString(sum[:8]))
		}
	}
	return b.String()
}

func deref(p *uint32) uint32 {
	if p == nil {
		return 0
	}
	return *p
}

// treeSnapshot describes every file under root: path, mode, size, mtime
// and content hash (a Maildir or mbox tree, a state directory).
func treeSnapshot(t *testing.T, root string) string {
	t.Helper()
	var b strings.Builder
	filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			fmt.Fprintf(&b, "%s: %v\n", p, err)
			return nil
		}
		rel, _ := filepath.Rel(root, p)
		if fi.IsDir() {
			fmt.Fprintf(&b, "%s/ %v\n", rel, fi.Mode())
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			fmt.Fprintf(&b, "%s: %v\n", rel, err)
			return nil
		}
		h := sha256.New()
		io.Copy(h, f)
		f.Close()
		fmt.Fprintf(&b, "%s %v %d %d %x\n", rel, fi.Mode(), fi.Size(), fi.ModTime().UnixNano(), h.Sum(nil)[:8])
		return nil
	})
	return b.String()
}

// snapshotDiff names the lines of two snapshots that differ, each with
// the folder or file line it falls under, so that a failure shows what
// changed rather than two pages to compare by eye.
func snapshotDiff(before, after string) string {
	b, a := strings.Split(before, "\n"), strings.Split(after, "\n")
	var out strings.Builder
	head := ""
	for i := 0; i < max(len(a), len(b)); i++ {
		var x, y string
		if i < len(b) {
			x = b[i]
		}
		if i < len(a) {
			y = a[i]
		}
		if !strings.HasPrefix(x, " ") {
			head = x
		}
		if x != y {
			fmt.Fprintf(&out, "line %d (under %q):\n- %s\n+ %s\n", i+1, head, x, y)
		}
	}
	return out.String()
}

// uidOfSubject returns the UID of the message of folder whose subject is
// subject.
func uidOfSubject(t *testing.T, c *imapclient.Client, folder, subject string) (imap.UID, []byte) {
	t.Helper()
	if _, err := c.Select(folder, nil).Wait(); err != nil {
		t.Fatal(err)
	}
	all := imap.SeqSet{}
	all.AddRange(1, 0)
	msgs, err := c.Fetch(all, &imap.FetchOptions{UID: true, Envelope: true, BodySection: []*imap.FetchItemBodySection{{Peek: true}}}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range msgs {
		if m.Envelope != nil && m.Envelope.Subject == subject {
			return m.UID, m.BodySection[0].Bytes
		}
	}
	t.Fatalf("no message %q in %s", subject, folder)
	return 0, nil
}

// TestCheckMaildirToIMAP: a complete copy checks complete (by checkpoint
// and by fingerprint), then a duplicated message and a changed flag are
// differences (exit 5), a deleted message and a renamed folder are missing
// (exit 4); check changes neither side nor the state, and prints no secret.
func TestCheckMaildirToIMAP(t *testing.T) {
	const pw = "Dst-Check-Secret-4711"
	dst := testserver.StartDovecot(t, testserver.WithUser("bob", pw))
	srcDir := filepath.Join(t.TempDir(), "Maildir")
	gen := genTree(t, srcDir, 6)
	total := len(gen) + addSpecials(t, srcDir)
	// A name Dovecot's Maildir++ storage refuses ("."): the copy creates
	// it escaped, and check (which learns no refusal) must look there,
	// one without a Message-ID too.
	rel := maildir.FolderDir(srcDir, maildir.PlusPlus, "Release 1.2")
	for _, sub := range []string{"cur", "new", "tmp"} {
		os.MkdirAll(filepath.Join(rel, sub), 0o755)
	}
	for i, body := range []string{"Message-ID: <rel1@example.org>\nSubject: release\n\nnotes\n", "Subject: release, no id\n\nmore notes\n"} {
		if err := os.WriteFile(filepath.Join(rel, "cur", fmt.Sprintf("1300000100.Mrel%d.testhost:2,S", i)), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		total++
	}
	state := t.TempDir()
	dstURL := "imaps://bob@" + dst.IMAPSAddr
	env := []string{"MAILHAUL_DST_PASSWORD=" + pw}
	common := []string{"--state-dir", state, "--ca-file", dst.CAFile}
	if r := runMailhaul(t, env, append(append([]string{"copy"}, common...), "maildir:"+srcDir, dstURL)...); r.code != 0 {
		t.Fatalf("copy: exit %d\n%s", r.code, r.stderr)
	}
	check := func(extra ...string) (result, checkJSON) {
		t.Helper()
		return checkCLI(t, env, append(append(append([]string{}, common...), extra...), "maildir:"+srcDir, dstURL)...)
	}
	// Everything that check could change, before and after each run.
	snap := func() string {
		return imapSnapshot(t, dst, "bob") + "\x00" + treeSnapshot(t, srcDir) + "\x00" + treeSnapshot(t, state)
	}
	before := snap()

	t.Run("complete-checkpoint", func(t *testing.T) {
		r, out := check("-vv")
		wantComplete(t, r, out, total)
		if out.Totals.ByCheckpoint != total || out.Checkpoint == "" {
			t.Errorf("found by checkpoint %d of %d (checkpoint %q)", out.Totals.ByCheckpoint, total, out.Checkpoint)
		}
		if !strings.Contains(r.stderr, "EXAMINE") || !strings.Contains(r.stderr, "<redacted>") {
			t.Errorf("no wire trace with -vv:\n%.2000s", r.stderr)
		}
		for _, s := range []string{r.stdout, r.stderr} {
			if strings.Contains(s, pw) {
				t.Errorf("password in the output")
			}
		}
		if l := changingCommands(r.stderr); len(l) > 0 {
			t.Errorf("check sent commands that change something:\n%s", strings.Join(l, "\n"))
		}
	})
	t.Run("refused-login-once", func(t *testing.T) {
		r := runMailhaul(t, []string{"MAILHAUL_DST_PASSWORD=not-the-password"}, append(append([]string{"check"}, common...), "maildir:"+srcDir, dstURL)...)
		if r.code != exitFatal || strings.Count(r.stderr, "login as account bob failed") != 1 {
			t.Errorf("exit %d, want 1 and the refused login said once:\n%s", r.code, r.stderr)
		}
	})
	t.Run("complete-fingerprint", func(t *testing.T) {
		r, out := check("--no-checkpoint")
		wantComplete(t, r, out, total)
		// The twin pair and the four messages without Message-ID (one
		// in Release 1.2) are decided by content (CRLF form on both
		// sides).
		if out.Totals.ByCheckpoint != 0 || out.Totals.ByContent != 6 || out.Checkpoint != "" {
			t.Errorf("by checkpoint %d, by content %d (want 6)", out.Totals.ByCheckpoint, out.Totals.ByContent)
		}
	})
	if after := snap(); after != before {
		t.Fatalf("check changed something:\n%s", snapshotDiff(before, after))
	}

	c := imapDial(t, dst, "bob")
	// A duplicate of "message 1 in INBOX", \Flagged added to "message 0 in Sent".
	_, body := uidOfSubject(t, c, "INBOX", "message 1 in INBOX")
	cmd := c.Append("INBOX", int64(len(body)), &imap.AppendOptions{Flags: []imap.Flag{imap.FlagSeen}, Time: time.Now()})
	cmd.Write(body)
	cmd.Close()
	if _, err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	uid, _ := uidOfSubject(t, c, "Sent", "message 0 in Sent")
	if err := c.Store(imap.UIDSetNum(uid), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagFlagged}}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	for _, mode := range []string{"checkpoint", "no-checkpoint"} {
		t.Run("differences-"+mode, func(t *testing.T) {
			var extra []string
			if mode == "no-checkpoint" {
				extra = []string{"--no-checkpoint"}
			}
			r, out := check(extra...)
			if r.code != exitDifferences || out.Result != "complete-with-differences" {
				t.Fatalf("exit %d (%s), want 5\n%s", r.code, out.Result, r.stderr)
			}
			d := verdicts(out, "destination", migrate.VerdictDuplicate)
			if len(d) != 1 || d[0].Folder != "INBOX" || d[0].Subject != "message 1 in INBOX" || d[0].SourceFolder != "INBOX" {
				t.Errorf("duplicates %+v", d)
			}
			f := differing(out)
			if len(f) != 1 || f[0].Folder != "Sent" || fmt.Sprint(f[0].FlagsAdded) != `[\Flagged]` || f[0].Subject != "message 0 in Sent" {
				t.Errorf("differences %+v", f)
			}
			if out.Totals.Missing != 0 || out.Totals.Extra != 0 || out.Totals.Found != total {
				t.Errorf("totals %+v", out.Totals)
			}
			// The table and the listing on stderr (with --json).
			if !strings.Contains(r.stderr, "duplicate copies in the destination (1):") || !strings.Contains(r.stderr, "flags added \\Flagged") || !strings.Contains(r.stderr, "COMPLETE WITH DIFFERENCES") {
				t.Errorf("report:\n%s", r.stderr)
			}
		})
	}

	// "message 3 in INBOX" deleted, "Projekte/Büro" renamed.
	uid, _ = uidOfSubject(t, c, "INBOX", "message 3 in INBOX")
	if err := c.Store(imap.UIDSetNum(uid), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.UIDExpunge(imap.UIDSetNum(uid)).Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Unselect().Wait(); err != nil {
		t.Fatal(err)
	}
	if err := c.Rename("Projekte/Büro", "Projekte/Büro-alt", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	inBuero := 0
	for _, m := range gen {
		if m.folder == "Projekte/Büro" {
			inBuero++
		}
	}
	before = snap()
	for _, mode := range []string{"checkpoint", "no-checkpoint"} {
		t.Run("missing-"+mode, func(t *testing.T) {
			var extra []string
			if mode == "no-checkpoint" {
				extra = []string{"--no-checkpoint"}
			}
			r, out := check(extra...)
			if r.code != exitMissing || out.Result != "incomplete" {
				t.Fatalf("exit %d (%s), want 4\n%s", r.code, out.Result, r.stderr)
			}
			miss := verdicts(out, "source", migrate.VerdictMissing)
			byFolder := map[string]int{}
			for _, v := range miss {
				byFolder[v.Folder]++
				if v.Folder == "INBOX" && v.Subject != "message 3 in INBOX" {
					t.Errorf("missing from INBOX: %+v", v)
				}
				if v.Folder == "Projekte/Büro" && v.Elsewhere != "Projekte/Büro-alt" {
					t.Errorf("renamed folder's message not found elsewhere: %+v", v)
				}
				if v.From == "" || v.Date.IsZero() || v.Size <= 0 {
					t.Errorf("missing message without sender, date or size: %+v", v)
				}
			}
			if byFolder["INBOX"] != 1 || byFolder["Projekte/Büro"] != inBuero || len(miss) != 1+inBuero {
				t.Errorf("missing by folder %v, want INBOX 1, Projekte/Büro %d", byFolder, inBuero)
			}
			for _, f := range out.Folders {
				if f.Name == "Projekte/Büro" && (f.DestExists || f.Missing != inBuero) {
					t.Errorf("renamed folder row %+v", f)
				}
			}
			if !slices.Contains(out.Unmapped, "Projekte/Büro-alt") {
				t.Errorf("unmapped destination folders %v", out.Unmapped)
			}
			if !strings.Contains(r.stderr, "missing from the destination (") || !strings.Contains(r.stderr, `"Projekte/Büro-alt", which no source folder maps to`) {
				t.Errorf("report:\n%s", r.stderr)
			}
		})
	}
	if after := snap(); after != before {
		t.Fatalf("check changed something:\n%s", snapshotDiff(before, after))
	}
	// --limit bounds the human listing, not --json.
	r := runMailhaul(t, env, append(append([]string{"check", "--limit", "2"}, common...), "maildir:"+srcDir, dstURL)...)
	if r.code != exitMissing || !strings.Contains(r.stdout, fmt.Sprintf("... and %d more", 1+inBuero-2)) || !strings.Contains(r.stdout, "INCOMPLETE") {
		t.Errorf("--limit 2: exit %d\n%s", r.code, r.stdout)
	}
}

// changingCommands returns the lines of a -vv wire trace where the client
// sends a command that can change an account (SELECT, unlike EXAMINE,
// takes \Recent and allows the rest).
func changingCommands(trace string) []string {
	re := regexp.MustCompile(`C: \S+ (UID )?(SELECT|STORE|APPEND|CREATE|DELETE|RENAME|EXPUNGE|MOVE|COPY|SUBSCRIBE|UNSUBSCRIBE|SETMETADATA)\b`)
	var out []string
	for _, l := range strings.Split(trace, "\n") {
		if re.MatchString(l) {
			out = append(out, l)
		}
	}
	return out
}

// TestCheckIMAPToIMAP: a complete IMAP -> IMAP copy checks complete by
// checkpoint and by fingerprint, and so does IMAP -> Maildir; a flag
// removed on the destination is a difference.
func TestCheckIMAPToIMAP(t *testing.T) {
	src := testserver.StartDovecot(t, testserver.WithUser("alice", "Src-Pw-1"))
	dst := testserver.StartDovecot(t, testserver.WithUser("bob", "Dst-Pw-2"))
	dir := filepath.Join(t.TempDir(), "Maildir")
	gen := genTree(t, dir, 5)
	total := len(gen) + addSpecials(t, dir)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	a, _ := os.ReadFile(src.CAFile)
	b, _ := os.ReadFile(dst.CAFile)
	os.WriteFile(ca, append(a, b...), 0o644)
	srcURL, dstURL := "imaps://alice@"+src.IMAPSAddr, "imaps://bob@"+dst.IMAPSAddr
	env := []string{"MAILHAUL_SRC_PASSWORD=Src-Pw-1", "MAILHAUL_DST_PASSWORD=Dst-Pw-2"}
	// Seed the source account, then copy it.
	if r := runMailhaul(t, []string{"MAILHAUL_DST_PASSWORD=Src-Pw-1"}, "copy", "--state-dir", t.TempDir(), "--ca-file", ca, "maildir:"+dir, srcURL); r.code != 0 {
		t.Fatalf("seed: exit %d\n%s", r.code, r.stderr)
	}
	state := t.TempDir()
	if r := runMailhaul(t, env, "copy", "--state-dir", state, "--ca-file", ca, srcURL, dstURL); r.code != 0 {
		t.Fatalf("copy: exit %d\n%s", r.code, r.stderr)
	}
	before := imapSnapshot(t, src, "alice") + imapSnapshot(t, dst, "bob") + treeSnapshot(t, state)
	r, out := checkCLI(t, env, "--state-dir", state, "--ca-file", ca, srcURL, dstURL)
	wantComplete(t, r, out, total)
	if out.Totals.ByCheckpoint != total {
		t.Errorf("by checkpoint %d of %d", out.Totals.ByCheckpoint, total)
	}
	r, out = checkCLI(t, env, "--no-checkpoint", "--ca-file", ca, srcURL, dstURL)
	wantComplete(t, r, out, total)
	if out.Totals.ByContent != 5 {
		t.Errorf("by content %d, want 5", out.Totals.ByContent)
	}
	if after := imapSnapshot(t, src, "alice") + imapSnapshot(t, dst, "bob") + treeSnapshot(t, state); after != before {
		t.Fatalf("check changed something:\n%s", snapshotDiff(before, after))
	}
	for _, s := range []string{r.stdout, r.stderr} {
		if strings.Contains(s, "Src-Pw-1") || strings.Contains(s, "Dst-Pw-2") {
			t.Errorf("password in the output")
		}
	}
	// IMAP -> Maildir: the CRLF bytes are stored as they are.
	md, mdState := filepath.Join(t.TempDir(), "Maildir"), t.TempDir()
	if r := runMailhaul(t, env, "copy", "--state-dir", mdState, "--ca-file", ca, srcURL, "maildir:"+md); r.code != 0 {
		t.Fatalf("copy to Maildir: exit %d\n%s", r.code, r.stderr)
	}
	for _, st := range []string{mdState, t.TempDir()} {
		r, out := checkCLI(t, env, "--state-dir", st, "--ca-file", ca, srcURL, "maildir:"+md)
		wantComplete(t, r, out, total)
	}

	c := imapDial(t, dst, "bob")
	uid, _ := uidOfSubject(t, c, "Archive/2019", "message 1 in Archive/2019")
	if err := c.Store(imap.UIDSetNum(uid), &imap.StoreFlags{Op: imap.StoreFlagsDel, Flags: []imap.Flag{imap.FlagSeen}}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	r, out = checkCLI(t, env, "--state-dir", state, "--ca-file", ca, srcURL, dstURL)
	if f := differing(out); r.code != exitDifferences || len(f) != 1 || fmt.Sprint(f[0].FlagsLost) != `[\Seen]` {
		t.Errorf("exit %d, differences %+v\n%s", r.code, f, r.stderr)
	}
}

// TestCheckMboxToMaildir: a Thunderbird-style tree (with byte-identical
// twins and a message without Message-ID) copied into a Maildir checks
// complete; then a deleted file, a duplicated file, a changed flag and a
// renamed folder show up as what they are.
func TestCheckMboxToMaildir(t *testing.T) {
	src := t.TempDir()
	want := mboxTree(t, src, 20)
	f, err := os.OpenFile(filepath.Join(src, "Sent"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(f, "From - Tue Feb  1 10:00:00 2022\nSubject: sent without Message-ID\n\nhello\n\n")
	f.Close()
	total := 1
	for _, w := range want {
		total += len(w)
	}
	dstRoot, state := filepath.Join(t.TempDir(), "Maildir"), t.TempDir()
	if r := runMailhaul(t, nil, "copy", "--state-dir", state, "mbox:"+src, "maildir:"+dstRoot); r.code != 0 {
		t.Fatalf("copy: exit %d\n%s", r.code, r.stderr)
	}
	before := treeSnapshot(t, src) + treeSnapshot(t, dstRoot) + treeSnapshot(t, state)
	r, out := checkCLI(t, nil, "--state-dir", state, "mbox:"+src, "maildir:"+dstRoot)
	wantComplete(t, r, out, total)
	if out.Totals.ByCheckpoint != total {
		t.Errorf("by checkpoint %d of %d", out.Totals.ByCheckpoint, total)
	}
	r, out = checkCLI(t, nil, "--no-checkpoint", "mbox:"+src, "maildir:"+dstRoot)
	wantComplete(t, r, out, total)
	// Every 10th message is a twin of the one before: 2 twins per 20 in
	// 4 folders are 16 messages decided by content, and the one without
	// Message-ID.
	if out.Totals.ByContent != 17 {
		t.Errorf("by content %d, want 17", out.Totals.ByContent)
	}
	if after := treeSnapshot(t, src) + treeSnapshot(t, dstRoot) + treeSnapshot(t, state); after != before {
		t.Fatalf("check changed something:\n%s", snapshotDiff(before, after))
	}

	// Change the destination.
	find := func(folder, needle string) string {
		t.Helper()
		dir := maildir.FolderDir(dstRoot, maildir.PlusPlus, folder)
		ents, _ := os.ReadDir(filepath.Join(dir, "cur"))
		for _, e := range ents {
			p := filepath.Join(dir, "cur", e.Name())
			if b, _ := os.ReadFile(p); strings.Contains(string(b), needle) {
				return p
			}
		}
		t.Fatalf("no %q in %s", needle, folder)
		return ""
	}
	os.Remove(find("INBOX", "Message-ID: <INBOX-3@e2e.example>"))
	p := find("Work", "Message-ID: <Work-4@e2e.example>")
	b, _ := os.ReadFile(p)
	fi, _ := os.Stat(p)
	dup := filepath.Join(filepath.Dir(p), "1700000000.Mdup.host:2,S")
	os.WriteFile(dup, b, 0o600)
	os.Chtimes(dup, fi.ModTime(), fi.ModTime())
	p = find("Sent", "Message-ID: <Sent-5@e2e.example>")
	base, info := maildir.SplitName(filepath.Base(p))
	if err := os.Rename(p, filepath.Join(filepath.Dir(p), base+":2,"+strings.ReplaceAll(info, "S", "")+"F")); err != nil {
		t.Fatal(err)
	}
	for _, mode := range []string{"checkpoint", "no-checkpoint"} {
		t.Run("changes-"+mode, func(t *testing.T) {
			args := []string{"--state-dir", state, "mbox:" + src, "maildir:" + dstRoot}
			if mode == "no-checkpoint" {
				args = append([]string{"--no-checkpoint"}, args...)
			}
			r, out := checkCLI(t, nil, args...)
			if r.code != exitMissing {
				t.Fatalf("exit %d, want 4\n%s", r.code, r.stderr)
			}
			if m := verdicts(out, "source", migrate.VerdictMissing); len(m) != 1 || m[0].MessageID != "INBOX-3@e2e.example" || m[0].Subject != "message 3 of INBOX" {
				t.Errorf("missing %+v", m)
			}
			// The duplicate: either of the two identical files may be
			// taken for the copy, the other is the duplicate.
			if d := verdicts(out, "destination", migrate.VerdictDuplicate); len(d) != 1 || d[0].Folder != "Work" || d[0].MessageID != "Work-4@e2e.example" {
				t.Errorf("duplicates %+v", d)
			}
			if f := differing(out); len(f) != 1 || f[0].MessageID != "Sent-5@e2e.example" || fmt.Sprint(f[0].FlagsAdded) != `[\Flagged]` || fmt.Sprint(f[0].FlagsLost) != `[\Seen]` {
				t.Errorf("differences %+v", f)
			}
		})
	}
	// A renamed folder.
	if err := os.Rename(maildir.FolderDir(dstRoot, maildir.PlusPlus, "Work/Projekte"), maildir.FolderDir(dstRoot, maildir.PlusPlus, "Work/Projects")); err != nil {
		t.Fatal(err)
	}
	r, out = checkCLI(t, nil, "--state-dir", state, "mbox:"+src, "maildir:"+dstRoot)
	n := 0
	for _, v := range verdicts(out, "source", migrate.VerdictMissing) {
		if v.Folder == "Work/Projekte" && v.Elsewhere == "Work/Projects" {
			n++
		}
	}
	if r.code != exitMissing || n != len(want["Work/Projekte"]) {
		t.Errorf("renamed folder: exit %d, %d of %d found elsewhere\n%s", r.code, n, len(want["Work/Projekte"]), r.stderr)
	}

	// While a copy of the pair runs (it holds the checkpoint's lock),
	// check refuses to compare against a moving target.
	sEP, _ := parseEndpoint("mbox:" + src)
	dEP, _ := parseEndpoint("maildir:" + dstRoot)
	path, _, _ := checkpointPath(context.Background(), state, sEP, dEP)
	store, err := checkpoint.Open(path, sEP.describe(), dEP.describe())
	if err != nil {
		t.Fatal(err)
	}
	r = runMailhaul(t, nil, "check", "--state-dir", state, "mbox:"+src, "maildir:"+dstRoot)
	store.Close()
	if r.code != exitFatal || !strings.Contains(r.stderr, "is running") {
		t.Errorf("check during a copy: exit %d\n%s", r.code, r.stderr)
	}
}

// TestCheckUsage: bad endpoints and flags are usage errors (exit 2); a
// destination that does not exist is fatal and is not created.
func TestCheckUsage(t *testing.T) {
	dir := t.TempDir()
	for _, args := range [][]string{
		{"check", "maildir:" + dir},
		{"check", "--limit", "-1", "maildir:" + dir, "maildir:" + dir},
		{"check", "--since", "yesterday", "maildir:" + dir, "maildir:" + dir},
		{"check", "maildir:" + dir, "mbox:" + dir},
	} {
		if r := runMailhaul(t, nil, args...); r.code != exitUsage {
			t.Errorf("%v: exit %d, want 2\n%s", args, r.code, r.stderr)
		}
	}
	src := filepath.Join("..", "..", "testdata", "maildir")
	missing := filepath.Join(dir, "nothing-here")
	if r := runMailhaul(t, nil, "check", "--state-dir", dir, "maildir:"+src, "maildir:"+missing); r.code != exitFatal {
		t.Errorf("missing destination: exit %d\n%s", r.code, r.stderr)
	}
	if _, err := os.Stat(missing); err == nil {
		t.Errorf("check created the destination")
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("check wrote into the state directory: %v", ents)
	}
}

// TestCheckForgetMissing: a copy deleted from the destination after the
// copy is missing to check, which says how to get it back; copy alone
// does not (the checkpoint records it); check --forget-missing removes
// that record and nothing else, and the next copy copies that message
// once. A check that writes nothing (without the flag) changes nothing.
func TestCheckForgetMissing(t *testing.T) {
	src := t.TempDir()
	want := mboxTree(t, src, 6)
	total := 0
	for _, w := range want {
		total += len(w)
	}
	dst, state := filepath.Join(t.TempDir(), "Maildir"), t.TempDir()
	copyArgs := []string{"copy", "--state-dir", state, "mbox:" + src, "maildir:" + dst}
	if r := runMailhaul(t, nil, copyArgs...); r.code != 0 {
		t.Fatalf("copy: exit %d\n%s", r.code, r.stderr)
	}
	cur := filepath.Join(maildir.FolderDir(dst, maildir.PlusPlus, "INBOX"), "cur")
	ents, _ := os.ReadDir(cur)
	var gone string
	for _, e := range ents {
		if b, _ := os.ReadFile(filepath.Join(cur, e.Name())); strings.Contains(string(b), "Message-ID: <INBOX-2@e2e.example>") {
			gone = filepath.Join(cur, e.Name())
		}
	}
	if gone == "" || os.Remove(gone) != nil {
		t.Fatalf("no copy of INBOX-2 in %s", cur)
	}
	checkArgs := []string{"check", "--state-dir", state, "mbox:" + src, "maildir:" + dst}
	r := runMailhaul(t, nil, checkArgs...)
	if r.code != exitMissing || !strings.Contains(r.stdout, "1 message missing here the checkpoint records as copied") || !strings.Contains(r.stdout, "check --forget-missing") {
		t.Fatalf("check: exit %d, want 4 and the way back\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	if r := runMailhaul(t, nil, copyArgs...); r.code != 0 || !strings.Contains(r.stderr, "copied 0 messages") {
		t.Fatalf("copy after the deletion: exit %d\n%s", r.code, r.stderr)
	}
	r = runMailhaul(t, nil, append([]string{"check", "--forget-missing"}, checkArgs[1:]...)...)
	if r.code != exitMissing || !strings.Contains(r.stderr, "removed the checkpoint's records of 1 message whose copies are gone") {
		t.Fatalf("check --forget-missing: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	if r := runMailhaul(t, nil, copyArgs...); r.code != 0 || !strings.Contains(r.stderr, "copied 1 message ") {
		t.Fatalf("copy after --forget-missing: exit %d\n%s", r.code, r.stderr)
	}
	r, out := checkCLI(t, nil, checkArgs[1:]...)
	wantComplete(t, r, out, total)
	r = runMailhaul(t, nil, append([]string{"check", "--forget-missing"}, checkArgs[1:]...)...)
	if r.code != 0 || !strings.Contains(r.stderr, "nothing removed") {
		t.Errorf("check --forget-missing of a complete copy: exit %d\n%s", r.code, r.stderr)
	}
	// A copy moved to another folder by the user is missing from its
	// folder but is not forgotten: the next copy would put a second one
	// beside it.
	ents, _ = os.ReadDir(cur)
	moved := ""
	for _, e := range ents {
		if b, _ := os.ReadFile(filepath.Join(cur, e.Name())); strings.Contains(string(b), "Message-ID: <INBOX-4@e2e.example>") {
			moved = e.Name()
		}
	}
	work := filepath.Join(maildir.FolderDir(dst, maildir.PlusPlus, "Work"), "cur")
	if moved == "" || os.Rename(filepath.Join(cur, moved), filepath.Join(work, moved)) != nil {
		t.Fatal("could not move INBOX-4")
	}
	r = runMailhaul(t, nil, append([]string{"check", "--forget-missing"}, checkArgs[1:]...)...)
	if r.code != exitMissing || !strings.Contains(r.stderr, "nothing removed") || strings.Contains(r.stdout, "records as copied") {
		t.Errorf("check --forget-missing of a moved copy: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	if r := runMailhaul(t, nil, copyArgs...); r.code != 0 || !strings.Contains(r.stderr, "copied 0 messages") {
		t.Errorf("copy after a moved copy: exit %d\n%s", r.code, r.stderr)
	}
	// After a copy killed with appends in flight, --forget-missing waits
	// for that copy to be run to the end.
	sEP, _ := parseEndpoint("mbox:" + src)
	dEP, _ := parseEndpoint("maildir:" + dst)
	path, _, _ := checkpointPath(context.Background(), state, sEP, dEP)
	store, err := checkpoint.Open(path, sEP.describe(), dEP.describe())
	if err != nil {
		t.Fatal(err)
	}
	store.AddIntents([]migrate.Intent{{Folder: "INBOX", ID: "x", Dest: "INBOX"}})
	store.Close()
	r = runMailhaul(t, nil, append([]string{"check", "--forget-missing"}, checkArgs[1:]...)...)
	if r.code != exitFatal || !strings.Contains(r.stderr, "interrupted with 1 message in flight") {
		t.Errorf("check --forget-missing after an interrupted copy: exit %d\n%s", r.code, r.stderr)
	}
	if r := runMailhaul(t, nil, "check", "--forget-missing", "--no-checkpoint", "mbox:"+src, "maildir:"+dst); r.code != exitUsage {
		t.Errorf("--forget-missing --no-checkpoint: exit %d\n%s", r.code, r.stderr)
	}
}
