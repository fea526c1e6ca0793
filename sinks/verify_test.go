package sinks_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/mailhaul/mailhaul/internal/imapconn"
	"github.com/mailhaul/mailhaul/internal/maildir"
	"github.com/mailhaul/mailhaul/internal/testserver"
	"github.com/mailhaul/mailhaul/migrate"
	"github.com/mailhaul/mailhaul/sinks"
)

// verifySink is what the Verify tests need of a sink.
type verifySink interface {
	migrate.Sink
	migrate.Verifier
}

// appendForVerify appends three messages — two of them byte-identical
// twins — to INBOX of sink and returns their refs, sizes and hashes.
func appendForVerify(t *testing.T, sink migrate.Sink) (refs []string, sizes []int64, sums []string) {
	t.Helper()
	ctx := context.Background()
	dest, err := sink.Prepare(ctx, migrate.Mailbox{Name: "INBOX"}, "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	for i, body := range []string{"Message-ID: <v1@x>\r\n\r\none\r\n", "Message-ID: <tw@x>\r\n\r\ntwin\r\n", "Message-ID: <tw@x>\r\n\r\ntwin\r\n"} {
		b, err := migrate.NewBody(strings.NewReader(body), 0, "")
		if err != nil {
			t.Fatal(err)
		}
		ref, err := sink.Append(ctx, dest, migrate.Message{Mailbox: "INBOX", ID: fmt.Sprint(i), Date: time.Unix(1.7e9, 0)}, b)
		if err != nil {
			t.Fatal(err)
		}
		refs, sizes, sums = append(refs, ref), append(sizes, b.Size()), append(sums, b.SHA256())
		b.Close()
	}
	if s, ok := sink.(migrate.Syncer); ok {
		s.Sync(ctx, dest)
	}
	return refs, sizes, sums
}

// checkVerify: each copy, twins included, is confirmed by its own ref;
// another message's hash, a ref of another UIDVALIDITY or file and a
// changed copy are not; nothing is removed.
func checkVerify(t *testing.T, sink verifySink, change func(ref string), otherRef func(ref string) string, count func() int) {
	ctx := context.Background()
	refs, sizes, sums := appendForVerify(t, sink)
	got, err := sink.Verify(ctx, "INBOX", refs, sizes, sums)
	if err != nil || fmt.Sprint(got) != "[true true true]" {
		t.Fatalf("Verify of the copies as written: %v, %v", got, err)
	}
	got, err = sink.Verify(ctx, "INBOX", []string{refs[0], otherRef(refs[1])}, []int64{sizes[1], sizes[1]}, []string{sums[1], sums[1]})
	if err != nil || fmt.Sprint(got) != "[false false]" {
		t.Errorf("Verify of another message's hash and of an unknown ref: %v, %v", got, err)
	}
	change(refs[0])
	got, err = sink.Verify(ctx, "INBOX", refs, sizes, sums)
	if err != nil || fmt.Sprint(got) != "[false true true]" {
		t.Errorf("Verify after the first copy changed: %v, %v", got, err)
	}
	if n := count(); n != 3 {
		t.Errorf("the folder holds %d messages after Verify, want 3 (Verify removes nothing)", n)
	}
}

func TestMaildirVerify(t *testing.T) {
	root := t.TempDir()
	sink, err := sinks.OpenMaildir(root, maildir.PlusPlus)
	if err != nil {
		t.Fatal(err)
	}
	files := func() []string {
		m, _ := filepath.Glob(filepath.Join(root, "cur", "*"))
		n, _ := filepath.Glob(filepath.Join(root, "new", "*"))
		return append(m, n...)
	}
	checkVerify(t, sink,
		func(ref string) {
			for _, p := range files() {
				if strings.HasPrefix(filepath.Base(p), ref) {
					b, _ := os.ReadFile(p)
					os.WriteFile(p, []byte(strings.Replace(string(b), "one", "ONE", 1)), 0o600) // same size
				}
			}
		},
		func(ref string) string { return ref + "x" },
		func() int { return len(files()) })
}

