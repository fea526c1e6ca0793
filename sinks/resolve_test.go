package sinks_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/emersion/go-imap/v2"

	"github.com/mailhaul/mailhaul/internal/imapconn"
	"github.com/mailhaul/mailhaul/internal/testserver/fakeimap"
	"github.com/mailhaul/mailhaul/migrate"
	"github.com/mailhaul/mailhaul/sinks"
)

// TestResolveIsPrepare: on servers with different naming (Dovecot-like
// with special-use attributes, Courier-like "INBOX." and "." without
// SPECIAL-USE), Resolve names the folder Prepare then uses, creates
// nothing, and still does once the folders exist (and the sink is
// closed).
func TestResolveIsPrepare(t *testing.T) {
	cases := []struct {
		name string
		o    fakeimap.Options
		seed func(*fakeimap.Server) error
	}{
		{"attributes", fakeimap.Options{}, func(s *fakeimap.Server) error {
			return s.Create("u", "Sent Messages", imap.MailboxAttrSent)
		}},
		{"courier", fakeimap.Options{Delim: '.', Prefix: "INBOX.", NoSpecialUse: true}, func(s *fakeimap.Server) error {
			return s.Create("u", "INBOX.Sent Items")
		}},
		{"endpoint-folder", fakeimap.Options{}, func(s *fakeimap.Server) error {
			return s.Create("u", "Sent", imap.MailboxAttrSent)
		}},
	}
	folders := []migrate.Mailbox{{Name: "INBOX"}, {Name: "Sent", SpecialUse: migrate.UseSent}, {Name: "Gesendet"},
		{Name: "Trash"}, {Name: "Archive/2020"}, {Name: "Release 1.2/notes"}}
	for i := range folders {
		migrate.GuessSpecialUse(&folders[i])
	}
	folders = (&migrate.Options{}).Planned(folders) // as the engine hands them to the sink
	ctx := context.Background()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := fakeimap.Start(t, tc.o)
			srv.AddUser("u", "p")
			if err := tc.seed(srv); err != nil {
				t.Fatal(err)
			}
			url := "imap://u@" + srv.Addr()
			if tc.name == "endpoint-folder" {
				url += "/Old"
			}
			open := fakeSinkOpener(t, url)
			var plan []migrate.PlannedFolder
			for _, mb := range folders {
				plan = append(plan, migrate.PlannedFolder{Source: mb.Name, Name: mb.Name})
			}
			resolveAll := func(s *sinks.IMAP) []string {
				s.Plan(plan)
				var out []string
				for _, mb := range folders {
					d, err := s.Resolve(ctx, mb, mb.Name)
					if err != nil {
						t.Fatal(err)
					}
					out = append(out, d)
				}
				return out
			}
			before := fmt.Sprint(srv.Folders("u"))
			s := open()
			s.Close()
			resolved := resolveAll(s) // works on a closed sink
			if after := fmt.Sprint(srv.Folders("u")); after != before {
				t.Fatalf("Resolve changed the folders:\n%s\n%s", before, after)
			}
			s = open()
			s.Plan(plan)
			var prepared []string
			for _, mb := range folders {
				d, err := s.Prepare(ctx, mb, mb.Name)
				if err != nil {
					t.Fatal(err)
				}
				prepared = append(prepared, d)
			}
			t.Logf("resolved %q", resolved)
			if fmt.Sprint(resolved) != fmt.Sprint(prepared) {
				t.Errorf("resolved %q, prepared %q", resolved, prepared)
			}
			if again := resolveAll(open()); fmt.Sprint(again) != fmt.Sprint(prepared) {
				t.Errorf("resolved after creation %q, prepared %q", again, prepared)
			}
			ep, id, ok := s.RefCopy(prepared[0], fmt.Sprintf("42:7:%s", prepared[0]))
			if !ok || ep != "42" || id != "7" {
				t.Errorf("RefCopy: %q %q %v", ep, id, ok)
			}
			for _, bad := range []string{"42:0:" + prepared[0], "42:7:Other", migrate.DedupeRef, "x"} {
				if _, _, ok := s.RefCopy(prepared[0], bad); ok {
					t.Errorf("RefCopy(%q) ok", bad)
				}
			}
		})
	}
}

// fakeSinkOpener returns a function that opens an IMAP sink on url (user
// u, password p, plaintext), closed when the test ends.
func fakeSinkOpener(t *testing.T, url string) func() *sinks.IMAP {
	t.Helper()
	e, err := imapconn.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &imapconn.Config{Endpoint: e, InsecurePlaintext: true, Password: "p"}
	return func() *sinks.IMAP {
		s, err := sinks.OpenIMAP(context.Background(), cfg, 1, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
}
