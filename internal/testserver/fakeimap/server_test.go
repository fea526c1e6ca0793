package fakeimap

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// TestRoundTrip walks the commands mailhaul uses, checking exact bytes,
// sizes, dates, flags and UIDs.
func TestRoundTrip(t *testing.T) {
	s := start(t, Options{})
	c := dial(t, s)
	if err := c.Create("Work", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	date := time.Date(2021, 3, 4, 5, 6, 7, 0, time.FixedZone("", 3600))
	// Mixed line endings and 8-bit bytes must survive untouched.
	body1 := []byte("Message-ID: <one@x>\r\nSubject: caf\xe9\nX: y\r\n\r\nbody\nline\r\n")
	body2 := bytes.Repeat([]byte("Message-ID: <two@x>\r\n\r\n"+strings.Repeat("z", 70)+"\r\n"), 200) // > 4 KiB: synchronising literal
	ad, err := appendMsg(c, "Work", body1, &imap.AppendOptions{Flags: []imap.Flag{imap.FlagFlagged, "$Forwarded"}, Time: date})
	if err != nil {
		t.Fatal(err)
	}
	if ad.UID != 1 || ad.UIDValidity == 0 {
		t.Fatalf("APPENDUID %+v", ad)
	}
	if _, err := appendMsg(c, "Work", body2, nil); err != nil {
		t.Fatal(err)
	}
	got := s.Messages("u", "Work")
	if len(got) != 2 || !bytes.Equal(got[0].Body, body1) || !bytes.Equal(got[1].Body, body2) {
		t.Fatalf("stored %d messages, bytes differ", len(got))
	}
	if !got[0].Date.Equal(date) || !slices.Equal(got[0].Flags, []imap.Flag{imap.FlagFlagged, "$Forwarded"}) {
		t.Fatalf("stored date %v flags %v", got[0].Date, got[0].Flags)
	}

	st, err := c.Status("Work", &imap.StatusOptions{NumMessages: true, UIDNext: true, UIDValidity: true, NumUnseen: true}).Wait()
	if err != nil {
		t.Fatal(err)
	}
	if *st.NumMessages != 2 || st.UIDNext != 3 || st.UIDValidity != ad.UIDValidity || *st.NumUnseen != 2 {
		t.Fatalf("STATUS %+v", st)
	}
	sel, err := c.Select("Work", nil).Wait()
	if err != nil {
		t.Fatal(err)
	}
	if sel.NumMessages != 2 || sel.UIDNext != 3 || sel.UIDValidity != ad.UIDValidity {
		t.Fatalf("SELECT %+v", sel)
	}

	whole := &imap.FetchItemBodySection{Peek: true}
	mid := &imap.FetchItemBodySection{Peek: true, Partial: &imap.SectionPartial{Offset: 3, Size: 10}}
	hdr := &imap.FetchItemBodySection{Peek: true, Specifier: imap.PartSpecifierHeader, HeaderFields: []string{"Message-ID"}}
	msgs := fetchAll(t, c, imap.UIDSetNum(1, 2), &imap.FetchOptions{
		UID: true, Flags: true, InternalDate: true, RFC822Size: true,
		BodySection: []*imap.FetchItemBodySection{whole, mid, hdr},
	})
	if len(msgs) != 2 {
		t.Fatalf("fetched %d", len(msgs))
	}
	m := msgs[0]
	if m.UID != 1 || m.RFC822Size != int64(len(body1)) || !m.InternalDate.Equal(date) {
		t.Errorf("UID %d size %d date %v", m.UID, m.RFC822Size, m.InternalDate)
	}
	if !bytes.Equal(m.FindBodySection(whole), body1) {
		t.Errorf("BODY[] %q", m.FindBodySection(whole))
	}
	if !bytes.Equal(m.FindBodySection(mid), body1[3:13]) {
		t.Errorf("BODY[]<3.10> %q", m.FindBodySection(mid))
	}
	if h := string(m.FindBodySection(hdr)); !strings.Contains(h, "<one@x>") || strings.Contains(h, "Subject") {
		t.Errorf("HEADER.FIELDS %q", h)
	}
	if !bytes.Equal(msgs[1].FindBodySection(whole), body2) || msgs[1].RFC822Size != int64(len(body2)) {
		t.Errorf("second message differs")
	}
	if fl := s.Messages("u", "Work")[0].Flags; hasFlag(fl, imap.FlagSeen) {
		t.Errorf("BODY.PEEK set \\Seen: %v", fl)
	}

	// UID SEARCH: ranges, HEADER, LARGER/SMALLER, ALL, n:* above the top.
	search := func(cr *imap.SearchCriteria) []imap.UID {
		t.Helper()
		d, err := c.UIDSearch(cr, nil).Wait()
		if err != nil {
			t.Fatal(err)
		}
		return d.AllUIDs()
	}
	if u := search(&imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "Message-ID", Value: "<two@x>"}}}); !slices.Equal(u, []imap.UID{2}) {
		t.Errorf("HEADER Message-ID: %v", u)
	}
	if u := search(&imap.SearchCriteria{Larger: 1000}); !slices.Equal(u, []imap.UID{2}) {
		t.Errorf("LARGER: %v", u)
	}
	if u := search(&imap.SearchCriteria{Smaller: 1000}); !slices.Equal(u, []imap.UID{1}) {
		t.Errorf("SMALLER: %v", u)
	}
	if u := search(&imap.SearchCriteria{}); !slices.Equal(u, []imap.UID{1, 2}) {
		t.Errorf("ALL: %v", u)
	}
	var from2 imap.UIDSet
	from2.AddRange(2, 0)
	if u := search(&imap.SearchCriteria{UID: []imap.UIDSet{from2}}); !slices.Equal(u, []imap.UID{2}) {
		t.Errorf("UID 2:*: %v", u)
	}
	var above imap.UIDSet
	above.AddRange(7, 0) // "7:*" means "2:7" (RFC 3501): UID 2
	if u := search(&imap.SearchCriteria{UID: []imap.UIDSet{above}}); !slices.Equal(u, []imap.UID{2}) {
		t.Errorf("UID 7:*: %v", u)
	}

	// UID STORE, UID EXPUNGE, EXPUNGE.
	if err := c.Store(imap.UIDSetNum(1, 2), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.UIDExpunge(imap.UIDSetNum(2)).Close(); err != nil {
		t.Fatal(err)
	}
	if got := s.Messages("u", "Work"); len(got) != 1 || got[0].UID != 1 || !hasFlag(got[0].Flags, imap.FlagDeleted) {
		t.Fatalf("after UID EXPUNGE 2: %+v", got)
	}
	if err := c.Noop().Wait(); err != nil {
		t.Fatal(err)
	}
	if err := c.Expunge().Close(); err != nil {
		t.Fatal(err)
	}
	if got := s.Messages("u", "Work"); len(got) != 0 {
		t.Fatalf("after EXPUNGE: %d messages", len(got))
	}
	if err := c.Logout().Wait(); err != nil {
		t.Fatal(err)
	}
	if n := s.Stats().Commands["UID FETCH"]; n != 1 {
		t.Errorf("Stats UID FETCH = %d", n)
	}
}

