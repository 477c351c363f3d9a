package keys

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/snapcrypt/snapcrypt/internal/hexid"
	"github.com/snapcrypt/snapcrypt/repo/object"
	"github.com/snapcrypt/snapcrypt/repo/store"
)

// DEK packs (docs/format.md, "DEK pack"). A rotation re-wraps DEKs into a
// few pack objects instead of one object per DEK: on a local file system
// each object is a file (an inode, a directory entry and a data block to
// allocate, sync and later free), and that, not the cryptography, bounded
// the re-wrap rate. A pack holds the same wrapped DEKs a rotation would
// have written as single objects, byte for byte (each with its own nonce
// and additional data), so a pack entry is exactly as strong as a single
// object, and moving one to another repository, generation or id fails the
// same way. Packs are written create-only under random names and never
// change; readers find a DEK in a generation as a single object first and
// then in that generation's packs.
//
//	deks/<generation id>/packs/<32 hex random>-<entries, decimal>
//	magic "SCWP" (4) | version 0x01 (1) | entries (4) | entries × (DEK id (16) | wrapped DEK (77))
//
// Entries are sorted by DEK id, strictly increasing.
const (
	packMagic      = "SCWP"
	packVersion    = 1
	packHeaderSize = len(packMagic) + 1 + 4
	packEntrySize  = 16 + WrappedSize
	packDir        = "packs/"

	// MaxPackEntries bounds a DEK pack (8,192 entries: 744 KiB).
	MaxPackEntries = 8192
)

// errPackFormat is wrapped by structural errors of a DEK pack.
var errPackFormat = errors.New("not a DEK pack")

// PackPrefix is where the DEK packs of generation gen live.
func PackPrefix(gen string) string { return GenPrefix(gen) + packDir }

// NewPackName names a new DEK pack of n entries under generation gen (a
// random name part: packs are never overwritten).
func NewPackName(gen string, n int) (string, error) {
	b, err := randomID(16)
	if err != nil {
		return "", err
	}
	return PackPrefix(gen) + hex.EncodeToString(b) + "-" + strconv.Itoa(n), nil
}

// ParsePackName returns the entry count a DEK pack's name states and the
// first hex digit of its random part (its re-wrap shard). name is the full
// object name below deks/<gen>/packs/.
func ParsePackName(name string) (n int, shard int, ok bool) {
	base := name[strings.LastIndexByte(name, '/')+1:]
	r, count, found := strings.Cut(base, "-")
	if !found || !hexid.Valid(r, 32) || count == "" || count[0] == '0' || len(count) > 5 ||
		strings.Trim(count, "0123456789") != "" {
		return 0, 0, false
	}
	v, err := strconv.Atoi(count)
	if err != nil || v < 1 || v > MaxPackEntries {
		return 0, 0, false
	}
	s, _ := strconv.ParseUint(r[:1], 16, 8)
	return v, int(s), true
}

// IsPackName reports whether name (below deks/) is a DEK pack's.
func IsPackName(name string) bool {
	rest := strings.TrimPrefix(name, deksPrefix)
	_, rest, _ = strings.Cut(rest, "/")
	return strings.HasPrefix(rest, packDir)
}

// ObjectEntries is how many wrapped DEKs the object name below deks/
// holds by its name: a pack's count, 1 for anything else.
func ObjectEntries(name string) int64 {
	if IsPackName(name) {
		if n, _, ok := ParsePackName(name); ok {
			return int64(n)
		}
	}
	return 1
}

// PackEntry is one wrapped DEK of a pack.
type PackEntry struct {
	ID      [16]byte
	Wrapped []byte // WrappedSize bytes
}

// MarshalPack encodes entries (sorted by id; ids must be distinct).
func MarshalPack(entries []PackEntry) []byte {
	es := slices.Clone(entries)
	slices.SortFunc(es, func(a, b PackEntry) int { return bytes.Compare(a.ID[:], b.ID[:]) })
	out := make([]byte, 0, packHeaderSize+len(es)*packEntrySize)
	out = append(out, packMagic...)
	out = append(out, packVersion)
	out = binary.BigEndian.AppendUint32(out, uint32(len(es)))
	for _, e := range es {
		if len(e.Wrapped) != WrappedSize {
			panic("keys: packing a wrapped DEK of the wrong size")
		}
		out = append(out, e.ID[:]...)
		out = append(out, e.Wrapped...)
	}
	return out
}

