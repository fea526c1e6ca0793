package checkpoint

import (
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/mailhaul/mailhaul/migrate"
)

// The values of the done and intents buckets.
//
// Version 3 writes them in a compact binary form; versions 1 and 2 wrote
// JSON, which is still read (a value that starts with '{'), so that a file
// is upgraded as its records are rewritten, never all at once. The binary
// form was measured on the commits of a 10,000-message copy
// (BenchmarkCommits): JSON's field names, the SHA-256 in hex and the
// destination written twice in a record (in its ref and its dest) made
// most of the pages each commit writes, and encoding/json most of a
// commit's CPU.
//
// Layout: one byte valueBinary, one byte of flags, then the fields in a
// fixed order; a string is a uvarint length and its bytes, an integer a
// varint (zigzag), a hash 32 raw bytes when its flag says it was 64
// lowercase hex digits (as every hash mailhaul computes is), a string
// otherwise.
//
//	record  ref, dest, mid, size, sha256, date
//	        (flag refDest: ref is stored without its ":"+dest suffix)
//	intent  folder, epoch, id, dest, mark, mid, size, sha256,
//	        date (unix seconds, nanoseconds, zone offset in seconds;
//	        absent with flag zeroDate), flags (count, strings),
//	        crlf_size, crlf_sha256

const valueBinary = 0x01

const (
	flagSHARaw     = 1 << iota // sha256 as 32 raw bytes
	flagCRLFSHARaw             // crlf_sha256 as 32 raw bytes
	flagRefDest                // record: ref + ":" + dest is the ref
	flagZeroDate               // intent: no date

	recordFlags = flagSHARaw | flagRefDest
	intentFlags = flagSHARaw | flagCRLFSHARaw | flagZeroDate
)

// errCorrupt is wrapped by every decoding error.
var errCorrupt = errors.New("corrupt value")

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// rawHash reports whether s is 64 lowercase hex digits, and their bytes.
func rawHash(s string) ([32]byte, bool) {
	var h [32]byte
	if len(s) != 64 {
		return h, false
	}
	for i := 0; i < 64; i++ {
		if c := s[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return h, false
		}
	}
	hex.Decode(h[:], []byte(s))
	return h, true
}

func appendHash(b []byte, s string, flags *byte, flag byte) []byte {
	if h, ok := rawHash(s); ok {
		*flags |= flag
		return append(b, h[:]...)
	}
	return appendString(b, s)
}

// encodeRecord returns the binary form of r.
func encodeRecord(r Record) []byte {
	b := make([]byte, 2, 64+len(r.Ref)+len(r.Dest)+len(r.MessageID))
	b[0] = valueBinary
	var flags byte
	ref := r.Ref
	if suffix := ":" + r.Dest; r.Dest != "" && len(ref) > len(suffix) && ref[len(ref)-len(suffix):] == suffix {
		ref, flags = ref[:len(ref)-len(suffix)], flags|flagRefDest
	}
	b = appendString(b, ref)
	b = appendString(b, r.Dest)
	b = appendString(b, r.MessageID)
	b = binary.AppendVarint(b, r.Size)
	b = appendHash(b, r.SHA256, &flags, flagSHARaw)
	b = binary.AppendVarint(b, r.Date)
	b[1] = flags
	return b
}

// decodeValue reads a value of either form into a T: JSON (formats 1
// and 2) as it is, a binary value by read, which gets its flags (among
// known) and fills out.
func decodeValue[T any](v []byte, known byte, read func(d *decoder, flags byte, out *T)) (T, error) {
	var out T
	if len(v) > 0 && v[0] == '{' {
		if err := json.Unmarshal(v, &out); err != nil {
			return out, fmt.Errorf("%w: %v", errCorrupt, err)
		}
		return out, nil
	}
	d, flags, err := newDecoder(v, known)
	if err != nil {
		return out, err
	}
	read(d, flags, &out)
	return out, d.finish()
}

// decodeRecord reads a record in either form.
func decodeRecord(v []byte) (Record, error) { return decodeValue(v, recordFlags, readRecord) }

func readRecord(d *decoder, flags byte, r *Record) {
	r.Ref = d.string()
	r.Dest = d.string()
	if flags&flagRefDest != 0 {
		r.Ref += ":" + r.Dest
	}
	r.MessageID = d.string()
	r.Size = d.varint()
	r.SHA256 = d.hash(flags&flagSHARaw != 0)
	r.Date = d.varint()
}

