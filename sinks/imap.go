package sinks

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/mailhaul/mailhaul/internal/imapconn"
	"github.com/mailhaul/mailhaul/migrate"
)

// IMAP appends to an IMAP account through a pool of connections.
//
// Folder names: Prepare turns mailhaul's "/" names into the server's
// syntax (personal namespace prefix such as Courier's "INBOX." and the
// hierarchy delimiter) and returns that server name; Append and the
// intents recorded by the engine use it. A "/"-component that contains the
// server's delimiter has it replaced by "_" (it cannot be represented).
//
// Special use: a source folder with SpecialUse \Sent, \Drafts, \Trash,
// \Junk or \Archive lands in the destination folder with that attribute
// (LIST RETURN (SPECIAL-USE)), else in an existing folder whose well-known
// name has that use, else in a new folder created with CREATE ... (USE
// (...)) when the server has CREATE-SPECIAL-USE.
//
// Append sends the body bytes unchanged with the flags the folder's
// PERMANENTFLAGS allow (others dropped with one warning per folder and
// flag; \Recent never sent) and the internal date, and returns
// "uidvalidity:uid" from APPENDUID. Servers without UIDPLUS: the copy is
// looked up by Message-ID and size above the UIDNEXT taken before the
// APPEND; if that is not conclusive the ref is "uidvalidity:" (non-empty,
// so the engine records the copy as done).
//
// Errors: [TOOBIG], APPENDLIMIT exceeded and other NO/BAD replies to an
// APPEND skip the message; [OVERQUOTA] is fatal; [TRYCREATE] creates the
// folder and retries once; a dropped connection is retryable and the pool
// slot is redialled.
type IMAP struct {
	cfg    *imapconn.Config
	pool   *imapconn.Pool
	shared *imapconn.Shared // appends
	warn   func(error)

	mu       sync.Mutex
	meta     *serverMeta
	folders  map[string]*folderInfo // server name -> info
	warned   map[string]bool
	claimed  map[string]bool // refs returned by Find in this process
	prefixTo string          // endpoint folder (server syntax) everything goes under
}

type serverMeta struct {
	delim       rune
	prefix      string
	caps        imap.CapSet
	appendLimit int64 // 0: none advertised
	list        []*imap.ListData
}

type folderInfo struct {
	permanent   map[string]bool // lower-cased
	anyKeyword  bool
	uidValidity uint32
	uidNext     uint32 // at the SELECT, before this process appended
}

// AppendDepth is how many APPENDs to the same folder one connection
// carries at once. go-imap sends every literal above 4 KiB synchronising
// (the client waits for the server's "+" before the message bytes), so a
// lone APPEND costs two round trips; with a second one queued on the same
// connection its command line is already at the server when the first
// completes, and each message costs one. When the server has LITERAL+,
// imapconn rewrites those literals to non-synchronising ones (see
// imapconn.Conn.LiteralPlus) and an APPEND costs one round trip alone;
// measured at 20 ms RTT with 8 connections, depth 4 was within noise of
// depth 2 (and used more memory), and so was one connection per folder
// with depth 8, while one connection per folder with depth 2 was slower.
const AppendDepth = 2

// OpenIMAP connects (one connection, to fail early on a bad password or
// certificate) and returns the sink. conns (default 4) is the number of
// connections appending at once, each carrying up to AppendDepth appends
// to one folder (without UIDPLUS, one: finding the copy needs the
// connection to itself); one more connection serves Prepare, Mark, Index
// and Find. warn, if not nil, receives non-fatal problems (dropped flags).
func OpenIMAP(ctx context.Context, cfg *imapconn.Config, conns int, warn func(error)) (*IMAP, error) {
	if conns <= 0 {
		conns = 4
	}
	if warn == nil {
		warn = func(error) {}
	}
	pool := imapconn.NewPool(cfg, conns+1)
	s := &IMAP{cfg: cfg, pool: pool, warn: warn,
		folders: map[string]*folderInfo{}, warned: map[string]bool{}, claimed: map[string]bool{}}
	c, err := s.pool.Get(ctx)
	if err != nil {
		return nil, err
	}
	err = s.loadMeta(ctx, c)
	s.pool.Release(c, err)
	if err != nil {
		s.pool.Close()
		return nil, fmt.Errorf("IMAP destination %s: %w", cfg.Endpoint, err)
	}
	depth := AppendDepth
	if !s.meta.caps.Has(imap.CapUIDPlus) && !s.meta.caps.Has(imap.CapIMAP4rev2) {
		depth = 1
	}
	s.shared = imapconn.NewShared(pool, conns, depth)
	return s, nil
}

