package mbox

import (
	"bytes"
	"io"
	"testing"
)

// FuzzReader feeds arbitrary bytes to the reader in every format. It must
// never panic, must hand out ordered, non-overlapping ranges inside the
// file, each message read in one dialect (never Auto), and Copy must
// reproduce exactly the size and hash the scan computed. The committed
// corpus (testdata/fuzz/FuzzReader) holds the boundary cases: From_ lines
// without a blank line before them, unquoted "From " lines that are no
// From_ lines, a byte-order mark and blank lines at the top, NUL bytes,
// lenient headers, mixed dialects, Content-Length bodies followed directly
// by a From_ line, From_ lines longer than the look-ahead.
func FuzzReader(f *testing.F) {
	f.Add([]byte("From a Sat Jan  1 00:00:00 2000\nSubject: x\n\n>From y\n>>From z\n\nFrom b Sat Jan  1 00:00:00 2000\nContent-Length: 3\n\nab\n\n"))
	f.Add([]byte("From a Sat Jan  1 00:00:00 2000\rSubject: x\r\rbody\r"))
	f.Add([]byte("junk\x00\nFrom b x\n"))
	f.Add([]byte("From \n\n\nFrom - Tue Jun  4 12:00:00 2019\r\nStatus: RO\r\nX-Mozilla-Status: 100f\r\nX-Mozilla-Keys: $label1\r\n\r\nFrom x\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, format := range []Format{Auto, MboxO, MboxRD, MboxCL2} {
			ra := bytes.NewReader(data)
			r := NewReader(ra, int64(len(data)), "fuzz", Options{Format: format})
			last := int64(0)
			msgs := 0
			for i := 0; ; i++ {
				m, err := r.Next()
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatalf("Next: %v", err)
				}
				if i > len(data)+1 {
					t.Fatal("more messages than bytes")
				}
				if m.Offset < last || m.Start < m.Offset || m.Len < 0 || m.Start+m.Len > int64(len(data)) {
					t.Fatalf("bad range: offset %d start %d len %d (last end %d, size %d)", m.Offset, m.Start, m.Len, last, len(data))
				}
				last = m.Start + m.Len
				if m.Layout.Format == Auto || format != Auto && m.Layout.Format != format {
					t.Fatalf("message at %d read as %v with %v", m.Offset, m.Layout.Format, format)
				}
				n, sum, err := Copy(io.Discard, ra, "fuzz", m.Start, m.Len, m.Layout)
				if err != nil {
					t.Fatalf("Copy: %v", err)
				}
				if n != m.Size || n > m.Len {
					t.Fatalf("Copy wrote %d, scan said %d (raw %d)", n, m.Size, m.Len)
				}
				if !m.Junk && sum != m.Sum {
					t.Fatal("Copy sum differs from scan")
				}
				if !m.Junk {
					msgs++
				}
			}
			if st := r.Stats(); st.Messages != msgs || st.Same+st.MboxO+st.MboxRD+st.MboxCL2 != msgs || st.Doubtful > st.MboxO {
				t.Fatalf("stats %+v for %d messages", st, msgs)
			}
		}
	})
}
