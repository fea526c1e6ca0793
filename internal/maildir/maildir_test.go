package maildir

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestPlusPlusNames(t *testing.T) {
	for name, dir := range map[string]string{
		"Entwürfe":      ".Entw&APw-rfe",
		"Projekte/Büro": ".Projekte.B&APw-ro",
		"日本語":           ".&ZeVnLIqe-",
		"A & B":         ".A &- B",
		"Sent":          ".Sent",
	} {
		if got := EncodePlusPlus(name); got != dir {
			t.Errorf("EncodePlusPlus(%q) = %q, want %q", name, got, dir)
		}
		if got, _ := DecodePlusPlus(dir); got != name {
			t.Errorf("DecodePlusPlus(%q) = %q, want %q", dir, got, name)
		}
	}
	if got := EncodePlusPlus("v1.2"); got != ".v1~2E2" {
		t.Errorf("dot in name: %q", got)
	}
}

func TestInfoFlags(t *testing.T) {
	kw := &Keywords{}
	info, dropped := InfoFromFlags([]string{`\Seen`, `\Flagged`, "$Forwarded", "Work", `\Recent`, `\Answered`, "Work"}, kw)
	if info != "FPRSab" || len(dropped) != 0 || kw.Name(0) != "$Forwarded" || kw.Name(1) != "Work" {
		t.Fatalf("info %q dropped %v", info, dropped)
	}
	got := FlagsFromInfo(info, kw)
	want := []string{`\Flagged`, "$Forwarded", `\Answered`, `\Seen`, "Work"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("round trip %v, want %v", got, want)
	}
	for i := 0; i < 30; i++ {
		InfoFromFlags([]string{"k" + string(rune('A'+i))}, kw)
	}
	if _, dropped := InfoFromFlags([]string{"one-too-many"}, kw); len(dropped) != 1 {
		t.Errorf("27th keyword not reported as dropped")
	}
	dir := t.TempDir()
	if err := kw.Write(dir); err != nil {
		t.Fatal(err)
	}
	back, err := ReadKeywords(dir)
	if err != nil || back.Name(1) != "Work" || back.Name(25) == "" {
		t.Fatalf("keywords file round trip: %v %v", back, err)
	}
}

func TestSplitName(t *testing.T) {
	for in, want := range map[string][2]string{
		"123.M1P2.host:2,FS":      {"123.M1P2.host", "FS"},
		"123.M1P2.host,S=10:2,":   {"123.M1P2.host,S=10", ""},
		"123.M1P2.host":           {"123.M1P2.host", ""},
		"123.host:1,experimental": {"123.host", ""},
	} {
		b, i := SplitName(in)
		if b != want[0] || i != want[1] {
			t.Errorf("SplitName(%q) = %q %q", in, b, i)
		}
	}
}

func TestDetectAndFolders(t *testing.T) {
	root := t.TempDir()
	mk := func(p string) {
		for _, s := range []string{"cur", "new", "tmp"} {
			os.MkdirAll(filepath.Join(root, p, s), 0o755)
		}
	}
	mk("")
	mk("work")
	mk("work/clients/acme")
	os.MkdirAll(filepath.Join(root, "not-mail"), 0o755)
	l, err := Detect(root)
	if err != nil || l != Nested {
		t.Fatalf("layout %v %v", l, err)
	}
	names, noSel := nestedNames(t, root)
	if strings.Join(names, ",") != "INBOX,work,work/clients/acme" || strings.Join(noSel, ",") != "work/clients" {
		t.Errorf("folders %v noselect %v", names, noSel)
	}
	mk(".Sent")
	if l, _ := Detect(root); l != PlusPlus {
		t.Errorf("Maildir++ not detected")
	}
}

func FuzzDecodePlusPlus(f *testing.F) {
	for _, s := range []string{".Entw&APw-rfe", ".a.b", ".&", ".&-", ".&ZeVnLIqe-", "..", ".&AAA", ".v1~2E2", ".~", ".a_b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, dir string) {
		name, err := DecodePlusPlus(dir)
		if err != nil {
			return
		}
		// Encoding what was decoded must decode to the same name again,
		// unless it had to be shortened.
		enc := EncodePlusPlus(name)
		if strings.Contains(enc, "~~") {
			return
		}
		again, _ := DecodePlusPlus(enc)
		if again != name {
			t.Fatalf("round trip %q -> %q -> %q -> %q", dir, name, enc, again)
		}
	})
}

