package rotation

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/snapcrypt/snapcrypt/keys"
	"github.com/snapcrypt/snapcrypt/repo/object"
	"github.com/snapcrypt/snapcrypt/repo/store"
)

// Giving an old entry its twin under the new generation (docs/rotation.md,
// "Step 3"): find a verified copy, or wrap anew and pack the new twins.

// oldEntry is one wrapped DEK below deks/<from>/: a single object or an
// entry of a DEK pack.
type oldEntry struct {
	id      [16]byte
	gen     string // from
	object  string // the single object or the pack it is in
	wrapped []byte // a pack entry's bytes; nil for a single (read when needed)
}

// maxPresize bounds the entries expand makes room for at once: a pack's
// most.
const maxPresize = keys.MaxPackEntries

// expand turns listed names below deks/<from>/ into the entries that keep
// says to take, reading DEK packs. A pack that is gone was deleted by
// whoever finished the rotation.
func (sr *shardRun) expand(ctx context.Context, from string, names []string, keep func(id [16]byte) bool) ([]oldEntry, error) {
	// Room for the entries the names say they hold, up to maxPresize: the
	// names come from the storage, which may lie.
	size := 0
	for _, name := range names {
		n, _, _ := keys.ParsePackName(name)
		size += min(max(n, 1), keys.MaxPackEntries)
	}
	out := make([]oldEntry, 0, min(size, maxPresize))
	var first error
	fail := func(err error) {
		if first == nil {
			first = err
		}
	}
	var fromGen [8]byte
	fromOK := parseHexID(from, fromGen[:])
	for _, name := range names {
		if !keys.IsPackName(name) {
			var id [16]byte
			if !parseHexID(name[strings.LastIndexByte(name, '/')+1:], id[:]) {
				fail(fmt.Errorf("rotate: unexpected object %s: %w", name, object.ErrCorrupt))
				continue
			}
			if !keep(id) {
				continue
			}
			var w []byte
			if fromOK {
				sr.preMu.Lock()
				if b, ok := sr.preloaded[preKey{fromGen, id}]; ok {
					w = b[:]
				}
				sr.preMu.Unlock()
			}
			out = append(out, oldEntry{id: id, gen: from, object: name, wrapped: w})
			continue
		}
		es, err := sr.readPack(ctx, name)
		if err != nil {
			fail(err)
			continue
		}
		for _, e := range es {
			if keep(e.ID) {
				out = append(out, oldEntry{id: e.ID, gen: from, object: name, wrapped: e.Wrapped})
			}
		}
	}
	return out, first
}

// readPack reads and parses an old generation's DEK pack: no entries if
// it is gone.
func (sr *shardRun) readPack(ctx context.Context, name string) ([]keys.PackEntry, error) {
	n, _, ok := keys.ParsePackName(name)
	if !ok {
		return nil, fmt.Errorf("rotate: unexpected object %s: %w", name, object.ErrCorrupt)
	}
	b, err := keys.ReadPack(ctx, sr.r.st, name, n)
	switch {
	case errors.Is(err, store.ErrNotExist):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("rotate: %w", err)
	}
	es, err := keys.ParsePack(b, n)
	if err != nil {
		return nil, fmt.Errorf("rotate: object %s is %w: %v", name, object.ErrCorrupt, err)
	}
	return es, nil
}

