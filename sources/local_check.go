package sources

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"

	"github.com/mailhaul/mailhaul/migrate"
)

// What `mailhaul check` (migrate.Check) asks of the local sources beyond
// migrate.Source: the header of a message without its body. Maildir reads
// the start of the file; mbox reads the message through Fetch and stops
// at the end of its header. Neither changes anything.

// Headers implements migrate.HeaderReader: the start of each file up to
// the end of its header (at most migrate.HeaderLimit bytes), read in
// small steps. A file that is gone and not found again under its unique
// name, or that is not a regular file or cannot be read, is left out
// (Check then calls the message unreadable). Safe for concurrent use.
func (s *Maildir) Headers(ctx context.Context, msgs []migrate.Message, fn func(int, []byte) error) error {
	buf := make([]byte, 0, 8<<10)
	for i, m := range msgs {
		if err := ctx.Err(); err != nil {
			return err
		}
		p := m.Loc
		fi, err := os.Stat(p)
		if errors.Is(err, os.ErrNotExist) {
			if q := s.relocate(m); q != "" {
				p = q
				fi, err = os.Stat(p)
			}
		}
		// Checked before opening: opening a FIFO would block forever.
		if err != nil || !fi.Mode().IsRegular() {
			continue
		}
		h, err := readHeader(p, buf[:0])
		if err != nil {
			continue
		}
		buf = h
		if err := fn(i, append([]byte(nil), h...)); err != nil {
			return err
		}
	}
	return nil
}

// readHeader reads the file at p up to the end of its header (at most
// migrate.HeaderLimit bytes), appending to buf.
func readHeader(p string, buf []byte) ([]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var chunk [4 << 10]byte
	for len(buf) < migrate.HeaderLimit {
		n, err := f.Read(chunk[:])
		buf = append(buf, chunk[:n]...)
		if e := migrate.HeaderEnd(buf); e >= 0 {
			return buf[:e], nil
		}
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return nil, err
		}
	}
	return buf[:migrate.HeaderLimit], nil
}

// errHeaderRead stops an mbox Fetch once the header has been seen.
var errHeaderRead = errors.New("header read")

// headerStop keeps what is written to it up to the end of the header (at
// most migrate.HeaderLimit bytes), then fails with errHeaderRead.
type headerStop struct{ b []byte }

func (h *headerStop) Write(p []byte) (int, error) {
	h.b = append(h.b, p[:min(len(p), migrate.HeaderLimit-len(h.b))]...)
	if e := migrate.HeaderEnd(h.b); e >= 0 {
		h.b = h.b[:e]
		return 0, errHeaderRead
	}
	if len(h.b) >= migrate.HeaderLimit {
		return 0, errHeaderRead
	}
	return len(p), nil
}

// Headers implements migrate.HeaderReader: each message is read through
// Fetch (from its offset, unquoted) only up to the end of its header.
// Messages that cannot be read (gone, junk, the file changed since List)
// are left out. Safe for concurrent use (each Fetch opens the file).
func (s *Mbox) Headers(ctx context.Context, msgs []migrate.Message, fn func(int, []byte) error) error {
	for i, m := range msgs {
		if err := ctx.Err(); err != nil {
			return err
		}
		h := &headerStop{}
		err := s.Fetch(ctx, m, h)
		if err != nil && !errors.Is(err, errHeaderRead) {
			if migrate.Classify(err) == migrate.Skip {
				continue
			}
			return err
		}
		if err := fn(i, bytes.Clone(h.b)); err != nil {
			return err
		}
	}
	return nil
}

// ListsConcurrently implements migrate.ConcurrentLister: List reads one
// folder's directories and shares nothing but the folder table written by
// Mailboxes.
func (s *Maildir) ListsConcurrently() {}

var (
	_ migrate.ConcurrentLister = (*Maildir)(nil)
	_ migrate.HeaderReader     = (*Maildir)(nil)
	_ migrate.HeaderReader     = (*Mbox)(nil)
)
