package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/mailhaul/mailhaul/internal/testserver"
)

// imapCount returns the number of messages in every non-empty folder.
func imapCount(t *testing.T, d *testserver.Dovecot, user string) map[string]int {
	t.Helper()
	c, err := imapclient.DialTLS(d.IMAPSAddr, &imapclient.Options{TLSConfig: d.TLSConfig()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login(user, d.Password(user)).Wait(); err != nil {
		t.Fatal(err)
	}
	list, err := c.List("", "*", nil).Collect()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, l := range list {
		st, err := c.Status(l.Mailbox, &imap.StatusOptions{NumMessages: true}).Wait()
		if err == nil && st.NumMessages != nil && *st.NumMessages > 0 {
			out[l.Mailbox] = int(*st.NumMessages)
		}
	}
	return out
}

func countFiles(t *testing.T, root string) int {
	n := 0
	filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() && !strings.HasPrefix(fi.Name(), ".") {
			if d := filepath.Base(filepath.Dir(p)); d == "cur" || d == "new" {
				n++
			}
		}
		return nil
	})
	return n
}

func sumCounts(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

func grepTree(t *testing.T, root, needle string) []string {
	var hits []string
	filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			if b, err := os.ReadFile(p); err == nil && strings.Contains(string(b), needle) {
				hits = append(hits, p)
			}
		}
		return nil
	})
	return hits
}

func TestIMAPCLI(t *testing.T) {
	const pw = "Dst-Secret-7781"
	src := testserver.StartDovecot(t, testserver.WithUser("alice", "Src-Secret-1234"))
	dst := testserver.StartDovecot(t, testserver.WithUser("bob", pw))
	srcDir, _ := filepath.Abs("../../testdata/maildir")
	want := countFiles(t, srcDir)
	state := t.TempDir()
	dstURL := "imaps://bob@" + dst.IMAPSAddr
	srcURL := "imaps://alice@" + src.IMAPSAddr
	dstEnv := []string{"MAILHAUL_DST_PASSWORD=" + pw}

	t.Run("self-signed-refused", func(t *testing.T) {
		r := runMailhaul(t, dstEnv, "copy", "--state-dir", state, "maildir:"+srcDir, dstURL)
		if r.code != 1 || !strings.Contains(r.stderr, "--ca-file") {
			t.Fatalf("exit %d:\n%s", r.code, r.stderr)
		}
	})
	t.Run("wrong-password", func(t *testing.T) {
		r := runMailhaul(t, []string{"MAILHAUL_DST_PASSWORD=nope-wrong-99"}, "copy", "--state-dir", state, "--ca-file", dst.CAFile, "maildir:"+srcDir, dstURL)
		lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
		last := lines[len(lines)-1]
		if r.code != 1 || !strings.Contains(last, dst.IMAPSAddr) || !strings.Contains(last, "bob") || strings.Contains(r.stderr, "nope-wrong-99") {
			t.Fatalf("exit %d:\n%s", r.code, r.stderr)
		}
	})
	t.Run("password-in-url", func(t *testing.T) {
		r := runMailhaul(t, nil, "copy", "--state-dir", state, "maildir:"+srcDir, "imaps://bob:"+pw+"@"+dst.IMAPSAddr)
		if r.code == 0 || strings.Contains(r.stderr, pw) || !strings.Contains(r.stderr, "MAILHAUL_DST_PASSWORD") {
			t.Fatalf("exit %d:\n%s", r.code, r.stderr)
		}
	})
	t.Run("no-password", func(t *testing.T) {
		r := runMailhaul(t, []string{"MAILHAUL_DST_PASSWORD="}, "copy", "--state-dir", state, "--ca-file", dst.CAFile, "maildir:"+srcDir, dstURL)
		if r.code == 0 || !strings.Contains(r.stderr, "MAILHAUL_DST_PASSWORD") {
			t.Fatalf("empty password accepted:\n%s", r.stderr)
		}
	})

	t.Run("maildir-to-imap", func(t *testing.T) {
		pwFile := filepath.Join(t.TempDir(), "pw")
		os.WriteFile(pwFile, []byte(pw+"\n"), 0o600)
		r := runMailhaul(t, nil, "copy", "-vv", "--include-deleted", "--state-dir", state, "--ca-file", dst.CAFile, "--dst-password-file", pwFile, "maildir:"+srcDir, dstURL)
		if r.code != 0 {
			t.Fatalf("exit %d:\n%s", r.code, r.stderr)
		}
		if !strings.Contains(r.stderr, "APPEND") || !strings.Contains(r.stderr, "<redacted>") {
			t.Errorf("no wire trace with -vv:\n%.2000s", r.stderr)
		}
		if strings.Contains(r.stderr, pw) {
			t.Errorf("password in the wire trace")
		}
		if got := sumCounts(imapCount(t, dst, "bob")); got != want {
			t.Errorf("destination holds %d messages, want %d", got, want)
		}
		if hits := grepTree(t, state, pw); len(hits) > 0 {
			t.Errorf("password in state files %v", hits)
		}
		// Idempotent.
		r = runMailhaul(t, dstEnv, "copy", "--state-dir", state, "--ca-file", dst.CAFile, "maildir:"+srcDir, dstURL)
		if r.code != 0 || !strings.Contains(r.stderr, "copied 0 messages") {
			t.Fatalf("second run exit %d:\n%s", r.code, r.stderr)
		}
	})

	t.Run("ls", func(t *testing.T) {
		r := runMailhaul(t, []string{"MAILHAUL_SRC_PASSWORD=" + pw}, "ls", "--ca-file", dst.CAFile, dstURL)
		if r.code != 0 || !strings.Contains(r.stdout, "INBOX") || !strings.Contains(r.stdout, `\Sent`) {
			t.Fatalf("exit %d:\n%s\n%s", r.code, r.stdout, r.stderr)
		}
	})

	// IMAP -> IMAP, killed right after an append (before it is recorded),
	// then resumed: every message exactly once.
	t.Run("imap-to-imap-killed", func(t *testing.T) {
		st2 := t.TempDir()
		env := []string{"MAILHAUL_SRC_PASSWORD=" + pw, "MAILHAUL_DST_PASSWORD=Src-Secret-1234"}
		// bob's account (now seeded) -> alice's (empty).
		args := []string{"copy", "--state-dir", st2, "--ca-file", dst.CAFile, "--transfers", "2", "--include-deleted", dstURL, srcURL}
		// Both servers use different self-signed certificates: trust both.
		both := filepath.Join(t.TempDir(), "both.pem")
		a, _ := os.ReadFile(dst.CAFile)
		b, _ := os.ReadFile(src.CAFile)
		os.WriteFile(both, append(a, b...), 0o644)
		args[4] = both
		r := runMailhaul(t, append(env, "MAILHAUL_TEST_KILL_AT=append:3"), args...)
		if r.code == 0 {
			t.Fatalf("not killed:\n%s", r.stderr)
		}
		r = runMailhaul(t, env, args...)
		if r.code != 0 {
			t.Fatalf("resume exit %d:\n%s", r.code, r.stderr)
		}
		if !strings.Contains(r.stderr, "recovered") {
			t.Errorf("no recovery reported:\n%s", r.stderr)
		}
		if got := sumCounts(imapCount(t, src, "alice")); got != want {
			t.Errorf("destination holds %d messages, want %d (duplicates or losses)", got, want)
		}
		if hits := grepTree(t, st2, pw); len(hits) > 0 {
			t.Errorf("password in state files %v", hits)
		}
	})
}

