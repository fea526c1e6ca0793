package sinks

import (
	"context"
	"fmt"

	"github.com/emersion/go-imap/v2"

	"github.com/mailhaul/mailhaul/internal/imapconn"
)

// Verify implements migrate.Verifier: one EXAMINE of folder and one
// UID FETCH BODY.PEEK[] of the UIDs the refs name, hashed as they arrive
// (hashUIDs, which also serves Locate). A ref of another UIDVALIDITY or
// folder, or a UID the server no longer has, is false. Only a copy's
// bytes as stored count (the raw SHA-256, which decides alone: sizes is
// not needed): a copy whose line endings were converted on the way is not
// the source's bytes. Nor is a copy marked \Deleted (one UID SEARCH after
// the FETCH): it is waiting to be expunged, and the source message must
// not go with it.
func (s *IMAP) Verify(ctx context.Context, folder string, refs []string, _ []int64, sums []string) ([]bool, error) {
	out := make([]bool, len(refs))
	c, err := s.pool.Get(ctx)
	if err != nil {
		return nil, err
	}
	err = func() error {
		data, _, err := s.examine(ctx, c, folder)
		if err != nil || data == nil {
			return err
		}
		var uids []imap.UID
		for _, ref := range refs {
			if v, u, f, ok := parseRef(ref); ok && v == data.UIDValidity && f == folder {
				uids = append(uids, u)
			}
		}
		if len(uids) == 0 {
			return nil
		}
		// Read back now, not from the hashes Locate kept: a copy
		// expunged since must not be confirmed.
		s.mu.Lock()
		for _, u := range uids {
			delete(s.hashes, makeRef(data.UIDValidity, u, folder))
		}
		s.mu.Unlock()
		got, err := s.hashUIDs(ctx, c, folder, data.UIDValidity, uids)
		if err != nil {
			return err
		}
		deleted, err := s.deletedUIDs(ctx, c, uids)
		if err != nil {
			return err
		}
		for i, ref := range refs {
			v, u, f, ok := parseRef(ref)
			h, have := got[u]
			out[i] = ok && have && !deleted[u] && v == data.UIDValidity && f == folder && h.raw == sums[i]
		}
		return nil
	}()
	s.pool.Release(c, err)
	if err != nil {
		return nil, fmt.Errorf("IMAP destination %s folder %q: read back copies: %w", s.cfg.Addr(), folder, err)
	}
	return out, nil
}

// deletedUIDs returns which of uids, in the selected folder, are flagged
// \Deleted (UID SEARCH UID set DELETED).
func (s *IMAP) deletedUIDs(ctx context.Context, c *imapconn.Conn, uids []imap.UID) (map[imap.UID]bool, error) {
	var found []imap.UID
	err := c.Do(ctx, func() error {
		crit := &imap.SearchCriteria{UID: []imap.UIDSet{imap.UIDSetNum(uids...)}, Flag: []imap.Flag{imap.FlagDeleted}}
		data, err := c.UIDSearch(crit, nil).Wait()
		if err != nil {
			return imapconn.Classify(fmt.Errorf("uid search deleted: %w", err))
		}
		found = data.AllUIDs()
		return nil
	})
	if err != nil {
		return nil, err
	}
	out := make(map[imap.UID]bool, len(found))
	for _, u := range found {
		out[u] = true
	}
	return out, nil
}
