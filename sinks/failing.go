package sinks

import (
	"fmt"
	"strings"

	"github.com/emersion/go-imap/v2"

	"github.com/mailhaul/mailhaul/migrate"
)

// A destination that fails as a whole answers every APPEND with the same
// refusal, and a refusal of an APPEND skips that message: a full disk on a
// Dovecot server ("NO [SERVERBUG] Internal error occurred. Refer to server
// log for more information.") turned every message of the run into a
// skipped one, hundreds a second, instead of stopping it as a full disk
// should. So:
//
//   - a refusal whose text says the disk is full is fatal at once, as
//     [OVERQUOTA] is;
//   - [SERVERBUG] (RFC 5530: the server hit a bug of its own) skips the
//     message — one message can trip a server's bug, and one folder's
//     broken index or permissions make Dovecot refuse every APPEND to it
//     so — until serverBugLimit APPENDs in a row, to two folders or more,
//     got it with none stored in between: then the server is failing, not
//     the messages or a folder, and the run stops. The next run copies
//     them (they were never recorded as copied). A run that copies into
//     one folder only (a POP3 maildrop) skips them all, as before: a
//     streak within one folder could be that folder's fault, and stopping
//     there would stop every later run at the same place.

// serverBugLimit is how many [SERVERBUG] refusals in a row stop the run.
const serverBugLimit = 10

// diskFull are texts a refusal of a server whose disk is full holds.
var diskFull = []string{"no space left", "disk full", "disk is full", "out of disk space", "not enough disk space", "file system full", "filesystem full"}

// serverFailing returns the fatal error that refusal ie of an APPEND to
// folder stands for, or nil when it skips just that message. Any
// appender's goroutine calls it; s.mu guards the streak.
func (s *IMAP) serverFailing(folder string, ie *imap.Error) error {
	text := strings.ToLower(ie.Text)
	for _, d := range diskFull {
		if strings.Contains(text, d) {
			return migrate.FatalError(fmt.Errorf("the destination server %s is out of disk space (it said: %s); free space on it, then run again", s.cfg.Host, ie.Text))
		}
	}
	if ie.Code != imap.ResponseCodeServerBug {
		return nil
	}
	s.mu.Lock()
	f := &s.failing
	if f.n == 0 {
		f.first, f.folders = folder, 1
	} else if f.folders == 1 && folder != f.first {
		f.folders = 2
	}
	f.n++
	n, folders := f.n, f.folders
	s.mu.Unlock()
	if n < serverBugLimit || folders < 2 {
		return nil
	}
	return migrate.FatalError(fmt.Errorf("the destination server %s refused the last %d messages, in more than one folder, with [SERVERBUG] (%s): the server is failing, not the messages (a full disk? its log says why); stopping, the next run copies them once it works again", s.cfg.Host, n, ie.Text))
}

// serverBugs is a streak of [SERVERBUG] refusals: how many, the first
// folder, and whether another folder's came since (folders: 1 or 2).
type serverBugs struct {
	n, folders int
	first      string
}

// stored notes that an APPEND stored its messages: the refusals before it
// were not in a row.
func (s *IMAP) stored() {
	s.mu.Lock()
	s.failing = serverBugs{}
	s.mu.Unlock()
}
