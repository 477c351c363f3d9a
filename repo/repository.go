// Package repo holds the snapcrypt repository format above the storage
// layer: configuration, packs of content and tree blobs, indexes, trees and
// snapshot manifests, and the operations that make and read them (snapshot,
// restore, check). Encryption of objects is package object's; keys are
// package keys'.
package repo

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/restic/chunker"
	"golang.org/x/crypto/hkdf"

	"github.com/snapcrypt/snapcrypt/internal/strictjson"
	"github.com/snapcrypt/snapcrypt/keys"
	"github.com/snapcrypt/snapcrypt/repo/object"
	"github.com/snapcrypt/snapcrypt/repo/store"
)

// FormatVersion is the repository format this code reads and writes.
const FormatVersion = 1

// ErrNotRepository is returned when the location holds no repository.
var ErrNotRepository = errors.New("no snapcrypt repository")

// Config is the plaintext `config` object: all that can be read about a
// repository without a key.
type Config struct {
	Version int    `json:"version"`
	ID      string `json:"id"`
}

// Options tune a Repository. Zero values mean defaults.
type Options struct {
	// CacheBytes bounds the cache of decrypted content segments and trees.
	CacheBytes int64
	// ReadWindow, when at least a segment (64 KiB), makes large reads
	// (of directMin bytes or more: a sequential reader's) fetch the
	// ciphertext of whole windows of ReadWindow bytes of pack plaintext,
	// each with one ranged read shared by the reads that fall in it (see
	// windows). It is for stores whose cost is per request
	// (S3: every GET is a signed HTTP request the server authenticates;
	// 4 MiB rather than 1 MiB per GET cut the gateway's CPU by 40%), not
	// for the local store, whose 1 MiB direct reads are fastest as they
	// are. Rounded down to whole segments. Repository.WindowBytes bounds
	// the memory the windows may hold.
	ReadWindow int64
}

// windowMax is how many read windows a repository keeps: the kernel has
// up to two readahead windows of 8 MiB in flight for a sequential reader.
const windowMax = 6

// DefaultCacheBytes is the default bound of the decrypted-data cache.
const DefaultCacheBytes = 32 << 20

// Repository is an open repository. It is safe for concurrent use.
type Repository struct {
	st    store.Store
	cfg   Config
	keys  *keys.Keychain
	hash  hasher
	pol   chunker.Pol
	index *Index

	segs    *lru[segKey, []byte]           // decrypted 64 KiB pack segments
	edges   *lru[segKey, []byte]           // the same, left over by reads of several segments
	trees   *lru[BlobID, *Tree]            // decoded trees
	ciphers *lru[ObjectID, *object.Cipher] // per-pack ciphers
	ctBufs  *bufPool                       // ciphertext buffers of reads
	segBufs *bufPool                       // plaintext buffers of edges

	wins *windows // ciphertext of read windows; nil without (Options.ReadWindow)

	flightMu sync.Mutex
	flights  map[segKey]chan struct{} // edges being read now (see readPack)

	snapMu sync.Mutex
	snaps  map[ObjectID]*Snapshot // manifests are immutable: cache them all

	errMu    sync.Mutex
	errs     []string // recent read errors, for status
	nErrs    uint64
	indexErr error // why index objects could not be read, at the last load
}

type segKey struct {
	pack ObjectID
	seg  int64
}

// Init creates a new repository in an empty store, protected by the key m.
func Init(ctx context.Context, st store.Store, m *keys.Material) (*Repository, error) {
	empty := true
	if err := st.List(ctx, "", func(store.Info) error { empty = false; return errStop }); err != nil && !errors.Is(err, errStop) {
		return nil, fmt.Errorf("init %s: %w", st.Location(), err)
	}
	if !empty {
		return nil, fmt.Errorf("init %s: the location is not empty", st.Location())
	}
	var id [16]byte
	if _, err := rand.Read(id[:]); err != nil {
		return nil, err
	}
	cfg := Config{Version: FormatVersion, ID: hex.EncodeToString(id[:])}
	kc, err := keys.Init(ctx, st, cfg.ID, m)
	if err != nil {
		return nil, fmt.Errorf("init %s: %w", st.Location(), err)
	}
	b, _ := json.Marshal(cfg)
	if err := st.Create(ctx, "config", append(b, '\n')); err != nil {
		return nil, fmt.Errorf("init %s: writing config: %w", st.Location(), err)
	}
	return open(ctx, st, cfg, kc, Options{})
}

