package mbox

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	gombox "github.com/emersion/go-mbox"
)

// got is one message as a test sees it.
type got struct {
	m    *Message
	body string
}

// readAll scans data (named name) and extracts every message with Copy,
// checking Copy against what the scan computed.
func readAll(t *testing.T, name string, data []byte, opts Options) ([]got, Layout) {
	t.Helper()
	ra := bytes.NewReader(data)
	r := NewReader(ra, int64(len(data)), name, opts)
	var out []got
	for {
		m, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("%s: Next: %v", name, err)
		}
		var b bytes.Buffer
		n, sum, err := Copy(&b, ra, name, m.Start, m.Len, m.Layout)
		if err != nil {
			t.Fatalf("%s: Copy at %d: %v", name, m.Start, err)
		}
		if n != m.Size || int64(b.Len()) != n {
			t.Errorf("%s: message at %d: Copy wrote %d bytes, scan said %d", name, m.Offset, n, m.Size)
		}
		if !m.Junk && sum != m.Sum {
			t.Errorf("%s: message at %d: Copy sum differs from scan sum", name, m.Offset)
		}
		out = append(out, got{m, b.String()})
	}
	return out, r.Layout()
}

func readFile(t *testing.T, file string, opts Options) ([]got, Layout) {
	t.Helper()
	p := filepath.Join("..", "..", "testdata", "mbox", file)
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return readAll(t, p, data, opts)
}

func problems(m *Message) string {
	var s []string
	for _, p := range m.Problems {
		s = append(s, p.Error())
	}
	return strings.Join(s, "; ")
}

func wantBodies(t *testing.T, gs []got, want ...string) {
	t.Helper()
	if len(gs) != len(want) {
		t.Fatalf("got %d messages, want %d", len(gs), len(want))
	}
	for i := range want {
		if gs[i].body != want[i] {
			t.Errorf("message %d:\n got %q\nwant %q", i, gs[i].body, want[i])
		}
	}
}

func wantFlags(t *testing.T, m *Message, want ...string) {
	t.Helper()
	if strings.Join(m.Flags, " ") != strings.Join(want, " ") {
		t.Errorf("message at %d: flags %v, want %v", m.Offset, m.Flags, want)
	}
}

func TestMboxO(t *testing.T) {
	gs, l := readFile(t, "mboxo.mbox", Options{Format: MboxO})
	if l.Format != MboxO || l.EOL != '\n' {
		t.Fatalf("layout %+v", l)
	}
	if len(gs) != 3 {
		t.Fatalf("%d messages", len(gs))
	}
	b := gs[0].body
	if !strings.Contains(b, "\nFrom the start it was quoted.\n") || !strings.Contains(b, "\n>>From here it stays quoted in mboxo.\n") {
		t.Errorf("mboxo unquoting wrong: %q", b)
	}
	if !strings.HasPrefix(b, "Return-Path:") || !strings.HasSuffix(b, "\n\nBye.\n") {
		t.Errorf("message 0 bounds wrong: %q", b)
	}
	wantFlags(t, gs[0].m, `\Seen`, `\Answered`)
	wantFlags(t, gs[1].m, `\Flagged`)
	wantFlags(t, gs[2].m)
	want := []time.Time{
		time.Date(2019, 6, 4, 12, 0, 0, 0, time.UTC),
		time.Date(2019, 6, 5, 8, 30, 15, 0, time.UTC),
		time.Date(2019, 6, 6, 23, 59, 59, 0, time.UTC),
	}
	for i, g := range gs {
		if !g.m.Date.Equal(want[i]) {
			t.Errorf("message %d: date %v, want %v", i, g.m.Date, want[i])
		}
		if len(g.m.Problems) != 0 {
			t.Errorf("message %d: problems: %s", i, problems(g.m))
		}
	}
	if gs[2].body != "From: Carol <carol@example.org>\nSubject: third, no status\nDate: Thu, 06 Jun 2019 23:59:59 +0000\nMessage-ID: <o3@example.org>\n\nbody line 1\nbody line 2\n" {
		t.Errorf("last message: %q", gs[2].body)
	}
}

// TestGoMboxCrossCheck reads the mboxo samples with go-mbox too: the
// bodies must agree once go-mbox's CRLF rewriting is undone.
func TestGoMboxCrossCheck(t *testing.T) {
	for _, f := range []string{"mboxo.mbox", "lying-content-length.mbox", "dates.mbox"} {
		t.Run(f, func(t *testing.T) {
			ours, _ := readFile(t, f, Options{Format: MboxO})
			data, err := os.ReadFile(filepath.Join("..", "..", "testdata", "mbox", f))
			if err != nil {
				t.Fatal(err)
			}
			gr := gombox.NewReader(bytes.NewReader(data))
			var theirs []string
			for {
				mr, err := gr.NextMessage()
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				b, err := io.ReadAll(mr)
				if err != nil && err != io.EOF {
					t.Fatal(err)
				}
				theirs = append(theirs, strings.ReplaceAll(string(b), "\r\n", "\n"))
			}
			if len(theirs) != len(ours) {
				t.Fatalf("go-mbox found %d messages, we found %d", len(theirs), len(ours))
			}
			for i := range ours {
				if ours[i].body != theirs[i] {
					t.Errorf("message %d:\n ours   %q\n go-mbox %q", i, ours[i].body, theirs[i])
				}
			}
		})
	}
}

