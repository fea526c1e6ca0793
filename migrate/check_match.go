package migrate

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"golang.org/x/sync/errgroup"
)

// The decisions of Check (see check.go): the checkpoint's records, then
// fingerprints, then content; extras; flags and dates; where missing
// messages went.

// compare decides one group.
func (c *checker) compare(ctx context.Context, g *checkGroup, sl, dl sideListing) error {
	var src, dst []*citem
	for i, fc := range g.fcs {
		c.emit(CheckEvent{Kind: CheckFolderStart, Folder: fc.Name, Dest: g.dest})
		if err := sl.errs[i]; err != nil {
			fc.Error = err.Error()
		}
		for _, it := range sl.items[i] {
			it.fc = fc
			fc.Source++
			if why := c.o.filter(it.m); why != "" {
				it.filtered = why
				fc.Filtered++
			}
			src = append(src, it)
		}
	}
	if len(dl.items) > 0 {
		dst = dl.items[0]
		if err := dl.errs[0]; err != nil {
			// Nothing of this folder can be checked.
			for _, it := range src {
				it.skip = fmt.Errorf("destination folder %q could not be read: %w", g.dest, err)
			}
			for _, fc := range g.fcs {
				fc.Error = fmt.Sprintf("destination folder %q could not be read: %v", g.dest, err)
			}
			dst = nil
		}
	}
	for _, it := range dst {
		m := it.m
		m.Expunged = false
		it.outside = c.o.filter(m) != ""
	}
	if err := c.matchCheckpoint(g, src, dst); err != nil {
		return err
	}
	if err := c.prepareKeys(ctx, src, dst); err != nil {
		return err
	}
	if err := c.matchFingerprint(ctx, src, dst); err != nil {
		return err
	}
	matchDedupe(src, dst)
	if err := c.classifyExtras(ctx, g, src, dst); err != nil {
		return err
	}
	return c.finish(ctx, g, src, dst)
}

// matchCheckpoint pairs the source messages the checkpoint records as
// copied with their recorded copies, when those are still there.
func (c *checker) matchCheckpoint(g *checkGroup, src, dst []*citem) error {
	if c.o.Checkpoint == nil || len(src) == 0 {
		return nil
	}
	byID := map[string]*citem{}
	epoch := ""
	if g.dmb != nil {
		epoch = g.dmb.Epoch
	}
	for _, d := range dst {
		byID[d.m.ID] = d
	}
	copies := map[string]map[string]Copy{} // source folder -> id -> copy
	epochs := map[string]string{}
	for _, mb := range g.srcs {
		epochs[mb.Name] = mb.Epoch
		m := map[string]Copy{}
		err := c.o.Checkpoint.Copies(mb.Name, mb.Epoch, func(cp Copy) error {
			m[cp.ID] = cp
			return nil
		})
		if err != nil {
			return fmt.Errorf("read checkpoint of folder %q: %w", mb.Name, err)
		}
		copies[mb.Name] = m
	}
	for _, s := range src {
		if s.skip != nil {
			continue
		}
		cp, ok := copies[s.m.Mailbox][s.m.ID]
		if !ok {
			continue
		}
		s.epoch = epochs[s.m.Mailbox]
		if normInbox(cp.Dest) != g.dest {
			s.note = fmt.Sprintf("the checkpoint records its copy in destination folder %q", cp.Dest)
			continue
		}
		if IsFound(cp.Ref) {
			// No copy of its own: matchDedupe, lookElsewhere.
			s.dedupe = true
			continue
		}
		ep, id := "", cp.Ref
		if c.o.Resolver != nil {
			if ep, id, ok = c.o.Resolver.RefCopy(cp.Dest, cp.Ref); !ok {
				continue // no particular copy recorded (--dedupe)
			}
		}
		if g.dmb == nil {
			s.note = fmt.Sprintf("the checkpoint records its copy %s, in a folder that no longer exists", cp.Ref)
			s.gone = true
			continue
		}
		if ep != epoch {
			s.note = fmt.Sprintf("the checkpoint records its copy %s, but the destination folder was re-created since (UIDVALIDITY %s)", cp.Ref, epoch)
			s.gone = true
			continue
		}
		d := byID[id]
		switch {
		case d == nil || d.peer != nil:
			s.note = fmt.Sprintf("the checkpoint records its copy %s, which no longer exists", cp.Ref)
			s.gone = true
			continue
		case recordedMID(s, cp) != "" && d.m.MessageID != "" && recordedMID(s, cp) != normMessageID(d.m.MessageID):
			s.note = fmt.Sprintf("the checkpoint records its copy %s, which now holds another message", cp.Ref)
			continue
		case d.m.Size >= 0 && !(d.m.Size == cp.Size || (c.crlf && d.m.Size > cp.Size && d.m.Size <= 2*cp.Size)):
			s.note = fmt.Sprintf("the checkpoint records its copy %s, which has another size (%d bytes, the source %d)", cp.Ref, d.m.Size, cp.Size)
			continue
		}
		pair(s, d, MatchCheckpoint)
	}
	return nil
}

