package pop3conn

import (
	"errors"
	"fmt"
	"strings"
)

// Error is a "-ERR" reply of the server. The connection that received it
// is still in a known state and can be used further.
type Error struct {
	// Command is the command's name ("RETR", "PASS"), never its arguments
	// (they may be secret).
	Command string
	// Code is the RFC 2449 / RFC 3206 response code without brackets
	// ("IN-USE", "AUTH", "SYS/TEMP", "SYS/PERM", "LOGIN-DELAY"), "" if
	// the server sent none.
	Code string
	// Text is the human-readable rest of the line.
	Text string
}

func (e *Error) Error() string {
	code := ""
	if e.Code != "" {
		code = "[" + e.Code + "] "
	}
	return fmt.Sprintf("server answered %s with -ERR %s%s", e.Command, code, e.Text)
}

// parseErr splits the text after "-ERR " into a response code and text.
func parseErr(cmd, rest string) *Error {
	e := &Error{Command: cmd, Text: strings.TrimSpace(rest)}
	if strings.HasPrefix(e.Text, "[") {
		if i := strings.IndexByte(e.Text, ']'); i > 0 {
			e.Code = strings.ToUpper(e.Text[1:i])
			e.Text = strings.TrimSpace(e.Text[i+1:])
		}
	}
	return e
}

// ServerError returns the -ERR reply in err, if any.
func ServerError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return nil
}

// InUse reports whether err says the maildrop is locked by another
// session (RFC 2449 [IN-USE], RFC 2449 [LOGIN-DELAY], or, from a server
// without response codes, an -ERR to PASS/AUTH whose text talks about a
// lock): waiting and trying again may help.
func InUse(err error) bool {
	e := ServerError(err)
	if e == nil {
		return false
	}
	switch e.Code {
	case "IN-USE", "LOGIN-DELAY":
		return true
	case "":
		t := strings.ToLower(e.Text)
		return (e.Command == "PASS" || e.Command == "AUTH") &&
			(strings.Contains(t, "lock") || strings.Contains(t, "in use") || strings.Contains(t, "busy"))
	}
	return false
}

// Temporary reports whether err is a -ERR [SYS/TEMP]: a transient failure
// of the server.
func Temporary(err error) bool {
	e := ServerError(err)
	return e != nil && e.Code == "SYS/TEMP"
}

// errLost is wrapped into every error of a command whose connection
// broke (network error, timeout, cancelled context, protocol violation).
var errLost = errors.New("connection lost")

// Lost reports whether err means the connection broke: the command's
// outcome is unknown and the connection cannot be used further.
func Lost(err error) bool { return errors.Is(err, errLost) }

type lostError struct {
	where string
	err   error
}

func (e *lostError) Error() string { return e.where + ": " + e.err.Error() }
func (e *lostError) Unwrap() []error {
	return []error{errLost, e.err}
}