// ParsePack decodes a DEK pack strictly. want is the entry count its name
// states (0: not known). The entries' wrapped bytes alias b. Only the
// structure is checked: each wrapped DEK authenticates when unwrapped.
func ParsePack(b []byte, want int) ([]PackEntry, error) {
	if len(b) < packHeaderSize || string(b[:len(packMagic)]) != packMagic {
		return nil, fmt.Errorf("%w: bad magic", errPackFormat)
	}
	if v := b[len(packMagic)]; v != packVersion {
		return nil, fmt.Errorf("%w: version %d, this snapcrypt reads version %d", errPackFormat, v, packVersion)
	}
	n := int(binary.BigEndian.Uint32(b[len(packMagic)+1:]))
	if n < 1 || n > MaxPackEntries || (want > 0 && n != want) {
		return nil, fmt.Errorf("%w: %d entries (name says %d, at most %d)", errPackFormat, n, want, MaxPackEntries)
	}
	if len(b) != packHeaderSize+n*packEntrySize {
		return nil, fmt.Errorf("%w: %d bytes for %d entries", errPackFormat, len(b), n)
	}
	out := make([]PackEntry, n)
	for i := range out {
		e := b[packHeaderSize+i*packEntrySize:][:packEntrySize]
		copy(out[i].ID[:], e)
		out[i].Wrapped = e[16:packEntrySize:packEntrySize]
		if i > 0 && bytes.Compare(out[i-1].ID[:], out[i].ID[:]) >= 0 {
			return nil, fmt.Errorf("%w: entries out of order at %d", errPackFormat, i)
		}
	}
	return out, nil
}

// packRef locates one entry: pack number (in packIndex.names) and entry.
type packRef struct {
	pack, entry uint32
}

// packIndex maps the DEK ids of one generation's packs to their entries.
// It holds 24 bytes and a map slot per packed DEK, never the wrapped bytes
// (a lookup reads the 77 bytes of its entry), and grows only with the
// packs the generation has: it is bounded by the repository, like the
// content index.
type packIndex struct {
	loading sync.Mutex // one load at a time; lookups do not wait for it

	mu     sync.Mutex
	listed bool
	names  []string
	seen   map[string]bool
	where  map[[16]byte]packRef
	extra  map[[16]byte][]packRef // further entries of an id (a pack written again after damage)
	bad    map[string]error       // packs that do not parse, by name
}

// packIndex returns the index of generation gen's packs, made empty.
func (k *Keychain) packIndex(gen string) *packIndex {
	k.packsMu.Lock()
	defer k.packsMu.Unlock()
	p := k.packs[gen]
	if p == nil {
		p = &packIndex{seen: map[string]bool{}, where: map[[16]byte]packRef{}}
		k.packs[gen] = p
	}
	return p
}

// dropPackIndexes forgets the indexes of generations other than keep.
func (k *Keychain) dropPackIndexes(keep func(gen string) bool) {
	k.packsMu.Lock()
	defer k.packsMu.Unlock()
	for g := range k.packs {
		if !keep(g) {
			delete(k.packs, g)
		}
	}
}

// load lists the generation's packs (the first time, or again with relist)
// and reads the ones not yet indexed. A pack that does not parse is
// remembered in bad; one that is gone (deleted after a retirement) is
// skipped.
//
// Only p.mu guards the maps, and never across store calls: a load (by a
// background rotation, perhaps at low priority) does not hold up lookups.
func (p *packIndex) load(ctx context.Context, st store.Reader, gen string, relist bool) error {
	if !relist && p.isListed() {
		return nil
	}
	p.loading.Lock()
	defer p.loading.Unlock()
	if !relist && p.isListed() {
		return nil // another load did it meanwhile
	}
	var fresh []string
	err := st.List(ctx, PackPrefix(gen), func(i store.Info) error {
		fresh = append(fresh, i.Name)
		return nil
	})
	if err != nil {
		return fmt.Errorf("listing %s: %w", PackPrefix(gen), err)
	}
	for _, name := range fresh {
		if p.hasSeen(name) {
			continue
		}
		n, _, ok := ParsePackName(name)
		if !ok {
			p.markSeen(name, nil, nil) // not ours: ignored like any stray object
			continue
		}
		b, err := ReadPack(ctx, st, name, n)
		if errors.Is(err, store.ErrNotExist) {
			continue
		}
		if errors.Is(err, object.ErrCorrupt) {
			p.markSeen(name, nil, err)
			continue
		}
		if err != nil {
			return fmt.Errorf("reading %s: %w", name, err)
		}
		es, err := ParsePack(b, n)
		if err != nil {
			p.markSeen(name, nil, fmt.Errorf("object %s is %w: %v", name, object.ErrCorrupt, err))
			continue
		}
		p.markSeen(name, es, nil)
	}
	p.mu.Lock()
	p.listed = true
	p.mu.Unlock()
	return nil
}

func (p *packIndex) isListed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.listed
}

func (p *packIndex) hasSeen(name string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.seen[name]
}

// markSeen records a pack: its entries, or why it does not parse.
func (p *packIndex) markSeen(name string, es []PackEntry, bad error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.seen[name] {
		return
	}
	p.seen[name] = true
	if bad != nil {
		if p.bad == nil {
			p.bad = map[string]error{}
		}
		p.bad[name] = bad
		return
	}
	if es != nil {
		p.addLocked(name, es)
	}
}

