package sinks

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"sort"
	"strconv"
	"strings"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/mailhaul/mailhaul/internal/imapconn"
	"github.com/mailhaul/mailhaul/migrate"
)

// Finding the copies of uncertain appends (migrate.Finder) and removing a
// duplicate this run made itself (migrate.Remover).

// Mark implements migrate.Finder: "uidvalidity:uid" with uid no higher
// than the folder's UIDNEXT, from what Prepare's SELECT and the APPENDUIDs
// since returned (no round trip); a folder the sink has not selected is
// asked with STATUS. Called by appenders once per batch.
func (s *IMAP) Mark(ctx context.Context, folder string) (string, error) {
	s.mu.Lock()
	fi := s.folders[folder]
	var mark string
	if fi != nil && fi.uidNext > 0 {
		mark = fmt.Sprintf("%d:%d", fi.uidValidity, fi.uidNext)
	}
	s.mu.Unlock()
	if mark != "" {
		return mark, nil
	}
	c, err := s.pool.Get(ctx)
	if err != nil {
		return "", err
	}
	var st *imap.StatusData
	err = c.Do(ctx, func() error {
		var err error
		st, err = c.Status(folder, &imap.StatusOptions{UIDNext: true, UIDValidity: true}).Wait()
		return err
	})
	s.pool.Release(c, err)
	if err != nil {
		return "", imapconn.Classify(fmt.Errorf("IMAP destination %s: STATUS %q: %w", s.cfg.Addr(), folder, err))
	}
	return fmt.Sprintf("%d:%d", st.UIDValidity, st.UIDNext), nil
}

// Locate implements migrate.Finder. In one examined (read-only) pass over
// folder above the lowest mark of ins it fetches UID, RFC822.SIZE and the
// Message-ID header of every message; candidates are those with an
// intent's Message-ID (or, for an intent without one, none) and its size;
// their bodies are then fetched (BODY.PEEK[], nothing is marked read) and
// a candidate counts only if its CRLF form hashes to the intent's. A
// folder that no longer exists holds no copy; one that is listed but
// cannot be examined now (NO [UNAVAILABLE], a lock) is a retryable error,
// never "no copy". Called by the engine, one call at a time.
func (s *IMAP) Locate(ctx context.Context, folder string, ins []migrate.Intent) ([][]string, error) {
	c, err := s.pool.Get(ctx)
	if err != nil {
		return nil, err
	}
	res, err := s.locate(ctx, c, folder, ins)
	s.pool.Release(c, err)
	if err != nil {
		return nil, fmt.Errorf("IMAP destination %s folder %q: %w", s.cfg.Addr(), folder, err)
	}
	return res, nil
}

func (s *IMAP) locate(ctx context.Context, c *imapconn.Conn, folder string, ins []migrate.Intent) ([][]string, error) {
	out := make([][]string, len(ins))
	data, fresh, err := s.examine(ctx, c, folder)
	if err != nil || data == nil {
		return out, err
	}
	// The lowest mark that belongs to this UIDVALIDITY; any other (the
	// folder was re-created) means searching the whole folder.
	from := imap.UID(0)
	for _, in := range ins {
		u := imap.UID(1)
		if v, n, ok := strings.Cut(in.Mark, ":"); ok {
			if uv, err := strconv.ParseUint(v, 10, 32); err == nil && uint32(uv) == data.UIDValidity {
				if x, err := strconv.ParseUint(n, 10, 32); err == nil && x > 0 {
					u = imap.UID(x)
				}
			}
		}
		if from == 0 || u < from {
			from = u
		}
	}
	if fresh && (data.NumMessages == 0 || (data.UIDNext != 0 && from >= data.UIDNext)) {
		return out, nil
	}
	byMID := map[string][]int{}
	var noMID []int
	for i, in := range ins {
		if mid := normMID(in.MessageID); mid != "" {
			byMID[mid] = append(byMID[mid], i)
		} else {
			noMID = append(noMID, i)
		}
	}
	sizeFits := func(in migrate.Intent, size int64, hasMID bool) bool {
		if size == in.StoredSize() || size == in.Size {
			return true
		}
		// Copies recorded before intents knew their CRLF form were sent
		// as they were; a server may count a bare LF as CRLF.
		return hasMID && in.CRLFSHA256 == "" && size > in.Size && size <= 2*in.Size+2
	}
	cand := map[imap.UID][]int{} // uid -> intents it may be a copy of
	var uids []imap.UID
	err = c.Do(ctx, func() error {
		set := imap.UIDSet{imap.UIDRange{Start: from, Stop: 0}}
		cmd := c.Fetch(set, &imap.FetchOptions{UID: true, RFC822Size: true,
			BodySection: []*imap.FetchItemBodySection{messageIDHeader}})
		return imapconn.CollectEach(c, cmd, set, func(buf *imapclient.FetchMessageBuffer) {
			if buf.UID < from {
				return // "from:*" includes the highest UID even below from
			}
			var mid string
			for _, bs := range buf.BodySection {
				mid = normMID(migrate.MessageIDFromHeader(bs.Bytes))
			}
			var idx []int
			if mid != "" {
				for _, i := range byMID[mid] {
					if sizeFits(ins[i], buf.RFC822Size, true) {
						idx = append(idx, i)
					}
				}
			} else {
				for _, i := range noMID {
					if sizeFits(ins[i], buf.RFC822Size, false) {
						idx = append(idx, i)
					}
				}
			}
			if len(idx) > 0 {
				cand[buf.UID] = idx
				uids = append(uids, buf.UID)
			}
		})
	})
	if err != nil {
		return nil, imapconn.Classify(fmt.Errorf("fetch headers above UID %d: %w", from, err))
	}
	if len(uids) == 0 {
		return out, nil
	}
	sums, err := s.hashUIDs(ctx, c, folder, data.UIDValidity, uids)
	if err != nil {
		return nil, err
	}
	sort.Slice(uids, func(i, j int) bool { return uids[i] < uids[j] })
	for _, u := range uids {
		h := sums[u]
		for _, i := range cand[u] {
			in := ins[i]
			if h.crlf == in.StoredSHA256() || h.raw == in.SHA256 || h.lf == in.SHA256 {
				out[i] = append(out[i], makeRef(data.UIDValidity, u, folder))
			}
		}
	}
	return out, nil
}

