package repo

// Prune: delete what no snapshot references, without a global lock
// (docs/prune.md is the protocol; the step numbers below are its).

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/snapcrypt/snapcrypt/keys"
	"github.com/snapcrypt/snapcrypt/lease"
	"github.com/snapcrypt/snapcrypt/repo/object"
	"github.com/snapcrypt/snapcrypt/repo/store"
)

// PruneLeasePrefix is where the prune lease lives: one prune at a time.
const PruneLeasePrefix = "leases/prune/"

// DefaultMaxUnused is the default of PruneOptions.MaxUnused, in percent.
const DefaultMaxUnused = 10

// PruneOptions tune a prune.
type PruneOptions struct {
	// DryRun plans (step 4) and stops: nothing is written or deleted and
	// no lease is taken. The result says what a prune would free.
	DryRun bool
	// MaxUnused: a partly used pack is repacked when its unreachable
	// bytes exceed MaxUnused percent of its blobs' bytes (0: every partly
	// used pack; 100: none).
	MaxUnused float64
	// NoWait makes a prune that finds writers in flight (step 7) leave
	// its mark for the next prune and return, instead of waiting for
	// their leases to be released or to expire.
	NoWait bool
	// Host is recorded in the leases and the mark (os.Hostname).
	Host string
	// LeaseDuration is the prune lease's (lease.DefaultDuration).
	LeaseDuration time.Duration
	// Skew is how long after its expiry (by this clock) another writer's
	// lease still counts as live, for a writer whose clock is behind
	// (lease.ClockSkew when zero).
	Skew time.Duration
	// Poll is how often a waiting prune lists the writer leases again
	// (one second when zero).
	Poll time.Duration
	// Progress, when set, is told of each step, and of its progress
	// where it has some.
	Progress func(PruneProgress)
}

// PruneProgress is where a prune is.
type PruneProgress struct {
	Step        string // "plan", "repack", "wait", "recheck", "delete"
	Done, Total int    // units of the step (blobs, objects), when known
	Detail      string // for "wait": the writers waited for
}

// PruneResult tells what a prune did, or for a dry run would do.
type PruneResult struct {
	DryRun bool `json:"dry_run"`
	// Resumed: the prune finished the mark of an earlier one (crashed
	// or deferred) instead of making a plan.
	Resumed   bool   `json:"resumed"`
	Mark      string `json:"mark,omitempty"`
	Snapshots int    `json:"snapshots"`
	// Packs by state, as planned.
	KeptPacks      int `json:"kept_packs"`
	UnusedPacks    int `json:"unused_packs"`
	RepackedPacks  int `json:"repacked_packs"`
	UnindexedPacks int `json:"unindexed_packs"`
	// CandidateBytes is what the candidate packs occupy in the store;
	// RepackBytes the plaintext of the blobs repacking copies.
	CandidateBytes int64 `json:"candidate_bytes"`
	RepackBytes    int64 `json:"repack_bytes"`
	CandidateDEKs  int   `json:"candidate_deks"`
	// Rescued counts the candidate packs the re-check kept: a snapshot
	// committed after the plan uses them, or an index written since
	// names them.
	Rescued int `json:"rescued_packs"`
	// What was deleted.
	DeletedPacks      int   `json:"deleted_packs"`
	DeletedIndexes    int   `json:"deleted_indexes"`
	DeletedDEKs       int   `json:"deleted_deks"`
	RewrittenDEKPacks int   `json:"rewritten_dek_packs"`
	FreedBytes        int64 `json:"freed_bytes"`
	// Deferred lists the writers in flight a prune with NoWait (or
	// interrupted while waiting) did not wait for: its mark stays, and
	// the next prune finishes it.
	Deferred []lease.Lease `json:"deferred,omitempty"`
}

func (o PruneOptions) withDefaults() PruneOptions {
	if o.Host == "" {
		o.Host, _ = os.Hostname()
	}
	if o.Skew == 0 {
		o.Skew = lease.ClockSkew
	}
	if o.Poll <= 0 {
		o.Poll = time.Second
	}
	return o
}

func (o PruneOptions) progress(p PruneProgress) {
	if o.Progress != nil {
		o.Progress(p)
	}
}