func TestMboxRD(t *testing.T) {
	rd := []string{
		"From: Alice <alice@example.org>\nSubject: rd one\nMessage-ID: <rd1@example.org>\nStatus: R\n\nFrom the start.\n>From once quoted.\n>>From twice quoted.\n> From with a space stays.\n",
		"From: Bob <bob@example.org>\nSubject: rd two\nMessage-ID: <rd2@example.org>\n\nplain\n"}
	gs, _ := readFile(t, "mboxrd.mbox", Options{Format: MboxRD})
	wantBodies(t, gs, rd...)
	wantFlags(t, gs[0].m, `\Seen`)
	if gs[0].m.Layout.Format != MboxRD {
		t.Errorf("forced format: message read as %v", gs[0].m.Layout.Format)
	}
	// Auto: nothing in the file says who wrote it, and its >>From lines
	// read differently as mboxo and mboxrd: they are kept as written, and
	// the doubt is counted.
	gs, st := readStats(t, "mboxrd.mbox", mustRead(t, "mboxrd.mbox"), Options{})
	wantBodies(t, gs, strings.Replace(strings.Replace(rd[0], "\n>From once", "\n>>From once", 1), "\n>>From twice", "\n>>>From twice", 1), rd[1])
	if st.Messages != 2 || st.Doubtful != 1 || st.FirstDoubtful != 0 || st.Same != 1 {
		t.Errorf("stats %+v (%s)", st, st)
	}
}

// readStats is readAll that also returns the Reader's Stats.
func readStats(t *testing.T, name string, data []byte, opts Options) ([]got, Stats) {
	t.Helper()
	gs, _ := readAll(t, name, data, opts)
	r := NewReader(bytes.NewReader(data), int64(len(data)), name, opts)
	for {
		if _, err := r.Next(); err != nil {
			break
		}
	}
	return gs, r.Stats()
}

func mustRead(t *testing.T, file string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "testdata", "mbox", file))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestMboxRDRoundTrip writes bodies the mboxrd way and reads them back.
func TestMboxRDRoundTrip(t *testing.T) {
	bodies := []string{
		"Subject: a\n\nFrom x\n>From y\n>>From z\n\n\nend\n",
		"Subject: b\r\n\r\n>>>>From deep\r\nFrom\r\n",
		"Subject: c\n\n",
	}
	var file bytes.Buffer
	for _, b := range bodies {
		file.WriteString("From sender@example.org Sat Jan  1 00:00:00 2000\n")
		for _, line := range strings.SplitAfter(b, "\n") {
			if strings.HasPrefix(strings.TrimLeft(line, ">"), "From ") {
				file.WriteString(">")
			}
			file.WriteString(line)
		}
		file.WriteString("\n")
	}
	gs, _ := readAll(t, "rt.mbox", file.Bytes(), Options{Format: MboxRD})
	wantBodies(t, gs, bodies...)
}

func TestMboxCL2(t *testing.T) {
	gs, _ := readFile(t, "mboxcl2.mbox", Options{})
	if gs[0].m.Layout.Format != MboxCL2 {
		t.Fatalf("read as %v, want mboxcl2", gs[0].m.Layout.Format)
	}
	wantBodies(t, gs,
		"From: Alice <alice@example.org>\nSubject: cl2 one\nMessage-ID: <cl1@example.org>\nContent-Length: 56\n\nunquoted lines follow\n\nFrom inside the body\n>From stays\n",
		"From: Bob <bob@example.org>\nSubject: cl2 two\nMessage-ID: <cl2@example.org>\nContent-Length: 6\n\nplain\n")
	for _, g := range gs {
		if len(g.m.Problems) > 0 {
			t.Errorf("problems: %s", problems(g.m))
		}
	}
	// Without Content-Length, "From inside the body" still does not split
	// the message (it is no From_ line: no date), but a real From_ line
	// in its place would.
	data := mustRead(t, "mboxcl2.mbox")
	stripped := bytes.ReplaceAll(bytes.ReplaceAll(data, []byte("Content-Length: 56\n"), nil), []byte("Content-Length: 6\n"), nil)
	gs2, _ := readAll(t, "nocl.mbox", stripped, Options{Format: MboxCL2})
	if len(gs2) != 2 || !strings.Contains(gs2[0].body, "\nFrom inside the body\n") {
		t.Errorf("without Content-Length: %d messages, want 2", len(gs2))
	}
	dated := bytes.Replace(stripped, []byte("From inside the body"), []byte("From x@y Sat Jan  1 00:00:00 2000"), 1)
	if gs3, _ := readAll(t, "nocl2.mbox", dated, Options{Format: MboxCL2}); len(gs3) != 3 {
		t.Errorf("without Content-Length, a From_ line in the body: %d messages, want 3", len(gs3))
	}
}