// FuzzFolderDir: whatever a source calls a folder, its directory is inside
// the root in both layouts, no path component is empty, "." or "..", and
// the name decodes back (unless shortened).
func FuzzFolderDir(f *testing.F) {
	for _, s := range hostileNames {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		for _, l := range []Layout{PlusPlus, Nested} {
			checkFolderDir(t, l, name)
		}
	})
}

func FuzzSplitName(f *testing.F) {
	f.Add("1.M1.h:2,FS")
	f.Add(":2,:2,")
	f.Fuzz(func(t *testing.T, name string) {
		base, info := SplitName(name)
		if len(base)+len(info) > len(name) {
			t.Fatal("parts longer than input")
		}
		FlagsFromInfo(info, &Keywords{})
	})
}

// hostileNames are folder names a source might send to break out of the
// destination or to merge folders.
var hostileNames = []string{
	"../../../../tmp/x", "..", ".", "", "/", "a//b", "/abs", "a/../../b", "a/./b", "x\x00y", "new", "cur", "tmp",
	"INBOX/new", "Cur", "Caf\xe8", "Caf\xe9", "a.b", "a_b", "a~2Eb", "~", "~~", ".hidden", "..hidden", "\\..\\x",
	"a\nb", "Release 1.2", "Entwürfe", strings.Repeat("ü", 200), strings.Repeat("x", 300) + "/" + strings.Repeat("y", 300),
}

func checkFolderDir(t *testing.T, l Layout, name string) {
	t.Helper()
	root := "/r/o/o/t"
	dir := FolderDir(root, l, name)
	rel, err := filepath.Rel(root, dir)
	if err != nil || strings.HasPrefix(rel, "..") || filepath.IsAbs(rel) {
		t.Fatalf("%v: FolderDir(%q) = %q: outside the root", l, name, dir)
	}
	if strings.EqualFold(name, "INBOX") {
		if dir != root {
			t.Fatalf("INBOX is %q", dir)
		}
		return
	}
	parts := strings.Split(rel, "/")
	for _, p := range parts {
		if p == "" || p == "." || p == ".." || strings.IndexByte(p, 0) >= 0 || len(p) > 255 {
			t.Fatalf("%v: FolderDir(%q) = %q: bad component %q", l, name, dir, p)
		}
		if l == Nested && isReserved(p) {
			t.Fatalf("%v: FolderDir(%q) = %q: lands in a maildir's own %s", l, name, dir, p)
		}
	}
	if l == PlusPlus && (len(parts) != 1 || !strings.HasPrefix(rel, ".")) {
		t.Fatalf("Maildir++ FolderDir(%q) = %q", name, dir)
	}
	var back string
	if l == PlusPlus {
		back, _ = DecodePlusPlus(rel)
	} else {
		for i, p := range parts {
			if i > 0 {
				back += "/"
			}
			back += DecodeNested(p)
		}
	}
	if back != name && !strings.Contains(rel, "~~") {
		t.Fatalf("%v: %q -> %q -> %q", l, name, rel, back)
	}
}

// TestFolderNameEscapes: hostile names stay inside the root, land in
// distinct directories (also names that differ only in bytes that are not
// UTF-8, or in '.' against '_'), and decode back.
func TestFolderNameEscapes(t *testing.T) {
	for _, l := range []Layout{PlusPlus, Nested} {
		dirs := map[string]string{}
		for _, n := range hostileNames {
			checkFolderDir(t, l, n)
			d := FolderDir("/root", l, n)
			if other, dup := dirs[d]; dup {
				t.Errorf("%v: %q and %q share %s", l, n, other, d)
			}
			dirs[d] = n
		}
	}
	for name, want := range map[string]string{
		"../../../../tmp/x": "/root/~2E./~2E./~2E./~2E./~74mp/x", "new": "/root/~6Eew", "INBOX/new": "/root/INBOX/~6Eew", "..": "/root/~2E.", ".": "/root/~2E",
		"": "/root/~", ".hidden": "/root/~2Ehidden", "Caf\xe8": "/root/Caf~E8", "a~b": "/root/a~7Eb", "v1.2": "/root/v1.2",
	} {
		if got := FolderDir("/root", Nested, name); got != want {
			t.Errorf("fs FolderDir(%q) = %q, want %q", name, got, want)
		}
	}
	for name, want := range map[string]string{
		"../../../../tmp/x": ".~2E~2E.~2E~2E.~2E~2E.~2E~2E.tmp.x", "a.b": ".a~2Eb", "a_b": ".a_b", "Caf\xe8": ".Caf~E8", "": ".~",
	} {
		if got := EncodePlusPlus(name); got != want {
			t.Errorf("EncodePlusPlus(%q) = %q, want %q", name, got, want)
		}
	}
	long := EncodePlusPlus("Archive/" + strings.Repeat("ä", 200))
	if len(long) > 255 || !strings.HasPrefix(long, ".Archive.&AOQA5ADkAOQ") || !strings.Contains(long, "-~~") {
		t.Errorf("shortened Maildir++ name %q (%d bytes)", long, len(long))
	}
}

