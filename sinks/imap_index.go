package sinks

import (
	"context"
	"fmt"
	"time"

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
	return s.scanHeaders(ctx, folder, section, false, func(hdr []byte, size int64, _ time.Time, _ uint32, _ imap.UID) error {
		return fn(migrate.MessageIDFromHeader(hdr), size)
	})
}

// IndexRefs implements migrate.RefIndexer: Index with the ref of each
// message ("uidvalidity:uid:folder", as Append returns it), from the same
// FETCH, leaving out the messages stored since this process first
// selected the folder (UID at or above the UIDNEXT it said then): this
// run's copies, even those whose APPEND has not returned yet. Called from
// the lister goroutine.
func (s *IMAP) IndexRefs(ctx context.Context, folder string, fn func(string, int64, time.Time, string) error) error {
	section := &imap.FetchItemBodySection{Specifier: imap.PartSpecifierHeader, HeaderFields: []string{"Message-ID"}, Peek: true}
	s.mu.Lock()
	var validity uint32
	var next imap.UID
	if fi := s.folders[folder]; fi != nil {
		validity, next = fi.uidValidity, fi.firstNext
	}
	s.mu.Unlock()
	return s.scanHeaders(ctx, folder, section, true, func(hdr []byte, size int64, date time.Time, uidValidity uint32, uid imap.UID) error {
		if next > 0 && uidValidity == validity && uid >= next {
			return nil
		}
		ref := ""
		if uid != 0 {
			ref = makeRef(uidValidity, uid, folder)
		}
		return fn(migrate.MessageIDFromHeader(hdr), size, date, ref)
	})
}

// scanHeaders examines folder and calls fn with section (a header
// section), RFC822.SIZE, the INTERNALDATE (with dated; else zero), the
// folder's UIDVALIDITY and the UID of every message, from one FETCH 1:*,
// on a connection of the pool. fn's first error stops the calls and is
// returned once the FETCH is over. Called from the lister goroutine.
func (s *IMAP) scanHeaders(ctx context.Context, folder string, section *imap.FetchItemBodySection, dated bool, fn func(hdr []byte, size int64, date time.Time, uidValidity uint32, uid imap.UID) error) error {
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
			cmd := c.Fetch(imap.SeqSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{UID: true, RFC822Size: true, InternalDate: dated, BodySection: []*imap.FetchItemBodySection{section}})
			return imapconn.CollectEach(c, cmd, nil, func(buf *imapclient.FetchMessageBuffer) {
				if fnErr == nil {
					fnErr = fn(buf.FindBodySection(section), buf.RFC822Size, buf.InternalDate, data.UIDValidity, buf.UID)
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