// matchDedupe pairs each source message the checkpoint records as found
// already in the destination by --dedupe, and that is still unmatched, with
// an unmatched destination message of its Message-ID (rule 3 of Check).
func matchDedupe(src, dst []*citem) {
	var byMID map[string][]*citem
	for _, s := range src {
		if !s.dedupe || s.peer != nil || s.skip != nil || !s.midKnown || s.mid == "" {
			continue
		}
		if byMID == nil {
			byMID = map[string][]*citem{}
			for _, d := range dst {
				if d.peer == nil && d.skip == nil && d.midKnown && d.mid != "" {
					byMID[d.mid] = append(byMID[d.mid], d)
				}
			}
		}
		if ds := byMID[s.mid]; len(ds) > 0 {
			pair(s, ds[0], MatchDedupe)
			byMID[s.mid] = ds[1:]
		}
	}
}

// recordedMID is the Message-ID of s as listed, else as the checkpoint
// recorded it when the message was copied.
func recordedMID(s *citem, cp Copy) string {
	if s.m.MessageID != "" {
		return normMessageID(s.m.MessageID)
	}
	return normMessageID(cp.MessageID)
}

// unmatched returns the items of l that are still to be decided.
func unmatched(l []*citem) []*citem {
	var out []*citem
	for _, it := range l {
		if it.peer == nil && it.skip == nil {
			out = append(out, it)
		}
	}
	return out
}

// prepareKeys makes the fingerprint (Message-ID and stored size) of every
// undecided message known: headers where the side does not list
// Message-IDs, a full read where the stored size is unknown (a local
// source checked against a CRLF destination).
func (c *checker) prepareKeys(ctx context.Context, src, dst []*citem) error {
	ud := unmatched(dst)
	if len(ud) == 0 {
		return nil // everything undecided is missing: no key needed
	}
	us := unmatched(src)
	var sHdr, sRead, dHdr, dRead []*citem
	for _, it := range us {
		switch {
		case it.stored < 0:
			sRead = append(sRead, it)
		case !it.midKnown:
			sHdr = append(sHdr, it)
		}
	}
	for _, it := range ud {
		switch {
		case it.stored < 0:
			dRead = append(dRead, it)
		case !it.midKnown:
			dHdr = append(dHdr, it)
		}
	}
	eg, gctx := errgroup.WithContext(ctx)
	eg.Go(func() error {
		if err := c.headers(gctx, false, sHdr, true); err != nil {
			return err
		}
		return c.read(gctx, false, sRead, false, true)
	})
	eg.Go(func() error {
		if err := c.headers(gctx, true, dHdr, true); err != nil {
			return err
		}
		return c.read(gctx, true, dRead, false, true)
	})
	return eg.Wait()
}

type bucket struct{ s, d []*citem }

