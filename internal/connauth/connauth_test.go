package connauth

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestBearerDetail(t *testing.T) {
	for in, want := range map[string]string{
		`{"status":"invalid_token","schemes":"bearer","scope":"mail"}`: "status invalid_token, scope mail",
		`{"status":"401","schemes":"bearer"}`:                          "status 401",
		"not json\r\n  at all":                                         "not json at all",
	} {
		if got := BearerDetail([]byte(in)); got != want {
			t.Errorf("BearerDetail(%q) = %q, want %q", in, got, want)
		}
	}
	if got := saslName("a=b,c"); got != "a=3Db=2Cc" {
		t.Errorf("saslName = %q", got)
	}
}

func TestBearerMessages(t *testing.T) {
	if got := XOAUTH2("me@example.org", "T0K"); got != "user=me@example.org\x01auth=Bearer T0K\x01\x01" {
		t.Errorf("XOAUTH2 = %q", got)
	}
	if got := OAuthBearer("a,b", "mail.example", "995", "T0K"); got != "n,a=a=2Cb,\x01host=mail.example\x01port=995\x01auth=Bearer T0K\x01\x01" {
		t.Errorf("OAuthBearer = %q", got)
	}
}

func TestTLSConfigCAFile(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.pem")
	os.WriteFile(bad, []byte("not a certificate"), 0o600)
	if _, err := TLSConfig("h", bad, false); err == nil || !strings.Contains(err.Error(), "no PEM certificate") {
		t.Errorf("bad CA file: %v", err)
	}
	if _, err := TLSConfig("h", filepath.Join(dir, "missing.pem"), false); err == nil {
		t.Error("missing CA file accepted")
	}
	c, err := TLSConfig("h", "", true)
	if err != nil || !c.InsecureSkipVerify || c.ServerName != "h" || c.RootCAs != nil {
		t.Errorf("TLSConfig = %+v, %v", c, err)
	}
}

func TestParseURL(t *testing.T) {
	schemes := []Scheme{{Name: "x", Port: "1"}, {Name: "xs", Port: "2", TLS: true}}
	u, err := ParseURL("XS://me@example.com@[::1]/A/B/", "X", "xs://user@host", "the env", schemes...)
	if err != nil || !u.Scheme.TLS || u.Host != "::1" || u.Port != "2" || u.User != "me@example.com" || u.Path != "A/B" || u.Addr() != "[::1]:2" {
		t.Fatalf("ParseURL = %+v, %v", u, err)
	}
	if u, err := ParseURL("x://me@h/a%23b%3Fc%25", "X", "", "", schemes...); err != nil || u.Path != "a#b?c%" {
		t.Errorf("escaped # ? %%: %+v, %v", u, err)
	}
	for in, msg := range map[string]string{
		"x://me:s3cret@h":        "use the env",
		"x://h":                  "X URL x://h:1: no user",
		"x://me@":                "no host",
		"y://me@h":               `scheme "y" (want x or xs)`,
		"x://me@h:bad:pt/":       `invalid X URL "x://me@h:bad:pt/": invalid port ":pt" after host (want xs://user@host)`,
		"x://me:s3cret@h:24143x": `invalid X URL "x://me:<redacted>@h:24143x": invalid port ":24143x" after host`,
		"x://me@h/a#b?c":         `a ? or # ends the folder name there (want xs://user@host; a folder name's ? is written %3F and # %23)`,
		"x://me@h/a?b":           `a ? or # ends the folder name there`,
		"x://me@h/a?":            `a ? or # ends the folder name there`,
		"x://me@h/a#":            `a ? or # ends the folder name there`,
		"x://me@h/50%off":        `invalid URL escape "%of" (want xs://user@host; a folder name's % is written %25)`,
		"x://bob:s3cret#x@h":     `invalid X URL "x://bob:<redacted>@h": it seems to hold a password, which is refused (it would show in ps and shell history); use the env`,
		"x://bob:1234#s3cret@h":  `invalid X URL "x://bob:<redacted>@h": a ? or # ends the folder name there`,
		"x://bob:s3cret/x@h":     `use the env`,
		"x://bob:s3cret?x@h":     `use the env`,
		"x://me@x.org:s3cret@h":  `use the env`,
	} {
		_, err := ParseURL(in, "X", "xs://user@host", "the env", schemes...)
		if err == nil || !strings.Contains(err.Error(), msg) || strings.Contains(err.Error(), "s3cret") {
			t.Errorf("ParseURL(%q) = %v, want an error with %q", in, err, msg)
		}
	}
}
