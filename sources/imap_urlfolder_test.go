package sources_test

import (
	"context"
	"net"
	"strings"
	"testing"

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
