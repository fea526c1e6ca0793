package batch

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestParseGood(t *testing.T) {
	in := "\ufeffSource, destination ,destination_password_file,options,name\n" +
		"# a comment line counts as a line\n" +
		"maildir:/a,imaps://a@h,/s/a,\"--map 'Sent Items=Sent' --include \"\"Archive/*\"\"\",alice\n" +
		",,,,\n" +
		"\"maildir:/b,with comma\",imaps://b@h,/s/b,,\n"
	rows, err := Parse("f.csv", strings.NewReader(in), ParseOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 2 {
		t.Fatalf("%d rows: %+v", len(rows), rows)
	}
	a := rows[0]
	if a.Line != 3 || a.Name != "alice" || a.Source != "maildir:/a" || a.DestinationSecret.File != "/s/a" {
		t.Errorf("row 1: %+v", a)
	}
	if want := []string{"--map", "Sent Items=Sent", "--include", "Archive/*"}; !reflect.DeepEqual(a.Options, want) {
		t.Errorf("options %q, want %q", a.Options, want)
	}
	if rows[1].Line != 5 || rows[1].Source != "maildir:/b,with comma" {
		t.Errorf("row 2: %+v", rows[1])
	}
}

// TestParseErrors: every structural error is reported with its line, all
// of them at once (but for broken quoting, which ends the parse).
func TestParseErrors(t *testing.T) {
	cases := []struct {
		name, in string
		want     []string // substrings, one per expected error, in order
	}{
		{"unknown column", "source,destination,pasword\na,b,c\n", []string{`f.csv:1: header: unknown column "pasword"`}},
		{"missing required column", "source,options\na,\n", []string{`f.csv:1: header: required column "destination" is missing`}},
		{"repeated column", "source,destination,source\na,b,c\n", []string{`f.csv:1: header: column "source" given twice`}},
		{"inline secret refused", "source,destination,destination_password\na,b,c\n", []string{"f.csv:1: header: column destination_password puts passwords in the file itself: allowed only with --allow-secrets-in-csv"}},
		{"missing cell", "source,destination,options\na,b,\nc,d\ne,f,\n", []string{"f.csv:3: 2 cells, the header has 3"}},
		{"extra cell", "source,destination\na,b,c\n", []string{"f.csv:2: 3 cells, the header has 2"}},
		{"empty source", "source,destination\n,b\n", []string{"f.csv:2: empty source"}},
		{"two secrets", "source,destination,destination_password_env,destination_password_file\na,b,E,/f\n", []string{"f.csv:2: 2 secrets for the destination"}},
		{"bad options", "source,destination,options\na,b,--map 'x\n", []string{"f.csv:2: options: unterminated ' quote"}},
		{"bad quoting", "source,destination\na,b\n\"c,d\n", []string{"f.csv:3: bad quoting"}},
		{"bare quote", "source,destination\na,b\nc\"x,d\n", []string{"f.csv:3: bad quoting"}},
		{"several", "source,destination\n,b\na,\na,b,c\n", []string{"f.csv:2: empty source", "f.csv:3: empty destination", "f.csv:4: 3 cells"}},
		{"empty file", "", []string{"f.csv: empty"}},
		{"header only", "source,destination\n", []string{"f.csv: no accounts"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse("f.csv", strings.NewReader(c.in), ParseOptions{})
			var es Errors
			if !errors.As(err, &es) {
				t.Fatalf("error %v (%T), want Errors", err, err)
			}
			if len(es) != len(c.want) {
				t.Fatalf("%d errors, want %d:\n%v", len(es), len(c.want), err)
			}
			for i, w := range c.want {
				if !strings.Contains(es[i].Error(), w) {
					t.Errorf("error %d: %q, want it to contain %q", i, es[i], w)
				}
			}
		})
	}
}

func TestReadInlineSecrets(t *testing.T) {
	p := filepath.Join(t.TempDir(), "a.csv")
	os.WriteFile(p, []byte("source,destination,destination_password\nmaildir:/a,imaps://u@h, pass with spaces \n"), 0o644)
	if _, err := Read(p, ParseOptions{}); err == nil || !strings.Contains(err.Error(), AllowSecretsFlag) {
		t.Fatalf("inline secret without the flag: %v", err)
	}
	if _, err := Read(p, ParseOptions{AllowInlineSecrets: true}); err == nil || !strings.Contains(err.Error(), "readable by everyone") {
		t.Fatalf("world-readable file with secrets: %v", err)
	}
	os.Chmod(p, 0o640)
	rows, err := Read(p, ParseOptions{AllowInlineSecrets: true})
	if err != nil {
		t.Fatal(err)
	}
	if rows[0].DestinationSecret.Value != " pass with spaces " {
		t.Errorf("inline password %q: spaces must be kept", rows[0].DestinationSecret.Value)
	}
	if _, err := Read(filepath.Join(t.TempDir(), "missing.csv"), ParseOptions{}); err == nil || !strings.Contains(err.Error(), "missing.csv") {
		t.Errorf("missing file: %v", err)
	}
}

func TestSecretCheck(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "pw")
	os.WriteFile(good, []byte("secret\n"), 0o600)
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, []byte("\n"), 0o600)
	env := map[string]string{"SET": "x"}
	getenv := func(k string) string { return env[k] }
	for _, c := range []struct {
		s    Secret
		want string // "" = ok
	}{
		{Secret{File: good}, ""},
		{Secret{File: filepath.Join(dir, "nope")}, "source_password_file: " + filepath.Join(dir, "nope") + ": no such file"},
		{Secret{File: dir}, "is a directory"},
		{Secret{File: empty}, "empty"},
		{Secret{Env: "SET"}, ""},
		{Secret{Env: "UNSET"}, "environment variable UNSET is not set"},
		{Secret{Cmd: "oama access x"}, ""},
	} {
		err := c.s.Check("source", getenv)
		if (err == nil) != (c.want == "") || err != nil && !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want %q", c.s, err, c.want)
		}
	}
}

func TestSplitOptions(t *testing.T) {
	for in, want := range map[string][]string{
		"":                                 nil,
		"  --dedupe  ":                     {"--dedupe"},
		`--map 'Sent Items=Sent' --x=y`:    {"--map", "Sent Items=Sent", "--x=y"},
		`--map "a \"b\" \\c" ''`:           {"--map", `a "b" \c`, ""},
		`a\ b c`:                           {"a b", "c"},
		`--to-folder=INBOX --include=A/*`:  {"--to-folder=INBOX", "--include=A/*"},
		"--since\t2020-01-01\n--dedupe":    {"--since", "2020-01-01", "--dedupe"},
		`--map="Entwürfe=Drafts"`:          {"--map=Entwürfe=Drafts"},
		`--exclude 'it'"'"'s'`:             {"--exclude", "it's"},
		`--map 'x=y'z`:                     {"--map", "x=yz"},
		`"--include" "Archive/2019"`:       {"--include", "Archive/2019"},
		`--include 'a'  --exclude "b" 'c'`: {"--include", "a", "--exclude", "b", "c"},
	} {
		got, err := SplitOptions(in)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("SplitOptions(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{`'x`, `"x`, `x\`, `"x\"`} {
		if _, err := SplitOptions(in); err == nil {
			t.Errorf("SplitOptions(%q): no error", in)
		}
	}
}
