package migrate

import (
	"fmt"
	"sort"
	"strings"
)

// Special-use attributes (RFC 6154).
const (
	UseSent    = `\Sent`
	UseDrafts  = `\Drafts`
	UseTrash   = `\Trash`
	UseJunk    = `\Junk`
	UseArchive = `\Archive`
	UseAll     = `\All`
	UseFlagged = `\Flagged`
)

// wellKnown maps lower-cased top-level folder names that clients and
// servers use for special folders to their special use.
var wellKnown = map[string]string{
	"sent": UseSent, "sent items": UseSent, "sent messages": UseSent, "sent mail": UseSent,
	"sent-mail": UseSent, "postponed-msgs": UseDrafts, "postponed": UseDrafts, // Pine, Alpine, KMail; mutt

	"gesendet": UseSent, "gesendete objekte": UseSent, "gesendete elemente": UseSent,
	"envoyés": UseSent, "éléments envoyés": UseSent, "enviados": UseSent, "inviata": UseSent,
	"posta inviata": UseSent, "verzonden": UseSent, "verzonden items": UseSent, "outbox": "",
	"drafts": UseDrafts, "draft": UseDrafts, "entwürfe": UseDrafts, "brouillons": UseDrafts, "borradores": UseDrafts, "bozze": UseDrafts, "concepten": UseDrafts,
	"trash": UseTrash, "deleted items": UseTrash, "deleted messages": UseTrash, "deleted": UseTrash, "bin": UseTrash,
	"papierkorb": UseTrash, "gelöschte elemente": UseTrash, "gelöschte objekte": UseTrash, "corbeille": UseTrash, "papelera": UseTrash, "cestino": UseTrash, "prullenbak": UseTrash,
	"junk": UseJunk, "spam": UseJunk, "junk e-mail": UseJunk, "junk email": UseJunk, "bulk mail": UseJunk, "junk-e-mail": UseJunk, "indésirables": UseJunk,
	"archive": UseArchive, "archives": UseArchive, "archiv": UseArchive, "archivo": UseArchive,
}

// SpecialUseByName guesses the special use of a folder from its name: only
// top-level folders (and children of INBOX, as in Courier's INBOX.Sent)
// count. Returns "" when the name is not a well-known one.
func SpecialUseByName(name string) string {
	n := name
	if strings.HasPrefix(strings.ToUpper(n), "INBOX/") {
		n = n[len("INBOX/"):]
	}
	if strings.Contains(n, "/") {
		return ""
	}
	n = strings.ToLower(strings.TrimSpace(n))
	if strings.HasPrefix(n, "[gmail]/") || strings.HasPrefix(n, "[google mail]/") {
		return ""
	}
	return wellKnown[n]
}

// SortMailboxes orders mailboxes INBOX first, then by name with parents
// before their children ("A", "A/B", "A B"), the order Sources return.
func SortMailboxes(mbs []Mailbox) {
	sort.SliceStable(mbs, func(i, j int) bool { return MailboxLess(mbs[i].Name, mbs[j].Name) })
}

// UniqueName is name if taken says it is free, else the first free one of
// alt, alt " (2)", alt " (3)"…: the name a source gives a folder whose
// name is already another folder's — two files or directories that both
// read as INBOX ("Inbox" of Thunderbird beside "INBOX" of Pine, a nested
// Maildir's "inbox/" beside its root) — so that each is listed, and read,
// once. A destination that folds the case of INBOX merges them there.
func UniqueName(name, alt string, taken func(string) bool) string {
	if !taken(name) {
		return name
	}
	for i := 1; ; i++ {
		n := alt
		if i > 1 {
			n = fmt.Sprintf("%s (%d)", alt, i)
		}
		if !taken(n) {
			return n
		}
	}
}

// duplicateMailbox returns the first name mbs holds twice ("" if none):
// a source that lists one folder twice would have it read twice and the
// other folder it stands for never.
func duplicateMailbox(mbs []Mailbox) string {
	seen := make(map[string]bool, len(mbs))
	for _, mb := range mbs {
		if seen[mb.Name] {
			return mb.Name
		}
		seen[mb.Name] = true
	}
	return ""
}

// MailboxLess is the order of SortMailboxes on names.
func MailboxLess(a, b string) bool {
	if a == "INBOX" || b == "INBOX" {
		return a == "INBOX" && b != "INBOX"
	}
	return strings.ReplaceAll(a, "/", "\x00") < strings.ReplaceAll(b, "/", "\x00")
}

// GuessSpecialUse sets mb's SpecialUse from its name when the store gave
// it none, marking it guessed.
func GuessSpecialUse(mb *Mailbox) {
	if mb.SpecialUse == "" {
		if u := SpecialUseByName(mb.Name); u != "" {
			mb.SpecialUse, mb.UseGuessed = u, true
		}
	}
}

// AssignSpecialUses makes each special use belong to one source folder at
// most, so that two source folders are never merged into the destination's
// folder of that use: the first folder (in mailbox order) that carries the
// use as an attribute keeps it, else the first whose name guesses it; every
// other folder claiming it loses the use and keeps its own name ("Sent
// Items" with \Sent and "Gesendet" both become... only the former goes to
// the destination's Sent folder).
func AssignSpecialUses(mbs []Mailbox) {
	owner := map[string]int{}
	for pass := 0; pass < 2; pass++ {
		for i, mb := range mbs {
			if mb.SpecialUse == "" || mb.UseGuessed != (pass == 1) {
				continue
			}
			if _, taken := owner[mb.SpecialUse]; !taken {
				owner[mb.SpecialUse] = i
			}
		}
	}
	for i := range mbs {
		if u := mbs[i].SpecialUse; u != "" && owner[u] != i {
			mbs[i].SpecialUse, mbs[i].UseGuessed = "", false
		}
	}
}