var messageIDHeader = &imap.FetchItemBodySection{Specifier: imap.PartSpecifierHeader, HeaderFields: []string{"Message-ID"}, Peek: true}

// normMID is the form Message-IDs are compared in: without angle brackets
// and surrounding space.
func normMID(mid string) string {
	return strings.TrimSpace(strings.Trim(strings.TrimSpace(mid), "<>"))
}

// examine makes folder selected on c (read-only unless it already is
// selected, e.g. by appends on a server without UIDPLUS) and returns what
// SELECT said, fresh when it was said now (a selection kept from earlier
// has a stale message count and UIDNEXT); nil data when the folder does
// not exist.
func (s *IMAP) examine(ctx context.Context, c *imapconn.Conn, folder string) (data *imap.SelectData, fresh bool, err error) {
	if c.Selected == folder && c.SelectData != nil {
		// A selection kept from earlier sees messages other connections
		// appended only once the server has announced them (Dovecot and
		// imapserver do so after a command): NOOP first.
		if err := c.Do(ctx, func() error { return c.Noop().Wait() }); err != nil {
			return nil, false, imapconn.Classify(fmt.Errorf("noop: %w", err))
		}
		return c.SelectData, false, nil
	}
	data, err = c.Select(ctx, folder, true)
	if err == nil {
		return data, true, nil
	}
	ie := imapconn.IMAPError(err)
	if ie == nil {
		return nil, false, imapconn.Classify(fmt.Errorf("examine: %w", err))
	}
	if ie.Code == imap.ResponseCodeNonExistent {
		return nil, false, nil
	}
	// A NO without [NONEXISTENT] may be transient ([UNAVAILABLE], a
	// lock, throttling): only a folder the server no longer lists is gone.
	var list []*imap.ListData
	lerr := c.Do(ctx, func() error {
		var err error
		list, err = c.List("", folder, nil).Collect()
		return err
	})
	if lerr != nil {
		return nil, false, imapconn.Classify(fmt.Errorf("examine: %v; list: %w", err, lerr))
	}
	for _, l := range list {
		if l.Mailbox == folder && !imapconn.HasAttr(l, imap.MailboxAttrNonExistent) && !imapconn.HasAttr(l, imap.MailboxAttrNoSelect) {
			return nil, false, migrate.Retryable(fmt.Errorf("folder exists but cannot be examined now: %w", err))
		}
	}
	return nil, false, nil
}

type sums struct{ raw, crlf, lf string }