var errStop = errors.New("stop")

// ReadConfig reads the plaintext config object.
func ReadConfig(ctx context.Context, st store.Reader) (Config, error) {
	b, err := readBounded(ctx, st, "config", MaxConfigSize)
	if errors.Is(err, store.ErrNotExist) {
		return Config{}, fmt.Errorf("%s: %w (no config object)", locationOf(st), ErrNotRepository)
	}
	if err != nil {
		return Config{}, err
	}
	return ParseConfig(b)
}

// ParseConfig decodes the config object strictly.
func ParseConfig(b []byte) (Config, error) {
	var cfg Config
	if err := strictjson.Decode(b, &cfg); err != nil {
		return cfg, fmt.Errorf("config: %w: %v", object.ErrCorrupt, err)
	}
	if cfg.Version != FormatVersion {
		return cfg, fmt.Errorf("config: repository format version %d, this snapcrypt reads version %d", cfg.Version, FormatVersion)
	}
	if len(cfg.ID) != 32 || strings.Trim(cfg.ID, "0123456789abcdef") != "" {
		return cfg, fmt.Errorf("config: %w: bad repository id", object.ErrCorrupt)
	}
	return cfg, nil
}

func locationOf(st store.Reader) string {
	if l := store.LocationOf(st); l != "" {
		return l
	}
	return "repository"
}

// Open opens an existing repository with the given keys. At least one key
// must match a current or retiring key generation.
func Open(ctx context.Context, st store.Store, opts Options, ms ...*keys.Material) (*Repository, error) {
	cfg, err := ReadConfig(ctx, st)
	if err != nil {
		return nil, err
	}
	kc, err := keys.Open(ctx, st, cfg.ID, ms...)
	if err != nil {
		return nil, err
	}
	return open(ctx, st, cfg, kc, opts)
}

func open(ctx context.Context, st store.Store, cfg Config, kc *keys.Keychain, opts Options) (*Repository, error) {
	if opts.CacheBytes <= 0 {
		opts.CacheBytes = DefaultCacheBytes
	}
	idKey, err := kc.IDKey(ctx)
	if err != nil {
		return nil, fmt.Errorf("content-id key: %w", err)
	}
	if len(idKey) != 32 {
		return nil, fmt.Errorf("content-id key: %w: length %d", object.ErrCorrupt, len(idKey))
	}
	pol, err := chunker.DerivePolynomial(hkdf.New(newSHA256, idKey, nil, []byte("snapcrypt chunker polynomial v1")))
	if err != nil {
		return nil, fmt.Errorf("chunker polynomial: %w", err)
	}
	r := &Repository{
		st: st, cfg: cfg, keys: kc, hash: hasher{key: idKey}, pol: pol, index: newIndex(),
		segs:    newLRU[segKey, []byte](opts.CacheBytes*3/4 - edgeBytes(opts.CacheBytes)),
		edges:   newLRU[segKey, []byte](edgeBytes(opts.CacheBytes)),
		trees:   newLRU[BlobID, *Tree](opts.CacheBytes / 4),
		ciphers: newLRU[ObjectID, *object.Cipher](4096),
		ctBufs:  ciphertextBufs(),
		segBufs: newBufPool(64, object.SegmentSize),
		flights: map[segKey]chan struct{}{},
		snaps:   map[ObjectID]*Snapshot{},
	}
	if opts.ReadWindow >= object.SegmentSize {
		r.wins = newWindows(opts.ReadWindow, windowMax)
	}
	// An index that cannot be read (sealed with a data key that none of
	// the keys unwraps yet, during a rotation) does not stop the opening:
	// what needs its blobs fails later and says why (see ReadBlob).
	if _, err := r.LoadIndexPartial(ctx); err != nil {
		return nil, err
	}
	return r, nil
}

// setIndexFailures records the index objects the last load could not read,
// for the errors of blobs they would have listed.
func (r *Repository) setIndexFailures(failed map[ObjectID]error) {
	r.errMu.Lock()
	defer r.errMu.Unlock()
	r.indexErr = firstFailure(failed)
}

