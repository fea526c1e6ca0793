package conformance

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailhaul/mailhaul/checkpoint"
	"github.com/mailhaul/mailhaul/internal/maildir"
	"github.com/mailhaul/mailhaul/migrate"
)

// SinkCase is one behaviour asked of every sink target.
type SinkCase struct {
	Name string
	Run  func(t *testing.T, tf TargetFunc)
}

// SinkCases are the cases, in the order they run.
func SinkCases() []SinkCase {
	return []SinkCase{
		{"bytes", BytesCase},
		{"flags-dates", FlagsCase},
		{"names", NamesCase},
		{"special-use", SpecialUseCase},
		{"twins", TwinsCase},
		{"locate", LocateCase},
		{"dedupe", DedupeCase},
		{"lost-state", LostStateCase},
		{"order", OrderCase},
		{"crash-points", CrashCase},
		{"resets", ResetCase},
		{"late-store", LateStoreCase},
		{"throttle", ThrottleCase},
	}
}

// RunSinks runs every case against every target: subtests "<case>/<target>".
func RunSinks(t *testing.T, targets []TargetFunc) {
	for _, c := range SinkCases() {
		t.Run(c.Name, func(t *testing.T) {
			for _, tf := range targets {
				t.Run(tf.Name, func(t *testing.T) { c.Run(t, tf) })
			}
		})
	}
}

// copyWith runs the engine from a source to the target's sink with a
// checkpoint at cp ("" : a fresh one).
func copyWith(t *testing.T, tgt Target, src migrate.Source, cp string, mod func(*migrate.Options)) migrate.Report {
	t.Helper()
	r, err := runEngine(context.Background(), t, tgt, src, cp, mod)
	if err != nil {
		t.Fatalf("%s: copy: %v", tgt.Name, err)
	}
	return r
}