// hashUIDs fetches the bodies of uids (one pipelined UID FETCH) and returns
// the SHA-256 of each as sent, in CRLF form and with CRLF turned into LF.
//
// Hashes are kept (a message never changes under its UID and UIDVALIDITY):
// a Locate retried after a lost connection fetches only what it had not
// hashed yet, and an error after some bodies were hashed is
// migrate.Progressed (the retry is not counted), so a link that drops
// every few hundred kilobytes still gets through a lookup of megabytes.
func (s *IMAP) hashUIDs(ctx context.Context, c *imapconn.Conn, folder string, uidValidity uint32, uids []imap.UID) (map[imap.UID]sums, error) {
	out := map[imap.UID]sums{}
	var todo []imap.UID
	s.mu.Lock()
	for _, u := range uids {
		if h, ok := s.hashes[makeRef(uidValidity, u, folder)]; ok {
			out[u] = h
		} else {
			todo = append(todo, u)
		}
	}
	s.mu.Unlock()
	if len(todo) == 0 {
		return out, nil
	}
	section := &imap.FetchItemBodySection{Peek: true}
	hashed := 0
	keep := func(uid imap.UID, sw *sumWriter) {
		sm := sw.sums()
		out[uid] = sm
		s.mu.Lock()
		s.hashes[makeRef(uidValidity, uid, folder)] = sm
		s.mu.Unlock()
		hashed++
	}
	err := c.Do(ctx, func() error {
		set := imap.UIDSetNum(todo...)
		cmd := c.Fetch(set, &imap.FetchOptions{UID: true, BodySection: []*imap.FetchItemBodySection{section}})
		for {
			msg := cmd.Next()
			if msg == nil {
				break
			}
			var uid imap.UID
			sw := newSumWriter()
			got := false
			for {
				item := msg.Next()
				if item == nil {
					break
				}
				switch it := item.(type) {
				case imapclient.FetchItemDataUID:
					uid = it.UID
				case imapclient.FetchItemDataBodySection:
					if it.Literal == nil {
						continue
					}
					if _, err := imapconn.ReadLiteral(c, cmd, sw, it.Literal); err != nil {
						return err // the connection is closed: no cmd.Close
					}
					got = true
				}
			}
			if uid != 0 && got {
				keep(uid, sw)
			}
		}
		// With the responses whose UID came after their body (orphans.go).
		taken, err := imapconn.CloseFetch(c, cmd, set)
		defer imapconn.DropOrphans(taken)
		if err != nil {
			return err
		}
		for _, o := range taken {
			if r, _, ok := o.Section(imapconn.WholeBody(nil)); ok {
				if _, seen := out[o.UID]; !seen {
					sw := newSumWriter()
					if _, err := io.Copy(sw, r); err == nil {
						keep(o.UID, sw)
					}
				}
			}
		}
		return nil
	})
	if err != nil {
		err = imapconn.Classify(fmt.Errorf("fetch %d messages to compare (%d read before the error, %d earlier): %w", len(todo), hashed, len(uids)-len(todo), err))
		if hashed > 0 && migrate.Classify(err) == migrate.Retry {
			err = migrate.Progressed(err)
		}
		return nil, err
	}
	return out, nil
}

// sumWriter computes the sums of a destination copy as it is written.
type sumWriter struct {
	io.Writer
	h, hc, hl hash.Hash // the bytes; their comparison form; with CRLF as LF
}

func newSumWriter() *sumWriter {
	w := &sumWriter{h: sha256.New(), hc: sha256.New(), hl: sha256.New()}
	w.Writer = io.MultiWriter(w.h, migrate.CompareWriter(w.hc), &crlfToLF{w: w.hl})
	return w
}

func (w *sumWriter) sums() sums {
	return sums{hex.EncodeToString(w.h.Sum(nil)), hex.EncodeToString(w.hc.Sum(nil)), hex.EncodeToString(w.hl.Sum(nil))}
}

// crlfToLF writes its input with CRLF replaced by LF.
type crlfToLF struct {
	w  io.Writer
	cr bool // previous chunk ended in CR (held back)
}

func (c *crlfToLF) Write(p []byte) (int, error) {
	out := make([]byte, 0, len(p)+1)
	for _, b := range p {
		if c.cr {
			c.cr = false
			if b != '\n' {
				out = append(out, '\r')
			}
		}
		if b == '\r' {
			c.cr = true
			continue
		}
		out = append(out, b)
	}
	if _, err := c.w.Write(out); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Remove implements migrate.Remover: UID STORE +FLAGS.SILENT (\Deleted)
// and UID EXPUNGE of exactly the copy ref names, after checking that the
// folder's UIDVALIDITY is still the ref's. Without UIDPLUS (no UID
// EXPUNGE) it returns migrate.ErrCannotRemove: a plain EXPUNGE would also
// remove every other message flagged \Deleted.
func (s *IMAP) Remove(ctx context.Context, folder, ref string) error {
	v, uid, _, ok := parseRef(ref)
	if !ok || uid == 0 {
		return fmt.Errorf("IMAP destination %s: cannot remove copy %q: no UID", s.cfg.Addr(), ref)
	}
	if !s.metaNow().uidPlus() {
		return migrate.ErrCannotRemove
	}
	c, err := s.pool.Get(ctx)
	if err != nil {
		return err
	}
	err = func() error {
		data, err := c.Select(ctx, folder, false)
		if err != nil {
			return err
		}
		if data.UIDValidity != v {
			return migrate.SkipMessage(fmt.Errorf("folder %q was re-created (UIDVALIDITY %d, copy recorded under %d)", folder, data.UIDValidity, v))
		}
		set := imap.UIDSetNum(uid)
		return c.Do(ctx, func() error {
			if err := c.Store(set, &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close(); err != nil {
				return err
			}
			return c.UIDExpunge(set).Close()
		})
	}()
	c.Selected = "" // selection state changed under the cached one
	s.pool.Release(c, err)
	if err != nil {
		return imapconn.Classify(fmt.Errorf("IMAP destination %s folder %q: remove UID %d: %w", s.cfg.Addr(), folder, uid, err))
	}
	return nil
}
