// Package migrate holds mailhaul's shared vocabulary (Mailbox, Message,
// Source, Sink, Body, Reporter) and the engine that copies messages from a
// Source to a Sink with a crash-safe checkpoint.
//
// One pass through this package shows the whole life of a message:
//
//   - run.go      Run: recover pending intents, then start the pipeline.
//   - list.go     the lister: mailboxes are listed, filtered, mapped,
//     prepared on the sink, and each message not yet copied is queued.
//   - fetch.go    fetchers: a message body is fetched and spooled (Body).
//   - append.go   appenders: intent recorded, message appended, done recorded
//     (group commit per batch).
//   - recover.go  pending intents of a killed run are resolved on the sink.
//   - check.go    Check, behind `mailhaul check`: both sides listed and
//     compared folder by folder (check_match.go decides, check_read.go
//     reads headers and hashes).
//
// The engine never touches the terminal: it reports through a Reporter and
// returns a Report; cmd/mailhaul renders both.
package migrate

import (
	"context"
	"io"
	"strings"
	"time"
)

// Mailbox is one folder of a store.
//
// Name is UTF-8 with "/" as the hierarchy separator whatever the backend
// uses; backends translate IMAP delimiters, modified UTF-7 and Maildir++
// ".a.b" names. The inbox is always called "INBOX".
type Mailbox struct {
	Name string
	// SpecialUse is an RFC 6154 attribute such as `\Sent` or `\Trash`, taken
	// from the server or guessed from a well-known name; "" if none.
	SpecialUse string
	// Epoch is what makes message IDs meaningful: IMAP UIDVALIDITY, ""
	// for stores whose IDs never reset (Maildir, mbox, POP3).
	Epoch string
	// Version changes whenever a message is added to the folder (IMAP:
	// UIDVALIDITY, UIDNEXT and MESSAGES); "" when the source cannot tell
	// cheaply. A folder whose Version is the one a run finished it at is
	// not listed again (unchanged.go).
	Version string
	// UseGuessed says SpecialUse comes from the folder's name, not from an
	// attribute the store gave it. The engine decides which folder keeps
	// a guessed use (AssignSpecialUses).
	UseGuessed bool
	// NoSelect is set for folders that exist only as structure; they are
	// created on the sink but hold no messages.
	NoSelect bool
	// Empty says the source found no message in the folder when it
	// listed folders (IMAP: STATUS MESSAGES 0, from LIST-STATUS or a
	// pipelined STATUS); its List then returns nothing without asking the
	// store again. A sink may leave what it does only for a folder's
	// messages (IMAP: the SELECT that learns PERMANENTFLAGS and UIDNEXT)
	// to the first Append, which must still work if a message does come:
	// most of an account of 100,000 folders is empty.
	Empty bool
	// Unsubscribed says the source keeps subscriptions (IMAP: LIST
	// RETURN (SUBSCRIBED) marked some folders \Subscribed) and this folder
	// is not one of them. A sink that keeps subscriptions subscribes the
	// folders it creates, except these: mail clients such as Thunderbird
	// show only subscribed IMAP folders, so a folder copied from a local
	// store (which has no subscriptions) must be subscribed to be seen.
	Unsubscribed bool
}

// Message is the metadata of one message, never its body.
type Message struct {
	// Mailbox is the source mailbox name ("/"-separated).
	Mailbox string
	// ID is stable within Mailbox+Epoch: IMAP UID, POP3 UIDL, Maildir
	// unique name, mbox content hash (+ ordinal).
	ID string
	// Size in bytes as the source reports it; -1 when unknown.
	Size int64
	// Flags in IMAP spelling: `\Seen`, `\Answered`, `\Flagged`, `\Draft`,
	// `\Deleted`, `$Forwarded` and keywords.
	Flags []string
	// Date is the internal (arrival) date; zero when unknown.
	Date time.Time
	// Expunged is set for a message the source store already treats as
	// gone although its bytes are still there (Thunderbird's
	// expunged-but-not-compacted, X-Mozilla-Status 0x0008): it is left out
	// unless Options.IncludeDeleted. Flags then hold \Deleted.
	Expunged bool
	// PriorDate is the date an earlier mailhaul gave the message, where it
	// differs from Date (an mbox message under Thunderbird's From_ line
	// was dated by that line): the first-contact comparison, which
	// compares dates, also takes a copy of that date for it. Zero for most.
	PriorDate time.Time
	// MessageID is the Message-ID header, filled by sources that get it
	// cheaply while listing (IMAP); "" otherwise. It is used to re-match
	// messages after an epoch (UIDVALIDITY) change.
	MessageID string
	// Loc is a source-private locator (a file path, a byte offset); the
	// engine passes it back to Fetch and never interprets it.
	Loc string
}

