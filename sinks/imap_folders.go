package sinks

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/mailhaul/mailhaul/internal/imapconn"
	"github.com/mailhaul/mailhaul/migrate"
)

// Folders of the IMAP sink: names in the server's syntax, Prepare with
// special-use mapping, and what each folder keeps (PERMANENTFLAGS).

// folderInfo is what the sink knows of a destination folder; uidNext is
// guarded by IMAP.mu.
type folderInfo struct {
	permanent   map[string]bool // lower-cased; shared (IMAP.flagSets), never changed
	anyKeyword  bool
	uidValidity uint32
	// uidNext is a lower bound of the folder's UIDNEXT: from the SELECT,
	// raised past every UID an APPEND of this process returned. A copy
	// appended later gets a UID at least this high (Mark).
	uidNext imap.UID
	// empty: the folder held no message when this process first selected
	// it (migrate.FreshFolders); firstNext: the UIDNEXT it said then (0 if
	// none), never raised (IndexRefs).
	empty     bool
	firstNext imap.UID
}

func (s *IMAP) refreshList(ctx context.Context, c *imapconn.Conn, m *serverMeta) error {
	opts := &imap.ListOptions{}
	extended := m.caps.Has(imap.CapListExtended) || m.caps.Has(imap.CapIMAP4rev2)
	if m.caps.Has(imap.CapSpecialUse) && extended {
		opts.ReturnSpecialUse = true
	}
	opts.ReturnSubscribed = extended
	return imapconn.Classify(c.Do(ctx, func() error {
		fresh := &serverMeta{prefix: m.prefix, unsubscribed: map[string]bool{}}
		cmd := c.List("", "*", opts)
		for d := cmd.Next(); d != nil; d = cmd.Next() {
			fresh.add(d)
			fresh.escaped = fresh.escaped || strings.Contains(d.Mailbox, "~")
			if extended && !imapconn.HasAttr(d, imap.MailboxAttrSubscribed) && !imapconn.HasAttr(d, imap.MailboxAttrNoSelect) &&
				!imapconn.HasAttr(d, imap.MailboxAttrNonExistent) && !strings.EqualFold(d.Mailbox, "INBOX") {
				fresh.unsubscribed[d.Mailbox] = true
			}
		}
		if err := cmd.Close(); err != nil {
			return fmt.Errorf("LIST: %w", err)
		}
		s.mu.Lock()
		m.list, m.names, m.escaped, m.unsubscribed = fresh.list, fresh.names, fresh.escaped, fresh.unsubscribed
		s.mu.Unlock()
		return nil
	}))
}

// serverNameLocked converts a "/" name to the server's syntax: as the
// rules learned so far escape it, or, when no folder has that name but
// one has it as an earlier run escaped it (a run learns what the server
// refuses anew, at its first refusal), that folder: a re-run then does
// not ask to create the refused name again, and check, which creates
// nothing and so learns nothing, looks in the folder the copy made.
func (s *IMAP) serverNameLocked(name string) string {
	n := s.serverNameWith(name, s.rules)
	if s.meta.escaped && !s.meta.names[n] {
		if twin := s.escapedTwinLocked(name); twin != "" {
			return twin
		}
	}
	return n
}

// escapedTwinLocked returns the existing folder that name is under rules
// stricter than those learned so far (more of the punctuation it holds
// refused, a leading "~" refused), "" if there is none. Only names made of
// few kinds of punctuation are tried every way (at most 16 names); others
// with all of it refused or none.
func (s *IMAP) escapedTwinLocked(name string) string {
	var extra []rune
	for _, r := range name {
		if strings.ContainsRune(refusablePunct, r) && !strings.ContainsRune(s.rules.refused, r) && !slices.Contains(extra, r) {
			extra = append(extra, r)
		}
	}
	masks := []int{0, 1<<len(extra) - 1}
	if len(extra) <= 3 {
		masks = masks[:0]
		for mask := 0; mask < 1<<len(extra); mask++ {
			masks = append(masks, mask)
		}
	}
	for _, lead := range []bool{s.rules.lead, true} {
		for _, mask := range masks {
			if lead == s.rules.lead && mask == 0 {
				continue // the name as the rules learned so far give it
			}
			r := nameRules{refused: s.rules.refused, lead: lead}
			for i, c := range extra {
				if mask&(1<<i) != 0 {
					r.refused += string(c)
				}
			}
			if cand := s.serverNameWith(name, r); s.meta.names[cand] {
				return cand
			}
		}
	}
	return ""
}

