package sources

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailhaul/mailhaul/checkpoint"
	"github.com/mailhaul/mailhaul/internal/maildir"
	"github.com/mailhaul/mailhaul/internal/mbox"
	"github.com/mailhaul/mailhaul/migrate"
	"github.com/mailhaul/mailhaul/sinks"
)

var tbRoot = filepath.Join("..", "testdata", "thunderbird", "Mail", "Local Folders")

// splitMboxo is an independent, naive reader of the small test files:
// split on "\n\nFrom " and undo mboxo quoting. It returns the messages by
// Message-ID.
func splitMboxo(t *testing.T, path string) map[string][]byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]byte{}
	if len(data) == 0 {
		return out
	}
	for _, part := range strings.Split("\n\n"+string(data), "\n\nFrom ") {
		if part == "" || part == "\n" {
			continue
		}
		_, msg, _ := strings.Cut(part, "\n") // drop the rest of the From_ line
		if strings.HasSuffix(msg, "\n\n") {  // the last message and its separator
			msg = msg[:len(msg)-1]
		} else { // the split took the line break of the last line
			msg += "\n"
		}
		var b strings.Builder
		for _, l := range strings.SplitAfter(msg, "\n") {
			if strings.HasPrefix(l, ">From ") {
				l = l[1:]
			}
			b.WriteString(l)
		}
		out[messageID(t, []byte(b.String()))] = []byte(b.String())
	}
	return out
}

var midRE = regexp.MustCompile(`(?m)^Message-ID: <([^>]+)>`)

func messageID(t *testing.T, b []byte) string {
	m := midRE.FindSubmatch(b)
	if m == nil {
		t.Fatalf("no Message-ID in %q", b)
	}
	return string(m[1])
}

// storedMsg is a message found in the destination Maildir.
type storedMsg struct {
	body  []byte
	flags []string
	mtime time.Time
}

func readMaildir(t *testing.T, root string) map[string]map[string]storedMsg {
	t.Helper()
	folders, _, err := maildir.Folders(root, maildir.PlusPlus)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]map[string]storedMsg{}
	for _, f := range folders {
		kw, err := maildir.ReadKeywords(f.Dir)
		if err != nil {
			t.Fatal(err)
		}
		out[f.Name] = map[string]storedMsg{}
		for _, sub := range []string{"new", "cur"} {
			ents, _ := os.ReadDir(filepath.Join(f.Dir, sub))
			for _, e := range ents {
				p := filepath.Join(f.Dir, sub, e.Name())
				b, err := os.ReadFile(p)
				if err != nil {
					t.Fatal(err)
				}
				fi, _ := os.Stat(p)
				_, info := maildir.SplitName(e.Name())
				fl := maildir.FlagsFromInfo(info, kw)
				sort.Strings(fl)
				id := messageID(t, b)
				if _, dup := out[f.Name][id]; dup {
					t.Errorf("folder %s: %s stored twice", f.Name, id)
				}
				out[f.Name][id] = storedMsg{body: b, flags: fl, mtime: fi.ModTime()}
			}
		}
	}
	return out
}

func runCopy(t *testing.T, src migrate.Source, dst, state string, o migrate.Options) migrate.Report {
	t.Helper()
	sink, err := sinks.OpenMaildir(dst, maildir.PlusPlus)
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	cp, err := checkpoint.Open(filepath.Join(state, "cp.db"), "mbox:test", "maildir:"+dst)
	if err != nil {
		t.Fatal(err)
	}
	defer cp.Close()
	o.Source, o.Sink, o.Checkpoint = src, sink, cp
	rep, err := migrate.Run(context.Background(), o)
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	return rep
}

