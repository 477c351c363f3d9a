package repo

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/snapcrypt/snapcrypt/repo/object"
	"github.com/snapcrypt/snapcrypt/repo/store"
)

// CheckOptions tune a check.
type CheckOptions struct {
	// ReadData decrypts and authenticates every byte of every pack and
	// verifies each blob's content id.
	ReadData bool
	// Progress, when set, is told about each step.
	Progress func(step string)
}

// CheckResult lists what is wrong; an empty Problems means clean.
type CheckResult struct {
	Snapshots, Trees, Packs, Blobs int
	DEKs                           int
	Problems                       []string
}

// Check verifies that every object a snapshot references exists, every DEK
// named by an object unwraps, and that the index agrees with the packs. It
// returns an error only when it cannot run at all.
func (r *Repository) Check(ctx context.Context, opts CheckOptions) (*CheckResult, error) {
	res := &CheckResult{}
	problem := func(format string, args ...any) {
		res.Problems = append(res.Problems, fmt.Sprintf(format, args...))
	}
	step := func(s string) {
		if opts.Progress != nil {
			opts.Progress(s)
		}
	}
	// Objects in the store.
	sizes := map[string]int64{}
	if err := r.st.List(ctx, "", func(fi store.Info) error { sizes[fi.Name] = fi.Size; return nil }); err != nil {
		return nil, fmt.Errorf("listing the repository: %w", err)
	}

	step("indexes")
	var indexes []string
	for name := range sizes {
		if strings.HasPrefix(name, "index/") {
			indexes = append(indexes, name)
		}
	}
	sort.Strings(indexes)
	deks := map[[16]byte]string{} // dek id -> an object that uses it
	for _, name := range indexes {
		b, err := r.st.Get(ctx, name)
		if err != nil {
			problem("%s: %v", name, err)
			continue
		}
		if h, err := object.ParseHeader(b); err == nil {
			deks[h.DEKID] = name
		}
		id, err := ParseObjectID(strings.TrimPrefix(name, "index/"))
		if err != nil {
			problem("%s: not a valid index name", name)
			continue
		}
		if _, err := r.readIndex(ctx, id); err != nil {
			problem("%v", err)
		}
	}

	step("snapshots")
	snaps, err := r.snapshotsLenient(ctx, problem, deks, sizes)
	if err != nil {
		return nil, err
	}
	res.Snapshots = len(snaps)

	step("trees")
	seenTrees := map[BlobID]bool{}
	usedData := map[BlobID]bool{}
	var walk func(id BlobID, where string)
	walk = func(id BlobID, where string) {
		if seenTrees[id] {
			return
		}
		seenTrees[id] = true
		t, err := r.LoadTree(ctx, id)
		if err != nil {
			problem("%s: tree %s: %v", where, id.Short(), err)
			return
		}
		for i := range t.Nodes {
			n := &t.Nodes[i]
			p := where + "/" + string(n.Name)
			switch n.Type {
			case TypeDir:
				walk(n.Subtree, p)
			case TypeFile:
				for _, c := range n.Chunks {
					if !usedData[c.ID] {
						usedData[c.ID] = true
						if !r.index.Has(BlobData, c.ID) {
							problem("%s: data blob %s is missing from the index", p, c.ID.Short())
						}
					}
				}
			}
		}
	}
	for _, s := range snaps {
		walk(s.Tree, "snapshot "+s.ShortID())
	}
	res.Trees = len(seenTrees)
	res.Blobs = len(usedData) + len(seenTrees)

	step("packs")
	packs := r.index.Packs()
	sort.Slice(packs, func(i, j int) bool { return packs[i].ID.String() < packs[j].ID.String() })
	res.Packs = len(packs)
	for _, p := range packs {
		name := packName(p.ID)
		size, ok := sizes[name]
		if !ok {
			problem("object %s is missing (the index names it)", name)
			continue
		}
		if want := object.CiphertextSize(int64(p.PlainSize)); size != want {
			problem("object %s is %v: %d bytes, the index says %d", name, object.ErrCorrupt, size, want)
			continue
		}
		h, err := object.ParseHeader(p.Header)
		if err != nil {
			problem("index entry of %s is %v", name, object.ErrCorrupt)
			continue
		}
		deks[h.DEKID] = name
		if opts.ReadData {
			r.checkPackData(ctx, p, problem)
		} else {
			r.checkPackTrailer(ctx, p, problem)
		}
	}
	for name := range sizes {
		if strings.HasPrefix(name, "data/") {
			id, err := ParseObjectID(name[strings.LastIndexByte(name, '/')+1:])
			if err != nil || packName(id) != name {
				problem("object %s is not a valid pack name", name)
				continue
			}
			if _, ok := r.index.packs[id]; !ok {
				problem("object %s is not in any index (unreferenced pack)", name)
			}
		}
	}

	step("keys")
	ids := make([][16]byte, 0, len(deks))
	for id := range deks {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return string(ids[i][:]) < string(ids[j][:]) })
	for _, id := range ids {
		if _, err := r.keys.DEK(ctx, id); err != nil {
			problem("data key of %s: %v", deks[id], err)
		}
	}
	res.DEKs = len(ids)
	return res, nil
}

