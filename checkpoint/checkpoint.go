// Package checkpoint is mailhaul's crash-safe record of what has been
// copied from one source to one destination.
//
// # Why bbolt
//
// The record must survive kill -9 and power loss at any instant, stop two
// runs on the same pair from interleaving, and answer "was message X of
// folder F copied?" quickly for mailboxes of hundreds of thousands of
// messages without loading them all into memory. go.etcd.io/bbolt gives all
// three: copy-on-write B+tree pages with a meta page switched by one fsync
// (a crash leaves the previous commit intact), an exclusive flock on the
// file, and O(log n) lookups from disk pages. An mbsync-style journal plus
// snapshot would need its own replay, compaction and locking code to reach
// the same place. Group commit (group.go) folds the commits of concurrent
// appenders that arrive while one is in progress into the next
// transaction and its fsyncs; the engine additionally groups each
// appender's messages into batches.
//
// # Layout
//
//	meta     source, destination, version (4)
//	epochs   folder -> epoch (UIDVALIDITY) last seen
//	done     folder "\x00" epoch -> { message id -> Record }
//	intents  folder "\x00" epoch "\x00" id -> migrate.Intent
//	refs     dest "\x00" ref -> folder "\x00" epoch "\x00" id (who owns a copy)
//	contacts source folder -> destination folder compared with (migrate.Contacts)
//
// Records and intents are binary (codec.go) since version 3; the JSON of
// versions 1 and 2 is still read. Version 1 files (no refs bucket; IMAP
// refs "uidvalidity:uid" without their folder) are upgraded when opened
// for writing. A file of a later version than this code knows is refused:
// its values may mean what this code cannot tell.
//
// Beside the database, journal.go keeps the in-flight journal and the
// heartbeat (a small file written without fsync, see Store.Sending).
//
// Secrets never reach this file: the caller passes endpoint descriptions
// without passwords.
package checkpoint

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/mailhaul/mailhaul/migrate"
)

var (
	bMeta   = []byte("meta")
	bEpochs = []byte("epochs")
	// bVersions maps a source folder to what migrate recorded when a run
	// finished it (migrate.FolderVersions).
	bVersions = []byte("versions")
	bDone     = []byte("done")
	bIntents  = []byte("intents")
	bRefs     = []byte("refs")
	// bContacts maps a source folder to the destination folder its
	// messages are compared with until a run finishes it
	// (migrate.Contacts). Older releases ignore the bucket.
	bContacts = []byte("contacts")
)

const version = "4"

// appendFill is the FillPercent of the buckets written in key order.
const appendFill = 0.9

// ErrLocked is returned by Open when another run holds the checkpoint.
var ErrLocked = errors.New("another mailhaul run is using this checkpoint")

// Record is what is kept for a copied message.
type Record struct {
	Ref       string `json:"ref"`
	Dest      string `json:"dest"`
	MessageID string `json:"mid,omitempty"`
	Size      int64  `json:"size"`
	SHA256    string `json:"sha256,omitempty"`
	Date      int64  `json:"date,omitempty"` // unix seconds of the internal date
}

// Store is an open checkpoint. It implements migrate.Checkpoint; all
// methods are safe for concurrent use.
type Store struct {
	db       *bolt.DB
	path     string
	readOnly bool
	journal  *journal // nil when read-only
	group    groupCommit
	res      resident // pages of the memory map handed back (resident.go)
}

// PathFor returns the checkpoint file for a (source, destination) pair in
// dir. src and dst must not contain secrets.
func PathFor(dir, src, dst string) string {
	h := sha256.Sum256([]byte(src + "\n" + dst))
	return filepath.Join(dir, hex.EncodeToString(h[:10])+".db")
}

