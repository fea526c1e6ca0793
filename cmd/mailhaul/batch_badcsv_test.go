package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestBatchBadFiles: an accounts file with a bad row (broken quoting, a
// missing cell or column, a duplicate account, a secret file that cannot
// be read, a missing secret, an unknown column, a bad endpoint or option,
// passwords in the file without the flag or in a world-readable file) is
// refused with exit 2 and the line number before anything runs: the valid
// rows of the same file copy nothing, no state is written.
func TestBatchBadFiles(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	writeMaildirPlusPlus(t, src, map[string][]string{"INBOX": {"Subject: a\r\nMessage-ID: <a@x>\r\n\r\nbody\r\n"}})
	pw := filepath.Join(dir, "pw")
	os.WriteFile(pw, []byte("secret\n"), 0o600)
	good := "maildir:" + src + ",maildir:" + dir + "/out-good,,\n"
	header := "source,destination,destination_password_file,options\n"
	cases := []struct {
		name, body string
		mode       os.FileMode
		flags      []string
		want       []string // each must appear in stderr
	}{
		{"bad quoting", header + good + "\"maildir:" + src + ",maildir:" + dir + "/o2,,\n", 0o644, nil,
			[]string{"accounts.csv:3: bad quoting"}},
		{"missing cell", header + good + "maildir:" + src + ",maildir:" + dir + "/o2,\n", 0o644, nil,
			[]string{"accounts.csv:3: 3 cells, the header has 4"}},
		{"missing column", "source,options\n" + "maildir:" + src + ",\n", 0o644, nil,
			[]string{`accounts.csv:1: header: required column "destination" is missing`}},
		{"unknown column", "source,destination,password\n" + "maildir:" + src + ",maildir:" + dir + "/o2,x\n", 0o644, nil,
			[]string{`accounts.csv:1: header: unknown column "password"`}},
		{"duplicate account", header + good + "# the same two accounts, spelled differently\nmaildir:" + src + "/,maildir:" + dir + "/out-good/,,--dedupe\n", 0o644, nil,
			[]string{"accounts.csv:4: duplicate account: line 2 already copies"}},
		{"duplicate IMAP account", header + "maildir:" + src + ",imaps://u@mail.example.org," + pw + ",\nmaildir:" + src + ",imap://u@MAIL.example.org," + pw + ",\n", 0o644, nil,
			[]string{"accounts.csv:3: duplicate account: line 2"}},
		{"duplicate account, host spelled as its address", header + "maildir:" + src + ",imaps://u@127.0.0.1:9993," + pw + ",\nmaildir:" + src + ",imaps://u@localhost:9993," + pw + ",\n", 0o644, nil,
			[]string{"accounts.csv:3: duplicate account: line 2 already copies", "spelled differently"}},
		{"unreadable secret file", header + good + "maildir:" + src + ",imaps://u@mail.example.org," + filepath.Join(dir, "no-such-pw") + ",\n", 0o644, nil,
			[]string{"accounts.csv:3: destination_password_file: " + filepath.Join(dir, "no-such-pw") + ": no such file or directory"}},
		{"secret file is a directory", header + good + "maildir:" + src + ",imaps://u@mail.example.org," + dir + ",\n", 0o644, nil,
			[]string{"accounts.csv:3: destination_password_file: " + dir + ": is a directory"}},
		{"missing secret", header + good + "maildir:" + src + ",imaps://u@mail.example.org,,\n", 0o644, nil,
			[]string{"accounts.csv:3: no secret for the destination imaps://u@mail.example.org:993"}},
		{"unset variable", "source,destination,destination_password_env\n" + "maildir:" + src + ",imaps://u@mail.example.org,MAILHAUL_TEST_UNSET_PW\n", 0o644, nil,
			[]string{"accounts.csv:2: destination_password_env: environment variable MAILHAUL_TEST_UNSET_PW is not set"}},
		{"bad endpoint and option", header + good + "maildir:" + src + ",ftp://x,,\nmaildir:" + src + ",maildir:" + dir + "/o3,,--map nomap\nmaildir:" + src + ",maildir:" + dir + "/o4,,--transfers 9\n", 0o644, nil,
			[]string{"accounts.csv:3: destination \"ftp://x\": scheme \"ftp\" cannot be written to", "accounts.csv:4: invalid --map \"nomap\"", "accounts.csv:5: options: --transfers cannot be set per row"}},
		{"password in the file", "source,destination,destination_password\n" + "maildir:" + src + ",imaps://u@mail.example.org,secret\n", 0o600, nil,
			[]string{"accounts.csv:1: header: column destination_password puts passwords in the file itself: allowed only with --allow-secrets-in-csv"}},
		{"password in a world-readable file", "source,destination,destination_password\n" + "maildir:" + src + ",imaps://u@mail.example.org,secret\n", 0o644, []string{"--allow-secrets-in-csv"},
			[]string{"accounts.csv:1: holds passwords but is readable by everyone (mode 0644)"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := t.TempDir()
			file := filepath.Join(d, "accounts.csv")
			if err := os.WriteFile(file, []byte(strings.ReplaceAll(c.body, dir+"/out-good", d+"/out-good")), c.mode); err != nil {
				t.Fatal(err)
			}
			os.Chmod(file, c.mode)
			state := filepath.Join(d, "state")
			args := append([]string{"batch", "--state-dir", state}, c.flags...)
			r := runMailhaul(t, nil, append(args, file)...)
			if r.code != exitUsage {
				t.Fatalf("exit %d, want 2:\n%s", r.code, r.stderr)
			}
			for _, w := range c.want {
				if !strings.Contains(r.stderr, w) {
					t.Errorf("stderr does not say %q:\n%s", w, r.stderr)
				}
			}
			if !strings.Contains(r.stderr, "nothing was run") {
				t.Errorf("stderr does not say that nothing ran:\n%s", r.stderr)
			}
			if strings.Contains(r.stderr, "secret\n") || strings.Contains(r.stderr, ",secret") {
				t.Errorf("a password from the file is echoed:\n%s", r.stderr)
			}
			for _, p := range []string{state, filepath.Join(d, "out-good"), filepath.Join(dir, "o2")} {
				if _, err := os.Stat(p); err == nil {
					t.Errorf("%s exists: something ran", p)
				}
			}
		})
	}
	// The same file with the bad row fixed runs.
	t.Run("fixed", func(t *testing.T) {
		d := t.TempDir()
		file := filepath.Join(d, "accounts.csv")
		os.WriteFile(file, []byte(header+strings.ReplaceAll(good, dir+"/out-good", d+"/out-good")), 0o644)
		r := runMailhaul(t, nil, "batch", "--state-dir", filepath.Join(d, "state"), file)
		if r.code != 0 || countFiles(t, filepath.Join(d, "out-good")) != 1 {
			t.Fatalf("exit %d:\n%s", r.code, r.stderr)
		}
	})
}