// Limits tells the engine how many goroutines may use a backend at once.
type Limits struct {
	// Connections is the number of concurrent Fetch (source) or Append
	// (sink) calls the backend supports; 0 means "no limit of its own".
	Connections int
	// Pipeline is how many calls one connection carries at once (commands
	// pipelined on the wire); 0 or 1 means one. The engine runs
	// min(Options.Transfers, Connections) * Pipeline concurrent callers, so
	// Transfers bounds connections, not commands in flight.
	Pipeline int
}

// conns is how many connections a backend with limits l uses when the
// user allows transfers.
func (l Limits) conns(transfers int) int {
	if l.Connections > 0 && l.Connections < transfers {
		return l.Connections
	}
	return transfers
}

// callers is how many goroutines may call a backend with limits l when the
// user allows transfers connections.
func (l Limits) callers(transfers int) int {
	return l.conns(transfers) * max(1, l.Pipeline)
}

// Source reads a mail store. A Source never changes the store it reads.
//
// Mailboxes and List are called from the engine's single lister goroutine;
// Fetch is called concurrently from up to Limits().Connections (times
// Limits().Pipeline) fetcher goroutines. Errors are classified with
// SkipMessage / Retryable; any other error is fatal and stops the run.
type Source interface {
	// Mailboxes returns every folder of the store, parents before children,
	// in a slice the caller owns (the engine filters and edits it in place).
	Mailboxes(ctx context.Context) ([]Mailbox, error)
	// List calls fn for every message of mb in a stable order. If fn
	// returns an error, List stops and returns it.
	List(ctx context.Context, mb Mailbox, fn func(Message) error) error
	// Fetch writes the exact bytes of msg to w.
	Fetch(ctx context.Context, msg Message, w io.Writer) error
	Limits() Limits
	Close() error
}

// BatchFetcher is implemented by sources that can fetch several messages
// of one folder in one request (IMAP: one UID FETCH of a set of UIDs, where
// Fetch costs a command, a reply and a wakeup per message). A fetcher
// calls FetchBatch for a run of two or more small messages of one folder
// of the same listing (see fetchUnits), concurrently, as it calls Fetch.
type BatchFetcher interface {
	// FetchBatch writes the exact bytes of msgs[i] to ws[i] and reports
	// which messages it wrote in full. It returns no error: a message not
	// reported done (gone, refused, cut off, never sent, or its writer
	// failed) is fetched again with Fetch, whose error classifies it, into
	// a fresh writer; what was written to its ws[i] is discarded. A
	// message reported done has had all its bytes, and nothing else,
	// written to ws[i].
	FetchBatch(ctx context.Context, msgs []Message, ws []io.Writer) (done []bool)
}

// Sink writes to a mail store.
//
// Prepare is called from the engine's preparer goroutine, one folder at a
// time in the order of the plan, before any Append to that folder and
// while the lister, appenders and settler go on with earlier folders: it
// must be safe to run at the same time as Index and the other methods the
// lister calls (an Indexer's, a dedupe index's), Append, Locate and Mark; Append is called concurrently from up to
// Limits().Connections (times Limits().Pipeline) appender goroutines.
type Sink interface {
	// Prepare creates (if needed) the destination folder called name, for
	// messages coming from src, and returns the name to pass to Append.
	// The sink may choose another folder, e.g. the one with the same
	// special use.
	Prepare(ctx context.Context, src Mailbox, name string) (string, error)
	// Append stores msg with the contents of body in folder and returns
	// the sink's reference for the stored copy (IMAP "uidvalidity:uid",
	// Maildir file name). The copy need not be durable until Sync.
	Append(ctx context.Context, folder string, msg Message, body *Body) (ref string, err error)
	Limits() Limits
	Close() error
}

