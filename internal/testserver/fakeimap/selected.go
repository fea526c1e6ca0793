package fakeimap

import (
	"bufio"
	"bytes"
	"fmt"
	"io"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-message/textproto"
)

// The selected state: FETCH, SEARCH, STORE, EXPUNGE, COPY, MOVE.
//
// Sequence numbers: the store numbers messages by position (index+1); each
// session sees them through its SessionTracker (EncodeSeqNum), which lags
// behind until the session is told of EXISTS/EXPUNGE by a Poll. A message
// appended by another connection and not yet announced has no sequence
// number in this session: FETCH skips it (a FETCH response needs one),
// UID SEARCH finds it (its UID is valid).

// numRange is a resolved range of a number set ("*" replaced).
type numRange struct{ lo, hi uint32 }

func resolve(starts, stops []uint32, max uint32) []numRange {
	out := make([]numRange, len(starts))
	for i := range starts {
		lo, hi := starts[i], stops[i]
		if lo == 0 {
			lo = max
		}
		if hi == 0 {
			hi = max
		}
		if lo > hi {
			lo, hi = hi, lo
		}
		out[i] = numRange{lo, hi}
	}
	return out
}

func inRanges(rs []numRange, n uint32) bool {
	for _, r := range rs {
		if n != 0 && r.lo <= n && n <= r.hi {
			return true
		}
	}
	return false
}

func seqRanges(set imap.SeqSet, max uint32) []numRange {
	starts, stops := make([]uint32, len(set)), make([]uint32, len(set))
	for i, r := range set {
		starts[i], stops[i] = r.Start, r.Stop
	}
	return resolve(starts, stops, max)
}

func uidRanges(set imap.UIDSet, max imap.UID) []numRange {
	starts, stops := make([]uint32, len(set)), make([]uint32, len(set))
	for i, r := range set {
		starts[i], stops[i] = uint32(r.Start), uint32(r.Stop)
	}
	return resolve(starts, stops, uint32(max))
}

// clientCountLocked is the number of messages this session knows of.
func (s *session) clientCountLocked() uint32 {
	for i := len(s.sel.msgs); i > 0; i-- {
		if cs := s.view.EncodeSeqNum(uint32(i)); cs != 0 {
			return cs
		}
	}
	return 0
}

func (s *session) maxUIDLocked() imap.UID {
	if n := len(s.sel.msgs); n > 0 {
		return s.sel.msgs[n-1].uid
	}
	return 0
}

// forEachLocked calls fn for the messages of numSet: seq is the store's
// number, cseq the session's (0 if it does not know the message; only for
// UID sets).
func (s *session) forEachLocked(numSet imap.NumSet, fn func(seq, cseq uint32, m *message)) {
	if imap.IsSearchRes(numSet) {
		return // SEARCHRES is not advertised
	}
	switch set := numSet.(type) {
	case imap.SeqSet:
		rs := seqRanges(set, s.clientCountLocked())
		for i, m := range s.sel.msgs {
			if cs := s.view.EncodeSeqNum(uint32(i + 1)); cs != 0 && inRanges(rs, cs) {
				fn(uint32(i+1), cs, m)
			}
		}
	case imap.UIDSet:
		rs := uidRanges(set, s.maxUIDLocked())
		for i, m := range s.sel.msgs {
			if inRanges(rs, uint32(m.uid)) {
				fn(uint32(i+1), s.view.EncodeSeqNum(uint32(i+1)), m)
			}
		}
	}
}

// fetched is a message's state copied under the lock for writing after.
type fetched struct {
	cseq        uint32
	uid         imap.UID
	flags       []imap.Flag
	flagsForced bool // \Seen was just set: report FLAGS even if not asked
	m           *message
}

func (s *session) Fetch(w *imapserver.FetchWriter, numSet imap.NumSet, options *imap.FetchOptions) error {
	markSeen := false
	if !s.readOnly {
		for _, bs := range options.BodySection {
			markSeen = markSeen || !bs.Peek
		}
		for _, bs := range options.BinarySection {
			markSeen = markSeen || !bs.Peek
		}
	}
	var items []fetched
	s.srv.mu.Lock()
	f := s.sel
	s.forEachLocked(numSet, func(seq, cseq uint32, m *message) {
		if cseq == 0 {
			return
		}
		forced := false
		if markSeen && !hasFlag(m.flags, imap.FlagSeen) {
			m.flags = append(m.flags, imap.FlagSeen)
			f.tracker.QueueMessageFlags(seq, m.uid, append([]imap.Flag(nil), m.flags...), s.view)
			forced = true
		}
		items = append(items, fetched{cseq: cseq, uid: m.uid, flags: append([]imap.Flag(nil), m.flags...), flagsForced: forced, m: m})
	})
	mailbox := f.visible
	s.srv.mu.Unlock()

	for _, it := range items {
		if err := s.writeFetch(w, it, options, mailbox); err != nil {
			return fmt.Errorf("fakeimap: write FETCH response: %w", err)
		}
	}
	return nil
}