// add indexes a pack this process wrote and verified.
func (p *packIndex) add(name string, es []PackEntry) { p.markSeen(name, es, nil) }

func (p *packIndex) addLocked(name string, es []PackEntry) {
	pn := uint32(len(p.names))
	p.names = append(p.names, name)
	for i, e := range es {
		ref := packRef{pn, uint32(i)}
		if _, dup := p.where[e.ID]; dup {
			if p.extra == nil {
				p.extra = map[[16]byte][]packRef{}
			}
			p.extra[e.ID] = append(p.extra[e.ID], ref)
			continue
		}
		p.where[e.ID] = ref
	}
}

// lookup returns where id's entries are (object name and byte offset) and
// the error of a pack that did not parse, if any (the id may be there).
func (p *packIndex) lookup(id [16]byte) (names []string, offs []int64, bad error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	refs := p.extra[id]
	if r, ok := p.where[id]; ok {
		refs = append([]packRef{r}, refs...)
	}
	for _, r := range refs {
		names = append(names, p.names[r.pack])
		offs = append(offs, int64(packHeaderSize)+int64(r.entry)*int64(packEntrySize)+16)
	}
	for _, err := range p.bad {
		bad = err
		break
	}
	return names, offs, bad
}

// Copy is one wrapped copy of a DEK under a generation: the object it is
// in (a single wrapped DEK or a DEK pack) and its bytes.
type Copy struct {
	Object  string
	Wrapped []byte
}

// ReadPack reads a DEK pack of n entries (by its name), never more than
// its size plus one byte: a larger object is an error wrapping object.ErrCorrupt
// that names it.
func ReadPack(ctx context.Context, st store.Reader, name string, n int) ([]byte, error) {
	b, err := store.GetBounded(ctx, st, name, int64(packHeaderSize+n*packEntrySize))
	if errors.Is(err, store.ErrTooLarge) {
		return nil, fmt.Errorf("object %s is %w: %v", name, object.ErrCorrupt, err)
	}
	return b, err
}

// copiesIn returns every wrapped copy of DEK id under generation gen: the
// single object deks/<gen>/<id> if it exists (looked for only with
// single), then the pack entries (indexing the packs on first use, or
// listing them again with relist). bad is the error of a pack that did
// not parse (it may hold the id).
func (k *Keychain) copiesIn(ctx context.Context, gen [8]byte, id [16]byte, relist, single bool) (cs []Copy, bad error, err error) {
	if single {
		name := dekName(gen, id)
		b, err := ReadWrapped(ctx, k.st, name)
		switch {
		case err == nil:
			cs = append(cs, Copy{name, b})
		case errors.Is(err, object.ErrCorrupt):
			bad = err
		case !errors.Is(err, store.ErrNotExist):
			return nil, nil, err
		}
	}
	g := hex.EncodeToString(gen[:])
	p := k.packIndex(g)
	if err := p.load(ctx, k.st, g, relist); err != nil {
		return nil, nil, err
	}
	names, offs, pbad := p.lookup(id)
	if bad == nil {
		bad = pbad
	}
	for i, pn := range names {
		w, err := k.st.GetRange(ctx, pn, offs[i], int64(WrappedSize))
		if errors.Is(err, store.ErrNotExist) {
			continue // deleted: the generation was retired meanwhile
		}
		if err != nil {
			return nil, nil, err
		}
		cs = append(cs, Copy{pn, w})
	}
	return cs, bad, nil
}

// ListDEKs calls fn with the id of every wrapped DEK below deks/<gen>/, in
// no particular order: single objects and the entries of DEK packs (read
// from st). An id with several copies comes once per copy. A pack that
// does not parse is an error naming it. For tools and tests that inspect
// a repository; a Keychain finds DEKs by id without listing.
func ListDEKs(ctx context.Context, st store.Reader, gen string, fn func(id [16]byte) error) error {
	var packs []string
	err := st.List(ctx, GenPrefix(gen), func(i store.Info) error {
		if IsPackName(i.Name) {
			packs = append(packs, i.Name)
			return nil
		}
		id, err := parseDEKID(i.Name[strings.LastIndexByte(i.Name, '/')+1:])
		if err != nil {
			return fmt.Errorf("unexpected object %s: %w", i.Name, err)
		}
		return fn(id)
	})
	if err != nil {
		return err
	}
	for _, name := range packs {
		n, _, ok := ParsePackName(name)
		if !ok {
			return fmt.Errorf("unexpected object %s: %w", name, object.ErrCorrupt)
		}
		b, err := ReadPack(ctx, st, name, n)
		if errors.Is(err, store.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		es, err := ParsePack(b, n)
		if err != nil {
			return fmt.Errorf("object %s is %w: %v", name, object.ErrCorrupt, err)
		}
		for _, e := range es {
			if err := fn(e.ID); err != nil {
				return err
			}
		}
	}
	return nil
}