// TestIMAPNoOpRerun: a re-run that finds nothing new costs the same few
// commands whatever the number of folders (one LIST with STATUS, no
// folder examined on either side); a folder that gained a message is the
// only one listed; --relist lists them all.
func TestIMAPNoOpRerun(t *testing.T) {
	src := testserver.StartDovecot(t)
	dst := testserver.StartDovecot(t)
	c := imapLogin(t, src, "alice")
	folders := []string{"INBOX", "Work", "Work/Clients", "Lists", "Lists/a", "Lists/b", "Archive", "Archive/2020", "Archive/2021"}
	for _, f := range folders[1:] {
		if err := c.Create(f, nil).Wait(); err != nil {
			t.Fatal(err)
		}
	}
	appendTo := func(f string, i int) {
		body := fmt.Sprintf("From: x@example.org\r\nSubject: %s %d\r\nMessage-ID: <rerun-%d-%s@example.org>\r\n\r\nbody\r\n", f, i, i, f)
		cmd := c.Append(f, int64(len(body)), nil)
		cmd.Write([]byte(body))
		cmd.Close()
		if _, err := cmd.Wait(); err != nil {
			t.Fatal(err)
		}
	}
	for i, f := range folders {
		for k := 0; k < 3; k++ {
			appendTo(f, 10*i+k)
		}
	}
	env := []string{"MAILHAUL_SRC_PASSWORD=" + src.Password("alice"), "MAILHAUL_DST_PASSWORD=" + dst.Password("alice")}
	args := []string{"copy", "-vv", "--insecure-plaintext", "--state-dir", t.TempDir(), "imap://alice@" + src.IMAPAddr, "imap://alice@" + dst.IMAPAddr}
	// commands counts what mailhaul sent to each server.
	commands := func(trace, side, verb string) int {
		n := 0
		for _, l := range strings.Split(trace, "\n") {
			if strings.HasPrefix(l, side+" ") && strings.Contains(l, " C: ") && (verb == "" || strings.Contains(l, " "+verb+" ")) {
				n++
			}
		}
		return n
	}
	if r := runMailhaul(t, env, args...); r.code != 0 {
		t.Fatalf("first run: exit %d\n%s", r.code, r.stderr)
	}
	// The source has 13 folders: these 9 and Dovecot's special-use ones.
	const all = 13
	r := runMailhaul(t, env, args...)
	if r.code != 0 || !strings.Contains(r.stderr, "copied 0 messages (0 B), 27 already there") || !strings.Contains(r.stderr, fmt.Sprintf("%d folders unchanged", all)) {
		t.Fatalf("re-run: exit %d\n%s", r.code, r.stderr)
	}
	srcCmds, dstCmds := commands(r.stderr, "src", ""), commands(r.stderr, "dst", "")
	if e := commands(r.stderr, "src", "EXAMINE") + commands(r.stderr, "src", "SELECT") + commands(r.stderr, "dst", "SELECT"); e != 0 || srcCmds > 5 || dstCmds > 5 {
		t.Errorf("re-run sent %d commands to the source and %d to the destination, %d folders examined", srcCmds, dstCmds, e)
	}

	appendTo("Lists/b", 99)
	r = runMailhaul(t, env, args...)
	if r.code != 0 || !strings.Contains(r.stderr, "copied 1 message (") || !strings.Contains(r.stderr, fmt.Sprintf("%d folders unchanged", all-1)) {
		t.Fatalf("after new mail: exit %d\n%s", r.code, r.stderr)
	}
	if n := commands(r.stderr, "src", "EXAMINE"); n != 1 {
		t.Errorf("after new mail in one folder: %d folders examined on the source", n)
	}
	if got := imapCount(t, dst, "alice")["Lists/b"]; got != 4 {
		t.Errorf("Lists/b holds %d messages, want 4", got)
	}

	r = runMailhaul(t, env, append(args[:len(args)-2:len(args)-2], "--relist", args[len(args)-2], args[len(args)-1])...)
	if r.code != 0 || commands(r.stderr, "src", "EXAMINE") < len(folders) || strings.Contains(r.stderr, "folders unchanged") || !strings.Contains(r.stderr, "28 already there") {
		t.Errorf("--relist: exit %d, %d folders examined\n%s", r.code, commands(r.stderr, "src", "EXAMINE"), lastLines(r.stderr, 5))
	}
}

