package migrate

import "testing"

// TestSpecialUseByName: the names mail programs give their special
// folders, at the top or under INBOX; nothing deeper, no Gmail folder.
func TestSpecialUseByName(t *testing.T) {
	for name, want := range map[string]string{
		"Sent": UseSent, "Sent Items": UseSent, "INBOX/Sent": UseSent, "sent-mail": UseSent,
		"postponed-msgs": UseDrafts, "Drafts": UseDrafts, "Deleted Items": UseTrash, "Junk E-mail": UseJunk,
		"Archive": UseArchive, "Work/Sent": "", "[Gmail]/Sent Mail": "", "saved-messages": "", "Outbox": "",
	} {
		if got := SpecialUseByName(name); got != want {
			t.Errorf("SpecialUseByName(%q) = %q, want %q", name, got, want)
		}
	}
}
