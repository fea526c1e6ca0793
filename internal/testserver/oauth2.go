package testserver

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// OAuth2Server is a small OAuth2 token introspection endpoint (RFC 7662)
// for Dovecot's oauth2 passdb (see WithOAuth2). It knows the tokens handed
// out by Issue: a live token is answered {"active": true, "username": U},
// an expired or unknown one {"active": false}. It listens on 127.0.0.1 and
// is closed when the test ends.
type OAuth2Server struct {
	// URL is the introspection URL to give to WithOAuth2.
	URL string

	mu       sync.Mutex
	tokens   map[string]*oauthToken
	requests int
	unknown  int
}

type oauthToken struct {
	user   string
	active bool
}

// StartOAuth2Server starts an introspection endpoint for the test.
func StartOAuth2Server(t testing.TB) *OAuth2Server {
	t.Helper()
	s := &OAuth2Server{tokens: map[string]*oauthToken{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("oauth2 introspection server: %v", err)
	}
	hs := httptest.NewUnstartedServer(http.HandlerFunc(s.introspect))
	hs.Listener.Close()
	hs.Listener = ln
	hs.Start()
	t.Cleanup(hs.Close)
	s.URL = hs.URL + "/introspect"
	return s
}

// Issue returns a new access token for user that introspects as active.
func (s *OAuth2Server) Issue(user string) string {
	b := make([]byte, 18)
	rand.Read(b)
	tok := "tok-" + hex.EncodeToString(b)
	s.mu.Lock()
	s.tokens[tok] = &oauthToken{user: user, active: true}
	s.mu.Unlock()
	return tok
}

// Expire makes token introspect as inactive from now on.
func (s *OAuth2Server) Expire(token string) {
	s.mu.Lock()
	if t := s.tokens[token]; t != nil {
		t.active = false
	}
	s.mu.Unlock()
}

// Requests returns how many introspection requests named a token Issue
// handed out, and how many named no known token.
func (s *OAuth2Server) Requests() (known, unknown int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests, s.unknown
}

// introspect answers Dovecot's request. The token comes as a form field
// "token" (introspection_mode = post, RFC 7662), a query parameter (get)
// or an Authorization: Bearer header (auth).
func (s *OAuth2Server) introspect(w http.ResponseWriter, r *http.Request) {
	tok := ""
	if r.Method == http.MethodPost {
		if err := r.ParseForm(); err == nil {
			tok = r.PostForm.Get("token")
		}
	}
	if tok == "" {
		tok = r.URL.Query().Get("token")
	}
	if tok == "" {
		if a := r.Header.Get("Authorization"); len(a) > 7 && strings.EqualFold(a[:7], "bearer ") {
			tok = a[7:]
		}
	}
	s.mu.Lock()
	t := s.tokens[tok]
	if t != nil {
		s.requests++
	} else {
		s.unknown++
	}
	resp := map[string]any{"active": false}
	if t != nil && t.active {
		resp = map[string]any{"active": true, "username": t.user, "token_type": "Bearer", "scope": "imap"}
	}
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(resp)
}
