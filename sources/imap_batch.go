package sources

import (
	"context"
	"io"
	"strconv"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/mailhaul/mailhaul/internal/imapconn"
	"github.com/mailhaul/mailhaul/migrate"
)

// FetchBatch implements migrate.BatchFetcher: one UID FETCH BODY.PEEK[] of
// the messages' UIDs (all of one folder), each literal streamed into its
// message's writer as it arrives. Called from the fetcher goroutines,
// concurrently, on the folder's shared connections (as Fetch).
//
// It never classifies an error: whatever goes wrong (a refused or cut
// FETCH, a message the server does not send, a writer that fails) leaves
// the messages not yet delivered to the engine's one-by-one Fetch, which
// classifies and retries them as it does any message. A message whose
// literal the connection went down in (or whose writer failed: the
// stream is abandoned mid-literal either way) is marked a suspect, so that
// its next fetch runs alone (see fetchPart). A message a previous fetch marked
// so is left out of the batch for the same reason.
//
// A response whose body comes before its UID reaches no command (go-imap
// reads the UID first to know whose it is): the connection keeps it, and
// it is delivered from there once the command has ended (orphans.go).
func (s *IMAP) FetchBatch(ctx context.Context, msgs []migrate.Message, ws []io.Writer) []bool {
	done := make([]bool, len(msgs))
	if len(msgs) == 0 {
		return done
	}
	folder := s.folderOf(msgs[0])
	index := make(map[imap.UID]int, len(msgs))
	var set imap.UIDSet
	for i, m := range msgs {
		uid, err := strconv.ParseUint(m.ID, 10, 32)
		if err != nil || uid == 0 || m.Loc != msgs[0].Loc || m.Mailbox != msgs[0].Mailbox || s.isSuspect(folder, imap.UID(uid)) {
			continue
		}
		if _, dup := index[imap.UID(uid)]; dup {
			continue
		}
		index[imap.UID(uid)] = i
		set.AddNum(imap.UID(uid))
	}
	if len(index) == 0 {
		return done
	}
	epoch := s.epoch(folder)
	sc, err := s.acquire(ctx, folder, folder, epoch)
	if err != nil {
		return done
	}
	started := make([]bool, len(msgs))
	cutIn := imap.UID(0) // the message whose literal the connection went down in
	err = s.doShared(ctx, sc, func(c *imapconn.Conn) error {
		section := &imap.FetchItemBodySection{Peek: true}
		cmd := c.Fetch(set, &imap.FetchOptions{UID: true, BodySection: []*imap.FetchItemBodySection{section}})
		for m := cmd.Next(); m != nil; m = cmd.Next() {
			i, uid := -1, imap.UID(0)
			for item := m.Next(); item != nil; item = m.Next() {
				switch it := item.(type) {
				case imapclient.FetchItemDataUID:
					uid = it.UID
					if k, ok := index[it.UID]; ok {
						i = k
					}
				case imapclient.FetchItemDataBodySection:
					if it.Literal == nil {
						continue // NIL: left to Fetch
					}
					w := io.Discard
					if i >= 0 && !started[i] {
						started[i] = true
						w = ws[i]
					}
					if _, err := imapconn.ReadLiteral(c, cmd, w, it.Literal); err != nil {
						cutIn = uid
						return err // the connection is closed: no cmd.Close
					}
					if w != io.Discard {
						done[i] = true
					}
				}
			}
		}
		// With the responses whose UID came after their body (orphans.go).
		taken, err := imapconn.CloseFetch(c, cmd, set)
		defer imapconn.DropOrphans(taken)
		if err != nil {
			return err
		}
		for _, o := range taken {
			i := index[o.UID]
			if r, _, ok := o.Section(imapconn.WholeBody(nil)); ok && !started[i] {
				started[i] = true
				_, err := io.Copy(ws[i], r)
				done[i] = err == nil
			}
		}
		return nil
	})
	if cutIn != 0 && imapconn.IMAPError(err) == nil && ctx.Err() == nil {
		s.suspect(folder, cutIn)
	}
	if t := imapconn.Throttled(err); t != nil {
		s.shared.Throttled()
	}
	return done
}
