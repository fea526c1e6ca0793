package sinks

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/emersion/go-imap/v2"

	"github.com/mailhaul/mailhaul/internal/imapconn"
	"github.com/mailhaul/mailhaul/migrate"
)

// Folders of the IMAP sink: names in the server's syntax, Prepare with
// special-use mapping, and what each folder keeps (PERMANENTFLAGS).

// folderInfo is what the sink knows of a destination folder; uidNext is
// guarded by IMAP.mu.
type folderInfo struct {
	permanent   map[string]bool // lower-cased
	anyKeyword  bool
	uidValidity uint32
	// uidNext is a lower bound of the folder's UIDNEXT: from the SELECT,
	// raised past every UID an APPEND of this process returned. A copy
	// appended later gets a UID at least this high (Mark).
	uidNext imap.UID
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
	fi = &folderInfo{permanent: map[string]bool{}, uidValidity: data.UIDValidity, uidNext: data.UIDNext}
	for _, f := range data.PermanentFlags {
		if f == imap.FlagWildcard {
			fi.anyKeyword = true
		}
		fi.permanent[strings.ToLower(string(f))] = true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if have := s.folders[dest]; have != nil {
		return have, nil // loaded meanwhile by another goroutine
	}
	s.folders[dest] = fi
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

// noteUID raises folder's known UIDNEXT past uid (an APPEND returned it).
func (s *IMAP) noteUID(fi *folderInfo, uid imap.UID) {
	s.mu.Lock()
	if uid >= fi.uidNext {
		fi.uidNext = uid + 1
	}
	s.mu.Unlock()
}
