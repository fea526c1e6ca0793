package sources

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sync/semaphore"

	"github.com/mailhaul/mailhaul/internal/pop3conn"
	"github.com/mailhaul/mailhaul/migrate"
)

// POP3Options configure OpenPOP3.
type POP3Options struct {
	// Depth is how many RETRs are in flight on the session when the
	// server offers PIPELINING (default POP3Depth); without PIPELINING
	// one at a time.
	Depth int
	// MarkSeen gives every message the \Seen flag. POP3 has no flags:
	// by default messages arrive unread.
	MarkSeen bool
	// DeleteOlderThan limits Delete to messages whose header date (the
	// newest Received:, else Date:; see migrate.HeaderDate) is more than
	// this long ago; 0 deletes every copied message. A message whose
	// header has no date is kept.
	DeleteOlderThan time.Duration
	// InUseWait bounds how long a maildrop locked by another session
	// (-ERR [IN-USE] or [LOGIN-DELAY]) is waited for, trying again after
	// 1, 2, 4 ... 30 seconds (default 2 minutes); then the run stops.
	InUseWait time.Duration
	// Warn receives what the user should know (no UIDL, a locked
	// maildrop, messages kept on the server); Info what was done
	// (messages deleted). Both may be nil.
	Warn func(error)
	Info func(string)
	// StepHook, if set, is called with "dele" after each DELE the server
	// accepted, "quit" just before QUIT and "deleted" once QUIT was
	// answered. Crash tests kill the process there.
	StepHook func(string)
	// Now is the clock of DeleteOlderThan (default time.Now).
	Now func() time.Time
}

// POP3Depth is the default number of pipelined RETRs.
const POP3Depth = 64

// pop3InFlight bounds the bytes of the RETRs pipelined behind the one
// being received (by their listed sizes; a larger message goes alone).
// A graceful stop reads the replies under way to their end so that the
// session can still say RSET (pop3conn: Dovecot marks what a session
// retrieved \Seen unless RSET came first), within 5 s: 64 RETRs of large
// messages queued on a slow link took longer, the connection was cut and
// every retrieved message was marked read. 1 MiB is far above what keeps
// the link busy (20 ms at 10 MB/s is 200 KB).
const pop3InFlight = 1 << 20

// POP3 reads a POP3 maildrop: one mailbox, "INBOX", over one session (RFC
// 1939 allows one per maildrop, so Limits().Connections is 1; the session
// pipelines up to Depth RETRs when the server offers PIPELINING).
//
// Identity: Message.ID is the message's UIDL. A server without UIDL (or
// one that gives two messages the same UIDL) gets fingerprints instead:
// "fp:" + the first 24 hex digits of the SHA-256 of the header (TOP n 0) +
// ":" + the listed size, with "~N" for the N-th message with the same
// fingerprint. A warning says that resume is weaker then: a message whose
// header changes on the server is copied again, and identical twins are
// told apart only by their order.
//
// Message.Date is left zero (POP3 has no arrival date): the engine takes
// the internal date from the header. Message.Flags is empty, or `\Seen`
// with MarkSeen. Message.Size is the size LIST reports.
//
// The server is never changed, except by Delete (migrate.Deleter), which
// the engine calls only with --delete-after-copy. Servers record RETR on
// their own, though: Dovecot sets \Seen on messages a POP3 session
// retrieved, as seen by IMAP clients of the same mailbox.
//
// Sessions: the session opened by OpenPOP3 lists the messages (the listing
// is what List returns for the whole run). A session that breaks (network,
// timeout, a RETR cut short) is dropped; the failing Fetch returns a
// retryable error and the engine's retry dials a new session, which maps
// the IDs to its own message numbers (UIDL again, or fingerprints). A
// message gone from the server meanwhile is skipped. A maildrop locked by
// another session is waited for (InUseWait). -ERR [AUTH] and other refused
// logins are fatal.
//
// Mailboxes and List run on the lister goroutine; Fetch on up to Depth
// fetcher goroutines at once; Delete and Close on the goroutine that runs
// the engine. All are safe for concurrent use.
type POP3 struct {
	cfg *pop3conn.Config
	o   POP3Options

	mu           sync.Mutex
	sess         *pop3Session
	msgs         []pop3Msg      // the listing of the first session
	order        map[string]int // id -> message number in the first session
	fingerprints bool
	pipelining   bool
	closed       bool
	inFlight     *semaphore.Weighted // bytes of the RETRs under way (pop3InFlight)
}

type pop3Msg struct {
	num  int
	size int64
	id   string
}

type pop3Session struct {
	c   *pop3conn.Conn
	num map[string]int // id -> message number in this session
}

