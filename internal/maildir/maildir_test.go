package maildir

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"
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
	if got := EncodePlusPlus("v1.2"); got != ".v1_2" {
		t.Errorf("dot in name: %q", got)
	}
}

func TestInfoFlags(t *testing.T) {
	kw := &Keywords{}
	info, dropped := InfoFromFlags([]string{`\Seen`, `\Flagged`, "$Forwarded", "Work", `\Recent`, `\Answered`, "Work"}, kw)
	if info != "FPRSa" || len(dropped) != 0 {
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
	if err != nil || back.Name(0) != "Work" || back.Name(25) == "" {
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
	fs, noSel, err := Folders(root, Nested)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range fs {
		names = append(names, f.Name)
	}
	if strings.Join(names, ",") != "INBOX,work,work/clients/acme" || strings.Join(noSel, ",") != "work/clients" {
		t.Errorf("folders %v noselect %v", names, noSel)
	}
	mk(".Sent")
	if l, _ := Detect(root); l != PlusPlus {
		t.Errorf("Maildir++ not detected")
	}
}

func FuzzDecodePlusPlus(f *testing.F) {
	for _, s := range []string{".Entw&APw-rfe", ".a.b", ".&", ".&-", ".&ZeVnLIqe-", "..", ".&AAA"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, dir string) {
		name, err := DecodePlusPlus(dir)
		if err != nil {
			return
		}
		if utf8.ValidString(dir) && !utf8.ValidString(name) {
			t.Fatalf("decode(%q) = invalid UTF-8 %q", dir, name)
		}
		// Encoding what was decoded must decode to the same name again
		// (dots inside segments are the one documented loss).
		if !strings.Contains(name, ".") && utf8.ValidString(name) {
			again, _ := DecodePlusPlus(EncodePlusPlus(name))
			if again != name {
				t.Fatalf("round trip %q -> %q -> %q", dir, name, again)
			}
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
