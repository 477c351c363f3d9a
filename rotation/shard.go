package rotation

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/snapcrypt/snapcrypt/internal/hexid"
	"github.com/snapcrypt/snapcrypt/internal/strictjson"
	"github.com/snapcrypt/snapcrypt/keys"
	"github.com/snapcrypt/snapcrypt/lease"
	"github.com/snapcrypt/snapcrypt/repo/object"
	"github.com/snapcrypt/snapcrypt/repo/store"
)

// Distributed re-wrap (docs/rotation.md, "Several processes"). The re-wrap
// step of a rotation is split into RewrapShards shards by the first hex
// digit of the DEK id, so shard s of generation g is the one listing
// deks/<g>/<s>. Any process that holds the new key and the old one may work
// a shard: it claims it with a shard lease (create-only, with expiry and
// renewal, like the rotation lease), re-wraps it exactly as a lone rotator
// would, and records it done with a create-only marker. The marker is only
// a hint for scheduling: before it retires the old generation the
// coordinator (the holder of the rotation lease) checks every entry of
// every shard itself and then re-lists the whole old prefix, so the
// invariants do not depend on markers, shard leases or helpers.

// RewrapShards is the number of shards the re-wrap of a rotation is split
// into: shard s (0 to 15) holds the DEK ids whose first hex digit is s.
const RewrapShards = 16

// rewrapPrefix is where shard leases and done markers live:
// leases/rewrap/<rotation id>/<shard hex digit>/<seq> and .../done.
const rewrapPrefix = "leases/rewrap/"

// shardDoneName is the last name component of a shard's done marker.
const shardDoneName = "done"

// DefaultShardPoll is how often a coordinator that waits for shards other
// processes hold looks again.
const DefaultShardPoll = 250 * time.Millisecond

func shardHex(s int) string { return strconv.FormatUint(uint64(s), 16) }

func rewrapRotPrefix(rotID string) string { return rewrapPrefix + rotID + "/" }

func shardPrefix(rotID string, s int) string { return rewrapRotPrefix(rotID) + shardHex(s) + "/" }

func shardDoneObject(rotID string, s int) string { return shardPrefix(rotID, s) + shardDoneName }

// shardDEKPrefix is the listing prefix of shard s of generation gen.
func shardDEKPrefix(gen string, s int) string { return keys.GenPrefix(gen) + shardHex(s) }

// ShardDone is the content of a shard's done marker
// leases/rewrap/<rotation id>/<shard>/done.
type ShardDone struct {
	Rotation string    `json:"rotation"` // 32 hex: the rotation record's id
	Shard    string    `json:"shard"`    // one hex digit
	Entries  int64     `json:"entries"`  // old-prefix entries the shard had
	Holder   string    `json:"holder"`   // 32 hex: the shard lease's holder
	Host     string    `json:"host"`
	PID      int       `json:"pid"`
	Finished time.Time `json:"finished"`
}

// ParseShardDone decodes a done marker strictly.
func ParseShardDone(b []byte) (ShardDone, error) {
	var m ShardDone
	if err := strictjson.Decode(b, &m); err != nil {
		return ShardDone{}, fmt.Errorf("shard done marker: %w: %v", object.ErrCorrupt, err)
	}
	if !hexid.Valid(m.Rotation, 32) || len(m.Shard) != 1 || !hexid.Valid(m.Shard, 1) || !hexid.Valid(m.Holder, 32) ||
		m.Entries < 0 || m.PID < 0 || m.Finished.IsZero() {
		return ShardDone{}, fmt.Errorf("shard done marker: %w: bad rotation, shard, holder, entries, pid or time", object.ErrCorrupt)
	}
	return m, nil
}

func (m *ShardDone) marshal() []byte {
	b, _ := json.MarshalIndent(m, "", "  ")
	return append(b, '\n')
}

// shardInfo is what one listing of leases/rewrap/<rotation id>/ says about
// a shard.
type shardInfo struct {
	done bool   // a done marker exists
	seq  uint64 // highest shard lease sequence number, 0 if none
}

// scanShards lists the shard leases and done markers of rotation rotID.
// Names that are not ours are ignored.
func (r *Rotator) scanShards(ctx context.Context, rotID string) ([RewrapShards]shardInfo, error) {
	var out [RewrapShards]shardInfo
	prefix := rewrapRotPrefix(rotID)
	err := r.st.List(ctx, prefix, func(i store.Info) error {
		shard, rest, ok := strings.Cut(strings.TrimPrefix(i.Name, prefix), "/")
		if !ok || len(shard) != 1 || !hexid.Valid(shard, 1) {
			return nil
		}
		s, _ := strconv.ParseUint(shard, 16, 8)
		if rest == shardDoneName {
			out[s].done = true
			return nil
		}
		if seq, ok := lease.ParseSeq("", rest); ok {
			out[s].seq = max(out[s].seq, seq)
		}
		return nil
	})
	if err != nil {
		return out, fmt.Errorf("rotate: listing %s: %w", prefix, err)
	}
	return out, nil
}

