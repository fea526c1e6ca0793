package connauth

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
)

// Scheme is one URL scheme of a protocol and what it implies.
type Scheme struct {
	Name string // "imaps", "pop3"
	Port string // the default port
	TLS  bool   // implicit TLS
}

// URL is a parsed server URL: never a password.
type URL struct {
	Scheme Scheme
	Host   string // without port; an IPv6 address without brackets
	Port   string
	User   string
	Path   string // without leading and trailing "/"
}

// Addr is host:port.
func (u URL) Addr() string { return net.JoinHostPort(u.Host, u.Port) }

// withoutPassword is raw with whatever lies between the first ":" and the
// last "@" after the scheme replaced, for an error message: a password
// may hold "/", "?", "#" or "@", so where the user part ends is not
// trusted; a folder name with "@" in it is shown less than it could be.
func withoutPassword(raw string) string {
	red, _ := redact(raw)
	return red
}

// redact is withoutPassword, and what it replaced ("" for nothing).
func redact(raw string) (string, string) {
	i := strings.Index(raw, "://")
	if i < 0 {
		return raw, ""
	}
	rest := raw[i+3:]
	at := strings.LastIndex(rest, "@")
	if at < 0 {
		return raw, ""
	}
	if c := strings.Index(rest[:at], ":"); c >= 0 {
		return raw[:i+3] + rest[:c] + ":<redacted>" + rest[at:], rest[c+1 : at]
	}
	return raw, ""
}

// quotes reports whether msg holds a piece of secret (its parts between
// the characters that end a URL's parts): url.Parse quotes what it could
// not parse, a port of ":pass" say, out of a password with a "#" in it.
func quotes(msg, secret string) bool {
	for _, p := range strings.FieldsFunc(secret, func(r rune) bool { return strings.ContainsRune(":/?#@", r) }) {
		if strings.Contains(msg, p) {
			return true
		}
	}
	return false
}

// ParseURL parses raw as user@host[:port][/path] under one of schemes
// (compared without case) for protocol proto ("IMAP", "POP3"), whose usage
// ("imaps://user@host[:port]") is quoted in errors. A password in the URL
// is refused — it would end up in shell history, ps output and the
// checkpoint key — with passwordHint saying where to put it; no error
// repeats the URL as given, which may hold one.
func ParseURL(raw, proto, usage, passwordHint string, schemes ...Scheme) (URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		// url.Parse's message echoes the URL, which may hold a password:
		// only its reason is kept, and the URL is shown without one.
		why := err
		if ue := (*url.Error)(nil); errors.As(err, &ue) {
			why = ue.Err
		}
		red, secret := redact(raw)
		if secret != "" && quotes(why.Error(), secret) {
			return URL{}, fmt.Errorf("invalid %s URL %q: it seems to hold a password, which is refused (it would show in ps and shell history); use %s", proto, red, passwordHint)
		}
		hint := ""
		if ee := url.EscapeError(""); errors.As(err, &ee) {
			hint = "; a folder name's % is written %25"
		}
		return URL{}, fmt.Errorf("invalid %s URL %q: %v (want %s%s)", proto, red, why, usage, hint)
	}
	if u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.HasSuffix(raw, "#") {
		// Neither has a meaning here: a folder name holding ? or # would
		// lose its end without a word.
		return URL{}, fmt.Errorf("invalid %s URL %q: a ? or # ends the folder name there (want %s; a folder name's ? is written %%3F and # %%23)", proto, withoutPassword(raw), usage)
	}
	var out URL
	var names []string
	for _, s := range schemes {
		names = append(names, s.Name)
		if strings.EqualFold(u.Scheme, s.Name) {
			out.Scheme = s
		}
	}
	if out.Scheme.Name == "" {
		return URL{}, fmt.Errorf("invalid %s URL scheme %q (want %s)", proto, u.Scheme, strings.Join(names, " or "))
	}
	if u.User != nil {
		if _, has := u.User.Password(); has {
			return URL{}, fmt.Errorf("%s://%s@%s: a password in the URL is refused (it would show in ps and shell history); use %s", out.Scheme.Name, u.User.Username(), u.Host, passwordHint)
		}
		out.User = u.User.Username()
	}
	out.Host, out.Port = u.Hostname(), out.Scheme.Port
	if out.Host == "" {
		return URL{}, fmt.Errorf("%s URL %s://...: no host", proto, out.Scheme.Name)
	}
	if p := u.Port(); p != "" {
		out.Port = p
	}
	if out.User == "" {
		return URL{}, fmt.Errorf("%s URL %s://%s: no user (want %s://user@%s)", proto, out.Scheme.Name, out.Addr(), out.Scheme.Name, out.Host)
	}
	out.Path = strings.Trim(u.Path, "/")
	return out, nil
}
