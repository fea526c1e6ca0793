package fakeimap

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
)

// session is one connection's imapserver.Session: the not-authenticated
// and authenticated states here, the selected state in selected.go.
// imapserver calls its methods on the connection's goroutine, one at a
// time.
type session struct {
	srv  *Server
	wire *wireConn
	user *user

	sel      *folder // selected folder, or nil
	readOnly bool
	view     *imapserver.SessionTracker
}

// Session types by optional interface: imapserver detects NAMESPACE and
// APPENDLIMIT support by the session's type.
type (
	sessionNS   struct{ *session }
	sessionAL   struct{ *session }
	sessionNSAL struct{ *session }
)

func (s sessionNS) Namespace() (*imap.NamespaceData, error)   { return s.namespace() }
func (s sessionNSAL) Namespace() (*imap.NamespaceData, error) { return s.namespace() }
func (s sessionAL) AppendLimit() uint32                       { return s.appendLimit() }
func (s sessionNSAL) AppendLimit() uint32                     { return s.appendLimit() }

var (
	_ imapserver.SessionMove        = (*session)(nil)
	_ imapserver.SessionNamespace   = sessionNS{}
	_ imapserver.SessionAppendLimit = sessionAL{}
	_ imapserver.SessionNamespace   = sessionNSAL{}
	_ imapserver.SessionAppendLimit = sessionNSAL{}
)

func (s *session) namespace() (*imap.NamespaceData, error) {
	return &imap.NamespaceData{Personal: []imap.NamespaceDescriptor{{Prefix: s.srv.o.Prefix, Delim: s.srv.delim}}}, nil
}

func (s *session) appendLimit() uint32 {
	return uint32(min(s.srv.o.AppendLimit, 1<<32-1))
}

func no(code imap.ResponseCode, format string, args ...any) *imap.Error {
	return &imap.Error{Type: imap.StatusResponseTypeNo, Code: code, Text: fmt.Sprintf(format, args...)}
}

func bad(format string, args ...any) *imap.Error {
	return &imap.Error{Type: imap.StatusResponseTypeBad, Text: fmt.Sprintf(format, args...)}
}

// Close is called by imapserver when the connection ends; it is the last
// call of the connection's goroutine into the session.
func (s *session) Close() error {
	s.closeView()
	s.srv.untrack(s.wire)
	s.srv.wg.Done()
	return nil
}

func (s *session) closeView() {
	if s.view != nil {
		s.view.Close()
	}
	s.sel, s.view = nil, nil
}

func (s *session) Login(username, password string) error {
	s.srv.mu.Lock()
	defer s.srv.mu.Unlock()
	u := s.srv.users[username]
	if u == nil || u.password != password {
		return imapserver.ErrAuthFailed
	}
	s.user = u
	s.wire.setUser(username)
	return nil
}

// folder finds a folder by the name a client sent, or returns the NO a
// server gives.
func (s *session) folderLocked(name string) (*folder, error) {
	f := s.srv.folderLocked(s.user, name)
	if f == nil {
		return nil, no(imap.ResponseCodeNonExistent, "Mailbox does not exist")
	}
	return f, nil
}

func (s *session) Select(name string, options *imap.SelectOptions) (*imap.SelectData, error) {
	s.closeView()
	s.srv.mu.Lock()
	defer s.srv.mu.Unlock()
	f, err := s.folderLocked(name)
	if err != nil {
		return nil, err
	}
	if f.noselect {
		return nil, no(imap.ResponseCodeCannot, "Mailbox is \\Noselect")
	}
	s.sel, s.readOnly, s.view = f, options.ReadOnly, f.tracker.NewSession()
	data := &imap.SelectData{
		Flags:       folderFlags(f),
		NumMessages: uint32(len(f.msgs)),
		UIDNext:     f.uidNext,
		UIDValidity: f.uidValidity,
	}
	if !s.readOnly {
		data.PermanentFlags = s.srv.permanent
	} else {
		data.PermanentFlags = []imap.Flag{}
	}
	for i, m := range f.msgs {
		if !hasFlag(m.flags, imap.FlagSeen) {
			data.FirstUnseenSeqNum = uint32(i + 1)
			break
		}
	}
	return data, nil
}