// writeFetch writes one message's FETCH response. The message's body is
// immutable; its date likewise once stored.
func (s *session) writeFetch(w *imapserver.FetchWriter, it fetched, options *imap.FetchOptions, mailbox string) (err error) {
	rw := w.CreateMessage(it.cseq)
	defer func() {
		// Close releases imapserver's encoder lock: always call it.
		if cerr := rw.Close(); err == nil {
			err = cerr
		}
	}()
	body := it.m.body
	if options.UID && !s.srv.o.UIDLast {
		rw.WriteUID(it.uid)
	}
	if options.UID && s.srv.o.UIDLast {
		defer rw.WriteUID(it.uid) // before rw.Close, deferred earlier
	}
	if options.Flags || it.flagsForced {
		rw.WriteFlags(it.flags)
	}
	if options.InternalDate {
		rw.WriteInternalDate(it.m.date)
	}
	if options.RFC822Size {
		rw.WriteRFC822Size(int64(len(body)))
	}
	if options.Envelope {
		rw.WriteEnvelope(imapserver.ExtractEnvelope(readHeader(body)))
	}
	if options.BodyStructure != nil {
		rw.WriteBodyStructure(bodyStructure(body))
	}
	for _, bs := range options.BodySection {
		data := sectionBytes(body, bs)
		s.fetchHook(it, mailbox, bs, int64(len(data)))
		if err := writeLiteral(rw.WriteBodySection(bs, int64(len(data))), data); err != nil {
			return err
		}
	}
	for _, bs := range options.BinarySection {
		data := safeExtract(func() []byte { return imapserver.ExtractBinarySection(bytes.NewReader(body), bs) })
		s.fetchHook(it, mailbox, nil, int64(len(data)))
		if err := writeLiteral(rw.WriteBinarySection(bs, int64(len(data))), data); err != nil {
			return err
		}
	}
	for _, bss := range options.BinarySectionSize {
		n := safeExtract(func() []byte {
			return imapserver.ExtractBinarySection(bytes.NewReader(body), &imap.FetchItemBinarySection{Part: bss.Part})
		})
		rw.WriteBinarySectionSize(bss, uint32(len(n)))
	}
	return nil
}

// fetchHook asks the Fetch hook about a section and arms a cut.
func (s *session) fetchHook(it fetched, mailbox string, bs *imap.FetchItemBodySection, size int64) {
	h := s.srv.o.Hooks.Fetch
	if h == nil {
		return
	}
	act := h(FetchEvent{Conn: s.wire.id, User: s.user.name, Mailbox: mailbox, UID: it.uid, Section: bs, Size: size})
	if act.Cut {
		s.wire.armCut(it.cseq, size, act.After, act.Reset)
	}
}

func writeLiteral(wc io.WriteCloser, data []byte) error {
	_, err := wc.Write(data)
	if cerr := wc.Close(); err == nil {
		err = cerr
	}
	return err
}

// sectionBytes extracts a body section. The whole message, its header and
// its text are cut from the stored bytes as they are (imapserver's
// ExtractBodySection re-serialises the header, which would change bytes);
// parts and header field selections go through ExtractBodySection.
func sectionBytes(body []byte, bs *imap.FetchItemBodySection) []byte {
	if len(bs.Part) == 0 && len(bs.HeaderFields) == 0 && len(bs.HeaderFieldsNot) == 0 {
		h := headerEnd(body)
		switch bs.Specifier {
		case imap.PartSpecifierNone:
			return partial(body, bs.Partial)
		case imap.PartSpecifierHeader:
			return partial(body[:h], bs.Partial)
		case imap.PartSpecifierText:
			return partial(body[h:], bs.Partial)
		}
	}
	return safeExtract(func() []byte { return imapserver.ExtractBodySection(bytes.NewReader(body), bs) })
}

func partial(b []byte, p *imap.SectionPartial) []byte {
	if p == nil {
		return b
	}
	if p.Offset > int64(len(b)) {
		return nil
	}
	end := min(p.Offset+p.Size, int64(len(b)))
	return b[p.Offset:end]
}