// Planner is implemented by sinks that map folders by more than their
// names (IMAP special-use mapping): before the first Prepare the engine
// tells them every folder the run will prepare, source mailbox and the
// name it will ask for, so that a folder found by special use is never one
// that another source folder's name maps to — whatever folders earlier
// runs created, so that every run maps the same way. Called once, from
// Run's goroutine.
type Planner interface {
	Plan(folders []PlannedFolder)
}

// PlannedFolder is one folder a run will prepare: two names, as a run may
// plan 100,000.
type PlannedFolder struct {
	Source string // the source folder's name
	Name   string // as passed to Prepare
}

// FlagDropper is implemented by sinks that store a message without some of
// its flags when the destination cannot keep them (IMAP PERMANENTFLAGS, the
// 26 keywords of a Dovecot Maildir folder). Run calls SetDropped once,
// before anything else, with the function through which the sink reports
// each such message (from the appender goroutines: it must not block); the
// run's report lists them per destination folder and flag.
type FlagDropper interface {
	SetDropped(func(dest string, msg Message, flags []string, why string))
}

// UnverifiedPrefix starts a ref a sink returns for a copy it stored but
// cannot point to (an IMAP server without UIDPLUS where the copy was not
// found right after the APPEND): it is recorded as copied, but never taken
// to identify one particular message. Such a ref ends in "#" and the
// stored hash of the copy (UnverifiedRef), so that the engine knows one of
// the candidates with that content belongs to it and is not free for a
// twin (see engine.pick).
const UnverifiedPrefix = "?"

// UnverifiedRef builds an unverified ref from what the sink knows (its
// folder, say) and the copy's stored hash.
func UnverifiedRef(where, storedSHA256 string) string {
	return UnverifiedPrefix + where + "#" + storedSHA256
}

// Unverified reports whether ref starts with UnverifiedPrefix.
func Unverified(ref string) bool { return strings.HasPrefix(ref, UnverifiedPrefix) }

// unverifiedSum is the stored hash an unverified ref ends with.
func unverifiedSum(ref string) string {
	if i := strings.LastIndexByte(ref, '#'); i >= 0 {
		return ref[i+1:]
	}
	return ""
}

// Syncer is implemented by sinks whose Append is not durable on its own.
// The engine calls Sync for every folder of a batch before it records the
// batch as done.
type Syncer interface {
	Sync(ctx context.Context, folder string) error
}

// FolderSyncer is implemented by sinks whose Prepare is not durable on
// its own (a Maildir folder is directories, made durable by the next sync
// of the file system). The engine calls SyncFolders once, from Run's
// goroutine, before it records folders as finished (unchanged.go): a
// folder a later run skips must exist after a crash. An error is fatal.
type FolderSyncer interface {
	SyncFolders(ctx context.Context) error
}

// Orderless is implemented by a sink that keeps no storage order of its
// own (a Maildir: its messages are files, ordered by name if at all).
// The engine then appends a folder's messages by whichever appender is
// free, not in the source's order (order.go).
type Orderless interface {
	Orderless()
}

// BatchSink is implemented by sinks that can store several messages of one
// folder in one operation (IMAP MULTIAPPEND: one transaction on the
// server, which is what an IMAP server's cost is counted in). Appenders
// call AppendBatch instead of Append for two or more messages of one
// destination folder, concurrently, as they call Append.
type BatchSink interface {
	// BatchLimits bounds one call: messages and bytes (0 messages: the
	// sink cannot batch now).
	BatchLimits() (messages int, bytes int64)
	// AppendBatch stores msgs (bodies[i] is msgs[i]'s) in folder and
	// returns for each what Append would: its ref, or its error, with
	// the same classification. A batch whose outcome is unknown has every
	// message Uncertain; one the destination refused as a whole has every
	// message Retryable, and the engine appends them one by one.
	AppendBatch(ctx context.Context, folder string, msgs []Message, bodies []*Body) (refs []string, errs []error)
}