// TestIsMaildirPartial: one of cur/ and new/ makes a maildir (git drops
// empty directories); a subfolder called "new" or "cur" of a structure-only
// parent does not make the parent a maildir.
func TestIsMaildirPartial(t *testing.T) {
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "curonly", "cur"), 0o755)
	os.MkdirAll(filepath.Join(root, "newonly", "new"), 0o755)
	os.MkdirAll(filepath.Join(root, "tmponly", "tmp"), 0o755)
	os.MkdirAll(filepath.Join(root, "parent", "new", "cur"), 0o755)
	for dir, want := range map[string]bool{"curonly": true, "newonly": true, "tmponly": false, "parent": false, "parent/new": true} {
		if got := IsMaildir(filepath.Join(root, dir)); got != want {
			t.Errorf("IsMaildir(%s) = %v", dir, got)
		}
	}
	fs, noSel, err := Folders(root, Nested)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range fs {
		names = append(names, f.Name)
	}
	if strings.Join(names, ",") != "curonly,newonly,parent/new" || strings.Join(noSel, ",") != "parent" {
		t.Errorf("folders %v noselect %v", names, noSel)
	}
}

// TestForwardedBothForms: $Forwarded is written as mutt's 'P' and as
// Dovecot's keyword; either form alone reads as $Forwarded, both once.
func TestForwardedBothForms(t *testing.T) {
	kw := &Keywords{}
	kw.Index("Other")
	if info, _ := InfoFromFlags([]string{"$forwarded"}, kw); info != "Pb" || kw.Name(1) != "$Forwarded" {
		t.Errorf("info %q, keywords %q", info, kw.names)
	}
	for _, info := range []string{"P", "b", "Pb", "PSb"} {
		got := FlagsFromInfo(info, kw)
		n := 0
		for _, f := range got {
			if f == "$Forwarded" {
				n++
			}
		}
		if n != 1 {
			t.Errorf("FlagsFromInfo(%q) = %v", info, got)
		}
	}
	// A full keyword table: 'P' alone still keeps it (for mutt).
	full := &Keywords{}
	for i := 0; i < 26; i++ {
		full.Index(fmt.Sprintf("k%d", i))
	}
	if info, dropped := InfoFromFlags([]string{"$Forwarded"}, full); info != "P" || len(dropped) != 0 {
		t.Errorf("full table: %q %v", info, dropped)
	}
}

// TestReceivedDate: the mtime, unless the name's delivery time is more
// than a day earlier (a maildir copied without its mtimes); names that
// hold no plausible time leave the mtime.
func TestReceivedDate(t *testing.T) {
	delivered := time.Date(2009, 3, 1, 10, 0, 0, 0, time.UTC)
	copied := time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC)
	name := fmt.Sprintf("%d.M1P2.host", delivered.Unix())
	for _, tc := range []struct {
		base  string
		mtime time.Time
		want  time.Time
	}{
		{name, copied, delivered}, // copied: the name's day
		{name, delivered.Add(1500 * time.Millisecond), delivered.Add(1500 * time.Millisecond)}, // delivered: the mtime, exactly
		{name, delivered.Add(-48 * time.Hour), delivered.Add(-48 * time.Hour)},                 // appended with an older date
		{"123.M1.host", copied, copied},        // no plausible time
		{"700000000.M1.host", copied, copied},  // 1992: before Maildir
		{"9999999999.M1.host", copied, copied}, // the future
		{"abcdefghij.M1.host", copied, copied},
		{"1235901600", copied, copied}, // no dot: not a delivery name
	} {
		if got := ReceivedDate(tc.base, tc.mtime); !got.Equal(tc.want) {
			t.Errorf("ReceivedDate(%q, %v) = %v, want %v", tc.base, tc.mtime, got, tc.want)
		}
	}
}
