package migrate

import (
	"context"
	"fmt"
	"sort"
	"time"
)

// recoverPending resolves the intents a killed run left in the checkpoint,
// before this run copies anything. Each is looked up on the sink with its
// Finder (in one call per destination folder): found -> recorded as done
// (so it is not copied twice); not found -> the intent is cleared and the
// message is copied again by this run (so it is not lost).
//
// An intent whose append the killed run may still have had on the wire
// (Checkpoint.WasSending) and that is not found at once is looked up again
// once the settling delay has passed since that run was last alive (see
// settle.go): a server may still store an APPEND of a dead client. If the
// message is then copied again, it is reconciled at the end of the run.
// The cost is bounded by what was in flight when the run died, not by the
// mailbox size; the wait is at most Options.SettleDelay, and none at all
// when the killed run had nothing on the wire or died long enough ago.
//
// Without a Finder the intents are cleared and a warning says that a
// duplicate is possible: losing a message is worse than a duplicate.
func (e *engine) recoverPending(ctx context.Context) error {
	pending, err := e.o.Checkpoint.Pending()
	if err != nil {
		return fmt.Errorf("read pending intents: %w", err)
	}
	if len(pending) == 0 {
		return nil
	}
	finder, ok := e.o.Sink.(Finder)
	if !ok {
		for _, in := range pending {
			e.rep(Event{Kind: Warning, Folder: in.Folder, ID: in.ID,
				Err: fmt.Errorf("message %s of %q was being copied when the last run stopped; the destination cannot be searched, so it is copied again and may appear twice", in.ID, in.Folder)})
		}
		return e.o.Checkpoint.Complete(pending, make([]string, len(pending)))
	}
	refs, unsure, err := e.settleIntents(ctx, finder, pending)
	if err != nil {
		return err
	}
	if len(unsure) > 0 {
		since := e.o.Checkpoint.LastAlive()
		if since.IsZero() {
			since = time.Now()
		}
		if wait := time.Until(since.Add(e.settleDelay())); wait > 0 {
			e.rep(Event{Kind: Waiting, Bytes: int64(len(unsure)), Err: fmt.Errorf("%s on the wire when the last run stopped; looking for them again in %s, in case the destination stores them late (--settle-delay)", countOf(len(unsure), "message was", "messages were"), wait.Round(time.Millisecond))})
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(wait):
			}
		}
		again := make([]Intent, len(unsure))
		for k, i := range unsure {
			again[k] = pending[i]
		}
		refs2, _, err := e.settleIntents(ctx, finder, again)
		if err != nil {
			return err
		}
		for k, i := range unsure {
			refs[i] = refs2[k]
			ev := Event{Kind: Settled, Folder: pending[i].Folder, Dest: pending[i].Dest, ID: pending[i].ID, How: SettledFound}
			if refs[i] == "" {
				ev.How = SettledResent
				e.recon.add(pending[i], "", since)
			}
			e.rep(ev)
		}
	}
	for i, in := range pending {
		e.rep(Event{Kind: Recovered, Folder: in.Folder, Dest: in.Dest, ID: in.ID, Found: refs[i] != ""})
	}
	if err := e.o.Checkpoint.Complete(pending, refs); err != nil {
		return fmt.Errorf("record recovered intents: %w", err)
	}
	for i, in := range pending {
		e.claims.release(in.Dest, refs[i])
	}
	return nil
}

// settleIntents looks ins up and assigns candidates; unsure lists the
// indexes of intents not found whose append may have been on the wire.
func (e *engine) settleIntents(ctx context.Context, finder Finder, ins []Intent) (refs []string, unsure []int, err error) {
	cands, err := e.locate(ctx, finder, ins)
	if err != nil {
		return nil, nil, err
	}
	refs = make([]string, len(ins))
	late := e.settleDelay() > 0
	// Intents whose append was not on the wire (answered, or never sent)
	// pick first: a copy they can find is all they will ever have. One
	// that was on the wire may still see its own copy land, so it takes
	// what is left and waits for the rest. The other order would let it
	// take a byte-identical twin's copy, leave that twin to be sent again
	// and its own copy to land beside both.
	var order, sending []int
	for i, in := range ins {
		if late && e.o.Checkpoint.WasSending(in.Key()) {
			sending = append(sending, i)
		} else {
			order = append(order, i)
		}
	}
	for _, i := range append(order, sending...) {
		if refs[i], err = e.pick(ins[i], cands[i]); err != nil {
			return nil, nil, err
		}
	}
	for _, i := range sending {
		if refs[i] == "" {
			unsure = append(unsure, i)
		}
	}
	sort.Ints(unsure)
	return refs, unsure, nil
}