func TestLyingContentLength(t *testing.T) {
	gs, _ := readFile(t, "lying-content-length.mbox", Options{})
	wantBodies(t, gs,
		"From: Alice\nSubject: lies\nContent-Length: 9999\n\nshort body\n",
		"From: Bob\nSubject: liar two\nContent-Length: 3\n\nlonger than three\n",
		"From: Carol\nSubject: honest\n\nok\n")
	for i := 0; i < 2; i++ {
		m := gs[i].m
		if m.Err() != nil || !strings.Contains(problems(m), "Content-Length") || !strings.Contains(problems(m), "lying-content-length.mbox: offset") {
			t.Errorf("message %d: problems %q", i, problems(m))
		}
	}
}

func TestNoFromAtTop(t *testing.T) {
	gs, _ := readFile(t, "bad-no-from-at-top.mbox", Options{})
	if len(gs) != 2 {
		t.Fatalf("%d messages", len(gs))
	}
	if !gs[0].m.Junk || gs[0].m.Err() == nil || !strings.Contains(gs[0].m.Err().Error(), "offset 0: ") {
		t.Errorf("junk not reported: %+v %s", gs[0].m, problems(gs[0].m))
	}
	if gs[1].body != "From: Alice\nSubject: after junk\n\nstill read\n" || gs[1].m.Err() != nil {
		t.Errorf("message after junk: %q %s", gs[1].body, problems(gs[1].m))
	}
}

func TestBinaryJunkAndNUL(t *testing.T) {
	gs, _ := readFile(t, "bad-nul-binary.mbox", Options{})
	if len(gs) != 3 {
		t.Fatalf("%d messages", len(gs))
	}
	err := gs[1].m.Err()
	if err == nil || !strings.Contains(err.Error(), "bad-nul-binary.mbox: offset 133: no header field") {
		t.Errorf("binary message: %v", err)
	}
	for _, i := range []int{0, 2} {
		if gs[i].m.Err() != nil || !strings.HasPrefix(gs[i].body, "From: ") {
			t.Errorf("message %d: %q %v", i, gs[i].body, gs[i].m.Err())
		}
	}
	// Random binary data without any From_ line: one junk region, no panic.
	junk := make([]byte, 1<<16)
	for i := range junk {
		junk[i] = byte(i*7 + i>>8)
	}
	gs, _ = readAll(t, "junk.bin", junk, Options{})
	if len(gs) != 1 || !gs[0].m.Junk || gs[0].m.Err() == nil {
		t.Errorf("binary file: %d messages", len(gs))
	}
}

func TestTruncated(t *testing.T) {
	gs, _ := readFile(t, "bad-truncated.mbox", Options{})
	if len(gs) != 2 || gs[0].m.Err() != nil {
		t.Fatalf("%d messages", len(gs))
	}
	if err := gs[1].m.Err(); err == nil || !strings.Contains(err.Error(), "truncated") {
		t.Errorf("truncated message not bad: %s", problems(gs[1].m))
	}
	// Cut inside a header.
	gs, _ = readAll(t, "cut.mbox", []byte("From a Sat Jan  1 00:00:00 2000\nSubject: ok\n\nbody\n\nFrom b Sat Jan  1 00:00:00 2000\nSubject: cu"), Options{})
	if len(gs) != 2 || gs[0].m.Err() != nil || gs[1].m.Err() == nil || !strings.Contains(gs[1].m.Err().Error(), "cut.mbox: offset 94: file ends inside the message header") {
		t.Errorf("cut in header: %d messages; %v", len(gs), gs[len(gs)-1].m.Err())
	}
	// Cut in a body line: copied, with a warning.
	gs, _ = readAll(t, "cut2.mbox", []byte("From a Sat Jan  1 00:00:00 2000\nSubject: ok\n\nbody li"), Options{})
	if len(gs) != 1 || gs[0].m.Err() != nil || !strings.Contains(problems(gs[0].m), "middle of a line") || gs[0].body != "Subject: ok\n\nbody li" {
		t.Errorf("cut in body: %q %s", gs[0].body, problems(gs[0].m))
	}
}

func TestLineEndings(t *testing.T) {
	gs, l := readFile(t, "crlf-mixed.mbox", Options{})
	if l.EOL != '\n' {
		t.Fatalf("eol %q", l.EOL)
	}
	wantBodies(t, gs,
		"From: Alice\r\nSubject: crlf\r\n\r\nline one\r\nFrom quoted\r\n",
		"From: Bob\nSubject: mixed\r\n\nlf line\r\ncrlf line\n")
	gs, l = readFile(t, "bad-cr-only.mbox", Options{})
	if l.EOL != '\r' {
		t.Fatalf("CR-only file: eol %q", l.EOL)
	}
	wantBodies(t, gs, "From: Alice\rSubject: old mac\r\rline one\r", "From: Bob\rSubject: two\r\rok\r")
	if !strings.Contains(problems(gs[0].m), "lone CR") || gs[0].m.Err() != nil {
		t.Errorf("CR-only problem: %s", problems(gs[0].m))
	}
	if !gs[1].m.Date.Equal(time.Date(2019, 6, 5, 8, 30, 15, 0, time.UTC)) {
		t.Errorf("date %v", gs[1].m.Date)
	}
}

