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
//
// Unused space is not a problem: packs that no index names (an
// interrupted snapshot's, or one still in flight) and blobs of indexed
// packs that no snapshot reaches (a snapshot that wrote its index but no
// manifest, forgotten snapshots, a blob stored twice) are counted, for
// prune (docs/prune.md) to reclaim.
type CheckResult struct {
	Snapshots, Trees, Packs, Blobs int
	DEKs                           int
	// UnindexedPacks and UnindexedBytes count the objects below data/
	// that no index names, and their stored size.
	UnindexedPacks int   `json:"unindexed_packs"`
	UnindexedBytes int64 `json:"unindexed_bytes"`
	// UnreachableBlobs and UnreachableBytes count the blobs of indexed
	// packs that no snapshot reaches (a copy of a blob other than the one
	// the index uses counts too), and their plaintext length. When a
	// snapshot or tree could not be read (a problem), they include what
	// it would have reached.
	UnreachableBlobs int   `json:"unreachable_blobs"`
	UnreachableBytes int64 `json:"unreachable_bytes"`
	Problems         []string
}

// Check verifies that every object a snapshot references exists, every DEK
// named by an object unwraps, and that the index agrees with the packs. It
// returns an error only when it cannot run at all.
func (r *Repository) Check(ctx context.Context, opts CheckOptions) (*CheckResult, error) {
	c := &checker{r: r, opts: opts, res: &CheckResult{}, deks: map[[16]byte]string{}, sizes: map[string]int64{}, reached: map[blobKey]bool{}}
	// The keyring's history (bad epochs, a rewritten history).
	for _, p := range r.keys.Problems() {
		c.problem("%v", p)
	}
	if err := r.st.List(ctx, "", func(fi store.Info) error { c.sizes[fi.Name] = fi.Size; return nil }); err != nil {
		return nil, fmt.Errorf("listing the repository: %w", err)
	}
	c.step("indexes")
	c.indexes(ctx)
	c.step("snapshots")
	snaps := c.snapshots(ctx)
	c.res.Snapshots = len(snaps)
	c.step("trees")
	if err := c.trees(ctx, snaps); err != nil {
		return nil, err
	}
	c.step("packs")
	c.packs(ctx)
	c.unindexedPacks()
	c.unreachableBlobs()
	c.step("keys")
	c.keys(ctx)
	return c.res, nil
}

// checker is one run of Check: what it found so far.
type checker struct {
	r     *Repository
	opts  CheckOptions
	res   *CheckResult
	deks  map[[16]byte]string // dek id -> an object that uses it
	sizes map[string]int64    // every object in the store
	// reached holds every blob the walk of the snapshots reached.
	reached map[blobKey]bool
}

func (c *checker) problem(format string, args ...any) {
	c.res.Problems = append(c.res.Problems, fmt.Sprintf(format, args...))
}

func (c *checker) step(s string) {
	if c.opts.Progress != nil {
		c.opts.Progress(s)
	}
}