// headerEnd is the length of the header including the blank line that ends
// it (CRLF or bare LF), or len(b) if there is none.
func headerEnd(b []byte) int {
	if bytes.HasPrefix(b, []byte("\r\n")) {
		return 2
	}
	if bytes.HasPrefix(b, []byte("\n")) {
		return 1
	}
	for i := 0; i < len(b); i++ {
		if b[i] != '\n' {
			continue
		}
		if i+1 < len(b) && b[i+1] == '\n' {
			return i + 2
		}
		if i+2 < len(b) && b[i+1] == '\r' && b[i+2] == '\n' {
			return i + 3
		}
	}
	return len(b)
}

// safeExtract runs one of imapserver's extractors, which parse the message
// with go-message: a hostile message must not take the connection down.
func safeExtract(f func() []byte) (b []byte) {
	defer func() {
		if recover() != nil {
			b = nil
		}
	}()
	return f()
}

func readHeader(body []byte) textproto.Header {
	h, err := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(body)))
	if err != nil {
		return textproto.Header{}
	}
	return h
}

// bodyStructure is imapserver's, made safe to write: imapserver panics on a
// multipart without parts (a message whose boundary never appears).
func bodyStructure(body []byte) (bs imap.BodyStructure) {
	plain := &imap.BodyStructureSinglePart{
		Type: "text", Subtype: "plain", Size: uint32(len(body)),
		Text:     &imap.BodyStructureText{NumLines: int64(bytes.Count(body, []byte("\n")))},
		Extended: &imap.BodyStructureSinglePartExt{},
	}
	defer func() {
		if recover() != nil {
			bs = plain
		}
	}()
	bs = imapserver.ExtractBodyStructure(bytes.NewReader(body))
	if !fixBodyStructure(bs) {
		return plain
	}
	return bs
}

// fixBodyStructure reports whether bs can be written as it is.
func fixBodyStructure(bs imap.BodyStructure) bool {
	switch bs := bs.(type) {
	case *imap.BodyStructureMultiPart:
		if len(bs.Children) == 0 || bs.Extended == nil {
			return false
		}
		for _, c := range bs.Children {
			if !fixBodyStructure(c) {
				return false
			}
		}
	case *imap.BodyStructureSinglePart:
		if bs.Extended == nil {
			return false
		}
		if bs.MessageRFC822 != nil && !fixBodyStructure(bs.MessageRFC822.BodyStructure) {
			return false
		}
	default:
		return false
	}
	return true
}

func (s *session) Search(kind imapserver.NumKind, criteria *imap.SearchCriteria, options *imap.SearchOptions) (*imap.SearchData, error) {
	s.srv.mu.Lock()
	defer s.srv.mu.Unlock()
	ctx := searchCtx{maxSeq: s.clientCountLocked(), maxUID: s.maxUIDLocked()}
	var (
		data   imap.SearchData
		uidSet imap.UIDSet
		seqSet imap.SeqSet
	)
	for i, m := range s.sel.msgs {
		cseq := s.view.EncodeSeqNum(uint32(i + 1))
		if kind == imapserver.NumKindSeq && cseq == 0 {
			continue
		}
		if !ctx.match(m, cseq, criteria) {
			continue
		}
		num := cseq
		if kind == imapserver.NumKindUID {
			num = uint32(m.uid)
			uidSet.AddNum(m.uid)
		} else {
			seqSet.AddNum(cseq)
		}
		if data.Min == 0 || num < data.Min {
			data.Min = num
		}
		data.Max = max(data.Max, num)
		data.Count++
	}
	if kind == imapserver.NumKindUID {
		data.All = uidSet
	} else {
		data.All = seqSet
	}
	return &data, nil
}

func (s *session) Store(w *imapserver.FetchWriter, numSet imap.NumSet, flags *imap.StoreFlags, options *imap.StoreOptions) error {
	if s.readOnly {
		return no(imap.ResponseCodeCannot, "Mailbox is read-only (EXAMINE)")
	}
	want := s.srv.permitted(flags.Flags)
	_, byUID := numSet.(imap.UIDSet)
	var items []fetched
	s.srv.mu.Lock()
	f := s.sel
	s.forEachLocked(numSet, func(seq, cseq uint32, m *message) {
		var nf []imap.Flag
		switch flags.Op {
		case imap.StoreFlagsSet:
			nf = append([]imap.Flag(nil), want...)
		case imap.StoreFlagsAdd:
			nf = dedupFlags(append(append([]imap.Flag(nil), m.flags...), want...))
		case imap.StoreFlagsDel:
			for _, fl := range m.flags {
				if !hasFlag(want, fl) {
					nf = append(nf, fl)
				}
			}
		}
		if !sameFlags(nf, m.flags) {
			m.flags = nf
			f.tracker.QueueMessageFlags(seq, m.uid, append([]imap.Flag(nil), nf...), s.view)
		}
		if !flags.Silent && cseq != 0 {
			items = append(items, fetched{cseq: cseq, uid: m.uid, flags: append([]imap.Flag(nil), m.flags...), m: m})
		}
	})
	s.srv.mu.Unlock()
	for _, it := range items {
		if err := s.writeFetch(w, it, &imap.FetchOptions{UID: byUID, Flags: true}, ""); err != nil {
			return fmt.Errorf("fakeimap: write STORE response: %w", err)
		}
	}
	return nil
}

