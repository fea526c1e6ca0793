package sinks

import (
	"context"
	"fmt"
	"io"

	"github.com/emersion/go-imap/v2"

	"github.com/mailhaul/mailhaul/internal/imapconn"
	"github.com/mailhaul/mailhaul/migrate"
)

// Append implements migrate.Sink; called concurrently by appenders.
// Appends to the same folder share a connection (up to AppendDepth
// pipelined on it), other folders get their own. A connection bound to a
// folder has that folder SELECTed (by its first user, before anyone shares
// it) and stays bound to it between messages (see imapconn.Shared), so
// the APPENDs go into the selected mailbox: Dovecot then saves into the
// open mailbox, whereas an APPEND to any other folder opens, syncs and
// closes that mailbox for every message (measured: about twice the
// server CPU, the bottleneck of an IMAP -> IMAP copy on a small server).
func (s *IMAP) Append(ctx context.Context, folder string, msg migrate.Message, body *migrate.Body) (string, error) {
	sc, err := s.acquire(ctx, folder)
	if err != nil {
		return "", fmt.Errorf("IMAP destination %s folder %q: %w", s.cfg.Addr(), folder, err)
	}
	ref, err := s.appendOn(ctx, sc.Conn, folder, msg, body, true)
	s.shared.Release(sc, err)
	if err != nil {
		return "", fmt.Errorf("IMAP destination %s folder %q: %w", s.cfg.Addr(), folder, err)
	}
	return ref, nil
}

// acquire returns a shared connection bound to folder, which is selected
// on it. Selecting only makes the APPENDs cheaper for the server: a
// refusal (folder gone: the APPEND's [TRYCREATE] handles it) is not an
// error here.
func (s *IMAP) acquire(ctx context.Context, folder string) (*imapconn.SharedConn, error) {
	return s.shared.Acquire(ctx, folder, func(c *imapconn.Conn) error {
		s.mu.Lock()
		known := s.folders[folder] != nil
		s.mu.Unlock()
		if !known {
			// Not selected yet (Prepare leaves an empty folder to the
			// first Append): folder's SELECT binds c to it.
			_, err := s.folder(ctx, c, folder)
			return err
		}
		if _, err := c.Select(ctx, folder, false); err != nil && imapconn.IMAPError(err) == nil {
			return imapconn.Classify(fmt.Errorf("select folder %q: %w", folder, err))
		}
		return nil
	})
}

func (s *IMAP) appendOn(ctx context.Context, c *imapconn.Conn, folder string, msg migrate.Message, body *migrate.Body, mayCreate bool) (string, error) {
	m := s.metaNow()
	size := body.CRLFSize()
	if m.appendLimit > 0 && size > m.appendLimit {
		return "", migrate.SkipMessage(fmt.Errorf("message of %d bytes exceeds the server's APPENDLIMIT of %d bytes", size, m.appendLimit))
	}
	fi, err := s.folder(ctx, c, folder)
	if err != nil {
		return "", err
	}
	s.mu.Lock()
	before := fi.uidNext // a lower bound of this copy's UID
	s.mu.Unlock()
	opts := &imap.AppendOptions{Flags: s.flagsFor(folder, fi, msg), Time: msg.Date}
	if body.HasNUL() {
		// A NUL byte may only travel as a literal8 (RFC 3516).
		if !c.Binary() {
			return "", migrate.SkipMessage(fmt.Errorf("message contains NUL bytes, which IMAP carries only as BINARY (RFC 3516), and the server does not offer BINARY"))
		}
		opts.Flags = append(opts.Flags, imapconn.Literal8Flag)
	}
	var data *imap.AppendData
	sent := false
	err = c.Do(ctx, func() error {
		sent = true
		cmd := c.Client.Append(folder, size, opts)
		_, werr := io.Copy(cmd, body.CRLFReader())
		cerr := cmd.Close()
		d, err := cmd.Wait()
		if err == nil && werr != nil {
			err = werr
		}
		if err == nil && cerr != nil {
			err = cerr
		}
		data = d
		return err
	})
	if err != nil {
		out, retry, refused := s.appendFailure(ctx, c, folder, err, sent, mayCreate, "append")
		switch {
		case retry:
			return s.appendOn(ctx, c, folder, msg, body, false)
		case imapconn.TooBig(refused):
			return "", migrate.SkipMessage(fmt.Errorf("message of %d bytes refused as too big: %w", size, err))
		case refused != nil:
			if f := s.serverFailing(folder, refused); f != nil {
				return "", f
			}
			return "", migrate.SkipMessage(fmt.Errorf("message refused: %w", err))
		}
		return "", out
	}
	s.stored()
	if data != nil && data.UID != 0 {
		s.noteUID(fi, data.UID)
		return makeRef(data.UIDValidity, data.UID, folder), nil
	}
	return s.identify(ctx, c, folder, fi, before, body)
}