// openAliceSink opens an IMAP sink on alice's account at dst (one
// connection), closed at the test's end.
func openAliceSink(t *testing.T, dst *testserver.Dovecot) *sinks.IMAP {
	t.Helper()
	e, err := imapconn.ParseURL("imaps://alice@" + dst.IMAPSAddr)
	if err != nil {
		t.Fatal(err)
	}
	sink, err := sinks.OpenIMAP(context.Background(), &imapconn.Config{Endpoint: e, CAFile: dst.CAFile, Password: dst.Password("alice")}, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sink.Close() })
	return sink
}

func TestIMAPVerify(t *testing.T) {
	dst := testserver.StartDovecot(t)
	sink := openAliceSink(t, dst)
	c := client(t, dst, "alice")
	checkVerify(t, sink,
		func(ref string) {
			// IMAP messages cannot change: expunge the copy and store
			// another message, which gets a new UID.
			var uid uint32
			fmt.Sscanf(strings.SplitN(ref, ":", 3)[1], "%d", &uid)
			if _, err := c.Select("INBOX", nil).Wait(); err != nil {
				t.Fatal(err)
			}
			if err := c.Store(imap.UIDSetNum(imap.UID(uid)), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagDeleted}, Silent: true}, nil).Close(); err != nil {
				t.Fatal(err)
			}
			if err := c.Expunge().Close(); err != nil {
				t.Fatal(err)
			}
			seed(t, c, []seedMsg{{"INBOX", "Message-ID: <v1@x>\r\n\r\nONE\r\n", nil, time.Unix(1.7e9, 0)}})
		},
		func(ref string) string { p := strings.SplitN(ref, ":", 2); return "1:" + p[1] },
		func() int {
			st, err := c.Status("INBOX", &imap.StatusOptions{NumMessages: true}).Wait()
			if err != nil {
				t.Fatal(err)
			}
			return int(*st.NumMessages)
		})
}

// A copy flagged \Deleted, not yet expunged, is not confirmed: the source
// message must not be deleted on the strength of a copy about to go.
func TestIMAPVerifyDeleted(t *testing.T) {
	dst := testserver.StartDovecot(t)
	sink := openAliceSink(t, dst)
	refs, sizes, sums := appendForVerify(t, sink)
	var uid uint32
	fmt.Sscanf(strings.SplitN(refs[1], ":", 3)[1], "%d", &uid)
	c := client(t, dst, "alice")
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if err := c.Store(imap.UIDSetNum(imap.UID(uid)), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagDeleted}, Silent: true}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	got, err := sink.Verify(context.Background(), "INBOX", refs, sizes, sums)
	if err != nil || fmt.Sprint(got) != "[true false true]" {
		t.Errorf("Verify with the second copy flagged \\Deleted: %v, %v; want [true false true]", got, err)
	}
}

// A Maildir copy flagged T (trashed, IMAP's \Deleted) is not confirmed.
func TestMaildirVerifyTrashed(t *testing.T) {
	root := t.TempDir()
	sink, err := sinks.OpenMaildir(root, maildir.PlusPlus)
	if err != nil {
		t.Fatal(err)
	}
	refs, sizes, sums := appendForVerify(t, sink)
	m, _ := filepath.Glob(filepath.Join(root, "*", refs[1]+"*"))
	if len(m) != 1 {
		t.Fatalf("copy %s: found %v", refs[1], m)
	}
	base, _, _ := strings.Cut(filepath.Base(m[0]), ":")
	if err := os.Rename(m[0], filepath.Join(root, "cur", base+":2,ST")); err != nil {
		t.Fatal(err)
	}
	got, err := sink.Verify(context.Background(), "INBOX", refs, sizes, sums)
	if err != nil || fmt.Sprint(got) != "[true false true]" {
		t.Errorf("Verify with the second copy flagged T: %v, %v; want [true false true]", got, err)
	}
}
