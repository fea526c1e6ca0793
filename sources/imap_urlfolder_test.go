package sources_test

import (
	"context"
	"net"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/mailhaul/mailhaul/internal/imapconn"
	"github.com/mailhaul/mailhaul/internal/testserver/fakeimap"
	"github.com/mailhaul/mailhaul/sources"
)

// TestIMAPURLFolderMissing: a URL that names a folder the account does not
// have (a typo: imap://me@host/Wrok) is an error naming that folder and
// some that exist, not a listing of nothing; one that exists lists it and
// its subfolders only.
func TestIMAPURLFolderMissing(t *testing.T) {
	srv := fakeimap.Start(t, fakeimap.Options{})
	srv.AddUser("u", "p")
	for _, f := range []string{"Work", "Work/Clients", "Private"} {
		if err := srv.Create("u", f); err != nil {
			t.Fatal(err)
		}
	}
	host, port, _ := net.SplitHostPort(srv.Addr())
	open := func(folder string) *sources.IMAP {
		src, err := sources.OpenIMAP(context.Background(), &imapconn.Config{Endpoint: imapconn.Endpoint{Host: host, Port: port, User: "u", Folder: folder}, InsecurePlaintext: true, Password: "p"}, 1)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { src.Close() })
		return src
	}
	_, err := open("Wrok").Mailboxes(context.Background())
	if err == nil || !strings.Contains(err.Error(), `folder "Wrok"`) || !strings.Contains(err.Error(), `"Work"`) {
		t.Errorf("URL folder Wrok: %v, want an error naming it and the account's folders", err)
	}
	mbs, err := open("Work").Mailboxes(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, mb := range mbs {
		names = append(names, mb.Name)
	}
	if strings.Join(names, ",") != "Work,Work/Clients" {
		t.Errorf("URL folder Work lists %v, want Work and Work/Clients", names)
	}
}

// TestIMAPSubscriptions: with LIST-EXTENDED the source asks which folders
// are subscribed and marks the others Unsubscribed (the destination then
// leaves them unsubscribed); a server without it, or one that marks no
// folder subscribed, has every folder count as subscribed.
func TestIMAPSubscriptions(t *testing.T) {
	for _, o := range []fakeimap.Options{{}, {NoListStatus: true, NoSpecialUse: true}} {
		srv := fakeimap.Start(t, o)
		srv.AddUser("u", "p")
		for _, f := range []string{"Work", "Old"} {
			if err := srv.Create("u", f); err != nil {
				t.Fatal(err)
			}
		}
		c, err := imapclient.DialInsecure(srv.Addr(), nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Login("u", "p").Wait(); err != nil {
			t.Fatal(err)
		}
		if err := c.Unsubscribe("Old").Wait(); err != nil {
			t.Fatal(err)
		}
		extended := !o.NoListStatus
		mbs, err := openFake(t, srv).Mailboxes(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, mb := range mbs {
			if want := extended && mb.Name == "Old"; mb.Unsubscribed != want {
				t.Errorf("LIST-EXTENDED %v: %s Unsubscribed %v, want %v", extended, mb.Name, mb.Unsubscribed, want)
			}
		}
		// Nothing subscribed at all: the server does not keep them.
		for _, f := range []string{"INBOX", "Work"} {
			c.Unsubscribe(f).Wait()
		}
		c.Close()
		if mbs, err = openFake(t, srv).Mailboxes(context.Background()); err != nil {
			t.Fatal(err)
		}
		for _, mb := range mbs {
			if mb.Unsubscribed {
				t.Errorf("LIST-EXTENDED %v, no folder subscribed: %s Unsubscribed", extended, mb.Name)
			}
		}
	}
}

// TestIMAPURLFolderServerSpelling: a URL that names a folder the way a
// Courier server spells it (imap://me@host/INBOX.Projects) is refused with
// the name mailhaul gives it ("Projects").
func TestIMAPURLFolderServerSpelling(t *testing.T) {
	srv := fakeimap.Start(t, fakeimap.Options{Delim: '.', Prefix: "INBOX."})
	srv.AddUser("u", "p")
	for _, f := range []string{"INBOX.Projects", "INBOX.Projects.2019"} {
		if err := srv.Create("u", f); err != nil {
			t.Fatal(err)
		}
	}
	host, port, _ := net.SplitHostPort(srv.Addr())
	src, err := sources.OpenIMAP(context.Background(), &imapconn.Config{Endpoint: imapconn.Endpoint{Host: host, Port: port, User: "u", Folder: "INBOX.Projects.2019"}, InsecurePlaintext: true, Password: "p"}, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	_, err = src.Mailboxes(context.Background())
	if err == nil || !strings.Contains(err.Error(), `"INBOX.Projects.2019" is "Projects/2019"`) {
		t.Errorf("URL folder in the server's spelling: %v, want the name to write", err)
	}
}
