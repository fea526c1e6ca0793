package sources

import (
	"context"
	"fmt"
	"strconv"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/mailhaul/mailhaul/internal/imapconn"
	"github.com/mailhaul/mailhaul/migrate"
)

// What `mailhaul check` (migrate.Check) asks of an IMAP account beyond
// migrate.Source, whether it is the source or the destination read as a
// source: the server's folder names, the few header fields shown for a
// missing or extra message, and the facts that List already reads every
// Message-ID and that sizes are in CRLF form. Like the rest of the
// source, nothing here changes the account (EXAMINE, BODY.PEEK).

// StoreName implements migrate.StoreNamer: the server's name of mb (with
// the namespace prefix and the server's delimiter), which is what the IMAP
// sink's Prepare and Resolve return and its refs hold.
func (s *IMAP) StoreName(mb migrate.Mailbox) string { return s.serverName(mb.Name) }

// ListsMessageIDs implements migrate.MessageIDLister: List fetches the
// Message-ID field of every message, so an empty Message.MessageID means
// the message has none.
func (s *IMAP) ListsMessageIDs() {}

// ListsConcurrently implements migrate.ConcurrentLister: each step of List
// takes a pool connection of its own.
func (s *IMAP) ListsConcurrently() {}

// CRLF implements migrate.CRLFSink for a source: sizes (RFC822.SIZE) and
// bytes (BODY[]) are in the CRLF form IMAP serves.
func (s *IMAP) CRLF() {}

// headerSection is BODY.PEEK[HEADER.FIELDS (MESSAGE-ID FROM SUBJECT DATE)].
var headerSection = &imap.FetchItemBodySection{Specifier: imap.PartSpecifierHeader, HeaderFields: migrate.CheckHeaderFields, Peek: true}

// Headers implements migrate.HeaderReader: for each batch of up to
// listBatch messages (all of one folder), on an examined folder, one UID
// FETCH of BODY.PEEK[HEADER.FIELDS (MESSAGE-ID FROM SUBJECT DATE)] — a
// round trip and about 200 bytes per message. A batch is retried on a new
// connection when one breaks. Messages expunged since List are left out.
// Safe for concurrent use: each batch takes a pool connection.
func (s *IMAP) Headers(ctx context.Context, msgs []migrate.Message, fn func(int, []byte) error) error {
	if len(msgs) == 0 {
		return nil
	}
	folder := msgs[0].Loc
	if folder == "" {
		folder = s.serverName(msgs[0].Mailbox)
	}
	epoch := s.epoch(folder)
	for start := 0; start < len(msgs); start += listBatch {
		end := min(start+listBatch, len(msgs))
		index := map[imap.UID]int{}
		var uids []imap.UID
		for i := start; i < end; i++ {
			u, err := strconv.ParseUint(msgs[i].ID, 10, 32)
			if err != nil {
				return migrate.SkipMessage(fmt.Errorf("IMAP source: bad message id %q", msgs[i].ID))
			}
			index[imap.UID(u)] = i
			uids = append(uids, imap.UID(u))
		}
		got := map[int][]byte{}
		err := imapconn.Retry(ctx, func() error {
			clear(got)
			return imapconn.Classify(s.withConn(ctx, func(c *imapconn.Conn) error {
				if _, err := s.examine(ctx, c, folder, epoch); err != nil {
					return err
				}
				return c.Do(ctx, func() error {
					set := imap.UIDSetNum(uids...)
					cmd := c.Fetch(set, &imap.FetchOptions{UID: true, BodySection: []*imap.FetchItemBodySection{headerSection}})
					return imapconn.CollectEach(c, cmd, set, func(buf *imapclient.FetchMessageBuffer) {
						if i, ok := index[buf.UID]; ok {
							for _, bs := range buf.BodySection {
								got[i] = bs.Bytes
							}
						}
					})
				})
			}))
		})
		if err != nil {
			return s.wrap(folder, "", err)
		}
		for i := start; i < end; i++ {
			if h, ok := got[i]; ok {
				if err := fn(i, h); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

var (
	_ migrate.HeaderReader     = (*IMAP)(nil)
	_ migrate.StoreNamer       = (*IMAP)(nil)
	_ migrate.MessageIDLister  = (*IMAP)(nil)
	_ migrate.CRLFSink         = (*IMAP)(nil)
	_ migrate.ConcurrentLister = (*IMAP)(nil)
)