// Finder is implemented by sinks that can recognise a copy whose Append
// outcome is unknown: written by a run that died before recording it, or
// sent on a connection that was lost before the reply came (an *uncertain*
// append, see settle.go). Without a Finder, an uncertain append is sent
// again (never lost, possibly duplicated) and reported.
type Finder interface {
	// Mark returns a position in folder such that a copy appended after
	// the call lies above it (IMAP: UIDVALIDITY and a UID no higher than
	// UIDNEXT). It is stored with each intent and bounds the search of
	// Locate. Called by appenders once per batch and folder, concurrently:
	// it must be cheap (no round trip when the sink already knows).
	Mark(ctx context.Context, folder string) (string, error)
	// Locate looks in folder for the copies of ins (every one with Dest
	// == folder) written above their marks. For each intent it returns
	// the refs of every message holding exactly the intent's bytes, as the
	// sink writes them (size and SHA-256 verified), oldest first; nil when
	// there is none. It never changes the folder. The engine decides which
	// candidate belongs to which intent (two identical source messages map
	// to two copies). Called from one engine goroutine at a time per run
	// (recovery, then the settler); errors are classified (a destination
	// that is unreachable for now is Retry, not "no copy").
	Locate(ctx context.Context, folder string, ins []Intent) ([][]string, error)
}

// Verifier is implemented by sinks that can read back a copy by its ref,
// for Options.DeleteAfterCopy of a message found in the destination
// (Dedupe, a lost state dir) rather than copied: such a message is deleted
// from the source only when the copy it was found as holds exactly its
// bytes. Verify reports, for each refs[i] (as IndexRefs gave it, in
// folder), whether that copy exists and its bytes are those whose size
// and hex SHA-256 are sizes[i] and sums[i] — not their CRLF form: a
// converted copy is not the same bytes. It reads each named copy once and
// nothing else, and never changes the folder (unlike Locate, which may
// clear a torn copy of its own). A copy that is gone, or a ref of another
// UIDVALIDITY, is false, not an error. Called from the goroutine that
// called Run, after the pipeline; errors are classified.
type Verifier interface {
	Verify(ctx context.Context, folder string, refs []string, sizes []int64, sums []string) ([]bool, error)
}

// Immediate is implemented by Finders whose Append has no effect once it
// returned or its process died (files written by this process: Maildir).
// Their uncertain appends are settled at once; a server (IMAP) may still
// store an APPEND whose connection or client died, so its uncertain
// appends are settled only after Options.SettleDelay.
type Immediate interface {
	Immediate()
}

// Remover is implemented by Finders that can remove one copy this run
// appended itself, identified by the ref Append returned: the engine uses
// it only to undo a re-sent uncertain append when the original turned up
// after all (reconcile, settle.go). It must remove nothing else; when it
// cannot guarantee that (IMAP without UIDPLUS) it returns ErrCannotRemove.
type Remover interface {
	Remove(ctx context.Context, folder, ref string) error
}

// CRLFSink is implemented by sinks that store messages with CRLF line
// endings (IMAP requires them: a bare LF is converted to CRLF, nothing
// else changes). Intents then record the CRLF form's size and hash, which
// is what Locate and --dedupe compare.
type CRLFSink interface {
	CRLF()
}

// Indexer is implemented by sinks that can enumerate what a folder already
// holds, for Options.Dedupe. Index calls fn with the Message-ID (as written,
// "" if none) and size (as stored: CRLF for a CRLFSink) of every message in
// folder. Called from the lister goroutine after Prepare.
type Indexer interface {
	Index(ctx context.Context, folder string, fn func(messageID string, size int64) error) error
}