// loadMeta reads delimiter, namespace prefix, capabilities and the folder
// list. Called with the lister's connection.
func (s *IMAP) loadMeta(ctx context.Context, c *imapconn.Conn) error {
	m := &serverMeta{delim: '/'}
	err := c.Do(ctx, func() error {
		m.caps = c.Caps()
		root, err := c.List("", "", nil).Collect()
		if err != nil {
			return fmt.Errorf("LIST \"\" \"\": %w", err)
		}
		if len(root) > 0 && root[0].Delim != 0 {
			m.delim = root[0].Delim
		}
		if m.caps.Has(imap.CapNamespace) || m.caps.Has(imap.CapIMAP4rev2) {
			ns, err := c.Namespace().Wait()
			if err == nil && ns != nil && len(ns.Personal) > 0 {
				m.prefix = ns.Personal[0].Prefix
				if ns.Personal[0].Delim != 0 {
					m.delim = ns.Personal[0].Delim
				}
			}
		}
		if l, ok := m.caps.AppendLimit(); ok && l != nil {
			m.appendLimit = int64(*l)
		}
		return nil
	})
	if err != nil {
		return imapconn.Classify(err)
	}
	if err := s.refreshList(ctx, c, m); err != nil {
		return err
	}
	s.mu.Lock()
	s.meta = m
	if s.cfg.Folder != "" {
		s.prefixTo = s.serverNameLocked(s.cfg.Folder)
	}
	s.mu.Unlock()
	return nil
}

func (s *IMAP) refreshList(ctx context.Context, c *imapconn.Conn, m *serverMeta) error {
	opts := &imap.ListOptions{}
	if m.caps.Has(imap.CapSpecialUse) && (m.caps.Has(imap.CapListExtended) || m.caps.Has(imap.CapIMAP4rev2)) {
		opts.ReturnSpecialUse = true
	}
	return imapconn.Classify(c.Do(ctx, func() error {
		l, err := c.List("", "*", opts).Collect()
		if err != nil {
			return fmt.Errorf("LIST: %w", err)
		}
		m.list = l
		return nil
	}))
}

// serverNameLocked converts a "/" name to the server's syntax.
func (s *IMAP) serverNameLocked(name string) string {
	m := s.meta
	if strings.EqualFold(name, "INBOX") && s.prefixTo == "" {
		return "INBOX"
	}
	parts := strings.Split(name, "/")
	for i, p := range parts {
		parts[i] = strings.ReplaceAll(p, string(m.delim), "_")
	}
	n := strings.Join(parts, string(m.delim))
	if s.prefixTo != "" {
		return s.prefixTo + string(m.delim) + n
	}
	if m.prefix != "" && !strings.HasPrefix(n, m.prefix) && !strings.EqualFold(strings.TrimSuffix(m.prefix, string(m.delim)), n) {
		return m.prefix + n
	}
	if strings.EqualFold(strings.TrimSuffix(m.prefix, string(m.delim)), n) {
		return "INBOX"
	}
	return n
}

// ServerName returns the server's name for a "/"-separated folder name,
// as Prepare would create it (without special-use redirection).
func (s *IMAP) ServerName(name string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.serverNameLocked(name)
}

var mappedUses = map[string]bool{migrate.UseSent: true, migrate.UseDrafts: true, migrate.UseTrash: true, migrate.UseJunk: true, migrate.UseArchive: true}

// Prepare implements migrate.Sink; called from the lister goroutine.
func (s *IMAP) Prepare(ctx context.Context, src migrate.Mailbox, name string) (string, error) {
	c, err := s.pool.Get(ctx)
	if err != nil {
		return "", err
	}
	dest, err := s.prepare(ctx, c, src, name)
	s.pool.Release(c, err)
	if err != nil {
		return "", fmt.Errorf("IMAP destination %s: %w", s.cfg.Addr(), err)
	}
	return dest, nil
}

