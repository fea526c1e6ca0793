package fakeimap

import (
	"time"

	"github.com/emersion/go-imap/v2"
)

// Hooks let a test interfere with the protocol. Every hook is called from
// the goroutine that serves the connection concerned, never concurrently
// for one connection but concurrently for different ones; a hook may call
// the Server's methods (Messages, Folders, CloseAll, ...). A hook that
// blocks holds up its connection only, but a hook still blocked when the
// test ends delays the Server's shutdown.
type Hooks struct {
	// Command is called before every command a client sends, once its
	// first line has arrived (so before any literal of it is accepted),
	// with the command's name in upper case ("LOGIN", "SELECT",
	// "UID FETCH", "APPEND", "NOOP", ...). The zero Action runs the
	// command. Lines that are not commands (an IDLE "DONE", a SASL
	// response) do not reach the hook.
	Command func(ev CommandEvent) Action

	// Append is called for an APPEND whose literal has been read in full
	// and which the server would store: the folder exists and is
	// selectable and no knob (RefuseBareLF, RefuseNUL, AppendLimit)
	// refused it. The zero AppendAction stores the message and replies at
	// once.
	Append func(ev AppendEvent) AppendAction

	// Fetch is called for every body section (BODY[...], BODY.PEEK[...],
	// RFC822, BINARY[...]) the server is about to send, before it is
	// written. The zero FetchAction sends it whole.
	Fetch func(ev FetchEvent) FetchAction
}

// CommandEvent describes a command about to run.
type CommandEvent struct {
	Conn int    // connection number, from 1, in the order connections were accepted
	Tag  string // the command's tag
	Name string // upper case; "UID FETCH", "UID STORE", "UID SEARCH", "UID EXPUNGE" for UID commands
	User string // the logged-in user, "" before LOGIN
	Line string // the command's first line without CRLF, at most 1 KiB (it may hold a password)
	Seq  int    // the number of this command on its connection, from 1
}

// Action says what the server does with a command. Fields are checked in
// this order: Delay, Stall, Close, Bye, Err; at most one of the last four
// should be set.
type Action struct {
	// Delay holds the command this long before acting on it (then it runs,
	// or gets the other fields' treatment).
	Delay time.Duration
	// Stall stops serving the connection for good: nothing more is read or
	// answered, and the socket stays open until the client closes it and
	// the server sees that (it never does: it no longer reads), CloseAll,
	// or the end of the test.
	Stall bool
	// Close drops the TCP connection without a word (the client sees EOF).
	Close bool
	// Bye sends "* BYE <text>" and closes the connection.
	Bye string
	// Err answers the command with this tagged status (Type NO or BAD,
	// e.g. NO [THROTTLED]) instead of running it. Literals the client sends
	// anyway (LITERAL+) are read and dropped; a synchronising literal is
	// never asked for. Type BYE behaves like Bye.
	Err *imap.Error
}

// Refuse is an Action answering a command "NO [code] text" (code may be
// empty), e.g. Refuse("THROTTLED", "Request is throttled").
func Refuse(code imap.ResponseCode, text string) Action {
	return Action{Err: &imap.Error{Type: imap.StatusResponseTypeNo, Code: code, Text: text}}
}

// AppendEvent describes an APPEND whose literal has been read.
type AppendEvent struct {
	Conn    int
	User    string
	Mailbox string // as the client named it (UTF-8)
	Body    []byte // the message as received; do not modify
	Flags   []imap.Flag
	Date    time.Time // the INTERNALDATE that will be stored
}

// AppendAction says how an APPEND is stored and answered.
type AppendAction struct {
	// Refuse answers the APPEND with this status (e.g. NO [OVERQUOTA])
	// and stores nothing.
	Refuse *imap.Error
	// Delay waits this long before storing. With StoreAfterDisconnect the
	// wait starts once the connection is gone; otherwise the reply is sent
	// after the store.
	Delay time.Duration
	// StoreAfterDisconnect holds the tagged reply until the client's
	// connection is gone (the client closed it or died, or CloseAll), then
	// waits Delay and stores the message; no reply is ever sent. This is
	// a server that commits an APPEND after its client gave up. If the
	// Server shuts down first the message is not stored.
	StoreAfterDisconnect bool
	// DropAfterStore stores the message and then closes the connection
	// without replying, as if the link died just after the commit.
	DropAfterStore bool
	// Stored, if set, is called once the message has been stored (uid is
	// its UID) or storing failed (err, e.g. the folder was deleted or the
	// server shut down). It runs on the connection's goroutine.
	Stored func(uid imap.UID, err error)
}

// FetchEvent describes a body section about to be sent.
type FetchEvent struct {
	Conn    int
	User    string
	Mailbox string
	UID     imap.UID
	// Section is the section as requested (Peek, Part, Specifier,
	// HeaderFields, Partial); nil for a BINARY section.
	Section *imap.FetchItemBodySection
	Size    int64 // the bytes of the literal about to be sent
}

// FetchAction says how a body section is sent.
type FetchAction struct {
	// Cut closes the connection after After bytes of this section's
	// literal have been sent (an answer that stops mid-literal). After is
	// clamped to [0, Size].
	Cut   bool
	After int64
	// Reset makes the cut an RST (SO_LINGER 0) instead of a FIN.
	Reset bool
}
