package sinks

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/mailhaul/mailhaul/internal/maildir"
	"github.com/mailhaul/mailhaul/migrate"
)

// IndexBodies implements migrate.BodyIndexer for --dedupe: Message-ID,
// size and body length of every message in folder (cur/ and new/). Unlike
// Index it reads each file whole, to count its line ends; a local disk
// reads a folder of some GiB in seconds. Called from the lister goroutine.
func (s *Maildir) IndexBodies(ctx context.Context, folder string, fn func(string, int64, int64) error) error {
	head, chunk := make([]byte, 256<<10), make([]byte, 64<<10)
	return s.eachMessage(ctx, folder, func(p string) error {
		mid, size, body, err := bodyInfo(p, head, chunk)
		if err != nil {
			return nil // vanished or unreadable: it cannot be a duplicate we rely on
		}
		return fn(mid, size, body)
	})
}

// bodyInfo reads the file at p: Message-ID, size, body length. head
// holds the first bytes (the header), the rest streams through chunk.
func bodyInfo(p string, head, chunk []byte) (string, int64, int64, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", 0, 0, err
	}
	defer f.Close()
	n, err := io.ReadFull(f, head)
	if err != nil && err != io.ErrUnexpectedEOF && err != io.EOF {
		return "", 0, 0, err
	}
	head = head[:n]
	size, crlf := int64(n), migrate.CRLFLen(head)
	last := byte(0)
	if n > 0 {
		last = head[n-1]
	}
	for n == cap(head) {
		m, err := f.Read(chunk)
		if m > 0 {
			size += int64(m)
			crlf += migrate.CRLFLen(chunk[:m])
			if last == '\r' && chunk[0] == '\n' {
				crlf-- // a CRLF split between reads was counted as a bare LF
			}
			last = chunk[m-1]
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return "", 0, 0, err
		}
	}
	mid := migrate.MessageIDFromHeader(head)
	h := migrate.HeaderEnd(head)
	if h < 0 {
		return mid, size, -1, nil
	}
	return mid, size, crlf - migrate.CRLFLen(head[:h]), nil
}

// Folders implements migrate.FolderLister for --dedupe-across-folders:
// every folder of the tree. Called from the lister goroutine.
func (s *Maildir) Folders(ctx context.Context) ([]string, error) {
	fs, _, err := maildir.Folders(s.root, s.layout)
	if err != nil {
		return nil, fmt.Errorf("maildir destination %s: %w", s.root, err)
	}
	var out []string
	for _, f := range fs {
		out = append(out, f.Name)
	}
	return out, nil
}

var (
	_ migrate.BodyIndexer  = (*Maildir)(nil)
	_ migrate.FolderLister = (*Maildir)(nil)
)
