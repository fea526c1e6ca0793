package migrate

import "testing"

// TestVersionRecordEncoding: a record reads back as written; what an
// older mailhaul wrote (JSON), a truncated record or trailing bytes match
// nothing, so the folder is listed again rather than skipped on a guess.
func TestVersionRecordEncoding(t *testing.T) {
	r := versionRecord{Already: 123456, Filtered: 7}
	for i := range r.Key {
		r.Key[i] = byte(i * 7)
	}
	enc := r.encode()
	if got, ok := decodeVersion(enc); !ok || got != r {
		t.Fatalf("decode(encode(%+v)) = %+v, %v", r, got, ok)
	}
	if len(enc) > 24 {
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
}