// named returns the names of the listed objects below prefix, sorted.
func (c *checker) named(prefix string) []string {
	var names []string
	for name := range c.sizes {
		if strings.HasPrefix(name, prefix) {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	return names
}

// indexes reads every index object.
func (c *checker) indexes(ctx context.Context) {
	for _, name := range c.named("index/") {
		if b, err := c.r.st.GetRange(ctx, name, 0, object.HeaderSize); err == nil {
			if h, err := object.ParseHeader(b); err == nil {
				c.deks[h.DEKID] = name
			}
		}
		id, err := ParseObjectID(strings.TrimPrefix(name, "index/"))
		if err != nil {
			c.problem("%s: not a valid index name", name)
			continue
		}
		if _, err := c.r.readIndex(ctx, id); err != nil {
			c.problem("%v", err)
		}
	}
}

// snapshots reads every manifest and returns those that could be read.
func (c *checker) snapshots(ctx context.Context) []*Snapshot {
	var out []*Snapshot
	for _, name := range c.named("snapshots/") {
		id, err := ParseObjectID(strings.TrimPrefix(name, "snapshots/"))
		if err != nil {
			c.problem("%s: not a valid snapshot name", name)
			continue
		}
		if b, err := c.r.st.GetRange(ctx, name, 0, object.HeaderSize); err == nil {
			if h, err := object.ParseHeader(b); err == nil {
				c.deks[h.DEKID] = name
			}
		}
		s, err := c.r.LoadSnapshot(ctx, id)
		if err != nil {
			c.problem("%v", err)
			continue
		}
		out = append(out, s)
	}
	return out
}

// trees walks every snapshot's trees (Walk) and checks that each data blob
// they name is in the index.
func (c *checker) trees(ctx context.Context, snaps []*Snapshot) error {
	return c.r.Walk(ctx, snaps, func(x Reached) error {
		switch {
		case x.Err != nil:
			c.problem("%s: %v", x.Path, x.Err)
		case x.Type == BlobTree:
			c.reached[blobKey{x.Type, x.ID}] = true
			c.res.Trees++
			c.res.Blobs++
		default:
			c.reached[blobKey{x.Type, x.ID}] = true
			c.res.Blobs++
			if !c.r.index.Has(BlobData, x.ID) {
				c.problem("%s: data blob %s is missing from the index", x.Path, x.ID.Short())
			}
		}
		return nil
	})
}

// packs checks every pack the index names against the store: its size, its
// header and its trailer (or, with ReadData, all its bytes).
func (c *checker) packs(ctx context.Context) {
	packs := c.r.index.Packs()
	sort.Slice(packs, func(i, j int) bool { return packs[i].ID.String() < packs[j].ID.String() })
	c.res.Packs = len(packs)
	for _, p := range packs {
		name := packName(p.ID)
		size, ok := c.sizes[name]
		if !ok {
			c.problem("object %s is missing (the index names it)", name)
			continue
		}
		if want := object.CiphertextSize(int64(p.PlainSize)); size != want {
			c.problem("object %s is %v: %d bytes, the index says %d", name, object.ErrCorrupt, size, want)
			continue
		}
		h, err := object.ParseHeader(p.Header)
		if err != nil {
			c.problem("index entry of %s is %v", name, object.ErrCorrupt)
			continue
		}
		c.deks[h.DEKID] = name
		if c.opts.ReadData {
			c.r.checkPackData(ctx, p, c.problem)
		} else {
			c.r.checkPackTrailer(ctx, p, c.problem)
		}
	}
}

// unindexedPacks counts the objects below data/ that no index names:
// unused space, not a problem.
func (c *checker) unindexedPacks() {
	for _, name := range c.named("data/") {
		id, err := ParseObjectID(name[strings.LastIndexByte(name, '/')+1:])
		if err != nil || packName(id) != name {
			c.problem("object %s is not a valid pack name", name)
			continue
		}
		if !c.r.index.knows(id) {
			c.res.UnindexedPacks++
			c.res.UnindexedBytes += c.sizes[name]
		}
	}
}

// unreachableBlobs counts the blobs of indexed packs that the walk did not
// reach, or that it reached in another pack (the copy the index uses).
func (c *checker) unreachableBlobs() {
	for _, p := range c.r.index.Packs() {
		for _, pb := range p.Blobs {
			k := blobKey{pb.Type, pb.ID}
			if c.reached[k] {
				if l, ok := c.r.index.lookup(pb.Type, pb.ID); ok && l.pack == p && l.offset == pb.Offset {
					continue
				}
			}
			c.res.UnreachableBlobs++
			c.res.UnreachableBytes += int64(pb.Length)
		}
	}
}

// keys unwraps every DEK an object names.
func (c *checker) keys(ctx context.Context) {
	ids := make([][16]byte, 0, len(c.deks))
	for id := range c.deks {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return string(ids[i][:]) < string(ids[j][:]) })
	for _, id := range ids {
		if _, err := c.r.keys.DEK(ctx, id); err != nil {
			c.problem("data key of %s: %v", c.deks[id], err)
		}
	}
	c.res.DEKs = len(ids)
}

// checkPackTrailer reads the pack's trailer and compares it with the index.
func (r *Repository) checkPackTrailer(ctx context.Context, p *IndexPack, problem func(string, ...any)) {
	name := packName(p.ID)
	n := uint64(len(p.Blobs)*entrySize(entryVersion(p.Blobs))) + 12
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
	v := entryVersion(p.Blobs)
	magic := packMagic
	if v == 2 {
		magic = packMagicV2
	}
	if len(trailer) < 12 || string(trailer[len(trailer)-8:]) != magic {
		problem("object %s is %v: no pack trailer", name, object.ErrCorrupt)
		return
	}
	if got := uint64(trailer[len(trailer)-12])<<24 | uint64(trailer[len(trailer)-11])<<16 | uint64(trailer[len(trailer)-10])<<8 | uint64(trailer[len(trailer)-9]); got != cnt {
		problem("index disagrees with %s: %d blobs in the pack, %d in the index", name, got, cnt)
		return
	}
	for i := range p.Blobs {
		es := entrySize(v)
		pb, err := parsePackBlob(trailer[i*es:(i+1)*es], v)
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
		if pb.Zstd {
			if data, err = decompressBlob(nil, data, pb.Plain); err != nil {
				problem("object %s: %s blob %s is %v: %v", name, pb.Type, pb.ID.Short(), object.ErrCorrupt, err)
				continue
			}
		}
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