func TestFromLineDates(t *testing.T) {
	gs, _ := readFile(t, "dates.mbox", Options{})
	if len(gs) != 4 {
		t.Fatalf("%d messages", len(gs))
	}
	if !gs[0].m.Date.IsZero() || gs[0].m.Err() != nil || !strings.Contains(problems(gs[0].m), "dates.mbox: offset 0: cannot parse the date") {
		t.Errorf("bad date: %v %s", gs[0].m.Date, problems(gs[0].m))
	}
	if !gs[0].m.HeaderDate.Equal(time.Date(2019, 6, 4, 10, 0, 0, 0, time.UTC)) {
		t.Errorf("header date %v", gs[0].m.HeaderDate)
	}
	if !gs[1].m.Date.Equal(time.Date(2019, 6, 5, 6, 30, 15, 0, time.UTC)) {
		t.Errorf("date with zone: %v", gs[1].m.Date)
	}
	if !gs[2].m.Date.Equal(time.Date(2019, 6, 6, 23, 59, 59, 0, time.UTC)) {
		t.Errorf("Thunderbird date: %v", gs[2].m.Date)
	}
	if gs[3].m.Date.Year() != 2019 || gs[3].m.Date.Hour() != 10 {
		t.Errorf("date with zone name: %v", gs[3].m.Date)
	}
	loc := time.FixedZone("X", 3600)
	for _, c := range []struct {
		in     string
		sender string
		want   time.Time
	}{
		{"a@b Tue Jun  4 12:00:00 2019", "a@b", time.Date(2019, 6, 4, 12, 0, 0, 0, loc)},
		{"a@b Tue Jun 04 12:00 2019", "a@b", time.Date(2019, 6, 4, 12, 0, 0, 0, loc)},
		{"\"a b\"@c Tue Jun 4 12:00:00 -0700 2019", "\"a b\"@c", time.Date(2019, 6, 4, 19, 0, 0, 0, time.UTC)},
		{"MAILER-DAEMON Tue Jun  4 12:00:00 2019 +0000", "MAILER-DAEMON", time.Date(2019, 6, 4, 12, 0, 0, 0, time.UTC)},
	} {
		s, d, ok := ParseFromLine(c.in, loc)
		if !ok || s != c.sender || !d.Equal(c.want) {
			t.Errorf("ParseFromLine(%q) = %q, %v, %v; want %q, %v", c.in, s, d, ok, c.sender, c.want)
		}
	}
	if _, _, ok := ParseFromLine("x Tue Foo 99 12:00:00 2019", nil); ok {
		t.Error("garbage date parsed")
	}
}

func TestFlags(t *testing.T) {
	data := "From - Mon Jan  7 09:00:00 2019\nX-Mozilla-Status: 1007\nX-Mozilla-Status2: 00000000\nX-Mozilla-Keys: $label1 work (bad                         \nSubject: a\n\nx\n\n" +
		"From - Mon Jan  7 09:00:00 2019\nX-Mozilla-Status: 0009\nSubject: expunged\n\nx\n\n" +
		"From a Mon Jan  7 09:00:00 2019\nStatus: RO\nX-Status: AFT\nSubject: mutt\n\nx\n\n" +
		"From a Mon Jan  7 09:00:00 2019\nStatus: OD\nSubject: deleted\n\nx\n"
	gs, _ := readAll(t, "flags.mbox", []byte(data), Options{})
	if len(gs) != 4 {
		t.Fatalf("%d messages", len(gs))
	}
	wantFlags(t, gs[0].m, `\Seen`, `\Answered`, `\Flagged`, `$Forwarded`, `$label1`, `work`)
	wantFlags(t, gs[1].m, `\Seen`, `\Deleted`)
	if !gs[1].m.Expunged || gs[0].m.Expunged {
		t.Error("expunged bit")
	}
	wantFlags(t, gs[2].m, `\Seen`, `\Answered`, `\Flagged`, `\Draft`)
	wantFlags(t, gs[3].m, `\Deleted`)
	if gs[3].m.Expunged {
		t.Error("Status D is not Thunderbird's expunged bit")
	}
	// Changing flag headers in place does not change the content hash.
	a := gs[0].m.Sum
	gs2, _ := readAll(t, "flags2.mbox", []byte(strings.Replace(data, "X-Mozilla-Status: 1007", "X-Mozilla-Status: 0000", 1)), Options{})
	if gs2[0].m.Sum != a {
		t.Error("content sum depends on X-Mozilla-Status")
	}
	gs3, _ := readAll(t, "flags3.mbox", []byte(strings.Replace(data, "Subject: a", "Subject: b", 1)), Options{})
	if gs3[0].m.Sum == a {
		t.Error("content sum ignores the Subject")
	}
}