// TestSeenFlag: EXAMINE never changes flags; BODY[] in a SELECTed folder
// sets \Seen.
func TestSeenFlag(t *testing.T) {
	s := start(t, Options{})
	if _, err := s.Append("u", "INBOX", msg("a@x", "a"), nil, time.Time{}); err != nil {
		t.Fatal(err)
	}
	c := dial(t, s)
	if _, err := c.Select("INBOX", &imap.SelectOptions{ReadOnly: true}).Wait(); err != nil {
		t.Fatal(err)
	}
	nonPeek := &imap.FetchItemBodySection{}
	fetchAll(t, c, imap.UIDSetNum(1), &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{nonPeek}})
	if err := c.Store(imap.UIDSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagFlagged}}, nil).Close(); err == nil {
		t.Error("STORE in an EXAMINEd folder succeeded")
	}
	if err := c.UnselectAndExpunge().Wait(); err != nil { // CLOSE: must not expunge either
		t.Fatal(err)
	}
	if fl := s.Messages("u", "INBOX")[0].Flags; len(fl) != 0 {
		t.Fatalf("EXAMINE changed flags: %v", fl)
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	fetchAll(t, c, imap.UIDSetNum(1), &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{nonPeek}})
	if fl := s.Messages("u", "INBOX")[0].Flags; !slices.Equal(fl, []imap.Flag{imap.FlagSeen}) {
		t.Fatalf("BODY[] in SELECT: flags %v, want \\Seen", fl)
	}
}

