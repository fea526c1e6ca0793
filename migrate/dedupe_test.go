package migrate

import (
	"bytes"
	"strings"
	"testing"
	"testing/iotest"
)

func TestHeaderEnd(t *testing.T) {
	for in, want := range map[string]int{
		"A: b\r\n\r\nbody": 8, "A: b\n\nbody": 6, "A: b\n\r\nbody": 7, "\r\nbody": 2, "\nbody": 1,
		"A: b\r\nC: d\r\n": -1, "": -1, "A: b\r\n\r\n": 8,
	} {
		if got := HeaderEnd([]byte(in)); got != want {
			t.Errorf("HeaderEnd(%q) = %d, want %d", in, got, want)
		}
	}
}

// TestBodyLen: the POP3 server's copy of a message and the copy a mail
// client stored (more header fields, LF line ends) have the same body
// length, whatever the chunks they are spooled in; a changed body does not.
func TestBodyLen(t *testing.T) {
	server := "Return-Path: <a@x>\r\nMessage-ID: <m@x>\r\nSubject: s\r\n\r\nline one\r\n\r\nline two\r\n"
	client := "X-Account-Key: account3\nX-UIDL: 000001\nX-Mozilla-Status: 0001\nX-Mozilla-Status2: 00000000\n" +
		strings.ReplaceAll(server, "\r\n", "\n")
	other := strings.Replace(server, "line two", "line 2!!", 1) + "x"
	lens := map[string]int64{}
	for name, m := range map[string]string{"server": server, "client": client, "other": other} {
		for _, r := range []func(string) *bytes.Reader{func(s string) *bytes.Reader { return bytes.NewReader([]byte(s)) }} {
			b, err := NewBody(iotest.OneByteReader(r(m)), 1<<20, t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			lens[name] = b.BodyLen()
			if got := BodyLenOf([]byte(m), CRLFLen([]byte(m))); got != b.BodyLen() {
				t.Errorf("%s: BodyLenOf %d, spooled %d", name, got, b.BodyLen())
			}
			b.Close()
		}
	}
	if lens["server"] != lens["client"] || lens["server"] != int64(len("line one\r\n\r\nline two\r\n")) {
		t.Errorf("body lengths %v", lens)
	}
	if lens["other"] == lens["server"] {
		t.Errorf("a different body has the same length %v", lens)
	}
	b, _ := NewBody(strings.NewReader("Subject: no body\r\nX: y\r\n"), 1<<20, "")
	if b.BodyLen() != -1 || !b.EndsWithLineEnd() {
		t.Errorf("header without end: %d, ends with a line end %v", b.BodyLen(), b.EndsWithLineEnd())
	}
	if b, _ := NewBody(strings.NewReader("Subject: x\r\n\r\nno final line end"), 1<<20, ""); b.EndsWithLineEnd() {
		t.Error("a body without a final line end ends with one")
	}
}

func TestDedupSet(t *testing.T) {
	d := newDedupSet()
	d.add("<a@x>", 100, 40, 0, "")
	d.add("<a@x>", 120, 40, 0, "r120")
	d.add("", 5, 5, 0, "")
	d.add("<d@x>", 100, -1, 1700000000, "")
	take := func(mid string, size, body int64) bool {
		ok, _ := d.take(mid, size, body, 0, true)
		return ok
	}
	if ok, _ := d.take("<d@x>", 100, -1, 1700000001, true); ok {
		t.Error("an entry with another date matched")
	}
	if ok, _ := d.take("<d@x>", 100, -1, 0, true); ok {
		t.Error("an entry with a date matched a message without one")
	}
	if ok, _ := d.take("<d@x>", 100, -1, 1700000000, true); !ok {
		t.Error("an entry with the same date did not match")
	}
	if take("", 5, 5) {
		t.Error("a message without Message-ID matched")
	}
	if ok, ref := d.take("<a@x>", 120, 99, 5, true); !ok || ref != "r120" || !take("<a@x>", 130, 40) {
		t.Errorf("exact size (with its ref %q), then body length, should match", ref)
	}
	if take("<a@x>", 100, 40) {
		t.Error("an entry was taken twice")
	}
	if take("<b@x>", 100, 40) {
		t.Error("another Message-ID matched")
	}

	// A final line end more or less (a POP3 server adds CRLF to a message
	// that had none) still matches, after an exact body length, in the
	// direction the message's own last byte allows; 4 more does not, nor
	// does an entry of unknown body length.
	d.add("<e@x>", 200, 100, 0, "plus")
	d.add("<e@x>", 300, 102, 0, "exact")
	d.add("<f@x>", 200, -1, 0, "")
	if ok, ref := d.take("<e@x>", 250, 102, 0, true); !ok || ref != "exact" {
		t.Errorf("same body length should match first, got %v %q", ok, ref)
	}
	if ok, _ := d.take("<e@x>", 250, 98, 0, true); ok {
		t.Error("a copy one line end longer matched a message that has its final line end")
	}
	if ok, ref := d.take("<e@x>", 250, 102, 0, true); !ok || ref != "plus" {
		t.Errorf("a copy one line end shorter should match a message that ends with one, got %v %q", ok, ref)
	}
	d.add("<e@x>", 200, 100, 0, "")
	if ok, _ := d.take("<e@x>", 250, 102, 0, false); ok {
		t.Error("a copy one line end shorter matched a message without a final line end")
	}
	if ok, _ := d.take("<e@x>", 250, 96, 0, false); ok {
		t.Error("a body two line ends off matched")
	}
	if ok, _ := d.take("<e@x>", 250, 98, 0, false); !ok {
		t.Error("a copy one line end longer should match a message without a final line end")
	}
	if ok, _ := d.take("<f@x>", 250, 1, 0, true); ok {
		t.Error("an entry of unknown body length matched a body length")
	}

	// A reused Message-ID: the message that ends with a line end does not
	// take the copy 2 bytes longer, which belongs to the next message.
	d.add("<m@x>", 500, 102, 0, "B")
	if ok, _ := d.take("<m@x>", 400, 100, 0, true); ok {
		t.Error("A took B's copy")
	}
	if ok, ref := d.take("<m@x>", 400, 102, 0, true); !ok || ref != "B" {
		t.Errorf("B did not find its copy: %v %q", ok, ref)
	}
}
