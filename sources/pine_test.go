package sources

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mailhaul/mailhaul/migrate"
)

// pineFolder is an mbox file as UW IMAP's c-client (Pine, Alpine) writes
// it: its folder internal data first, then the mail.
const pineFolder = `From MAILER-DAEMON Wed Jan  5 10:00:00 2005
Date: 05 Jan 2005 10:00:00 +0000
From: Mail System Internal Data <MAILER-DAEMON@old.example>
Subject: DON'T DELETE THIS MESSAGE -- FOLDER INTERNAL DATA
Message-ID: <1104919200@old.example>
X-IMAP: 1104919200 0000000002
Status: RO

This text is part of the internal format of your mail folder, and is not
a real message.  It is created automatically by the mail system software.
If deleted, important folder data will be lost, and it will be re-created
with the data reset to initial values.

From alice@example.org Thu Jan  6 09:00:00 2005
Message-ID: <one@example.org>
Subject: one
Status: RO
X-UID: 1

first
From bob@example.org Fri Jan  7 09:00:00 2005
Message-ID: <two@example.org>
Subject: Fwd: DON'T DELETE THIS MESSAGE -- FOLDER INTERNAL DATA
X-IMAP: quoted by someone
X-UID: 2

second, which only looks like it
`

// TestMboxPineFolderData: Pine's folder internal data, the first message
// of its mbox files, is no mail and is not copied (an Info line says
// so); a later message that looks like it is mail.
func TestMboxPineFolderData(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "saved-messages"), []byte(pineFolder), 0o600); err != nil {
		t.Fatal(err)
	}
	var info []string
	s, err := OpenMbox(dir, MboxOptions{Info: func(s string) { info = append(info, s) }})
	if err != nil {
		t.Fatal(err)
	}
	dst, state := t.TempDir(), t.TempDir()
	if rep := runCopy(t, s, dst, state, migrate.Options{}); rep.Copied != 2 || len(rep.Skipped) != 0 {
		t.Errorf("copied %d, skipped %v; want 2, none", rep.Copied, rep.Skipped)
	}
	got := readMaildir(t, dst)["saved-messages"]
	if _, ok := got["one@example.org"]; !ok || len(got) != 2 {
		t.Errorf("destination holds %d messages (%v), want one and two", len(got), got)
	}
	if _, ok := got["1104919200@old.example"]; ok {
		t.Error("the folder internal data was copied")
	}
	if !strings.Contains(strings.Join(info, "\n"), "3 messages: 3 read the same in every dialect; the first is Pine's folder internal data, no mail") {
		t.Errorf("the file's summary does not say its first message is no mail: %q", info)
	}
	if !strings.Contains(strings.Join(info, "\n"), "folder internal data") {
		t.Errorf("no note of the skipped folder data: %q", info)
	}
}
