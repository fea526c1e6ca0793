package sinks

import (
	"context"
	"strconv"
	"strings"

	"github.com/mailhaul/mailhaul/migrate"
)

// Read-only answers for `mailhaul check` (migrate.Resolver): which
// destination folder a copy puts a source folder's messages in, and which
// destination message a ref recorded in the checkpoint names. Nothing here
// creates, selects or changes anything.

// Resolve implements migrate.Resolver: the folder Prepare(ctx, src, name)
// returns — the same conversion of the name to the server's syntax
// (namespace prefix, delimiter, endpoint folder) and the same special-use
// redirection to an existing folder with that attribute or well-known
// name, never one already given to another source folder — from the
// folder list read when the sink was opened. Nothing is created: a folder
// Prepare would create is returned under the name it would get (as far as
// the server's refusals of names are known). Call it for the folders in
// the order Prepare would see them. Keep in step with prepare
// (imap_folders.go).
func (s *IMAP) Resolve(ctx context.Context, src migrate.Mailbox, name string) (string, error) {
	s.mu.Lock()
	m := s.meta
	dest := s.serverNameLocked(name)
	prefixTo := s.prefixTo
	s.mu.Unlock()
	use := src.SpecialUse // decided by the engine (migrate.Options.Planned)
	if mappedUses[use] && prefixTo == "" {
		if found := findByUse(m, use, func(d string) bool { return s.free(d, src.Name) }); found != "" {
			dest = found
		}
	}
	s.assign(dest, src.Name) // as Prepare records it
	return dest, nil
}

// RefCopy implements migrate.Resolver: a ref "uidvalidity:uid:folder"
// (or the older "uidvalidity:uid") names the message with that UID in
// folder while its UIDVALIDITY is uidvalidity, which is how the IMAP
// source lists it (Epoch, ID). Refs without a UID (a server without
// UIDPLUS where the copy could not be identified) and --dedupe's name no
// particular copy.
func (s *IMAP) RefCopy(folder, ref string) (epoch, id string, ok bool) {
	parts := strings.SplitN(ref, ":", 3)
	if len(parts) < 2 || (len(parts) == 3 && parts[2] != folder) {
		return "", "", false
	}
	v, err1 := strconv.ParseUint(parts[0], 10, 32)
	u, err2 := strconv.ParseUint(parts[1], 10, 32)
	if err1 != nil || err2 != nil || u == 0 {
		return "", "", false
	}
	return strconv.FormatUint(v, 10), strconv.FormatUint(u, 10), true
}

// Resolve implements migrate.Resolver: Prepare keeps the name (INBOX in
// any case is INBOX); nothing is created.
func (s *Maildir) Resolve(ctx context.Context, src migrate.Mailbox, name string) (string, error) {
	if strings.EqualFold(name, "INBOX") {
		name = "INBOX"
	}
	return name, nil
}

// RefCopy implements migrate.Resolver: a ref is the unique part of the
// copy's file name, which is the ID the Maildir source lists it under
// (whatever flags a mail client gave it since, in cur/ or new/).
func (s *Maildir) RefCopy(folder, ref string) (epoch, id string, ok bool) {
	if ref == "" || migrate.IsFound(ref) || ref == "existing" {
		return "", "", false
	}
	return "", ref, true
}

var (
	_ migrate.Resolver = (*IMAP)(nil)
	_ migrate.Resolver = (*Maildir)(nil)
)
