package testserver

import (
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
