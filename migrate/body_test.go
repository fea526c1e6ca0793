package migrate

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"strings"
	"testing"
)

func TestSpoolMemoryAndFile(t *testing.T) {
	dir := t.TempDir()
	for _, size := range []int{0, 10, 100, 1000, 5000} {
		data := bytes.Repeat([]byte("a"), size)
		data = append([]byte("Message-ID: <m@x>\r\n\r\n"), data...)
		s := NewSpool(1024, dir, nil)
		for i := 0; i < len(data); i += 333 {
			end := min(i+333, len(data))
			s.Write(data[i:end])
		}
		b, err := s.Finish()
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(b.Reader())
		again, _ := io.ReadAll(b.Reader())
		sum := sha256.Sum256(data)
		if !bytes.Equal(got, data) || !bytes.Equal(again, data) || b.Size() != int64(len(data)) || b.SHA256() != hex.EncodeToString(sum[:]) {
			t.Fatalf("size %d: body mismatch", size)
		}
		if b.MessageID() != "<m@x>" {
			t.Errorf("message-id %q", b.MessageID())
		}
		inFile := b.file != nil
		if inFile != (len(data) > 1024) {
			t.Errorf("size %d: in file = %v", len(data), inFile)
		}
		b.Close()
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("spool files left: %v", ents)
	}
}

func TestMessageIDFromHeader(t *testing.T) {
	for raw, want := range map[string]string{
		"Subject: x\r\nMessage-ID: <a@b>\r\n\r\nbody":       "<a@b>",
		"message-id:\n  <folded@b>\n\n":                     "<folded@b>",
		"Subject: no id\n\nMessage-ID: <in-body@x>\n":       "",
		"\x00\xff garbage\nMessage-Id: <after-junk@x>\n\nb": "<after-junk@x>",
		"": "",
		"Message-ID: " + strings.Repeat("x", 2000) + "\n\n": strings.Repeat("x", 2000),
	} {
		if got := MessageIDFromHeader([]byte(raw)); got != want {
			t.Errorf("MessageIDFromHeader(%q) = %q, want %q", raw, got, want)
		}
	}
}

func FuzzMessageIDFromHeader(f *testing.F) {
	f.Add([]byte("Message-ID: <a@b>\r\n\r\n"))
	f.Add([]byte("From x\nmessage-id:\n <x>\n\n"))
	f.Add([]byte("\x00\r\r\n:\n\n"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		id := MessageIDFromHeader(raw)
		if len(id) > len(raw) {
			t.Fatalf("id longer than input")
		}
	})
}

func TestClassify(t *testing.T) {
	base := io.ErrUnexpectedEOF
	if Classify(base) != Fatal || Classify(SkipMessage(base)) != Skip || Classify(Retryable(base)) != Retry {
		t.Fatal("classes")
	}
	wrapped := FatalError(Retryable(base))
	if Classify(wrapped) != Fatal {
		t.Error("outermost class must win")
	}
	if SkipMessage(nil) != nil || Retryable(nil) != nil {
		t.Error("nil must stay nil")
	}
}

func TestMemBudgetBoundsMemory(t *testing.T) {
	dir := t.TempDir()
	budget := NewMemBudget(10 << 10)
	var bodies []*Body
	for i := 0; i < 20; i++ {
		s := NewSpool(4<<10, dir, budget)
		s.Write(bytes.Repeat([]byte{'x'}, 1000))
		s.Write(bytes.Repeat([]byte{'y'}, 1000))
		b, err := s.Finish()
		if err != nil {
			t.Fatal(err)
		}
		if got, _ := io.ReadAll(b.Reader()); len(got) != 2000 || got[1999] != 'y' {
			t.Fatalf("body %d wrong", i)
		}
		bodies = append(bodies, b)
		if budget.Used() > 10<<10 {
			t.Fatalf("budget exceeded: %d", budget.Used())
		}
	}
	inFiles := 0
	for _, b := range bodies {
		if b.file != nil {
			inFiles++
		}
	}
	if inFiles != 15 { // 5 bodies of 2000 bytes fit in 10 KiB
		t.Errorf("%d bodies spooled to files, want 15", inFiles)
	}
	for _, b := range bodies {
		b.Close()
	}
	if budget.Used() != 0 {
		t.Errorf("budget not released: %d", budget.Used())
	}
}

// TestSpoolExpect: whatever size the source announced (exact, too small,
// too large, over the memory limit, none), the body is what was written,
// its hash is that of the bytes, and a Reset for a retry keeps the buffer
// without keeping the bytes.
func TestSpoolExpect(t *testing.T) {
	msg := []byte("Message-ID: <e@x>\r\n\r\n" + strings.Repeat("body line\r\n", 500))
	for _, expect := range []int64{int64(len(msg)), 10, int64(len(msg)) * 3, 1 << 30, 0, -1} {
		sp := NewSpool(64<<10, t.TempDir(), nil)
		sp.Expect(expect)
		sp.Write([]byte("partial attempt"))
		sp.Reset()
		for p := msg; len(p) > 0; p = p[min(len(p), 700):] {
			sp.Write(p[:min(len(p), 700)])
		}
		b, err := sp.Finish()
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(b.Reader())
		sum := sha256.Sum256(msg)
		if !bytes.Equal(got, msg) || b.SHA256() != hex.EncodeToString(sum[:]) || b.Size() != int64(len(msg)) || b.MessageID() != "<e@x>" {
			t.Errorf("expect %d: body of %d bytes (want %d), sum %s, id %q", expect, len(got), len(msg), b.SHA256(), b.MessageID())
		}
		b.Close()
	}
}

