package migrate

import (
	"bytes"
	"testing"
)

// bareLFRef is countBareLF's definition, byte by byte.
func bareLFRef(p []byte, prevCR bool) int64 {
	var n int64
	for i, c := range p {
		if c == '\n' && (i == 0 && !prevCR || i > 0 && p[i-1] != '\r') {
			n++
		}
	}
	return n
}

func TestCountBareLF(t *testing.T) {
	for _, c := range []struct {
		in     string
		prevCR bool
		want   int64
	}{
		{"", false, 0}, {"", true, 0},
		{"\n", false, 1}, {"\n", true, 0},
		{"\r\n", false, 0}, {"a\nb\r\nc\n", false, 2},
		{"\n\n", true, 1}, {"\r\r\n\n", false, 1},
		{"\r", false, 0}, {"a\rb\nc", false, 1},
		{"no line end", false, 0},
	} {
		if got := countBareLF([]byte(c.in), c.prevCR); got != c.want {
			t.Errorf("countBareLF(%q, %v) = %d, want %d", c.in, c.prevCR, got, c.want)
		}
	}
}

func FuzzCountBareLF(f *testing.F) {
	f.Add([]byte("a\r\nb\nc\r\r\n\n"), false)
	f.Add([]byte("\nx\n"), true)
	f.Fuzz(func(t *testing.T, p []byte, prevCR bool) {
		if got, want := countBareLF(p, prevCR), bareLFRef(p, prevCR); got != want {
			t.Fatalf("countBareLF(%q, %v) = %d, want %d", p, prevCR, got, want)
		}
		// Split anywhere, the counts add up.
		for _, k := range []int{0, len(p) / 3, len(p) / 2, len(p)} {
			a := countBareLF(p[:k], prevCR)
			prev := prevCR
			if k > 0 {
				prev = p[k-1] == '\r'
			}
			if a+countBareLF(p[k:], prev) != bareLFRef(p, prevCR) {
				t.Fatalf("split at %d of %q: counts do not add up", k, p)
			}
		}
	})
}

// BenchmarkCountBareLF: 64 KiB of mail text, CRLF and LF line ends.
func BenchmarkCountBareLF(b *testing.B) {
	line := "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod\r\n"
	crlf := bytes.Repeat([]byte(line), 65536/len(line))
	lf := bytes.ReplaceAll(crlf, []byte("\r\n"), []byte("\n"))
	for _, c := range []struct {
		name string
		p    []byte
	}{{"CRLF", crlf}, {"LF", lf}} {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(len(c.p)))
			for i := 0; i < b.N; i++ {
				countBareLF(c.p, false)
			}
		})
	}
}