func (r *Repository) snapshotsLenient(ctx context.Context, problem func(string, ...any), deks map[[16]byte]string, sizes map[string]int64) ([]*Snapshot, error) {
	var out []*Snapshot
	var names []string
	for name := range sizes {
		if strings.HasPrefix(name, "snapshots/") {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	for _, name := range names {
		id, err := ParseObjectID(strings.TrimPrefix(name, "snapshots/"))
		if err != nil {
			problem("%s: not a valid snapshot name", name)
			continue
		}
		if b, err := r.st.GetRange(ctx, name, 0, object.HeaderSize); err == nil {
			if h, err := object.ParseHeader(b); err == nil {
				deks[h.DEKID] = name
			}
		}
		s, err := r.LoadSnapshot(ctx, id)
		if err != nil {
			problem("%v", err)
			continue
		}
		out = append(out, s)
	}
	return out, nil
}

// checkPackTrailer reads the pack's trailer and compares it with the index.
func (r *Repository) checkPackTrailer(ctx context.Context, p *IndexPack, problem func(string, ...any)) {
	name := packName(p.ID)
	n := uint64(len(p.Blobs))*packBlobSize + 12
	if n > p.PlainSize {
		problem("index entry of %s is %v: trailer larger than the pack", name, object.ErrCorrupt)
		return
	}
	buf := make([]byte, n)
	if _, err := r.readPackDirect(ctx, p, buf, int64(p.PlainSize-n)); err != nil {
		problem("%v", err)
		return
	}
	r.compareTrailer(p, buf, int64(p.PlainSize-n), problem)
}

// compareTrailer parses a trailer (prefixed, in full plaintext, by data that
// starts at dataOff... only the trailer bytes are given) and compares.
func (r *Repository) compareTrailer(p *IndexPack, trailer []byte, _ int64, problem func(string, ...any)) {
	name := packName(p.ID)
	cnt := uint64(len(p.Blobs))
	if len(trailer) < 12 || string(trailer[len(trailer)-8:]) != packMagic {
		problem("object %s is %v: no pack trailer", name, object.ErrCorrupt)
		return
	}
	if got := uint64(trailer[len(trailer)-12])<<24 | uint64(trailer[len(trailer)-11])<<16 | uint64(trailer[len(trailer)-10])<<8 | uint64(trailer[len(trailer)-9]); got != cnt {
		problem("index disagrees with %s: %d blobs in the pack, %d in the index", name, got, cnt)
		return
	}
	for i := range p.Blobs {
		pb, err := parsePackBlob(trailer[uint64(i)*packBlobSize:])
		if err != nil || pb != p.Blobs[i] {
			problem("index disagrees with %s at blob %d", name, i)
			return
		}
	}
}

// checkPackData authenticates the whole pack and verifies each blob's id.
func (r *Repository) checkPackData(ctx context.Context, p *IndexPack, problem func(string, ...any)) {
	name := packName(p.ID)
	plain, err := r.openObject(ctx, name, object.KindPack)
	if err != nil {
		problem("%v", err)
		return
	}
	blobs, err := ParsePackTrailer(plain)
	if err != nil {
		problem("object %s is %v: %v", name, object.ErrCorrupt, err)
		return
	}
	if len(blobs) != len(p.Blobs) {
		problem("index disagrees with %s: %d blobs in the pack, %d in the index", name, len(blobs), len(p.Blobs))
		return
	}
	for i, pb := range blobs {
		if pb != p.Blobs[i] {
			problem("index disagrees with %s at blob %d", name, i)
			return
		}
		data := plain[pb.Offset : pb.Offset+uint64(pb.Length)]
		if r.hash.id(pb.Type, data) != pb.ID {
			problem("object %s: %s blob %s is %v (content does not match its id)", name, pb.Type, pb.ID.Short(), object.ErrCorrupt)
		}
	}
}

// readPackDirect reads pack plaintext without going through the cache.
func (r *Repository) readPackDirect(ctx context.Context, p *IndexPack, buf []byte, off int64) (int, error) {
	name := packName(p.ID)
	c, err := r.packCipher(ctx, p)
	if err != nil {
		return 0, err
	}
	ctOff, ctLen, _ := object.CipherRange(off, int64(len(buf)), int64(p.PlainSize))
	ct, err := r.st.GetRange(ctx, name, ctOff, ctLen)
	if err != nil {
		return 0, fmt.Errorf("reading %s: %w", name, err)
	}
	plain, err := c.OpenRange(nil, ct, off, int64(len(buf)), int64(p.PlainSize))
	if err != nil {
		return 0, fmt.Errorf("object %s is %w", name, object.ErrCorrupt)
	}
	if len(plain) != len(buf) {
		return 0, fmt.Errorf("object %s is %w (truncated)", name, object.ErrCorrupt)
	}
	return copy(buf, plain), nil
}