// errPrune wraps the errors that stop a prune before it deletes anything
// because it cannot tell what is used.
var errPrune = errors.New("prune stopped")

// Prune deletes what no snapshot references: packs no snapshot reaches,
// partly used packs above MaxUnused (their reachable blobs copied into new
// packs first), packs no index names (interrupted writes), the index
// objects it compacts, and the wrapped DEKs that no remaining object is
// sealed with. It runs beside snapshots (which it waits for, or defers
// to), mounts and rotations, on any host (docs/prune.md). Another prune
// holding the prune lease makes it fail with an error wrapping
// lease.ErrBusy that names the holder. A mark left by an earlier prune is
// finished first. An index object, manifest or tree that cannot be read
// stops it before anything is deleted.
func (r *Repository) Prune(ctx context.Context, o PruneOptions) (*PruneResult, error) {
	o = o.withDefaults()
	res := &PruneResult{DryRun: o.DryRun}
	if o.DryRun {
		marks, err := r.Marks(ctx)
		if err != nil {
			return nil, err
		}
		if len(marks) > 0 {
			res.Resumed = true
			res.fromMark(marks[0])
			return res, nil
		}
		_, err = r.plan(ctx, o, res)
		return res, err
	}
	held, err := lease.Take(ctx, r.st, PruneLeasePrefix, lease.Options{Duration: o.LeaseDuration, Host: o.Host, What: "prune lease"})
	if err != nil {
		return nil, fmt.Errorf("prune: %w", err)
	}
	defer held.Release(context.WithoutCancel(ctx))
	// Whatever happens, the index in memory is the repository's again.
	defer r.reloadIndex(context.WithoutCancel(ctx))

	marks, err := r.Marks(ctx)
	if err != nil {
		return nil, fmt.Errorf("prune: %w", err)
	}
	var m *Mark
	own := ""
	if len(marks) > 0 {
		m = marks[0] // step 2: finish it before planning anew
		res.Resumed = true
		res.fromMark(m)
	} else {
		g, err := r.beginWrite(ctx, o.Host) // step 3
		if err != nil {
			return nil, fmt.Errorf("prune: %w", err)
		}
		defer g.release(ctx)
		own = g.prefix
		p, err := r.plan(ctx, o, res)
		if err != nil {
			return nil, err
		}
		if err := r.hook("planned"); err != nil {
			return nil, err
		}
		switch {
		case len(p.cands) == 0 && len(p.deks) == 0:
			return res, nil // nothing to do
		case len(p.cands) == 0:
			// Only DEKs to delete: writers never reuse a DEK (W4), so
			// no mark is needed to keep them off it, and a crash leaves
			// nothing to finish; steps 7, 8 and 11 run with the plan in
			// memory, and no new DEK is drawn (that would be left
			// unused for the next prune).
			m = &Mark{Time: time.Now().UTC(), Host: o.Host, PID: os.Getpid(), Snapshots: p.snaps, DEKs: p.deks, DEKPacks: p.dekPacks}
		default:
			if m, err = r.repackAndMark(ctx, o, p); err != nil {
				return nil, err
			}
			res.Mark = m.ID.String()
		}
		if err := r.hook("marked"); err != nil {
			return nil, err
		}
	}
	return res, r.finish(ctx, o, held, own, m, res)
}

// hook calls the test hook of a prune step.
func (r *Repository) hook(step string) error {
	if r.hooks.pruneStep != nil {
		return r.hooks.pruneStep(step)
	}
	return nil
}

// fromMark fills the planned figures of res from a mark.
func (res *PruneResult) fromMark(m *Mark) {
	res.Mark = m.ID.String()
	res.Snapshots = len(m.Snapshots)
	for _, p := range m.Packs {
		res.CandidateBytes += p.Size
		switch p.Reason {
		case ReasonUnused:
			res.UnusedPacks++
		case ReasonRepacked:
			res.RepackedPacks++
		case ReasonUnindexed:
			res.UnindexedPacks++
		}
	}
	res.CandidateDEKs = len(m.DEKs)
}

// prunePlan is step 4's outcome.
type prunePlan struct {
	snaps    []ObjectID
	oldIndex []ObjectID
	kept     []IndexPack
	repack   []*IndexPack // partly used, to be repacked
	used     map[blobKey]bool
	cands    []MarkPack
	deks     [][16]byte
	dekPacks []string
}