// matchFingerprint pairs undecided messages by Message-ID and stored
// size, deciding ambiguous cases (and every message without a Message-ID)
// by the hash of the stored form.
func (c *checker) matchFingerprint(ctx context.Context, src, dst []*citem) error {
	us, ud := unmatched(src), unmatched(dst)
	if len(us) == 0 || len(ud) == 0 {
		return nil
	}
	byMID := map[string]*bucket{}
	bySize := map[int64]*bucket{}
	var mids []string
	var sizes []int64
	add := func(it *citem, dest bool) {
		if !it.midKnown || it.stored < 0 {
			return
		}
		var b *bucket
		if it.mid != "" {
			if b = byMID[it.mid]; b == nil {
				b = &bucket{}
				byMID[it.mid] = b
				mids = append(mids, it.mid)
			}
		} else {
			if b = bySize[it.stored]; b == nil {
				b = &bucket{}
				bySize[it.stored] = b
				sizes = append(sizes, it.stored)
			}
		}
		if dest {
			b.d = append(b.d, it)
		} else {
			b.s = append(b.s, it)
		}
	}
	for _, it := range us {
		add(it, false)
	}
	for _, it := range ud {
		add(it, true)
	}
	var ambiguous []*bucket
	for _, mid := range mids {
		b := byMID[mid]
		if len(b.s) == 0 || len(b.d) == 0 {
			continue
		}
		// Sizes that pair off one to one are matched; the rest is
		// decided by content.
		count := map[int64][2]int{}
		for _, it := range b.s {
			n := count[it.stored]
			n[0]++
			count[it.stored] = n
		}
		for _, it := range b.d {
			n := count[it.stored]
			n[1]++
			count[it.stored] = n
		}
		var rest bucket
		for _, s := range b.s {
			if count[s.stored] != [2]int{1, 1} {
				rest.s = append(rest.s, s)
				continue
			}
			for _, d := range b.d {
				if d.stored == s.stored && d.peer == nil {
					pair(s, d, MatchFingerprint)
					break
				}
			}
		}
		for _, d := range b.d {
			if d.peer == nil {
				rest.d = append(rest.d, d)
			}
		}
		if len(rest.s) > 0 && len(rest.d) > 0 {
			ambiguous = append(ambiguous, &rest)
		}
	}
	for _, size := range sizes {
		if b := bySize[size]; len(b.s) > 0 && len(b.d) > 0 {
			ambiguous = append(ambiguous, b)
		}
	}
	if len(ambiguous) == 0 {
		return nil
	}
	var hs, hd []*citem
	for _, b := range ambiguous {
		hs = append(hs, b.s...)
		hd = append(hd, b.d...)
	}
	if err := c.hashAll(ctx, hs, hd); err != nil {
		return err
	}
	for _, b := range ambiguous {
		bySum := map[string][]*citem{}
		for _, d := range b.d {
			if d.sum != "" {
				bySum[d.sum] = append(bySum[d.sum], d)
			}
		}
		for _, s := range b.s {
			if l := bySum[s.sum]; s.sum != "" && len(l) > 0 {
				// Identical copies: the one whose date and flags are the
				// source's is its copy, the others are duplicates.
				k := 0
				for i, d := range l {
					if likeness(s, d) > likeness(s, l[k]) {
						k = i
					}
				}
				pair(s, l[k], MatchContent)
				bySum[s.sum] = append(l[:k:k], l[k+1:]...)
			}
		}
	}
	return nil
}

// likeness scores how much d looks like the copy of s beyond its
// content: same internal date (to the second), same flags.
func likeness(s, d *citem) int {
	n := 0
	if s.m.Date.Unix() == d.m.Date.Unix() {
		n += 2
	}
	if lost, added, _ := diffFlags(s.m.Flags, d.m.Flags, nil); len(lost)+len(added) == 0 {
		n++
	}
	return n
}

// hashAll computes the stored-form hash of source items hs and
// destination items hd, both sides at once.
func (c *checker) hashAll(ctx context.Context, hs, hd []*citem) error {
	eg, gctx := errgroup.WithContext(ctx)
	eg.Go(func() error { return c.read(gctx, false, hs, true, true) })
	eg.Go(func() error { return c.read(gctx, true, hd, true, true) })
	return eg.Wait()
}

