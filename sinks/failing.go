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
//     message — one message can trip a server's bug — until
//     serverBugLimit APPENDs in a row got it with none stored in between:
//     then the server is failing, not the messages, and the run stops.
//     The next run copies them (they were never recorded as copied).

// serverBugLimit is how many [SERVERBUG] refusals in a row stop the run.
const serverBugLimit = 10

// diskFull are texts a refusal of a server whose disk is full holds.
var diskFull = []string{"no space left", "disk full", "disk is full", "out of disk space", "not enough disk space", "file system full", "filesystem full"}

// serverFailing returns the fatal error that refusal ie of an APPEND
// stands for, or nil when it skips just that message. Any appender's
// goroutine calls it; s.mu guards the count.
func (s *IMAP) serverFailing(ie *imap.Error) error {
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
	s.failing++
	n := s.failing
	s.mu.Unlock()
	if n < serverBugLimit {
		return nil
	}
	return migrate.FatalError(fmt.Errorf("the destination server %s refused the last %d messages with [SERVERBUG] (%s): the server is failing, not the messages (a full disk? its log says why); stopping, the next run copies them", s.cfg.Host, n, ie.Text))
}

// stored notes that an APPEND stored its messages: the refusals before it
// were not in a row.
func (s *IMAP) stored() {
	s.mu.Lock()
	s.failing = 0
	s.mu.Unlock()
}
