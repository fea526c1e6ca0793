package sinks

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"github.com/emersion/go-imap/v2"

	"github.com/mailhaul/mailhaul/internal/imapconn"
	"github.com/mailhaul/mailhaul/migrate"
)

// IMAP appends to an IMAP account through a pool of connections. The type
// is split by job, one file each:
//
//   - imap.go          connections, capabilities, refs, limits
//   - imap_folders.go  folder names, Prepare, special-use mapping, the
//     flags a folder keeps
//   - imap_append.go   Append (CRLF, flags, date, errors)
//   - imap_locate.go   Mark, Locate and Remove: finding (and undoing) the
//     copies of uncertain appends
//   - imap_index.go    Index, for --dedupe
//
// Folder names: Prepare turns mailhaul's "/" names into the server's
// syntax (personal namespace prefix such as Courier's "INBOX." and the
// hierarchy delimiter) and returns that server name; Append and the
// intents recorded by the engine use it. Components are escaped so that
// distinct source folders stay distinct (imap_names.go); a name the server
// refuses is escaped further and created again, with a warning.
//
// Special use: a source folder with SpecialUse \Sent, \Drafts, \Trash,
// \Junk or \Archive lands in the destination folder with that attribute
// (LIST RETURN (SPECIAL-USE)), else in an existing folder whose well-known
// name has that use, else in a new folder created with CREATE ... (USE
// (...)) when the server has CREATE-SPECIAL-USE.
//
// Append sends the CRLF form of the body (IMAP requires CRLF line endings:
// every bare LF becomes CRLF, nothing else changes; see migrate/crlf.go),
// with the flags the folder's PERMANENTFLAGS allow (others dropped with one
// warning per folder and flag; \Recent never sent) and the internal date.
// Refs are "uidvalidity:uid:folder" (from APPENDUID): a ref identifies its
// copy on its own, on servers such as Courier and Cyrus that give several
// folders the same UIDVALIDITY too. On a server without UIDPLUS the copy is
// looked up right after the APPEND (Locate above the folder's mark, the
// newest copy not claimed yet); if that is not conclusive the ref is
// unverified ("?uidvalidity:0:folder", see migrate.UnverifiedPrefix).
//
// Errors: [TOOBIG], APPENDLIMIT exceeded and other NO/BAD replies to an
// APPEND skip the message; [OVERQUOTA], a reply that says the server's
// disk is full and a run of [SERVERBUG] refusals are fatal (failing.go); [TRYCREATE] creates the
// folder and retries once; a connection that broke before the APPEND was
// sent is retryable, one that broke after is migrate.Uncertain (the engine
// settles it with Locate before sending again). The pool redials.
type IMAP struct {
	cfg    *imapconn.Config
	pool   *imapconn.Pool
	shared *imapconn.Shared // appends
	warn   func(error)
	// dropped reports messages stored without some flags (SetDropped).
	dropped func(dest string, msg migrate.Message, flags []string, why string)

	mu      sync.Mutex
	meta    *serverMeta
	folders map[string]*folderInfo // server name -> info
	// flagSets holds each distinct PERMANENTFLAGS set once (by its
	// lower-cased flags, joined): folderInfo.permanent shares them, as
	// most folders of a server keep the same flags (100,000 folders held
	// 28 MB of identical maps).
	flagSets map[string]map[string]bool
	warned   map[string]bool
	// noSubscribe: the server refused a SUBSCRIBE; no other is sent.
	noSubscribe bool
	claimed     map[string]bool   // refs identified after APPENDs without APPENDUID
	failing     serverBugs        // APPENDs refused with [SERVERBUG] since the last one stored (failing.go)
	assigned    map[string]string // destination folder -> the source folder Prepare gave it
	reserved    map[string]string // destination folder -> the planned source folder named so (Plan)
	prefixTo    string            // endpoint folder (server syntax) everything goes under
	// What the server refuses in folder names, learned from NO [CANNOT]
	// (see imap_names.go), and the names it found too long.
	rules   nameRules
	tooLong map[string]bool
	hashes  map[string]sums // ref -> hashes of a copy Locate fetched
}

type serverMeta struct {
	delim       rune
	prefix      string
	caps        imap.CapSet
	appendLimit int64 // 0: none advertised
	// list is the destination's folders that findByUse may pick (a
	// special-use attribute or a well-known name), as LIST gave them and
	// as Prepare created them since; names holds every folder that exists
	// (INBOX under "INBOX", whatever its case): an account of 100,000
	// folders keeps a set of names, not 100,000 LIST answers. Both change
	// only under IMAP.mu, or before the meta is shared.
	list  []*imap.ListData
	names map[string]bool
	// escaped says a folder LIST gave holds a "~": an earlier run may
	// have escaped names this run has not learned to (escapedTwinLocked).
	escaped bool
	// unsubscribed holds the selectable folders LIST said are not
	// subscribed, when the server can say (LIST-EXTENDED, IMAP4rev2);
	// Dovecot, for one, creates its special folders (auto = create)
	// unsubscribed.
	unsubscribed map[string]bool
}