func TestLongLine(t *testing.T) {
	long := strings.Repeat("x", 1<<20)
	data := "From a Sat Jan  1 00:00:00 2000\nSubject: long\n\n" + long + "\n>From " + long + "\n\nFrom b Sat Jan  1 00:00:00 2000\nSubject: next\n\nok\n"
	gs, _ := readAll(t, "long.mbox", []byte(data), Options{Format: MboxO})
	wantBodies(t, gs, "Subject: long\n\n"+long+"\nFrom "+long+"\n", "Subject: next\n\nok\n")
	// A 1 MB header line and a 1 MB From_ line.
	data = "From a Sat Jan  1 00:00:00 2000 " + long + "\nX-Long: " + long + "\nSubject: h\n\nok\n"
	gs, _ = readAll(t, "longhdr.mbox", []byte(data), Options{})
	if len(gs) != 1 || gs[0].body != "X-Long: "+long+"\nSubject: h\n\nok\n" || gs[0].m.Err() != nil {
		t.Errorf("long header: %d messages, %s", len(gs), problems(gs[0].m))
	}
}

// TestHugeMessage streams a 100 MB message and checks that memory stays
// bounded while scanning and copying.
func TestHugeMessage(t *testing.T) {
	if testing.Short() {
		t.Skip("100 MB file")
	}
	p := filepath.Join(t.TempDir(), "huge.mbox")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriter(f)
	w.WriteString("From a Sat Jan  1 00:00:00 2000\n")
	want := sha256.New()
	head := "Subject: huge\n\n"
	w.WriteString(head)
	want.Write([]byte(head))
	line := []byte(strings.Repeat("0123456789", 7) + "\n")
	const size = 100 << 20
	written := int64(len(head))
	for i := 0; written < size; i++ {
		if i%1000 == 0 {
			w.WriteString(">From quoted\n")
			want.Write([]byte("From quoted\n"))
			written += 12
		}
		w.Write(line)
		want.Write(line)
		written += int64(len(line))
	}
	w.WriteString("\nFrom b Sat Jan  1 00:00:00 2000\nSubject: small\n\nok\n")
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	f.Close()

	fh, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	fi, _ := fh.Stat()
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	r := NewReader(fh, fi.Size(), p, Options{Format: MboxO})
	m, err := r.Next()
	if err != nil {
		t.Fatal(err)
	}
	m2, err := r.Next()
	if err != nil || m2.Size != int64(len("Subject: small\n\nok\n")) {
		t.Fatalf("second message: %v", err)
	}
	if m.Size != written {
		t.Fatalf("size %d, want %d", m.Size, written)
	}
	h := sha256.New()
	n, _, err := Copy(h, fh, p, m.Start, m.Len, m.Layout)
	if err != nil || n != written {
		t.Fatalf("copy: %d, %v", n, err)
	}
	if !bytes.Equal(h.Sum(nil), want.Sum(nil)) {
		t.Fatal("copied bytes differ")
	}
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 8<<20 {
		t.Errorf("scanning and copying 100 MB allocated %d bytes", grew)
	}
}

func TestCopyDetectsChange(t *testing.T) {
	data := []byte("From a Sat Jan  1 00:00:00 2000\nSubject: x\n\nbody\n")
	gs, l := readAll(t, "c.mbox", data, Options{})
	_, _, err := Copy(io.Discard, bytes.NewReader(data[:40]), "c.mbox", gs[0].m.Start, gs[0].m.Len, l)
	if err == nil || !strings.Contains(err.Error(), "c.mbox: offset 40") {
		t.Errorf("short file: %v", err)
	}
}

func TestEmptyAndBlank(t *testing.T) {
	for _, data := range []string{"", "\n\n\n", "\r\n"} {
		gs, _ := readAll(t, "empty.mbox", []byte(data), Options{})
		if len(gs) != 0 {
			t.Errorf("%q: %d messages", data, len(gs))
		}
	}
	gs, _ := readAll(t, "e.mbox", []byte("From a Sat Jan  1 00:00:00 2000\n\nFrom b Sat Jan  1 00:00:00 2000\nSubject: x\n\ny\n"), Options{})
	if len(gs) != 2 || gs[0].m.Err() == nil || gs[1].m.Err() != nil {
		t.Errorf("empty message: %d", len(gs))
	}
}

func TestParseFormat(t *testing.T) {
	for s, want := range map[string]Format{"": Auto, "auto": Auto, "mboxo": MboxO, "MBOXRD": MboxRD, "mboxcl2": MboxCL2} {
		if f, err := ParseFormat(s); err != nil || f != want {
			t.Errorf("ParseFormat(%q) = %v, %v", s, f, err)
		}
	}
	if _, err := ParseFormat("babyl"); err == nil {
		t.Error("babyl accepted")
	}
}

