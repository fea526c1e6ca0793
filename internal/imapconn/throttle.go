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
//     [INUSE], [LIMIT], and the non-standard [THROTTLED] — but not a
//     [LIMIT] whose text is about a message's size (TooBig): Dovecot
//     refuses a message over quota_max_mail_size with "NO [LIMIT] Mail
//     size is larger than the maximum size allowed by server
//     configuration", which no wait changes;
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
		switch {
		case TooBig(ie):
			return nil
		case ie.Code == imap.ResponseCodeUnavailable, ie.Code == imap.ResponseCodeInUse, ie.Code == imap.ResponseCodeLimit, ie.Code == "THROTTLED":
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

// TooBig reports whether ie refuses a message for its size: [TOOBIG]
// (RFC 4469), or [LIMIT] with a text about size (Dovecot's
// quota_max_mail_size: "Mail size is larger than the maximum size allowed
// by server configuration"; others say "message too large", "exceeds the
// maximum message size").
func TooBig(ie *imap.Error) bool {
	if ie == nil {
		return false
	}
	if ie.Code == imap.ResponseCodeTooBig {
		return true
	}
	if ie.Code != imap.ResponseCodeLimit {
		return false
	}
	t := strings.ToLower(ie.Text)
	// A limit of the account, not of this message ("Mailbox size limit
	// exceeded", "Daily upload size limit"): no message would pass it.
	for _, w := range []string{"mailbox", "account", "storage", "quota", "total", "daily", "folder", "upload"} {
		if strings.Contains(t, w) {
			return false
		}
	}
	if !strings.Contains(t, "mail") && !strings.Contains(t, "message") {
		return false
	}
	if strings.Contains(t, "too large") || strings.Contains(t, "too big") {
		return true
	}
	if !strings.Contains(t, "size") {
		return false
	}
	for _, w := range []string{"larger", "exceed", "maximum", "too "} {
		if strings.Contains(t, w) {
			return true
		}
	}
	return false
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
