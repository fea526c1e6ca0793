package checkpoint

import (
	"encoding/json"
	"errors"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/mailhaul/mailhaul/migrate"
)

var (
	sum  = strings.Repeat("0123456789abcdef", 4)
	east = time.FixedZone("", 2*3600)
)

func codecRecords() []Record {
	return []Record{
		{},
		{Ref: "1700000001:42:Archive/2019", Dest: "Archive/2019", MessageID: "<a@b>", Size: 16000, SHA256: sum, Date: 1600000000},
		{Ref: migrate.DedupeRef, Dest: "INBOX", Size: -1, SHA256: strings.ToUpper(sum)}, // hash kept as a string
		{Ref: "new/1700000000.M1P2.host,S=10:2,S", Dest: "", SHA256: "aa", Date: -5},    // no dest suffix
		{Ref: ":INBOX", Dest: "INBOX"}, // a ref that is only the suffix
		{Ref: "u:" + migrate.UnverifiedPrefix + "1:0:Ünïcode/日本", Dest: "Ünïcode/日本", MessageID: "\x00\xff"}, // any bytes
	}
}

func codecIntents() []migrate.Intent {
	return []migrate.Intent{
		{},
		{Folder: "INBOX", Epoch: "1700000000", ID: "42", Dest: "INBOX", Mark: "1700000001:99",
			MessageID: "<x@y>", Size: 1 << 40, SHA256: sum, Date: time.Unix(1600000000, 123456789).In(east),
			Flags: []string{`\Seen`, `\Flagged`, "$Label1"}, CRLFSize: 1<<40 + 7, CRLFSHA256: sum},
		{Folder: "mbox/Sent", ID: sum, Dest: "Sent", SHA256: "not-hex", Date: time.Unix(0, 0).UTC(), Flags: []string{""}},
		{Folder: "x", ID: "1", Date: time.Date(1969, 12, 31, 23, 59, 59, 0, time.UTC), CRLFSHA256: "short"},
	}
}

func TestCodecRoundTrip(t *testing.T) {
	for _, r := range codecRecords() {
		got, err := decodeRecord(encodeRecord(r))
		if err != nil || got != r {
			t.Errorf("record %+v: got %+v, %v", r, got, err)
		}
	}
	for _, in := range codecIntents() {
		got, err := decodeIntent(encodeIntent(in))
		if err != nil || !sameIntent(got, in) {
			t.Errorf("intent %+v:\n got %+v, %v", in, got, err)
		}
	}
}

// sameIntent compares as the engine does: the date's instant and offset.
func sameIntent(a, b migrate.Intent) bool {
	_, ao := a.Date.Zone()
	_, bo := b.Date.Zone()
	if !a.Date.Equal(b.Date) || ao != bo || a.Date.IsZero() != b.Date.IsZero() || len(a.Flags) != len(b.Flags) {
		return false
	}
	a.Date, b.Date = time.Time{}, time.Time{}
	if len(a.Flags) == 0 {
		a.Flags, b.Flags = nil, nil
	}
	return reflect.DeepEqual(a, b)
}

// The JSON of versions 1 and 2 is still read.
func TestCodecReadsJSON(t *testing.T) {
	for _, r := range codecRecords() {
		v, _ := json.Marshal(r)
		json.Unmarshal(v, &r) // what JSON keeps (not invalid UTF-8)
		if got, err := decodeRecord(v); err != nil || got != r {
			t.Errorf("JSON record %s: got %+v, %v", v, got, err)
		}
	}
	for _, in := range codecIntents() {
		v, _ := json.Marshal(in)
		if got, err := decodeIntent(v); err != nil || !sameIntent(got, in) {
			t.Errorf("JSON intent %s: got %+v, %v", v, got, err)
		}
	}
}

func TestCodecCorrupt(t *testing.T) {
	good := encodeIntent(codecIntents()[1])
	bad := [][]byte{nil, {}, {valueBinary}, {0x02, 0}, []byte("{not json"), good[:len(good)-1], append(append([]byte{}, good...), 0)}
	for _, v := range bad {
		if _, err := decodeIntent(v); !errors.Is(err, errCorrupt) {
			t.Errorf("intent %q: %v, want a corrupt-value error", v, err)
		}
		if _, err := decodeRecord(v); !errors.Is(err, errCorrupt) {
			t.Errorf("record %q: %v, want a corrupt-value error", v, err)
		}
	}
	// A string longer than what is left, a flag count beyond the value.
	if _, err := decodeRecord([]byte{valueBinary, 0, 0x7f, 'a'}); !errors.Is(err, errCorrupt) {
		t.Errorf("long string: %v", err)
	}
	if _, err := decodeIntent(append([]byte{valueBinary, flagZeroDate, 0, 0, 0, 0, 0, 0, 0, 0}, 0xff, 0xff, 0x03)); !errors.Is(err, errCorrupt) {
		t.Errorf("flag count: %v", err)
	}
}

