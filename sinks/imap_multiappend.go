package sinks

import (
	"context"
	"errors"
	"fmt"

	"github.com/emersion/go-imap/v2"

	"github.com/mailhaul/mailhaul/internal/imapconn"
	"github.com/mailhaul/mailhaul/migrate"
)

// Batches of appends (migrate.BatchSink): one MULTIAPPEND (RFC 3502) per
// batch, which the server stores in one transaction. See
// internal/imapconn/multiappend.go for the command and why it pays.

// Batch bounds: a batch is at most this many messages and bytes (a lost
// connection makes the whole batch uncertain, to be looked up again).
const (
	MaxBatch      = 32
	MaxBatchBytes = 8 << 20
)

// errBatchRefused makes the engine append a refused batch's messages one
// by one, which says which of them the server refuses and why.
var errBatchRefused = errors.New("the server refused the batch; appending its messages one by one")

// BatchLimits implements migrate.BatchSink: batches need MULTIAPPEND,
// LITERAL+ (the further literals of the command are non-synchronising)
// and UIDPLUS (the UIDs of the copies).
func (s *IMAP) BatchLimits() (int, int64) {
	m := s.metaNow()
	if s.cfg.NoLiteralPlus || !m.uidPlus() || !m.caps.Has(imap.Cap("MULTIAPPEND")) || !m.caps.Has(imap.CapLiteralPlus) {
		return 0, 0
	}
	return MaxBatch, MaxBatchBytes
}

// AppendBatch implements migrate.BatchSink; called concurrently by
// appenders, on the connections Append uses. A message with NUL bytes
// (literal8) or above APPENDLIMIT is handled as Append would, on its own,
// in its place among the others (the batch's order is kept).
func (s *IMAP) AppendBatch(ctx context.Context, folder string, msgs []migrate.Message, bodies []*migrate.Body) ([]string, []error) {
	refs, errs := make([]string, len(msgs)), make([]error, len(msgs))
	fail := func(err error) ([]string, []error) {
		for i := range errs {
			if errs[i] == nil && refs[i] == "" {
				errs[i] = fmt.Errorf("IMAP destination %s folder %q: %w", s.cfg.Addr(), folder, err)
			}
		}
		return refs, errs
	}
	sc, err := s.acquire(ctx, folder)
	if err != nil {
		return fail(err)
	}
	// In the batch's order (the source's storage order): runs of
	// messages in one MULTIAPPEND each, a message that needs its own
	// APPEND where it stands.
	var last error
	var run []int
	flush := func() {
		switch len(run) {
		case 0:
		case 1:
			i := run[0]
			refs[i], errs[i] = s.appendOn(ctx, sc.Conn, folder, msgs[i], bodies[i], true)
			last = errs[i]
		default:
			last = s.multiAppendOn(ctx, sc.Conn, folder, run, msgs, bodies, refs, errs, true)
		}
		run = nil
	}
	for i, b := range bodies {
		if b.HasNUL() || !sc.Conn.CanMultiAppend() {
			flush()
			refs[i], errs[i] = s.appendOn(ctx, sc.Conn, folder, msgs[i], b, true)
			last = errs[i]
			continue
		}
		run = append(run, i)
	}
	flush()
	s.shared.Release(sc, last)
	for i := range errs {
		if errs[i] != nil {
			errs[i] = fmt.Errorf("IMAP destination %s folder %q: %w", s.cfg.Addr(), folder, errs[i])
		}
	}
	return refs, errs
}

// multiAppendOn sends msgs[idx] in one MULTIAPPEND on c and fills refs and
// errs for them; it returns the error that decides whether c is kept.
func (s *IMAP) multiAppendOn(ctx context.Context, c *imapconn.Conn, folder string, idx []int, msgs []migrate.Message, bodies []*migrate.Body, refs []string, errs []error, mayCreate bool) error {
	m := s.metaNow()
	fi, err := s.folder(ctx, c, folder)
	if err != nil {
		for _, i := range idx {
			errs[i] = err
		}
		return err
	}
	var items []imapconn.MultiItem
	var send []int
	for _, i := range idx {
		size := bodies[i].CRLFSize()
		if m.appendLimit > 0 && size > m.appendLimit {
			errs[i] = migrate.SkipMessage(fmt.Errorf("message of %d bytes exceeds the server's APPENDLIMIT of %d bytes", size, m.appendLimit))
			continue
		}
		items = append(items, imapconn.MultiItem{Flags: s.flagsFor(folder, fi, msgs[i]), Date: msgs[i].Date, Size: size, Body: bodies[i].CRLFReader()})
		send = append(send, i)
	}
	if len(send) == 0 {
		return nil
	}
	if len(send) == 1 {
		i := send[0]
		refs[i], errs[i] = s.appendOn(ctx, c, folder, msgs[i], bodies[i], mayCreate)
		return errs[i]
	}
	var res imapconn.MultiResult
	sent := false
	err = c.Do(ctx, func() error {
		sent = true
		var err error
		res, err = c.MultiAppend(folder, items)
		return err
	})
	set := func(e error) error {
		for _, i := range send {
			errs[i] = e
		}
		return e
	}
	if err != nil {
		out, retry, refused := s.appendFailure(ctx, c, folder, err, sent, mayCreate, fmt.Sprintf("append %d messages in one MULTIAPPEND", len(send)))
		switch {
		case retry:
			for _, i := range send {
				errs[i] = nil
			}
			return s.multiAppendOn(ctx, c, folder, send, msgs, bodies, refs, errs, false)
		case refused != nil:
			// Refused as a whole: nothing is stored.
			set(migrate.Retryable(fmt.Errorf("%w: %v", errBatchRefused, err)))
			return nil
		}
		return set(out)
	}
	s.stored()
	if len(res.UIDs) != len(send) {
		// No usable APPENDUID: find each copy as without UIDPLUS.
		s.mu.Lock()
		before := fi.uidNext
		s.mu.Unlock()
		for _, i := range send {
			refs[i], errs[i] = s.identify(ctx, c, folder, fi, before, bodies[i])
		}
		return nil
	}
	for k, i := range send {
		refs[i] = makeRef(res.UIDValidity, res.UIDs[k], folder)
	}
	s.noteUID(fi, res.UIDs[len(res.UIDs)-1])
	return nil
}