func TestUIDValidityPolicies(t *testing.T) {
	clock := time.Unix(1700000000, 0)
	now := func() time.Time { return clock }
	create := func(s *Server, names ...string) map[string]uint32 {
		t.Helper()
		for _, n := range names {
			if err := s.Create("u", n); err != nil {
				t.Fatal(err)
			}
		}
		m := map[string]uint32{}
		for _, f := range s.Folders("u") {
			m[f.Name] = f.UIDValidity
		}
		return m
	}

	d := create(start(t, Options{Now: now}), "a", "b")
	if d["a"] == d["b"] || d["a"] == d["INBOX"] || d["a"] == 0 {
		t.Errorf("Distinct: %v", d)
	}
	sh := create(start(t, Options{UIDValidity: Shared, Now: now}), "a", "b")
	if sh["a"] != sh["b"] || sh["a"] != sh["INBOX"] {
		t.Errorf("Shared: %v", sh)
	}
	ps := start(t, Options{UIDValidity: PerSecond, Now: func() time.Time { return clock }})
	p1 := create(ps, "a", "b")
	clock = clock.Add(time.Second)
	p2 := create(ps, "c")
	if p1["a"] != p1["b"] || p1["a"] != 1700000000 || p2["c"] != 1700000001 {
		t.Errorf("PerSecond: %v then %v", p1, p2)
	}

	// The client sees the same values.
	c := dial(t, ps)
	for name, v := range p2 {
		st, err := c.Status(name, &imap.StatusOptions{UIDValidity: true}).Wait()
		if err != nil || st.UIDValidity != v {
			t.Errorf("STATUS %s: %+v %v, want %d", name, st, err, v)
		}
	}
}