// TestNoBlankSeparator: a valid From_ line starts a message with or
// without a blank line before it; a "From " line that is no From_ line
// (no date) does not split a message, blank line or not.
func TestNoBlankSeparator(t *testing.T) {
	gs, _ := readFile(t, "no-blank-separator.mbox", Options{})
	wantBodies(t, gs,
		"From: Alice <alice@example.org>\nSubject: one\nMessage-ID: <nb1@example.org>\n\nfirst body\n",
		"From: Bob <bob@example.org>\nSubject: two\nMessage-ID: <nb2@example.org>\n\nsecond body\n\nFrom here on the writer forgot to quote this line.\nstill the second message\n",
		"From: Carol <carol@example.org>\nSubject: three\nMessage-ID: <nb3@example.org>\n\nFrom the desk of Carol: not a From_ line either\nthird body\n")
	for i, g := range gs {
		if g.m.Err() != nil || g.m.Date.IsZero() {
			t.Errorf("message %d: %v, date %v", i, g.m.Err(), g.m.Date)
		}
	}
	if gs[1].m.Offset != 135 {
		t.Errorf("second message at offset %d, want 135", gs[1].m.Offset)
	}
}

// TestBOMAndBlankStart: a byte-order mark or blank (also whitespace-only)
// lines before the first From_ line do not cost the first message.
func TestBOMAndBlankStart(t *testing.T) {
	gs, _ := readFile(t, "bom-start.mbox", Options{})
	wantBodies(t, gs,
		"From: Alice <alice@example.org>\nSubject: after a byte-order mark\nMessage-ID: <bom1@example.org>\n\nkept\n",
		"From: Bob <bob@example.org>\nSubject: second\nMessage-ID: <bom2@example.org>\n\nkept too\n")
	if gs[0].m.Err() != nil || gs[0].m.Offset != 3 || !strings.Contains(problems(gs[0].m), "byte-order mark") {
		t.Errorf("first message: offset %d, %s", gs[0].m.Offset, problems(gs[0].m))
	}
	gs, _ = readFile(t, "blank-start.mbox", Options{})
	wantBodies(t, gs, "From: Alice <alice@example.org>\nSubject: after blank lines\nMessage-ID: <bl1@example.org>\n\nkept\n")
	if gs[0].m.Err() != nil || gs[0].m.Junk {
		t.Errorf("first message: %s", problems(gs[0].m))
	}
}

// TestNULInText: a NUL byte does not make a text message junk; it is
// copied as it is, with a warning.
func TestNULInText(t *testing.T) {
	gs, _ := readFile(t, "nul-in-text.mbox", Options{})
	wantBodies(t, gs,
		"From: Alice <alice@example.org>\nSubject: a text message with one NUL byte\nMessage-ID: <nul1@example.org>\n\na stray \x00 byte in a line\n",
		"From: Bob <bob@example.org>\nSubject: plain\nMessage-ID: <nul2@example.org>\n\nok\n")
	if gs[0].m.Err() != nil || !strings.Contains(problems(gs[0].m), "nul-in-text.mbox: offset 162: NUL byte") {
		t.Errorf("NUL message: %v; %s", gs[0].m.Err(), problems(gs[0].m))
	}
}

// TestLenientHeaders: what mail readers accept as a header is a message.
func TestLenientHeaders(t *testing.T) {
	gs, _ := readFile(t, "lenient-headers.mbox", Options{})
	if len(gs) != 3 {
		t.Fatalf("%d messages", len(gs))
	}
	for i, want := range []string{"Subject : obsolete", "   \nFrom: Bob", "\xef\xbb\xbfFrom: Carol"} {
		if err := gs[i].m.Err(); err != nil || !strings.HasPrefix(gs[i].body, want) {
			t.Errorf("message %d: %v %q", i, err, gs[i].body)
		}
	}
	for _, c := range []struct {
		line string
		ok   bool
	}{
		{"Subject: x\n", true}, {"Subject : x\n", true}, {"Subject\t: x\n", true}, {"  \n", true}, {"\n", true},
		{"\xef\xbb\xbfSubject: x\n", true}, {" folded: x\n", true}, {">From x\n", true},
		{"\x00\x01binary\n", false}, {"no colon here\n", false}, {": no name\n", false}, {"\x89PNG\r\n", false},
	} {
		if got := firstLineOK([]byte(c.line)); got != c.ok {
			t.Errorf("firstLineOK(%q) = %v", c.line, got)
		}
	}
}

