package imapconn

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/mailhaul/mailhaul/migrate"
)

func TestThrottled(t *testing.T) {
	no := func(code imap.ResponseCode, text string) error {
		return fmt.Errorf("append: %w", &imap.Error{Type: imap.StatusResponseTypeNo, Code: code, Text: text})
	}
	for _, c := range []struct {
		err  error
		wait time.Duration // 0: not throttling, -1: throttling, no suggested wait
	}{
		{no("", "Request is throttled. Suggested Backoff Time: 299609 milliseconds"), 299609 * time.Millisecond},
		{no("THROTTLED", "slow down"), -1},
		{no(imap.ResponseCodeUnavailable, "try later"), -1},
		{no(imap.ResponseCodeInUse, "mailbox locked"), -1},
		{no(imap.ResponseCodeLimit, "too many"), -1},
		{errors.New("unexpected EOF (server said: BYE Too many simultaneous connections. (Failure))"), -1},
		{errors.New("unexpected EOF (server said: BYE Account exceeded command or bandwidth limits)"), -1},
		{no(imap.ResponseCodeLimit, "Too many messages in this batch"), -1},
		// Dovecot's quota_max_mail_size: a refusal of this message.
		{no(imap.ResponseCodeLimit, "Mail size is larger than the maximum size allowed by server configuration"), 0},
		{no(imap.ResponseCodeLimit, "Message too large"), 0},
		{no(imap.ResponseCodeLimit, "Message exceeds the maximum message size"), 0},
		{no(imap.ResponseCodeOverQuota, "quota"), 0},
		{no(imap.ResponseCodeTryCreate, "no such folder"), 0},
		{errors.New("connection reset by peer"), 0},
	} {
		got := Throttled(c.err)
		d, ok := migrate.BackoffOf(got)
		switch {
		case c.wait == 0 && got != nil:
			t.Errorf("%v: taken for throttling", c.err)
		case c.wait != 0 && (!ok || d != max(c.wait, 0) || migrate.Classify(got) != migrate.Retry):
			t.Errorf("%v: throttled %v, wait %v, want %v", c.err, got, d, c.wait)
		}
		if c.wait != 0 && IMAPError(c.err) != nil {
			t.Errorf("%v: a throttling reply still reads as a refusal", c.err)
		}
	}
}

func TestTooBig(t *testing.T) {
	for _, c := range []struct {
		code imap.ResponseCode
		text string
		want bool
	}{
		{imap.ResponseCodeTooBig, "anything", true},
		{imap.ResponseCodeLimit, "Mail size is larger than the maximum size allowed by server configuration", true},
		{imap.ResponseCodeLimit, "message too big", true},
		{imap.ResponseCodeLimit, "Too many flags", false},
		{imap.ResponseCodeLimit, "too many commands, slow down", false},
		{imap.ResponseCodeLimit, "batch size limit reached", false},
		{imap.ResponseCodeLimit, "Message size limit exceeded", true},
		{imap.ResponseCodeLimit, "Mailbox size limit exceeded", false},
		{imap.ResponseCodeLimit, "Account storage size exceeds the maximum allowed", false},
		{imap.ResponseCodeLimit, "Daily upload size limit exceeded, try again tomorrow", false},
		{imap.ResponseCodeLimit, "Total size of messages in the mailbox is too large", false},
		{imap.ResponseCodeLimit, "size too large", false},
		{"", "Mail size is larger than the maximum", false},
	} {
		if got := TooBig(&imap.Error{Type: imap.StatusResponseTypeNo, Code: c.code, Text: c.text}); got != c.want {
			t.Errorf("[%s] %s: %v, want %v", c.code, c.text, got, c.want)
		}
	}
	if TooBig(nil) {
		t.Error("nil is too big")
	}
}
