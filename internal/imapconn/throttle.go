package imapconn

import (
	"errors"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/mailhaul/mailhaul/migrate"
)

// Throttling. Servers slow a client down in different words:
//
//   - Microsoft 365: "NO Request is throttled. Suggested Backoff Time:
//     299609 milliseconds" (on any command, LOGIN included);
//   - response codes of RFC 5530 that mean "not now": [UNAVAILABLE],
//     [INUSE], [LIMIT], and the non-standard [THROTTLED];
//   - Gmail: "* BYE" with "Too many simultaneous connections", "Account
//     exceeded command or bandwidth limits" or "[UNAVAILABLE] Temporary
//     System Problem", then it closes the connection.
//
// Throttled recognises them and returns an error classified Retry with
// the server's suggested wait (migrate.Backoff; none: the engine's
// default), so that the engine waits that long before the next attempt;
// the backend's connection sharing gives up a connection (Shared.Throttled).

var suggested = regexp.MustCompile(`(?i)backoff time:?\s*(\d+)\s*(ms|milliseconds?|s|seconds?)`)

// Throttled returns err reclassified as throttling (Retry, with the wait
// the server asks for) when it is a throttling reply, else nil.
func Throttled(err error) error {
	if err == nil {
		return nil
	}
	text := err.Error()
	if ie := rawIMAPError(err); ie != nil {
		switch ie.Code {
		case imap.ResponseCodeUnavailable, imap.ResponseCodeInUse, imap.ResponseCodeLimit, "THROTTLED":
			return migrate.Backoff(err, waitIn(text))
		}
		if strings.Contains(strings.ToLower(ie.Text), "throttl") {
			return migrate.Backoff(err, waitIn(text))
		}
		return nil
	}
	if i := strings.Index(text, "server said: BYE "); i >= 0 {
		bye := strings.ToLower(text[i:])
		for _, s := range []string{"too many simultaneous connections", "exceeded command or bandwidth", "[unavailable]", "throttl", "temporary system problem", "too many connections"} {
			if strings.Contains(bye, s) {
				return migrate.Backoff(err, waitIn(text))
			}
		}
	}
	return nil
}

func rawIMAPError(err error) *imap.Error {
	var ie *imap.Error
	if errors.As(err, &ie) {
		return ie
	}
	return nil
}

// waitIn reads a suggested wait from a server's text; 0 when it suggests
// none (the engine then waits Options.ThrottleWait).
func waitIn(text string) time.Duration {
	m := suggested.FindStringSubmatch(text)
	if m == nil {
		return 0
	}
	n, _ := strconv.ParseInt(m[1], 10, 64)
	if strings.HasPrefix(strings.ToLower(m[2]), "m") {
		return time.Duration(n) * time.Millisecond
	}
	return time.Duration(n) * time.Second
}