// plan is step 4: it reads every index object and manifest and walks
// every snapshot (any of them unreadable stops it), classifies every
// listed pack, and finds the DEKs no remaining object is sealed with. It
// replaces the in-memory index with exactly the index objects it read.
func (r *Repository) plan(ctx context.Context, o PruneOptions, res *PruneResult) (*prunePlan, error) {
	o.progress(PruneProgress{Step: "plan"})
	p := &prunePlan{used: map[blobKey]bool{}}
	snaps, err := r.Snapshots(ctx)
	if err != nil {
		return nil, fmt.Errorf("prune: %w: a snapshot cannot be read: %w", errPrune, err)
	}
	for _, s := range snaps {
		p.snaps = append(p.snaps, s.ID)
	}
	res.Snapshots = len(snaps)
	contents, ids, err := r.readIndexes(ctx)
	if err != nil {
		return nil, err
	}
	p.oldIndex = ids
	var all []IndexPack
	for _, id := range ids {
		all = append(all, contents[id]...)
	}
	r.index.Replace(all, ids)
	sizes := map[ObjectID]int64{}
	err = r.st.List(ctx, "data/", func(fi store.Info) error {
		if id, err := ParseObjectID(fi.Name[strings.LastIndexByte(fi.Name, '/')+1:]); err == nil && packName(id) == fi.Name {
			sizes[id] = fi.Size
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("prune: listing packs: %w", err)
	}
	err = r.Walk(ctx, snaps, func(x Reached) error {
		if x.Err != nil {
			return fmt.Errorf("prune: %w: %s: %w", errPrune, x.Path, x.Err)
		}
		if !r.index.Has(x.Type, x.ID) {
			return fmt.Errorf("prune: %w: %s: %s blob %s is in no index (run check)", errPrune, x.Path, x.Type, x.ID.Short())
		}
		p.used[blobKey{x.Type, x.ID}] = true
		return nil
	})
	if err != nil {
		return nil, err
	}
	inUse := map[[16]byte]bool{}
	packs := r.index.Packs()
	sort.Slice(packs, func(i, j int) bool { return packs[i].ID.String() < packs[j].ID.String() })
	for _, ip := range packs {
		var total, used int64
		for _, pb := range ip.Blobs {
			total += int64(pb.Length)
			if r.owns(ip, pb, p.used) {
				used += int64(pb.Length)
			}
		}
		size, listed := sizes[ip.ID]
		switch {
		case used == 0:
			p.cands = append(p.cands, MarkPack{ip.ID, size, ReasonUnused})
			res.UnusedPacks++
		case !listed:
			return nil, fmt.Errorf("prune: %w: pack %s, which snapshots use, is missing (run check)", errPrune, packName(ip.ID))
		case float64(total-used)*100 > o.MaxUnused*float64(total):
			p.cands = append(p.cands, MarkPack{ip.ID, size, ReasonRepacked})
			p.repack = append(p.repack, ip)
			res.RepackedPacks++
			res.RepackBytes += used
		default:
			p.kept = append(p.kept, *ip)
			res.KeptPacks++
			h, err := object.ParseHeader(ip.Header)
			if err != nil {
				return nil, fmt.Errorf("prune: %w: the index entry of %s is %w", errPrune, packName(ip.ID), err)
			}
			inUse[h.DEKID] = true
		}
	}
	for id, size := range sizes {
		if !r.index.knows(id) {
			p.cands = append(p.cands, MarkPack{id, size, ReasonUnindexed})
			res.UnindexedPacks++
		}
	}
	sort.Slice(p.cands, func(i, j int) bool { return p.cands[i].ID.String() < p.cands[j].ID.String() })
	for _, c := range p.cands {
		res.CandidateBytes += c.Size
	}
	// DEKs: those of the manifests, the kept packs and the content-id
	// key stay; every other one listed is a candidate.
	for _, s := range snaps {
		id, err := r.headerDEK(ctx, snapshotName(s.ID))
		if errors.Is(err, store.ErrNotExist) {
			continue // forgotten since it was listed
		}
		if err != nil {
			return nil, fmt.Errorf("prune: %w: %w", errPrune, err)
		}
		inUse[id] = true
	}
	if len(p.cands) == 0 {
		// No pack to delete: the index objects stay as they are (a new
		// compacted index would only leave a DEK of its own behind, and
		// the next prune would find it unused again), and so do their
		// DEKs.
		for _, id := range p.oldIndex {
			d, err := r.headerDEK(ctx, indexName(id))
			if errors.Is(err, store.ErrNotExist) {
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("prune: %w: %w", errPrune, err)
			}
			inUse[d] = true
		}
		p.oldIndex, p.kept = nil, nil
	}
	idKey, err := hex.DecodeString(r.keys.Keyring().IDKeyDEK)
	if err != nil || len(idKey) != 16 {
		return nil, fmt.Errorf("prune: %w: the keyring's content-id key id is %w", errPrune, object.ErrCorrupt)
	}
	inUse[[16]byte(idKey)] = true
	if p.deks, p.dekPacks, err = r.candidateDEKs(ctx, inUse); err != nil {
		return nil, err
	}
	res.CandidateDEKs = len(p.deks)
	return p, nil
}

// owns tells whether blob pb of pack ip is the copy of a used blob that
// the index finds (a second copy elsewhere is unused).
func (r *Repository) owns(ip *IndexPack, pb PackBlob, used map[blobKey]bool) bool {
	k := blobKey{pb.Type, pb.ID}
	if !used[k] {
		return false
	}
	l, ok := r.index.lookup(pb.Type, pb.ID)
	return ok && l.pack == ip && l.offset == pb.Offset
}

// readIndexes reads every index object listed, by id (sorted); one that
// cannot be read stops the prune.
func (r *Repository) readIndexes(ctx context.Context) (map[ObjectID][]IndexPack, []ObjectID, error) {
	var ids []ObjectID
	err := r.st.List(ctx, "index/", func(fi store.Info) error {
		if id, err := ParseObjectID(strings.TrimPrefix(fi.Name, "index/")); err == nil {
			ids = append(ids, id)
		}
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("prune: listing indexes: %w", err)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i].String() < ids[j].String() })
	out := make([][]IndexPack, len(ids))
	gone := make([]bool, len(ids))
	var g errgroup.Group
	g.SetLimit(8)
	for i, id := range ids {
		g.Go(func() error {
			packs, err := r.readIndex(ctx, id)
			if errors.Is(err, store.ErrNotExist) {
				gone[i] = true // deleted since the listing (a prune's step 9)
				return nil
			}
			if err != nil {
				return fmt.Errorf("prune: %w: an index cannot be read: %w", errPrune, err)
			}
			out[i] = packs
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, nil, err
	}
	contents := map[ObjectID][]IndexPack{}
	var kept []ObjectID
	for i, id := range ids {
		if !gone[i] {
			contents[id] = out[i]
			kept = append(kept, id)
		}
	}
	return contents, kept, nil
}

// headerDEK returns the id of the DEK that the sealed object name names
// in its header.
func (r *Repository) headerDEK(ctx context.Context, name string) ([16]byte, error) {
	b, err := r.st.GetRange(ctx, name, 0, object.HeaderSize)
	if err != nil {
		return [16]byte{}, fmt.Errorf("reading the header of %s: %w", name, err)
	}
	h, err := object.ParseHeader(b)
	if err != nil {
		return [16]byte{}, fmt.Errorf("object %s is %w", name, object.ErrCorrupt)
	}
	return h.DEKID, nil
}

// candidateDEKs lists every wrapped DEK below deks/ (single objects and
// DEK pack entries) and returns the ids not in inUse, and the DEK packs
// that hold any of them.
func (r *Repository) candidateDEKs(ctx context.Context, inUse map[[16]byte]bool) ([][16]byte, []string, error) {
	cands := map[[16]byte]bool{}
	var packs []string
	err := r.st.List(ctx, "deks/", func(fi store.Info) error {
		if keys.IsPackName(fi.Name) {
			packs = append(packs, fi.Name)
			return nil
		}
		b, err := hex.DecodeString(fi.Name[strings.LastIndexByte(fi.Name, '/')+1:])
		if err == nil && len(b) == 16 && !inUse[[16]byte(b)] {
			cands[[16]byte(b)] = true
		}
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("prune: listing data keys: %w", err)
	}
	var dekPacks []string
	for _, name := range packs {
		es, err := readDEKPack(ctx, r.st, name)
		if errors.Is(err, store.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, nil, fmt.Errorf("prune: %w: %w", errPrune, err)
		}
		holds := false
		for _, e := range es {
			if !inUse[e.ID] {
				cands[e.ID] = true
				holds = true
			}
		}
		if holds {
			dekPacks = append(dekPacks, name)
		}
	}
	out := make([][16]byte, 0, len(cands))
	for id := range cands {
		out = append(out, id)
	}
	slices.SortFunc(out, func(a, b [16]byte) int { return strings.Compare(string(a[:]), string(b[:])) })
	sort.Strings(dekPacks)
	return out, dekPacks, nil
}

// readDEKPack reads and decodes the DEK pack name.
func readDEKPack(ctx context.Context, st store.Reader, name string) ([]keys.PackEntry, error) {
	n, _, ok := keys.ParsePackName(name)
	if !ok {
		return nil, fmt.Errorf("object %s is %w: not a DEK pack name", name, object.ErrCorrupt)
	}
	b, err := keys.ReadPack(ctx, st, name, n)
	if err != nil {
		return nil, err
	}
	es, err := keys.ParsePack(b, n)
	if err != nil {
		return nil, fmt.Errorf("object %s is %w: %v", name, object.ErrCorrupt, err)
	}
	return es, nil
}

// writerView is a Repository that writes packs and index objects like r
// but deduplicates only against the packs given: what repack writes with.
func (r *Repository) writerView(packs []IndexPack) *Repository {
	v := &Repository{st: r.st, cfg: r.cfg, keys: r.keys, hash: r.hash, pol: r.pol, index: newIndex(), comp: r.comp}
	v.index.add(packs)
	return v
}

// repackAndMark is steps 5 and 6: it copies the used blobs of the packs
// to repack into new packs (read and written the way every blob is, so
// that they stay what the read path makes of them), writes I_new (index
// objects naming every kept and new pack), and writes the mark.
func (r *Repository) repackAndMark(ctx context.Context, o PruneOptions, p *prunePlan) (*Mark, error) {
	v := r.writerView(p.kept)
	w := newWriter(v, r.comp)
	// One pack sealed at a time: the repack copies stored bytes (no
	// compression to overlap), so a second buys no time, only memory.
	w.sem = make(chan struct{}, 1)
	total := 0
	for _, ip := range p.repack {
		total += len(ip.Blobs)
	}
	done := 0
	for _, ip := range p.repack {
		for _, pb := range ip.Blobs {
			done++
			if !r.owns(ip, pb, p.used) {
				continue
			}
			if err := r.repackBlob(ctx, w, ip, pb); err != nil {
				return nil, err
			}
			o.progress(PruneProgress{Step: "repack", Done: done, Total: total})
		}
	}
	if err := r.hook("repacked"); err != nil {
		return nil, err
	}
	w.mu.Lock()
	w.packs = append(w.packs, p.kept...)
	w.mu.Unlock()
	if err := w.flush(ctx); err != nil {
		return nil, fmt.Errorf("prune: writing the compacted index: %w", err)
	}
	m := &Mark{Time: time.Now().UTC(), Host: o.Host, PID: os.Getpid(), Snapshots: p.snaps,
		OldIndex: p.oldIndex, Packs: p.cands, DEKs: p.deks, DEKPacks: p.dekPacks}
	v.index.mu.RLock()
	for id := range v.index.loaded {
		m.NewIndex = append(m.NewIndex, id)
	}
	v.index.mu.RUnlock()
	sort.Slice(m.NewIndex, func(i, j int) bool { return m.NewIndex[i].String() < m.NewIndex[j].String() })
	dekID, dek, err := w.key(ctx, 0)
	if err != nil {
		return nil, fmt.Errorf("prune: %w", err)
	}
	if err := r.writeMark(ctx, m, dekID, dek); err != nil {
		return nil, fmt.Errorf("prune: writing the mark: %w", err)
	}
	return m, nil
}

// repackBlob copies blob pb of pack ip into w: a compressed blob as its
// stored frame (checked to decompress to its length, not compressed
// again), any other as its plaintext (which w compresses as it decides).
func (r *Repository) repackBlob(ctx context.Context, w *writer, ip *IndexPack, pb PackBlob) error {
	loc := locOf(ip, pb)
	var err error
	if pb.Zstd {
		var z []byte
		if z, err = r.eng.readStored(ctx, loc, nil); err == nil {
			if _, err = decompressBlob(nil, z, loc.plain); err != nil {
				err = fmt.Errorf("%s blob %s is %w: %v", pb.Type, pb.ID.Short(), object.ErrCorrupt, err)
			} else {
				_, err = w.addCompressed(ctx, pb.Type, pb.ID, z, loc.plain)
			}
		}
	} else {
		var data []byte
		if data, err = r.eng.readStored(ctx, loc, nil); err == nil {
			_, err = w.add(ctx, pb.Type, pb.ID, data)
		}
	}
	if err != nil {
		return fmt.Errorf("prune: repacking %s: %w", packName(ip.ID), err)
	}
	return nil
}

// finish is steps 7 to 12 for mark m.
func (r *Repository) finish(ctx context.Context, o PruneOptions, held *lease.Held, own string, m *Mark, res *PruneResult) error {
	deferred, err := r.awaitWriters(ctx, o, own)
	if err != nil {
		return err
	}
	if len(deferred) > 0 {
		res.Deferred = deferred
		return nil
	}
	if err := r.hook("waited"); err != nil {
		return err
	}
	packs, deks, err := r.recheck(ctx, o, m, res)
	if err != nil {
		return err
	}
	if err := r.hook("rechecked"); err != nil {
		return err
	}
	o.progress(PruneProgress{Step: "delete"})
	// Step 9: the old index objects.
	if err := held.Err(); err != nil {
		return fmt.Errorf("prune: %w", err)
	}
	for _, id := range m.OldIndex {
		if slices.Contains(m.NewIndex, id) {
			continue
		}
		if n, err := r.deleteObject(ctx, indexName(id)); err != nil {
			return err
		} else if n {
			res.DeletedIndexes++
		}
	}
	if err := r.hook("dropped"); err != nil {
		return err
	}
	// Step 10: the candidate packs.
	if err := held.Err(); err != nil {
		return fmt.Errorf("prune: %w", err)
	}
	for i, c := range packs {
		if n, err := r.deleteObject(ctx, packName(c.ID)); err != nil {
			return err
		} else if n {
			res.DeletedPacks++
			res.FreedBytes += c.Size
		}
		o.progress(PruneProgress{Step: "delete", Done: i + 1, Total: len(packs)})
	}
	if err := r.hook("deleted"); err != nil {
		return err
	}
	// Step 11: the candidate DEKs.
	if err := held.Err(); err != nil {
		return fmt.Errorf("prune: %w", err)
	}
	if err := r.deleteDEKs(ctx, m, deks, res); err != nil {
		return err
	}
	if err := r.hook("deks"); err != nil {
		return err
	}
	// Step 12 (a DEK-only plan wrote no mark).
	if m.ID != (ObjectID{}) {
		if _, err := r.deleteObject(ctx, markName(m.ID)); err != nil {
			return err
		}
	}
	return nil
}

// deleteObject deletes name; an object already gone is not an error. It
// tells whether this call deleted it.
func (r *Repository) deleteObject(ctx context.Context, name string) (bool, error) {
	err := r.st.Delete(ctx, name)
	if errors.Is(err, store.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("prune: deleting %s: %w", name, err)
	}
	return true, nil
}

// awaitWriters is step 7: it lists the writer leases and waits until
// none other than own is live, or, with NoWait or when ctx ends while it
// waits, returns the live ones. Writer leases that expired (their writer
// crashed) are deleted on the way.
func (r *Repository) awaitWriters(ctx context.Context, o PruneOptions, own string) ([]lease.Lease, error) {
	for {
		live, err := r.liveWriters(ctx, o, own)
		if err != nil || len(live) == 0 {
			return nil, err
		}
		if o.NoWait {
			return live, nil
		}
		var who []string
		for _, l := range live {
			who = append(who, l.String())
		}
		o.progress(PruneProgress{Step: "wait", Total: len(live), Detail: strings.Join(who, ", ")})
		select {
		case <-ctx.Done():
			return live, nil
		case <-time.After(o.Poll):
		}
	}
}

// liveWriters returns the writer leases live now (allowing o.Skew), but
// for own's, and deletes the others' lease objects.
func (r *Repository) liveWriters(ctx context.Context, o PruneOptions, own string) ([]lease.Lease, error) {
	dirs, err := r.writerLeaseDirs(ctx)
	if err != nil {
		return nil, fmt.Errorf("prune: %w", err)
	}
	var live []lease.Lease
	for _, dir := range dirs {
		if dir == own {
			continue
		}
		seq, l, err := lease.Latest(ctx, r.st, dir)
		if err != nil {
			return nil, fmt.Errorf("prune: reading writer lease %s: %w", dir, err)
		}
		now := time.Now()
		if l != nil && now.Before(l.Expires.Add(o.Skew)) && !l.Invalid(now) {
			live = append(live, *l)
			continue
		}
		if seq > 0 {
			if _, err := r.deleteObject(ctx, lease.Name(dir, seq)); err != nil {
				return nil, err
			}
		}
	}
	sort.Slice(live, func(i, j int) bool { return live[i].Expires.Before(live[j].Expires) })
	return live, nil
}

// recheck is step 8: it takes out of m's candidates every pack and DEK
// that a snapshot committed after the plan, or an index object written
// since, uses, and writes an index object naming each pack it takes out
// that only I_old named. It returns the candidates left, and replaces
// the in-memory index with every index object listed now.
func (r *Repository) recheck(ctx context.Context, o PruneOptions, m *Mark, res *PruneResult) ([]MarkPack, map[[16]byte]bool, error) {
	o.progress(PruneProgress{Step: "recheck"})
	cands := map[ObjectID]MarkPack{}
	for _, p := range m.Packs {
		cands[p.ID] = p
	}
	deks := map[[16]byte]bool{}
	for _, d := range m.DEKs {
		deks[d] = true
	}
	old := map[ObjectID]bool{}
	for _, id := range m.OldIndex {
		old[id] = true
	}
	for _, id := range m.NewIndex {
		old[id] = false // kept
	}
	contents, ids, err := r.readIndexes(ctx)
	if err != nil {
		return nil, nil, err
	}
	var all []IndexPack
	named := map[ObjectID]bool{} // by an index object step 9 keeps
	byID := map[ObjectID]*IndexPack{}
	rescued := map[ObjectID]bool{}
	rescue := func(ip *IndexPack) {
		if _, ok := cands[ip.ID]; ok {
			delete(cands, ip.ID)
			rescued[ip.ID] = true
		}
		if h, err := object.ParseHeader(ip.Header); err == nil {
			delete(deks, h.DEKID)
		}
	}
	for _, id := range ids {
		all = append(all, contents[id]...)
		drop, inOld := old[id]
		if !(inOld && drop) {
			for i := range contents[id] {
				named[contents[id][i].ID] = true
			}
		}
		if inOld {
			continue
		}
		// Written after the plan: its packs and DEKs stay.
		d, err := r.headerDEK(ctx, indexName(id))
		if err != nil && !errors.Is(err, store.ErrNotExist) {
			return nil, nil, fmt.Errorf("prune: %w: %w", errPrune, err)
		}
		delete(deks, d)
		for i := range contents[id] {
			rescue(&contents[id][i])
		}
	}
	r.index.Replace(all, ids)
	for _, ip := range r.index.Packs() {
		byID[ip.ID] = ip
	}
	// Manifests committed after the plan.
	walked := map[ObjectID]bool{}
	for _, id := range m.Snapshots {
		walked[id] = true
	}
	var newSnaps []*Snapshot
	err = r.st.List(ctx, "snapshots/", func(fi store.Info) error {
		id, err := ParseObjectID(strings.TrimPrefix(fi.Name, "snapshots/"))
		if err != nil || walked[id] {
			return nil
		}
		s, err := r.LoadSnapshot(ctx, id)
		if err != nil && r.forgotten(ctx, id, err) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("prune: %w: a snapshot committed since the plan cannot be read: %w", errPrune, err)
		}
		d, err := r.headerDEK(ctx, fi.Name)
		if errors.Is(err, store.ErrNotExist) {
			return nil // forgotten since it was read
		}
		if err != nil {
			return fmt.Errorf("prune: %w: %w", errPrune, err)
		}
		delete(deks, d)
		newSnaps = append(newSnaps, s)
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	if len(newSnaps) > 0 {
		// Every copy of every blob they reach stays, in whichever pack.
		holders := map[blobKey][]*IndexPack{}
		for _, ip := range r.index.Packs() {
			for _, pb := range ip.Blobs {
				k := blobKey{pb.Type, pb.ID}
				holders[k] = append(holders[k], ip)
			}
		}
		err = r.Walk(ctx, newSnaps, func(x Reached) error {
			if x.Err != nil {
				return fmt.Errorf("prune: %w: %s: %w", errPrune, x.Path, x.Err)
			}
			hs := holders[blobKey{x.Type, x.ID}]
			if len(hs) == 0 {
				return fmt.Errorf("prune: %w: %s: %s blob %s is in no index", errPrune, x.Path, x.Type, x.ID.Short())
			}
			for _, ip := range hs {
				rescue(ip)
			}
			return nil
		})
		if err != nil {
			return nil, nil, err
		}
	}
	// A pack taken out that only an index object of I_old names needs
	// another, before step 9 deletes those.
	var extra []IndexPack
	for id := range rescued {
		if ip := byID[id]; ip != nil && !named[id] {
			extra = append(extra, *ip)
		}
	}
	if len(extra) > 0 {
		sort.Slice(extra, func(i, j int) bool { return extra[i].ID.String() < extra[j].ID.String() })
		w := newWriter(r.writerView(nil), r.comp)
		w.packs = extra
		if err := w.flush(ctx); err != nil {
			return nil, nil, fmt.Errorf("prune: indexing the packs the re-check kept: %w", err)
		}
	}
	res.Rescued = len(rescued)
	left := make([]MarkPack, 0, len(cands))
	for _, p := range m.Packs {
		if _, ok := cands[p.ID]; ok {
			left = append(left, p)
		}
	}
	return left, deks, nil
}

// deleteDEKs is step 11: it deletes every single wrapped DEK of the
// candidates under every generation the keyring lists, newest first, and
// rewrites each DEK pack of the mark without its candidate entries.
func (r *Repository) deleteDEKs(ctx context.Context, m *Mark, deks map[[16]byte]bool, res *PruneResult) error {
	if err := r.keys.Refresh(ctx); err != nil {
		return fmt.Errorf("prune: reading the keyring: %w", err)
	}
	gens := r.keys.Keyring().Generations
	for _, d := range m.DEKs {
		if !deks[d] {
			continue
		}
		deleted := false
		for i := len(gens) - 1; i >= 0; i-- {
			n, err := r.deleteObject(ctx, keys.GenPrefix(gens[i].ID)+hex.EncodeToString(d[:]))
			if err != nil {
				return err
			}
			deleted = deleted || n
		}
		if deleted {
			res.DeletedDEKs++
		}
	}
	for _, name := range m.DEKPacks {
		es, err := readDEKPack(ctx, r.st, name)
		if errors.Is(err, store.ErrNotExist) {
			continue // rewritten already
		}
		if err != nil {
			return fmt.Errorf("prune: %w", err)
		}
		var kept []keys.PackEntry
		for _, e := range es {
			if !deks[e.ID] {
				kept = append(kept, e)
			}
		}
		if len(kept) == len(es) {
			continue
		}
		if len(kept) > 0 {
			gen := strings.TrimPrefix(name, "deks/")
			gen = gen[:strings.IndexByte(gen, '/')]
			nn, err := keys.NewPackName(gen, len(kept))
			if err != nil {
				return err
			}
			if err := r.st.Create(ctx, nn, keys.MarshalPack(kept)); err != nil {
				return fmt.Errorf("prune: rewriting DEK pack %s: %w", name, err)
			}
		}
		if _, err := r.deleteObject(ctx, name); err != nil {
			return err
		}
		res.RewrittenDEKPacks++
		res.DeletedDEKs += len(es) - len(kept)
	}
	return nil
}

// reloadIndex makes the in-memory index the repository's index objects.
func (r *Repository) reloadIndex(ctx context.Context) {
	r.index.Replace(nil, nil)
	r.LoadIndexPartial(ctx)
}
