// Package connauth holds what the IMAP and POP3 clients (internal/imapconn,
// internal/pop3conn) share about securing and authenticating a connection:
// server URLs (user@host:port, never a password), the TLS configuration
// built from --ca-file / --tls-skip-verify, the recognition of certificate
// errors, and the SASL bearer-token messages of XOAUTH2 and OAUTHBEARER
// with the parsing of their error challenges.
//
// Everything here is pure (no I/O but reading the CA file) and safe for
// concurrent use. Nothing here logs: a token or password handed to these
// functions only ends up in the returned SASL message, which callers must
// keep out of traces.
package connauth

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
)

// TLSConfig returns the client TLS configuration for host: certificates
// verified against the system roots plus the PEM certificates of caFile
// (a private CA or a self-signed server certificate), unless skipVerify;
// TLS 1.2 or newer.
func TLSConfig(host, caFile string, skipVerify bool) (*tls.Config, error) {
	t := &tls.Config{ServerName: host, InsecureSkipVerify: skipVerify, MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("read CA file: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("CA file %s: no PEM certificate in it", caFile)
		}
		t.RootCAs = pool
	}
	return t, nil
}

// IsCertError reports whether err is a failed certificate verification.
func IsCertError(err error) bool {
	var (
		ua  x509.UnknownAuthorityError
		ci  x509.CertificateInvalidError
		hn  x509.HostnameError
		cve *tls.CertificateVerificationError
	)
	return errors.As(err, &ua) || errors.As(err, &ci) || errors.As(err, &hn) || errors.As(err, &cve)
}

// CertError is the message for a certificate that did not verify; where
// names the server and account.
func CertError(where string, err error) error {
	return fmt.Errorf("%s: TLS certificate not trusted: %v; if the server uses a private CA or a self-signed certificate, pass its certificate with --ca-file", where, err)
}

// XOAUTH2 is the initial client response of Google's and Microsoft's
// XOAUTH2 mechanism: "user=U^Aauth=Bearer T^A^A" (not yet base64).
func XOAUTH2(user, token string) string {
	return "user=" + user + "\x01auth=Bearer " + token + "\x01\x01"
}

// OAuthBearer is the initial client response of RFC 7628 OAUTHBEARER: a
// gs2 header carrying user as authorization identity, then host, port and
// the bearer token (not yet base64).
func OAuthBearer(user, host, port, token string) string {
	return "n,a=" + saslName(user) + ",\x01host=" + host + "\x01port=" + port + "\x01auth=Bearer " + token + "\x01\x01"
}

// saslName escapes a user name for the gs2 header (RFC 5801: "," and "="
// become "=2C" and "=3D").
func saslName(s string) string {
	return strings.NewReplacer("=", "=3D", ",", "=2C").Replace(s)
}

// BearerDetail summarises an XOAUTH2 / OAUTHBEARER error challenge, a JSON
// object such as {"status":"invalid_token","schemes":"bearer","scope":"mail"}
// (already base64-decoded), on one line; anything else is shown cleaned and
// cut to 200 characters.
func BearerDetail(challenge []byte) string {
	var e struct {
		Status string `json:"status"`
		Scope  string `json:"scope"`
	}
	if err := json.Unmarshal(challenge, &e); err != nil || e.Status == "" {
		s := strings.Join(strings.Fields(strings.ToValidUTF8(string(challenge), "?")), " ")
		if len(s) > 200 {
			s = s[:200] + "..."
		}
		return s
	}
	d := "status " + e.Status
	if e.Scope != "" {
		d += ", scope " + e.Scope
	}
	return d
}

// Printable shows the first bytes a server sent (the record header a
// plaintext server answers a TLS handshake with), for an error message:
// control and non-ASCII bytes become dots.
func Printable(b []byte) string {
	return strings.Map(func(r rune) rune {
		if r < ' ' || r > '~' {
			return '.'
		}
		return r
	}, string(b))
}