// TestDialectPerMessage: the dialect is chosen per message from what
// cannot mislead. A mboxo file with one >>From line stays mboxo (the line
// is kept as written, and the doubt is counted); a message written by
// Thunderbird, which reads every mbox as mboxrd, is read as mboxrd, also
// far into a large file.
func TestDialectPerMessage(t *testing.T) {
	gs, st := readStats(t, "mboxo-one-rdline.mbox", mustRead(t, "mboxo-one-rdline.mbox"), Options{})
	if len(gs) != 3 {
		t.Fatalf("%d messages", len(gs))
	}
	if !strings.HasSuffix(gs[0].body, "\n\nFrom the start, quoted by the writer.\n") {
		t.Errorf("message 0: %q", gs[0].body)
	}
	if !strings.HasSuffix(gs[1].body, "\n>>From the start, quoted by the writer.\n") || gs[1].m.Layout.Format != MboxO {
		t.Errorf("mboxo message with a >>From line changed: %q (%v)", gs[1].body, gs[1].m.Layout.Format)
	}
	if !strings.HasSuffix(gs[2].body, "\n>From a line that was >From before.\n") || gs[2].m.Layout.Format != MboxRD {
		t.Errorf("Thunderbird message: %q (%v)", gs[2].body, gs[2].m.Layout.Format)
	}
	if st.Messages != 3 || st.MboxO != 2 || st.Doubtful != 1 || st.FirstDoubtful != gs[1].m.Offset || st.MboxRD != 1 {
		t.Errorf("stats %+v", st)
	}
	if s := st.String(); !strings.Contains(s, "1 read as mboxo in doubt") || !strings.Contains(s, "1 read as mboxrd") {
		t.Errorf("stats string %q", s)
	}

	// 9 MiB of plain messages, then the same two messages: read the same
	// way as at the start of a file.
	var big bytes.Buffer
	filler := "From a@b Sat Jan  1 00:00:00 2000\nSubject: filler\n\n" + strings.Repeat("x", 1000) + "\n\n"
	for big.Len() < 9<<20 {
		big.WriteString(filler)
	}
	tail := mustRead(t, "mboxo-one-rdline.mbox")
	tail = tail[bytes.Index(tail, []byte("From bob@")):]
	big.Write(tail)
	gs, _ = readAll(t, "big.mbox", big.Bytes(), Options{})
	n := len(gs)
	if !strings.HasSuffix(gs[n-2].body, "\n>>From the start, quoted by the writer.\n") || !strings.HasSuffix(gs[n-1].body, "\n>From a line that was >From before.\n") {
		t.Errorf("past 9 MiB: %q / %q", gs[n-2].body, gs[n-1].body)
	}
}

// TestEvolutionFlags: Evolution keeps each message's flags in
// X-Evolution ("UID-FLAGS", hex, Camel's bits); they are read like
// Thunderbird's X-Mozilla-Status. A malformed value gives no flags.
func TestEvolutionFlags(t *testing.T) {
	var b strings.Builder
	for i, v := range []string{"00000001-0011", "00000002-0008", "00000003-0000", "0000001a-0416", "garbage", "00000004-0002"} {
		fmt.Fprintf(&b, "From - Mon Jan  1 00:00:0%d 2007\nX-Evolution: %s\nSubject: %d\n\nbody\n\n", i, v, i)
	}
	gs, _ := readAll(t, "evolution.mbox", []byte(b.String()), Options{})
	if len(gs) != 6 {
		t.Fatalf("%d messages", len(gs))
	}
	wantFlags(t, gs[0].m, `\Answered`, `\Seen`)
	wantFlags(t, gs[1].m, `\Flagged`)
	wantFlags(t, gs[2].m)
	wantFlags(t, gs[3].m, `\Deleted`, `\Draft`, `\Seen`, `$Forwarded`)
	wantFlags(t, gs[4].m)
	wantFlags(t, gs[5].m, `\Deleted`)
}

// TestFromLineZoneNames: a From_ date with a zone name only gets that
// zone's offset when the name has one (RFC 822's, CET...); an unknown or
// ambiguous name is read like no zone, in the location given.
func TestFromLineZoneNames(t *testing.T) {
	ny := time.FixedZone("EST", -5*3600) // as --mbox-timezone America/New_York in winter
	for _, tc := range []struct {
		line string
		loc  *time.Location
		want string
	}{
		{"a@b Tue Mar  1 10:00:00 EST 2005", nil, "2005-03-01T15:00:00Z"},
		{"a@b Tue Mar  1 10:00:00 2005 PDT", nil, "2005-03-01T17:00:00Z"},
		{"a@b Tue Mar  1 10:00:00 CEST 2005", nil, "2005-03-01T08:00:00Z"},
		{"a@b Tue Mar  1 10:00:00 GMT 2005", nil, "2005-03-01T10:00:00Z"},
		{"a@b Tue Mar  1 10:00:00 EST 2005", ny, "2005-03-01T15:00:00Z"},  // loc's own name
		{"a@b Tue Mar  1 10:00:00 IST 2005", nil, "2005-03-01T10:00:00Z"}, // ambiguous: as no zone
		{"a@b Tue Mar  1 10:00:00 IST 2005", ny, "2005-03-01T15:00:00Z"},
		{"a@b Tue Mar  1 10:00:00 2005", ny, "2005-03-01T15:00:00Z"},
		{"a@b Tue Mar  1 10:00:00 EST -0500 2005", nil, "2005-03-01T15:00:00Z"},
	} {
		_, d, ok := ParseFromLine(tc.line, tc.loc)
		if !ok || d.UTC().Format(time.RFC3339) != tc.want {
			t.Errorf("ParseFromLine(%q) = %v, %v; want %s", tc.line, d.UTC(), ok, tc.want)
		}
	}
}

