package main

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/mailhaul/mailhaul/internal/testserver"
)

// The merge story of the README: a POP3 user's mail lives on the POP3
// server (what the client left there, plus what it never downloaded) and
// in the client's local folders (Thunderbird: what it downloaded, filed
// into folders, and the Sent folder that only ever existed locally). Two
// commands move both into one IMAP account, each message once.

// tbMessage is a message as the test's POP3 user knows it.
type tbMessage struct {
	mid     string
	subject string
	date    time.Time
	body    string // CRLF, as the server serves it
}

func (m tbMessage) raw() string {
	return fmt.Sprintf("Return-Path: <sender@example.org>\r\nReceived: from mx.example.org by pop.example.org; %s\r\nDate: %s\r\nFrom: Sender <sender@example.org>\r\nTo: user@example.org\r\nMessage-ID: %s\r\nSubject: %s\r\n\r\n%s",
		m.date.Format(time.RFC1123Z), m.date.Format(time.RFC1123Z), m.mid, m.subject, m.body)
}

// thunderbirdCopy is the message as Thunderbird stores it after a POP3
// download on Linux: account and UIDL headers and its status headers
// prepended, LF line ends, a "From - " separator, body lines starting with
// "From " quoted.
func thunderbirdCopy(m tbMessage, uidl, status string) string {
	var b strings.Builder
	b.WriteString("From - " + m.date.UTC().Format("Mon Jan _2 15:04:05 2006") + "\n")
	b.WriteString("X-Account-Key: account2\nX-UIDL: " + uidl + "\nX-Mozilla-Status: " + status + "\nX-Mozilla-Status2: 00000000\n")
	b.WriteString("X-Mozilla-Keys:                                                                                 \n")
	for _, l := range strings.SplitAfter(strings.ReplaceAll(m.raw(), "\r\n", "\n"), "\n") {
		if strings.HasPrefix(l, "From ") {
			l = ">" + l
		}
		b.WriteString(l)
	}
	b.WriteString("\n")
	return b.String()
}

