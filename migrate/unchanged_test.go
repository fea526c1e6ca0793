package migrate_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailhaul/mailhaul/migrate"
)

// versionedSource is a fakeSource whose folders have a Version (as the
// IMAP source's LIST-STATUS gives) and which counts its listings.
type versionedSource struct {
	*fakeSource
	mu      sync.Mutex
	version map[string]string
	lists   map[string]int
}

func newVersionedSource(folders map[string]int) *versionedSource {
	s := &versionedSource{fakeSource: newFakeSource(folders), version: map[string]string{}, lists: map[string]int{}}
	for _, mb := range s.boxes {
		s.version[mb.Name] = "v1"
	}
	return s
}

func (s *versionedSource) Mailboxes(ctx context.Context) ([]migrate.Mailbox, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []migrate.Mailbox
	for _, mb := range s.boxes {
		mb.Epoch, mb.Version = "7", s.version[mb.Name]
		out = append(out, mb)
	}
	return out, nil
}

func (s *versionedSource) List(ctx context.Context, mb migrate.Mailbox, fn func(migrate.Message) error) error {
	s.mu.Lock()
	s.lists[mb.Name]++
	s.mu.Unlock()
	return s.fakeSource.List(ctx, mb, fn)
}

// listed returns and resets the listing counts.
func (s *versionedSource) listed() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.lists
	s.lists = map[string]int{}
	return l
}

// add appends a message to folder and changes its Version, as new mail
// does on a server.
func (s *versionedSource) add(folder, version string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id := fmt.Sprintf("%s-new-%d", folder, len(s.msgs[folder]))
	body := fmt.Sprintf("Message-ID: <%s@x>\r\n\r\nnew\r\n", id)
	s.bodies[id] = body
	s.msgs[folder] = append(s.msgs[folder], migrate.Message{Mailbox: folder, ID: id, Size: int64(len(body)), Date: time.Unix(2e9, 0)})
	s.version[folder] = version
}