// missingBlob is the error for a blob the index does not know.
func (r *Repository) missingBlob(t BlobType, id BlobID) error {
	r.errMu.Lock()
	ierr := r.indexErr
	r.errMu.Unlock()
	if ierr != nil {
		return fmt.Errorf("%s blob %s is not in the index; an index object could not be read: %w", t, id.Short(), ierr)
	}
	return fmt.Errorf("%s blob %s is not in the index", t, id.Short())
}

// Config returns the repository's configuration.
func (r *Repository) Config() Config { return r.cfg }

// Keys returns the repository's keychain.
func (r *Repository) Keys() *keys.Keychain { return r.keys }

// Store returns the underlying store.
func (r *Repository) Store() store.Store { return r.st }

// Index returns the in-memory index.
func (r *Repository) Index() *Index { return r.index }

// LoadIndex reads every index object not yet merged. It is cheap to call
// again: objects already read are skipped. It fails if any index object
// cannot be read (LoadIndexPartial goes on past such objects).
func (r *Repository) LoadIndex(ctx context.Context) error {
	failed, err := r.LoadIndexPartial(ctx)
	if err != nil {
		return err
	}
	return firstFailure(failed)
}

// firstFailure returns the error of the lowest object id, or nil.
func firstFailure(failed map[ObjectID]error) error {
	var first *ObjectID
	for id := range failed {
		if first == nil || bytes.Compare(id[:], first[:]) < 0 {
			first = &id
		}
	}
	if first == nil {
		return nil
	}
	if len(failed) > 1 {
		return fmt.Errorf("%w (and %d more objects)", failed[*first], len(failed)-1)
	}
	return failed[*first]
}

func (r *Repository) readIndex(ctx context.Context, id ObjectID) ([]IndexPack, error) {
	name := indexName(id)
	plain, err := r.openObject(ctx, name, object.KindIndex)
	if err != nil {
		return nil, err
	}
	packs, err := UnmarshalIndex(plain)
	if err != nil {
		return nil, fmt.Errorf("object %s is %w: %v", name, object.ErrCorrupt, err)
	}
	return packs, nil
}

// openObject reads, authenticates and decrypts a whole sealed object.
func (r *Repository) openObject(ctx context.Context, name string, kind object.Kind) ([]byte, error) {
	b, err := readBounded(ctx, r.st, name, maxSealedSize(kind))
	if err != nil {
		return nil, err
	}
	h, err := object.ParseHeader(b)
	if err != nil {
		return nil, fmt.Errorf("object %s is %w", name, object.ErrCorrupt)
	}
	if h.Kind != kind {
		return nil, fmt.Errorf("object %s is %w (kind %d, want %d)", name, object.ErrCorrupt, h.Kind, kind)
	}
	dek, err := r.keys.DEK(ctx, h.DEKID)
	if err != nil {
		return nil, fmt.Errorf("object %s: %w", name, err)
	}
	_, plain, err := object.Open(dek, name, b)
	if err != nil {
		return nil, fmt.Errorf("object %s is %w", name, object.ErrCorrupt)
	}
	return plain, nil
}

// sealObject seals plaintext under the given DEK and writes it create-only.
func (r *Repository) sealObject(ctx context.Context, name string, kind object.Kind, dekID [16]byte, dek, plain []byte) (object.Header, int64, error) {
	h, err := object.NewHeader(kind, dekID)
	if err != nil {
		return h, 0, err
	}
	ct, err := object.Seal(dek, h, name, plain)
	if err != nil {
		return h, 0, fmt.Errorf("sealing %s: %w", name, err)
	}
	if err := r.st.Create(ctx, name, ct); err != nil {
		return h, 0, fmt.Errorf("writing %s: %w", name, err)
	}
	return h, int64(len(ct)), nil
}

// Snapshots returns every snapshot, oldest first. It fails if any manifest
// cannot be read (SnapshotsPartial goes on past such manifests).
func (r *Repository) Snapshots(ctx context.Context) ([]*Snapshot, error) {
	snaps, failed, err := r.SnapshotsPartial(ctx)
	if err != nil {
		return nil, err
	}
	if err := firstFailure(failed); err != nil {
		return nil, err
	}
	return snaps, nil
}

