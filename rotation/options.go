package rotation

import (
	"errors"
	"os"
	"time"

	"github.com/snapcrypt/snapcrypt/keys"
	"github.com/snapcrypt/snapcrypt/lease"
)

// DefaultWorkers is how many wrapped DEKs a rotation re-wraps at once.
const DefaultWorkers = 16

// DefaultLeaseDuration is how long a rotation lease (and a shard lease)
// lasts without renewal.
const DefaultLeaseDuration = lease.DefaultDuration

// leasePrefix is where the rotation lease objects live.
const leasePrefix = "leases/rotation/"

// Crash points: every step of a rotation calls the crash hook (tests) with
// one of these. docs/rotation.md says what recovers each.
const (
	PointLease        = "lease"         // the lease is taken
	PointSwitch       = "switch"        // the switch commit is durable
	PointShard        = "shard"         // a re-wrap shard's lease is taken
	PointRewrap       = "rewrap"        // one twin under the new generation is written and verified
	PointShardDone    = "shard-done"    // a shard's done marker is written; its lease is released next
	PointBeforeRetire = "before-retire" // every old entry has a verified twin; retire commit next
	PointRetired      = "retired"       // the retire commit is durable
	PointDelete       = "delete"        // one old-prefix entry is deleted
	PointDeleted      = "deleted"       // every retired prefix is empty; the lease is released next
)

var (
	// ErrAlreadyCurrent is returned by Start when the new key is the key
	// of the current generation and no rotation to it is unfinished.
	// Nothing is changed.
	ErrAlreadyCurrent = errors.New("this key is already the current key")

	// ErrRotationUnfinished is returned by Start when an earlier rotation
	// (to another key) has not finished; Resume it first.
	ErrRotationUnfinished = errors.New("an earlier key rotation is unfinished")
)

// Options tune a rotation. Zero values mean defaults.
type Options struct {
	Workers       int           // parallel re-wraps and deletes (DefaultWorkers)
	LeaseDuration time.Duration // rotation lease lifetime without renewal (DefaultLeaseDuration; at most lease.MaxDuration)
	Host          string        // host name recorded in the lease and rotation record (os.Hostname)
	ShardPoll     time.Duration // how often a coordinator looks at shards others hold (DefaultShardPoll)

	// Argon2 is the cost of the new generation's KDF when the new key is
	// a passphrase (keys.DefaultArgon2).
	Argon2 keys.Argon2Params

	// Slots are keys the switch gives the new generation as key slots,
	// in the same commit. The old generations' slots are not carried
	// over (that would need each slot's key): they end with their
	// generation.
	Slots []*keys.Material

	// StartWorker, if set, is called first thing on every goroutine a
	// rotation run starts for its work (the re-wrap, check and delete
	// workers). A daemon uses it to run them at background priority, so
	// that the rotation takes only time its readers do not want.
	StartWorker func()

	// Pace, if set, is called by a rotation worker after units of work
	// (a wrapped DEK re-wrapped, checked or deleted, a batch of a deleted
	// prefix's files freed) that cost paceQuantum or more as WorkClock
	// measures it, with that cost, and after its last unit; and by the
	// goroutine that drives the workers after its own work on DEK packs
	// (reading old ones; writing, reading back and verifying new ones),
	// with its cost, however small. It may sleep, to spread a background
	// rotation out in time.
	Pace func(worked time.Duration)

	// WorkClock, if set, is the clock Pace's costs are read from, on the
	// worker's goroutine before its first unit, after a unit once 100 µs
	// of wall time have passed since the last reading, and after its last
	// unit (and on the driving goroutine before and after its work on a
	// DEK pack); by default the wall clock. A daemon, whose workers each hold a thread (StartWorker), reads
	// the thread's CPU time: a unit that waits for the disk (reading a
	// wrapped DEK that is not in the page cache) costs readers no CPU, and
	// pacing it by the time it waited would make a rotation crawl.
	WorkClock func() time.Duration

	// Logf, if set, is told of what a rotation finds wrong but works
	// around: an invalid lease it took over (lease.MaxDuration).
	Logf func(format string, args ...any)
}

func (o Options) withDefaults() Options {
	if o.Workers <= 0 {
		o.Workers = DefaultWorkers
	}
	if o.LeaseDuration <= 0 {
		o.LeaseDuration = DefaultLeaseDuration
	}
	if o.Host == "" {
		o.Host, _ = os.Hostname()
	}
	if o.ShardPoll <= 0 {
		o.ShardPoll = DefaultShardPoll
	}
	return o
}

// Progress of a rotation run in this process.
type Progress struct {
	Phase   string    // "rewrap", "retire", "delete" or "done"
	From    []string  // the generations rotated away from
	To      string    // the new current generation
	Done    int64     // wrapped DEKs with a verified twin under To
	Total   int64     // wrapped DEKs found under From so far
	Deleted int64     // old-prefix entries deleted
	Started time.Time // when this run started
	Rate    float64   // Done per second since Started
	Helper  bool      // this process helps (Help); it does not retire or delete
	Shards  int64     // re-wrap shards this process claimed and finished
	Checked int64     // of Done: twins other processes made, checked by this one
}