// encodeIntent returns the binary form of in.
func encodeIntent(in migrate.Intent) []byte {
	b := make([]byte, 2, 128+len(in.Folder)+len(in.Dest)+len(in.ID)+len(in.Mark)+len(in.MessageID))
	b[0] = valueBinary
	var flags byte
	for _, s := range []string{in.Folder, in.Epoch, in.ID, in.Dest, in.Mark, in.MessageID} {
		b = appendString(b, s)
	}
	b = binary.AppendVarint(b, in.Size)
	b = appendHash(b, in.SHA256, &flags, flagSHARaw)
	if in.Date.IsZero() {
		flags |= flagZeroDate
	} else {
		_, off := in.Date.Zone()
		b = binary.AppendVarint(b, in.Date.Unix())
		b = binary.AppendVarint(b, int64(in.Date.Nanosecond()))
		b = binary.AppendVarint(b, int64(off))
	}
	b = binary.AppendUvarint(b, uint64(len(in.Flags)))
	for _, f := range in.Flags {
		b = appendString(b, f)
	}
	b = binary.AppendVarint(b, in.CRLFSize)
	b = appendHash(b, in.CRLFSHA256, &flags, flagCRLFSHARaw)
	b[1] = flags
	return b
}

// decodeIntent reads an intent in either form. A date at the zero instant
// is no date, whatever its zone: the encoder writes IsZero as absent, so a
// value the fuzzer made (or JSON's "0000-12-31T23:00:00-01:00") must read
// back as the zero time, not as that instant in a zone.
func decodeIntent(v []byte) (migrate.Intent, error) {
	in, err := decodeValue(v, intentFlags, readIntent)
	if in.Date.IsZero() {
		in.Date = time.Time{}
	}
	return in, err
}

func readIntent(d *decoder, flags byte, in *migrate.Intent) {
	for _, p := range []*string{&in.Folder, &in.Epoch, &in.ID, &in.Dest, &in.Mark, &in.MessageID} {
		*p = d.string()
	}
	in.Size = d.varint()
	in.SHA256 = d.hash(flags&flagSHARaw != 0)
	if flags&flagZeroDate == 0 {
		sec, nsec, off := d.varint(), d.varint(), d.varint()
		// Any offset a date parser gave (+2430 is 88,200 s) is kept:
		// refusing here what the encoder wrote would make a pending
		// intent, and so the checkpoint, unreadable.
		if d.err == nil && (nsec < 0 || nsec >= 1e9 || off < math.MinInt32 || off > math.MaxInt32) {
			d.err = fmt.Errorf("%w: date out of range", errCorrupt)
		}
		loc := time.UTC
		if off != 0 {
			loc = time.FixedZone("", int(off))
		}
		in.Date = time.Unix(sec, nsec).In(loc)
	}
	n := d.uvarint()
	if n > uint64(len(d.b)) { // each flag takes at least a byte
		d.fail("flag count")
	}
	for i := uint64(0); i < n && d.err == nil; i++ {
		in.Flags = append(in.Flags, d.string())
	}
	in.CRLFSize = d.varint()
	in.CRLFSHA256 = d.hash(flags&flagCRLFSHARaw != 0)
}

// decoder reads the fields of a binary value; the first error sticks and
// later reads return zero values.
type decoder struct {
	b   []byte
	err error
}

// newDecoder starts on a binary value whose flags must be among known.
func newDecoder(v []byte, known byte) (*decoder, byte, error) {
	if len(v) < 2 || v[0] != valueBinary {
		return nil, 0, fmt.Errorf("%w: unknown format", errCorrupt)
	}
	if v[1]&^known != 0 {
		return nil, 0, fmt.Errorf("%w: unknown flags %#x", errCorrupt, v[1])
	}
	return &decoder{b: v[2:]}, v[1], nil
}

func (d *decoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: bad %s", errCorrupt, what)
	}
	d.b = nil
}

func (d *decoder) uvarint() uint64 {
	x, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("number")
		return 0
	}
	d.b = d.b[n:]
	return x
}

// varint reads what binary.AppendVarint wrote: a zigzag uvarint.
func (d *decoder) varint() int64 {
	x := d.uvarint()
	return int64(x>>1) ^ -int64(x&1)
}

func (d *decoder) string() string {
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		d.fail("string")
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}

func (d *decoder) hash(raw bool) string {
	if !raw {
		return d.string()
	}
	if len(d.b) < 32 {
		d.fail("hash")
		return ""
	}
	s := hex.EncodeToString(d.b[:32])
	d.b = d.b[32:]
	return s
}

// finish is the decoding's outcome: an error, or trailing bytes.
func (d *decoder) finish() error {
	if d.err == nil && len(d.b) > 0 {
		d.err = fmt.Errorf("%w: %d bytes left over", errCorrupt, len(d.b))
	}
	return d.err
}
