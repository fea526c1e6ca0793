package sources

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/mailhaul/mailhaul/internal/imapconn"
	"github.com/mailhaul/mailhaul/migrate"
)

// listBatch is how many messages' metadata one UID FETCH asks for; the
// connection is returned to the pool between batches so that a lister
// blocked on a full queue never starves the fetchers.
const listBatch = 500

// IMAP reads an IMAP account through a pool of connections. It only
// EXAMINEs folders and fetches BODY.PEEK[]: it never changes the account.
//
// Names: the personal namespace prefix is removed and the hierarchy
// delimiter becomes "/" (INBOX stays INBOX). Mailbox.Epoch is UIDVALIDITY,
// Message.ID the UID, Message.Loc the server's mailbox name. Flags are in
// IMAP spelling without \Recent.
//
// Errors: a dropped connection is retryable (the pool redials), a message
// expunged since List is skipped, a folder that cannot be examined is
// skipped; authentication failures are fatal.
//
// A message's flags are bounded (see keepFlags): what a server lists is
// held in memory for every message in flight, and thousands of keywords
// per message would break the memory bound.
type IMAP struct {
	// Warn, if not nil, receives what the user should know and that does
	// not stop the run (keywords left out by keepFlags).
	Warn func(error)

	cfg    *imapconn.Config
	pool   *imapconn.Pool
	shared *imapconn.Shared // body fetches

	mu     sync.Mutex
	server map[string]string     // "/" name -> server name, where they differ
	epochs map[string]folderStat // server name -> STATUS, of folders that held messages
	cuts   map[string][]int64    // folder and UID -> where fetches broke off (cutElsewhere)
	// suspects are the messages (folder and UID) whose last fetch failed
	// with its connection: the next one is fetched on a connection of its
	// own (fetchPart).
	suspects map[string]bool
}

// FetchDepth is how many UID FETCH BODY.PEEK[] commands one connection
// carries at once (pipelined) for messages of the same folder. Each body
// is still read to its end before the next one flows, but the next
// command is already at the server: no round trip per message.
const FetchDepth = 8

// OpenIMAP connects once (to fail early) and returns the source with conns
// connections (default 4) for bodies, each carrying up to FetchDepth
// pipelined fetches of one folder, plus one connection for listing, so
// that listing never waits for body transfers.
func OpenIMAP(ctx context.Context, cfg *imapconn.Config, conns int) (*IMAP, error) {
	if conns <= 0 {
		conns = 4
	}
	pool := imapconn.NewPool(cfg, conns+1)
	s := &IMAP{cfg: cfg, pool: pool, shared: imapconn.NewShared(pool, conns, FetchDepth),
		server: map[string]string{}, epochs: map[string]folderStat{}, cuts: map[string][]int64{}, suspects: map[string]bool{}}
	c, err := s.pool.Get(ctx)
	if err != nil {
		return nil, err
	}
	s.pool.Put(c)
	return s, nil
}

// Mailboxes implements migrate.Source; called from the lister goroutine.
func (s *IMAP) Mailboxes(ctx context.Context) ([]migrate.Mailbox, error) {
	var mbs []migrate.Mailbox
	err := imapconn.Retry(ctx, func() error {
		return s.withConn(ctx, func(c *imapconn.Conn) error {
			var err error
			mbs, err = s.mailboxes(ctx, c)
			return imapconn.Classify(err)
		})
	})
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", s.what(), s.cfg.Addr(), imapconn.Classify(err))
	}
	return mbs, nil
}