// Open opens (creating if needed) the checkpoint at path for writing,
// holding an exclusive lock until Close. It fails with ErrLocked if another
// process holds the lock.
func Open(path, src, dst string) (*Store, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("create state directory: %w", err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 500 * time.Millisecond})
	if err != nil {
		if errors.Is(err, bolterrors.ErrTimeout) {
			return nil, fmt.Errorf("open checkpoint %s: %w", path, ErrLocked)
		}
		return nil, fmt.Errorf("open checkpoint %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bMeta, bEpochs, bDone, bIntents, bVersions, bContacts} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		m := tx.Bucket(bMeta)
		if m.Get([]byte("version")) == nil {
			m.Put([]byte("version"), []byte(version))
			m.Put([]byte("source"), []byte(src))
			m.Put([]byte("destination"), []byte(dst))
			m.Put([]byte("created"), []byte(time.Now().UTC().Format(time.RFC3339)))
		}
		return upgrade(tx)
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("initialise checkpoint %s: %w", path, err)
	}
	s := &Store{db: db, path: path, group: groupCommit{db: db}}
	pending, err := s.Pending()
	if err == nil {
		s.journal, err = openJournal(path+".inflight", pending)
	}
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open checkpoint %s: %w", path, err)
	}
	return s, nil
}

// upgrade brings an older layout to the current one. Version 1 gets the
// refs index, with IMAP refs qualified by their folder
// ("uidvalidity:uid:folder"); versions 2 and 3 only their number, as
// their values are read as they are. (Version 4 added the contacts bucket,
// made by Open, and refs of messages found already in the destination,
// migrate.FoundPrefix, that a release before it would take for copies of
// its own: it refuses the file by its number.)
func upgrade(tx *bolt.Tx) error {
	m := tx.Bucket(bMeta)
	v := string(m.Get([]byte("version")))
	if err := knownVersion(v); err != nil {
		return err
	}
	if v == version && tx.Bucket(bRefs) != nil {
		return nil
	}
	if (v == "2" || v == "3") && tx.Bucket(bRefs) != nil {
		return m.Put([]byte("version"), []byte(version))
	}
	refs, err := tx.CreateBucketIfNotExists(bRefs)
	if err != nil {
		return err
	}
	d := tx.Bucket(bDone)
	err = d.ForEachBucket(func(fk []byte) error {
		f := d.Bucket(fk)
		type rec struct {
			id []byte
			r  Record
		}
		var fix []rec
		err := f.ForEach(func(id, v []byte) error {
			r, err := decodeRecord(v)
			if err != nil {
				return fmt.Errorf("record %q: %w", id, err)
			}
			if q := QualifyRef(r.Ref, r.Dest); q != r.Ref {
				r.Ref = q
				fix = append(fix, rec{append([]byte{}, id...), r})
			}
			if indexed(r.Ref) {
				return refs.Put(refKey(r.Dest, r.Ref), append(append(append([]byte{}, fk...), 0), id...))
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, x := range fix {
			if err := f.Put(x.id, encodeRecord(x.r)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	return m.Put([]byte("version"), []byte(version))
}

// knownVersion refuses a file written by a later mailhaul.
func knownVersion(v string) error {
	switch v {
	case "1", "2", "3", version:
		return nil
	}
	return fmt.Errorf("checkpoint format %q is newer than this mailhaul's (%s): use the mailhaul that wrote it, or a later one", v, version)
}

// QualifyRef turns a version 1 IMAP ref "uidvalidity:uid" into the
// self-identifying "uidvalidity:uid:folder"; other refs are returned
// unchanged.
func QualifyRef(ref, dest string) string {
	v, u, ok := strings.Cut(ref, ":")
	if !ok || strings.Contains(u, ":") || !digits(v) || !(u == "" || digits(u)) {
		return ref
	}
	if u == "" {
		return migrate.UnverifiedPrefix + v + ":0:" + dest
	}
	return v + ":" + u + ":" + dest
}

func digits(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// indexed reports whether ref names one particular copy (not --dedupe's
// "already there").
func indexed(ref string) bool {
	return ref != "" && ref != migrate.DedupeRef && ref != "existing"
}

// ownerKey is the refs index key of a copy: unverified refs name no one
// copy (twins share them), so theirs carries the owner too.
func ownerKey(dest, ref, owner string) []byte {
	if migrate.Unverified(ref) {
		return []byte(dest + "\x00" + ref + "\x00" + owner)
	}
	return refKey(dest, ref)
}

func refKey(dest, ref string) []byte { return []byte(dest + "\x00" + ref) }

// OpenReadOnly opens an existing checkpoint for reading (dry runs). It
// returns (nil, nil) if the file does not exist: nothing was copied yet.
func OpenReadOnly(path string) (*Store, error) {
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: 500 * time.Millisecond})
	if err != nil {
		if errors.Is(err, bolterrors.ErrTimeout) {
			return nil, fmt.Errorf("open checkpoint %s: %w", path, ErrLocked)
		}
		return nil, fmt.Errorf("open checkpoint %s: %w", path, err)
	}
	err = db.View(func(tx *bolt.Tx) error {
		if m := tx.Bucket(bMeta); m != nil {
			return knownVersion(string(m.Get([]byte("version"))))
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open checkpoint %s: %w", path, err)
	}
	return &Store{db: db, path: path, readOnly: true}, nil
}

// Path is the file behind the store.
func (s *Store) Path() string { return s.path }

// Close releases the lock. Every committed change is already durable.
func (s *Store) Close() error {
	s.group.close()
	if s.journal != nil {
		s.journal.close()
	}
	return s.db.Close()
}

func folderKey(folder, epoch string) []byte { return []byte(folder + "\x00" + epoch) }

func intentKey(folder, epoch, id string) []byte {
	return []byte(folder + "\x00" + epoch + "\x00" + id)
}

// Done implements migrate.Checkpoint.
func (s *Store) Done(folder, epoch, id string) (bool, error) {
	var ok bool
	err := s.db.View(func(tx *bolt.Tx) error {
		d := tx.Bucket(bDone)
		if d == nil {
			return nil
		}
		if f := d.Bucket(folderKey(folder, epoch)); f != nil {
			ok = f.Get([]byte(id)) != nil
		}
		return nil
	})
	return ok, err
}

// Lookup returns the record of a copied message.
func (s *Store) Lookup(folder, epoch, id string) (Record, bool, error) {
	var r Record
	var ok bool
	err := s.db.View(func(tx *bolt.Tx) error {
		d := tx.Bucket(bDone)
		if d == nil {
			return nil
		}
		f := d.Bucket(folderKey(folder, epoch))
		if f == nil {
			return nil
		}
		v := f.Get([]byte(id))
		if v == nil {
			return nil
		}
		ok = true
		var err error
		if r, err = decodeRecord(v); err != nil {
			return fmt.Errorf("record %q of %s: %w", id, folder, err)
		}
		return nil
	})
	return r, ok, err
}

// Count returns how many messages of folder+epoch are recorded as copied.
func (s *Store) Count(folder, epoch string) (int, error) {
	n := 0
	err := s.db.View(func(tx *bolt.Tx) error {
		if d := tx.Bucket(bDone); d != nil {
			if f := d.Bucket(folderKey(folder, epoch)); f != nil {
				n = f.Stats().KeyN
			}
		}
		return nil
	})
	return n, err
}

// Epoch implements migrate.Checkpoint.
func (s *Store) Epoch(folder string) (string, bool, error) {
	var e string
	var ok bool
	err := s.db.View(func(tx *bolt.Tx) error {
		if b := tx.Bucket(bEpochs); b != nil {
			if v := b.Get([]byte(folder)); v != nil {
				e, ok = string(v), true
			}
		}
		return nil
	})
	return e, ok, err
}

// SetEpoch implements migrate.Checkpoint.
func (s *Store) SetEpoch(folder, epoch string) error {
	return s.batch(func(tx *bolt.Tx) error {
		return tx.Bucket(bEpochs).Put([]byte(folder), []byte(epoch))
	})
}

// FolderVersion implements migrate.FolderVersions.
func (s *Store) FolderVersion(folder string) (string, bool, error) {
	var v string
	var ok bool
	err := s.db.View(func(tx *bolt.Tx) error {
		if b := tx.Bucket(bVersions); b != nil {
			if raw := b.Get([]byte(folder)); raw != nil {
				v, ok = string(raw), true
			}
		}
		return nil
	})
	return v, ok, err
}

// SetFolderVersions implements migrate.FolderVersions: one commit. Keys
// are written in order into pages filled to 90%: written in map order at
// half fill, 100,000 folders took a 34 MB file, which every re-run reads.
func (s *Store) SetFolderVersions(m map[string]string) error {
	keys := slices.Sorted(maps.Keys(m))
	return s.batch(func(tx *bolt.Tx) error {
		b := tx.Bucket(bVersions)
		b.FillPercent = 0.9
		for _, k := range keys {
			if err := b.Put([]byte(k), []byte(m[k])); err != nil {
				return err
			}
		}
		return nil
	})
}

// Forget removes the records of copies (source folder, epoch of the
// checkpoint, message id) whose copies are gone from the destination, with
// their refs index entries, and the folders' "unchanged since" records,
// in one commit: the next copy copies those messages again. A message not
// recorded is ignored. It returns how many records were removed.
func (s *Store) Forget(folder, epoch string, ids []string) (int, error) {
	n := 0
	err := s.batch(func(tx *bolt.Tx) error {
		n = 0
		f := tx.Bucket(bDone).Bucket(folderKey(folder, epoch))
		if f == nil {
			return nil
		}
		rb := tx.Bucket(bRefs)
		for _, id := range ids {
			old := f.Get([]byte(id))
			if old == nil {
				continue
			}
			if o, err := decodeRecord(old); err == nil && indexed(o.Ref) && rb != nil {
				key := string(intentKey(folder, epoch, id))
				if k := ownerKey(o.Dest, o.Ref, key); string(rb.Get(k)) == key {
					if err := rb.Delete(k); err != nil {
						return err
					}
				}
			}
			if err := f.Delete([]byte(id)); err != nil {
				return err
			}
			n++
		}
		if n > 0 {
			return tx.Bucket(bVersions).Delete([]byte(folder))
		}
		return nil
	})
	return n, err
}

// AddIntents implements migrate.Checkpoint.
func (s *Store) AddIntents(in []migrate.Intent) error {
	return s.batch(func(tx *bolt.Tx) error { return addIntents(tx, in) })
}

// Complete implements migrate.Checkpoint.
func (s *Store) Complete(in []migrate.Intent, refs []string) error {
	if len(in) != len(refs) {
		return fmt.Errorf("checkpoint: %d intents but %d refs", len(in), len(refs))
	}
	return s.batch(func(tx *bolt.Tx) error { return complete(tx, in, refs) })
}

// CompleteAndAdd implements migrate.Checkpoint: Complete(done, refs) and
// AddIntents(in) in one commit.
func (s *Store) CompleteAndAdd(done []migrate.Intent, refs []string, in []migrate.Intent) error {
	if len(done) != len(refs) {
		return fmt.Errorf("checkpoint: %d intents but %d refs", len(done), len(refs))
	}
	return s.batch(func(tx *bolt.Tx) error {
		if err := complete(tx, done, refs); err != nil {
			return err
		}
		return addIntents(tx, in)
	})
}

func addIntents(tx *bolt.Tx, in []migrate.Intent) error {
	b := tx.Bucket(bIntents)
	for _, i := range in {
		if err := b.Put(intentKey(i.Folder, i.Epoch, i.ID), encodeIntent(i)); err != nil {
			return err
		}
	}
	return nil
}

func complete(tx *bolt.Tx, in []migrate.Intent, refs []string) error {
	ib := tx.Bucket(bIntents)
	db := tx.Bucket(bDone)
	rb := tx.Bucket(bRefs)
	fills := map[*bolt.Bucket]*fill{}
	for k, i := range in {
		if refs[k] != "" {
			f, err := db.CreateBucketIfNotExists(folderKey(i.Folder, i.Epoch))
			if err != nil {
				return err
			}
			key := string(intentKey(i.Folder, i.Epoch, i.ID))
			if old := f.Get([]byte(i.ID)); old != nil {
				if o, err := decodeRecord(old); err == nil && o.Ref != refs[k] && indexed(o.Ref) {
					if err := rb.Delete(ownerKey(o.Dest, o.Ref, key)); err != nil {
						return err
					}
				}
			}
			r := Record{Ref: refs[k], Dest: i.Dest, MessageID: i.MessageID, Size: i.Size, SHA256: i.SHA256}
			if !i.Date.IsZero() {
				r.Date = i.Date.Unix()
			}
			setFill(f, []byte(i.ID), fills)
			if err := f.Put([]byte(i.ID), encodeRecord(r)); err != nil {
				return err
			}
			if indexed(refs[k]) {
				if err := rb.Put(ownerKey(i.Dest, refs[k], key), []byte(key)); err != nil {
					return err
				}
			}
		}
		if err := ib.Delete(intentKey(i.Folder, i.Epoch, i.ID)); err != nil {
			return err
		}
	}
	return nil
}

// setFill chooses how full bbolt fills the pages of a folder's done
// bucket b when this commit splits them (FillPercent is read at commit,
// for the whole bucket): full while every id put into b by this call
// comes after b's last — an IMAP source's UIDs (compared as numbers:
// "10" after "9", which lands in the middle of the bucket but walks it
// from left to right), a Maildir's time-based names — which halves the
// pages a commit writes and the file a re-run reads; bbolt's default once
// one does not — an mbox source's content hashes, many POP3 UIDLs — since
// full pages that take keys in their middle split into two nearly empty
// ones (measured: 40% full at 0.9, against 69% at the default). The refs
// index mixes every destination folder, and keeps the default.
//
// The bucket's last id is looked up once per call (a cursor costs more
// than the put) and then followed in fills.
func setFill(b *bolt.Bucket, id []byte, fills map[*bolt.Bucket]*fill) {
	f := fills[b]
	if f == nil {
		f = &fill{}
		if last, _ := b.Cursor().Last(); last != nil {
			f.last = append([]byte{}, last...)
		}
		fills[b] = f
	}
	if f.last != nil && !idAfter(id, f.last) {
		f.shuffled = true
	} else {
		f.last = id
	}
	if f.shuffled {
		b.FillPercent = bolt.DefaultFillPercent
	} else {
		b.FillPercent = appendFill
	}
}

// fill is what setFill knows of a bucket during one call.
type fill struct {
	last     []byte // the largest id in the bucket so far
	shuffled bool   // an id came before it
}

// idAfter reports whether id comes after last: as numbers when both are
// decimal digits, else as bytes.
func idAfter(id, last []byte) bool {
	if digits(string(id)) && digits(string(last)) && len(id) != len(last) {
		return len(id) > len(last)
	}
	return bytes.Compare(id, last) > 0
}

// Pending implements migrate.Checkpoint.
func (s *Store) Pending() ([]migrate.Intent, error) {
	var out []migrate.Intent
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bIntents)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			i, err := decodeIntent(v)
			if err != nil {
				return fmt.Errorf("intent %q: %w", k, err)
			}
			out = append(out, i)
			return nil
		})
	})
	return out, err
}

// ForEachDone calls fn for every copied message of folder+epoch.
func (s *Store) ForEachDone(folder, epoch string, fn func(id string, r Record) error) error {
	return s.db.View(func(tx *bolt.Tx) error {
		d := tx.Bucket(bDone)
		if d == nil {
			return nil
		}
		f := d.Bucket(folderKey(folder, epoch))
		if f == nil {
			return nil
		}
		return f.ForEach(func(k, v []byte) error {
			r, err := decodeRecord(v)
			if err != nil {
				return fmt.Errorf("record %q of %s: %w", k, folder, err)
			}
			return fn(string(k), r)
		})
	})
}

// Copies implements migrate.Checkpoint.
func (s *Store) Copies(folder, epoch string, fn func(migrate.Copy) error) error {
	return s.ForEachDone(folder, epoch, func(id string, r Record) error {
		c := migrate.Copy{ID: id, Ref: r.Ref, Dest: r.Dest, MessageID: r.MessageID, Size: r.Size, SHA256: r.SHA256}
		if r.Date != 0 {
			c.Date = time.Unix(r.Date, 0)
		}
		return fn(c)
	})
}

// Owner implements migrate.Checkpoint: the source message whose copy ref
// is, or that was found already there as ref (migrate.FoundPrefix); two
// lookups in the refs index.
func (s *Store) Owner(dest, ref string) (string, bool, error) {
	var key string
	var ok bool
	err := s.db.View(func(tx *bolt.Tx) error {
		if b := tx.Bucket(bRefs); b != nil {
			for _, k := range [][]byte{refKey(dest, ref), refKey(dest, migrate.FoundPrefix+ref)} {
				if v := b.Get(k); v != nil {
					key, ok = string(v), true
					break
				}
			}
		}
		return nil
	})
	return key, ok, err
}

// Unverified implements migrate.Checkpoint: a scan of dest's unverified
// refs (servers without UIDPLUS only).
func (s *Store) Unverified(dest, sum string) (int, error) {
	n := 0
	prefix := []byte(dest + "\x00" + migrate.UnverifiedPrefix)
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bRefs)
		if b == nil {
			return nil
		}
		c := b.Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			if bytes.Contains(k, []byte("#"+sum+"\x00")) {
				n++
			}
		}
		return nil
	})
	return n, err
}

