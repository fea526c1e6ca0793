package sinks

import (
	"context"
	"fmt"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/mailhaul/mailhaul/internal/imapconn"
	"github.com/mailhaul/mailhaul/migrate"
)

// Index implements migrate.Indexer for --dedupe: the Message-ID and
// RFC822.SIZE of every message in folder, streamed from one
// FETCH 1:* (RFC822.SIZE BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]) on an
// examined (read-only) folder. Called from the lister goroutine.
func (s *IMAP) Index(ctx context.Context, folder string, fn func(string, int64) error) error {
	section := &imap.FetchItemBodySection{Specifier: imap.PartSpecifierHeader, HeaderFields: []string{"Message-ID"}, Peek: true}
	return s.scanHeaders(ctx, folder, section, func(hdr []byte, size int64) error {
		return fn(migrate.MessageIDFromHeader(hdr), size)
	})
}

// scanHeaders examines folder and calls fn with section (a header
// section) and RFC822.SIZE of every message, from one FETCH 1:*, on a
// connection of the pool. fn's first error stops the calls and is
// returned once the FETCH is over. Called from the lister goroutine.
func (s *IMAP) scanHeaders(ctx context.Context, folder string, section *imap.FetchItemBodySection, fn func(hdr []byte, size int64) error) error {
	c, err := s.pool.Get(ctx)
	if err != nil {
		return err
	}
	var fnErr error
	err = func() error {
		data, err := c.Select(ctx, folder, true)
		if err != nil || data.NumMessages == 0 {
			return err
		}
		return c.Do(ctx, func() error {
			cmd := c.Fetch(imap.SeqSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{RFC822Size: true, BodySection: []*imap.FetchItemBodySection{section}})
			return imapconn.CollectEach(c, cmd, nil, func(buf *imapclient.FetchMessageBuffer) {
				if fnErr == nil {
					fnErr = fn(buf.FindBodySection(section), buf.RFC822Size)
				}
			})
		})
	}()
	s.pool.Release(c, err)
	if err != nil {
		return imapconn.Classify(fmt.Errorf("IMAP destination %s: read folder %q: %w", s.cfg.Addr(), folder, err))
	}
	return fnErr
}