// folderFlags is the FLAGS of a folder: system flags and keywords in use,
// in time linear in the flags of its messages (thousands per message in
// some tests).
func folderFlags(f *folder) []imap.Flag {
	flags := []imap.Flag{imap.FlagSeen, imap.FlagAnswered, imap.FlagFlagged, imap.FlagDeleted, imap.FlagDraft}
	seen := map[string]bool{`\recent`: true}
	for _, fl := range flags {
		seen[strings.ToLower(string(fl))] = true
	}
	for _, m := range f.msgs {
		for _, fl := range m.flags {
			if k := strings.ToLower(string(fl)); !seen[k] {
				seen[k] = true
				flags = append(flags, fl)
			}
		}
	}
	return flags
}

func (s *session) Unselect() error {
	s.closeView()
	return nil
}

func (s *session) Create(name string, options *imap.CreateOptions) error {
	o := s.srv.o
	if len(options.SpecialUse) > 0 && o.NoSpecialUse {
		return bad("CREATE parameters are not supported")
	}
	for _, a := range options.SpecialUse {
		switch a {
		case imap.MailboxAttrAll, imap.MailboxAttrArchive, imap.MailboxAttrDrafts, imap.MailboxAttrFlagged,
			imap.MailboxAttrJunk, imap.MailboxAttrSent, imap.MailboxAttrTrash:
		default:
			return no(imap.ResponseCode("USEATTR"), "Unsupported special-use attribute %s", a)
		}
	}
	d := string(s.srv.delim)
	name = strings.TrimSuffix(name, d) // "a/" asks for a future parent: the same here
	if name == "" {
		return bad("Empty mailbox name")
	}
	name = s.srv.canon(name)
	if o.Prefix != "" && name != "INBOX" && !strings.HasPrefix(name, o.Prefix) {
		return no(imap.ResponseCodeCannot, "Mailbox name outside the personal namespace %q", o.Prefix)
	}
	if o.ForbiddenChars != "" && strings.ContainsAny(strings.ReplaceAll(name, d, ""), o.ForbiddenChars) {
		return no(imap.ResponseCodeCannot, "Character not allowed in mailbox name")
	}
	if strings.Contains(name, d+d) || strings.HasPrefix(name, d) {
		return no(imap.ResponseCodeCannot, "Invalid mailbox name")
	}
	s.srv.mu.Lock()
	defer s.srv.mu.Unlock()
	switch err := s.srv.createLocked(s.user, name, options.SpecialUse); err {
	case nil:
		// As Dovecot and Cyrus: CREATE does not subscribe (RFC 9051
		// 6.3.4); folders made by Server.Create are subscribed.
		if f := s.srv.folderLocked(s.user, name); f != nil {
			f.subscribed = false
		}
		return nil
	case errExists:
		return no(imap.ResponseCodeAlreadyExists, "Mailbox already exists")
	default:
		return no(imap.ResponseCodeCannot, "%v", err)
	}
}

func (s *session) Delete(name string) error {
	s.srv.mu.Lock()
	defer s.srv.mu.Unlock()
	f, err := s.folderLocked(name)
	if err != nil {
		return err
	}
	if f.name == "INBOX" {
		return no(imap.ResponseCodeCannot, "INBOX cannot be deleted")
	}
	prefix := f.visible + string(s.srv.delim)
	for k := range s.user.folders {
		if strings.HasPrefix(k, prefix) {
			if s.srv.o.NoSelectParents {
				f.noselect, f.msgs, f.specialUse, f.uidValidity = true, nil, nil, 0
				f.tracker = imapserver.NewMailboxTracker(0)
				return nil
			}
			return no(imap.ResponseCodeHasChildren, "Mailbox has children")
		}
	}
	delete(s.user.folders, f.visible)
	s.user.sorted = nil
	return nil
}

func (s *session) Rename(mailbox, newName string, options *imap.RenameOptions) error {
	return no(imap.ResponseCodeCannot, "RENAME is not supported by fakeimap")
}

