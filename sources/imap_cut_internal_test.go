package sources

import (
	"testing"

	"github.com/emersion/go-imap/v2"
)

// TestCutElsewhere: cuts at new places (a dropping link) are free after
// the first, up to maxCuts; a cut where one happened before (a server
// that breaks off at the same byte) is counted.
func TestCutElsewhere(t *testing.T) {
	s := &IMAP{cuts: map[string][]int64{}}
	if s.cutElsewhere("INBOX", 7, nil, 100) {
		t.Error("first cut free")
	}
	if !s.cutElsewhere("INBOX", 7, nil, 300) || !s.cutElsewhere("INBOX", 7, &imap.SectionPartial{Offset: 4 << 20}, 100) {
		t.Error("cuts at new places counted")
	}
	if s.cutElsewhere("INBOX", 7, nil, 300) {
		t.Error("a cut at the same byte again is free")
	}
	if s.cutElsewhere("INBOX", 8, nil, 300) {
		t.Error("another message's first cut free")
	}
	free := 0
	for i := int64(0); i < 2*maxCuts; i++ {
		if s.cutElsewhere("Work", 1, nil, 1000+i) {
			free++
		}
	}
	if free != maxCuts-1 {
		t.Errorf("%d free cuts, want %d", free, maxCuts-1)
	}
}
