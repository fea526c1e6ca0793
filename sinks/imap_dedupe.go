package sinks

import (
	"context"
	"fmt"
	"strings"
	"time"

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
	section := &imap.FetchItemBodySection{Specifier: imap.PartSpecifierHeader, Peek: true}
	return s.scanHeaders(ctx, folder, section, false, func(hdr []byte, size int64, _ time.Time, _ uint32, _ imap.UID) error {
		return fn(migrate.MessageIDFromHeader(hdr), size, migrate.BodyLenOf(hdr, size))
	})
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
