package main

import (
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mailhaul/mailhaul/internal/testserver"
)

// TestIMAPOAuth2CLI runs mailhaul with XOAUTH2 and OAUTHBEARER, the token
// printed by a command or read from a file, against a Dovecot whose oauth2
// passdb asks the test's introspection endpoint.
func TestIMAPOAuth2CLI(t *testing.T) {
	o := testserver.StartOAuth2Server(t)
	d := testserver.StartDovecot(t, testserver.WithUser("alice", "Alice-Pw-5521"), testserver.WithOAuth2(o.URL), testserver.WithoutAuthDelay())
	srcDir, _ := filepath.Abs("../../testdata/maildir")
	want := countFiles(t, srcDir)
	url := "imaps://alice@" + d.IMAPSAddr
	// No password anywhere: OAuth2 must not need one.
	noPw := []string{"MAILHAUL_SRC_PASSWORD=", "MAILHAUL_DST_PASSWORD="}
	tmp := t.TempDir()
	tok := o.Issue("alice")
	tokFile := filepath.Join(tmp, "token")
	if err := os.WriteFile(tokFile, []byte(tok+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	state := t.TempDir()

	// noToken checks that the token shows nowhere mailhaul writes.
	noToken := func(t *testing.T, r result, tok string) {
		t.Helper()
		if leaks(r.stderr, tok) || leaks(r.stdout, tok) {
			t.Errorf("token in the output:\n%s\n%s", r.stdout, r.stderr)
		}
		if hits := grepTree(t, state, tok); len(hits) > 0 {
			t.Errorf("token in state files %v", hits)
		}
	}

	t.Run("copy-to-imap-xoauth2-cmd", func(t *testing.T) {
		r := runMailhaul(t, noPw, "copy", "-vv", "--include-deleted", "--state-dir", state, "--ca-file", d.CAFile,
			"--dst-auth", "xoauth2", "--dst-oauth-token-cmd", "cat '"+tokFile+"'", "maildir:"+srcDir, url)
		if r.code != 0 {
			t.Fatalf("exit %d:\n%s", r.code, r.stderr)
		}
		if !strings.Contains(r.stderr, "AUTHENTICATE XOAUTH2 <redacted>") || !strings.Contains(r.stderr, "APPEND") {
			t.Errorf("no redacted wire trace with -vv:\n%.3000s", r.stderr)
		}
		noToken(t, r, tok)
		if got := sumCounts(imapCount(t, d, "alice")); got != want {
			t.Errorf("destination holds %d messages, want %d", got, want)
		}
	})
	t.Run("ls-oauthbearer-file", func(t *testing.T) {
		r := runMailhaul(t, noPw, "ls", "-vv", "--ca-file", d.CAFile, "--src-auth", "oauthbearer", "--src-oauth-token-file", tokFile, url)
		if r.code != 0 || !strings.Contains(r.stdout, "INBOX") || !strings.Contains(r.stdout, `\Sent`) {
			t.Fatalf("exit %d:\n%s\n%s", r.code, r.stdout, r.stderr)
		}
		if !strings.Contains(r.stderr, "AUTHENTICATE OAUTHBEARER <redacted>") {
			t.Errorf("no redacted wire trace with -vv:\n%.3000s", r.stderr)
		}
		noToken(t, r, tok)
	})
	t.Run("copy-from-imap-xoauth2-file", func(t *testing.T) {
		dst := t.TempDir()
		r := runMailhaul(t, noPw, "copy", "-vv", "--include-deleted", "--state-dir", state, "--ca-file", d.CAFile,
			"--src-auth", "xoauth2", "--src-oauth-token-file", tokFile, url, "maildir:"+dst)
		if r.code != 0 {
			t.Fatalf("exit %d:\n%s", r.code, r.stderr)
		}
		noToken(t, r, tok)
		if got := countFiles(t, dst); got != want {
			t.Errorf("maildir holds %d messages, want %d", got, want)
		}
		if hits := grepTree(t, dst, tok); len(hits) > 0 {
			t.Errorf("token in the copied mail %v", hits)
		}
	})

	// An expired token: exit 1, one line naming server and account, and
	// no token, even in the -vv wire trace.
	expired := o.Issue("alice")
	o.Expire(expired)
	expFile := filepath.Join(tmp, "expired")
	if err := os.WriteFile(expFile, []byte(expired), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ mech, flag, arg string }{
		{"xoauth2", "--src-oauth-token-file", expFile},
		{"oauthbearer", "--src-oauth-token-cmd", "cat '" + expFile + "'"},
	} {
		t.Run("expired-"+tc.mech, func(t *testing.T) {
			r := runMailhaul(t, noPw, "ls", "-vv", "--ca-file", d.CAFile, "--src-auth", tc.mech, tc.flag, tc.arg, url)
			lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
			last := lines[len(lines)-1]
			if r.code != 1 || !strings.Contains(last, d.IMAPSAddr) || !strings.Contains(last, "alice") ||
				!strings.Contains(last, tc.mech) || !strings.Contains(strings.ToLower(last), "authentication failed") && !strings.Contains(last, "token refused") {
				t.Fatalf("exit %d, last line %q:\n%s", r.code, last, r.stderr)
			}
			noToken(t, r, expired)
		})
	}

	t.Run("no-token-flag", func(t *testing.T) {
		r := runMailhaul(t, noPw, "ls", "--ca-file", d.CAFile, "--src-auth", "xoauth2", url)
		if r.code != exitUsage || !strings.Contains(r.stderr, "--src-oauth-token-cmd") {
			t.Fatalf("exit %d:\n%s", r.code, r.stderr)
		}
	})
	t.Run("failing-token-cmd", func(t *testing.T) {
		r := runMailhaul(t, noPw, "ls", "--ca-file", d.CAFile, "--src-auth", "xoauth2", "--src-oauth-token-cmd", "exit 3", url)
		if r.code != 1 || !strings.Contains(r.stderr, "alice") || !strings.Contains(r.stderr, "exit status 3") {
			t.Fatalf("exit %d:\n%s", r.code, r.stderr)
		}
	})
}

// leaks reports whether s holds secret, as such or base64-encoded in a
// word (SASL messages are base64 on the wire).
func leaks(s, secret string) bool {
	if strings.Contains(s, secret) {
		return true
	}
	for _, w := range strings.Fields(s) {
		if b, err := base64.StdEncoding.DecodeString(w); err == nil && strings.Contains(string(b), secret) {
			return true
		}
	}
	return false
}