// classifyExtras gives every destination message no source message claimed
// its verdict: a duplicate of a matched copy, or an extra message.
func (c *checker) classifyExtras(ctx context.Context, g *checkGroup, src, dst []*citem) error {
	var extras []*citem
	for _, d := range dst {
		if d.peer == nil && d.skip == nil && !d.outside {
			extras = append(extras, d)
		}
	}
	if len(extras) == 0 {
		return nil
	}
	// Extras are told apart by what the copies (and the source messages)
	// are: every destination message needs its Message-ID now.
	var need []*citem
	for _, d := range dst {
		if !d.midKnown && d.skip == nil {
			need = append(need, d)
		}
	}
	if err := c.headers(ctx, true, need, false); err != nil {
		return err
	}
	byKey := map[string]*citem{}    // Message-ID + size of a matched copy -> that copy
	noMID := map[int64][]*citem{}   // size -> matched copies without Message-ID
	srcByMID := map[string]*citem{} // Message-ID -> a source message with it
	for _, d := range dst {
		if d.peer == nil || !d.midKnown {
			continue
		}
		if d.mid != "" {
			byKey[fmt.Sprintf("%s\x00%d", d.mid, d.m.Size)] = d
			srcByMID[d.mid] = d.peer
		} else {
			noMID[d.m.Size] = append(noMID[d.m.Size], d)
		}
	}
	for _, s := range src {
		if s.midKnown && s.mid != "" && srcByMID[s.mid] == nil {
			srcByMID[s.mid] = s
		}
	}
	// Extras without Message-ID of a matched copy's size: by content.
	var hx, hc []*citem
	seen := map[*citem]bool{}
	for _, x := range extras {
		if x.midKnown && x.mid == "" && len(noMID[x.m.Size]) > 0 {
			if x.sum == "" {
				hx = append(hx, x)
			}
			for _, d := range noMID[x.m.Size] {
				if d.sum == "" && !seen[d] {
					seen[d] = true
					hc = append(hc, d)
				}
			}
		}
	}
	if err := c.read(ctx, true, append(hx, hc...), true, false); err != nil {
		return err
	}
	for _, x := range extras {
		v := c.verdict(x, VerdictExtra, g)
		switch {
		case !x.midKnown:
			v.Reason = "not matched (its header could not be read)"
		case x.mid != "":
			if d := byKey[fmt.Sprintf("%s\x00%d", x.mid, x.m.Size)]; d != nil {
				v.Verdict = VerdictDuplicate
				v.SourceFolder, v.SourceID = d.peer.m.Mailbox, d.peer.m.ID
				v.Reason = fmt.Sprintf("message %s is a second copy of source message %s of %q, whose copy is message %s: same Message-ID and size", x.m.ID, d.peer.m.ID, d.peer.m.Mailbox, d.m.ID)
			} else if s := srcByMID[x.mid]; s != nil {
				v.Reason = fmt.Sprintf("same Message-ID as source message %s of %q, but another size or content", s.m.ID, s.m.Mailbox)
			} else {
				v.Reason = "no message of the source folders copied into this folder has this Message-ID"
			}
		default:
			v.Reason = "no Message-ID, and no message of the source folders copied into this folder has its size and content"
			for _, d := range noMID[x.m.Size] {
				if x.sum != "" && d.sum == x.sum {
					v.Verdict = VerdictDuplicate
					v.SourceFolder, v.SourceID = d.peer.m.Mailbox, d.peer.m.ID
					v.Reason = fmt.Sprintf("message %s is a second copy of source message %s of %q, whose copy is message %s: same content", x.m.ID, d.peer.m.ID, d.peer.m.Mailbox, d.m.ID)
					break
				}
			}
		}
		x.v, x.fc = v, g.fcs[0]
		if v.Verdict == VerdictDuplicate {
			g.fcs[0].Duplicate++
		} else {
			g.fcs[0].Extra++
			if x.mid != "" {
				c.extras[x.mid] = append(c.extras[x.mid], x)
			}
		}
		c.problems = append(c.problems, x)
	}
	return nil
}