func (s *session) Subscribe(name string) error   { return s.subscribe(name, true) }
func (s *session) Unsubscribe(name string) error { return s.subscribe(name, false) }

func (s *session) subscribe(name string, on bool) error {
	s.srv.mu.Lock()
	defer s.srv.mu.Unlock()
	f, err := s.folderLocked(name)
	if err != nil && s.srv.o.SubscribeAnyName {
		// A subscription list of names, as Cyrus, Courier and UW-IMAP
		// keep: a name without a folder may be subscribed too.
		if s.user.dangling == nil {
			s.user.dangling = map[string]bool{}
		}
		if on {
			s.user.dangling[name] = true
		} else {
			delete(s.user.dangling, name)
		}
		return nil
	}
	if err != nil {
		return err
	}
	f.subscribed = on
	return nil
}

// List answers LIST and LSUB. The folder list is snapshotted under the lock
// and written after it is released.
func (s *session) List(w *imapserver.ListWriter, ref string, patterns []string, options *imap.ListOptions) error {
	delim := s.srv.delim
	if len(patterns) == 0 { // LIST "" "": the hierarchy delimiter
		return w.WriteList(&imap.ListData{Attrs: []imap.MailboxAttr{imap.MailboxAttrNoSelect}, Delim: delim, Mailbox: ""})
	}
	specialUse := !s.srv.o.NoSpecialUse
	s.srv.mu.Lock()
	all := s.user.sortedLocked()
	hasChildren := make(map[*folder]bool)
	for _, f := range all {
		if i := strings.LastIndex(f.visible, string(delim)); i > 0 {
			if p := s.user.folders[f.visible[:i]]; p != nil {
				hasChildren[p] = true
			}
		}
	}
	var out []*imap.ListData
	for _, f := range all {
		matched := false
		for _, p := range patterns {
			if imapserver.MatchList(f.visible, delim, ref, p) {
				matched = true
				break
			}
		}
		if !matched || options.SelectSubscribed && !f.subscribed {
			continue
		}
		if options.SelectSpecialUse && (!specialUse || len(f.specialUse) == 0) {
			continue
		}
		d := &imap.ListData{Delim: delim, Mailbox: f.visible}
		if f.noselect {
			d.Attrs = append(d.Attrs, imap.MailboxAttrNoSelect)
		}
		if hasChildren[f] {
			d.Attrs = append(d.Attrs, imap.MailboxAttrHasChildren)
		} else {
			d.Attrs = append(d.Attrs, imap.MailboxAttrHasNoChildren)
		}
		if specialUse {
			d.Attrs = append(d.Attrs, f.specialUse...)
		}
		if options.ReturnSubscribed && f.subscribed {
			d.Attrs = append(d.Attrs, imap.MailboxAttrSubscribed)
		}
		if options.ReturnStatus != nil && !f.noselect {
			d.Status = s.statusLocked(f, options.ReturnStatus)
		}
		out = append(out, d)
	}
	s.srv.mu.Unlock()
	for _, d := range out {
		if err := w.WriteList(d); err != nil {
			return err
		}
	}
	return nil
}

func (s *session) Status(name string, options *imap.StatusOptions) (*imap.StatusData, error) {
	s.srv.mu.Lock()
	defer s.srv.mu.Unlock()
	f, err := s.folderLocked(name)
	if err != nil {
		return nil, err
	}
	if f.noselect {
		return nil, no(imap.ResponseCodeCannot, "Mailbox is \\Noselect")
	}
	return s.statusLocked(f, options), nil
}

// statusLocked fills every item imapserver will write (it dereferences them).
func (s *session) statusLocked(f *folder, o *imap.StatusOptions) *imap.StatusData {
	d := &imap.StatusData{Mailbox: f.visible, UIDNext: f.uidNext, UIDValidity: f.uidValidity}
	var messages, unseen, deleted, recent uint32
	var size, deletedSize int64
	for _, m := range f.msgs {
		messages++
		size += int64(len(m.body))
		if !hasFlag(m.flags, imap.FlagSeen) {
			unseen++
		}
		if hasFlag(m.flags, imap.FlagDeleted) {
			deleted++
			deletedSize += int64(len(m.body))
		}
	}
	d.NumMessages, d.NumUnseen, d.NumDeleted, d.NumRecent = &messages, &unseen, &deleted, &recent
	d.Size, d.DeletedStorage = &size, &deletedSize
	if o.AppendLimit && s.srv.o.AppendLimit > 0 {
		l := s.appendLimit()
		d.AppendLimit = &l
	}
	return d
}