// runEngine is copyWith for a run that may end in an error (one the case
// interrupts).
func runEngine(ctx context.Context, t *testing.T, tgt Target, src migrate.Source, cp string, mod func(*migrate.Options)) (migrate.Report, error) {
	t.Helper()
	if cp == "" {
		cp = filepath.Join(t.TempDir(), "cp.db")
	}
	store, err := checkpoint.Open(cp, "src", tgt.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	sink := tgt.Open(t)
	defer sink.Close()
	o := migrate.Options{Source: src, Sink: sink, Checkpoint: store, Transfers: 4, SettleDelay: 300 * time.Millisecond}
	if mod != nil {
		mod(&o)
	}
	return migrate.Run(ctx, o)
}

// want is the body a target holds for a source body.
func want(tgt Target, body []byte) string {
	if tgt.Q.CRLF {
		body = CRLF(body)
	}
	if tgt.Q.NUL == "0x80" {
		body = bytes.ReplaceAll(body, []byte{0}, []byte{0x80})
	}
	return string(body)
}

// checkExactlyOnce asserts that the target holds every message of msgs
// exactly once, nothing else, and that messages of one source folder are in
// one destination folder and those of different source folders in
// different ones.
func checkExactlyOnce(t *testing.T, tgt Target, msgs []Msg) []Stored {
	t.Helper()
	got := tgt.Read(t)
	type key struct{ folder, body string }
	wantN := map[key]int{}
	for _, m := range msgs {
		wantN[key{m.Folder, want(tgt, m.Body)}]++
	}
	gotByBody := map[string][]string{} // body -> destination folders holding it
	for _, s := range got {
		gotByBody[string(s.Body)] = append(gotByBody[string(s.Body)], s.Folder)
	}
	destOf := map[string]string{} // source folder -> destination folder
	srcOf := map[string]string{}
	for k, n := range wantN {
		folders := gotByBody[k.body]
		// Identical bodies may live in several source folders: count
		// them all together.
		total := 0
		for k2, n2 := range wantN {
			if k2.body == k.body {
				total += n2
			}
		}
		if len(folders) != total {
			t.Errorf("%s: %d copies of a message of %q, want %d: %s", tgt.Name, len(folders), k.folder, total, firstLine(k.body))
			continue
		}
		if total != n {
			continue // shared between folders: no folder mapping to learn
		}
		d := folders[0]
		if prev, ok := destOf[k.folder]; ok && prev != d {
			t.Errorf("%s: source folder %q split into %q and %q", tgt.Name, k.folder, prev, d)
		}
		destOf[k.folder] = d
		if prev, ok := srcOf[d]; ok && prev != k.folder {
			t.Errorf("%s: source folders %q and %q merged into %q", tgt.Name, prev, k.folder, d)
		}
		srcOf[d] = k.folder
	}
	for b, fs := range gotByBody {
		found := false
		for k := range wantN {
			if k.body == b {
				found = true
				break
			}
		}
		if !found {
			t.Errorf("%s: unexpected message in %v: %s", tgt.Name, fs, firstLine(b))
		}
	}
	return got
}

func firstLine(b string) string {
	for _, l := range strings.Split(b, "\n") {
		if strings.HasPrefix(l, "Subject:") {
			return strings.TrimSpace(l)
		}
	}
	if len(b) > 60 {
		b = b[:60]
	}
	return fmt.Sprintf("%q", b)
}

// BytesCase: every line-ending style and awkward content, copied so that
// a Maildir holds the bytes exactly and an IMAP server their CRLF form.
func BytesCase(t *testing.T, tf TargetFunc) {
	tgt := tf.New(t)
	msgs := BytesCorpus(8 << 20)
	r := copyWith(t, tgt, NewMemSource(msgs, nil), "", nil)
	if tgt.Q.NUL == "refused" {
		// The NUL message, and only it, is skipped, and the reason says
		// why; the others are copied.
		var kept []Msg
		for _, m := range msgs {
			if !bytes.Contains(m.Body, []byte{0}) {
				kept = append(kept, m)
			}
		}
		if len(r.Skipped) != 1 || !strings.Contains(r.Skipped[0].Reason, "BINARY") {
			t.Errorf("%s: skipped %v, want the NUL message with a reason naming BINARY", tgt.Name, r.Skipped)
		}
		msgs, r.Skipped = kept, nil
	}
	if len(r.Skipped) != 0 {
		t.Errorf("%s: skipped %v", tgt.Name, r.Skipped)
	}
	checkExactlyOnce(t, tgt, msgs)
}

// FlagsCase: flags, keywords and internal dates are kept; flags the
// destination does not keep are dropped and reported in the summary,
// never failing the message.
func FlagsCase(t *testing.T, tf TargetFunc) {
	tgt := tf.New(t)
	msgs := FlagsCorpus()
	r := copyWith(t, tgt, NewMemSource(msgs, nil), "", nil)
	if len(r.Skipped) != 0 {
		t.Errorf("%s: skipped %v", tgt.Name, r.Skipped)
	}
	got := checkExactlyOnce(t, tgt, msgs)
	byBody := map[string]Stored{}
	for _, s := range got {
		byBody[string(s.Body)] = s
	}
	dropped := false
	for _, m := range msgs {
		s, ok := byBody[want(tgt, m.Body)]
		if !ok {
			continue
		}
		have := map[string]bool{}
		for _, f := range s.Flags {
			have[strings.ToLower(f)] = true
		}
		for _, f := range m.Flags {
			if tgt.Q.NoKeywords && !strings.HasPrefix(f, `\`) {
				dropped = true
				continue
			}
			if !have[strings.ToLower(f)] {
				t.Errorf("%s: flag %s lost (stored %v)", tgt.Name, f, s.Flags)
			}
		}
		if d := s.Date.Sub(m.Date); d < -time.Second || d > time.Second {
			t.Errorf("%s: internal date %v, want %v", tgt.Name, s.Date.UTC(), m.Date)
		}
	}
	if dropped && len(r.DroppedFlags) == 0 {
		t.Errorf("%s: keywords dropped, but the report does not list them", tgt.Name)
	}
	for _, d := range r.DroppedFlags {
		if !tgt.Q.NoKeywords || d.Messages == 0 || d.Reason == "" {
			t.Errorf("%s: reported dropped flag %+v", tgt.Name, d)
		}
	}
}

// NamesCase: awkward, colliding, overlong and hostile folder names; each
// source folder gets a destination folder of its own (checkExactlyOnce),
// nothing is lost, and a Maildir writes nothing outside its root.
func NamesCase(t *testing.T, tf TargetFunc) {
	tgt := tf.New(t)
	msgs := NamesCorpus()
	outside := map[string]bool{}
	if strings.HasPrefix(tgt.Endpoint, "maildir:") {
		root := strings.TrimPrefix(tgt.Endpoint, "maildir:")
		base := filepath.Dir(filepath.Dir(root))
		filepath.Walk(base, func(p string, _ os.FileInfo, err error) error {
			outside[p] = true
			return nil
		})
		defer func() {
			filepath.Walk(base, func(p string, _ os.FileInfo, err error) error {
				// The destination root and its parents may be created.
				if !outside[p] && !strings.HasPrefix(p, root) && !strings.HasPrefix(root, p+string(filepath.Separator)) {
					t.Errorf("%s: %s written outside the destination", tgt.Name, p)
				}
				return nil
			})
		}()
	}
	r := copyWith(t, tgt, NewMemSource(msgs, nil), "", nil)
	if len(r.Skipped) != 0 {
		t.Errorf("%s: skipped %v", tgt.Name, r.Skipped)
	}
	checkExactlyOnce(t, tgt, msgs)
}

// SpecialUseCase: source folders with a special use land in the
// destination's folder of that use; two source folders that claim one use
// (an attribute and a well-known name) are never merged.
func SpecialUseCase(t *testing.T, tf TargetFunc) {
	tgt := tf.New(t)
	mk := func(folder string, i int) Msg {
		return Msg{Folder: folder, Date: baseDate, Body: []byte(header("special "+folder, fmt.Sprintf("su-%d@x", i)) + "\r\nin " + folder + "\r\n")}
	}
	// "Outgoing" carries \Sent and sorts before "Sent", whose name only
	// guesses it: on a server without SPECIAL-USE the "Sent" folder the
	// first run creates must not capture "Outgoing" in the second.
	msgs := []Msg{mk("INBOX", 0), mk("Outgoing", 1), mk("Sent", 2), mk("Drafts", 3), mk("Entwürfe", 4), mk("Trash", 5)}
	uses := map[string]string{"Outgoing": migrate.UseSent, "Drafts": migrate.UseDrafts}
	cp := filepath.Join(t.TempDir(), "cp.db")
	r := copyWith(t, tgt, NewMemSource(msgs, uses), cp, nil)
	if len(r.Skipped) != 0 {
		t.Errorf("%s: skipped %v", tgt.Name, r.Skipped)
	}
	checkExactlyOnce(t, tgt, msgs)
	// A later run, with new mail in every folder, maps every folder the
	// same way, whatever folders the first run created.
	for i, f := range []string{"INBOX", "Outgoing", "Sent", "Drafts", "Entwürfe", "Trash"} {
		msgs = append(msgs, mk(f, 10+i))
	}
	copyWith(t, tgt, NewMemSource(msgs, uses), cp, nil)
	checkExactlyOnce(t, tgt, msgs)
}

// TwinsCase: byte-identical twins, messages without Message-ID and
// messages sharing one are each copied once; a second run copies nothing.
func TwinsCase(t *testing.T, tf TargetFunc) {
	tgt := tf.New(t)
	msgs := TwinsCorpus()
	src := NewMemSource(msgs, nil)
	cp := filepath.Join(t.TempDir(), "cp.db")
	copyWith(t, tgt, src, cp, nil)
	checkExactlyOnce(t, tgt, msgs)
	r := copyWith(t, tgt, src, cp, nil)
	if r.Copied != 0 || r.Already != len(msgs) {
		t.Errorf("%s: second run copied %d, already %d (want 0, %d)", tgt.Name, r.Copied, r.Already, len(msgs))
	}
	checkExactlyOnce(t, tgt, msgs)
}

// LocateCase: the sink's Finder finds the copy an intent describes,
// distinct copies for twins, and distinct refs in different folders even
// where the server gives them one UIDVALIDITY. Folder A is prepared as one
// the source found empty (Mailbox.Empty: an IMAP sink does not select it)
// that a message reached after the listing: its mark, append and lookup
// work all the same.
func LocateCase(t *testing.T, tf TargetFunc) {
	tgt := tf.New(t)
	sink := tgt.Open(t)
	defer sink.Close()
	finder, ok := sink.(migrate.Finder)
	if !ok {
		t.Skipf("%s has no Finder", tgt.Name)
	}
	ctx := context.Background()
	body := []byte(header("located", "located@x") + "\r\nfind me\r\n")
	refs := map[string]bool{}
	var intents []migrate.Intent
	for i, folder := range []string{"INBOX", "A", "B", "B"} { // a twin in B
		dest, err := sink.Prepare(ctx, migrate.Mailbox{Name: folder, Empty: folder == "A"}, folder)
		if err != nil {
			t.Fatal(err)
		}
		mark, err := finder.Mark(ctx, dest)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := migrate.NewBody(bytes.NewReader(body), 0, "")
		in := migrate.Intent{Folder: folder, ID: fmt.Sprint(i), Dest: dest, Mark: mark, MessageID: b.MessageID(), Size: b.Size(), SHA256: b.SHA256(), Date: baseDate}
		if _, crlf := sink.(migrate.CRLFSink); crlf && (b.CRLFSize() != b.Size() || b.HasNUL()) {
			in.CRLFSize = b.CRLFSize()
			in.CRLFSHA256, _ = b.CompareSHA256()
		}
		ref, err := sink.Append(ctx, dest, migrate.Message{Mailbox: folder, ID: fmt.Sprint(i), Date: baseDate}, b)
		b.Close()
		if err != nil {
			t.Fatal(err)
		}
		if refs[ref] {
			t.Errorf("%s: ref %q returned twice", tgt.Name, ref)
		}
		refs[ref] = true
		if s, ok := sink.(migrate.Syncer); ok {
			s.Sync(ctx, dest)
		}
		intents = append(intents, in)
	}
	for i, in := range intents {
		cands, err := finder.Locate(ctx, in.Dest, []migrate.Intent{in})
		if err != nil {
			t.Fatal(err)
		}
		n := 1
		if i == 2 && !tgt.Q.Immediate {
			// The first of B's twins: its mark is below both copies. (A
			// Maildir's names derive from the source message: one each.)
			n = 2
		}
		if len(cands[0]) != n {
			t.Errorf("%s: Locate in %q found %v, want %d candidates", tgt.Name, in.Dest, cands[0], n)
		}
		for _, c := range cands[0] {
			if !refs[c] {
				t.Errorf("%s: Locate returned %q, not a ref Append gave", tgt.Name, c)
			}
		}
	}
	// A different message is not found.
	other := intents[0]
	other.SHA256, other.CRLFSHA256 = strings.Repeat("0", 64), ""
	cands, err := finder.Locate(ctx, other.Dest, []migrate.Intent{other})
	if err != nil || len(cands[0]) != 0 {
		t.Errorf("%s: Locate of a message never written: %v, %v", tgt.Name, cands, err)
	}
}

// DedupeCase: with --dedupe, messages the destination already holds (from
// another source, without any checkpoint) are not copied again; the others
// are.
func DedupeCase(t *testing.T, tf TargetFunc) {
	tgt := tf.New(t)
	all := CrashCorpus(30, 0)
	var first, second []Msg
	for i, m := range all {
		if i%2 == 0 {
			first = append(first, m)
		}
		if i%3 != 0 {
			second = append(second, m)
		}
	}
	copyWith(t, tgt, NewMemSource(first, nil), "", nil)
	s2 := NewMemSource(second, nil)
	s2.IDPrefix = "second-" // another source: its own message IDs
	r := copyWith(t, tgt, s2, "", func(o *migrate.Options) { o.Dedupe = true })
	if r.Found == 0 {
		t.Errorf("%s: --dedupe found nothing already there", tgt.Name)
	}
	// What the destination should hold: a message with a Message-ID
	// max(k1, k2) times (k1 copies from the first run, the second adds
	// only what is not there yet), one without k1+k2 times.
	type count struct {
		m      Msg
		k1, k2 int
	}
	byBody := map[string]*count{}
	var order []string
	tally := func(ms []Msg, second bool) {
		for _, m := range ms {
			c, ok := byBody[m.Folder+"\x00"+string(m.Body)]
			if !ok {
				c = &count{m: m}
				byBody[m.Folder+"\x00"+string(m.Body)] = c
				order = append(order, m.Folder+"\x00"+string(m.Body))
			}
			if second {
				c.k2++
			} else {
				c.k1++
			}
		}
	}
	tally(first, false)
	tally(second, true)
	var union []Msg
	for _, k := range order {
		c := byBody[k]
		n := max(c.k1, c.k2)
		if !bytes.Contains(c.m.Body, []byte("Message-ID:")) {
			n = c.k1 + c.k2
		}
		for i := 0; i < n; i++ {
			union = append(union, c.m)
		}
	}
	checkExactlyOnce(t, tgt, union)
}

// LostStateCase: a copy whose checkpoint is gone (a new state dir) into a
// destination an earlier run filled copies only what is not there yet,
// also when it is interrupted at its cut-th append and resumed
// with its own checkpoint; a run after copies nothing. The messages the
// earlier run copied are found by Message-ID, size and date, whatever the
// server's refs look like (one UIDVALIDITY for every folder, none at all
// without UIDPLUS); those without a Message-ID are copied again, as
// documented. Among the new messages are twins, which a resumed run must
// not take for each other's copies: the cuts at the first six appends
// fall before, between and after them.
func LostStateCase(t *testing.T, tf TargetFunc) {
	all := CrashCorpus(45, 0)
	// What the earlier run copied: the first two thirds of each folder
	// (so the source's ids, positions in a folder, stay the same as new
	// mail arrives after them).
	n := map[string]int{}
	for _, m := range all {
		n[m.Folder]++
	}
	var first []Msg
	seen := map[string]int{}
	for _, m := range all {
		if seen[m.Folder]++; seen[m.Folder] <= n[m.Folder]*2/3 {
			first = append(first, m)
		}
	}
	for cut := int64(1); cut <= 6; cut++ {
		tgt := tf.New(t)
		// What the destination should hold in the end: every message of
		// the source once, and those without a Message-ID the first run
		// copied once more — except where a copy's name derives from its
		// source id and content (Maildir): written again, it lands on the
		// first copy.
		union := append([]Msg{}, all...)
		for _, m := range first {
			if !bytes.Contains(m.Body, []byte("Message-ID:")) && !tgt.Q.SameName {
				union = append(union, m)
			}
		}
		copyWith(t, tgt, NewMemSource(first, nil), "", nil)
		cp := filepath.Join(t.TempDir(), "lost.db")
		ctx, cancel := context.WithCancel(context.Background())
		var appends atomic.Int64
		_, err := runEngine(ctx, t, tgt, NewMemSource(all, nil), cp, func(o *migrate.Options) {
			o.BatchSize, o.Transfers = 1, 1
			o.StepHook = func(step string) {
				if step == "append" && appends.Add(1) == cut {
					cancel()
				}
			}
		})
		cancel()
		if appends.Load() < cut {
			t.Fatalf("%s: the lost-state run ended (%v) after %d appends, before the cut at %d", tgt.Name, err, appends.Load(), cut)
		}
		r := copyWith(t, tgt, NewMemSource(all, nil), cp, nil)
		t.Logf("cut at append %d (%d made): the resumed run copied %d, found %d, had %d already", cut, appends.Load(), r.Copied, r.Found, r.Already)
		if r.Found == 0 && cut == 1 {
			t.Errorf("%s, cut at %d: the resumed run found nothing in the destination", tgt.Name, cut)
		}
		checkExactlyOnce(t, tgt, union)
		if r := copyWith(t, tgt, NewMemSource(all, nil), cp, nil); r.Copied != 0 {
			t.Errorf("%s, cut at %d: the run after copied %d", tgt.Name, cut, r.Copied)
		}
		if t.Failed() {
			t.Fatalf("%s: failed with the cut at append %d", tgt.Name, cut)
		}
	}
}

// writeMaildirSource writes msgs as a Maildir++ tree (for cases that run
// the binary from a local source) and returns its root.
func writeMaildirSource(t *testing.T, msgs []Msg) string {
	t.Helper()
	root := filepath.Join(t.TempDir(), "src")
	for i, m := range msgs {
		dir := maildir.FolderDir(root, maildir.PlusPlus, m.Folder)
		for _, sub := range []string{"cur", "new", "tmp"} {
			os.MkdirAll(filepath.Join(dir, sub), 0o755)
		}
		info, _ := maildir.InfoFromFlags(m.Flags, nil)
		p := filepath.Join(dir, "cur", fmt.Sprintf("%d.M%dP1.conformance:2,%s", m.Date.Unix(), i, info))
		if len(m.Flags) == 0 && i%2 == 0 {
			// Unread mail a client has not seen yet: in new/, no info.
			p = filepath.Join(dir, "new", fmt.Sprintf("%d.M%dP1.conformance", m.Date.Unix(), i))
		}
		if err := os.WriteFile(p, m.Body, 0o644); err != nil {
			t.Fatal(err)
		}
		os.Chtimes(p, m.Date, m.Date)
	}
	return root
}

// CrashCase kills the binary right after each step of the append protocol
// (intent recorded, message appended, folder synced, done recorded, at
// several counts) and resumes: every message ends up exactly once.
func CrashCase(t *testing.T, tf TargetFunc) {
	msgs := CrashCorpus(60, 3000)
	src := writeMaildirSource(t, msgs)
	points := []string{"intent:1", "append:2", "sync:1", "done:1", "append:7", "intent:3", "done:4", "append:13", "sync:5", "append:21", "done:9", "append:30"}
	tgt := tf.New(t)
	state := t.TempDir()
	rounds, kills := 0, 0
	args := func() []string {
		return append(append([]string{"copy", "--transfers", "3", "--settle-delay", "500ms", "--state-dir", state}, tgt.Args...), "maildir:"+src, tgt.Endpoint)
	}
	for i := 0; i < 4*len(points) && kills < len(points); i++ {
		p := points[i%len(points)]
		r := Run(t, append(tgt.Env, "MAILHAUL_TEST_KILL_AT="+p), args()...)
		switch {
		case r.Code < 0:
			kills++
		case r.Code == 0:
			checkExactlyOnce(t, tgt, msgs)
			if t.Failed() {
				t.Fatalf("%s: round %d ended after kills; last run:\n%s", tgt.Name, rounds, r.Stderr)
			}
			rounds++
			tgt, state = tf.New(t), t.TempDir()
		default:
			t.Fatalf("%s: kill at %s: exit %d\n%s", tgt.Name, p, r.Code, r.Stderr)
		}
	}
	if r := Run(t, tgt.Env, args()...); r.Code != 0 {
		t.Fatalf("%s: final run: exit %d\n%s", tgt.Name, r.Code, r.Stderr)
	}
	checkExactlyOnce(t, tgt, msgs)
	t.Logf("%s: %d kills, %d rounds", tgt.Name, kills, rounds+1)
}

// ResetCase resets the destination's connections at random byte counts in
// both directions (network targets); one run completes (exit 0) and every
// message is there exactly once.
func ResetCase(t *testing.T, tf TargetFunc) {
	tgt := tf.New(t)
	if tgt.Via == nil {
		t.Skipf("%s is not reached over a network", tgt.Name)
	}
	msgs := CrashCorpus(120, 20000)
	src := writeMaildirSource(t, msgs)
	seed := time.Now().UnixNano()
	if v := os.Getenv("MAILHAUL_TEST_SEED"); v != "" {
		fmt.Sscan(v, &seed)
	}
	t.Logf("seed %d (MAILHAUL_TEST_SEED repeats it)", seed)
	ep := tgt.Via(t, resetConfig(seed))
	r := Run(t, tgt.Env, append(append([]string{"--json", "copy", "--transfers", "3", "--settle-delay", "500ms", "--state-dir", t.TempDir()}, tgt.Args...), "maildir:"+src, ep)...)
	if r.Code != 0 {
		t.Fatalf("%s: exit %d\n%s", tgt.Name, r.Code, tail(r.Stderr, 3000))
	}
	checkExactlyOnce(t, tgt, msgs)
	var rep struct{ Settled []struct{ How string } }
	json.Unmarshal([]byte(r.Stdout), &rep)
	t.Logf("%s: %d appends settled", tgt.Name, len(rep.Settled))
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

// sortedFolders is used in failure messages.
func sortedFolders(st []Stored) []string {
	set := map[string]bool{}
	for _, s := range st {
		set[s.Folder] = true
	}
	var out []string
	for f := range set {
		out = append(out, f)
	}
	sort.Strings(out)
	return out
}
