package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mailhaul/mailhaul/internal/testserver"
)

// TestSecretsNeverLeak runs a copy with -vv (the wire trace) and --json for
// passwords of every awkward shape and both password mechanisms, over
// STARTTLS, and looks for the password in everything the run leaves: the
// trace and logs (stderr), the report (stdout), the state directory and
// the spool directory.
func TestSecretsNeverLeak(t *testing.T) {
	shapes := map[string]string{
		"nonascii": "Pässwörd-Ünïcødé-7",
		"plus":     "+Pässwörd-Carol",
		"star":     "* OK not a response",
		"quotes":   `say "hello" 'there' \back`,
		"spaces":   "  spaces  inside and out ",
		"long":     strings.Repeat("Lång-", 200),
	}
	var opts []testserver.Option
	for name, pw := range shapes {
		opts = append(opts, testserver.WithUser(name, pw))
	}
	d := testserver.StartDovecot(t, opts...)
	srcDir, _ := filepath.Abs("../../testdata/maildir")
	for name, pw := range shapes {
		for _, mech := range []string{"login", "plain"} {
			t.Run(name+"-"+mech, func(t *testing.T) {
				state, spool := t.TempDir(), t.TempDir()
				pwFile := filepath.Join(t.TempDir(), "pw")
				os.WriteFile(pwFile, []byte(pw), 0o600)
				r := runMailhaul(t, nil, "-vv", "--json", "copy", "--state-dir", state, "--temp-dir", spool, "--ca-file", d.CAFile,
					"--dst-auth", mech, "--dst-password-file", pwFile, "maildir:"+srcDir, fmt.Sprintf("imap://%s@%s", name, d.IMAPAddr))
				switch {
				case name == "long" && mech == "login" && r.code == exitFatal:
					// Dovecot's login process takes at most ~1 KB per line:
					// it refuses, and the message must say why.
					if !strings.Contains(r.stderr, "server said: BYE") {
						t.Errorf("refusal without the server's reason:\n%.3000s", r.stderr)
					}
				case r.code != 0 && r.code != exitSkipped:
					t.Fatalf("exit %d:\n%.3000s", r.code, r.stderr)
				}
				if !strings.Contains(r.stderr, "C: ") || !strings.Contains(r.stderr, "<redacted>") {
					t.Fatalf("no wire trace:\n%.2000s", r.stderr)
				}
				needles := []string{pw, strings.TrimSpace(pw)}
				for _, n := range needles {
					if strings.Contains(r.stderr, n) {
						t.Errorf("password in the trace/logs")
					}
					if strings.Contains(r.stdout, n) {
						t.Errorf("password in the report")
					}
					for _, dir := range []string{state, spool} {
						if hits := grepTree(t, dir, n); len(hits) > 0 {
							t.Errorf("password in %v", hits)
						}
					}
				}
			})
		}
	}
}

// TestTokenCommandEnv: a token command runs without the variables that
// hold passwords (MAILHAUL_*_PASSWORD and those batch rows name), and
// with the rest of the environment.
func TestTokenCommandEnv(t *testing.T) {
	t.Setenv("MAILHAUL_SRC_PASSWORD", "src-secret")
	t.Setenv("MAILHAUL_DST_PASSWORD", "dst-secret")
	t.Setenv("ROW_PW_FOR_TEST", "row-secret")
	t.Setenv("KEEP_ME", "yes")
	addSecretVar("ROW_PW_FOR_TEST")
	tok, err := tokenSource(`if env | grep -q secret; then echo leaked; elif [ "$KEEP_ME" = yes ]; then echo clean-token; else echo stripped-too-much; fi`, "")(context.Background())
	if err != nil || tok != "clean-token" {
		t.Fatalf("token %q, %v: want the command to see no password and the rest of the environment", tok, err)
	}
}

// TestPasswordFileAndVariable: with both a password file and the
// variable, the file is used and a note says so, once per side, naming
// neither password.
func TestPasswordFileAndVariable(t *testing.T) {
	d := testserver.StartDovecot(t, testserver.WithUser("alice", "from-the-file"))
	pw := filepath.Join(t.TempDir(), "pw")
	os.WriteFile(pw, []byte("from-the-file\n"), 0o600)
	r := runMailhaul(t, []string{"MAILHAUL_SRC_PASSWORD=from-the-variable"}, "ls", "--ca-file", d.CAFile, "--src-password-file", pw, "imap://alice@"+d.IMAPAddr+"/")
	note := "both the password file " + pw + " and $MAILHAUL_SRC_PASSWORD are set; the file is used"
	if r.code != 0 || strings.Count(r.stderr, note) != 1 || strings.Contains(r.stderr+r.stdout, "from-the-") {
		t.Fatalf("exit %d, want 0 and the note once, no password\nstdout %s\nstderr %s", r.code, r.stdout, r.stderr)
	}
	r = runMailhaul(t, []string{"MAILHAUL_SRC_PASSWORD=from-the-file"}, "ls", "--ca-file", d.CAFile, "imap://alice@"+d.IMAPAddr+"/")
	if r.code != 0 || strings.Contains(r.stderr, "note:") {
		t.Fatalf("variable alone: exit %d, want 0 and no note\n%s", r.code, r.stderr)
	}
}