func (s *IMAP) prepare(ctx context.Context, c *imapconn.Conn, src migrate.Mailbox, name string) (string, error) {
	s.mu.Lock()
	m := s.meta
	dest := s.serverNameLocked(name)
	s.mu.Unlock()
	use := src.SpecialUse
	if use == "" {
		use = migrate.SpecialUseByName(src.Name)
	}
	create := &imap.CreateOptions{}
	if mappedUses[use] && s.prefixTo == "" {
		if found := findByUse(m, use); found != "" {
			dest = found
		} else if m.caps.Has(imap.CapCreateSpecialUse) {
			create.SpecialUse = []imap.MailboxAttr{imap.MailboxAttr(use)}
		}
	}
	if !listed(m, dest) {
		err := c.Do(ctx, func() error { return c.Create(dest, create).Wait() })
		if ie := imapconn.IMAPError(err); ie != nil && ie.Code == imap.ResponseCodeAlreadyExists {
			err = nil
		}
		if err != nil && len(create.SpecialUse) > 0 && imapconn.IMAPError(err) != nil {
			// Some servers refuse a USE they do not support: plain CREATE.
			err = c.Do(ctx, func() error { return c.Create(dest, nil).Wait() })
			if ie := imapconn.IMAPError(err); ie != nil && ie.Code == imap.ResponseCodeAlreadyExists {
				err = nil
			}
		}
		if err != nil {
			if imapconn.IMAPError(err) != nil {
				return "", migrate.SkipMessage(fmt.Errorf("create folder %q: %w", dest, err))
			}
			return "", imapconn.Classify(fmt.Errorf("create folder %q: %w", dest, err))
		}
		if err := s.refreshList(ctx, c, m); err != nil {
			return "", err
		}
	}
	if src.NoSelect {
		return dest, nil
	}
	if _, err := s.folder(ctx, c, dest); err != nil {
		return "", err
	}
	return dest, nil
}

func findByUse(m *serverMeta, use string) string {
	for _, l := range m.list {
		for _, a := range l.Attrs {
			if strings.EqualFold(string(a), use) {
				return l.Mailbox
			}
		}
	}
	// No attribute (server without SPECIAL-USE): a well-known name.
	var names []string
	for _, l := range m.list {
		if imapconn.HasAttr(l, imap.MailboxAttrNoSelect) || imapconn.HasAttr(l, imap.MailboxAttrNonExistent) {
			continue
		}
		n := strings.TrimPrefix(l.Mailbox, m.prefix)
		if l.Delim != 0 {
			n = strings.ReplaceAll(n, string(l.Delim), "/")
		}
		if migrate.SpecialUseByName(n) == use {
			names = append(names, l.Mailbox)
		}
	}
	sort.Strings(names)
	if len(names) > 0 {
		return names[0]
	}
	return ""
}

func listed(m *serverMeta, name string) bool {
	for _, l := range m.list {
		if (l.Mailbox == name || (strings.EqualFold(name, "INBOX") && strings.EqualFold(l.Mailbox, "INBOX"))) && !imapconn.HasAttr(l, imap.MailboxAttrNonExistent) {
			return true
		}
	}
	return false
}

// folder returns (loading once with SELECT) the flags the folder keeps.
func (s *IMAP) folder(ctx context.Context, c *imapconn.Conn, dest string) (*folderInfo, error) {
	s.mu.Lock()
	fi := s.folders[dest]
	s.mu.Unlock()
	if fi != nil {
		return fi, nil
	}
	data, err := c.Select(ctx, dest, false)
	if err != nil {
		if imapconn.IMAPError(err) != nil {
			return nil, migrate.SkipMessage(fmt.Errorf("select folder %q: %w", dest, err))
		}
		return nil, imapconn.Classify(fmt.Errorf("select folder %q: %w", dest, err))
	}
	fi = &folderInfo{permanent: map[string]bool{}, uidValidity: data.UIDValidity, uidNext: uint32(data.UIDNext)}
	for _, f := range data.PermanentFlags {
		if f == imap.FlagWildcard {
			fi.anyKeyword = true
		}
		fi.permanent[strings.ToLower(string(f))] = true
	}
	s.mu.Lock()
	s.folders[dest] = fi
	s.mu.Unlock()
	return fi, nil
}