// add records a folder LIST gave or Prepare created.
func (m *serverMeta) add(d *imap.ListData) {
	if m.names == nil {
		m.names = map[string]bool{}
	}
	if !imapconn.HasAttr(d, imap.MailboxAttrNonExistent) {
		if strings.EqualFold(d.Mailbox, "INBOX") {
			m.names["INBOX"] = true
		}
		m.names[d.Mailbox] = true
	}
	if m.mayHaveUse(d) {
		m.list = append(m.list, d)
	}
}

// mayHaveUse reports whether findByUse may pick d: it has the attribute of
// a use the sink maps, or the well-known name of one.
func (m *serverMeta) mayHaveUse(d *imap.ListData) bool {
	for _, a := range d.Attrs {
		for use := range mappedUses {
			if strings.EqualFold(string(a), use) {
				return true
			}
		}
	}
	return mappedUses[migrate.SpecialUseByName(m.localName(d))]
}

// localName is d's name as findByUse compares it with well-known names.
func (m *serverMeta) localName(d *imap.ListData) string {
	n := strings.TrimPrefix(d.Mailbox, m.prefix)
	if d.Delim != 0 {
		n = strings.ReplaceAll(n, string(d.Delim), "/")
	}
	return n
}

// uidPlus reports whether APPEND returns APPENDUID and UID EXPUNGE exists.
func (m *serverMeta) uidPlus() bool {
	return m.caps.Has(imap.CapUIDPlus) || m.caps.Has(imap.CapIMAP4rev2)
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
// connection to itself); one more connection serves Prepare, Mark, Index,
// Locate and Remove. warn, if not nil, receives non-fatal problems
// (dropped flags).
func OpenIMAP(ctx context.Context, cfg *imapconn.Config, conns int, warn func(error)) (*IMAP, error) {
	if conns <= 0 {
		conns = 4
	}
	if warn == nil {
		warn = func(error) {}
	}
	pool := imapconn.NewPool(cfg, conns+1)
	s := &IMAP{cfg: cfg, pool: pool, warn: warn,
		folders: map[string]*folderInfo{}, flagSets: map[string]map[string]bool{}, warned: map[string]bool{}, claimed: map[string]bool{}, assigned: map[string]string{}, tooLong: map[string]bool{}, hashes: map[string]sums{}}
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
	if !s.meta.uidPlus() {
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

func (s *IMAP) metaNow() *serverMeta {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.meta
}

// makeRef is the ref of the copy at uid in folder.
func makeRef(uidValidity uint32, uid imap.UID, folder string) string {
	return fmt.Sprintf("%d:%d:%s", uidValidity, uid, folder)
}

// parseRef splits "uidvalidity:uid:folder".
func parseRef(ref string) (uidValidity uint32, uid imap.UID, folder string, ok bool) {
	parts := strings.SplitN(ref, ":", 3)
	if len(parts) != 3 {
		return 0, 0, "", false
	}
	v, err1 := strconv.ParseUint(parts[0], 10, 32)
	u, err2 := strconv.ParseUint(parts[1], 10, 32)
	if err1 != nil || err2 != nil {
		return 0, 0, "", false
	}
	return uint32(v), imap.UID(u), parts[2], true
}

// Limits implements migrate.Sink: the appending connections, each
// pipelining up to AppendDepth appends.
func (s *IMAP) Limits() migrate.Limits {
	return migrate.Limits{Connections: s.shared.Max(), Pipeline: s.shared.Depth()}
}

// CRLF implements migrate.CRLFSink.
func (s *IMAP) CRLF() {}

// Close implements migrate.Sink: logs out every connection.
func (s *IMAP) Close() error { return s.pool.Close() }

var (
	_ migrate.Indexer     = (*IMAP)(nil)
	_ migrate.Sink        = (*IMAP)(nil)
	_ migrate.Finder      = (*IMAP)(nil)
	_ migrate.Remover     = (*IMAP)(nil)
	_ migrate.CRLFSink    = (*IMAP)(nil)
	_ migrate.FlagDropper = (*IMAP)(nil)
	_ migrate.Planner     = (*IMAP)(nil)
)