// singles lists the single wrapped-DEK objects of generation gen.
func (r *Rotator) singles(ctx context.Context, gen string) (map[[16]byte]bool, error) {
	out := map[[16]byte]bool{}
	prefix := keys.GenPrefix(gen)
	err := r.listNames(ctx, prefix, func(name string) error {
		var id [16]byte
		if parseHexID(name[len(prefix):], id[:]) {
			out[id] = true
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("rotate: listing %s: %w", prefix, err)
	}
	return out, nil
}

// rewrapped is a DEK wrapped under the new generation, to be packed.
type rewrapped struct {
	e       oldEntry
	dek     []byte
	wrapped []byte
}

// process gives each entry of names (objects below deks/<from>/) not yet
// verified by this process a verified twin under the new generation:
// an existing copy there that opens to the same DEK (with check, one that
// opens under the new key: another process made it), or a new one. New
// twins go into DEK packs of up to keys.MaxPackEntries, each read back and
// verified entry by entry before any of its entries counts as done.
func (sr *shardRun) process(ctx context.Context, from string, names []string, check bool) error {
	var todo []oldEntry
	var perr error
	sr.r.paced(func() { todo, perr = sr.expand(ctx, from, names, sr.listed) })
	if len(todo) == 0 {
		return perr
	}
	fresh, err := sr.prepareAll(ctx, todo, sr.kFrom[from], check)
	all := fresh // fresh is consumed below; every DEK copy is cleared
	defer func() {
		for _, rw := range all {
			clear(rw.dek)
		}
	}()
	if isCrash(err) {
		return err
	}
	for len(fresh) > 0 && ctx.Err() == nil {
		n := min(len(fresh), keys.MaxPackEntries)
		var werr error
		sr.r.paced(func() { werr = sr.writeTwins(ctx, fresh[:n]) })
		if werr != nil {
			if isCrash(werr) || err == nil {
				err = werr
			}
			if isCrash(werr) {
				return err
			}
		}
		fresh = fresh[n:]
	}
	if err == nil {
		err = ctx.Err()
	}
	if err == nil {
		err = perr
	}
	return err
}

// prepareAll runs prepareTwin over todo in parallel: entries with a
// verified twin count as done, the others come back wrapped anew, to be
// packed.
func (sr *shardRun) prepareAll(ctx context.Context, todo []oldEntry, kFrom *keys.KEK, check bool) ([]rewrapped, error) {
	// Index the new generation's packs afresh: other processes may have
	// written some since.
	to := sr.kTo.Generation()
	if err := sr.r.kc.RelistPacks(ctx, to); err != nil {
		return nil, fmt.Errorf("rotate: %w", err)
	}
	singles, err := sr.r.singles(ctx, to)
	if err != nil {
		return nil, err
	}
	// One slot per entry, filled by its worker: the entries without a
	// verified twin come back with a DEK in theirs.
	slots := make([]rewrapped, len(todo))
	err = sr.r.parallelN(ctx, sr.opts.Workers, len(todo), func(i int) error {
		e := todo[i]
		checked, err := sr.r.prepareTwin(ctx, e, kFrom, sr.kTo, singles[e.id], check, &slots[i])
		if err != nil || slots[i].dek != nil {
			return err
		}
		if checked {
			sr.r.checked.Add(1)
		}
		sr.verified(e.id)
		return sr.r.step(PointRewrap)
	})
	fresh := slots[:0]
	for _, rw := range slots {
		if rw.dek != nil {
			fresh = append(fresh, rw)
		}
	}
	clear(slots[len(fresh):])
	return fresh, err
}

// prepareTwin looks for a twin of e under kTo's generation (single says
// whether the single object exists there; pack entries come from the
// Keychain's index). It leaves out alone when e has a verified twin
// already (checked: with check, a twin another process made that opens
// under the new key), and otherwise sets it to e's DEK wrapped under kTo,
// to be packed. kFrom may be nil (this process lacks the old key): then a twin
// that opens under the new key is accepted and a missing one is an error.
// A damaged copy under the new generation is not repaired in place: the
// new pack entry supersedes it (readers try every copy).
func (r *Rotator) prepareTwin(ctx context.Context, e oldEntry, kFrom, kTo *keys.KEK, single, check bool, out *rewrapped) (checked bool, err error) {
	cs, err := r.kc.Copies(ctx, kTo.Generation(), e.id, single)
	if err != nil {
		return false, fmt.Errorf("rotate: %w", err)
	}
	opensNew := func() bool {
		for _, c := range cs {
			if d, err := kTo.Unwrap(e.id, c.Wrapped); err == nil {
				clear(d)
				return true
			}
		}
		return false
	}
	if check || kFrom == nil {
		if opensNew() {
			return check, nil
		}
		if kFrom == nil {
			if len(cs) == 0 {
				return false, fmt.Errorf("rotate: %s: %w: re-wrapping it needs the key of generation %s", e.object, keys.ErrDEKUnavailable, e.gen)
			}
			return false, fmt.Errorf("rotate: object %s is %w", cs[0].Object, object.ErrCorrupt)
		}
	}
	old := e.wrapped
	if old == nil {
		b, err := keys.ReadWrapped(ctx, r.st, e.object)
		if errors.Is(err, store.ErrNotExist) {
			return false, nil // deleted: the rotation was finished by another process
		}
		if err != nil {
			return false, fmt.Errorf("rotate: %w", err)
		}
		old = b
	}
	dek, err := kFrom.Unwrap(e.id, old)
	if err != nil {
		if opensNew() { // a late writer's double wrap
			return false, nil
		}
		return false, fmt.Errorf("rotate: object %s is %w", e.object, err)
	}
	for _, c := range cs {
		verr := kTo.Verify(e.id, c.Wrapped, dek)
		if verr == nil {
			clear(dek)
			return false, nil
		}
		if !errors.Is(verr, object.ErrCorrupt) || errors.Is(verr, keys.ErrDifferentKey) {
			clear(dek)
			return false, fmt.Errorf("rotate: object %s does not match %s: %w", c.Object, e.object, verr)
		}
	}
	w, err := kTo.Wrap(e.id, dek)
	if err != nil {
		clear(dek)
		return false, err
	}
	*out = rewrapped{e: e, dek: dek, wrapped: w}
	return false, nil
}

// writeTwins packs batch under the new generation, reads the pack back and
// verifies every entry against the DEK it must hold; only then does each
// entry count as done.
func (sr *shardRun) writeTwins(ctx context.Context, batch []rewrapped) error {
	es := make([]keys.PackEntry, len(batch))
	for i, rw := range batch {
		es[i] = keys.PackEntry{ID: rw.e.id, Wrapped: rw.wrapped}
	}
	// One entry per id: a DEK can be in two old packs (a prune killed
	// between writing a pack's replacement and deleting the pack), and a
	// pack with an id twice does not parse. Every copy in batch is
	// verified against the one packed (all wrap the same DEK).
	cmp := func(a, b keys.PackEntry) int { return bytes.Compare(a.ID[:], b.ID[:]) }
	slices.SortFunc(es, cmp)
	es = slices.CompactFunc(es, func(a, b keys.PackEntry) bool { return a.ID == b.ID })
	name, got, err := sr.r.writePack(ctx, sr.kTo, es)
	if err != nil {
		return fmt.Errorf("rotate: %w", err)
	}
	for _, rw := range batch {
		// got is sorted by id (ParsePack checks).
		var w []byte
		if i, ok := slices.BinarySearchFunc(got, keys.PackEntry{ID: rw.e.id}, cmp); ok {
			w = got[i].Wrapped
		}
		if err := sr.kTo.Verify(rw.e.id, w, rw.dek); err != nil {
			return fmt.Errorf("rotate: DEK pack %s does not verify: %w", name, err)
		}
	}
	for _, rw := range batch {
		sr.verified(rw.e.id)
		if err := sr.r.step(PointRewrap); err != nil {
			return err
		}
	}
	return nil
}

// writePack creates a DEK pack of entries under kk's generation, reads it
// back, checks that it holds exactly the bytes written, and has the
// Keychain index it. It returns the pack's name and its entries as read
// back (sorted by id); the caller verifies that they open to the DEKs they
// must hold.
func (r *Rotator) writePack(ctx context.Context, kk *keys.KEK, entries []keys.PackEntry) (string, []keys.PackEntry, error) {
	gen := kk.Generation()
	name, err := keys.NewPackName(gen, len(entries))
	if err != nil {
		return "", nil, err
	}
	b := keys.MarshalPack(entries)
	if err := r.st.Create(ctx, name, b); err != nil {
		return "", nil, fmt.Errorf("writing DEK pack: %w", err)
	}
	back, err := store.GetBounded(ctx, r.st, name, int64(len(b)))
	if err != nil {
		return "", nil, fmt.Errorf("reading back %s: %w", name, err)
	}
	if !bytes.Equal(back, b) {
		return "", nil, fmt.Errorf("reading back %s: %w: it differs from what was written", name, object.ErrCorrupt)
	}
	es, err := keys.ParsePack(back, len(entries))
	if err != nil {
		return "", nil, fmt.Errorf("reading back %s: %w: %v", name, object.ErrCorrupt, err)
	}
	r.kc.IndexPack(gen, name, es)
	return name, es, nil
}
