package keys

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/snapcrypt/snapcrypt/internal/strictjson"
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
func shardDEKPrefix(gen string, s int) string { return genPrefix(gen) + shardHex(s) }

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
	if !isHex(m.Rotation, 32) || len(m.Shard) != 1 || !isHex(m.Shard, 1) || !isHex(m.Holder, 32) ||
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
func (k *Keychain) scanShards(ctx context.Context, rotID string) ([RewrapShards]shardInfo, error) {
	var out [RewrapShards]shardInfo
	prefix := rewrapRotPrefix(rotID)
	err := k.st.List(ctx, prefix, func(i store.Info) error {
		shard, rest, ok := strings.Cut(strings.TrimPrefix(i.Name, prefix), "/")
		if !ok || len(shard) != 1 || !isHex(shard, 1) {
			return nil
		}
		s, _ := strconv.ParseUint(shard, 16, 8)
		if rest == shardDoneName {
			out[s].done = true
			return nil
		}
		if seq, err := strconv.ParseUint(rest, 10, 64); err == nil && len(rest) == 20 {
			out[s].seq = max(out[s].seq, seq)
		}
		return nil
	})
	if err != nil {
		return out, fmt.Errorf("rotate: listing %s: %w", prefix, err)
	}
	return out, nil
}

// ShardStatus is one re-wrap shard of the rotation in progress, in a Status.
type ShardStatus struct {
	Shard int
	Done  bool   // a done marker exists (a hint: the coordinator checks anyway)
	Lease *Lease // the live shard lease, if any
}

// shardStatus reports the shards of rotation rotID.
func (k *Keychain) shardStatus(ctx context.Context, rotID string) ([]ShardStatus, error) {
	infos, err := k.scanShards(ctx, rotID)
	if err != nil {
		return nil, err
	}
	out := make([]ShardStatus, 0, RewrapShards)
	for s, in := range infos {
		ss := ShardStatus{Shard: s, Done: in.done}
		if in.seq > 0 && !in.done {
			l, err := readLease(ctx, k.st, leaseNameAt(shardPrefix(rotID, s), in.seq))
			if err != nil {
				return nil, err
			}
			if l != nil && k.now().Before(l.Expires) {
				ss.Lease = l
			}
		}
		out = append(out, ss)
	}
	return out, nil
}

// shardRun is one process's part in the re-wrap of one rotation: a
// coordinator (RunRotation, holding the rotation lease) or a helper
// (HelpRotation).
type shardRun struct {
	k        *Keychain
	rot      *Rotation
	kTo      *kek
	kFrom    map[string]*kek // nil entries: this process lacks that old key
	opts     RotateOptions
	progress func(Progress)
	coord    bool

	buckets map[string]*[RewrapShards][]string // snapshot of each old prefix, by shard

	preMu     sync.Mutex
	preloaded map[preKey][wrappedSize]byte // single old entries read ahead in the store's order (preload)
	settled   [RewrapShards]bool           // worked or checked by this run
	failed    [RewrapShards]error
	others    bool // another process worked a shard: it may delete too

	mu      sync.Mutex
	entries map[[16]byte]uint8 // DEK ids of old entries seen by this run: entryListed, entryDone
}

const (
	entryListed = 1 << iota // counted in Progress.Total
	entryDone               // counted in Progress.Done
)

func (k *Keychain) newShardRun(rot *Rotation, kTo *kek, kFrom map[string]*kek, opts RotateOptions, progress func(Progress), coord bool) *shardRun {
	return &shardRun{k: k, rot: rot, kTo: kTo, kFrom: kFrom, opts: opts, progress: progress, coord: coord, entries: map[[16]byte]uint8{}}
}

// listed records that name was listed and reports whether it still needs
// work (it was not verified by this process for this rotation).
func (r *shardRun) listed(id [16]byte) (todo bool) {
	verified := r.k.wasVerified(r.rot.ID, id)
	r.mu.Lock()
	defer r.mu.Unlock()
	st := r.entries[id]
	if st&entryListed == 0 {
		st |= entryListed
		r.k.rot.total.Add(1)
	}
	if verified && st&entryDone == 0 {
		st |= entryDone
		r.k.rot.done.Add(1)
	}
	r.entries[id] = st
	return !verified
}