func TestPOP3MergeStory(t *testing.T) {
	d := testserver.StartDovecot(t, testserver.WithUser("alice", "Pop-Pw-31"), testserver.WithUser("bob", "Imap-Pw-32"), testserver.WithUser("carol", "Carol-Pw-33"))
	msg := func(tag string, i int) tbMessage {
		return tbMessage{mid: fmt.Sprintf("<%s-%d@example.org>", tag, i), subject: fmt.Sprintf("%s %d", tag, i),
			date: time.Date(2021, 3, 1+i, 9, 30, 0, 0, time.FixedZone("", 3600)),
			body: fmt.Sprintf("Hello %s %d.\r\nFrom the desk of the sender\r\n.\r\n%s\r\n", tag, i, strings.Repeat("text ", i*20))}
	}
	var left, fresh, gone, sent []tbMessage
	for i := 0; i < 10; i++ {
		left = append(left, msg("left", i)) // downloaded, left on the server
	}
	for i := 0; i < 4; i++ {
		fresh = append(fresh, msg("fresh", i)) // on the server, never downloaded
	}
	for i := 0; i < 5; i++ {
		gone = append(gone, msg("gone", i)) // downloaded, deleted from the server since
	}
	for i := 0; i < 3; i++ {
		m := msg("sent", i)
		m.body = strings.ReplaceAll(m.body, "Hello", "Reply")
		sent = append(sent, m)
	}
	var onServer [][]byte
	for _, m := range append(append([]tbMessage{}, left...), fresh...) {
		onServer = append(onServer, []byte(m.raw()))
	}
	d.SeedMaildir(t, "alice", "", onServer, nil)
	uidls := pop3UIDLs(t, d, "alice")

	// Thunderbird's local folders: left[0..9] and gone[] were downloaded;
	// left[3], left[7] and gone[1] were filed into Archives/2019, left[5]
	// is in Trash; left[2] was read and flagged.
	tb := filepath.Join(t.TempDir(), "Local Folders")
	os.MkdirAll(filepath.Join(tb, "Archives.sbd"), 0o755)
	files := map[string]*strings.Builder{"Inbox": {}, "Archives.sbd/2019": {}, "Trash": {}, "Sent": {}}
	where := map[string]string{}
	for i, m := range left {
		f, status := "Inbox", "0001"
		switch i {
		case 3, 7:
			f = "Archives.sbd/2019"
		case 5:
			f = "Trash"
		case 2:
			status = "0005"
		}
		c := thunderbirdCopy(m, uidls[i], status)
		if i == 5 {
			// The last message of its file, and the file ends without
			// a newline (written by a program that does not end one):
			// the copy's body is one line end shorter than the
			// server's.
			c = strings.TrimSuffix(c, "\n\n")
		}
		files[f].WriteString(c)
		where[m.mid] = f
	}
	for i, m := range gone {
		f := "Inbox"
		if i == 1 {
			f = "Archives.sbd/2019"
		}
		files[f].WriteString(thunderbirdCopy(m, fmt.Sprintf("old-%d", i), "0001"))
		where[m.mid] = f
	}
	for _, m := range sent {
		// Sent messages were never downloaded: no account headers.
		files["Sent"].WriteString("From - " + m.date.UTC().Format("Mon Jan _2 15:04:05 2006") + "\nX-Mozilla-Status: 0001\nX-Mozilla-Status2: 00000000\n" + strings.ReplaceAll(m.raw(), "\r\n", "\n") + "\n")
		where[m.mid] = "Sent"
	}
	for f, b := range files {
		if err := os.WriteFile(filepath.Join(tb, f), []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(tb, f+".msf"), []byte("// <!-- <mdb:mork:z v=\"1.4\"/> -->\n"), 0o644)
	}
	os.WriteFile(filepath.Join(tb, "popstate.dat"), []byte("# POP3 State File\n"), 0o644)

	env := []string{"MAILHAUL_SRC_PASSWORD=Pop-Pw-31", "MAILHAUL_DST_PASSWORD=Imap-Pw-32"}
	state := t.TempDir()
	dst := "imaps://bob@" + d.IMAPSAddr
	// Command 1: the local folders (flags, folders and Sent come from here).
	if r := runMailhaul(t, env, "copy", "--state-dir", state, "--ca-file", d.CAFile, "mbox:"+tb, dst); r.code != 0 {
		t.Fatalf("mbox copy: exit %d\n%s", r.code, r.stderr)
	}
	// Command 2: what is on the POP3 server and not already in the account.
	popCmd := []string{"copy", "--state-dir", state, "--ca-file", d.CAFile, "--dedupe-across-folders", "pop3s://alice@" + d.POP3SAddr, dst}
	r := runMailhaul(t, env, popCmd...)
	if r.code != 0 {
		t.Fatalf("pop3 copy: exit %d\n%s", r.code, r.stderr)
	}
	if !strings.Contains(r.stderr, "copied "+plural(len(fresh), "message")) || !strings.Contains(r.stderr, fmt.Sprintf("%d already there (%d of them found by Message-ID", len(left), len(left))) {
		t.Errorf("summary:\n%s", r.stderr)
	}

	// Each message once, in the folder Thunderbird had it in (fresh mail
	// in INBOX), Sent included; Thunderbird's flags kept.
	folders := map[string]string{"Inbox": "INBOX", "Archives.sbd/2019": "Archives/2019", "Trash": "Trash", "Sent": "Sent"}
	check := func(extra ...tbMessage) {
		t.Helper()
		want := map[string]string{}
		for mid, f := range where {
			want[mid] = folders[f]
		}
		for _, m := range append(append([]tbMessage{}, fresh...), extra...) {
			want[m.mid] = "INBOX"
		}
		got := map[string][]string{}
		for _, f := range []string{"INBOX", "Archives/2019", "Trash", "Sent", "Drafts", "Junk"} {
			for _, m := range imapFolder(t, d, "bob", f) {
				got[midOf(m.body)] = append(got[midOf(m.body)], f)
				if midOf(m.body) == left[2].mid && !strings.Contains(strings.Join(m.flags, " "), `\Flagged`) {
					t.Errorf("Thunderbird's flags lost: %v", m.flags)
				}
			}
		}
		var bad []string
		for mid, f := range want {
			if strings.Join(got[mid], ",") != f {
				bad = append(bad, fmt.Sprintf("%s in %v, want once in %s", mid, got[mid], f))
			}
		}
		for mid, fs := range got {
			if _, ok := want[mid]; !ok {
				bad = append(bad, fmt.Sprintf("unexpected %s in %v", mid, fs))
			}
		}
		sort.Strings(bad)
		if len(bad) > 0 {
			t.Fatalf("account after the merge:\n%s", strings.Join(bad, "\n"))
		}
	}
	check()

	// Again: nothing new. Then new mail arrives on the server.
	if r := runMailhaul(t, env, popCmd...); r.code != 0 || !strings.Contains(r.stderr, "copied 0 messages") {
		t.Fatalf("second pop3 run: exit %d\n%s", r.code, r.stderr)
	}
	late := msg("late", 1)
	d.SeedMaildir(t, "alice", "", [][]byte{[]byte(late.raw())}, nil)
	if r := runMailhaul(t, env, popCmd...); r.code != 0 || !strings.Contains(r.stderr, "copied 1 message (") {
		t.Fatalf("pop3 run after new mail: exit %d\n%s", r.code, r.stderr)
	}
	check(late)

	// Control, into a second account: with --dedupe alone, matching stays
	// within INBOX, so the copies Thunderbird filed elsewhere come back
	// into INBOX, while those in Inbox are recognised despite Thunderbird's
	// extra headers and LF line ends (the body length matches, the size
	// does not).
	env = []string{"MAILHAUL_SRC_PASSWORD=Pop-Pw-31", "MAILHAUL_DST_PASSWORD=Carol-Pw-33"}
	state = t.TempDir()
	dst = "imaps://carol@" + d.IMAPSAddr
	if r := runMailhaul(t, env, "copy", "--state-dir", state, "--ca-file", d.CAFile, "mbox:"+tb, dst); r.code != 0 {
		t.Fatalf("mbox copy: exit %d\n%s", r.code, r.stderr)
	}
	if r := runMailhaul(t, env, "copy", "--state-dir", state, "--ca-file", d.CAFile, "--dedupe", "pop3s://alice@"+d.POP3SAddr, dst); r.code != 0 {
		t.Fatalf("pop3 copy: exit %d\n%s", r.code, r.stderr)
	}
	inbox := map[string]int{}
	for _, m := range imapFolder(t, d, "carol", "INBOX") {
		inbox[midOf(m.body)]++
	}
	// Every left-on-server message is in INBOX exactly once: those from
	// Thunderbird's Inbox were matched (not copied twice); the filed ones
	// were copied again (and so exist twice in the account).
	for i, m := range left {
		if inbox[m.mid] != 1 {
			t.Errorf("--dedupe alone: left-%d (Thunderbird folder %s) %d times in INBOX, want 1", i, where[m.mid], inbox[m.mid])
		}
	}
}
