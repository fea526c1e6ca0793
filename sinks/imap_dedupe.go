package sinks

import (
	"context"
	"fmt"
	"strings"

	"github.com/emersion/go-imap/v2"

	"github.com/mailhaul/mailhaul/internal/imapconn"
	"github.com/mailhaul/mailhaul/migrate"
)

// IndexBodies implements migrate.BodyIndexer for --dedupe: Message-ID,
// RFC822.SIZE and body length of every message in folder, from one
// FETCH 1:* (RFC822.SIZE BODY.PEEK[HEADER]) on the examined folder. The
// body length is RFC822.SIZE (which counts line ends as CRLF, RFC 3501)
// minus the CRLF length of the header. Costs the headers of the folder
// (a few KiB per message), read once per run. Called from the lister
// goroutine.
func (s *IMAP) IndexBodies(ctx context.Context, folder string, fn func(string, int64, int64) error) error {
	c, err := s.pool.Get(ctx)
	if err != nil {
		return err
	}
	err = s.indexBodies(ctx, c, folder, fn)
	s.pool.Release(c, err)
	if err != nil {
		return imapconn.Classify(fmt.Errorf("IMAP destination %s: read folder %q: %w", s.cfg.Addr(), folder, err))
	}
	return nil
}

func (s *IMAP) indexBodies(ctx context.Context, c *imapconn.Conn, folder string, fn func(string, int64, int64) error) error {
	data, err := c.Select(ctx, folder, true)
	if err != nil || data.NumMessages == 0 {
		return err
	}
	section := &imap.FetchItemBodySection{Specifier: imap.PartSpecifierHeader, Peek: true}
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
				return err // the connection is closed: no cmd.Close
			}
			hdr := buf.FindBodySection(section)
			if fnErr == nil {
				fnErr = fn(migrate.MessageIDFromHeader(hdr), buf.RFC822Size, migrate.BodyLenOf(hdr, buf.RFC822Size))
			}
		}
		return cmd.Close()
	})
	if err != nil {
		return err
	}
	return fnErr
}

// Folders implements migrate.FolderLister for --dedupe-across-folders:
// every selectable folder (server names, under the endpoint's folder if
// the URL has one). Called from the lister goroutine.
func (s *IMAP) Folders(ctx context.Context) ([]string, error) {
	c, err := s.pool.Get(ctx)
	if err != nil {
		return nil, err
	}
	var list []*imap.ListData
	err = c.Do(ctx, func() error {
		var err error
		list, err = c.List("", "*", nil).Collect()
		return err
	})
	s.pool.Release(c, err)
	if err != nil {
		return nil, imapconn.Classify(fmt.Errorf("IMAP destination %s: LIST: %w", s.cfg.Addr(), err))
	}
	s.mu.Lock()
	under, delim := s.prefixTo, string(s.meta.delim)
	s.mu.Unlock()
	var out []string
	for _, l := range list {
		if imapconn.HasAttr(l, imap.MailboxAttrNoSelect) || imapconn.HasAttr(l, imap.MailboxAttrNonExistent) {
			continue
		}
		if under != "" && l.Mailbox != under && !strings.HasPrefix(l.Mailbox, under+delim) {
			continue
		}
		out = append(out, l.Mailbox)
	}
	return out, nil
}

var (
	_ migrate.BodyIndexer  = (*IMAP)(nil)
	_ migrate.FolderLister = (*IMAP)(nil)
)