// Append stores an APPENDed message, through the knobs and the Append hook.
func (s *session) Append(name string, r imap.LiteralReader, options *imap.AppendOptions) (*imap.AppendData, error) {
	body, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("fakeimap: read APPEND literal: %w", err)
	}
	o := s.srv.o
	if o.RefuseBareLF && hasBareLF(body) {
		return nil, no("", "Message contains bare newlines")
	}
	if o.RefuseNUL && bytes.IndexByte(body, 0) >= 0 {
		return nil, no("", "Message contains NUL characters")
	}
	flags := s.srv.permitted(options.Flags)
	date := options.Time
	if date.IsZero() {
		date = s.srv.now().Truncate(time.Second)
	}
	s.srv.mu.Lock()
	f, err := s.folderLocked(name)
	if err == nil && f.noselect {
		err = no(imap.ResponseCodeCannot, "Mailbox is \\Noselect")
	}
	s.srv.mu.Unlock()
	if err != nil {
		if e, ok := err.(*imap.Error); ok && e.Code == imap.ResponseCodeNonExistent {
			e.Code = imap.ResponseCodeTryCreate
		}
		return nil, err
	}

	var act AppendAction
	if h := o.Hooks.Append; h != nil {
		act = h(AppendEvent{Conn: s.wire.id, User: s.user.name, Mailbox: name, Body: body, Flags: flags, Date: date})
		if act.Refuse != nil {
			return nil, act.Refuse
		}
		if act.StoreAfterDisconnect {
			s.srv.logf("conn %d: APPEND held until the client is gone", s.wire.id)
			s.wire.waitGone()
			s.srv.logf("conn %d: client gone; storing the held APPEND in %v", s.wire.id, act.Delay)
		}
		if act.Delay > 0 {
			select {
			case <-time.After(act.Delay):
			case <-s.srv.done:
			}
		}
		select {
		case <-s.srv.done:
			err := fmt.Errorf("fakeimap: server stopped before the APPEND was stored")
			if act.Stored != nil {
				act.Stored(0, err)
			}
			return nil, err
		default:
		}
	}

	s.srv.mu.Lock()
	f = s.srv.folderLocked(s.user, name) // it may have gone while we waited
	var uid imap.UID
	if f == nil || f.noselect {
		err = no(imap.ResponseCodeTryCreate, "Mailbox does not exist")
	} else {
		uid = s.srv.appendLocked(f, body, flags, date)
	}
	var uidValidity uint32
	if f != nil {
		uidValidity = f.uidValidity
	}
	s.srv.mu.Unlock()
	if act.Stored != nil {
		act.Stored(uid, err)
	}
	if err != nil {
		return nil, err
	}
	if act.StoreAfterDisconnect || act.DropAfterStore {
		s.wire.kill(false)
		return nil, no("", "connection gone")
	}
	if o.NoUIDPlus {
		return nil, nil
	}
	return &imap.AppendData{UID: uid, UIDValidity: uidValidity}, nil
}

// hasBareLF reports a LF not preceded by CR.
func hasBareLF(b []byte) bool {
	for i, c := range b {
		if c == '\n' && (i == 0 || b[i-1] != '\r') {
			return true
		}
	}
	return false
}

func (s *session) Poll(w *imapserver.UpdateWriter, allowExpunge bool) error {
	if s.view == nil {
		return nil
	}
	return s.view.Poll(w, allowExpunge)
}

func (s *session) Idle(w *imapserver.UpdateWriter, stop <-chan struct{}) error {
	if s.view == nil {
		<-stop
		return nil
	}
	return s.view.Idle(w, stop)
}