func TestMboxMailboxesThunderbird(t *testing.T) {
	var warns []string
	s, err := OpenMbox(tbRoot, MboxOptions{Warn: func(err error) { warns = append(warns, err.Error()) }})
	if err != nil {
		t.Fatal(err)
	}
	mbs, err := s.Mailboxes(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, mb := range mbs {
		got = append(got, mb.Name+"|"+mb.SpecialUse)
		if mb.NoSelect {
			t.Errorf("%s is NoSelect", mb.Name)
		}
	}
	want := []string{"INBOX|", "Archives|" + migrate.UseArchive, "Archives/2019|", "Drafts|" + migrate.UseDrafts,
		"Geschäftlich|", "Geschäftlich/Kunden|", "Sent|" + migrate.UseSent, "Trash|" + migrate.UseTrash, "Unsent Messages|", "notes.txt|"}
	if strings.Join(got, ", ") != strings.Join(want, ", ") {
		t.Errorf("mailboxes:\n got %v\nwant %v", got, want)
	}
	if len(warns) != 0 {
		t.Errorf("warnings: %q", warns)
	}
	// notes.txt is no mbox file: a folder that is skipped, with a reason.
	for _, mb := range mbs {
		err := s.CheckMailbox(context.Background(), mb)
		if (mb.Name == "notes.txt") != (err != nil) {
			t.Errorf("CheckMailbox(%s): %v", mb.Name, err)
		}
		if err != nil && (migrate.Classify(err) != migrate.Skip || !strings.Contains(err.Error(), "notes.txt is not an mbox file")) {
			t.Errorf("CheckMailbox(%s): %v (class %v)", mb.Name, err, migrate.Classify(err))
		}
	}
}

// TestMboxThunderbirdToMaildir copies the Thunderbird tree into a Maildir
// through the engine and compares folder by folder.
func TestMboxThunderbirdToMaildir(t *testing.T) {
	dst, state := t.TempDir(), t.TempDir()
	s, err := OpenMbox(tbRoot, MboxOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rep := runCopy(t, s, dst, state, migrate.Options{Transfers: 4})
	if rep.Copied != 14 || len(rep.Skipped) != 1 || rep.Filtered != 1 {
		t.Fatalf("report: copied %d, skipped %v, filtered %d", rep.Copied, rep.Skipped, rep.Filtered)
	}
	if sk := rep.Skipped[0]; sk.Folder != "notes.txt" || sk.ID != "" || !strings.Contains(sk.Reason, "not an mbox file") {
		t.Errorf("skipped: %+v", sk)
	}
	got := readMaildir(t, dst)
	files := map[string]string{
		"INBOX": "Inbox", "Sent": "Sent", "Drafts": "Drafts", "Trash": "Trash", "Archives": "Archives",
		"Archives/2019": "Archives.sbd/2019", "Geschäftlich": "Geschäftlich",
		"Geschäftlich/Kunden": "Geschäftlich.sbd/Kunden", "Unsent Messages": "Unsent Messages",
	}
	if len(got) != len(files) {
		t.Errorf("destination folders: %d, want %d", len(got), len(files))
	}
	for folder, file := range files {
		want := splitMboxo(t, filepath.Join(tbRoot, file))
		if folder == "INBOX" {
			delete(want, "in4@tb.example") // expunged
		}
		if len(got[folder]) != len(want) {
			t.Errorf("%s: %d messages, want %d", folder, len(got[folder]), len(want))
		}
		for id, b := range want {
			if !bytes.Equal(got[folder][id].body, b) {
				t.Errorf("%s %s: bytes differ:\n got %q\nwant %q", folder, id, got[folder][id].body, b)
			}
		}
	}
	if !bytes.Contains(got["INBOX"]["in5@tb.example"].body, []byte("\nFrom the quoted line.\n")) {
		t.Error(">From line not unquoted")
	}
	flags := map[string]string{
		"INBOX/in1": "", "INBOX/in2": `\Seen`, "INBOX/in3": `$label1 \Answered \Flagged \Seen work`,
		"INBOX/in5": `\Seen`, "INBOX/in6": `$Forwarded $label2 \Seen`, "Archives/2019/ar2": `\Flagged \Seen`,
		"Geschäftlich/Kunden/ku2": "$label3", "Sent/se2": `\Seen`,
	}
	for k, want := range flags {
		i := strings.LastIndex(k, "/")
		m := got[k[:i]][k[i+1:]+"@tb.example"]
		if g := strings.Join(m.flags, " "); g != want {
			t.Errorf("%s: flags %q, want %q", k, g, want)
		}
	}
	if d := got["INBOX"]["in3@tb.example"].mtime; !d.Equal(time.Date(2019, 1, 9, 11, 45, 10, 0, time.UTC)) {
		t.Errorf("internal date of in3: %v", d)
	}
	if d := got["Geschäftlich/Kunden"]["ku1@tb.example"].mtime; !d.Equal(time.Date(2019, 4, 2, 8, 0, 0, 0, time.UTC)) {
		t.Errorf("internal date of ku1: %v", d)
	}

	// A second run copies nothing.
	s2, _ := OpenMbox(tbRoot, MboxOptions{})
	rep = runCopy(t, s2, dst, state, migrate.Options{})
	if rep.Copied != 0 || rep.Already != 14 {
		t.Errorf("second run: copied %d, already %d", rep.Copied, rep.Already)
	}

	// --include-deleted copies the expunged message, flagged \Deleted.
	s3, _ := OpenMbox(tbRoot, MboxOptions{})
	rep = runCopy(t, s3, dst, state, migrate.Options{IncludeDeleted: true})
	if rep.Copied != 1 {
		t.Errorf("include deleted: copied %d", rep.Copied)
	}
	if fl := strings.Join(readMaildir(t, dst)["INBOX"]["in4@tb.example"].flags, " "); fl != `\Deleted \Seen` {
		t.Errorf("expunged message flags %q", fl)
	}
}

// copyFile copies a test file into dir.
func copyFile(t *testing.T, src, dir, name string) string {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestMboxIdentityStable: appending to the file, marking a message read in
// place, and compacting (removing a message) do not re-copy anything.
func TestMboxIdentityStable(t *testing.T) {
	dir, dst, state := t.TempDir(), t.TempDir(), t.TempDir()
	p := copyFile(t, filepath.Join(tbRoot, "Inbox"), dir, "Inbox")
	run := func() migrate.Report {
		s, err := OpenMbox(p, MboxOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return runCopy(t, s, dst, state, migrate.Options{})
	}
	if rep := run(); rep.Copied != 5 {
		t.Fatalf("first run copied %d", rep.Copied)
	}
	data, _ := os.ReadFile(p)
	// Thunderbird marks in1 read in place, then mail arrives, then two
	// byte-identical copies of one message.
	data = bytes.Replace(data, []byte("X-Mozilla-Status: 0000"), []byte("X-Mozilla-Status: 0001"), 1)
	extra := "From - Sun Jan 13 10:00:00 2019\nMessage-ID: <new@tb.example>\nSubject: new\n\nnew\n\n"
	data = append(data, extra+extra...)
	os.WriteFile(p, data, 0o600)
	if rep := run(); rep.Copied != 2 || rep.Already != 5 {
		t.Fatalf("after append: copied %d, already %d", rep.Copied, rep.Already)
	}
	// Compaction: the expunged message disappears.
	i := bytes.Index(data, []byte("From - Thu Jan 10"))
	j := bytes.Index(data, []byte("From - Fri Jan 11"))
	data = append(data[:i:i], data[j:]...)
	os.WriteFile(p, data, 0o600)
	if rep := run(); rep.Copied != 0 || rep.Already != 7 {
		t.Fatalf("after compaction: copied %d, already %d", rep.Copied, rep.Already)
	}
	files, _ := filepath.Glob(filepath.Join(dst, "cur", "*"))
	if len(files) != 7 {
		t.Errorf("destination INBOX holds %d messages, want 7", len(files))
	}
}

func TestMboxSingleFileToFolderAndDuplicates(t *testing.T) {
	dir := t.TempDir()
	msg := "From a Sat Jan  1 00:00:00 2000\nSubject: same\n\nsame\n\n"
	p := filepath.Join(dir, "export.mbox")
	os.WriteFile(p, []byte(msg+msg+msg), 0o600)
	s, err := OpenMbox(p, MboxOptions{ToFolder: "INBOX"})
	if err != nil {
		t.Fatal(err)
	}
	mbs, _ := s.Mailboxes(context.Background())
	if len(mbs) != 1 || mbs[0].Name != "INBOX" {
		t.Fatalf("mailboxes %+v", mbs)
	}
	var ids []string
	err = s.List(context.Background(), mbs[0], func(m migrate.Message) error {
		ids = append(ids, m.ID)
		if !m.Date.Equal(time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)) || m.Size != int64(len("Subject: same\n\nsame\n")) {
			t.Errorf("message %+v", m)
		}
		return nil
	})
	if err != nil || len(ids) != 3 || len(ids[0]) != 32 || ids[1] != ids[0]+"-1" || ids[2] != ids[0]+"-2" {
		t.Fatalf("ids %v, %v", ids, err)
	}
	s2, _ := OpenMbox(p, MboxOptions{})
	if mbs, _ := s2.Mailboxes(context.Background()); mbs[0].Name != "export.mbox" {
		t.Errorf("default folder name %q", mbs[0].Name)
	}
}

// TestMboxFetchChangedFile: a file rewritten between List and Fetch gives
// a skipped message with a clear reason, never wrong bytes.
func TestMboxFetchChangedFile(t *testing.T) {
	dir := t.TempDir()
	p := copyFile(t, filepath.Join("..", "testdata", "mbox", "mboxo.mbox"), dir, "f")
	s, _ := OpenMbox(p, MboxOptions{})
	mbs, _ := s.Mailboxes(context.Background())
	var msgs []migrate.Message
	s.List(context.Background(), mbs[0], func(m migrate.Message) error { msgs = append(msgs, m); return nil })
	if len(msgs) != 3 {
		t.Fatalf("%d messages", len(msgs))
	}
	// Concurrent fetches of the unchanged file agree with the listing.
	var wg sync.WaitGroup
	for _, m := range msgs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var b bytes.Buffer
			if err := s.Fetch(context.Background(), m, &b); err != nil || int64(b.Len()) != m.Size {
				t.Errorf("fetch %s: %v (%d bytes)", m.ID, err, b.Len())
			}
		}()
	}
	wg.Wait()
	data, _ := os.ReadFile(p)
	os.WriteFile(p, bytes.Replace(data, []byte("Reply text."), []byte("Reply TEXT."), 1), 0o600)
	err := s.Fetch(context.Background(), msgs[1], io.Discard)
	if migrate.Classify(err) != migrate.Skip || !strings.Contains(err.Error(), "changed since it was listed") || !strings.Contains(err.Error(), p) {
		t.Errorf("changed file: %v", err)
	}
	os.WriteFile(p, data[:100], 0o600)
	if err := s.Fetch(context.Background(), msgs[2], io.Discard); migrate.Classify(err) != migrate.Skip {
		t.Errorf("truncated file: %v", err)
	}
	// A writer error is not the message's fault: it is passed on.
	os.WriteFile(p, data, 0o600)
	werr := errors.New("disk full")
	if err := s.Fetch(context.Background(), msgs[0], failWriter{werr}); !errors.Is(err, werr) || migrate.Classify(err) != migrate.Fatal {
		t.Errorf("writer error: %v", err)
	}
}

type failWriter struct{ err error }

func (w failWriter) Write([]byte) (int, error) { return 0, w.err }

// TestMboxBadFilesSkippedAndListed: bad messages are reported as skipped
// with file and offset, good ones around them are copied.
func TestMboxBadFilesSkippedAndListed(t *testing.T) {
	dir, dst, state := t.TempDir(), t.TempDir(), t.TempDir()
	for _, f := range []string{"bad-no-from-at-top.mbox", "bad-nul-binary.mbox", "bad-truncated.mbox", "dates.mbox", "lying-content-length.mbox"} {
		copyFile(t, filepath.Join("..", "testdata", "mbox", f), dir, f)
	}
	// A tree only lists files starting with "From ": put the junk-topped
	// file in as a single-file source instead.
	junk := filepath.Join(dir, "bad-no-from-at-top.mbox")
	os.Rename(junk, filepath.Join(t.TempDir(), "x"))
	var warns []string
	s, _ := OpenMbox(dir, MboxOptions{Warn: func(err error) { warns = append(warns, err.Error()) }})
	rep := runCopy(t, s, dst, state, migrate.Options{})
	if rep.Copied != 2+1+4+3 || len(rep.Skipped) != 2 {
		t.Fatalf("copied %d, skipped %+v", rep.Copied, rep.Skipped)
	}
	for _, sk := range rep.Skipped {
		if !strings.Contains(sk.Reason, dir) || !strings.Contains(sk.Reason, "offset") {
			t.Errorf("skip reason without file and offset: %s", sk.Reason)
		}
	}
	if !strings.Contains(strings.Join(warns, "\n"), "cannot parse the date") {
		t.Errorf("warnings: %q", warns)
	}
	p := copyFile(t, filepath.Join("..", "testdata", "mbox", "bad-no-from-at-top.mbox"), t.TempDir(), "in")
	s3, _ := OpenMbox(p, MboxOptions{})
	rep = runCopy(t, s3, t.TempDir(), t.TempDir(), migrate.Options{})
	if rep.Copied != 1 || len(rep.Skipped) != 1 || !strings.Contains(rep.Skipped[0].Reason, "offset 0") {
		t.Errorf("junk at top: copied %d, skipped %+v", rep.Copied, rep.Skipped)
	}
}

func TestMboxForcedFormat(t *testing.T) {
	p := filepath.Join("..", "testdata", "mbox", "mboxrd.mbox")
	for _, c := range []struct {
		f    mbox.Format
		want string
	}{{mbox.MboxO, "\n>>From once quoted.\n"}, {mbox.MboxRD, "\n>From once quoted.\n"}, {mbox.MboxCL2, "\n>>From once quoted.\n"}} {
		s, _ := OpenMbox(p, MboxOptions{Format: c.f})
		mbs, _ := s.Mailboxes(context.Background())
		var first migrate.Message
		s.List(context.Background(), mbs[0], func(m migrate.Message) error {
			if first.ID == "" {
				first = m
			}
			return nil
		})
		var b bytes.Buffer
		if err := s.Fetch(context.Background(), first, &b); err != nil || !strings.Contains(b.String(), c.want) {
			t.Errorf("%v: %v %q", c.f, err, b.String())
		}
	}
}

// TestMboxRealWorldSamples copies the samples of files as other programs
// write them (no blank line before From_ lines, a byte-order mark or blank
// lines at the top, a NUL byte in a text message, lenient header syntax,
// mixed dialects) through the engine: every message arrives, byte for
// byte as the reader gives it, nothing is skipped, and the dialect of
// each file is logged.
func TestMboxRealWorldSamples(t *testing.T) {
	for file, want := range map[string]int{
		"no-blank-separator.mbox": 3, "bom-start.mbox": 2, "blank-start.mbox": 1,
		"nul-in-text.mbox": 2, "lenient-headers.mbox": 3, "mboxo-one-rdline.mbox": 3,
	} {
		t.Run(file, func(t *testing.T) {
			var infos, warns []string
			p := filepath.Join("..", "testdata", "mbox", file)
			s, err := OpenMbox(p, MboxOptions{ToFolder: "INBOX",
				Info: func(s string) { infos = append(infos, s) },
				Warn: func(err error) { warns = append(warns, err.Error()) }})
			if err != nil {
				t.Fatal(err)
			}
			dst := t.TempDir()
			rep := runCopy(t, s, dst, t.TempDir(), migrate.Options{})
			if rep.Copied != want || len(rep.Skipped) != 0 {
				t.Fatalf("copied %d, skipped %+v; want %d copied", rep.Copied, rep.Skipped, want)
			}
			if got := len(readMaildir(t, dst)["INBOX"]); got != want {
				t.Errorf("destination holds %d messages, want %d", got, want)
			}
			if len(infos) != 1 || !strings.Contains(infos[0], p) || !strings.Contains(infos[0], fmt.Sprintf("%d message", want)) {
				t.Errorf("dialect log: %q", infos)
			}
			if file == "mboxo-one-rdline.mbox" {
				got := readMaildir(t, dst)["INBOX"]
				if !bytes.Contains(got["or2@example.org"].body, []byte("\n>>From the start")) || !bytes.Contains(got["or3@example.org"].body, []byte("\n>From a line")) {
					t.Errorf("dialects: %q / %q", got["or2@example.org"].body, got["or3@example.org"].body)
				}
				if !strings.Contains(strings.Join(warns, "\n"), "1 message(s) (the first at offset 170) hold >>From lines") {
					t.Errorf("doubt not reported: %q", warns)
				}
			}
		})
	}
}

// TestMboxTreeOddFiles: in a Thunderbird-style tree, files that begin with
// a byte-order mark or blank lines are folders like any other; a file that
// is no mbox at all is a folder reported as skipped (never created in the
// destination); a symbolic link to a directory is not followed.
func TestMboxTreeOddFiles(t *testing.T) {
	dir := t.TempDir()
	copyFile(t, filepath.Join("..", "testdata", "mbox", "bom-start.mbox"), dir, "Inbox")
	copyFile(t, filepath.Join("..", "testdata", "mbox", "blank-start.mbox"), dir, "Sent")
	os.WriteFile(filepath.Join(dir, "photo.jpg"), []byte("\xff\xd8\xff\xe0\x00\x10JFIF\x00binary"), 0o600)
	// Copied off Windows, with a profile's files: no folders at all.
	os.WriteFile(filepath.Join(dir, "Thumbs.db"), []byte("\xd0\xcf\x11\xe0"), 0o600)
	os.WriteFile(filepath.Join(dir, "desktop.ini"), []byte("[.ShellClassInfo]\r\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "prefs.js"), []byte("user_pref(\"mail.server.server1.type\", \"pop3\");\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "Empty.msf"), nil, 0o600)
	// A folder named like a profile file is still a folder.
	copyFile(t, filepath.Join("..", "testdata", "mbox", "blank-start.mbox"), dir, "node.js")
	os.Mkdir(filepath.Join(dir, "Sent.sbd"), 0o700)
	if err := os.Symlink("..", filepath.Join(dir, "Sent.sbd", "Loop")); err != nil {
		t.Fatal(err)
	}
	var warns []string
	s, err := OpenMbox(dir, MboxOptions{Warn: func(err error) { warns = append(warns, err.Error()) }})
	if err != nil {
		t.Fatal(err)
	}
	dst := t.TempDir()
	rep := runCopy(t, s, dst, t.TempDir(), migrate.Options{})
	if rep.Copied != 4 || len(rep.Skipped) != 1 || rep.Skipped[0].Folder != "photo.jpg" || !strings.Contains(rep.Skipped[0].Reason, "not an mbox file") {
		t.Fatalf("copied %d, skipped %+v", rep.Copied, rep.Skipped)
	}
	got := readMaildir(t, dst)
	if len(got["INBOX"]) != 2 || len(got["Sent"]) != 1 || len(got["node.js"]) != 1 || len(got) != 3 {
		t.Errorf("destination folders: %v", got)
	}
	if !strings.Contains(strings.Join(warns, "\n"), "Loop skipped: a symbolic link to a directory") {
		t.Errorf("warnings: %q", warns)
	}
}

// TestMboxTreeBindMountLoop: a directory bind-mounted inside itself (a
// loop no symlink check sees) is read once (device and inode). Needs root
// to mount; skipped otherwise, except in CI.
func TestMboxTreeBindMountLoop(t *testing.T) {
	dir := t.TempDir()
	copyFile(t, filepath.Join("..", "testdata", "mbox", "mboxo.mbox"), dir, "Inbox")
	loop := filepath.Join(dir, "Archive.sbd", "Loop.sbd")
	os.MkdirAll(loop, 0o700)
	if out, err := exec.Command("mount", "--bind", dir, loop).CombinedOutput(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("mount --bind: %v %s", err, out)
		}
		t.Skipf("cannot bind-mount (needs root): %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", loop).Run() })
	var warns []string
	s, _ := OpenMbox(dir, MboxOptions{Warn: func(err error) { warns = append(warns, err.Error()) }})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	mbs, err := s.Mailboxes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, mb := range mbs {
		names = append(names, mb.Name)
	}
	if strings.Join(names, ",") != "INBOX,Archive" {
		t.Errorf("folders %v", names)
	}
	if !strings.Contains(strings.Join(warns, "\n"), "already read (a loop)") {
		t.Errorf("warnings %q", warns)
	}
}

// TestMboxThunderbirdDate: a message under Mozilla's From_ line ("From -
// <date>", the day Thunderbird wrote it into the file: an archived
// message's is the day it was archived) is dated by its header, as a
// POP3 message is: the newest Received:, else Date:; without either, by
// the From_ line. Another program's From_ date is kept.
func TestMboxThunderbirdDate(t *testing.T) {
	p := filepath.Join(t.TempDir(), "Archive")
	file := "From - Mon Jan 10 12:00:00 2022\nReceived: from mx by mail; Tue, 5 Mar 2019 08:00:00 +0000\nDate: Tue, 5 Mar 2019 07:00:00 +0000\nMessage-ID: <a@x>\n\none\n\n" +
		"From - Mon Jan 10 12:00:01 2022\nDate: Wed, 6 Mar 2019 09:00:00 +0100\nMessage-ID: <b@x>\n\ntwo\n\n" +
		"From - Mon Jan 10 12:00:02 2022\nMessage-ID: <c@x>\n\nthree\n\n" +
		"From bob@example.org Thu Mar 7 10:00:00 2019\nDate: Mon, 1 Jan 2018 00:00:00 +0000\nMessage-ID: <d@x>\n\nfour\n"
	os.WriteFile(p, []byte(file), 0o600)
	s, err := OpenMbox(p, MboxOptions{})
	if err != nil {
		t.Fatal(err)
	}
	mbs, err := s.Mailboxes(context.Background())
	if err != nil || len(mbs) != 1 {
		t.Fatalf("%v %v", mbs, err)
	}
	var got []string
	s.List(context.Background(), mbs[0], func(m migrate.Message) error {
		got = append(got, m.Date.UTC().Format(time.RFC3339))
		return nil
	})
	// From_ dates have no zone: read in UTC (MboxOptions.Location nil).
	want := "2019-03-05T08:00:00Z 2019-03-06T08:00:00Z 2022-01-10T12:00:02Z 2019-03-07T10:00:00Z"
	if strings.Join(got, " ") != want {
		t.Errorf("dates %v, want %s", got, want)
	}

	// Copies an earlier mailhaul made carry the From_ date. With a new
	// state dir, the first-contact comparison (Message-ID, size, date)
	// still finds them, by that prior date: nothing is copied twice.
	dst := t.TempDir()
	if rep := runCopy(t, s, dst, t.TempDir(), migrate.Options{}); rep.Copied != 4 {
		t.Fatalf("first copy: %d copied", rep.Copied)
	}
	var files []string
	filepath.WalkDir(dst, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			files = append(files, p)
		}
		return nil
	})
	changed := 0
	for _, f := range files {
		b, _ := os.ReadFile(f)
		for i, mid := range []string{"<a@x>", "<b@x>"} {
			if strings.Contains(string(b), mid) {
				old := time.Date(2022, 1, 10, 12, 0, i, 0, time.UTC)
				if os.Chtimes(f, old, old) == nil {
					changed++
				}
			}
		}
	}
	if changed != 2 {
		t.Fatalf("dated %d copies by their From_ line, want 2", changed)
	}
	if rep := runCopy(t, s, dst, t.TempDir(), migrate.Options{}); rep.Copied != 0 || rep.Found != 4 {
		t.Errorf("with a new state dir over copies dated by the From_ line: copied %d, found %d; want 0, 4", rep.Copied, rep.Found)
	}
}