func (s *IMAP) mailboxes(ctx context.Context, c *imapconn.Conn) ([]migrate.Mailbox, error) {
	var (
		list   []listed
		prefix string
	)
	err := c.Do(ctx, func() error {
		caps := c.Caps()
		if caps.Has(imap.CapNamespace) || caps.Has(imap.CapIMAP4rev2) {
			if ns, err := c.Namespace().Wait(); err == nil && ns != nil && len(ns.Personal) > 0 {
				prefix = ns.Personal[0].Prefix
			}
		}
		opts := &imap.ListOptions{}
		if caps.Has(imap.CapSpecialUse) && (caps.Has(imap.CapListExtended) || caps.Has(imap.CapIMAP4rev2)) {
			opts.ReturnSpecialUse = true
		}
		if caps.Has(imap.CapListStatus) || caps.Has(imap.CapIMAP4rev2) {
			// Every folder's numbers in the same round trip (RFC 5819).
			opts.ReturnStatus = folderStatus
		}
		// Which folders the user subscribed to (RFC 5258), for the
		// destination to subscribe the same (Mailbox.Unsubscribed).
		opts.ReturnSubscribed = caps.Has(imap.CapListExtended) || caps.Has(imap.CapIMAP4rev2)
		// Read as the answers arrive, each kept in a compact form: an
		// account of 100,000 folders does not hold 100,000 of go-imap's
		// LIST and STATUS structures at once.
		cmd := c.List("", "*", opts)
		for l := cmd.Next(); l != nil; l = cmd.Next() {
			list = append(list, compactList(l))
		}
		if err := cmd.Close(); err != nil {
			return fmt.Errorf("LIST: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	// Leading and trailing delimiters are dropped ("Archive/" is
	// "Archive"), unless that makes two server names one ("x" and "x/",
	// "/x"): then those that differ keep their empty parts, which sinks
	// escape. A name that still collides is left out with a warning.
	names := make([]string, len(list))
	for i, l := range list {
		if !l.nonExistent {
			names[i] = s.localName(l.Mailbox, l.Delim, prefix, false)
		}
	}
	for _, group := range sameNames(names, func(int) bool { return true }) {
		for _, i := range group {
			names[i] = s.localName(list[i].Mailbox, list[i].Delim, prefix, true)
		}
	}
	for i, l := range list {
		if names[i] == "" && !l.nonExistent { // "/": only delimiters
			names[i] = s.localName(l.Mailbox, l.Delim, prefix, true)
		}
	}
	inFolder := func(i int) bool {
		return s.cfg.Folder == "" || names[i] == s.cfg.Folder || strings.HasPrefix(names[i], s.cfg.Folder+"/")
	}
	for _, group := range sameNames(names, inFolder) {
		first := list[group[0]].Mailbox
		for _, i := range group[1:] {
			if list[i].Mailbox != first && s.Warn != nil {
				s.Warn(fmt.Errorf("%s %s: folder %q is not copied: its name %q is that of folder %q too (rename one on the server)", s.what(), s.cfg.Addr(), list[i].Mailbox, names[i], first))
			}
			names[i] = "" // the first in LIST order keeps the name
		}
	}
	// A server that marked no folder \Subscribed does not keep
	// subscriptions (or was not asked): every folder counts as subscribed.
	subs := false
	for _, l := range list {
		subs = subs || l.subscribed
	}
	out := make([]migrate.Mailbox, 0, len(list))
	for i, l := range list {
		name := names[i]
		if name == "" || !inFolder(i) {
			continue
		}
		mb := migrate.Mailbox{Name: name, NoSelect: l.noSelect, SpecialUse: l.specialUse, Unsubscribed: subs && !l.subscribed}
		migrate.GuessSpecialUse(&mb)
		s.mu.Lock()
		if name != l.Mailbox {
			s.server[name] = l.Mailbox
		} else {
			delete(s.server, name) // from an earlier listing
		}
		s.mu.Unlock()
		if st := l.statusData(); st != nil && !mb.NoSelect {
			s.setStatus(&mb, st)
		}
		out = append(out, mb)
	}
	if s.cfg.Folder != "" && len(out) == 0 {
		// A mistyped folder must not pass as a copy (or a check) of nothing.
		msg := fmt.Sprintf("the URL names folder %q, which the account does not have (its folders: %s)", s.cfg.Folder, someNames(names, 8))
		for i, l := range list {
			if names[i] != "" && l.Mailbox == s.cfg.Folder && names[i] != l.Mailbox {
				// The server's own spelling (Courier's "INBOX.Projects").
				msg += fmt.Sprintf("; mailhaul writes folder names with \"/\" between levels and without the server's namespace prefix: %q is %q", l.Mailbox, names[i])
				break
			}
		}
		return nil, migrate.FatalError(migrate.SelectionError(msg))
	}
	// The numbers of every selectable folder LIST did not give them for,
	// pipelined.
	type pending struct {
		i   int
		cmd *imapclient.StatusCommand
	}
	err = c.Do(ctx, func() error {
		var ps []pending
		for i, mb := range out {
			if mb.NoSelect || mb.Epoch != "" {
				continue
			}
			ps = append(ps, pending{i, c.Status(s.serverName(mb.Name), folderStatus)})
		}
		for _, p := range ps {
			st, err := p.cmd.Wait()
			if err != nil {
				if imapconn.IMAPError(err) != nil {
					// Listed but not readable: let List skip it.
					continue
				}
				return err
			}
			s.setStatus(&out[p.i], st)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	migrate.SortMailboxes(out)
	return out, nil
}

// sameNames groups the indexes of names that share a non-empty name, among
// those keep accepts, each group in ascending order; names held once are
// left out. Sorting instead of a map: an account may have 100,000
// folders.
func sameNames(names []string, keep func(int) bool) [][]int {
	var idx []int32
	for i, n := range names {
		if n != "" && keep(i) {
			idx = append(idx, int32(i))
		}
	}
	slices.SortStableFunc(idx, func(a, b int32) int { return strings.Compare(names[a], names[b]) })
	var groups [][]int
	for start := 0; start < len(idx); {
		end := start + 1
		for end < len(idx) && names[idx[end]] == names[idx[start]] {
			end++
		}
		if end-start > 1 {
			g := make([]int, 0, end-start)
			for _, i := range idx[start:end] {
				g = append(g, int(i))
			}
			groups = append(groups, g)
		}
		start = end
	}
	return groups
}

// folderStatus is what Mailboxes asks of every folder: its UIDVALIDITY
// (the Epoch) and what makes its Version.
var folderStatus = &imap.StatusOptions{UIDValidity: true, UIDNext: true, NumMessages: true}

// epoch returns folder's UIDVALIDITY as migrate.Mailbox.Epoch has it, ""
// when STATUS did not give it.
func (s *IMAP) epoch(folder string) string {
	s.mu.Lock()
	v := s.epochs[folder].uidValidity
	s.mu.Unlock()
	if v == 0 {
		return ""
	}
	return strconv.FormatUint(uint64(v), 10)
}

// folderStat is what Mailboxes learned of a folder that held messages.
type folderStat struct {
	uidValidity uint32
	messages    uint32 // MESSAGES (0: not sent)
}

// listed is what mailboxes keeps of one LIST answer.
type listed struct {
	Mailbox               string
	Delim                 rune
	noSelect, nonExistent bool
	subscribed            bool   // \Subscribed (LIST RETURN (SUBSCRIBED))
	specialUse            string // an RFC 6154 attribute, in its usual spelling
	// From LIST-STATUS: UIDVALIDITY (0: not sent), UIDNEXT and MESSAGES
	// (-1: not sent).
	uidValidity, uidNext uint32
	messages             int64
}

func compactList(l *imap.ListData) listed {
	out := listed{Mailbox: l.Mailbox, Delim: l.Delim, messages: -1,
		noSelect: imapconn.HasAttr(l, imap.MailboxAttrNoSelect), nonExistent: imapconn.HasAttr(l, imap.MailboxAttrNonExistent),
		subscribed: imapconn.HasAttr(l, imap.MailboxAttrSubscribed)}
	for _, a := range l.Attrs {
		switch u := string(a); strings.ToLower(u) {
		case `\sent`, `\drafts`, `\trash`, `\junk`, `\archive`, `\all`, `\flagged`:
			out.specialUse = `\` + strings.ToUpper(u[1:2]) + strings.ToLower(u[2:])
		}
	}
	if st := l.Status; st != nil {
		out.uidValidity, out.uidNext = st.UIDValidity, uint32(st.UIDNext)
		if st.NumMessages != nil {
			out.messages = int64(*st.NumMessages)
		}
	}
	return out
}

// statusData is what LIST-STATUS said of l, nil if it said nothing.
func (l listed) statusData() *imap.StatusData {
	if l.uidValidity == 0 {
		return nil
	}
	st := &imap.StatusData{Mailbox: l.Mailbox, UIDValidity: l.uidValidity, UIDNext: imap.UID(l.uidNext)}
	if l.messages >= 0 {
		n := uint32(l.messages)
		st.NumMessages = &n
	}
	return st
}

// setStatus sets mb's Epoch and Version from STATUS data. The Version is
// UIDVALIDITY/UIDNEXT/MESSAGES: a message added to the folder raises
// UIDNEXT (RFC 9051 2.3.1.1), one removed lowers MESSAGES. It is "" when
// the server left UIDNEXT or MESSAGES out.
func (s *IMAP) setStatus(mb *migrate.Mailbox, st *imap.StatusData) {
	mb.Epoch = strconv.FormatUint(uint64(st.UIDValidity), 10)
	mb.Version = ""
	if st.UIDNext != 0 && st.NumMessages != nil {
		mb.Version = fmt.Sprintf("%d/%d/%d", st.UIDValidity, st.UIDNext, *st.NumMessages)
	}
	// An empty folder is not listed (List), so nothing is fetched from it
	// under this epoch: only folders that hold messages are remembered.
	mb.Empty = st.NumMessages != nil && *st.NumMessages == 0
	folder := s.serverName(mb.Name)
	s.mu.Lock()
	if mb.Empty {
		delete(s.epochs, folder)
	} else {
		fs := folderStat{uidValidity: st.UIDValidity}
		if st.NumMessages != nil {
			fs.messages = *st.NumMessages
		}
		s.epochs[folder] = fs
	}
	s.mu.Unlock()
}

// localName turns a server mailbox name into mailhaul's "/" name, without
// leading and trailing "/" unless keepEmpty.
func (s *IMAP) localName(server string, delim rune, prefix string, keepEmpty bool) string {
	if strings.EqualFold(server, "INBOX") {
		return "INBOX"
	}
	n := server
	if prefix != "" && strings.HasPrefix(n, prefix) {
		n = n[len(prefix):]
	}
	if delim != 0 && delim != '/' {
		// A "/" inside a component cannot survive the translation.
		n = strings.ReplaceAll(n, "/", "_")
		n = strings.ReplaceAll(n, string(delim), "/")
	}
	if strings.EqualFold(n, "INBOX") {
		return "INBOX"
	}
	if keepEmpty {
		return n
	}
	return strings.Trim(n, "/")
}

func (s *IMAP) serverName(name string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if n, ok := s.server[name]; ok {
		return n
	}
	return name
}

// examine makes folder selected read-only on c and checks that its
// UIDVALIDITY is still epoch.
func (s *IMAP) examine(ctx context.Context, c *imapconn.Conn, folder, epoch string) (*imap.SelectData, error) {
	data, err := c.Select(ctx, folder, true)
	if err != nil {
		if imapconn.IMAPError(err) != nil {
			return nil, migrate.SkipMessage(fmt.Errorf("examine folder %q: %w", folder, err))
		}
		return nil, imapconn.Classify(fmt.Errorf("examine folder %q: %w", folder, err))
	}
	if epoch != "" && strconv.FormatUint(uint64(data.UIDValidity), 10) != epoch {
		return nil, migrate.SkipMessage(fmt.Errorf("folder %q: UIDVALIDITY changed from %s to %d during the run", folder, epoch, data.UIDValidity))
	}
	return data, nil
}

// examineThen is examine with the commands of send pipelined behind the
// EXAMINE (imapconn.Conn.SelectThen). A folder found empty by then
// answers nothing, whatever the commands' error (some servers refuse
// "1:*" in an empty folder).
func (s *IMAP) examineThen(ctx context.Context, c *imapconn.Conn, folder, epoch string, send func() func() error) error {
	data, err := c.SelectThen(ctx, folder, true, send)
	if data == nil {
		if err != nil && imapconn.IMAPError(err) != nil {
			return migrate.SkipMessage(fmt.Errorf("examine folder %q: %w", folder, err))
		}
		return imapconn.Classify(fmt.Errorf("examine folder %q: %w", folder, err))
	}
	if epoch != "" && strconv.FormatUint(uint64(data.UIDValidity), 10) != epoch {
		return migrate.SkipMessage(fmt.Errorf("folder %q: UIDVALIDITY changed from %s to %d during the run", folder, epoch, data.UIDValidity))
	}
	if data.NumMessages == 0 && imapconn.IMAPError(err) != nil {
		return nil
	}
	return err
}

// List implements migrate.Source: UIDs ascending, metadata fetched in
// batches of listBatch with UID FLAGS INTERNALDATE RFC822.SIZE and the
// Message-ID header; the connection is held only while a batch is read,
// never while fn runs. Called from the lister goroutine.
//
// A folder that STATUS found holding at most listBatch messages (most
// folders) is listed in one round trip: EXAMINE and UID FETCH 1:* are sent
// together (imapconn.Conn.SelectThen). A larger one is EXAMINEd, its UIDs
// searched and fetched listBatch at a time, so that the messages of one
// batch are all that is held.
func (s *IMAP) List(ctx context.Context, mb migrate.Mailbox, fn func(migrate.Message) error) error {
	folder := s.serverName(mb.Name)
	if mb.Empty {
		// The folder was empty when Mailboxes asked (LIST-STATUS or
		// STATUS): no EXAMINE. A message that arrives since raises UIDNEXT,
		// so the next run lists the folder (unchanged.go).
		return nil
	}
	var trimmed []imap.UID // messages whose flags keepFlags cut
	defer func() {
		if len(trimmed) > 0 && s.Warn != nil {
			s.Warn(fmt.Errorf("IMAP source %s folder %q: %d messages (UID %d first) have more than %d keywords or %d bytes of them; only the first are copied",
				s.cfg.Addr(), folder, len(trimmed), trimmed[0], maxKeywords, maxKeywordBytes))
		}
	}()
	var batch []migrate.Message
	var batchCut []imap.UID // trimmed in this batch: added to trimmed once it is delivered
	keep := func(buf *imapclient.FetchMessageBuffer) {
		msg := migrate.Message{Mailbox: mb.Name, ID: strconv.FormatUint(uint64(buf.UID), 10), Size: buf.RFC822Size, Date: buf.InternalDate, Loc: folder}
		for _, bs := range buf.BodySection {
			msg.MessageID = migrate.MessageIDFromHeader(bs.Bytes)
		}
		var cut bool
		if msg.Flags, cut = keepFlags(buf.Flags); cut {
			batchCut = append(batchCut, buf.UID)
		}
		batch = append(batch, msg)
	}
	deliver := func() error {
		trimmed = append(trimmed, batchCut...)
		sort.Slice(batch, func(i, j int) bool { return uidOf(batch[i]) < uidOf(batch[j]) })
		for _, m := range batch {
			if err := fn(m); err != nil {
				return err
			}
		}
		return nil
	}
	if s.fewMessages(folder) {
		err := imapconn.Retry(ctx, func() error {
			batch, batchCut = batch[:0], batchCut[:0]
			return imapconn.Classify(s.withConn(ctx, func(c *imapconn.Conn) error {
				return s.examineThen(ctx, c, folder, mb.Epoch, func() func() error {
					cmd := c.Fetch(imap.UIDSet{imap.UIDRange{Start: 1}}, listOptions)
					return func() error { return imapconn.CollectEach(c, cmd, imap.UIDSet{imap.UIDRange{Start: 1}}, keep) }
				})
			}))
		})
		if err != nil {
			return s.wrap(folder, "", err)
		}
		return deliver()
	}
	var uids []imap.UID
	// Each step is retried on a new connection when one breaks, so a lost
	// connection resumes the listing at the batch it interrupted.
	err := imapconn.Retry(ctx, func() error {
		return imapconn.Classify(s.withConn(ctx, func(c *imapconn.Conn) error {
			data, err := s.examine(ctx, c, folder, mb.Epoch)
			if err != nil || data.NumMessages == 0 {
				return err
			}
			return c.Do(ctx, func() error {
				sd, err := c.UIDSearch(&imap.SearchCriteria{}, nil).Wait()
				if err != nil {
					return err
				}
				uids = sd.AllUIDs()
				return nil
			})
		}))
	})
	if err != nil {
		return s.wrap(folder, "", err)
	}
	sort.Slice(uids, func(i, j int) bool { return uids[i] < uids[j] })
	for start := 0; start < len(uids); start += listBatch {
		end := min(start+listBatch, len(uids))
		err := imapconn.Retry(ctx, func() error {
			batch, batchCut = batch[:0], batchCut[:0]
			return imapconn.Classify(s.withConn(ctx, func(c *imapconn.Conn) error {
				if _, err := s.examine(ctx, c, folder, mb.Epoch); err != nil {
					return err
				}
				return c.Do(ctx, func() error {
					set := imap.UIDSetNum(uids[start:end]...)
					return imapconn.CollectEach(c, c.Fetch(set, listOptions), set, keep)
				})
			}))
		})
		if err != nil {
			return s.wrap(folder, "", err)
		}
		if err := deliver(); err != nil {
			return err
		}
	}
	return nil
}

// listOptions is what List fetches of every message.
var listOptions = &imap.FetchOptions{UID: true, Flags: true, InternalDate: true, RFC822Size: true,
	BodySection: []*imap.FetchItemBodySection{messageIDSection}}

// fewMessages says STATUS found folder holding at most listBatch messages
// (and some: an empty folder is not listed at all).
func (s *IMAP) fewMessages(folder string) bool {
	s.mu.Lock()
	st, ok := s.epochs[folder]
	s.mu.Unlock()
	return ok && st.messages > 0 && st.messages <= listBatch
}

// Bounds on the keywords kept of one message: far more than any mail
// client sets (Dovecot keeps at most 50 bytes per keyword by default, a
// Maildir 26 keywords per folder), few enough that the metadata of the
// messages in flight stays small.
const (
	maxKeywords     = 100
	maxKeywordBytes = 4 << 10
)

// keepFlags returns flags without \Recent, in IMAP spelling: the system
// flags, and the others (keywords, and flags such as \Junk that no client
// can store) in the server's order while there are at most maxKeywords of
// them holding at most maxKeywordBytes; cut says some were left out.
func keepFlags(flags []imap.Flag) (out []string, cut bool) {
	n, size := 0, 0
	var sys [len(systemFlags)]bool // each kept once, however often listed
	for _, f := range flags {
		i := systemFlag(f)
		switch {
		case strings.EqualFold(string(f), `\Recent`):
		case i >= 0:
			if !sys[i] {
				sys[i] = true
				out = append(out, string(f))
			}
		case n < maxKeywords && size+len(f) <= maxKeywordBytes:
			out = append(out, string(f))
			n++
			size += len(f)
		default:
			cut = true
		}
	}
	return out, cut
}

var systemFlags = [...]imap.Flag{imap.FlagSeen, imap.FlagAnswered, imap.FlagFlagged, imap.FlagDeleted, imap.FlagDraft}

// systemFlag is the index of f in systemFlags, -1 if it is none.
func systemFlag(f imap.Flag) int {
	for i, sf := range systemFlags {
		if strings.EqualFold(string(f), string(sf)) {
			return i
		}
	}
	return -1
}

// messageIDSection is BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]: listed with
// the metadata so the engine can re-match messages after a UIDVALIDITY
// change and check --dedupe without fetching bodies.
var messageIDSection = &imap.FetchItemBodySection{Specifier: imap.PartSpecifierHeader, HeaderFields: []string{"Message-ID"}, Peek: true}

func uidOf(m migrate.Message) uint64 {
	n, _ := strconv.ParseUint(m.ID, 10, 32)
	return n
}

func (s *IMAP) withConn(ctx context.Context, fn func(*imapconn.Conn) error) error {
	c, err := s.pool.Get(ctx)
	if err != nil {
		return err
	}
	err = fn(c)
	s.pool.Release(c, err)
	return err
}

func (s *IMAP) wrap(folder, id string, err error) error {
	if err == nil || errors.Is(err, context.Canceled) {
		return err
	}
	where := fmt.Sprintf("%s %s folder %q", s.what(), s.cfg.Addr(), folder)
	if id != "" {
		where += " UID " + id
	}
	return fmt.Errorf("%s: %w", where, imapconn.Classify(err))
}

// Fetch implements migrate.Source: UID FETCH BODY.PEEK[] streamed into w
// with io.Copy (never buffered here). Called concurrently by fetchers:
// fetches of the same folder share a connection (up to FetchDepth
// commands pipelined on it; go-imap routes each response by UID), other
// folders get their own.
//
// A message larger than rangeFetchOver is fetched in ranges of rangeSize
// (BODY.PEEK[]<offset.size>), and a connection lost mid-way resumes at the
// byte where it stopped, on a new connection: a 200 MB message over a slow
// link that drops is not fetched again from the start.
func (s *IMAP) Fetch(ctx context.Context, msg migrate.Message, w io.Writer) error {
	uid64, err := strconv.ParseUint(msg.ID, 10, 32)
	if err != nil {
		return migrate.SkipMessage(fmt.Errorf("IMAP source: bad message id %q", msg.ID))
	}
	uid := imap.UID(uid64)
	folder := s.folderOf(msg)
	if msg.Size <= rangeFetchOver {
		_, _, err := s.fetchPart(ctx, folder, uid, w, nil)
		return err
	}
	cw := &countingWriter{w: w}
	for {
		var n int64
		err := imapconn.Retry(ctx, func() error {
			start := cw.n
			_, _, err := s.fetchPart(ctx, folder, uid, cw, &imap.SectionPartial{Offset: start, Size: rangeSize})
			n = cw.n - start
			return err
		})
		if err != nil {
			return err
		}
		if n < rangeSize {
			return nil // the last range: shorter than asked
		}
	}
}

// Ranged fetches of large messages (see Fetch).
const (
	rangeFetchOver = 8 << 20
	rangeSize      = 4 << 20
)

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// fetchPart streams BODY.PEEK[] of uid in folder (or the part given) into
// w and classifies the outcome: a message expunged since listing or one
// the server refuses is skipped, a lost connection is retryable, and one
// lost inside this message's literal is retried and then skipped
// (migrate.RetryThenSkip): a server that always breaks off in the same
// message must not stop the run.
func (s *IMAP) fetchPart(ctx context.Context, folder string, uid imap.UID, w io.Writer, part *imap.SectionPartial) (found bool, n int64, err error) {
	epoch := s.epoch(folder)
	cut := false // the connection broke inside this message's literal
	key := folder
	if s.isSuspect(folder, uid) {
		// Its last fetch went down with its connection: fetched alone,
		// so that a message that breaks every connection it is on (a
		// server that always fails it) does not take the fetches
		// pipelined beside it down too, retry after retry, until they
		// give up and stop the run.
		key = cutKey(folder, uid)
	}
	sc, err := s.acquire(ctx, key, folder, epoch)
	if err == nil {
		section := &imap.FetchItemBodySection{Peek: true, Partial: part}
		err = s.doShared(ctx, sc, func(c *imapconn.Conn) error {
			cmd := c.Fetch(imap.UIDSetNum(uid), &imap.FetchOptions{UID: true, BodySection: []*imap.FetchItemBodySection{section}})
			for {
				m := cmd.Next()
				if m == nil {
					break
				}
				for {
					item := m.Next()
					if item == nil {
						break
					}
					if b, ok := item.(imapclient.FetchItemDataBodySection); ok && !found {
						found = true
						if b.Literal == nil {
							continue // NIL: nothing at this offset
						}
						k, err := imapconn.ReadLiteral(c, cmd, w, b.Literal)
						n += k
						if err != nil {
							cut = true
							return err // the connection is closed: no cmd.Close
						}
					}
				}
			}
			// The UID may have come after the body (orphans.go).
			taken, err := imapconn.CloseFetch(c, cmd, imap.UIDSetNum(uid))
			defer imapconn.DropOrphans(taken)
			if err != nil || found {
				return err
			}
			for _, o := range taken {
				if r, _, ok := o.Section(imapconn.WholeBody(part)); ok && !found {
					found = true
					k, err := io.Copy(w, r)
					n += k
					if err != nil {
						return err // w failed: the engine asks it
					}
				}
			}
			return nil
		})
	}
	// A failing spool (w) abandons the stream mid-literal: Release has
	// discarded the connection, and the engine, which asks the spool,
	// treats that failure as fatal whatever class is given here.
	if err != nil && imapconn.IMAPError(err) == nil && ctx.Err() == nil {
		s.suspect(folder, uid)
	}
	switch {
	case err != nil:
		if t := imapconn.Throttled(err); t != nil {
			s.shared.Throttled()
			return found, n, s.wrap(folder, fmt.Sprint(uid), t)
		}
		if ie := imapconn.IMAPError(err); ie != nil {
			return found, n, migrate.SkipMessage(s.wrap(folder, fmt.Sprint(uid), err))
		}
		if cut {
			err = migrate.RetryThenSkip(s.wrap(folder, fmt.Sprint(uid), err))
			if s.cutElsewhere(folder, uid, part, n) {
				// Not where an attempt broke off before: a link that
				// drops at random, not a server that always breaks off
				// at the same byte. Not counted.
				err = migrate.Progressed(err)
			}
			return found, n, err
		}
		return found, n, s.wrap(folder, fmt.Sprint(uid), err)
	case !found:
		return false, 0, migrate.SkipMessage(fmt.Errorf("%s %s folder %q UID %d: message no longer exists (expunged since listing)", s.what(), s.cfg.Addr(), folder, uid))
	}
	s.mu.Lock()
	delete(s.cuts, cutKey(folder, uid))
	delete(s.suspects, cutKey(folder, uid))
	s.mu.Unlock()
	return true, n, nil
}

// doShared runs fn on sc's connection (Conn.Do) and releases sc with the
// outcome. A panic in fn goes on up, and releases sc as broken (its
// stream is in an unknown state) instead of keeping its place for good.
func (s *IMAP) doShared(ctx context.Context, sc *imapconn.SharedConn, fn func(c *imapconn.Conn) error) error {
	released := false
	defer func() {
		if !released {
			s.shared.Release(sc, errPanicked)
		}
	}()
	err := sc.Conn.Do(ctx, func() error { return fn(sc.Conn) })
	released = true
	s.shared.Release(sc, err)
	return err
}

// what names the account in messages: "IMAP source", or "IMAP
// destination" when check reads the destination through a Source.
func (s *IMAP) what() string {
	if s.cfg.Role != "" {
		return "IMAP " + s.cfg.Role
	}
	return "IMAP source"
}

var errPanicked = errors.New("IMAP source: panic while the connection was in use")

// folderOf is the server name of msg's folder.
func (s *IMAP) folderOf(msg migrate.Message) string {
	if msg.Loc != "" {
		return msg.Loc
	}
	return s.serverName(msg.Mailbox)
}

// acquire gets a shared body connection (key: the folder, or a message
// fetched alone) with folder EXAMINEd, its UIDVALIDITY checked against
// epoch.
func (s *IMAP) acquire(ctx context.Context, key, folder, epoch string) (*imapconn.SharedConn, error) {
	return s.shared.Acquire(ctx, key, func(c *imapconn.Conn) error {
		_, err := s.examine(ctx, c, folder, epoch)
		return err
	})
}

// suspect records that a fetch of uid in folder went down with its
// connection (see isSuspect).
func (s *IMAP) suspect(folder string, uid imap.UID) {
	s.mu.Lock()
	s.suspects[cutKey(folder, uid)] = true
	s.mu.Unlock()
}

// isSuspect says the last fetch of uid in folder failed with its
// connection (not with an answer of the server's).
func (s *IMAP) isSuspect(folder string, uid imap.UID) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.suspects[cutKey(folder, uid)]
}

// cutElsewhere records that a fetch of uid in folder broke off after n
// bytes from part's offset, and reports whether that looks like a link
// that drops at random rather than a server that breaks off in this
// message: a new place, and fewer than maxCuts places so far. A server
// that always stops at the same byte gets false from the second cut on,
// so its retries are counted and the message is skipped; a random link
// gets its retries for free, at most maxCuts times.
func (s *IMAP) cutElsewhere(folder string, uid imap.UID, part *imap.SectionPartial, n int64) bool {
	at := n
	if part != nil {
		at += part.Offset
	}
	k := cutKey(folder, uid)
	s.mu.Lock()
	defer s.mu.Unlock()
	prev := s.cuts[k]
	if slices.Contains(prev, at) || len(prev) >= maxCuts {
		return false
	}
	s.cuts[k] = append(prev, at)
	return len(prev) > 0
}

// maxCuts bounds the fetches of one message that a dropping link may cut
// without counting against the retries.
const maxCuts = 20

func cutKey(folder string, uid imap.UID) string {
	return folder + "\x00" + strconv.FormatUint(uint64(uid), 10)
}

// Limits implements migrate.Source: the body connections, each
// pipelining FetchDepth fetches.
func (s *IMAP) Limits() migrate.Limits {
	return migrate.Limits{Connections: s.shared.Max(), Pipeline: s.shared.Depth()}
}

// Close implements migrate.Source.
func (s *IMAP) Close() error { return s.pool.Close() }

var _ migrate.Source = (*IMAP)(nil)

// someNames lists up to n of the folder names (INBOX first, the others
// sorted, "" left out) for an error message, saying how many more there
// are.
func someNames(names []string, n int) string {
	var all []string
	for _, name := range names {
		if name != "" {
			all = append(all, name)
		}
	}
	slices.SortFunc(all, func(a, b string) int {
		switch {
		case a == b:
			return 0
		case a == "INBOX":
			return -1
		case b == "INBOX":
			return 1
		}
		return strings.Compare(a, b)
	})
	all = slices.Compact(all)
	var out []string
	for i, name := range all {
		if i == n {
			out = append(out, fmt.Sprintf("and %d more", len(all)-n))
			break
		}
		out = append(out, fmt.Sprintf("%q", name))
	}
	return strings.Join(out, ", ")
}