// OpenPOP3 opens the first session (waiting for a locked maildrop) and
// lists the maildrop. Errors are classified like Fetch's.
func OpenPOP3(ctx context.Context, cfg *pop3conn.Config, o POP3Options) (*POP3, error) {
	if o.Depth <= 0 {
		o.Depth = POP3Depth
	}
	if o.InUseWait <= 0 {
		o.InUseWait = 2 * time.Minute
	}
	if o.Warn == nil {
		o.Warn = func(error) {}
	}
	if o.Info == nil {
		o.Info = func(string) {}
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	s := &POP3{cfg: cfg, o: o, inFlight: semaphore.NewWeighted(pop3InFlight)}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := s.session(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *POP3) where() string {
	return fmt.Sprintf("POP3 server %s (account %s)", s.cfg.Addr(), s.cfg.User)
}

func (s *POP3) hook(step string) {
	if s.o.StepHook != nil {
		s.o.StepHook(step)
	}
}

// dial opens a session, waiting with backoff while the maildrop is in use.
func (s *POP3) dial(ctx context.Context) (*pop3conn.Conn, error) {
	deadline := time.Now().Add(s.o.InUseWait)
	delay := time.Second
	for {
		c, err := pop3conn.Dial(ctx, s.cfg)
		if err == nil || !pop3conn.InUse(err) {
			return c, err
		}
		if time.Now().Add(delay).After(deadline) {
			return nil, migrate.FatalError(fmt.Errorf("%w; the maildrop stayed locked for %s: close other mail clients of this account (or wait for them) and run again", err, s.o.InUseWait))
		}
		s.o.Warn(fmt.Errorf("%v; trying again in %s", err, delay))
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(delay):
		}
		delay = min(delay*2, 30*time.Second)
	}
}

// session returns the current session, opening (and indexing) a new one
// if there is none or it broke. Called with s.mu held.
func (s *POP3) session(ctx context.Context) (*pop3Session, error) {
	if s.closed {
		return nil, migrate.FatalError(fmt.Errorf("%s: source closed", s.where()))
	}
	if s.sess != nil && !s.sess.c.Broken() {
		return s.sess, nil
	}
	if s.sess != nil {
		s.sess.c.Abort()
		s.sess = nil
	}
	c, err := s.dial(ctx)
	if err != nil {
		return nil, err
	}
	msgs, fp, err := s.index(ctx, c)
	if err != nil {
		c.Abort()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if migrate.Classify(err) == migrate.Fatal && pop3conn.Lost(err) {
			err = migrate.Retryable(err)
		}
		return nil, fmt.Errorf("%s: list messages: %w", s.where(), err)
	}
	if s.order == nil {
		s.msgs, s.fingerprints, s.pipelining = msgs, fp, c.Pipelining()
		s.order = map[string]int{}
		for _, m := range msgs {
			s.order[m.id] = m.num
		}
		if fp {
			s.o.Warn(fmt.Errorf("%s gives no usable UIDL: messages are identified by a hash of their header and their size, so resume is weaker (a message whose header the server changes is copied again; identical messages are told apart only by their order)", s.where()))
		}
	}
	sess := &pop3Session{c: c, num: map[string]int{}}
	for _, m := range msgs {
		sess.num[m.id] = m.num
	}
	s.sess = sess
	return sess, nil
}

// drop forgets sess if it is still the current session.
func (s *POP3) drop(sess *pop3Session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sess.c.Abort()
	if s.sess == sess {
		s.sess = nil
	}
}

// index lists the messages of a fresh session with their ids.
func (s *POP3) index(ctx context.Context, c *pop3conn.Conn) ([]pop3Msg, bool, error) {
	list, err := c.List(ctx)
	if err != nil {
		return nil, false, err
	}
	msgs := make([]pop3Msg, len(list))
	pos := map[int]int{}
	for i, e := range list {
		msgs[i] = pop3Msg{num: e.Num, size: e.Size}
		pos[e.Num] = i
	}
	uidl, err := c.UIDL(ctx)
	if err != nil && pop3conn.ServerError(err) == nil {
		return nil, false, err
	}
	usable := err == nil
	if usable {
		seen := map[string]bool{}
		have := 0
		for _, e := range uidl {
			i, ok := pos[e.Num]
			if !ok || seen[e.UID] {
				usable = false
				break
			}
			seen[e.UID] = true
			msgs[i].id = e.UID
			have++
		}
		usable = usable && have == len(msgs)
	}
	if usable {
		return msgs, false, nil
	}
	// Fingerprints from the headers, pipelined.
	sums := make([]string, len(msgs))
	err = c.Batch(ctx, len(msgs), func(i int) pop3conn.Command {
		return pop3conn.Command{Verb: "TOP", Args: []string{strconv.Itoa(msgs[i].num), "0"}, Multi: true, Body: func(r io.Reader) error {
			h := sha256.New()
			_, err := io.Copy(h, r)
			sums[i] = hex.EncodeToString(h.Sum(nil))[:24]
			return err
		}}
	}, func(i int, err error) error {
		if err != nil {
			return migrate.FatalError(fmt.Errorf("the server has no UIDL, and TOP %d 0 (needed to identify messages without UIDL) failed: %w", msgs[i].num, err))
		}
		return nil
	})
	if err != nil {
		return nil, true, err
	}
	twins := map[string]int{}
	for i := range msgs {
		fp := "fp:" + sums[i] + ":" + strconv.FormatInt(msgs[i].size, 10)
		twins[fp]++
		if k := twins[fp]; k > 1 {
			fp += "~" + strconv.Itoa(k)
		}
		msgs[i].id = fp
	}
	return msgs, true, nil
}

// Mailboxes implements migrate.Source: POP3 has one mailbox, INBOX.
func (s *POP3) Mailboxes(ctx context.Context) ([]migrate.Mailbox, error) {
	return []migrate.Mailbox{{Name: "INBOX"}}, nil
}

// List implements migrate.Source: the messages of the first session, in
// the server's order. Called from the lister goroutine.
func (s *POP3) List(ctx context.Context, mb migrate.Mailbox, fn func(migrate.Message) error) error {
	if mb.Name != "INBOX" {
		return nil
	}
	s.mu.Lock()
	msgs := s.msgs
	s.mu.Unlock()
	var flags []string
	if s.o.MarkSeen {
		flags = []string{`\Seen`}
	}
	for _, m := range msgs {
		if err := ctx.Err(); err != nil {
			return err
		}
		err := fn(migrate.Message{Mailbox: "INBOX", ID: m.id, Size: m.size, Flags: flags, Loc: strconv.Itoa(m.num)})
		if err != nil {
			return err
		}
	}
	return nil
}

// Fetch implements migrate.Source: RETR streamed into w. Called from
// fetcher goroutines; their RETRs share the session (pipelined). A
// connection lost during the RETR drops the session and returns a
// retryable error (the retry opens a new one); -ERR [SYS/TEMP] is
// retryable; other -ERR replies and a message no longer on the server skip
// the message.
func (s *POP3) Fetch(ctx context.Context, msg migrate.Message, w io.Writer) error {
	s.mu.Lock()
	sess, err := s.session(ctx)
	s.mu.Unlock()
	if err != nil {
		return err
	}
	n, ok := sess.num[msg.ID]
	if !ok {
		return migrate.SkipMessage(fmt.Errorf("%s: message %s is no longer on the server", s.where(), msg.ID))
	}
	weight := min(max(msg.Size, 1), pop3InFlight)
	if err := s.inFlight.Acquire(ctx, weight); err != nil {
		return err // ctx ended: nothing was sent
	}
	_, err = sess.c.Retr(ctx, n, w)
	s.inFlight.Release(weight)
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil:
		return ctx.Err()
	case pop3conn.Lost(err):
		s.drop(sess)
		return migrate.Retryable(fmt.Errorf("RETR of message %s (number %d): %w", msg.ID, n, err))
	case pop3conn.Temporary(err):
		return migrate.Retryable(fmt.Errorf("%s: RETR of message %s (number %d): %w", s.where(), msg.ID, n, err))
	}
	return migrate.SkipMessage(fmt.Errorf("%s: RETR of message %s (number %d): %w", s.where(), msg.ID, n, err))
}

