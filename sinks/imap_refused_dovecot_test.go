package sinks_test

import (
	"context"
	"slices"
	"testing"

	"github.com/emersion/go-imap/v2"

	"github.com/mailhaul/mailhaul/internal/imapconn"
	"github.com/mailhaul/mailhaul/internal/testserver"
	"github.com/mailhaul/mailhaul/migrate"
	"github.com/mailhaul/mailhaul/sinks"
)

// TestIMAPPrepareRefusedNameDovecot: Dovecot (Maildir++ storage, "/"
// separator) refuses CREATE of a name with "."; Prepare, which sent
// CREATE, SUBSCRIBE and SELECT together, creates the escaped name instead,
// selects and subscribes it, and leaves no subscription to the refused
// name; a later folder is created, subscribed and selected in one go.
func TestIMAPPrepareRefusedNameDovecot(t *testing.T) {
	d := testserver.StartDovecot(t)
	e, err := imapconn.ParseURL("imaps://alice@" + d.IMAPSAddr)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var warns []error
	sink, err := sinks.OpenIMAP(ctx, &imapconn.Config{Endpoint: e, CAFile: d.CAFile, Password: d.Password("alice")}, 1, func(err error) { warns = append(warns, err) })
	if err != nil {
		t.Fatal(err)
	}
	var dests []string
	for _, name := range []string{"Release 1.2", "After"} {
		dest, err := sink.Prepare(ctx, migrate.Mailbox{Name: name}, name)
		if err != nil {
			t.Fatalf("Prepare %q: %v", name, err)
		}
		dests = append(dests, dest)
	}
	sink.Close()
	if dests[0] == "Release 1.2" || dests[1] != "After" {
		t.Fatalf("prepared as %q", dests)
	}
	if len(warns) != 1 {
		t.Errorf("warnings %v, want one (the refused name)", warns)
	}
	c := client(t, d, "alice")
	lsub, err := c.List("", "*", nil).Collect() // all folders
	if err != nil {
		t.Fatal(err)
	}
	var all []string
	for _, l := range lsub {
		all = append(all, l.Mailbox)
	}
	subs, err := c.List("", "*", &imap.ListOptions{SelectSubscribed: true}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	var subscribed []string
	for _, l := range subs {
		subscribed = append(subscribed, l.Mailbox)
	}
	for _, d := range dests {
		if !slices.Contains(all, d) || !slices.Contains(subscribed, d) {
			t.Errorf("%q: exists %v, subscribed %v (folders %q, subscribed %q)", d, slices.Contains(all, d), slices.Contains(subscribed, d), all, subscribed)
		}
	}
	if slices.Contains(subscribed, "Release 1.2") {
		t.Errorf("subscribed to the refused name: %q", subscribed)
	}
}