// Intent describes a copy about to be written; it is durable in the
// checkpoint before Append is called.
type Intent struct {
	Folder    string    `json:"folder"` // source mailbox
	Epoch     string    `json:"epoch,omitempty"`
	ID        string    `json:"id"`
	Dest      string    `json:"dest"` // sink folder as returned by Prepare
	Mark      string    `json:"mark,omitempty"`
	MessageID string    `json:"mid,omitempty"`
	Size      int64     `json:"size"`   // bytes as the source gave them
	SHA256    string    `json:"sha256"` // of those bytes
	Date      time.Time `json:"date"`
	Flags     []string  `json:"flags,omitempty"`
	// CRLFSize is the size of the CRLF form a CRLFSink is sent (bare LF
	// turned into CRLF) and CRLFSHA256 the hash of its comparison form
	// (NUL as 0x80: see crlf.go); empty when they equal Size and SHA256 or
	// the sink stores bytes unchanged.
	CRLFSize   int64  `json:"crlf_size,omitempty"`
	CRLFSHA256 string `json:"crlf_sha256,omitempty"`
}

// Key identifies the source message of the intent in the checkpoint.
func (in Intent) Key() string { return in.Folder + "\x00" + in.Epoch + "\x00" + in.ID }

// StoredSize is the size of the copy as a sink of the intent's kind
// stores it.
func (in Intent) StoredSize() int64 {
	if in.CRLFSHA256 != "" {
		return in.CRLFSize
	}
	return in.Size
}

// StoredSHA256 is the hash of the copy as the sink stores it.
func (in Intent) StoredSHA256() string {
	if in.CRLFSHA256 != "" {
		return in.CRLFSHA256
	}
	return in.SHA256
}

// Checkpoint is the engine's view of the crash-safe record kept by package
// checkpoint. All methods are safe for concurrent use.
type Checkpoint interface {
	// Done reports whether the message is recorded as copied.
	Done(folder, epoch, id string) (bool, error)
	// Epoch returns the epoch recorded for folder, if any.
	Epoch(folder string) (epoch string, ok bool, err error)
	// SetEpoch records the epoch seen for folder.
	SetEpoch(folder, epoch string) error
	// AddIntents durably records intents (one commit).
	AddIntents(in []Intent) error
	// Complete durably records copies as done and clears their intents;
	// refs[i] belongs to in[i]. An empty ref clears the intent without
	// recording a copy (the message was skipped, or is copied again).
	Complete(in []Intent, refs []string) error
	// CompleteAndAdd is Complete(done, refs) and AddIntents(in) in one
	// commit: an appender records one batch's copies with the next
	// batch's intents.
	CompleteAndAdd(done []Intent, refs []string, in []Intent) error
	// Pending returns the intents of an earlier run that never completed.
	Pending() ([]Intent, error)
	// Copies calls fn for every message of folder+epoch recorded as done.
	Copies(folder, epoch string, fn func(Copy) error) error
	// Owner returns the key (Intent.Key) of the source message whose copy
	// ref in destination folder dest is recorded to be, if any.
	Owner(dest, ref string) (key string, ok bool, err error)
	// Ref returns the ref recorded for a copied message.
	Ref(folder, epoch, id string) (ref string, ok bool, err error)
	// Unverified counts the copies recorded in dest with unverified refs
	// (UnverifiedRef) for content storedSHA256.
	Unverified(dest, storedSHA256 string) (int, error)

	// Sending and Replied keep the in-flight journal: Sending(slot, keys)
	// is called by an appender before the bytes of the appends of intents
	// keys leave the process, keys[k] in journal slot slot+k, and
	// Replied(slots) once the sink answered them (stored or refused).
	// Each call is one write. An appender owns its slots: no two
	// goroutines use one slot. They are not commits: they survive the
	// death of the process, which is what they are for (a power loss is
	// covered by the settling delay: the next run starts much later).
	// WasSending reports whether the previous run died with intent key's
	// append possibly on the wire, and LastAlive when that run was last
	// seen alive (zero if unknown).
	Sending(slot int, keys ...string) error
	Replied(slots ...int) error
	WasSending(key string) bool
	LastAlive() time.Time
}

// Copy is a message recorded as copied.
type Copy struct {
	ID        string
	Ref       string
	Dest      string
	MessageID string
	Size      int64
	SHA256    string
	Date      time.Time
}