// LoadSnapshot reads one snapshot manifest.
func (r *Repository) LoadSnapshot(ctx context.Context, id ObjectID) (*Snapshot, error) {
	r.snapMu.Lock()
	s, ok := r.snaps[id]
	r.snapMu.Unlock()
	if ok {
		return s, nil
	}
	name := snapshotName(id)
	plain, err := r.openObject(ctx, name, object.KindSnapshot)
	if err != nil {
		return nil, err
	}
	s, err = UnmarshalSnapshot(plain)
	if err != nil {
		return nil, fmt.Errorf("object %s is %w: %v", name, object.ErrCorrupt, err)
	}
	s.ID = id
	r.snapMu.Lock()
	r.snaps[id] = s
	r.snapMu.Unlock()
	return s, nil
}

// FindSnapshot resolves "latest", a name, an id or a unique id prefix.
func (r *Repository) FindSnapshot(ctx context.Context, ref string) (*Snapshot, error) {
	snaps, err := r.Snapshots(ctx)
	if err != nil {
		return nil, err
	}
	if len(snaps) == 0 {
		return nil, fmt.Errorf("the repository has no snapshots")
	}
	if ref == "latest" {
		return snaps[len(snaps)-1], nil
	}
	var byName, byID []*Snapshot
	for _, s := range snaps {
		if s.Name == ref {
			byName = append(byName, s)
		}
		if strings.HasPrefix(s.ID.String(), strings.ToLower(ref)) {
			byID = append(byID, s)
		}
	}
	if len(byName) > 0 {
		return byName[len(byName)-1], nil // the newest of that name
	}
	switch len(byID) {
	case 1:
		return byID[0], nil
	case 0:
		return nil, fmt.Errorf("no snapshot matches %q", ref)
	}
	return nil, fmt.Errorf("snapshot id prefix %q is ambiguous (%d snapshots)", ref, len(byID))
}

// LoadTree reads and decodes a tree blob; trees are cached.
func (r *Repository) LoadTree(ctx context.Context, id BlobID) (*Tree, error) {
	if t, ok := r.trees.get(id); ok {
		return t, nil
	}
	t, size, err := r.readTree(ctx, id)
	if err != nil {
		return nil, err
	}
	r.trees.add(id, t, size+int64(len(t.Nodes))*64)
	return t, nil
}

// ReadBlob returns a whole blob's plaintext.
func (r *Repository) ReadBlob(ctx context.Context, t BlobType, id BlobID) ([]byte, error) {
	loc, ok := r.index.lookup(t, id)
	if !ok {
		return nil, r.missingBlob(t, id)
	}
	buf := make([]byte, loc.length)
	if _, err := r.readPack(ctx, loc.pack, buf, int64(loc.offset), 0); err != nil {
		return nil, err
	}
	return buf, nil
}

// ReadBlobAt fills p with the blob's plaintext from offset off and returns
// how many bytes it read (fewer only at the end of the blob). ahead asks to
// decrypt up to that many further bytes of the blob into the cache, for a
// sequential reader.
func (r *Repository) ReadBlobAt(ctx context.Context, t BlobType, id BlobID, p []byte, off, ahead int64) (int, error) {
	loc, ok := r.index.lookup(t, id)
	if !ok {
		return 0, r.missingBlob(t, id)
	}
	if off >= int64(loc.length) {
		return 0, nil
	}
	if rest := int64(loc.length) - off; int64(len(p)) > rest {
		p = p[:rest]
	}
	if max := int64(loc.length) - off - int64(len(p)); ahead > max {
		ahead = max
	}
	return r.readPack(ctx, loc.pack, p, int64(loc.offset)+off, ahead)
}