// A version 2 file (JSON values) opens, reads, takes binary values beside
// its JSON ones, and is marked version 3; a file of a later version is
// refused, for writing and for reading.
func TestVersion2FileAndNewer(t *testing.T) {
	p := filepath.Join(t.TempDir(), "x.db")
	s, err := Open(p, "a", "b")
	if err != nil {
		t.Fatal(err)
	}
	old := Record{Ref: "7:1:INBOX", Dest: "INBOX", Size: 3, SHA256: sum, Date: 9}
	oldIn := migrate.Intent{Folder: "INBOX", Epoch: "7", ID: "2", Dest: "INBOX", SHA256: sum, Date: time.Unix(5, 0).UTC()}
	err = s.db.Update(func(tx *bolt.Tx) error {
		f, _ := tx.Bucket(bDone).CreateBucketIfNotExists(folderKey("INBOX", "7"))
		v, _ := json.Marshal(old)
		f.Put([]byte("1"), v)
		tx.Bucket(bRefs).Put(refKey("INBOX", old.Ref), intentKey("INBOX", "7", "1"))
		v, _ = json.Marshal(oldIn)
		tx.Bucket(bIntents).Put(intentKey("INBOX", "7", "2"), v)
		return tx.Bucket(bMeta).Put([]byte("version"), []byte("2"))
	})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()

	s, err = Open(p, "a", "b")
	if err != nil {
		t.Fatal(err)
	}
	if r, ok, err := s.Lookup("INBOX", "7", "1"); !ok || err != nil || r != old {
		t.Errorf("JSON record: %+v %v %v", r, ok, err)
	}
	if pend, err := s.Pending(); err != nil || len(pend) != 1 || !sameIntent(pend[0], oldIn) {
		t.Errorf("JSON intent: %+v %v", pend, err)
	}
	// Completing the JSON intent writes a binary record and drops the
	// replaced record's ref from the index.
	if err := s.Complete([]migrate.Intent{oldIn}, []string{"7:2:INBOX"}); err != nil {
		t.Fatal(err)
	}
	in := migrate.Intent{Folder: "INBOX", Epoch: "7", ID: "1", Dest: "INBOX", SHA256: sum}
	if err := s.Complete([]migrate.Intent{in}, []string{"7:3:INBOX"}); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := s.Owner("INBOX", old.Ref); ok {
		t.Error("the replaced JSON record's ref is still indexed")
	}
	n := 0
	s.ForEachDone("INBOX", "7", func(id string, r Record) error { n++; return nil })
	var v string
	s.db.View(func(tx *bolt.Tx) error { v = string(tx.Bucket(bMeta).Get([]byte("version"))); return nil })
	if n != 2 || v != version {
		t.Errorf("%d records, version %q", n, v)
	}
	s.Close()

	s, _ = Open(p, "a", "b")
	s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bMeta).Put([]byte("version"), []byte("4")) })
	s.Close()
	if _, err := Open(p, "a", "b"); err == nil || !strings.Contains(err.Error(), "newer than this mailhaul") {
		t.Errorf("open of a version 4 file: %v", err)
	}
	if _, err := OpenReadOnly(p); err == nil || !strings.Contains(err.Error(), "newer than this mailhaul") {
		t.Errorf("read-only open of a version 4 file: %v", err)
	}
}

// FuzzDecode: no value makes the decoders panic, and what they accept
// encodes back to what decodes the same.
func FuzzDecode(f *testing.F) {
	for _, r := range codecRecords() {
		f.Add(encodeRecord(r))
	}
	for _, in := range codecIntents() {
		f.Add(encodeIntent(in))
	}
	f.Add([]byte(`{"ref":"x"}`))
	f.Fuzz(func(t *testing.T, v []byte) {
		if r, err := decodeRecord(v); err == nil {
			if again, err := decodeRecord(encodeRecord(r)); err != nil || again != r {
				t.Errorf("record %+v: re-decoded %+v, %v", r, again, err)
			}
		}
		if in, err := decodeIntent(v); err == nil {
			if again, err := decodeIntent(encodeIntent(in)); err != nil || !sameIntent(again, in) {
				t.Errorf("intent %+v: re-decoded %+v, %v", in, again, err)
			}
		}
	})
}