// TestKDEDummyFromLine: the From_ line KMail and KNode write before every
// message ("From aaa@aaa Mon Jan 01 00:00:00 1997") gives no date; the
// Date: header's is there instead.
func TestKDEDummyFromLine(t *testing.T) {
	const file = "From aaa@aaa Mon Jan 01 00:00:00 1997\nDate: Sat, 5 Mar 2011 08:09:10 +0100\nSubject: k\n\nbody\n\nFrom aaa@aaa Mon Jan 01 00:00:00 1998\nSubject: not the dummy\n\nbody\n"
	r := NewReader(strings.NewReader(file), int64(len(file)), "kmail", Options{})
	m, err := r.Next()
	if err != nil {
		t.Fatal(err)
	}
	if !m.Date.IsZero() || m.HeaderDate.UTC().Format(time.RFC3339) != "2011-03-05T07:09:10Z" {
		t.Errorf("dummy From_ line: date %v, header date %v; want none and 2011-03-05T07:09:10Z", m.Date, m.HeaderDate)
	}
	if len(m.Problems) != 0 {
		t.Errorf("problems %v for a known dummy line", m.Problems)
	}
	m, err = r.Next()
	if err != nil || m.Date.Year() != 1998 {
		t.Errorf("another From_ line of that sender: %v, %v; want its 1998 date", m.Date, err)
	}
}

// TestPastedFromLine: a From_ line a writer did not quote, pasted into a
// letter's text and followed by more text, is body; one after a blank
// line, or followed by a header field (a file with no blank line before
// its From_ lines), starts a message.
func TestPastedFromLine(t *testing.T) {
	const file = "From a@x Thu Mar 10 11:00:00 2005\nSubject: one\n\nAs she wrote:\nFrom jane@example.net Thu Mar 10 12:00:00 2005\nstill the same message\n\n" +
		"From b@x Thu Mar 10 13:00:00 2005\nSubject: two\n\ntext\nFrom c@x Thu Mar 10 14:00:00 2005\nSubject: three\n\nlast\n"
	gs, _ := readAll(t, "pasted", []byte(file), Options{})
	if len(gs) != 3 {
		t.Fatalf("%d messages, want 3", len(gs))
	}
	if !strings.Contains(gs[0].body, "From jane@example.net Thu Mar 10 12:00:00 2005\nstill the same message\n") {
		t.Errorf("first message: %q", gs[0].body)
	}
	for i, g := range gs {
		if g.m.Err() != nil {
			t.Errorf("message %d: %v", i, g.m.Err())
		}
	}
	if !strings.HasPrefix(gs[2].body, "Subject: three") {
		t.Errorf("third message: %q", gs[2].body)
	}
}

// TestHeaderDateReceived: with no From_ date, a message is dated by when
// it arrived — its newest Received: field — before its Date: (which may
// be missing or invalid), as a POP3 source dates it.
func TestHeaderDateReceived(t *testing.T) {
	const file = "From aaa@aaa Mon Jan 01 00:00:00 1997\nReceived: from a by b;\n Sat, 5 Mar 2011 08:00:00 +0000\nReceived: from c by a; Sat, 5 Mar 2011 07:59:00 +0000\nDate: Sat, 5 Mar 2011 25:61:00 +0000\nSubject: k\n\nbody\n\n" +
		"From aaa@aaa Mon Jan 01 00:00:00 1997\nDate: Sun, 6 Mar 2011 09:00:00 +0000\nSubject: sent\n\nbody\n"
	r := NewReader(strings.NewReader(file), int64(len(file)), "kmail", Options{})
	for _, want := range []string{"2011-03-05T08:00:00Z", "2011-03-06T09:00:00Z"} {
		m, err := r.Next()
		if err != nil {
			t.Fatal(err)
		}
		if got := m.HeaderDate.UTC().Format(time.RFC3339); got != want {
			t.Errorf("header date %s, want %s", got, want)
		}
	}
}

// TestFromLineAfterTextStartsMessage: after a text line (no blank line
// between messages), a From_ line starts a message whenever a header field
// comes before the next blank line — one with 8-bit bytes in its name, or
// a folded first line, included.
func TestFromLineAfterTextStartsMessage(t *testing.T) {
	for name, second := range map[string]string{
		"8-bit field name": "X-Spam-F\xc3\xbcll: y\nSubject: two\n\nbody\n",
		"folded first":     "\tby mx.example.org; Thu, 10 Mar 2005 12:00:00 +0000\nSubject: two\n\nbody\n",
		"text then field":  "some text\nSubject: two\n\nbody\n",
		"empty header":     "\nbody\n",
	} {
		file := "From a@x Thu Mar 10 11:00:00 2005\nSubject: one\n\ntext\nFrom b@x Thu Mar 10 12:00:00 2005\n" + second
		gs, _ := readAll(t, name, []byte(file), Options{})
		if len(gs) != 2 {
			t.Errorf("%s: %d messages, want 2", name, len(gs))
		}
	}
}
