package sinks

import (
	"strings"

	"github.com/mailhaul/mailhaul/migrate"
)

// Verified implements migrate.Verifier: a ref "uidvalidity:uid" names the
// copy the server confirmed (APPENDUID, or found by searching); the ref
// "uidvalidity:" of a server without UIDPLUS whose copy could not be found
// right after the APPEND does not, so --delete-after-copy keeps the source
// message.
func (s *IMAP) Verified(ref string) bool {
	_, uid, ok := strings.Cut(ref, ":")
	return ok && uid != ""
}

var _ migrate.Verifier = (*IMAP)(nil)