func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimSpace(s), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}

// TestIMAPEmptyFolderGetsMail: folders the source holds empty are created
// on the destination without being selected there (only the folders that
// receive messages are), and mail that reaches such a folder later is
// copied by the next run, once, with its flags and date.
func TestIMAPEmptyFolderGetsMail(t *testing.T) {
	src := testserver.StartDovecot(t)
	dst := testserver.StartDovecot(t)
	c := imapLogin(t, src, "alice")
	for _, f := range []string{"Later", "Projects", "Projects/Q3"} {
		if err := c.Create(f, nil).Wait(); err != nil {
			t.Fatal(err)
		}
	}
	date := time.Date(2019, 3, 4, 5, 6, 7, 0, time.UTC)
	appendTo := func(f, id string, flags ...imap.Flag) {
		t.Helper()
		body := fmt.Sprintf("From: x@example.org\r\nSubject: %s\r\nMessage-ID: <%s@example.org>\r\n\r\nbody of %s\r\n", id, id, id)
		cmd := c.Append(f, int64(len(body)), &imap.AppendOptions{Flags: flags, Time: date})
		cmd.Write([]byte(body))
		cmd.Close()
		if _, err := cmd.Wait(); err != nil {
			t.Fatal(err)
		}
	}
	appendTo("INBOX", "first")
	appendTo("Projects", "plan")
	env := []string{"MAILHAUL_SRC_PASSWORD=" + src.Password("alice"), "MAILHAUL_DST_PASSWORD=" + dst.Password("alice")}
	args := []string{"copy", "-vv", "--insecure-plaintext", "--state-dir", t.TempDir(), "imap://alice@" + src.IMAPAddr, "imap://alice@" + dst.IMAPAddr}
	selected := func(trace string) map[string]bool {
		out := map[string]bool{}
		for _, l := range strings.Split(trace, "\n") {
			if strings.HasPrefix(l, "dst ") && strings.Contains(l, " C: ") && strings.Contains(l, " SELECT ") {
				name := strings.Fields(l[strings.Index(l, " SELECT "):])[1]
				out[strings.Trim(name, `"`)] = true
			}
		}
		return out
	}
	r := runMailhaul(t, env, args...)
	if r.code != 0 || !strings.Contains(r.stderr, "copied 2 messages") {
		t.Fatalf("first run: exit %d\n%s", r.code, lastLines(r.stderr, 5))
	}
	if sel := selected(r.stderr); len(sel) != 2 || !sel["INBOX"] || !sel["Projects"] {
		t.Errorf("first run selected %v on the destination, want INBOX and Projects (the folders that received mail)", sel)
	}
	list, err := imapLogin(t, dst, "alice").List("", "*", nil).Collect()
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, l := range list {
		have[l.Mailbox] = true
	}
	for _, f := range []string{"Later", "Projects/Q3", "Sent", "Trash"} {
		if !have[f] {
			t.Errorf("empty source folder %q not created on the destination (has %v)", f, have)
		}
	}

	appendTo("Later", "late", imap.FlagFlagged, imap.FlagSeen)
	r = runMailhaul(t, env, args...)
	if r.code != 0 || !strings.Contains(r.stderr, "copied 1 message (") {
		t.Fatalf("after new mail: exit %d\n%s", r.code, lastLines(r.stderr, 5))
	}
	d := imapLogin(t, dst, "alice")
	if _, err := d.Select("Later", &imap.SelectOptions{ReadOnly: true}).Wait(); err != nil {
		t.Fatal(err)
	}
	all := imap.SeqSet{}
	all.AddRange(1, 0)
	msgs, err := d.Fetch(all, &imap.FetchOptions{Flags: true, InternalDate: true, Envelope: true}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 1 || msgs[0].Envelope == nil || msgs[0].Envelope.Subject != "late" {
		t.Fatalf("Later holds %d messages, want the one that arrived", len(msgs))
	}
	if f := fmt.Sprint(msgs[0].Flags); !strings.Contains(f, `\Flagged`) || !strings.Contains(f, `\Seen`) {
		t.Errorf("flags %s, want \\Flagged and \\Seen", f)
	}
	if !msgs[0].InternalDate.Equal(date) {
		t.Errorf("internal date %v, want %v", msgs[0].InternalDate, date)
	}
	r = runMailhaul(t, env, args...)
	if r.code != 0 || !strings.Contains(r.stderr, "copied 0 messages") {
		t.Errorf("third run: exit %d\n%s", r.code, lastLines(r.stderr, 5))
	}
	if got := imapCount(t, dst, "alice"); got["INBOX"] != 1 || got["Projects"] != 1 || got["Later"] != 1 || sumCounts(got) != 3 {
		t.Errorf("destination holds %v, want INBOX, Projects and Later 1 each", got)
	}
}

// TestTypoFolderIsAnError: a mistyped folder — in the source URL, or as
// the only --include — is an error that names it, for copy and for check
// (a check of nothing must not say COMPLETE), and an --include that
// matches nothing beside one that does is a warning.
func TestTypoFolderIsAnError(t *testing.T) {
	src := testserver.StartDovecot(t)
	dst := testserver.StartDovecot(t)
	c := imapLogin(t, src, "alice")
	if err := c.Create("Work", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	body := "From: x@example.org\r\nSubject: w\r\nMessage-ID: <w@example.org>\r\n\r\nwork\r\n"
	cmd := c.Append("Work", int64(len(body)), nil)
	cmd.Write([]byte(body))
	cmd.Close()
	if _, err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	env := []string{"MAILHAUL_SRC_PASSWORD=" + src.Password("alice"), "MAILHAUL_DST_PASSWORD=" + dst.Password("alice")}
	state := t.TempDir()
	srcURL, dstURL := "imap://alice@"+src.IMAPAddr, "imap://alice@"+dst.IMAPAddr
	for _, args := range [][]string{
		{"copy", srcURL + "/Wrok", dstURL},
		{"check", srcURL + "/Wrok", dstURL},
		{"copy", "--include", "Wrok", srcURL, dstURL},
		{"check", "--include", "Wrok", srcURL, dstURL},
		{"ls", srcURL + "/Wrok"},
	} {
		args = append([]string{args[0], "--insecure-plaintext", "--state-dir", state}, args[1:]...)
		if args[0] == "ls" {
			args = append(args[:2], args[4:]...)
		}
		r := runMailhaul(t, env, args...)
		if r.code != exitUsage || !strings.Contains(r.stderr, `"Wrok"`) || strings.Contains(r.stderr, "COMPLETE") {
			t.Errorf("%v: exit %d, want %d (usage) and an error naming the folder\n%s", args, r.code, exitUsage, lastLines(r.stderr, 4))
		}
	}
	r := runMailhaul(t, env, "copy", "--insecure-plaintext", "--state-dir", state, "--include", "Work", "--include", "Wrok", srcURL, dstURL)
	if r.code != exitOK || !strings.Contains(r.stderr, `--include \"Wrok\" matches no folder`) || !strings.Contains(r.stderr, "copied 1 message (") {
		t.Errorf("--include Work --include Wrok: exit %d, want 0, a warning and the Work copy\n%s", r.code, lastLines(r.stderr, 6))
	}
}

// TestIMAPSubscriptions: folders copied from a local store (no
// subscriptions) are subscribed on the IMAP destination — Thunderbird
// shows only subscribed folders —, those it had already too, and an IMAP source's subscriptions are
// copied as they are: a folder its user unsubscribed stays unsubscribed.
func TestIMAPSubscriptions(t *testing.T) {
	dst := testserver.StartDovecot(t, testserver.WithUser("alice", "Alice-pw-1"), testserver.WithUser("bob", "Bob-pw-2"))
	subscribed := func(user string) map[string]bool {
		t.Helper()
		l, err := imapLogin(t, dst, user).List("", "*", &imap.ListOptions{SelectSubscribed: true}).Collect()
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]bool{}
		for _, d := range l {
			out[d.Mailbox] = true
		}
		return out
	}
	before, err := imapLogin(t, dst, "alice").List("", "*", nil).Collect()
	if err != nil {
		t.Fatal(err)
	}
	existed := map[string]bool{}
	for _, d := range before {
		existed[d.Mailbox] = true // the server's own Sent, Trash, ...: left as they are
	}
	srcDir, _ := filepath.Abs("../../testdata/maildir")
	env := []string{"MAILHAUL_DST_PASSWORD=" + dst.Password("alice")}
	if r := runMailhaul(t, env, "copy", "--insecure-plaintext", "--state-dir", t.TempDir(), "maildir:"+srcDir, "imap://alice@"+dst.IMAPAddr); r.code != 0 {
		t.Fatalf("maildir copy: exit %d\n%s", r.code, lastLines(r.stderr, 5))
	}
	all, err := imapLogin(t, dst, "alice").List("", "*", nil).Collect()
	if err != nil {
		t.Fatal(err)
	}
	subs := subscribed("alice")
	for _, d := range all {
		if !imapconnHasNoSelect(d) && !subs[d.Mailbox] && !existed[d.Mailbox] {
			t.Errorf("folder %q copied from a Maildir is not subscribed (subscribed: %v)", d.Mailbox, subs)
		}
	}
	// Dovecot made its special folders (auto = create) unsubscribed: the
	// two the Maildir's Sent and Drafts went into are subscribed now, the
	// two that got nothing are left as they were.
	if !existed["Sent"] || !existed["Drafts"] || !subs["Sent"] || !subs["Drafts"] || subs["Trash"] || subs["Junk"] {
		t.Errorf("after the copy, subscribed: %v; want Sent and Drafts (which received mail), not Trash or Junk", subs)
	}

	src := testserver.StartDovecot(t)
	c := imapLogin(t, src, "alice")
	for _, f := range []string{"Work", "Old"} {
		if err := c.Create(f, nil).Wait(); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Subscribe("Work").Wait(); err != nil {
		t.Fatal(err)
	}
	env = []string{"MAILHAUL_SRC_PASSWORD=" + src.Password("alice"), "MAILHAUL_DST_PASSWORD=" + dst.Password("bob")}
	if r := runMailhaul(t, env, "copy", "--insecure-plaintext", "--state-dir", t.TempDir(), "imap://alice@"+src.IMAPAddr, "imap://bob@"+dst.IMAPAddr); r.code != 0 {
		t.Fatalf("imap copy: exit %d\n%s", r.code, lastLines(r.stderr, 5))
	}
	if subs := subscribed("bob"); !subs["Work"] || subs["Old"] {
		t.Errorf("destination subscriptions %v, want Work and not Old (as on the source)", subs)
	}
}

func imapconnHasNoSelect(d *imap.ListData) bool {
	for _, a := range d.Attrs {
		if strings.EqualFold(string(a), string(imap.MailboxAttrNoSelect)) {
			return true
		}
	}
	return false
}