// Delete implements migrate.Deleter for --delete-after-copy: in one
// session, the messages of ids still on the server (and, with
// DeleteOlderThan, dated before the cut-off) are marked with DELE, then
// QUIT commits. If anything fails before QUIT was answered, the
// connection is closed without QUIT and the server deletes nothing (RFC
// 1939); a QUIT whose answer was lost leaves it unknown whether the marked
// messages were removed, which the next run sees. Called once by the
// engine after the run, from its goroutine.
func (s *POP3) Delete(ctx context.Context, folder string, ids []string) error {
	if folder != "INBOX" || len(ids) == 0 {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	sess, err := s.session(ctx)
	if err != nil {
		return err
	}
	c := sess.c
	var nums []int
	for _, id := range ids {
		if n, ok := sess.num[id]; ok {
			nums = append(nums, n)
		}
	}
	kept, undated := 0, 0
	if s.o.DeleteOlderThan > 0 && len(nums) > 0 {
		cutoff := s.o.Now().Add(-s.o.DeleteOlderThan)
		dates := make([]time.Time, len(nums))
		err := c.Batch(ctx, len(nums), func(i int) pop3conn.Command {
			return pop3conn.Command{Verb: "TOP", Args: []string{strconv.Itoa(nums[i]), "0"}, Multi: true, Body: func(r io.Reader) error {
				h, err := io.ReadAll(io.LimitReader(r, 1<<20))
				dates[i] = migrate.HeaderDate(h)
				return err
			}}
		}, func(i int, err error) error { return err })
		if err != nil {
			s.abort(sess)
			return fmt.Errorf("%s: read message dates for --delete-older-than: %w; nothing was deleted", s.where(), err)
		}
		var old []int
		for i, d := range dates {
			switch {
			case d.IsZero():
				undated++
			case d.Before(cutoff):
				old = append(old, nums[i])
			default:
				kept++
			}
		}
		nums = old
	}
	if undated > 0 {
		s.o.Warn(fmt.Errorf("%s: %d copied messages have no date in their header and were left on the server (--delete-older-than)", s.where(), undated))
	}
	if len(nums) == 0 {
		if kept > 0 {
			s.o.Info(fmt.Sprintf("%s: nothing deleted; %d copied messages are newer than --delete-older-than", s.where(), kept))
		}
		return nil
	}
	err = c.Batch(ctx, len(nums), func(i int) pop3conn.Command {
		return pop3conn.Command{Verb: "DELE", Args: []string{strconv.Itoa(nums[i])}}
	}, func(i int, err error) error {
		if err != nil {
			return err
		}
		c.MarkedDeleted(1)
		s.hook("dele")
		return nil
	})
	if err != nil {
		s.abort(sess)
		return fmt.Errorf("%s: DELE: %w; the session was closed without QUIT, nothing was deleted", s.where(), err)
	}
	if err := ctx.Err(); err != nil {
		s.abort(sess)
		return fmt.Errorf("%s: %w before QUIT; the session was closed without QUIT, nothing was deleted", s.where(), err)
	}
	s.hook("quit")
	err = c.Quit(ctx)
	s.sess = nil
	if err != nil {
		return fmt.Errorf("%s: QUIT after marking %d messages for deletion: %w; the server may or may not have removed them (the next run sees what is left)", s.where(), len(nums), err)
	}
	s.hook("deleted")
	msg := fmt.Sprintf("%s: deleted %d copied messages from the server", s.where(), len(nums))
	if kept > 0 {
		msg += fmt.Sprintf(" (%d newer than --delete-older-than kept)", kept)
	}
	s.o.Info(msg)
	return nil
}

// abort closes sess without QUIT. Called with s.mu held.
func (s *POP3) abort(sess *pop3Session) {
	sess.c.Abort()
	if s.sess == sess {
		s.sess = nil
	}
}

// POP3UIDL reports the UIDL of the message with id and its number in the
// server's listing of this run (0 when it was not listed, e.g. a message
// recovered from an earlier run), for a sink that keeps POP3 UIDLs
// (--keep-pop3-uidl). ok is false when the server gives no UIDL (ids are
// fingerprints) or folder is not INBOX. Safe for concurrent use.
func (s *POP3) POP3UIDL(folder, id string) (uidl string, order int, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if folder != "INBOX" || s.fingerprints || s.order == nil {
		return "", 0, false
	}
	return id, s.order[id], true
}

// Limits implements migrate.Source: one session, Depth RETRs in flight
// when the server offers PIPELINING.
func (s *POP3) Limits() migrate.Limits {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.pipelining {
		return migrate.Limits{Connections: 1, Pipeline: 1}
	}
	return migrate.Limits{Connections: 1, Pipeline: s.o.Depth}
}

// Close implements migrate.Source: the reading session is told to forget
// what it retrieved (pop3conn.Conn.Forget: Dovecot would otherwise mark
// every message read over POP3 \Seen, which its IMAP side shows), then
// QUIT. (Delete ends its session itself; messages it retrieved and kept
// may then be marked \Seen by such a server: the user asked for the
// source to change.)
func (s *POP3) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	if s.sess != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := s.sess.c.Forget(ctx); err != nil {
			s.o.Warn(fmt.Errorf("%s: RSET before QUIT: %w (the server may mark the messages read as seen)", s.where(), err))
		}
		cancel()
		s.sess.c.Close()
		s.sess = nil
	}
	return nil
}

var (
	_ migrate.Source  = (*POP3)(nil)
	_ migrate.Deleter = (*POP3)(nil)
)