// shardRun is one process's part in the re-wrap of one rotation: a
// coordinator (Run, holding the rotation lease) or a helper (Help).
type shardRun struct {
	r        *Rotator
	rot      *keys.Rotation
	kTo      *keys.KEK
	kFrom    map[string]*keys.KEK // nil entries: this process lacks that old key
	opts     Options
	progress func(Progress)
	coord    bool

	buckets map[string]*[RewrapShards][]string // snapshot of each old prefix, by shard

	preMu     sync.Mutex
	preloaded map[preKey][keys.WrappedSize]byte // single old entries read ahead in the store's order (preload)
	settled   [RewrapShards]bool                // worked or checked by this run
	failed    [RewrapShards]error
	others    bool // another process worked a shard: it may delete too

	mu      sync.Mutex
	entries map[[16]byte]uint8 // DEK ids of old entries seen by this run: entryListed, entryDone
}

const (
	entryListed = 1 << iota // counted in Progress.Total
	entryDone               // counted in Progress.Done
)

func (r *Rotator) newShardRun(rot *keys.Rotation, kTo *keys.KEK, kFrom map[string]*keys.KEK, opts Options, progress func(Progress), coord bool) *shardRun {
	return &shardRun{r: r, rot: rot, kTo: kTo, kFrom: kFrom, opts: opts, progress: progress, coord: coord, entries: map[[16]byte]uint8{}}
}

// listed records that name was listed and reports whether it still needs
// work (it was not verified by this process for this rotation).
func (sr *shardRun) listed(id [16]byte) (todo bool) {
	verified := sr.r.wasVerified(sr.rot.ID, id)
	sr.mu.Lock()
	defer sr.mu.Unlock()
	st := sr.entries[id]
	if st&entryListed == 0 {
		st |= entryListed
		sr.r.total.Add(1)
	}
	if verified && st&entryDone == 0 {
		st |= entryDone
		sr.r.done.Add(1)
	}
	sr.entries[id] = st
	return !verified
}

// verified records that name has a verified twin.
func (sr *shardRun) verified(id [16]byte) {
	sr.r.setVerified(sr.rot.ID, id)
	sr.mu.Lock()
	st := sr.entries[id]
	first := st&entryDone == 0
	sr.entries[id] = st | entryDone
	sr.mu.Unlock()
	if first {
		if n := sr.r.done.Add(1); n%1024 == 0 {
			sr.r.report(sr.progress, "")
		}
	}
}