func (c *checker) verdict(it *citem, kind string, g *checkGroup) *Verdict {
	v := &Verdict{Side: "source", Folder: it.m.Mailbox, ID: it.m.ID, Verdict: kind, How: it.how,
		Size: it.m.Size, Date: it.m.Date, MessageID: it.mid}
	if it.mid == "" {
		v.MessageID = normMessageID(it.m.MessageID)
	}
	if it.dest {
		v.Side, v.Folder = "destination", g.dest
	} else {
		v.Dest = g.dest
		if it.peer != nil {
			v.DestID = it.peer.m.ID
		}
	}
	return v
}

// finish decides what is left (missing, unreadable), compares the pairs'
// flags and dates, reads the headers shown for problems, and reports.
func (c *checker) finish(ctx context.Context, g *checkGroup, src, dst []*citem) error {
	// Keywords the destination folder keeps: those it holds on a message.
	kept := map[string]bool{}
	for _, d := range dst {
		for _, f := range d.m.Flags {
			if !strings.HasPrefix(f, `\`) {
				kept[strings.ToLower(f)] = true
			}
		}
	}
	notKept := map[*FolderCheck]map[string]bool{}
	var probs []*citem // messages whose verdict is listed as a problem
	for _, s := range src {
		fc := s.fc
		switch {
		case s.filtered != "":
			v := c.verdict(s, VerdictFiltered, g)
			v.Reason = s.filtered
			s.v = v
			c.emit(CheckEvent{Kind: CheckMessage, Verdict: v})
			continue
		case s.skip != nil:
			fc.Unreadable++
			s.v = c.verdict(s, VerdictUnreadable, g)
			s.v.Reason = s.skip.Error()
		case s.peer == nil:
			fc.Missing++
			s.v = c.verdict(s, VerdictMissing, g)
			// A message recorded as found (no copy of its own) whose
			// match is gone can be forgotten as a lost copy can: the next
			// copy then compares or copies it again.
			s.v.RecordGone, s.v.Epoch = s.gone || s.dedupe, s.epoch
			switch {
			case g.dmb == nil:
				s.v.Reason = fmt.Sprintf("destination folder %q does not exist", g.dest)
			case s.dedupe:
				s.v.Reason = fmt.Sprintf("the checkpoint records it as found in the destination (copied by something else, matched by Message-ID), but no message of destination folder %q with its Message-ID is left", g.dest)
			case s.note != "":
				s.v.Reason = s.note + "; no other copy matches"
			default:
				s.v.Reason = fmt.Sprintf("no message of destination folder %q matches", g.dest)
			}
		default:
			fc.Found++
			switch s.how {
			case MatchCheckpoint:
				fc.ByCheckpoint++
			case MatchContent:
				fc.ByContent++
			case MatchDedupe:
				fc.ByDedupe++
				s.v = c.verdict(s, VerdictFound, g)
				c.emit(CheckEvent{Kind: CheckMessage, Verdict: s.v})
				continue
			}
			v := c.verdict(s, VerdictFound, g)
			d := s.peer
			v.FlagsLost, v.FlagsAdded, v.NotKept = diffFlags(s.m.Flags, d.m.Flags, kept)
			// A copy dated as an earlier mailhaul dated the message
			// (Message.PriorDate) is not a difference.
			if !s.m.Date.IsZero() && !d.m.Date.IsZero() && s.m.Date.Unix() != d.m.Date.Unix() &&
				(s.m.PriorDate.IsZero() || s.m.PriorDate.Unix() != d.m.Date.Unix()) {
				v.DestDate = d.m.Date
				fc.DateDiff++
			}
			if len(v.FlagsLost)+len(v.FlagsAdded) > 0 {
				fc.FlagDiff++
			}
			for _, k := range v.NotKept {
				if notKept[fc] == nil {
					notKept[fc] = map[string]bool{}
				}
				notKept[fc][k] = true
			}
			s.v = v
			if !v.Differs() {
				c.emit(CheckEvent{Kind: CheckMessage, Verdict: v})
				continue
			}
		}
		c.problems = append(c.problems, s)
		probs = append(probs, s)
	}
	for fc, m := range notKept {
		for k := range m {
			fc.NotKept = append(fc.NotKept, k)
		}
		sort.Strings(fc.NotKept)
	}
	for _, d := range dst {
		if d.v != nil {
			probs = append(probs, d)
		}
	}
	// The header fields shown for each problem.
	var hs, hd []*citem
	for _, it := range probs {
		if it.hdr == nil && it.dest {
			hd = append(hd, it)
		} else if it.hdr == nil {
			hs = append(hs, it)
		}
	}
	eg, gctx := errgroup.WithContext(ctx)
	eg.Go(func() error { return c.headers(gctx, false, hs, false) })
	eg.Go(func() error { return c.headers(gctx, true, hd, false) })
	if err := eg.Wait(); err != nil {
		return err
	}
	for _, it := range probs {
		it.v.From, it.v.Subject = displayFields(it.hdr)
		if it.v.MessageID == "" && it.midKnown {
			it.v.MessageID = it.mid
		}
		if !it.dest && it.v.Verdict == VerdictMissing && it.mid != "" {
			c.missing[it.mid] = append(c.missing[it.mid], it)
		}
	}
	for _, fc := range g.fcs {
		c.emit(CheckEvent{Kind: CheckFolderDone, Folder: fc.Name, Dest: g.dest, Result: fc})
	}
	return nil
}

// lookElsewhere names, for missing messages, a destination folder that
// holds a message with their Message-ID (and stored size, when known): an
// extra message of another folder (moved there), or a message of a
// destination folder no source folder maps to (a renamed folder). Then it
// reports every problem.
func (c *checker) lookElsewhere(ctx context.Context) error {
	fits := func(s, d *citem) bool { return s.dedupe || s.stored < 0 || d.stored < 0 || s.stored == d.stored }
	open := 0
	for mid, ms := range c.missing {
		for _, s := range ms {
			for _, x := range c.extras[mid] {
				if x.claimed || !fits(s, x) {
					continue
				}
				if s.dedupe {
					// --dedupe-across-folders found it in another folder.
					x.claimed = true
					x.fc.Extra--
					c.dedupeFound(s, x.v.Folder, x.m.ID)
					break
				}
				s.v.Elsewhere = x.v.Folder
				x.v.Reason = fmt.Sprintf("a copy of source message %s of %q, which is missing from %q (moved?)", s.m.ID, s.m.Mailbox, s.v.Dest)
				break
			}
			if s.v.Elsewhere == "" && s.v.Verdict == VerdictMissing {
				open++
			}
		}
	}
	moved := map[string]int{}
	var order []string
	for _, mb := range c.unmapped {
		if open == 0 {
			break
		}
		items, err := c.list(ctx, mb, true)
		if err != nil {
			if Classify(err) != Skip || ctx.Err() != nil {
				return err
			}
			continue
		}
		var need []*citem
		for _, it := range items {
			if !it.midKnown {
				need = append(need, it)
			}
		}
		if err := c.headers(ctx, true, need, false); err != nil {
			return err
		}
		name := storeName(c.o.Dest, mb)
		for _, it := range items {
			if !it.midKnown || it.mid == "" {
				continue
			}
			for _, s := range c.missing[it.mid] {
				if s.v.Elsewhere == "" && s.v.Verdict == VerdictMissing && fits(s, it) {
					if s.dedupe {
						c.dedupeFound(s, name, it.m.ID)
						open--
						break
					}
					s.v.Elsewhere = name
					if moved[name] == 0 {
						order = append(order, name)
					}
					moved[name]++
					open--
					break
				}
			}
		}
	}
	for _, name := range order {
		c.warn(fmt.Errorf("%d missing message(s) are in destination folder %q, which no source folder maps to (a renamed folder, or moved there?)", moved[name], name))
	}
	kept := c.problems[:0]
	for _, it := range c.problems {
		if it.claimed || it.v.Verdict == VerdictFound && !it.v.Differs() {
			if !it.dest {
				c.emit(CheckEvent{Kind: CheckMessage, Verdict: it.v})
			}
			continue
		}
		kept = append(kept, it)
	}
	c.problems = kept
	sort.SliceStable(c.problems, func(i, j int) bool {
		a, b := c.problems[i].v, c.problems[j].v
		if a.Side != b.Side {
			return a.Side == "source"
		}
		return false
	})
	for _, it := range c.problems {
		c.emit(CheckEvent{Kind: CheckMessage, Verdict: it.v})
	}
	return nil
}

// dedupeFound turns missing source message s, which the checkpoint
// records as found already in the destination by --dedupe, into found: a
// message with its Message-ID is in destination folder folder (id).
func (c *checker) dedupeFound(s *citem, folder, id string) {
	s.fc.Missing--
	s.fc.Found++
	s.fc.ByDedupe++
	s.v.Verdict, s.v.How, s.v.Reason = VerdictFound, MatchDedupe, ""
	s.v.Dest, s.v.DestID = folder, id
}

func (c *checker) report() CheckReport {
	c.mu.Lock()
	defer c.mu.Unlock()
	r := CheckReport{Problems: []Verdict{}, Folders: []FolderCheck{}, Warnings: c.warnings}
	t := &r.Totals
	t.Name = "TOTAL"
	for _, f := range c.folders {
		r.Folders = append(r.Folders, *f)
		t.Source += f.Source
		t.Filtered += f.Filtered
		t.Found += f.Found
		t.ByCheckpoint += f.ByCheckpoint
		t.ByContent += f.ByContent
		t.ByDedupe += f.ByDedupe
		t.Missing += f.Missing
		t.Unreadable += f.Unreadable
		t.Extra += f.Extra
		t.Duplicate += f.Duplicate
		t.FlagDiff += f.FlagDiff
		t.DateDiff += f.DateDiff
	}
	for _, it := range c.problems {
		r.Problems = append(r.Problems, *it.v)
	}
	for _, mb := range c.unmapped {
		r.Unmapped = append(r.Unmapped, storeName(c.o.Dest, mb))
	}
	return r
}

// systemFlags are compared whatever the destination: every store keeps
// them.
var systemFlags = map[string]string{`\seen`: `\Seen`, `\answered`: `\Answered`, `\flagged`: `\Flagged`, `\deleted`: `\Deleted`, `\draft`: `\Draft`}

// flagSet maps lower-cased flags to their spelling, without \Recent.
func flagSet(flags []string) map[string]string {
	out := map[string]string{}
	for _, f := range flags {
		l := strings.ToLower(f)
		if f == "" || l == `\recent` {
			continue
		}
		if s, ok := systemFlags[l]; ok {
			f = s
		}
		if _, dup := out[l]; !dup {
			out[l] = f
		}
	}
	return out
}

// diffFlags compares the flags of a source message and its copy; kept
// holds the (lower-cased) keywords the destination folder keeps. A keyword
// of the source it does not keep is notKept, not lost.
func diffFlags(src, dst []string, kept map[string]bool) (lost, added, notKept []string) {
	s, d := flagSet(src), flagSet(dst)
	for l, f := range s {
		if _, ok := d[l]; ok {
			continue
		}
		if !strings.HasPrefix(l, `\`) && !kept[l] {
			notKept = append(notKept, f)
			continue
		}
		lost = append(lost, f)
	}
	for l, f := range d {
		if _, ok := s[l]; !ok {
			added = append(added, f)
		}
	}
	sort.Strings(lost)
	sort.Strings(added)
	sort.Strings(notKept)
	return lost, added, notKept
}
