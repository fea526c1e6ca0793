package main

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/mailhaul/mailhaul/internal/batch"
)

// planFor parses batch flags and plans the accounts file body.
func planFor(t *testing.T, body string, flags ...string) (*batchPlan, error) {
	t.Helper()
	cmd, f := newBatchCommand(&globalFlags{})
	if err := cmd.ParseFlags(flags); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "list.csv")
	os.WriteFile(file, []byte(body), 0o600)
	return planBatch(f, file, true)
}

// TestBatchRowFlags: a row's copy flags are the batch's followed by its
// options (scalars override, repeatable flags add), secrets are routed as
// copy reads them, and the transfers fit the caps.
func TestBatchRowFlags(t *testing.T) {
	dir := t.TempDir()
	pw := filepath.Join(dir, "pw")
	os.WriteFile(pw, []byte("x\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "m.mbox"), []byte("From a@b Mon Jan  1 00:00:00 2024\nSubject: x\n\nx\n"), 0o600)
	t.Setenv("ROW_PW", "from-env")
	body := "source,destination,source_password_env,destination_password_file,destination_oauth_token_cmd,options\n" +
		"imaps://a@old.example.org,imaps://a@new.example.org/Archive,ROW_PW," + pw + ",,--include B --settle-delay 2s\n" +
		"mbox:" + dir + "/m.mbox,imap://b@NEW.example.org,,,oama access b,--to-folder X\n"
	p, err := planFor(t, body, "--include", "A", "--dedupe", "--parallel", "3", "--max-connections-per-host", "12")
	if err != nil {
		t.Fatal(err)
	}
	if p.transfers != 3 { // min(4, 10-1, 12/3-1)
		t.Errorf("transfers %d, want 3", p.transfers)
	}
	a, b := p.all[0], p.all[1]
	ja, jb := p.jobs[a.Key].job, p.jobs[b.Key].job
	if !reflect.DeepEqual(ja.opts.Include, []string{"A", "B"}) || !ja.opts.Dedupe || ja.opts.SettleDelay != 2*time.Second || ja.opts.Transfers != 3 {
		t.Errorf("row 1 options: %+v", ja.opts)
	}
	if !reflect.DeepEqual(jb.opts.Include, []string{"A"}) || jb.opts.SettleDelay != 3*time.Second || jb.f.toFolder != "X" {
		t.Errorf("row 2 options: %+v", jb.opts)
	}
	if pwv, from, ok := p.jobs[a.Key].password("src"); !ok || pwv != "from-env" || !strings.Contains(from, "source_password_env") {
		t.Errorf("source password from the variable: %q %v (from %q)", pwv, ok, from)
	}
	if ja.f.imap.dstPasswordFile != pw {
		t.Errorf("destination password file %q", ja.f.imap.dstPasswordFile)
	}
	if jb.f.imap.dstTokenCmd != "oama access b" || jb.f.imap.dstAuth != "xoauth2" {
		t.Errorf("token command %q auth %q", jb.f.imap.dstTokenCmd, jb.f.imap.dstAuth)
	}
	// imap:// and imaps:// of one host are one server; the folder does not
	// make another account; local sides hold no connection.
	if len(a.Conns) != 2 || a.Conns[1].Server != "imap:new.example.org" || a.Conns[1].Account != "imap:new.example.org a" || a.Conns[1].N != 4 {
		t.Errorf("row 1 connections %+v", a.Conns)
	}
	if len(b.Conns) != 1 || b.Conns[0].Server != "imap:new.example.org" {
		t.Errorf("row 2 connections %+v", b.Conns)
	}
	if a.ShardKey != "imap:new.example.org a" || !strings.HasPrefix(a.Key, "imap:a@old.example.org -> imap:a@new.example.org/Archive") {
		t.Errorf("keys %q %q", a.ShardKey, a.Key)
	}
	for _, bad := range [][]string{
		{"--parallel", "0"}, {"--max-connections-per-host", "1"}, {"--dry-run"}, {"--shard", "3/3"}, {"--shard", "0/2", "--shards", "2"},
	} {
		if _, err := planFor(t, body, bad...); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// TestBatchTableTotals: the totals line counts in the singular where a
// count is one.
func TestBatchTableTotals(t *testing.T) {
	rep := batch.NewReport([]*batch.Account{{Key: "k", Label: "alice"}},
		map[string]batch.Record{"k": {Status: batch.Done, Copied: 1, Bytes: 2048}})
	var b strings.Builder
	printBatchTable(&b, rep)
	if want := "1 account: 1 done, 0 partial, 0 failed, 0 not finished; copied 1 message (2.0 KiB), 0 already there, 0 skipped\n"; !strings.Contains(b.String(), want) {
		t.Errorf("table:\n%s\nwant the line %q", b.String(), want)
	}
}