// TestMboxMailRootWarned: a Thunderbird profile's Mail/ directory given
// instead of one account's ("Local Folders") is copied as it is, with a
// warning that names the directory to give.
func TestMboxMailRootWarned(t *testing.T) {
	root := t.TempDir()
	for _, d := range []string{"Local Folders", "pop.example.net"} {
		os.MkdirAll(filepath.Join(root, d), 0o755)
		os.WriteFile(filepath.Join(root, d, "Inbox"), []byte("From - Mon Jan 10 12:00:00 2022\nSubject: x\n\nx\n"), 0o600)
	}
	var warns []string
	s, err := OpenMbox(root, MboxOptions{Warn: func(err error) { warns = append(warns, err.Error()) }})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Mailboxes(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(warns) != 1 || !strings.Contains(warns[0], "looks like a Thunderbird profile's Mail directory") || !strings.Contains(warns[0], filepath.Join(root, "Local Folders")) {
		t.Errorf("warnings %q", warns)
	}
	warns = nil
	s, _ = OpenMbox(filepath.Join(root, "Local Folders"), MboxOptions{Warn: func(err error) { warns = append(warns, err.Error()) }})
	s.Mailboxes(context.Background())
	if len(warns) != 0 {
		t.Errorf("an account's directory warned: %q", warns)
	}
}