func sameFlags(a, b []imap.Flag) bool {
	if len(a) != len(b) {
		return false
	}
	for _, f := range a {
		if !hasFlag(b, f) {
			return false
		}
	}
	return true
}

// Expunge removes \Deleted messages (among uids, if given). The EXPUNGE
// responses reach this session through its tracker, in the Poll imapserver
// runs after the command (none after CLOSE, which unselects first).
func (s *session) Expunge(w *imapserver.ExpungeWriter, uids *imap.UIDSet) error {
	if s.readOnly {
		if s.wire.command() == "CLOSE" {
			return nil // CLOSE of an EXAMINEd folder expunges nothing
		}
		return no(imap.ResponseCodeCannot, "Mailbox is read-only (EXAMINE)")
	}
	if uids != nil && s.srv.o.NoUIDPlus {
		return bad("UID EXPUNGE needs UIDPLUS, which this server lacks")
	}
	s.srv.mu.Lock()
	defer s.srv.mu.Unlock()
	var rs []numRange
	if uids != nil {
		rs = uidRanges(*uids, s.maxUIDLocked())
	}
	s.expungeLocked(s.sel, func(m *message) bool {
		return hasFlag(m.flags, imap.FlagDeleted) && (uids == nil || inRanges(rs, uint32(m.uid)))
	})
	return nil
}

// expungeLocked removes the messages of f that gone reports, highest
// sequence number first, telling every session.
func (s *session) expungeLocked(f *folder, gone func(*message) bool) {
	for i := len(f.msgs) - 1; i >= 0; i-- {
		if gone(f.msgs[i]) {
			f.msgs = append(f.msgs[:i], f.msgs[i+1:]...)
			f.tracker.QueueExpunge(uint32(i + 1))
		}
	}
}

func (s *session) Copy(numSet imap.NumSet, dest string) (*imap.CopyData, error) {
	s.srv.mu.Lock()
	defer s.srv.mu.Unlock()
	data, _, err := s.copyLocked(numSet, dest)
	return data, err
}

// copyLocked copies the messages of numSet to dest and returns COPYUID
// data (nil without UIDPLUS or when nothing was copied) and the copied
// source messages.
func (s *session) copyLocked(numSet imap.NumSet, dest string) (*imap.CopyData, map[*message]bool, error) {
	d := s.srv.folderLocked(s.user, dest)
	if d == nil || d.noselect {
		return nil, nil, no(imap.ResponseCodeTryCreate, "Mailbox does not exist")
	}
	if d == s.sel {
		return nil, nil, no(imap.ResponseCodeCannot, "Source and destination are the same mailbox")
	}
	var src, dst imap.UIDSet
	copied := map[*message]bool{}
	s.forEachLocked(numSet, func(seq, cseq uint32, m *message) {
		uid := s.srv.appendLocked(d, m.body, s.srv.permitted(m.flags), m.date)
		src.AddNum(m.uid)
		dst.AddNum(uid)
		copied[m] = true
	})
	if len(copied) == 0 || s.srv.o.NoUIDPlus {
		return nil, copied, nil
	}
	return &imap.CopyData{UIDValidity: d.uidValidity, SourceUIDs: src, DestUIDs: dst}, copied, nil
}

func (s *session) Move(w *imapserver.MoveWriter, numSet imap.NumSet, dest string) error {
	if s.readOnly {
		return no(imap.ResponseCodeCannot, "Mailbox is read-only (EXAMINE)")
	}
	s.srv.mu.Lock()
	data, copied, err := s.copyLocked(numSet, dest)
	if err == nil {
		s.expungeLocked(s.sel, func(m *message) bool { return copied[m] })
	}
	s.srv.mu.Unlock()
	if err != nil {
		return err
	}
	if data != nil {
		return w.WriteCopyData(data)
	}
	return nil
}
