package checkpoint

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
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
		// Dates a header can give: an offset beyond a day ("+2430"), far
		// years, the second after the zero time.
		{Folder: "x", ID: "2", Date: time.Date(2020, 1, 2, 3, 4, 5, 0, time.FixedZone("", 24*3600+30*60))},
		{Folder: "x", ID: "3", Date: time.Date(12000, 1, 1, 0, 0, 0, 0, time.FixedZone("", -(23*3600+59*60)))},
		{Folder: "x", ID: "4", Date: time.Date(1, 1, 1, 0, 0, 1, 0, time.UTC)},
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
		v, err := json.Marshal(in)
		if err != nil {
			continue // a date JSON cannot hold (years past 9999, offsets past a day)
		}
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
	// Flags the kind does not know.
	if _, err := decodeRecord([]byte{valueBinary, flagZeroDate, 0, 0, 0, 0, 0, 0}); !errors.Is(err, errCorrupt) {
		t.Errorf("an intent's flag on a record: %v", err)
	}
	if _, err := decodeIntent(append([]byte{valueBinary, 0x80}, good[2:]...)); !errors.Is(err, errCorrupt) {
		t.Errorf("an unknown flag: %v", err)
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
	s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bMeta).Put([]byte("version"), []byte("5")) })
	s.Close()
	if _, err := Open(p, "a", "b"); err == nil || !strings.Contains(err.Error(), "newer than this mailhaul") {
		t.Errorf("open of a version 5 file: %v", err)
	}
	if _, err := OpenReadOnly(p); err == nil || !strings.Contains(err.Error(), "newer than this mailhaul") {
		t.Errorf("read-only open of a version 5 file: %v", err)
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

// An intent of any date a header can give is pending after a reopen: a
// date the decoder refused would make the checkpoint unreadable.
func TestOddDatePendingAfterReopen(t *testing.T) {
	p := filepath.Join(t.TempDir(), "x.db")
	s, err := Open(p, "a", "b")
	if err != nil {
		t.Fatal(err)
	}
	d, err := time.Parse("Mon, 2 Jan 2006 15:04:05 -0700", "Thu, 2 Jan 2020 03:04:05 +2430")
	if err != nil {
		t.Skipf("time.Parse refuses +2430 now: %v", err)
	}
	in := migrate.Intent{Folder: "INBOX", Epoch: "1", ID: "1", Dest: "INBOX", Date: d}
	if err := s.AddIntents([]migrate.Intent{in}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s, err = Open(p, "a", "b")
	if err != nil {
		t.Fatalf("reopen with an intent dated %v: %v", d, err)
	}
	defer s.Close()
	if pend, err := s.Pending(); err != nil || len(pend) != 1 || !pend[0].Date.Equal(d) {
		t.Fatalf("pending %+v, %v", pend, err)
	}
}

// The done bucket's pages are filled to 90% when ids come in key order
// (IMAP UIDs) and left to bbolt's default when they do not (an mbox's
// content hashes), where full pages would split into half-empty ones.
func TestFillByKeyOrder(t *testing.T) {
	for _, tc := range []struct {
		name    string
		id      func(n int) string
		minFill float64
	}{
		{"rising", func(n int) string { return fmt.Sprintf("%08d", n) }, 0.8},
		{"hashes", func(n int) string {
			h := sha256.Sum256([]byte{byte(n), byte(n >> 8)})
			return hex.EncodeToString(h[:16])
		}, 0.55},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Open(filepath.Join(t.TempDir(), "x.db"), "a", "b")
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			for n := 0; n < 6000; n += 32 {
				var in []migrate.Intent
				var refs []string
				for k := n; k < n+32; k++ {
					in = append(in, migrate.Intent{Folder: "INBOX", Epoch: "1", ID: tc.id(k), Dest: "INBOX", Size: 1000, SHA256: sum, MessageID: fmt.Sprintf("<%d@example.org>", k)})
					refs = append(refs, fmt.Sprintf("7:%d:INBOX", k+1))
				}
				if err := s.Complete(in, refs); err != nil {
					t.Fatal(err)
				}
			}
			s.db.View(func(tx *bolt.Tx) error {
				st := tx.Bucket(bDone).Bucket(folderKey("INBOX", "1")).Stats()
				fill := float64(st.LeafInuse) / float64(st.LeafAlloc)
				if fill < tc.minFill {
					t.Errorf("leaf pages %.0f%% full (%d pages), want at least %.0f%%", 100*fill, st.LeafPageN, 100*tc.minFill)
				}
				return nil
			})
		})
	}
}

// A date at the zero instant in another zone (found by FuzzDecode in CI)
// reads as no date, so that it encodes back to what decodes the same.
func TestZeroInstantDateIsNoDate(t *testing.T) {
	b := []byte{valueBinary, 0}
	for range 6 {
		b = appendString(b, "")
	}
	b = binary.AppendVarint(b, 24)                 // size
	b = appendString(b, "")                        // sha256
	b = binary.AppendVarint(b, time.Time{}.Unix()) // seconds
	b = binary.AppendVarint(b, 0)                  // nanoseconds
	b = binary.AppendVarint(b, 24)                 // zone offset
	b = binary.AppendUvarint(b, 0)                 // flags
	b = binary.AppendVarint(b, 24)                 // crlf_size
	b = appendString(b, "")                        // crlf_sha256
	for _, v := range [][]byte{b, []byte(`{"size":24,"date":"0000-12-31T23:00:00-01:00"}`)} {
		in, err := decodeIntent(v)
		if err != nil {
			t.Fatalf("%q: %v", v, err)
		}
		if _, off := in.Date.Zone(); !in.Date.IsZero() || off != 0 {
			t.Errorf("%q: date %v, want the zero time", v, in.Date)
		}
		if again, err := decodeIntent(encodeIntent(in)); err != nil || !sameIntent(again, in) {
			t.Errorf("%q: re-decoded %+v, %v", v, again, err)
		}
	}
}