// ReadChunksAt fills p with the content of a file made of chunks, from
// offset off in chunks[0], and returns how many bytes it read (fewer only
// where the chunks end). Chunks that lie next to each other in one pack
// (as a file's chunks do when one snapshot wrote them) are read together:
// one ranged read and one pass of decryption for the whole run, which
// matters because a 1 MiB read of a file spans two chunks on average. A
// chunk missing from the index, or whose blob's length differs from the
// chunk's Length, is an error naming the blob. ahead is as for ReadBlobAt,
// for the bytes after p in the last chunk p reaches.
func (r *Repository) ReadChunksAt(ctx context.Context, chunks []Chunk, p []byte, off, ahead int64) (int, error) {
	n := 0
	for i := 0; i < len(chunks) && n < len(p); {
		loc, err := r.chunkLoc(chunks[i])
		if err != nil {
			return n, err
		}
		if off >= int64(loc.length) {
			return n, fmt.Errorf("offset %d is past the end of data blob %s (%d bytes)", off, chunks[i].ID.Short(), loc.length)
		}
		// The run: chunks i..j-1, packed end to end in loc.pack.
		start := int64(loc.offset) + off
		end := int64(loc.offset) + int64(loc.length)
		j := i + 1
		for ; j < len(chunks) && end-start < int64(len(p)-n); j++ {
			next, err := r.chunkLoc(chunks[j])
			if err != nil || next.pack != loc.pack || int64(next.offset) != end {
				break // an error is reported when the loop gets there
			}
			end += int64(next.length)
		}
		want := min(end-start, int64(len(p)-n))
		var more int64
		if j == len(chunks) || want < end-start {
			more = min(ahead, end-start-want)
		}
		got, err := r.readPack(ctx, loc.pack, p[n:n+int(want)], start, more)
		if err != nil {
			return n, err
		}
		if int64(got) != want {
			return n, fmt.Errorf("pack %s is %w: it ends %d bytes before data blob %s does", packName(loc.pack.ID), object.ErrCorrupt, want-int64(got), chunks[j-1].ID.Short())
		}
		n += got
		off = 0
		i = j
	}
	return n, nil
}

// chunkLoc finds chunk c's blob and checks it is as long as the chunk.
func (r *Repository) chunkLoc(c Chunk) (blobLoc, error) {
	loc, ok := r.index.lookup(BlobData, c.ID)
	if !ok {
		return blobLoc{}, r.missingBlob(BlobData, c.ID)
	}
	if loc.length != c.Length {
		return blobLoc{}, fmt.Errorf("data blob %s is %w: %d bytes in the index, %d in its tree entry", c.ID.Short(), object.ErrCorrupt, loc.length, c.Length)
	}
	return loc, nil
}

func (r *Repository) packCipher(ctx context.Context, p *IndexPack) (*object.Cipher, error) {
	if c, ok := r.ciphers.get(p.ID); ok {
		return c, nil
	}
	name := packName(p.ID)
	h, err := object.ParseHeader(p.Header)
	if err != nil {
		return nil, fmt.Errorf("index entry of %s is %w", name, object.ErrCorrupt)
	}
	dek, err := r.keys.DEK(ctx, h.DEKID)
	if err != nil {
		return nil, fmt.Errorf("object %s: %w", name, err)
	}
	c, err := object.NewCipher(dek, h, name)
	if err != nil {
		return nil, err
	}
	r.ciphers.add(p.ID, c, 1)
	return c, nil
}