func TestSetUIDValidity(t *testing.T) {
	s := start(t, Options{})
	for i := range 3 {
		s.Append("u", "INBOX", msg(fmt.Sprint(i), "x"), nil, time.Time{})
	}
	c := dial(t, s)
	c.Select("INBOX", nil).Wait()
	c.Store(imap.UIDSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close()
	c.Expunge().Close()
	if err := s.SetUIDValidity("u", "INBOX", 42); err != nil {
		t.Fatal(err)
	}
	st, err := c.Status("INBOX", &imap.StatusOptions{UIDValidity: true, UIDNext: true, NumMessages: true}).Wait()
	if err != nil || st.UIDValidity != 42 || st.UIDNext != 3 || *st.NumMessages != 2 {
		t.Fatalf("STATUS after rebuild: %+v %v", st, err)
	}
	if m := s.Messages("u", "INBOX"); m[0].UID != 1 || m[1].UID != 2 {
		t.Fatalf("UIDs after rebuild: %d %d", m[0].UID, m[1].UID)
	}
	if err := s.SetUIDValidity("u", "nope", 1); err == nil {
		t.Error("SetUIDValidity of a missing folder succeeded")
	}
}

// listNames runs LIST "" "*" and returns name -> attrs.
func listNames(t *testing.T, c *imapclient.Client, o *imap.ListOptions) map[string][]imap.MailboxAttr {
	t.Helper()
	l, err := c.List("", "*", o).Collect()
	if err != nil {
		t.Fatalf("LIST: %v", err)
	}
	m := map[string][]imap.MailboxAttr{}
	for _, d := range l {
		m[d.Mailbox] = d.Attrs
	}
	return m
}

// TestCourierLayout: "INBOX." prefix, "." delimiter, \Noselect parents, no
// SPECIAL-USE and no LIST-EXTENDED, one UIDVALIDITY.
func TestCourierLayout(t *testing.T) {
	s := start(t, Options{Delim: '.', Prefix: "INBOX.", NoSelectParents: true, NoSpecialUse: true, NoListStatus: true, UIDValidity: Shared})
	c := dial(t, s)
	caps := c.Caps()
	for _, cp := range []imap.Cap{imap.CapSpecialUse, imap.CapCreateSpecialUse, imap.CapListExtended, imap.CapListStatus} {
		if caps.Has(cp) {
			t.Errorf("advertises %s", cp)
		}
	}
	ns, err := c.Namespace().Wait()
	if err != nil || len(ns.Personal) != 1 || ns.Personal[0].Prefix != "INBOX." || ns.Personal[0].Delim != '.' {
		t.Fatalf("NAMESPACE %+v %v", ns, err)
	}
	if err := c.Create("Sent", nil).Wait(); err == nil {
		t.Error("CREATE outside the INBOX. namespace succeeded")
	}
	if err := c.Create("INBOX.Archive.2020", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	l, err := c.List("", "*", nil).Collect()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string][]imap.MailboxAttr{}
	for _, d := range l {
		if d.Delim != '.' {
			t.Errorf("%s: delim %q", d.Mailbox, d.Delim)
		}
		got[d.Mailbox] = d.Attrs
	}
	if len(got) != 3 || !slices.Contains(got["INBOX.Archive"], imap.MailboxAttrNoSelect) || slices.Contains(got["INBOX.Archive.2020"], imap.MailboxAttrNoSelect) {
		t.Fatalf("LIST %v", got)
	}
	if _, err := c.Select("INBOX.Archive", nil).Wait(); err == nil {
		t.Error("SELECT of a \\Noselect parent succeeded")
	}
	if _, err := appendMsg(c, "INBOX.Archive", msg("a@x", "a"), nil); err == nil {
		t.Error("APPEND to a \\Noselect parent succeeded")
	}
	// Creating the parent itself makes it real.
	if err := c.Create("INBOX.Archive", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Select("INBOX.Archive", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	uv := map[uint32]bool{}
	for _, f := range s.Folders("u") {
		uv[f.UIDValidity] = true
	}
	if len(uv) != 1 {
		t.Errorf("Shared: UIDVALIDITYs %v", uv)
	}
}

func TestSelectableParents(t *testing.T) {
	s := start(t, Options{})
	c := dial(t, s)
	if err := c.Create("a/b", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	got := listNames(t, c, nil)
	if _, ok := got["a"]; !ok || slices.Contains(got["a"], imap.MailboxAttrNoSelect) || !slices.Contains(got["a"], imap.MailboxAttrHasChildren) {
		t.Fatalf("LIST %v", got)
	}
	if _, err := c.Select("a", nil).Wait(); err != nil {
		t.Fatal(err)
	}
}

func TestSpecialUseAndListStatus(t *testing.T) {
	s := start(t, Options{})
	if _, err := s.Append("u", "INBOX", msg("a@x", "a"), nil, time.Time{}); err != nil {
		t.Fatal(err)
	}
	c := dial(t, s)
	if err := c.Create("Gesendet", &imap.CreateOptions{SpecialUse: []imap.MailboxAttr{imap.MailboxAttrSent}}).Wait(); err != nil {
		t.Fatal(err)
	}
	s.Create("u", "Müll", imap.MailboxAttrTrash)
	got := listNames(t, c, &imap.ListOptions{ReturnSpecialUse: true})
	if !slices.Contains(got["Gesendet"], imap.MailboxAttrSent) || !slices.Contains(got["Müll"], imap.MailboxAttrTrash) {
		t.Fatalf("LIST RETURN (SPECIAL-USE) %v", got)
	}
	l, err := c.List("", "*", &imap.ListOptions{ReturnStatus: &imap.StatusOptions{NumMessages: true, UIDValidity: true, UIDNext: true}}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range l {
		if d.Status == nil {
			t.Fatalf("LIST-STATUS: no status for %s", d.Mailbox)
		}
		if d.Mailbox == "INBOX" && (*d.Status.NumMessages != 1 || d.Status.UIDNext != 2) {
			t.Errorf("LIST-STATUS INBOX %+v", d.Status)
		}
	}

	// Without SPECIAL-USE: no attributes, CREATE (USE) refused.
	s2 := start(t, Options{NoSpecialUse: true})
	s2.Create("u", "Sent", imap.MailboxAttrSent)
	c2 := dial(t, s2)
	if got := listNames(t, c2, nil); slices.Contains(got["Sent"], imap.MailboxAttrSent) {
		t.Errorf("NoSpecialUse: LIST %v", got)
	}
	if err := c2.Create("Drafts", &imap.CreateOptions{SpecialUse: []imap.MailboxAttr{imap.MailboxAttrDrafts}}).Wait(); err == nil {
		t.Error("NoSpecialUse: CREATE (USE) succeeded")
	}
}

func TestRefusals(t *testing.T) {
	s := start(t, Options{RefuseBareLF: true, RefuseNUL: true, AppendLimit: 1000, ForbiddenChars: "."})
	c := dial(t, s)
	if !c.Caps().Has("APPENDLIMIT=1000") {
		t.Errorf("caps %v lack APPENDLIMIT=1000", c.Caps())
	}
	_, err := appendMsg(c, "INBOX", []byte("Subject: x\n\nbare\n"), nil)
	if err == nil || !strings.Contains(err.Error(), "bare newlines") {
		t.Errorf("bare LF: %v", err)
	}
	if _, err := appendMsg(c, "INBOX", []byte("Subject: x\r\n\r\nn\x00l\r\n"), nil); err == nil {
		t.Error("NUL accepted")
	}
	_, err = appendMsg(c, "INBOX", bytes.Repeat([]byte("x"), 1001), nil)
	if e, ok := err.(*imap.Error); !ok || e.Code != imap.ResponseCodeTooBig {
		t.Errorf("over APPENDLIMIT: %v", err)
	}
	err = c.Create("a.b", nil).Wait()
	if e, ok := err.(*imap.Error); !ok || e.Code != imap.ResponseCodeCannot {
		t.Errorf("CREATE a.b: %v", err)
	}
	if _, err := appendMsg(c, "INBOX", msg("ok@x", "fine"), nil); err != nil {
		t.Fatalf("good APPEND after refusals: %v", err)
	}
	if n := len(s.Messages("u", "INBOX")); n != 1 {
		t.Fatalf("%d messages stored, want 1", n)
	}
	if _, err := appendMsg(c, "Nope", msg("x@x", "x"), nil); err == nil || err.(*imap.Error).Code != imap.ResponseCodeTryCreate {
		t.Errorf("APPEND to a missing folder: %v", err)
	}
}

func TestNoUIDPlus(t *testing.T) {
	s := start(t, Options{NoUIDPlus: true, NoLiteralPlus: true, NoNamespace: true})
	c := dial(t, s)
	for _, cp := range []imap.Cap{imap.CapUIDPlus, imap.CapLiteralPlus, imap.CapNamespace} {
		if c.Caps().Has(cp) {
			t.Errorf("advertises %s", cp)
		}
	}
	ad, err := appendMsg(c, "INBOX", msg("a@x", "a"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if ad.UID != 0 || ad.UIDValidity != 0 {
		t.Errorf("APPENDUID without UIDPLUS: %+v", ad)
	}
	c.Select("INBOX", nil).Wait()
	if err := c.UIDExpunge(imap.UIDSetNum(1)).Close(); err == nil {
		t.Error("UID EXPUNGE without UIDPLUS succeeded")
	}
	if _, err := c.Namespace().Wait(); err == nil {
		t.Error("NAMESPACE without NAMESPACE succeeded")
	}
}

func TestPermanentFlags(t *testing.T) {
	s := start(t, Options{PermanentFlags: []imap.Flag{imap.FlagSeen, imap.FlagDeleted}})
	c := dial(t, s)
	if _, err := appendMsg(c, "INBOX", msg("a@x", "a"), &imap.AppendOptions{Flags: []imap.Flag{imap.FlagSeen, imap.FlagFlagged, "$Forwarded"}}); err != nil {
		t.Fatal(err)
	}
	sel, err := c.Select("INBOX", nil).Wait()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(sel.PermanentFlags, []imap.Flag{imap.FlagSeen, imap.FlagDeleted}) {
		t.Errorf("PERMANENTFLAGS %v", sel.PermanentFlags)
	}
	if fl := s.Messages("u", "INBOX")[0].Flags; !slices.Equal(fl, []imap.Flag{imap.FlagSeen}) {
		t.Errorf("stored flags %v, want only \\Seen", fl)
	}
}

// TestLiteralPlusAppend sends a big non-synchronising literal by hand.
func TestLiteralPlusAppend(t *testing.T) {
	s := start(t, Options{})
	r := dialRaw(t, s)
	r.login()
	body := bytes.Repeat([]byte("0123456789abcde\r\n"), 1000)
	r.appendPlus("A1", "INBOX", body)
	r.send("A2 NOOP\r\n") // pipelined behind the literal
	r.expect("A1", "OK [APPENDUID")
	r.expect("A2", "OK")
	if m := s.Messages("u", "INBOX"); len(m) != 1 || !bytes.Equal(m[0].Body, body) {
		t.Fatal("LITERAL+ APPEND not stored exactly")
	}
}

// TestManyFolders: a LIST of 100,000 folders completes.
func TestManyFolders(t *testing.T) {
	s := start(t, Options{})
	const n = 100_000
	for i := range n {
		if err := s.Create("u", fmt.Sprintf("f%03d/g%05d", i/1000, i)); err != nil {
			t.Fatal(err)
		}
	}
	c := dial(t, s)
	begin := time.Now()
	l, err := c.List("", "*", nil).Collect()
	if err != nil {
		t.Fatal(err)
	}
	if want := 1 + 100 + n; len(l) != want {
		t.Fatalf("LIST returned %d, want %d", len(l), want)
	}
	t.Logf("LIST of %d folders: %v", len(l), time.Since(begin))
}

// TestHostileNames: names that are hard to encode reach the client, can be
// selected by what the client sees, and do not hurt the server.
func TestHostileNames(t *testing.T) {
	s := start(t, Options{})
	names := []string{
		"../x", "a\xff\xfeb", strings.Repeat("n", 300), "nul\x00name", "with/delim", `quo"te\back`,
		"cr\r\nlf", "amp&-x", "star*pct%", "Entwürfe", " lead", "INBOX/../../etc", "\x01ctl",
	}
	for _, n := range names {
		if err := s.Create("u", n); err != nil {
			t.Fatalf("create %q: %v", n, err)
		}
		if _, err := s.Append("u", n, msg("m@x", n), nil, time.Time{}); err != nil {
			t.Fatalf("append to %q: %v", n, err)
		}
	}
	if err := s.Create("u", "a\xfe\xffb"); err == nil {
		// Distinct raw names, one visible name: the second is refused.
		t.Error("colliding visible name accepted")
	}
	c := dial(t, s)
	got := listNames(t, c, nil)
	for _, n := range names {
		v := visible(n)
		if _, ok := got[v]; !ok {
			t.Errorf("%q not listed as %q (got %d names)", n, v, len(got))
			continue
		}
		sel, err := c.Select(v, &imap.SelectOptions{ReadOnly: true}).Wait()
		if err != nil || sel.NumMessages != 1 {
			t.Errorf("EXAMINE %q: %+v %v", v, sel, err)
		}
	}
	if err := c.Noop().Wait(); err != nil {
		t.Fatalf("connection hurt: %v", err)
	}
}

// TestCloseAll: every connection drops, data stays, new ones are accepted.
func TestCloseAll(t *testing.T) {
	s := start(t, Options{})
	c := dial(t, s)
	if _, err := appendMsg(c, "INBOX", msg("a@x", "a"), nil); err != nil {
		t.Fatal(err)
	}
	s.CloseAll()
	select {
	case <-c.Closed():
	case <-time.After(5 * time.Second):
		t.Fatal("client not disconnected")
	}
	c2 := dial(t, s)
	if st, err := c2.Status("INBOX", &imap.StatusOptions{NumMessages: true}).Wait(); err != nil || *st.NumMessages != 1 {
		t.Fatalf("after CloseAll: %+v %v", st, err)
	}
	if st := s.Stats(); st.Conns != 2 {
		t.Errorf("Stats %+v", st)
	}
}

// TestCopyMove: COPY and MOVE with COPYUID, EXPUNGE responses for MOVE.
func TestCopyMove(t *testing.T) {
	s := start(t, Options{})
	s.Create("u", "dst")
	for i := range 3 {
		s.Append("u", "INBOX", msg(fmt.Sprint(i), "x"), []imap.Flag{"$k"}, time.Time{})
	}
	c := dial(t, s)
	c.Select("INBOX", nil).Wait()
	cd, err := c.Copy(imap.UIDSetNum(1), "dst").Wait()
	if err != nil || cd.UIDValidity == 0 {
		t.Fatalf("COPY %+v %v", cd, err)
	}
	md, err := c.Move(imap.UIDSetNum(2, 3), "dst").Wait()
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := md.DestUIDs.(imap.UIDSet).Nums(); !slices.Equal(d, []imap.UID{2, 3}) {
		t.Errorf("MOVE dest UIDs %v", d)
	}
	if n := c.Mailbox().NumMessages; n != 1 {
		t.Errorf("client sees %d messages after MOVE, want 1", n)
	}
	if m := s.Messages("u", "dst"); len(m) != 3 || !slices.Equal(m[2].Flags, []imap.Flag{"$k"}) {
		t.Errorf("dst %+v", m)
	}
}

// TestSequenceNumbersAndMore: sequence sets with "*" while another
// connection appends, ENVELOPE and BODYSTRUCTURE of a broken multipart,
// more SEARCH keys, DELETE, LSUB.
func TestSequenceNumbersAndMore(t *testing.T) {
	s := start(t, Options{})
	broken := []byte("Message-ID: <b@x>\r\nSubject: broken\r\nDate: Mon, 02 Jan 2006 15:04:05 +0000\r\nContent-Type: multipart/mixed; boundary=never\r\n\r\nno parts here\r\n")
	s.Append("u", "INBOX", msg("a@x", "a"), []imap.Flag{imap.FlagSeen}, time.Date(2020, 1, 1, 12, 0, 0, 0, time.UTC))
	s.Append("u", "INBOX", broken, nil, time.Date(2022, 6, 1, 12, 0, 0, 0, time.UTC))
	c := dial(t, s)
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	// Another connection appends: this one learns of it on its next command.
	if _, err := appendMsg(dial(t, s), "INBOX", msg("c@x", "c"), nil); err != nil {
		t.Fatal(err)
	}
	var from2 imap.SeqSet
	from2.AddRange(2, 0) // "2:*" (imapclient drops the answers to a bare "*")
	msgs, err := c.Fetch(from2, &imap.FetchOptions{UID: true}).Collect()
	if err != nil || len(msgs) != 1 || msgs[0].UID != 2 {
		t.Fatalf("FETCH 2:* before the EXISTS: %+v %v", msgs, err)
	}
	if err := c.Noop().Wait(); err != nil {
		t.Fatal(err)
	}
	msgs, err = c.Fetch(from2, &imap.FetchOptions{UID: true}).Collect()
	if err != nil || len(msgs) != 2 || msgs[1].UID != 3 || msgs[1].SeqNum != 3 {
		t.Fatalf("FETCH 2:* after NOOP: %+v %v", msgs, err)
	}
	msgs, err = c.Fetch(imap.SeqSetNum(2), &imap.FetchOptions{Envelope: true, BodyStructure: &imap.FetchItemBodyStructure{Extended: true}}).Collect()
	if err != nil || len(msgs) != 1 || msgs[0].Envelope.Subject != "broken" || msgs[0].BodyStructure == nil {
		t.Fatalf("ENVELOPE/BODYSTRUCTURE of a broken multipart: %+v %v", msgs, err)
	}

	search := func(cr *imap.SearchCriteria) []uint32 {
		t.Helper()
		d, err := c.Search(cr, nil).Wait()
		if err != nil {
			t.Fatal(err)
		}
		return d.AllSeqNums()
	}
	if got := search(&imap.SearchCriteria{Since: time.Date(2021, 1, 1, 0, 0, 0, 0, time.UTC)}); !slices.Equal(got, []uint32{2, 3}) {
		t.Errorf("SINCE: %v", got)
	}
	if got := search(&imap.SearchCriteria{SentBefore: time.Date(2007, 1, 1, 0, 0, 0, 0, time.UTC)}); !slices.Equal(got, []uint32{2}) {
		t.Errorf("SENTBEFORE: %v", got)
	}
	if got := search(&imap.SearchCriteria{NotFlag: []imap.Flag{imap.FlagSeen}, Body: []string{"PARTS"}}); !slices.Equal(got, []uint32{2}) {
		t.Errorf("UNSEEN BODY: %v", got)
	}
	if got := search(&imap.SearchCriteria{Or: [][2]imap.SearchCriteria{{{Flag: []imap.Flag{imap.FlagSeen}}, {Text: []string{"c@x"}}}}}); !slices.Equal(got, []uint32{1, 3}) {
		t.Errorf("OR: %v", got)
	}
	if got := search(&imap.SearchCriteria{SeqNum: []imap.SeqSet{from2}, Not: []imap.SearchCriteria{{Header: []imap.SearchCriteriaHeaderField{{Key: "Subject", Value: "zzz"}}}}}); !slices.Equal(got, []uint32{2, 3}) {
		t.Errorf("2:* NOT HEADER: %v", got)
	}

	// DELETE and LSUB.
	s.Create("u", "old/child")
	if err := c.Delete("old").Wait(); err == nil {
		t.Error("DELETE of a folder with children succeeded")
	}
	if err := c.Delete("old/child").Wait(); err != nil {
		t.Fatal(err)
	}
	if err := c.Unsubscribe("old").Wait(); err != nil {
		t.Fatal(err)
	}
	l, err := c.List("", "*", &imap.ListOptions{SelectSubscribed: true}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range l {
		if d.Mailbox == "old" || d.Mailbox == "old/child" {
			t.Errorf("LIST (SUBSCRIBED) lists %s", d.Mailbox)
		}
	}
}
