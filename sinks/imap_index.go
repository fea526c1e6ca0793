package sinks

import (
	"context"
	"fmt"

	"github.com/emersion/go-imap/v2"

	"github.com/mailhaul/mailhaul/internal/imapconn"
	"github.com/mailhaul/mailhaul/migrate"
)

// Index implements migrate.Indexer for --dedupe: the Message-ID and
// RFC822.SIZE of every message in folder, streamed from one
// FETCH 1:* (RFC822.SIZE BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]) on an
// examined (read-only) folder. Called from the lister goroutine.
func (s *IMAP) Index(ctx context.Context, folder string, fn func(string, int64) error) error {
	c, err := s.pool.Get(ctx)
	if err != nil {
		return err
	}
	err = s.index(ctx, c, folder, fn)
	s.pool.Release(c, err)
	if err != nil {
		return imapconn.Classify(fmt.Errorf("IMAP destination %s: read folder %q: %w", s.cfg.Addr(), folder, err))
	}
	return nil
}

func (s *IMAP) index(ctx context.Context, c *imapconn.Conn, folder string, fn func(string, int64) error) error {
	data, err := c.Select(ctx, folder, true)
	if err != nil || data.NumMessages == 0 {
		return err
	}
	section := &imap.FetchItemBodySection{Specifier: imap.PartSpecifierHeader, HeaderFields: []string{"Message-ID"}, Peek: true}
	var fnErr error
	err = c.Do(ctx, func() error {
		all := imap.SeqSet{}
		all.AddRange(1, 0)
		cmd := c.Fetch(all, &imap.FetchOptions{RFC822Size: true, BodySection: []*imap.FetchItemBodySection{section}})
		for {
			m := cmd.Next()
			if m == nil {
				break
			}
			buf, err := imapconn.Collect(c, m)
			if err != nil {
				return err
			}
			mid := ""
			for _, bs := range buf.BodySection {
				mid = migrate.MessageIDFromHeader(bs.Bytes)
			}
			if fnErr == nil {
				fnErr = fn(mid, buf.RFC822Size)
			}
		}
		return cmd.Close()
	})
	if err != nil {
		return err
	}
	return fnErr
}