// readPack fills p from the pack's plaintext at off and returns how many
// bytes it read (fewer only where the pack ends). Segments in the cache are
// copied; each run of the others is read with one ranged read, and the
// segments of it that p covers whole are decrypted straight into p. A
// segment that p covers only in part is cached, since the read next to
// this one (the next request of a sequential reader, the next small file
// of the pack) wants the rest. A read of several segments takes such a
// partly covered segment out of the cache when it finds it there: that is
// the sequential reader's second and last use of it; such segments have a
// small cache of their own (edges), so that a sequential reader does not
// push everything else out of the segment cache. When the read next to it
// is fetching such a segment at the same time (the kernel sends the
// requests of a sequential reader in parallel), this read waits for it
// rather than read and decrypt it too (claimEdges). ahead asks to decrypt
// up to that many bytes after p into the cache as well.
func (r *Repository) readPack(ctx context.Context, pk *IndexPack, p []byte, off, ahead int64) (int, error) {
	const seg = object.SegmentSize
	size := int64(pk.PlainSize)
	if off < 0 || off >= size || len(p) == 0 {
		return 0, nil
	}
	end := min(off+int64(len(p)), size)
	p = p[:end-off]
	first, last := off/seg, (end-1)/seg
	mine, theirs := r.claimEdges(pk, first, last, off, end)
	defer func() { r.releaseEdges(mine) }() // at once if a read fails
	run := int64(-1)                        // the first of the uncached segments before s
	for s := first; s <= last+1; s++ {
		hit := s <= last && r.copyCached(pk, s, p, off, last > first)
		if hit {
			delete(theirs, s) // nothing to wait for
		}
		later := s <= last && !hit && theirs[s] != nil
		if run >= 0 && (hit || later || s > last) {
			if err := r.openSegments(ctx, pk, run, s-1, p, off); err != nil {
				r.noteError(err)
				return 0, err
			}
			run = -1
		}
		if !hit && !later && s <= last && run < 0 {
			run = s
		}
	}
	// Then the edges another read was fetching: waited for only now, and
	// with this read's own edges released, so that two reads never wait
	// for each other.
	r.releaseEdges(mine)
	mine = nil
	for s, done := range theirs {
		select {
		case <-done:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
		if r.copyCached(pk, s, p, off, true) {
			continue
		}
		// That read failed, or the edge left the cache: read it here.
		if err := r.openSegments(ctx, pk, s, s, p, off); err != nil {
			r.noteError(err)
			return 0, err
		}
	}
	if ahead > 0 && end < size {
		// Errors are left for the read that needs those bytes.
		_ = r.fetchAhead(ctx, pk, end, ahead)
	}
	return len(p), nil
}

// claimEdges sorts the segments that a read of [off, end) of the pack,
// segments first..last, covers only in part (its edges; a read of one
// segment has none): those no other read is fetching, which it claims
// (mine), and those another read is fetching now (theirs, with the
// channel closed when that read is done). Two adjacent requests of a
// sequential reader share an edge and are served in parallel: without
// this, both read and decrypt it, 1 segment in 16 more than needed.
func (r *Repository) claimEdges(pk *IndexPack, first, last, off, end int64) (mine []segKey, theirs map[int64]chan struct{}) {
	const seg = object.SegmentSize
	if first == last {
		return nil, nil
	}
	var edges [2]int64
	n := 0
	if off > first*seg {
		edges[n] = first
		n++
	}
	if end < min((last+1)*seg, int64(pk.PlainSize)) {
		edges[n] = last
		n++
	}
	r.flightMu.Lock()
	defer r.flightMu.Unlock()
	for _, s := range edges[:n] {
		k := segKey{pk.ID, s}
		if done, ok := r.flights[k]; ok {
			if theirs == nil {
				theirs = map[int64]chan struct{}{}
			}
			theirs[s] = done
			continue
		}
		r.flights[k] = make(chan struct{})
		mine = append(mine, k)
	}
	return mine, theirs
}

// releaseEdges ends the claims of claimEdges: the edges are in the cache
// now, or the read failed.
func (r *Repository) releaseEdges(mine []segKey) {
	if len(mine) == 0 {
		return
	}
	r.flightMu.Lock()
	defer r.flightMu.Unlock()
	for _, k := range mine {
		close(r.flights[k])
		delete(r.flights, k)
	}
}

// copyCached copies what p (the plaintext from off) shares with segment s
// from the cache, and tells whether the segment was there. A read of
// several segments (big) takes a segment it covers only in part out of the
// cache of such edges; a read within one segment only looks there.
func (r *Repository) copyCached(pk *IndexPack, s int64, p []byte, off int64, big bool) bool {
	lo := s * object.SegmentSize
	hi := min(lo+object.SegmentSize, int64(pk.PlainSize))
	end := off + int64(len(p))
	k := segKey{pk.ID, s}
	a, b := max(lo, off), min(hi, end)
	copyFrom := func(data []byte) bool {
		if int64(len(data)) != hi-lo {
			return false
		}
		copy(p[a-off:b-off], data[a-lo:b-lo])
		return true
	}
	if big && (lo < off || hi > end) {
		if data, ok := r.edges.take(k); ok {
			ok = copyFrom(data)
			r.segBufs.put(data) // no one else holds it (see edges.use below)
			if ok {
				return true
			}
		}
	}
	if data, ok := r.segs.get(k); ok {
		return copyFrom(data) // segs' buffers are never reused
	}
	if big {
		return false
	}
	// The small files after a larger one in a pack start in its last
	// segment. Copied under the cache's lock: a read of several segments
	// may take the edge and reuse its buffer.
	hit := false
	r.edges.use(k, func(data []byte) { hit = copyFrom(data) })
	return hit
}

// openSegments decrypts segments first..last of the pack, read with one
// ranged read or taken from read windows (sealedSource), into p (the
// plaintext from off): each segment that p holds
// whole goes straight into it; a segment that p holds in part is decrypted
// into a buffer of its own, copied, and cached.
func (r *Repository) openSegments(ctx context.Context, pk *IndexPack, first, last int64, p []byte, off int64) error {
	const seg = object.SegmentSize
	name := packName(pk.ID)
	c, err := r.packCipher(ctx, pk)
	if err != nil {
		return err
	}
	size := int64(pk.PlainSize)
	sealedOf, release, err := r.sealedSource(ctx, pk, first, last, int64(len(p)) >= directMin)
	if err != nil {
		return err
	}
	defer release()
	end := off + int64(len(p))
	big := (end-1)/seg > off/seg // p spans several segments
	for s := first; s <= last; s++ {
		lo := s * seg
		hi := min(lo+seg, size)
		sealed := sealedOf(s)
		if sealed == nil {
			return fmt.Errorf("object %s is %w: it ends before segment %d does", name, object.ErrCorrupt, s)
		}
		if lo >= off && hi <= end {
			if _, err := c.OpenSegment(p[lo-off:lo-off], sealed, s, size); err != nil {
				return fmt.Errorf("object %s is %w", name, object.ErrCorrupt)
			}
			continue
		}
		// Cached edges go back to r.segBufs when a read takes them
		// out, to be overwritten; the segments of r.segs never do.
		d, err := c.OpenSegment(r.segBufs.get()[:0], sealed, s, size)
		if err != nil {
			return fmt.Errorf("object %s is %w", name, object.ErrCorrupt)
		}
		a, b := max(lo, off), min(hi, end)
		copy(p[a-off:b-off], d[a-lo:b-lo])
		if big {
			r.edges.add(segKey{pk.ID, s}, d, int64(len(d))+object.TagSize)
		} else {
			r.segs.add(segKey{pk.ID, s}, d, int64(len(d))+object.TagSize)
		}
	}
	return nil
}

// readCiphertext returns length bytes of the named object from off, and
// the buffer of r.ctBufs they are in (nil if none), which the caller
// returns with r.ctBufs.put when done with the bytes. A store that reads
// into the caller's buffer gets one of r.ctBufs when the range fits; a
// range of at least directMin bytes it reads around the page cache. An
// object that ends before the range does is corrupt (the index says how
// long it is).
func (r *Repository) readCiphertext(ctx context.Context, name string, off, length int64) (ct, buf []byte, err error) {
	if st, ok := store.Capable[store.RangeReader](r.st); ok && length+ctSlack <= ctBufSize {
		buf = r.ctBufs.get()
		ct, err = st.ReadRange(ctx, name, off, length, buf, length >= directMin)
	} else {
		ct, err = r.st.GetRange(ctx, name, off, length)
	}
	if err != nil {
		r.ctBufs.put(buf)
		return nil, nil, fmt.Errorf("reading %s: %w", name, err)
	}
	if int64(len(ct)) != length {
		r.ctBufs.put(buf)
		return nil, nil, shortObject(name, length-int64(len(ct)))
	}
	return ct, buf, nil
}

// shortObject is the error of an object n bytes shorter than its index
// says.
func shortObject(name string, n int64) error {
	return fmt.Errorf("object %s is %w: %d bytes short", name, object.ErrCorrupt, n)
}

const (
	// ctBufSize is the size of a pooled ciphertext buffer: the sealed
	// segments of a read of 1 MiB (the largest FUSE read) that starts
	// inside a segment, and ctSlack.
	ctBufSize = (1<<20/object.SegmentSize+1)*object.SealedSegmentSize + ctSlack
	// ctSlack is the room a direct read needs beyond the range (see
	// local.Store.ReadRange).
	ctSlack = 12 << 10
	// directMin is the smallest range read around the page cache: a
	// large read of a sequential reader. Smaller reads (small files,
	// random access) go through the page cache, whose readahead serves
	// their neighbours.
	directMin = 512 << 10
	// ctBufs is how many ciphertext buffers the process keeps: one per
	// read in flight. A sequential reader through the mount has up to 32
	// requests of 1 MiB in flight (with fs's MaxBackground of 64).
	ctBufs = 32
)

// ciphertextBufs returns the process's pool of ciphertext buffers, which
// all its repositories share: its arena is mapped once and never freed.
var ciphertextBufs = sync.OnceValue(func() *bufPool { return newDirectBufPool(ctBufs, ctBufSize) })

// fetchAhead decrypts into the cache the segments that hold [pos, pos+n)
// of the pack, from the first one not cached yet.
func (r *Repository) fetchAhead(ctx context.Context, pk *IndexPack, pos, n int64) error {
	const seg = object.SegmentSize
	size := int64(pk.PlainSize)
	end := min(pos+n, size)
	s := pos / seg
	for ; s*seg < end; s++ {
		if _, ok := r.segs.get(segKey{pk.ID, s}); !ok {
			break
		}
	}
	if s*seg >= end {
		return nil
	}
	return r.fetchSegments(ctx, pk, s, s*seg, end-s*seg, size)
}

// fetchSegments decrypts the segments covering [pos, pos+want) starting at
// segment first and caches them all.
func (r *Repository) fetchSegments(ctx context.Context, pk *IndexPack, first, pos, want, size int64) error {
	const seg = object.SegmentSize
	name := packName(pk.ID)
	c, err := r.packCipher(ctx, pk)
	if err != nil {
		return err
	}
	start := first * seg
	end := pos + want
	if end > size {
		end = size
	}
	// Stop at the first segment that is already cached.
	for s := first + 1; s*seg < end; s++ {
		if _, ok := r.segs.get(segKey{pk.ID, s}); ok {
			end = s * seg
			break
		}
	}
	if end <= start {
		end = start + 1
	}
	ctOff, ctLen, _ := object.CipherRange(start, end-start, size)
	ct, err := r.st.GetRange(ctx, name, ctOff, ctLen)
	if err != nil {
		return fmt.Errorf("reading %s: %w", name, err)
	}
	// Decrypted in place: the cached segments share ct's memory.
	segs, err := c.OpenSegments(ct, first, size)
	if err != nil {
		return fmt.Errorf("object %s is %w", name, object.ErrCorrupt)
	}
	for i, d := range segs {
		r.segs.add(segKey{pk.ID, first + int64(i)}, d, int64(len(d))+object.TagSize)
	}
	return nil
}

func (r *Repository) noteError(err error) {
	r.errMu.Lock()
	defer r.errMu.Unlock()
	r.nErrs++
	r.errs = append(r.errs, time.Now().UTC().Format(time.RFC3339)+" "+err.Error())
	if len(r.errs) > 16 {
		r.errs = r.errs[len(r.errs)-16:]
	}
}

// ReadErrors returns the count of read errors and the most recent ones.
func (r *Repository) ReadErrors() (uint64, []string) {
	r.errMu.Lock()
	defer r.errMu.Unlock()
	return r.nErrs, append([]string(nil), r.errs...)
}

// edgeBytes is the part of the segment cache that holds the segments that
// reads of several segments cover in part (see readPack): enough for the
// reads a sequential reader has in flight, at most a quarter.
func edgeBytes(cacheBytes int64) int64 {
	return min(cacheBytes*3/4/4, 4<<20)
}

// CacheStats returns the figures of the segment and tree caches (segments:
// both parts of the segment cache together).
func (r *Repository) CacheStats() map[string]CacheStats {
	segs, edges := r.segs.stats(), r.edges.stats()
	segs.Entries += edges.Entries
	segs.Bytes += edges.Bytes
	segs.Limit += edges.Limit
	segs.Hits += edges.Hits
	segs.Misses += edges.Misses
	return map[string]CacheStats{"segments": segs, "trees": r.trees.stats()}
}