// TestSpoolCapturesHeaderAnySplit: the header kept is the message up to
// the end HeaderEnd finds in the whole message, however the writes split
// it (a blank line across two writes, one byte at a time).
func TestSpoolCapturesHeaderAnySplit(t *testing.T) {
	msgs := []string{
		"Subject: a\r\nMessage-ID: <a@x>\r\n\r\nbody\r\n\r\nmore\r\n",
		"Subject: lf\nMessage-ID: <b@x>\n\nbody\n\n",
		"Mixed: lf\n\r\nbody",
		"\r\nno header",
		"\nno header either",
		"X: no body at all\r\n",
		"X: cr at the end\r\n\r",
		"",
	}
	for _, msg := range msgs {
		want := msg
		if e := HeaderEnd([]byte(msg)); e >= 0 {
			want = msg[:e]
		}
		for cut := 0; cut <= len(msg); cut++ {
			for _, step := range []int{1, 2, 3, len(msg) + 1} {
				sp := NewSpool(1<<20, t.TempDir(), nil)
				sp.Write([]byte(msg[:cut]))
				for p := msg[cut:]; len(p) > 0; p = p[min(step, len(p)):] {
					sp.Write([]byte(p[:min(step, len(p))]))
				}
				if string(sp.hdr) != want {
					t.Fatalf("%q cut at %d, then %d bytes a write: header %q, want %q", msg, cut, step, sp.hdr, want)
				}
				sp.Abort()
			}
		}
	}
}

// TestSpoolExpectSurvivesReset: the engine calls Reset before every
// attempt, the first one too, so what Expect said must outlive it — a body
// announced over the memory limit goes to its file from the first byte,
// and one announced under it is written into a buffer of its size.
func TestSpoolExpectSurvivesReset(t *testing.T) {
	sp := NewSpool(64<<10, t.TempDir(), nil)
	sp.Expect(1 << 20)
	sp.Reset()
	sp.Write([]byte("Subject: big\r\n\r\n"))
	if sp.file == nil || sp.buf.Cap() != 0 {
		t.Errorf("a body announced at 1 MiB over a 64 KiB limit: file %v, buffer of %d bytes", sp.file != nil, sp.buf.Cap())
	}
	sp.Abort()

	sp = NewSpool(64<<10, t.TempDir(), nil)
	sp.Expect(40 << 10)
	sp.Reset()
	sp.Write(make([]byte, 1000))
	if sp.file != nil || sp.buf.Cap() < 40<<10 {
		t.Errorf("a body announced at 40 KiB: file %v, buffer of %d bytes", sp.file != nil, sp.buf.Cap())
	}
	sp.Abort()
}

// FuzzMessageIDPlain: wherever the one-pass scan answers, it answers what
// go-message's parser (with its fallback) does.
func FuzzMessageIDPlain(f *testing.F) {
	for _, s := range []string{
		"Message-ID: <a@x>\r\nSubject: s\r\n\r\nbody",
		"Subject: s\nmessage-id:   <b@x>  \n\n",
		"MESSAGE-ID : <c@x>\r\n",
		"Message-ID: <d@x>\r\n\tfolded\r\n\r\n",
		"X: y\r\n folded\r\nMessage-ID: <e@x>\r\nMessage-ID: <second@x>\r\n\r\n",
		" leading: space\r\nMessage-ID: <f@x>\r\n\r\n",
		"no colon line\r\nMessage-ID: <g@x>\r\n\r\n",
		"Bad Key: v\r\nMessage-ID: <h@x>\r\n\r\n",
		"Message-ID: <i@x>\r\r\n\r\n",
		"Message-ID: <j@x>",
		"Message-ID:\r\n <k@x>\r\n\r\n",
		": empty key\r\nMessage-ID: <l@x>\r\n\r\n",
		"Message-ID: <m\x00@x>\r\n\r\n",
		"\r\nMessage-ID: <n@x>\r\n",
		"",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		got, ok := messageIDPlain(raw)
		if !ok {
			return
		}
		if want := messageIDParsed(raw); got != want {
			t.Fatalf("header %q: plain scan %q, parser %q", raw, got, want)
		}
	})
}

// TestMessageIDPlainAnswers: the scan answers for the headers real mail
// has (else the parser runs for every message again), and leaves the odd
// ones to the parser.
func TestMessageIDPlainAnswers(t *testing.T) {
	for raw, want := range map[string]string{
		"Return-Path: <a@x>\r\nReceived: from a\r\n\tby b; Mon, 1 Jan 2024 00:00:00 +0000\r\nMessage-ID: <a@x>\r\nSubject: s\r\n\r\nbody": "<a@x>",
		"Subject: s\nmessage-id:   <b@x>  \n\n":                   "<b@x>",
		"From: a\r\nTo: b\r\n\r\n":                                "",
		"Message-ID: <c@x>\r\nMessage-ID: <second@x>\r\n\r\n":     "<c@x>",
		"X-Header-Only: this header was cut\r\nMessage-ID: <d@x>": "<d@x>",
	} {
		if got, ok := messageIDPlain([]byte(raw)); !ok || got != want {
			t.Errorf("%q: %q, %v; want %q from the scan", raw, got, ok, want)
		}
	}
	for _, raw := range []string{"Message-ID:\r\n <folded@x>\r\n\r\n", "no colon\r\n\r\n", " starts folded: x\r\n\r\n", "Stray: cr\r here\r\n\r\n"} {
		if _, ok := messageIDPlain([]byte(raw)); ok {
			t.Errorf("%q answered by the scan, not left to the parser", raw)
		}
	}
}
