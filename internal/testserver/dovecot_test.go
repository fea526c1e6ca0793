package testserver

import (
	"fmt"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-sasl"
)

func TestStartDovecot(t *testing.T) {
	d := StartDovecot(t, WithUser("alice", "secret"), WithMasterUser("admin", "adminpw"))
	c, err := imapclient.DialTLS(d.IMAPSAddr, &imapclient.Options{TLSConfig: d.TLSConfig()})
	if err != nil {
		t.Fatalf("dial imaps: %v", err)
	}
	defer c.Close()
	if err := c.Login("alice", "secret").Wait(); err != nil {
		t.Fatalf("login: %v", err)
	}
	msg := "Subject: hi\r\n\r\nbody\r\n"
	ac := c.Append("INBOX", int64(len(msg)), nil)
	ac.Write([]byte(msg))
	ac.Close()
	if data, err := ac.Wait(); err != nil || data.UID == 0 {
		t.Fatalf("append: %v %+v", err, data)
	}
	list, err := c.List("", "*", &imap.ListOptions{ReturnSpecialUse: true}).Collect()
	if err != nil {
		t.Fatalf("list: %v", err)
	}
	var sent bool
	for _, l := range list {
		for _, a := range l.Attrs {
			if a == imap.MailboxAttrSent && l.Mailbox == "Sent" {
				sent = true
			}
		}
	}
	if !sent {
		t.Errorf("no Sent folder with \\Sent in %+v", list)
	}

	// A master user logs in as alice.
	c2, err := imapclient.DialStartTLS(d.IMAPAddr, &imapclient.Options{TLSConfig: d.TLSConfig()})
	if err != nil {
		t.Fatalf("dial starttls: %v", err)
	}
	defer c2.Close()
	if err := c2.Authenticate(sasl.NewPlainClient("alice", "admin", "adminpw")); err != nil {
		t.Fatalf("master login: %v", err)
	}
	// Wrong password is refused.
	c3, err := imapclient.DialInsecure(d.IMAPAddr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c3.Close()
	if err := c3.Login("alice", "wrong").Wait(); err == nil {
		t.Fatal("wrong password accepted")
	}
}

// xoauth2Client is the one-message XOAUTH2 SASL client.
type xoauth2Client struct{ user, token string }

func (x xoauth2Client) Start() (string, []byte, error) {
	return "XOAUTH2", []byte("user=" + x.user + "\x01auth=Bearer " + x.token + "\x01\x01"), nil
}

// Next gets the server's error challenge: the token was refused. (The
// empty answer XOAUTH2 wants cannot be sent with go-imap.)
func (x xoauth2Client) Next(ch []byte) ([]byte, error) {
	return nil, fmt.Errorf("token refused: %s", ch)
}

// oauthBearerClient is OAUTHBEARER that answers the error challenge with
// the RFC 7628 dummy response, so the server's tagged NO is read.
type oauthBearerClient struct{ sasl.Client }

func (oauthBearerClient) Next([]byte) ([]byte, error) { return []byte{1}, nil }

func TestDovecotOAuth2(t *testing.T) {
	o := StartOAuth2Server(t)
	d := StartDovecot(t, WithUser("alice", "secret"), WithOAuth2(o.URL), WithoutAuthDelay())
	good := o.Issue("alice")
	expired := o.Issue("alice")
	o.Expire(expired)
	other := o.Issue("bob")

	login := func(c sasl.Client) error {
		t.Helper()
		cl, err := imapclient.DialTLS(d.IMAPSAddr, &imapclient.Options{TLSConfig: d.TLSConfig()})
		if err != nil {
			t.Fatalf("dial imaps: %v", err)
		}
		defer cl.Close()
		if err := cl.Authenticate(c); err != nil {
			return err
		}
		_, err = cl.Select("INBOX", nil).Wait()
		return err
	}
	bearer := func(tok string) sasl.Client {
		return oauthBearerClient{sasl.NewOAuthBearerClient(&sasl.OAuthBearerOptions{Username: "alice", Token: tok})}
	}
	for _, mech := range []string{"xoauth2", "oauthbearer"} {
		client := func(tok string) sasl.Client {
			if mech == "xoauth2" {
				return xoauth2Client{"alice", tok}
			}
			return bearer(tok)
		}
		if err := login(client(good)); err != nil {
			t.Errorf("%s with a valid token: %v", mech, err)
		}
		refused := func(what string, err error) {
			t.Helper()
			if err == nil {
				t.Errorf("%s with %s accepted", mech, what)
			} else if !strings.Contains(err.Error(), "token refused") && !strings.Contains(err.Error(), "AUTHENTICATIONFAILED") {
				t.Errorf("%s with %s: %v", mech, what, err)
			}
		}
		refused("an expired token", login(client(expired)))
		refused("bob's token for alice", login(client(other)))
		refused("the password as token", login(client("secret")))
	}
	if known, _ := o.Requests(); known < 6 {
		t.Errorf("introspection endpoint saw %d requests for issued tokens, want 6", known)
	}
	// Passwords keep working beside the oauth2 passdb.
	c, err := imapclient.DialTLS(d.IMAPSAddr, &imapclient.Options{TLSConfig: d.TLSConfig()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login("alice", "secret").Wait(); err != nil {
		t.Errorf("password login beside oauth2: %v", err)
	}
}