// verified records that name has a verified twin.
func (r *shardRun) verified(id [16]byte) {
	r.k.setVerified(r.rot.ID, id)
	r.mu.Lock()
	st := r.entries[id]
	first := st&entryDone == 0
	r.entries[id] = st | entryDone
	r.mu.Unlock()
	if first {
		if n := r.k.rot.done.Add(1); n%1024 == 0 {
			r.k.report(r.progress, "")
		}
	}
}

// snapshot lists each old generation's prefix once (the first time a
// shard is worked or checked in this run) and splits it by shard: one
// listing instead of one per shard (a store lists a prefix by reading the
// whole directory, or the whole of memory). Entries that appear later are
// the final pass's: every shard pass works from this snapshot.
func (r *shardRun) snapshot(ctx context.Context) error {
	if r.buckets != nil {
		return nil
	}
	buckets := map[string]*[RewrapShards][]string{}
	var singles []string // in the store's order, for preload
	for _, from := range r.rot.From {
		var b [RewrapShards][]string
		p := genPrefix(from)
		err := r.k.listNames(ctx, p, func(name string) error {
			s := entryShard(name[len(p):])
			b[s] = append(b[s], name)
			if r.kFrom[from] != nil && !isPackName(name) {
				singles = append(singles, name)
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("rotate: listing %s: %w", p, err)
		}
		buckets[from] = &b
	}
	r.buckets = buckets
	return r.preload(ctx, singles)
}

// smallReader is a store that reads a tiny object cheaper than Get (the
// local store: three system calls).
type smallReader interface {
	ReadSmall(ctx context.Context, name string, max int) ([]byte, error)
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
	rest, ok := strings.CutPrefix(name, deksPrefix)
	g, idHex, ok2 := strings.Cut(rest, "/")
	if !ok || !ok2 {
		return k, false
	}
	gen, err := parseGenID(g)
	if err != nil {
		return k, false
	}
	id, err := parseDEKID(idHex)
	if err != nil {
		return k, false
	}
	k.gen, k.id = gen, id
	return k, true
}

// preloadMax bounds the single old entries a coordinator reads ahead (77
// bytes each, plus a map slot).
const preloadMax = 1 << 20

// preload reads the single old entries ahead, all at once in the order
// the store listed them, when the store lists in an order of its own (the
// local store: directory order, in which a cold read of many small files
// is about twice as fast as in any other; shard by shard, each pass would
// skip through the directory). Only a coordinator does it (a helper works
// a few shards), and only up to preloadMax entries. Entries that fail to
// read are left to their shard pass, which reads them again.
func (r *shardRun) preload(ctx context.Context, names []string) error {
	if _, ok := r.k.st.(nameLister); !ok || !r.coord || len(names) > preloadMax {
		return nil
	}
	r.preloaded = make(map[preKey][wrappedSize]byte, len(names))
	err := r.k.parallelN(ctx, r.opts.Workers, len(names), func(i int) error {
		k, ok := preKeyOf(names[i])
		if !ok {
			return nil
		}
		var b []byte
		var err error
		if sr, ok := r.k.st.(smallReader); ok {
			b, err = sr.ReadSmall(ctx, names[i], wrappedSize)
		} else {
			b, err = r.k.st.Get(ctx, names[i])
		}
		if err == nil && len(b) == wrappedSize {
			r.preMu.Lock()
			r.preloaded[k] = [wrappedSize]byte(b)
			r.preMu.Unlock()
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
func (r *shardRun) shardPass(ctx context.Context, s int, check bool) (int64, error) {
	if err := r.snapshot(ctx); err != nil {
		return 0, err
	}
	var n int64
	for _, from := range r.rot.From {
		names := r.buckets[from][s]
		n += int64(len(names))
		if err := r.process(ctx, from, names, check); err != nil {
			return n, err
		}
	}
	return n, nil
}

// fullPass lists every old generation's whole prefix afresh and re-wraps
// what this process has not verified. It returns the number of entries.
func (r *shardRun) fullPass(ctx context.Context) (int64, error) {
	var n int64
	for _, from := range r.rot.From {
		var names []string
		err := r.k.listNames(ctx, genPrefix(from), func(name string) error {
			names = append(names, name)
			return nil
		})
		if err != nil {
			return n, fmt.Errorf("rotate: listing %s: %w", genPrefix(from), err)
		}
		n += int64(len(names))
		if err := r.process(ctx, from, names, false); err != nil {
			return n, err
		}
	}
	return n, nil
}

// entryShard is the re-wrap shard of the object rest below deks/<gen>/:
// the first hex digit of a DEK id, or of a DEK pack's random name part.
func entryShard(rest string) int {
	rest = strings.TrimPrefix(rest, packDir)
	if rest != "" {
		if v, err := strconv.ParseUint(rest[:1], 16, 8); err == nil {
			return int(v)
		}
	}
	return 0
}

// oldEntry is one wrapped DEK below deks/<from>/: a single object or an
// entry of a DEK pack.
type oldEntry struct {
	id      [16]byte
	object  string // the single object or the pack it is in
	wrapped []byte // a pack entry's bytes; nil for a single (read when needed)
}

// expand turns listed names below deks/<from>/ into entries, reading DEK
// packs. A pack that is gone was deleted by whoever finished the rotation.
func (r *shardRun) expand(ctx context.Context, from string, names []string) ([]oldEntry, error) {
	out := make([]oldEntry, 0, len(names))
	var first error
	fromGen, genErr := parseGenID(from)
	for _, name := range names {
		if !isPackName(name) {
			id, err := parseDEKID(name[strings.LastIndexByte(name, '/')+1:])
			if err != nil {
				if first == nil {
					first = fmt.Errorf("rotate: unexpected object %s: %w", name, object.ErrCorrupt)
				}
				continue
			}
			var w []byte
			if genErr == nil {
				r.preMu.Lock()
				if b, ok := r.preloaded[preKey{fromGen, id}]; ok {
					w = b[:]
				}
				r.preMu.Unlock()
			}
			out = append(out, oldEntry{id: id, object: name, wrapped: w})
			continue
		}
		n, _, ok := parsePackName(name)
		var es []packEntry
		b, err := r.k.st.Get(ctx, name)
		switch {
		case errors.Is(err, store.ErrNotExist):
			continue
		case err != nil:
			err = fmt.Errorf("rotate: %w", err)
		case !ok:
			err = fmt.Errorf("rotate: unexpected object %s: %w", name, object.ErrCorrupt)
		default:
			if es, err = parsePack(b, n); err != nil {
				err = fmt.Errorf("rotate: object %s is %w: %v", name, object.ErrCorrupt, err)
			}
		}
		if err != nil {
			if first == nil {
				first = err
			}
			continue
		}
		for _, e := range es {
			out = append(out, oldEntry{id: e.id, object: name, wrapped: e.wrapped})
		}
	}
	return out, first
}

// singles lists the single wrapped-DEK objects of generation gen.
func (k *Keychain) singles(ctx context.Context, gen string) (map[[16]byte]bool, error) {
	out := map[[16]byte]bool{}
	err := k.listNames(ctx, genPrefix(gen), func(name string) error {
		if id, err := parseDEKID(name[len(genPrefix(gen)):]); err == nil {
			out[id] = true
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("rotate: listing %s: %w", genPrefix(gen), err)
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
// twins go into DEK packs of up to maxPackEntries, each read back and
// verified entry by entry before any of its entries counts as done.
func (r *shardRun) process(ctx context.Context, from string, names []string, check bool) error {
	entries, perr := r.expand(ctx, from, names)
	var todo []oldEntry
	for _, e := range entries {
		if r.listed(e.id) {
			todo = append(todo, e)
		}
	}
	if len(todo) == 0 {
		return perr
	}
	// Index the new generation's packs afresh: other processes may have
	// written some since.
	to := hex.EncodeToString(r.kTo.gen[:])
	if err := r.k.packIndex(to).load(ctx, r.k.st, to, true); err != nil {
		return fmt.Errorf("rotate: %w", err)
	}
	singles, err := r.k.singles(ctx, to)
	if err != nil {
		return err
	}
	kFrom := r.kFrom[from]
	var mu sync.Mutex
	var fresh []rewrapped
	err = r.k.parallelN(ctx, r.opts.Workers, len(todo), func(i int) error {
		e := todo[i]
		rw, checked, err := r.k.prepareTwin(ctx, e, kFrom, r.kTo, singles, check)
		if err != nil {
			return err
		}
		if rw != nil {
			mu.Lock()
			fresh = append(fresh, *rw)
			mu.Unlock()
			return nil
		}
		if checked {
			r.k.rot.checked.Add(1)
		}
		r.verified(e.id)
		return r.k.step(PointRewrap)
	})
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
		n := min(len(fresh), maxPackEntries)
		if werr := r.writeTwins(ctx, fresh[:n]); werr != nil {
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

// writeTwins packs batch under the new generation, reads the pack back and
// verifies every entry against the DEK it must hold; only then does each
// entry count as done.
func (r *shardRun) writeTwins(ctx context.Context, batch []rewrapped) error {
	es := make([]packEntry, len(batch))
	for i, rw := range batch {
		es[i] = packEntry{id: rw.e.id, wrapped: rw.wrapped}
	}
	name, got, err := r.k.writePack(ctx, r.kTo, es)
	if err != nil {
		return fmt.Errorf("rotate: %w", err)
	}
	byID := make(map[[16]byte][]byte, len(got))
	for _, e := range got {
		byID[e.id] = e.wrapped
	}
	for _, rw := range batch {
		if err := r.kTo.verifyWrapped(r.k.rid, rw.e.id, byID[rw.e.id], rw.dek); err != nil {
			return fmt.Errorf("rotate: DEK pack %s does not verify: %w", name, err)
		}
	}
	for _, rw := range batch {
		r.verified(rw.e.id)
		if err := r.k.step(PointRewrap); err != nil {
			return err
		}
	}
	return nil
}

// work claims and works shards until none is left that this run can do.
// A helper returns then; a coordinator also checks the shards that other
// processes marked done and waits for those they hold, taking over a shard
// whose lease expires. It returns the first error of a shard (after trying
// the others), or at once on a crash, a canceled context or a failure to
// list the shards.
func (r *shardRun) work(ctx context.Context) error {
	start := rand.IntN(RewrapShards) // spread the processes over the shards
	// A scan is reused for the next claims while it is young: a claim is
	// decided by the create-only lease object and the done marker, not by
	// the scan, which only saves claims that would fail. The run ends (or
	// a coordinator waits) only on what a fresh scan shows.
	var infos [RewrapShards]shardInfo
	stale := true
	var scanned time.Time
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		if !r.coord {
			// A helper stops when the rotation is finished or replaced.
			if err := r.k.Refresh(ctx); err != nil {
				return fmt.Errorf("rotate: %w", err)
			}
			if cur := r.k.Keyring().Rotation; cur == nil || cur.ID != r.rot.ID {
				return nil
			}
		}
		fresh := stale || time.Since(scanned) > r.opts.LeaseDuration/4
		if fresh {
			var err error
			if infos, err = r.k.scanShards(ctx, r.rot.ID); err != nil {
				return err
			}
			stale, scanned = false, time.Now()
		}
		progressed, pending := false, false
		// A coordinator checks what others did before taking more: that
		// spreads the work best (a check costs a third of a re-wrap).
		if r.coord {
			for i := range RewrapShards {
				s := (start + i) % RewrapShards
				if infos[s].done && !r.settled[s] && r.failed[s] == nil {
					r.others = true
					if err := r.checkShard(ctx, s); isFatal(err) {
						return err
					}
					progressed = true
					break
				}
			}
		}
		for i := 0; i < RewrapShards && !progressed; i++ {
			s := (start + i) % RewrapShards
			if infos[s].done || r.settled[s] || r.failed[s] != nil {
				continue
			}
			if infos[s].seq > 0 {
				l, err := readLease(ctx, r.k.st, leaseNameAt(shardPrefix(r.rot.ID, s), infos[s].seq))
				if err != nil {
					r.failed[s] = fmt.Errorf("rotate: shard %s: %w", shardHex(s), err)
					continue
				}
				if l != nil && r.k.now().Before(l.Expires) {
					pending, r.others = true, true
					continue
				}
			}
			busy, err := r.claimShard(ctx, s, infos[s].seq)
			if isFatal(err) {
				return err
			}
			if busy {
				// Another process was quicker: the scan is out of date.
				pending, r.others, stale = true, true, true
				continue
			}
			progressed = true
		}
		if progressed {
			continue
		}
		if !fresh {
			stale = true
			continue
		}
		if !r.coord || !pending {
			break
		}
		stale = true
		t := time.NewTimer(r.opts.ShardPoll)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
	for _, err := range r.failed {
		if err != nil {
			return err
		}
	}
	return nil
}

// isFatal says whether an error ends a run at once: a crash or a canceled
// context. Other errors fail one shard.
func isFatal(err error) bool {
	return isCrash(err) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

func isCrash(err error) bool {
	var c errCrashed
	return errors.As(err, &c)
}

// checkShard checks every entry of shard s, which another process marked
// done: each twin must open under the new key (missing or damaged twins
// are made here).
func (r *shardRun) checkShard(ctx context.Context, s int) error {
	_, err := r.shardPass(ctx, s, true)
	if err != nil {
		if !isFatal(err) {
			r.failed[s] = err
		}
		return err
	}
	r.settled[s] = true
	return nil
}

// claimShard takes shard s's lease and re-wraps the shard. busy says
// another process took the lease first. A failure is recorded in r.failed
// (and returned); a shard lease lost to a takeover is not a failure: the
// new holder finishes the shard.
func (r *shardRun) claimShard(ctx context.Context, s int, seq uint64) (busy bool, err error) {
	k := r.k
	h, err := k.createLeaseAt(ctx, shardPrefix(r.rot.ID, s), "re-wrap lease of shard "+shardHex(s), seq, r.opts)
	if errors.Is(err, ErrBusy) {
		return true, nil
	}
	if err != nil {
		r.failed[s] = fmt.Errorf("rotate: %w", err)
		return false, err
	}
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-h.lost:
			cancel()
		case <-sctx.Done():
		}
	}()
	defer func() {
		if isCrash(err) {
			h.abandon() // a dead process releases nothing
			return
		}
		h.release(context.WithoutCancel(ctx)) // best effort: a leftover lapses
	}()
	// Done and released meanwhile (the scan was older than that)?
	if _, err := k.st.Stat(ctx, shardDoneObject(r.rot.ID, s)); err == nil {
		return true, nil
	} else if !errors.Is(err, store.ErrNotExist) {
		r.failed[s] = fmt.Errorf("rotate: %w", err)
		return false, r.failed[s]
	}
	if err := k.step(PointShard); err != nil {
		return false, err
	}
	n, err := r.shardPass(sctx, s, false)
	if lerr := h.err(); lerr != nil && ctx.Err() == nil && !isCrash(err) {
		if errors.Is(lerr, errTakenOver) {
			return false, nil
		}
		r.failed[s] = fmt.Errorf("rotate: shard %s: lost the shard lease: %w", shardHex(s), lerr)
		return false, r.failed[s]
	}
	if err != nil {
		if !isFatal(err) {
			r.failed[s] = err
		}
		return false, err
	}
	r.settled[s] = true
	k.rot.shards.Add(1)
	// The marker is a hint for the others; losing it costs only a redo. A
	// helper that was slow writes none once the rotation is over (it would
	// be left behind until the next rotation's cleanup).
	if !r.coord {
		if err := k.Refresh(ctx); err != nil {
			return false, nil
		}
		if cur := k.Keyring().Rotation; cur == nil || cur.ID != r.rot.ID {
			return false, nil
		}
	}
	m := ShardDone{Rotation: r.rot.ID, Shard: shardHex(s), Entries: n, Holder: h.rec.Holder,
		Host: r.opts.Host, PID: os.Getpid(), Finished: k.now().UTC().Truncate(time.Second)}
	k.st.Create(ctx, shardDoneObject(r.rot.ID, s), m.marshal())
	return false, k.step(PointShardDone)
}

// deleteRewrapObjects deletes the shard leases and done markers of every
// rotation other than keep (the one in progress, if any).
func (k *Keychain) deleteRewrapObjects(ctx context.Context, opts RotateOptions, keep string) error {
	var names []string
	err := k.st.List(ctx, rewrapPrefix, func(i store.Info) error {
		if keep == "" || !strings.HasPrefix(i.Name, rewrapRotPrefix(keep)) {
			names = append(names, i.Name)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("rotate: listing %s: %w", rewrapPrefix, err)
	}
	return k.parallel(ctx, opts.Workers, names, func(name string) error {
		if err := k.st.Delete(ctx, name); err != nil && !errors.Is(err, store.ErrNotExist) {
			return fmt.Errorf("rotate: %w", err)
		}
		return nil
	})
}

// HelpRotation works on the rotation in progress alongside the process
// that runs it (the coordinator, which holds the rotation lease).
//
// While the keyring has a rotation record it helps re-wrap: it claims
// shards one at a time with shard leases, re-wraps each (as RunRotation
// does: idempotent, read back and verified) and marks it done, until no
// shard is left unclaimed and unfinished; then it returns. It does not wait
// for shards others hold and never retires anything. This needs the keys of
// the new generation and of every generation rotated from
// (ErrDEKUnavailable otherwise, nothing written). The first error of a
// shard is returned after the other shards were tried; the coordinator
// redoes such a shard.
//
// Once the old generations are retired it helps delete their wrapped DEKs
// (from the last shard down, while the coordinator goes up; no key is
// needed), then returns. With nothing to do it returns nil at once.
//
// A daemon calls it whenever it sees a new keyring epoch (or every few
// seconds) while the rotation is unfinished; a call with nothing to do
// costs a few listings.
func (k *Keychain) HelpRotation(ctx context.Context, progress func(Progress)) error {
	opts := k.rotateOptions()
	if err := k.Refresh(ctx); err != nil {
		return fmt.Errorf("help rotation: %w", err)
	}
	r := k.Keyring()
	rot := r.Rotation
	if rot == nil {
		return k.helpDelete(ctx, opts, r, progress)
	}
	k.mu.RLock()
	kTo := k.keks[rot.To]
	kFrom := map[string]*kek{}
	var lack []string
	for _, g := range rot.From {
		kFrom[g] = k.keks[g]
		if kFrom[g] == nil {
			lack = append(lack, g)
		}
	}
	k.mu.RUnlock()
	if kTo == nil {
		lack = append(lack, rot.To)
	}
	if len(lack) > 0 {
		return fmt.Errorf("help rotation: %w: re-wrapping needs the key of generation %s, which this process does not hold", ErrDEKUnavailable, strings.Join(lack, " and "))
	}
	if err := k.beginRun(rot, true); err != nil {
		return fmt.Errorf("help rotation: %w", err)
	}
	defer k.endRun()
	k.report(progress, "rewrap")
	if err := k.newShardRun(rot, kTo, kFrom, opts, progress, false).work(ctx); err != nil {
		return err
	}
	k.report(progress, "done")
	return nil
}

// helpDelete deletes the wrapped DEKs of the generations r says are
// retired, from the last shard down.
func (k *Keychain) helpDelete(ctx context.Context, opts RotateOptions, r Keyring, progress func(Progress)) error {
	var gens []string
	for _, g := range retiredGens(r) {
		n, err := k.count(ctx, genPrefix(g), 1)
		if err != nil {
			return fmt.Errorf("help rotation: listing %s: %w", genPrefix(g), err)
		}
		if n > 0 {
			gens = append(gens, g)
		}
	}
	if len(gens) == 0 {
		return nil
	}
	if err := k.beginRun(nil, true); err != nil {
		return fmt.Errorf("help rotation: %w", err)
	}
	defer k.endRun()
	k.rot.mu.Lock()
	k.rot.prog.From = gens
	k.rot.mu.Unlock()
	k.report(progress, "delete")
	if err := k.deleteGens(ctx, opts, gens, deleteDown); err != nil {
		return err
	}
	k.report(progress, "done")
	return nil
}
