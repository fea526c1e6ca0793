package migrate

import "testing"

// TestVersionRecordEncoding: a record reads back as written; what an
// older mailhaul wrote (JSON), a truncated record or trailing bytes match
// nothing, so the folder is listed again rather than skipped on a guess.
func TestVersionRecordEncoding(t *testing.T) {
	r := versionRecord{Already: 123456, Filtered: 7, Dest: "Sent"}
	for i := range r.Key {
		r.Key[i] = byte(i * 7)
	}
	enc := r.encode()
	if got, ok := decodeVersion(enc); !ok || got != r {
		t.Fatalf("decode(encode(%+v)) = %+v, %v", r, got, ok)
	}
	if len(enc) > 25+len(r.Dest) {
		t.Errorf("record takes %d bytes", len(enc))
	}
	for _, bad := range []string{
		"", `{"key":"v|7|dest=\"INBOX\"","already":3,"filtered":0}`,
		enc[:len(enc)-1], enc + "\x00", enc[:17],
	} {
		if got, ok := decodeVersion(bad); ok {
			t.Errorf("decodeVersion(%q) = %+v, accepted", bad, got)
		}
	}
	// Format 2, without Dest, is still read.
	v2 := "\x02" + enc[1:17] + "\xc0\xc4\x07\x07"
	if got, ok := decodeVersion(v2); !ok || got.Key != r.Key || got.Already != 123456 || got.Filtered != 7 || got.Dest != "" {
		t.Errorf("format 2: %+v, %v", got, ok)
	}
	if _, ok := decodeVersion(v2 + "\x00"); ok {
		t.Error("format 2 with a trailing byte accepted")
	}
}