// appendFailure classifies the failure err of an APPEND or MULTIAPPEND
// (what names it) on c: throttling (Retry, with the wait; the connections
// shrink), a broken connection after the command was sent (Uncertain), one
// before (as Classify says), over quota (fatal). For [TRYCREATE] with
// mayCreate it creates the folder and says retry; any other refusal is
// returned as refused for the caller to decide, with out nil.
func (s *IMAP) appendFailure(ctx context.Context, c *imapconn.Conn, folder string, err error, sent, mayCreate bool, what string) (out error, retry bool, refused *imap.Error) {
	if t := imapconn.Throttled(err); t != nil {
		// A definite "not now": nothing was stored.
		s.shared.Throttled()
		return t, false, nil
	}
	ie := imapconn.IMAPError(err)
	switch {
	case ie == nil && sent && ctx.Err() == nil:
		// The messages may have reached the server: the engine settles them.
		return migrate.Uncertain(fmt.Errorf("%s: %w", what, err)), false, nil
	case ie == nil:
		return imapconn.Classify(fmt.Errorf("%s: %w", what, err)), false, nil
	case ie.Code == imap.ResponseCodeOverQuota:
		return migrate.FatalError(fmt.Errorf("destination account %s is over quota (%s); free space or raise the quota, then run again", s.cfg.User, ie.Text)), false, nil
	case ie.Code == imap.ResponseCodeTryCreate && mayCreate:
		cerr := c.Do(ctx, func() error { return c.Create(folder, nil).Wait() })
		if cie := imapconn.IMAPError(cerr); cerr != nil && (cie == nil || cie.Code != imap.ResponseCodeAlreadyExists) {
			return imapconn.Classify(fmt.Errorf("create folder %q after [TRYCREATE]: %w", folder, cerr)), false, nil
		}
		return nil, true, nil
	}
	return nil, false, ie
}

// identify finds, on a server without UIDPLUS, the copy just appended on c:
// the newest message above before holding body's bytes that no earlier
// identify of this process took. Without a conclusive answer the ref is
// unverified: the copy exists, its UID is unknown.
func (s *IMAP) identify(ctx context.Context, c *imapconn.Conn, folder string, fi *folderInfo, before imap.UID, body *migrate.Body) (string, error) {
	sum, err := body.CompareSHA256()
	if err != nil {
		return "", migrate.FatalError(err)
	}
	in := migrate.Intent{Dest: folder, MessageID: body.MessageID(), Size: body.Size(), SHA256: body.SHA256(),
		Mark: fmt.Sprintf("%d:%d", fi.uidValidity, before)}
	if body.CRLFSize() != body.Size() || body.HasNUL() {
		in.CRLFSize, in.CRLFSHA256 = body.CRLFSize(), sum
	}
	cands, err := s.locate(ctx, c, folder, []migrate.Intent{in})
	if err == nil && len(cands) == 1 {
		for k := len(cands[0]) - 1; k >= 0; k-- {
			ref := cands[0][k]
			s.mu.Lock()
			free := !s.claimed[ref]
			s.claimed[ref] = true
			s.mu.Unlock()
			if free {
				if _, uid, _, ok := parseRef(ref); ok {
					s.noteUID(fi, uid)
				}
				return ref, nil
			}
		}
	}
	return migrate.UnverifiedRef(makeRef(fi.uidValidity, 0, folder), in.StoredSHA256()), nil
}