// snapshot lists each old generation's prefix once (the first time a
// shard is worked or checked in this run) and splits it by shard: one
// listing instead of one per shard (a store lists a prefix by reading the
// whole directory, or the whole of memory). Entries that appear later are
// the final pass's: every shard pass works from this snapshot.
func (sr *shardRun) snapshot(ctx context.Context) error {
	if sr.buckets != nil {
		return nil
	}
	buckets := map[string]*[RewrapShards][]string{}
	var singles []string // in the store's order, for preload
	for _, from := range sr.rot.From {
		var b [RewrapShards][]string
		p := keys.GenPrefix(from)
		err := sr.r.listNames(ctx, p, func(name string) error {
			s := entryShard(name[len(p):])
			b[s] = append(b[s], name)
			if sr.kFrom[from] != nil && !keys.IsPackName(name) {
				singles = append(singles, name)
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("rotate: listing %s: %w", p, err)
		}
		buckets[from] = &b
	}
	sr.buckets = buckets
	return sr.preload(ctx, singles)
}

// preKey names a single old entry: its generation and DEK id. The
// preload map holds no pointers, so the garbage collector never scans it
// (a daemon that rotates must not slow its readers by a large heap).
type preKey struct {
	gen [8]byte
	id  [16]byte
}

// preKeyOf parses deks/<gen>/<id>.
func preKeyOf(name string) (preKey, bool) {
	var k preKey
	rest, ok := strings.CutPrefix(name, "deks/")
	g, idHex, ok2 := strings.Cut(rest, "/")
	if !ok || !ok2 || !parseHexID(g, k.gen[:]) || !parseHexID(idHex, k.id[:]) {
		return preKey{}, false
	}
	return k, true
}

// preloadMax bounds the single old entries a coordinator reads ahead (77
// bytes each, plus a map slot).
const preloadMax = 1 << 20

// prefetchWorkers is how many batches a coordinator prefetches and reads
// at once, at most (the rotation's Workers if fewer): 4 batches of 256
// files rotated 100,000 cold single wrapped DEKs in 1.7-1.8 s, 16 in
// 1.8-2.0 s, and reading them one by one with 16 workers took 5.7-6.1 s
// (docs/bench.md). pacedPrefetch is the batch of a paced rotation.
const (
	prefetchWorkers = 4
	pacedPrefetch   = 16
)

// preload reads the single old entries ahead, all at once in the order
// the store listed them, when the store lists in an order of its own (the
// local store: directory order, in which a cold read of many small files
// is about twice as fast as in any other; shard by shard, each pass would
// skip through the directory). Only a coordinator does it (a helper works
// a few shards), and only up to preloadMax entries. Entries that fail to
// read are left to their shard pass, which reads them again.
func (sr *shardRun) preload(ctx context.Context, names []string) error {
	if _, ok := store.Capable[store.NameLister](sr.r.st); !ok || !sr.coord || len(names) > preloadMax {
		return nil
	}
	sr.preloaded = make(map[preKey][keys.WrappedSize]byte, len(names))
	valid := make([]string, 0, len(names))
	for _, name := range names {
		if _, ok := preKeyOf(name); ok {
			valid = append(valid, name) // else its shard pass calls it corrupt
		}
	}
	// Batches: each prefetched, then read. A store that prefetches has
	// the disk read a batch's files at once, and a few batches at a time
	// keep it busy; without, each worker's reads wait one after the
	// other, and more workers keep it busy. A paced rotation (a mount's
	// daemon) takes smaller batches: the pacer sleeps after each, in
	// proportion to the CPU it took.
	batch, workers := 1, sr.opts.Workers
	if _, ok := store.Capable[store.Prefetcher](sr.r.st); ok {
		batch, workers = store.MaxPrefetch, min(workers, prefetchWorkers)
		if sr.r.options().Pace != nil {
			batch = pacedPrefetch
		}
	}
	err := sr.r.parallelN(ctx, workers, (len(valid)+batch-1)/batch, func(i int) error {
		names := valid[i*batch : min((i+1)*batch, len(valid))]
		if batch > 1 {
			store.Prefetch(ctx, sr.r.st, names, keys.WrappedSize)
		}
		for _, name := range names {
			k, _ := preKeyOf(name)
			b, err := store.ReadSmall(ctx, sr.r.st, name, keys.WrappedSize)
			if err == nil && len(b) == keys.WrappedSize {
				sr.preMu.Lock()
				sr.preloaded[k] = [keys.WrappedSize]byte(b)
				sr.preMu.Unlock()
			}
		}
		return nil
	})
	if err != nil && ctx.Err() != nil {
		return err
	}
	return nil
}

// shardPass gives every entry of shard s (as of the snapshot) a verified
// twin: by re-wrapping, or with check by checking the twins another process
// made. It returns the number of entries.
func (sr *shardRun) shardPass(ctx context.Context, s int, check bool) (int64, error) {
	if err := sr.snapshot(ctx); err != nil {
		return 0, err
	}
	var n int64
	for _, from := range sr.rot.From {
		names := sr.buckets[from][s]
		n += int64(len(names))
		if err := sr.process(ctx, from, names, check); err != nil {
			return n, err
		}
	}
	return n, nil
}

// fullPass lists every old generation's whole prefix afresh and re-wraps
// what this process has not verified. It returns the number of entries.
func (sr *shardRun) fullPass(ctx context.Context) (int64, error) {
	var n int64
	for _, from := range sr.rot.From {
		var names []string
		err := sr.r.listNames(ctx, keys.GenPrefix(from), func(name string) error {
			names = append(names, name)
			return nil
		})
		if err != nil {
			return n, fmt.Errorf("rotate: listing %s: %w", keys.GenPrefix(from), err)
		}
		n += int64(len(names))
		if err := sr.process(ctx, from, names, false); err != nil {
			return n, err
		}
	}
	return n, nil
}

// entryShard is the re-wrap shard of the object rest below deks/<gen>/:
// the first hex digit of a DEK id, or of a DEK pack's random name part.
func entryShard(rest string) int {
	rest = strings.TrimPrefix(rest, "packs/")
	if rest != "" {
		if v, err := strconv.ParseUint(rest[:1], 16, 8); err == nil {
			return int(v)
		}
	}
	return 0
}
