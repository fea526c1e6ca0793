package pop3conn

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"github.com/mailhaul/mailhaul/internal/connauth"
)

// login authenticates with cfg.Auth (called by the handshake, nothing
// pipelined). SASL runs as RFC 5034 describes it, in steps: "AUTH MECH",
// the server's "+ " continuation, then the base64 response on a line of
// its own. That is the exchange Microsoft 365 requires for XOAUTH2, every
// RFC 5034 server supports it, and it avoids the 255-octet limit on an
// initial response (OAuth2 tokens are longer).
//
// The returned error carries the server's -ERR (see InUse) or is wrapped
// in fatalDial when no retry can help.
func (c *Conn) login(ctx context.Context) error {
	cfg := c.cfg
	mech := strings.ToLower(cfg.Auth)
	if mech == AuthAuto {
		mech = AuthUser
		if cfg.AdminUser != "" || c.caps.SASL("PLAIN") {
			mech = AuthPlain
		}
	}
	who := "account " + cfg.User
	if cfg.AdminUser != "" {
		who = fmt.Sprintf("account %s (as admin user %s)", cfg.User, cfg.AdminUser)
	}
	failed := func(err error) error {
		if InUse(err) || Temporary(err) {
			return fmt.Errorf("login as %s (%s): %w", who, mech, err)
		}
		if ServerError(err) != nil {
			if cfg.PasswordFrom != "" && mech != AuthXOAUTH2 && mech != AuthOAuthBearer {
				return &fatalDial{fmt.Errorf("%s: login as %s failed (%s): %w; the password came from %s", cfg.where(), who, mech, err, cfg.PasswordFrom)}
			}
			return &fatalDial{fmt.Errorf("%s: login as %s failed (%s): %w", cfg.where(), who, mech, err)}
		}
		return err
	}
	switch mech {
	case AuthUser, "login":
		if cfg.AdminUser != "" {
			return &fatalDial{fmt.Errorf("%s: an admin/authorization identity needs --src-auth plain, not USER/PASS", cfg.where())}
		}
		if err := c.simple("USER "+cfg.User, "USER "+cfg.User); err != nil {
			return failed(err)
		}
		if err := c.simple("PASS "+cfg.Password, "PASS <redacted>"); err != nil {
			return failed(err)
		}
		return nil
	case AuthPlain:
		// RFC 4616: authzid is the user to act as, authcid the one whose
		// password is given (the admin when AdminUser is set).
		authzid, authcid := "", cfg.User
		if cfg.AdminUser != "" {
			authzid, authcid = cfg.User, cfg.AdminUser
		}
		resp := authzid + "\x00" + authcid + "\x00" + cfg.Password
		if err := c.sasl("PLAIN", resp, nil); err != nil {
			return failed(err)
		}
		return nil
	case AuthXOAUTH2, AuthOAuthBearer:
		if cfg.Token == nil {
			return &fatalDial{fmt.Errorf("%s: --src-auth %s needs an access token (--src-oauth-token-cmd or --src-oauth-token-file)", cfg.where(), mech)}
		}
		tok, err := cfg.Token(ctx)
		if err != nil {
			return &fatalDial{fmt.Errorf("get OAuth2 token for %s on %s: %w", cfg.User, cfg.Addr(), err)}
		}
		name, resp := "XOAUTH2", connauth.XOAUTH2(cfg.User, tok)
		if mech == AuthOAuthBearer {
			name, resp = "OAUTHBEARER", connauth.OAuthBearer(cfg.User, cfg.Host, cfg.Port, tok)
		}
		var detail string
		err = c.sasl(name, resp, func(challenge []byte) { detail = connauth.BearerDetail(challenge) })
		if err != nil && detail != "" && ServerError(err) != nil && !InUse(err) {
			return &fatalDial{fmt.Errorf("%s: login as %s failed (%s): access token refused (server said: %s): %w", cfg.where(), who, mech, detail, err)}
		}
		if err != nil {
			return failed(err)
		}
		return nil
	}
	return &fatalDial{fmt.Errorf("unknown POP3 authentication %q (want user, plain, xoauth2 or oauthbearer)", cfg.Auth)}
}

// errChallenge is what sasl reports when the server sends a second
// challenge (an error report of XOAUTH2 / OAUTHBEARER) and the exchange
// was cancelled.
var errChallenge = errors.New("unexpected SASL challenge")

// sasl runs "AUTH mech", answers the first "+ " with base64(resp) and
// expects +OK. A further challenge (how XOAUTH2 and OAUTHBEARER report a
// refused token) is given to onChallenge, decoded, and the exchange is
// cancelled with "*" (RFC 5034 section 4), after which the server's -ERR
// is returned. The trace shows "AUTH mech" and "<redacted>" for every
// response.
func (c *Conn) sasl(mech, resp string, onChallenge func([]byte)) error {
	if err := c.rawSend("AUTH "+mech, "AUTH "+mech); err != nil {
		return err
	}
	sentResp := false
	for {
		line, err := c.rawLine()
		if err != nil {
			return err
		}
		if line != "+" && !strings.HasPrefix(line, "+ ") {
			return checkStatus("AUTH", line)
		}
		if !sentResp {
			sentResp = true
			if err := c.rawSend(base64.StdEncoding.EncodeToString([]byte(resp)), "<redacted>"); err != nil {
				return err
			}
			continue
		}
		if onChallenge != nil {
			ch, derr := base64.StdEncoding.DecodeString(strings.TrimSpace(strings.TrimPrefix(line, "+")))
			if derr != nil {
				ch = []byte(strings.TrimPrefix(line, "+"))
			}
			onChallenge(ch)
		}
		if err := c.rawSend("*", "*"); err != nil {
			return err
		}
		final, err := c.rawLine()
		if err != nil {
			return err
		}
		if err := checkStatus("AUTH", final); err != nil {
			return err
		}
		return errChallenge
	}
}