// ContactsPending implements migrate.Contacts.
func (s *Store) ContactsPending() (map[string]string, error) {
	m := map[string]string{}
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bContacts)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			m[string(k)] = string(v)
			return nil
		})
	})
	return m, err
}

// SetContactPending implements migrate.Contacts: one commit.
func (s *Store) SetContactPending(folder, dest string) error {
	return s.batch(func(tx *bolt.Tx) error {
		return tx.Bucket(bContacts).Put([]byte(folder), []byte(dest))
	})
}

// ClearContacts implements migrate.Contacts: one commit.
func (s *Store) ClearContacts(folders []string) error {
	return s.batch(func(tx *bolt.Tx) error {
		b := tx.Bucket(bContacts)
		for _, f := range folders {
			if err := b.Delete([]byte(f)); err != nil {
				return err
			}
		}
		return nil
	})
}

// HasCopies implements migrate.Contacts: one seek.
func (s *Store) HasCopies(folder, epoch string) (bool, error) {
	found := false
	err := s.db.View(func(tx *bolt.Tx) error {
		if d := tx.Bucket(bDone); d != nil {
			if f := d.Bucket(folderKey(folder, epoch)); f != nil {
				k, _ := f.Cursor().First()
				found = k != nil
			}
		}
		return nil
	})
	return found, err
}

// Ref implements migrate.Checkpoint.
func (s *Store) Ref(folder, epoch, id string) (string, bool, error) {
	r, ok, err := s.Lookup(folder, epoch, id)
	return r.Ref, ok, err
}

func (s *Store) batch(fn func(*bolt.Tx) error) error {
	if s.readOnly {
		return errors.New("checkpoint opened read-only")
	}
	if err := s.group.do(fn); err != nil {
		return err
	}
	s.dropResident()
	return nil
}

var (
	_ migrate.Checkpoint     = (*Store)(nil)
	_ migrate.FolderVersions = (*Store)(nil)
	_ migrate.Contacts       = (*Store)(nil)
)