// flagsFor filters msg's flags by what the folder keeps.
func (s *IMAP) flagsFor(dest string, fi *folderInfo, flags []string) []imap.Flag {
	var out []imap.Flag
	seen := map[string]bool{}
	for _, f := range flags {
		lf := strings.ToLower(f)
		if lf == `\recent` || f == "" || seen[lf] {
			continue
		}
		seen[lf] = true
		ok := fi.permanent[lf] || (fi.anyKeyword && !strings.HasPrefix(f, `\`))
		if !ok {
			s.mu.Lock()
			first := !s.warned[dest+"\x00"+lf]
			s.warned[dest+"\x00"+lf] = true
			s.mu.Unlock()
			if first {
				s.warn(fmt.Errorf("IMAP destination %s folder %q does not keep flag %s (not in PERMANENTFLAGS); messages are copied without it", s.cfg.Addr(), dest, f))
			}
			continue
		}
		out = append(out, imap.Flag(f))
	}
	return out
}

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
	sc, err := s.shared.Acquire(ctx, folder, func(c *imapconn.Conn) error {
		// Selecting only makes the APPENDs cheaper for the server: a
		// refusal (folder gone: the APPEND's [TRYCREATE] handles it) is
		// not an error here.
		if _, err := c.Select(ctx, folder, false); err != nil && imapconn.IMAPError(err) == nil {
			return imapconn.Classify(fmt.Errorf("select folder %q: %w", folder, err))
		}
		_, err := s.folder(ctx, c, folder)
		return err
	})
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

func (s *IMAP) appendOn(ctx context.Context, c *imapconn.Conn, folder string, msg migrate.Message, body *migrate.Body, mayCreate bool) (string, error) {
	s.mu.Lock()
	m := s.meta
	s.mu.Unlock()
	if m.appendLimit > 0 && body.Size() > m.appendLimit {
		return "", migrate.SkipMessage(fmt.Errorf("message of %d bytes exceeds the server's APPENDLIMIT of %d bytes", body.Size(), m.appendLimit))
	}
	fi, err := s.folder(ctx, c, folder)
	if err != nil {
		return "", err
	}
	opts := &imap.AppendOptions{Flags: s.flagsFor(folder, fi, msg.Flags), Time: msg.Date}
	var data *imap.AppendData
	err = c.Do(ctx, func() error {
		cmd := c.Client.Append(folder, body.Size(), opts)
		_, werr := io.Copy(cmd, body.Reader())
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
		ie := imapconn.IMAPError(err)
		switch {
		case ie == nil:
			return "", imapconn.Classify(fmt.Errorf("append: %w", err))
		case ie.Code == imap.ResponseCodeOverQuota:
			return "", migrate.FatalError(fmt.Errorf("destination account %s is over quota (%s); free space or raise the quota, then run again", s.cfg.User, ie.Text))
		case ie.Code == imap.ResponseCodeTryCreate && mayCreate:
			cerr := c.Do(ctx, func() error { return c.Create(folder, nil).Wait() })
			if cie := imapconn.IMAPError(cerr); cerr != nil && (cie == nil || cie.Code != imap.ResponseCodeAlreadyExists) {
				return "", imapconn.Classify(fmt.Errorf("create folder %q after [TRYCREATE]: %w", folder, cerr))
			}
			return s.appendOn(ctx, c, folder, msg, body, false)
		case ie.Code == imap.ResponseCodeTooBig:
			return "", migrate.SkipMessage(fmt.Errorf("message of %d bytes refused as too big: %w", body.Size(), err))
		default:
			return "", migrate.SkipMessage(fmt.Errorf("message refused: %w", err))
		}
	}
	if data != nil && data.UID != 0 {
		return fmt.Sprintf("%d:%d", data.UIDValidity, data.UID), nil
	}
	// No UIDPLUS: look the copy up (best effort); the ref must not be "".
	in := migrate.Intent{Dest: folder, MessageID: body.MessageID(), Size: body.Size(), SHA256: body.SHA256()}
	if ref, found, err := s.find(ctx, c, in, true, nil); err == nil && found {
		return ref, nil
	}
	return fmt.Sprintf("%d:", fi.uidValidity), nil
}

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
			buf, err := m.Collect()
			if err != nil {
				cmd.Close()
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

// Mark implements migrate.Finder: "uidvalidity:uidnext" of folder. The
// SELECT that Prepare issued to read the folder's flags already returned
// them, before this process appended anything there (an older UIDNEXT is
// still a valid mark: Find merely searches a little more); otherwise they
// are read with STATUS. Called from the lister goroutine after Prepare.
func (s *IMAP) Mark(ctx context.Context, folder string) (string, error) {
	s.mu.Lock()
	fi := s.folders[folder]
	s.mu.Unlock()
	if fi != nil && fi.uidNext > 0 {
		return fmt.Sprintf("%d:%d", fi.uidValidity, fi.uidNext), nil
	}
	c, err := s.pool.Get(ctx)
	if err != nil {
		return "", err
	}
	var st *imap.StatusData
	err = c.Do(ctx, func() error {
		var err error
		st, err = c.Status(folder, &imap.StatusOptions{UIDNext: true, UIDValidity: true}).Wait()
		return err
	})
	s.pool.Release(c, err)
	if err != nil {
		return "", imapconn.Classify(fmt.Errorf("IMAP destination %s: STATUS %q: %w", s.cfg.Addr(), folder, err))
	}
	return fmt.Sprintf("%d:%d", st.UIDValidity, st.UIDNext), nil
}

// Find implements migrate.Finder: it searches in.Dest above the mark for
// a message with in's Message-ID whose RFC822.SIZE is in.Size; when that
// is ambiguous (several candidates, or no Message-ID) candidate bodies are
// fetched (BODY.PEEK[]) and hashed against in.SHA256. The folder is only
// examined: nothing is changed. A ref already returned by Find in this
// process, or one taken reports (recorded as the copy of another source
// message), is not returned (two identical source messages must map to
// two copies). Called from the engine's recovery, one goroutine.
func (s *IMAP) Find(ctx context.Context, in migrate.Intent, taken func(string) bool) (string, bool, error) {
	c, err := s.pool.Get(ctx)
	if err != nil {
		return "", false, err
	}
	ref, found, err := s.find(ctx, c, in, false, taken)
	s.pool.Release(c, err)
	if err != nil {
		return "", false, fmt.Errorf("IMAP destination %s folder %q: %w", s.cfg.Addr(), in.Dest, err)
	}
	return ref, found, nil
}

func (s *IMAP) find(ctx context.Context, c *imapconn.Conn, in migrate.Intent, latest bool, taken func(string) bool) (string, bool, error) {
	data, err := c.Select(ctx, in.Dest, true)
	if err != nil {
		if ie := imapconn.IMAPError(err); ie != nil {
			return "", false, nil // folder gone: the copy is not there
		}
		return "", false, imapconn.Classify(err)
	}
	// Forget the read-only selection so that folder() re-selects for
	// writing if needed (it caches flags, not the selection).
	defer func() { c.Selected = "" }()
	from := imap.UID(1)
	if v, n, ok := strings.Cut(in.Mark, ":"); ok {
		if uv, err := strconv.ParseUint(v, 10, 32); err == nil && uint32(uv) == data.UIDValidity {
			if u, err := strconv.ParseUint(n, 10, 32); err == nil && u > 0 {
				from = imap.UID(u)
			}
		}
	}
	crit := &imap.SearchCriteria{UID: []imap.UIDSet{{imap.UIDRange{Start: from, Stop: 0}}}}
	if in.MessageID != "" {
		crit.Header = []imap.SearchCriteriaHeaderField{{Key: "Message-ID", Value: strings.Trim(in.MessageID, "<>")}}
	} else {
		// The server may report the size with bare LFs counted as CRLF.
		crit.Larger, crit.Smaller = in.Size-1, 2*in.Size+2
	}
	var uids []imap.UID
	err = c.Do(ctx, func() error {
		sd, err := c.UIDSearch(crit, nil).Wait()
		if err != nil {
			return err
		}
		uids = sd.AllUIDs()
		return nil
	})
	if err != nil {
		return "", false, imapconn.Classify(fmt.Errorf("search: %w", err))
	}
	if len(uids) == 0 {
		return "", false, nil
	}
	sizes := map[imap.UID]int64{}
	err = c.Do(ctx, func() error {
		cmd := c.Fetch(imap.UIDSetNum(uids...), &imap.FetchOptions{UID: true, RFC822Size: true})
		for {
			msg := cmd.Next()
			if msg == nil {
				break
			}
			buf, err := msg.Collect()
			if err != nil {
				cmd.Close()
				return err
			}
			if buf.UID >= from {
				sizes[buf.UID] = buf.RFC822Size
			}
		}
		return cmd.Close()
	})
	if err != nil {
		return "", false, imapconn.Classify(fmt.Errorf("fetch sizes: %w", err))
	}
	refOf := func(u imap.UID) string { return fmt.Sprintf("%d:%d", data.UIDValidity, u) }
	var exact, other []imap.UID
	for u, size := range sizes {
		if s.isClaimed(refOf(u)) || (taken != nil && taken(refOf(u))) {
			continue
		}
		if size == in.Size {
			exact = append(exact, u)
		} else if size > in.Size {
			other = append(other, u)
		}
	}
	less := func(l []imap.UID) func(i, j int) bool {
		if latest { // right after our own APPEND the newest match is ours
			return func(i, j int) bool { return l[i] > l[j] }
		}
		return func(i, j int) bool { return l[i] < l[j] }
	}
	sort.Slice(exact, less(exact))
	sort.Slice(other, less(other))
	if in.MessageID != "" && (len(exact) == 1 || (latest && len(exact) > 0)) {
		ref := refOf(exact[0])
		return ref, s.claim(ref), nil
	}
	if in.SHA256 == "" {
		return "", false, nil
	}
	// Ambiguous, no Message-ID, or a size that differs because the server
	// counts bare LFs as CRLF: hash the candidates (bounded by what was in
	// flight) and compare with the bytes we sent, as sent or with bare LF
	// line ends.
	for _, u := range append(exact, other...) {
		raw, lf, err := s.hashUID(ctx, c, u)
		if err != nil {
			return "", false, err
		}
		if raw == in.SHA256 || lf == in.SHA256 {
			if ref := refOf(u); s.claim(ref) {
				return ref, true, nil
			}
		}
	}
	return "", false, nil
}

func (s *IMAP) claim(ref string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.claimed[ref] {
		return false
	}
	s.claimed[ref] = true
	return true
}

func (s *IMAP) isClaimed(ref string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.claimed[ref]
}

// hashUID returns the SHA-256 of message uid's BODY[] as the server sends
// it and with every CRLF turned into LF.
func (s *IMAP) hashUID(ctx context.Context, c *imapconn.Conn, uid imap.UID) (raw, lf string, err error) {
	h, hl := sha256.New(), sha256.New()
	section := &imap.FetchItemBodySection{Peek: true}
	err = c.Do(ctx, func() error {
		cmd := c.Fetch(imap.UIDSetNum(uid), &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{section}})
		for {
			msg := cmd.Next()
			if msg == nil {
				break
			}
			for {
				item := msg.Next()
				if item == nil {
					break
				}
				if b, ok := item.(imapclient.FetchItemDataBodySection); ok && b.Literal != nil {
					if _, err := io.Copy(io.MultiWriter(h, &crlfToLF{w: hl}), b.Literal); err != nil {
						cmd.Close()
						return err
					}
				}
			}
		}
		return cmd.Close()
	})
	if err != nil {
		return "", "", imapconn.Classify(fmt.Errorf("fetch UID %d to compare: %w", uid, err))
	}
	return hex.EncodeToString(h.Sum(nil)), hex.EncodeToString(hl.Sum(nil)), nil
}

// crlfToLF writes its input with CRLF replaced by LF.
type crlfToLF struct {
	w  io.Writer
	cr bool // previous chunk ended in CR (held back)
}

func (c *crlfToLF) Write(p []byte) (int, error) {
	out := make([]byte, 0, len(p)+1)
	for _, b := range p {
		if c.cr {
			c.cr = false
			if b != '\n' {
				out = append(out, '\r')
			}
		}
		if b == '\r' {
			c.cr = true
			continue
		}
		out = append(out, b)
	}
	if _, err := c.w.Write(out); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Limits implements migrate.Sink: the appending connections, each
// pipelining up to AppendDepth appends.
func (s *IMAP) Limits() migrate.Limits {
	return migrate.Limits{Connections: s.shared.Max(), Pipeline: s.shared.Depth()}
}

// Close implements migrate.Sink: logs out every connection.
func (s *IMAP) Close() error { return s.pool.Close() }

var (
	_ migrate.Indexer = (*IMAP)(nil)
	_ migrate.Sink    = (*IMAP)(nil)
	_ migrate.Finder  = (*IMAP)(nil)
)