// TestUnchangedFoldersAreNotListed: a folder a run finished is not listed
// again while its Version stays; a new message (new Version), another
// selection, --relist, a skipped message or an interrupted run make it
// listed again; the report still counts its messages as already there.
func TestUnchangedFoldersAreNotListed(t *testing.T) {
	src := newVersionedSource(map[string]int{"INBOX": 5, "Sent": 3, "Archive": 4})
	sink := newFakeSink()
	sink.rename = map[string]string{"Sent": "Sent Messages"} // the destination's \Sent folder
	cp := openCP(t)
	run := func(o migrate.Options) migrate.Report {
		t.Helper()
		o.Source, o.Sink, o.Checkpoint, o.RetryBase = src, sink, cp, time.Millisecond
		r, err := migrate.Run(context.Background(), o)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	expectListed := func(what string, want ...string) {
		t.Helper()
		got := src.listed()
		if len(got) != len(want) {
			t.Errorf("%s: listed %v, want %v", what, got, want)
			return
		}
		for _, f := range want {
			if got[f] != 1 {
				t.Errorf("%s: listed %v, want %v", what, got, want)
			}
		}
	}

	r := run(migrate.Options{})
	expectListed("first run", "INBOX", "Sent", "Archive")
	if r.Copied != 12 || r.Unchanged != 0 {
		t.Fatalf("first run: %+v", r)
	}
	prepared := len(sink.prepared)

	r = run(migrate.Options{})
	expectListed("re-run")
	if r.Copied != 0 || r.Already != 12 || r.Unchanged != 3 || len(r.Folders) != 3 {
		t.Errorf("re-run: copied %d, already %d, unchanged %d, %d folders", r.Copied, r.Already, r.Unchanged, len(r.Folders))
	}
	if len(sink.prepared) != prepared {
		t.Errorf("re-run prepared destination folders %v", sink.prepared[prepared:])
	}
	for _, f := range r.Folders {
		if want := map[string]string{"Sent": "Sent Messages"}[f.Name]; want != "" && f.Dest != want {
			t.Errorf("re-run reports %q -> %q, want the folder Prepare chose, %q", f.Name, f.Dest, want)
		}
	}

	src.add("Sent", "v2")
	r = run(migrate.Options{})
	expectListed("new mail in Sent", "Sent")
	if r.Copied != 1 || r.Already != 12 || sink.count() != 13 {
		t.Errorf("new mail: copied %d, already %d, sink %d", r.Copied, r.Already, sink.count())
	}
	run(migrate.Options{})
	expectListed("after new mail")

	run(migrate.Options{Relist: true})
	expectListed("--relist", "INBOX", "Sent", "Archive")
	run(migrate.Options{MaxSize: 1 << 20})
	expectListed("another selection", "INBOX", "Sent", "Archive")
	run(migrate.Options{MaxSize: 1 << 20})
	expectListed("that selection again")
	run(migrate.Options{SkipDeleted: true})
	expectListed("--skip-deleted", "INBOX", "Sent", "Archive")
	run(migrate.Options{SkipDeleted: true})
	expectListed("--skip-deleted again: flags decide, always listed", "INBOX", "Sent", "Archive")

	// A message that cannot be copied keeps its folder listed until it is.
	src.add("Archive", "v3")
	src.errs["Archive-new-4"] = migrate.SkipMessage(errors.New("unreadable"))
	r = run(migrate.Options{})
	if len(r.Skipped) != 1 {
		t.Fatalf("skipped %v", r.Skipped)
	}
	src.listed()
	run(migrate.Options{})
	expectListed("a folder with a skipped message", "Archive")
	delete(src.errs, "Archive-new-4")
	run(migrate.Options{})
	expectListed("the skipped message copied", "Archive")
	run(migrate.Options{})
	expectListed("then unchanged")

	// An interrupted run records nothing.
	src.add("INBOX", "v4")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	migrate.Run(ctx, migrate.Options{Source: src, Sink: sink, Checkpoint: cp})
	src.listed()
	r = run(migrate.Options{})
	expectListed("after an interrupted run", "INBOX")
	if sink.count() != 15 || r.Copied != 1 {
		t.Errorf("sink holds %d, copied %d", sink.count(), r.Copied)
	}
}

// folderSyncSink is a fakeSink whose folders need SyncFolders to be
// durable; it counts the calls and fails them while err is set.
type folderSyncSink struct {
	*fakeSink
	calls int
	err   error
}

func (s *folderSyncSink) SyncFolders(ctx context.Context) error {
	s.calls++
	return s.err
}

// TestFolderVersionsWaitForFolderSync: the folders a run finished are
// recorded only after the sink made its folders durable; when it cannot,
// the run fails and the next run lists them again.
func TestFolderVersionsWaitForFolderSync(t *testing.T) {
	src := newVersionedSource(map[string]int{"INBOX": 2, "Empty": 0})
	sink := &folderSyncSink{fakeSink: newFakeSink(), err: errors.New("disk gone")}
	cp := openCP(t)
	o := migrate.Options{Source: src, Sink: sink, Checkpoint: cp, RetryBase: time.Millisecond}
	if _, err := migrate.Run(context.Background(), o); err == nil || !strings.Contains(err.Error(), "disk gone") {
		t.Fatalf("run with a failing folder sync: %v", err)
	}
	if sink.calls != 1 {
		t.Errorf("SyncFolders called %d times, want 1", sink.calls)
	}
	src.listed()
	sink.err = nil
	if _, err := migrate.Run(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	if got := src.listed(); got["INBOX"] != 1 || got["Empty"] != 1 {
		t.Errorf("after a failed folder sync: listed %v, want both folders again", got)
	}
	r, err := migrate.Run(context.Background(), o)
	if err != nil || r.Unchanged != 2 {
		t.Errorf("third run: %d unchanged, %v; want 2", r.Unchanged, err)
	}
}
