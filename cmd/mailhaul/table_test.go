package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/mailhaul/mailhaul/internal/batch"
	"github.com/mailhaul/mailhaul/migrate"
)

// tableNames are names whose bytes, runes and columns all differ.
var tableNames = []string{
	"INBOX",
	"Über",          // NFC
	"U\u0308ber",    // NFD, as macOS writes it: 5 runes, 4 columns
	"日本語のフォルダ",      // 8 runes, 16 columns
	"Ärger/Ä\u0308", // a combining mark on a precomposed letter
	strings.Repeat("Lang", 20),
}

// columnOf returns the terminal column at which field (a count that
// follows the name) starts in line.
func columnOf(line, field string) int {
	i := strings.Index(line, field)
	if i < 0 {
		return -1
	}
	return width(line[:i])
}

// TestTableColumns: the columns after a name start at the same terminal
// column on every row, whatever the name's script or normal form, and a
// long name is clipped.
func TestTableColumns(t *testing.T) {
	t.Run("batch", func(t *testing.T) {
		var accts []*batch.Account
		recs := map[string]batch.Record{}
		for i, n := range tableNames {
			k := string(rune('a' + i))
			accts = append(accts, &batch.Account{Key: k, Label: n})
			recs[k] = batch.Record{Status: batch.Done, Copied: 1234567}
		}
		var b strings.Builder
		printBatchTable(&b, batch.NewReport(accts, recs))
		lines := strings.Split(b.String(), "\n")
		want := columnOf(lines[1], "1234567")
		for _, l := range lines[1 : 1+len(tableNames)] {
			if c := columnOf(l, "1234567"); c != want || width(l) > 48+60 {
				t.Errorf("column %d, want %d: %q", c, want, l)
			}
		}
		if !strings.Contains(b.String(), "…") {
			t.Errorf("a long name was not clipped:\n%s", b.String())
		}
	})
	t.Run("check", func(t *testing.T) {
		var r migrate.CheckReport
		for _, n := range tableNames {
			r.Folders = append(r.Folders, migrate.FolderCheck{Name: n, Dest: n, DestExists: true, Source: 7654321})
		}
		var b strings.Builder
		printCheck(&b, r, "src", "dst", "", 0, 0, false)
		var want = -1
		n := 0
		for _, l := range strings.Split(b.String(), "\n") {
			if !strings.Contains(l, "7654321") {
				continue
			}
			n++
			if c := columnOf(l, "7654321"); want < 0 {
				want = c
			} else if c != want {
				t.Errorf("column %d, want %d: %q", c, want, l)
			}
		}
		if n != len(tableNames) {
			t.Errorf("%d rows:\n%s", n, b.String())
		}
	})
}

func TestClipPad(t *testing.T) {
	for _, c := range []struct {
		in   string
		n    int
		want string
	}{
		{"abc", 5, "abc  "},
		{"U\u0308ber", 4, "U\u0308ber"},
		{"日本語", 5, "日本…"},
		{"日本語", 4, "日…" + " "},
		{"abcdef", 4, "abc…"},
	} {
		if got := pad(c.in, c.n); got != c.want || width(got) != c.n {
			t.Errorf("pad(%q, %d) = %q (%d columns), want %q", c.in, c.n, got, width(got), c.want)
		}
	}
}

// TestStateDirMessages: a state dir refused for its mode shows the mode as
// chmod spells it, and a checkpoint that cannot be created says what to do.
func TestStateDirMessages(t *testing.T) {
	if got := octalMode(os.ModeDir | os.ModeSticky | 0o777); got != "1777" {
		t.Errorf("sticky /tmp: %q", got)
	}
	if got := octalMode(0o755); got != "0755" {
		t.Errorf("0755: %q", got)
	}
	for _, c := range []struct {
		err  error
		want string
	}{
		{&fs.PathError{Op: "open", Path: "s/x.db", Err: syscall.EROFS}, "writable file system"},
		{fmt.Errorf("open checkpoint: %w", &fs.PathError{Op: "open", Path: "s/x.db", Err: syscall.ENOSPC}), "free space"},
		{&fs.PathError{Op: "mkdir", Path: "s", Err: syscall.EACCES}, "writable by you"},
		{errors.New("corrupt"), ""},
	} {
		if got := stateDirHint(c.err); (c.want == "") != (got == "") || !strings.Contains(got, c.want) {
			t.Errorf("%v: hint %q, want one with %q", c.err, got, c.want)
		}
	}
}

// TestSummaryBeforeAnyFolder: a run stopped before its first folder (a
// Ctrl-C while it settles a killed run's copies) does not say "0 folders"
// of an account that has many.
func TestSummaryBeforeAnyFolder(t *testing.T) {
	var b strings.Builder
	printSummary(&b, &b, migrate.Report{Interrupted: true})
	if !strings.Contains(b.String(), "stopped before the first folder") || strings.Contains(b.String(), "0 folders") {
		t.Errorf("summary: %s", b.String())
	}
	b.Reset()
	printSummary(&b, &b, migrate.Report{Folders: []migrate.FolderReport{{Name: "INBOX"}}})
	if !strings.Contains(b.String(), "1 folder;") {
		t.Errorf("summary: %s", b.String())
	}
}