// serverNameWith is name in the server's syntax under rules.
func (s *IMAP) serverNameWith(name string, rules nameRules) string {
	m := s.meta
	if strings.EqualFold(name, "INBOX") && s.prefixTo == "" {
		return "INBOX"
	}
	parts := strings.Split(name, "/")
	for i, p := range parts {
		parts[i] = escapeComponent(p, m.delim, rules, s.tooLong[name])
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

// Prepare implements migrate.Sink; called from the engine's preparer
// goroutine, while the lister may be reading an earlier folder's index
// (Index) on another connection of the pool.
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
	for attempt := 0; ; attempt++ {
		dest, err := s.prepareAs(ctx, c, src, name)
		ie := imapconn.IMAPError(err)
		if ie == nil || ie.Code == imap.ResponseCodeOverQuota || attempt >= 3 {
			return dest, err
		}
		// The server refused the name: escape what it refuses, once
		// learned for every later name, and try again.
		s.mu.Lock()
		before := s.serverNameLocked(name)
		learned, long := s.rules.learn(ie.Text)
		if long {
			s.tooLong[name] = true
		}
		after := s.serverNameLocked(name)
		s.mu.Unlock()
		if !(learned || long) || after == before {
			return dest, err
		}
		s.warn(fmt.Errorf("IMAP destination %s refused folder name %q (%s); creating it as %q", s.cfg.Addr(), before, ie.Text, after))
	}
}

// prepareAs is one attempt of prepare with the names as escaped now.
func (s *IMAP) prepareAs(ctx context.Context, c *imapconn.Conn, src migrate.Mailbox, name string) (string, error) {
	s.mu.Lock()
	m := s.meta
	dest := s.serverNameLocked(name)
	s.mu.Unlock()
	// The engine decided which source folder has which use (it never
	// gives one use to two folders); the sink does not guess again, and
	// never sends a use to a folder it already gave another source folder.
	use := src.SpecialUse
	create := &imap.CreateOptions{}
	if mappedUses[use] && s.prefixTo == "" {
		free := func(d string) bool { return s.free(d, src.Name) }
		if found := findByUse(m, use, free); found != "" {
			dest = found
		} else if m.caps.Has(imap.CapCreateSpecialUse) && findByUse(m, use, func(string) bool { return true }) == "" {
			create.SpecialUse = []imap.MailboxAttr{imap.MailboxAttr(use)}
		}
	}
	if src.NoSelect {
		// A folder that exists only as structure (a \Noselect parent, a
		// directory without cur/): creating its children creates it as
		// structure (RFC 3501 6.3.3: the server creates the superior
		// names a CREATE needs), where the server keeps structure; an
		// explicit CREATE would make it a real, empty folder.
		s.assign(dest, src.Name)
		return dest, nil
	}
	if !s.listed(dest) {
		refused, err := s.createPipelined(ctx, c, src, dest, create)
		if err != nil {
			return "", err
		}
		if refused == nil {
			s.assign(dest, src.Name)
			return dest, nil
		}
		// The CREATE was refused: the fallback and the error, one command
		// at a time.
		err = refused
		created := false
		if len(create.SpecialUse) > 0 {
			// Some servers refuse a USE they do not support: plain CREATE.
			create.SpecialUse = nil
			err = c.Do(ctx, func() error { return c.Create(dest, nil).Wait() })
			created = err == nil
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
		s.mu.Lock()
		m.add(&imap.ListData{Mailbox: dest, Delim: m.delim, Attrs: create.SpecialUse})
		s.mu.Unlock()
		if created && !src.Unsubscribed {
			s.subscribe(ctx, c, dest)
		}
	} else if !src.Unsubscribed && s.unsubscribedNow(dest) {
		// A folder that was there already, unsubscribed (Dovecot's
		// special folders are created so), receives a subscribed
		// folder's mail: a client showing only subscribed folders would
		// not show that mail.
		s.subscribe(ctx, c, dest)
	}
	s.assign(dest, src.Name)
	if src.Empty {
		// Nothing to append (yet): the first Append selects it, and Mark
		// asks STATUS. An account of 100,000 mostly empty folders is not
		// selected folder by folder, nor remembered folder by folder.
		return dest, nil
	}
	if _, err := s.folder(ctx, c, dest); err != nil {
		return "", err
	}
	return dest, nil
}

// createPipelined creates dest the fast way: CREATE, SUBSCRIBE (unless
// the source folder is unsubscribed or the server refused one before)
// and SELECT (unless the folder is Empty) sent together, one round trip
// instead of three, which is most of the cost of a folder of a few
// messages at a distance. When it returns no error at all dest was
// created (or found there: ALREADYEXISTS), subscribed and selected as
// asked. When the server refused the CREATE it returns that refusal,
// having taken back a SUBSCRIBE the server accepted for a name that is not
// there, and prepareAs goes the slow way (special-use fallback, escaped
// names, the error). err is any other error, classified. A folder CREATE finds
// already there (not in the LIST read at the start: made meanwhile, or a
// name the server folds) is subscribed too: it receives the mail that
// made the user ask for it.
func (s *IMAP) createPipelined(ctx context.Context, c *imapconn.Conn, src migrate.Mailbox, dest string, create *imap.CreateOptions) (refused, err error) {
	s.mu.Lock()
	subscribe := !src.Unsubscribed && !s.noSubscribe
	selectToo := !src.Empty && s.folders[dest] == nil
	s.mu.Unlock()
	var createErr, subErr, selErr error
	var data *imap.SelectData
	err = c.Do(ctx, func() error {
		cr := c.Create(dest, create)
		var sub *imapclient.Command
		if subscribe {
			sub = c.Subscribe(dest)
		}
		var sel func() (*imap.SelectData, error)
		if selectToo {
			sel = c.SendSelect(dest, false)
		}
		createErr = cr.Wait()
		if sub != nil {
			subErr = sub.Wait()
		}
		if sel != nil {
			data, selErr = sel()
		}
		for _, err := range []error{createErr, subErr, selErr} {
			if err != nil && imapconn.IMAPError(err) == nil {
				return err // the connection broke: nothing is known
			}
		}
		return nil
	})
	if err != nil {
		return nil, imapconn.Classify(fmt.Errorf("create folder %q: %w", dest, err))
	}
	if ie := imapconn.IMAPError(createErr); ie != nil && ie.Code != imap.ResponseCodeAlreadyExists {
		if subscribe && subErr == nil && !s.exists(ctx, c, dest, selectToo, selErr) {
			// Subscribed to a name the server refused to create: taken
			// back. A folder that is there after all (a server that
			// refuses CREATE of an existing name without ALREADYEXISTS)
			// keeps its subscription, whatever it was.
			c.Do(ctx, func() error { return c.Unsubscribe(dest).Wait() })
		}
		return createErr, nil
	}
	// Known without asking the server again: a LIST after every CREATE
	// made a run that creates n folders read n²/2 LIST lines (5 billion
	// for 100,000 folders).
	s.mu.Lock()
	s.meta.add(&imap.ListData{Mailbox: dest, Delim: s.meta.delim, Attrs: create.SpecialUse})
	s.mu.Unlock()
	if subErr != nil {
		s.subscribeRefused(dest, subErr)
	}
	if selErr != nil {
		return nil, selectError(dest, selErr)
	}
	if data != nil {
		s.remember(dest, data)
	}
	return nil, nil
}

// exists says whether folder dest is there after a refused CREATE: the
// SELECT sent with it says so when there was one (selected: selErr is its
// answer), else a LIST of that one name. When unsure (the LIST failed) it
// says it is, so that nothing is unsubscribed.
func (s *IMAP) exists(ctx context.Context, c *imapconn.Conn, dest string, selected bool, selErr error) bool {
	if selected {
		return selErr == nil
	}
	var found bool
	err := c.Do(ctx, func() error {
		l, err := c.List("", dest, nil).Collect()
		found = len(l) > 0
		return err
	})
	return err != nil || found
}

// subscribe subscribes folder dest, which Prepare created or found there
// unsubscribed: mail clients
// such as Thunderbird show only subscribed IMAP folders. A refusal is a
// warning, once: the folder and its messages are there all the same, and
// no later folder is subscribed. A broken connection shows in Prepare's
// next command.
func (s *IMAP) subscribe(ctx context.Context, c *imapconn.Conn, dest string) {
	s.mu.Lock()
	refused := s.noSubscribe
	s.mu.Unlock()
	if refused {
		return
	}
	err := c.Do(ctx, func() error { return c.Subscribe(dest).Wait() })
	if imapconn.IMAPError(err) != nil {
		s.subscribeRefused(dest, err)
	}
	if err == nil {
		s.mu.Lock()
		delete(s.meta.unsubscribed, dest)
		s.mu.Unlock()
	}
}

// unsubscribedNow says LIST found dest there and not subscribed (and no
// SUBSCRIBE of this run has changed that).
func (s *IMAP) unsubscribedNow(dest string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.meta.unsubscribed[dest]
}

// subscribeRefused warns, once, that the server refused to subscribe dest,
// and stops asking.
func (s *IMAP) subscribeRefused(dest string, err error) {
	s.mu.Lock()
	was := s.noSubscribe
	s.noSubscribe = true
	s.mu.Unlock()
	if !was {
		s.warn(fmt.Errorf("IMAP destination %s refused SUBSCRIBE %q (%v): the folders it creates are there, but a mail client that shows only subscribed folders will not show them until you subscribe to them", s.cfg.Addr(), dest, err))
	}
}

// assign records that destination folder dest receives source folder
// name, where findByUse may offer dest to another folder (the folders of
// m.list: a use attribute or a well-known name); no other is ever asked
// about (free), and an account may have 100,000.
func (s *IMAP) assign(dest, name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, l := range s.meta.list {
		if l.Mailbox == dest {
			s.assigned[dest] = name
			return
		}
	}
}

// free reports whether destination folder dest may receive source folder
// name by special use: it was not given to another source folder by this
// sink, and no other folder of the run's plan maps to it by name.
func (s *IMAP) free(dest, name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if owner, ok := s.assigned[dest]; ok && owner != name {
		return false
	}
	if owner, ok := s.reserved[dest]; ok && owner != name {
		return false
	}
	return true
}

// Plan implements migrate.Planner: the server names the run's folders
// map to by name are reserved for them. Only names findByUse may pick are
// kept (a well-known name, or a folder listed with a use attribute): the
// others are never offered to another folder.
func (s *IMAP) Plan(folders []migrate.PlannedFolder) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reserved = map[string]string{}
	picked := map[string]bool{}
	for _, l := range s.meta.list {
		picked[l.Mailbox] = true
	}
	for _, f := range folders {
		dest := s.serverNameLocked(f.Name)
		if !picked[dest] && !mappedUses[migrate.SpecialUseByName(f.Name)] {
			continue
		}
		s.reserved[dest] = f.Source
	}
}

// findByUse returns the destination folder with special use use that ok
// accepts: one with the attribute, else one whose well-known name has the
// use (the first in name order); "" if none.
func findByUse(m *serverMeta, use string, ok func(string) bool) string {
	for _, l := range m.list {
		for _, a := range l.Attrs {
			if strings.EqualFold(string(a), use) && ok(l.Mailbox) {
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
		if migrate.SpecialUseByName(m.localName(l)) == use && ok(l.Mailbox) {
			names = append(names, l.Mailbox)
		}
	}
	sort.Strings(names)
	if len(names) > 0 {
		return names[0]
	}
	return ""
}

// listed reports whether the destination has folder name (LIST listed it,
// or Prepare created it).
func (s *IMAP) listed(name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if strings.EqualFold(name, "INBOX") {
		name = "INBOX"
	}
	return s.meta.names[name]
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
		return nil, selectError(dest, err)
	}
	return s.remember(dest, data), nil
}

func selectError(dest string, err error) error {
	if imapconn.IMAPError(err) != nil {
		return migrate.SkipMessage(fmt.Errorf("select folder %q: %w", dest, err))
	}
	return imapconn.Classify(fmt.Errorf("select folder %q: %w", dest, err))
}

// remember keeps what SELECT said of dest (once: the first answer wins)
// and returns it.
func (s *IMAP) remember(dest string, data *imap.SelectData) *folderInfo {
	fi := &folderInfo{uidValidity: data.UIDValidity, uidNext: data.UIDNext, empty: data.NumMessages == 0, firstNext: data.UIDNext}
	flags := make([]string, 0, len(data.PermanentFlags))
	for _, f := range data.PermanentFlags {
		if f == imap.FlagWildcard {
			fi.anyKeyword = true
		}
		flags = append(flags, strings.ToLower(string(f)))
	}
	slices.Sort(flags)
	key := strings.Join(flags, " ")
	s.mu.Lock()
	defer s.mu.Unlock()
	if have := s.folders[dest]; have != nil {
		return have // loaded meanwhile by another goroutine
	}
	if fi.permanent = s.flagSets[key]; fi.permanent == nil {
		fi.permanent = make(map[string]bool, len(flags))
		for _, f := range flags {
			fi.permanent[f] = true
		}
		s.flagSets[key] = fi.permanent
	}
	s.folders[dest] = fi
	return fi
}

// Fresh implements migrate.FreshFolders: dest held no message when this
// process first selected it. Prepare selects every folder that has mail
// to copy, before the engine hands on any message for it, and a folder is
// remembered once per process.
func (s *IMAP) Fresh(dest string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	fi := s.folders[dest]
	return fi != nil && fi.empty
}

// flagsFor filters msg's flags by what the folder keeps (PERMANENTFLAGS)
// and reports the message when some are dropped (SetDropped).
func (s *IMAP) flagsFor(dest string, fi *folderInfo, msg migrate.Message) []imap.Flag {
	var out []imap.Flag
	var dropped []string
	seen := map[string]bool{}
	for _, f := range msg.Flags {
		lf := strings.ToLower(f)
		if lf == `\recent` || f == "" || seen[lf] {
			continue
		}
		seen[lf] = true
		if fi.permanent[lf] || (fi.anyKeyword && !strings.HasPrefix(f, `\`)) {
			out = append(out, imap.Flag(f))
		} else {
			dropped = append(dropped, f)
		}
	}
	if len(dropped) > 0 && s.dropped != nil {
		s.dropped(dest, msg, dropped, "not in the folder's PERMANENTFLAGS")
	}
	return out
}

// SetDropped implements migrate.FlagDropper.
func (s *IMAP) SetDropped(f func(dest string, msg migrate.Message, flags []string, why string)) {
	s.dropped = f
}

// noteUID raises folder's known UIDNEXT past uid (an APPEND returned it).
func (s *IMAP) noteUID(fi *folderInfo, uid imap.UID) {
	s.mu.Lock()
	if uid >= fi.uidNext {
		fi.uidNext = uid + 1
	}
	s.mu.Unlock()
}
