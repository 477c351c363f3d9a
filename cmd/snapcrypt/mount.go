package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spf13/pflag"

	"github.com/snapcrypt/snapcrypt/fs"
	"github.com/snapcrypt/snapcrypt/repo"
	"github.com/snapcrypt/snapcrypt/rotation"
)

func init() { register(mountCommand()) }

// lazyWait is how long a stop signal waits, after detaching a busy mount,
// for its last user to let go before the process exits anyway.
const lazyWait = 5 * time.Second

func mountCommand() *command {
	var allowOther, debug bool
	var cacheSize string
	return &command{
		name: "mount", args: "MOUNTPOINT",
		short: "Mount the repository read-only at MOUNTPOINT, in the foreground; prints one line when ready. SIGINT, SIGTERM or 'fusermount3 -u MOUNTPOINT' ends it.",
		setup: func(f *pflag.FlagSet, c *cli) {
			f.BoolVar(&allowOther, "allow-other", false, "let other users use the mount, with the snapshotted permissions (an ordinary user needs user_allow_other in /etc/fuse.conf)")
			f.StringVar(&cacheSize, "cache-size", "", "bound of the decrypted-data cache in bytes; suffixes K, M, G (default 32M)")
			f.BoolVar(&debug, "debug", false, "log every FUSE request to stderr (names and sizes, never data)")
			f.DurationVar(&c.lease, "rotation-lease", rotation.DefaultLeaseDuration, "lease lifetime of rotations this mount runs: how long a killed mount blocks others")
		},
		run: func(ctx context.Context, c *cli, args []string) error {
			if len(args) != 1 {
				return usagef("mount takes one argument, the mountpoint")
			}
			var cacheBytes int64 // 0: the default
			if cacheSize != "" {
				n, err := parseSize(cacheSize)
				if err != nil || n == 0 || n > 1<<62 {
					return usagef("--cache-size: %q is not a positive size in bytes", cacheSize)
				}
				cacheBytes = int64(n)
			}
			mnt, err := filepath.Abs(args[0])
			if err != nil {
				return err
			}
			// A bad mountpoint is reported before the (slower) repository opening.
			if err := fs.CheckMountpoint(mnt); err != nil {
				return err
			}
			r, err := c.open(ctx, repo.Options{CacheBytes: cacheBytes})
			if err != nil {
				return err
			}
			if cacheBytes <= 0 {
				cacheBytes = repo.DefaultCacheBytes
			}
			defer limitHeap(cacheBytes + r.WindowBytes())()
			logw := &lockedWriter{w: c.stderr}
			opts := fs.Options{AllowOther: allowOther, Debug: debug,
				Logf: func(format string, a ...any) { fmt.Fprintf(logw, "snapcrypt mount: "+format+"\n", a...) }}
			// Key rotation runs beside the reads: .ctl/rotate, .ctl/keys,
			// and the keyring poll that resumes rotations.
			opts.Served = new(atomic.Uint64)
			opts.Rotation = rotation.StartDaemon(ctx, r.Keys(), rotation.DaemonOptions{LeaseDuration: c.lease, Logf: opts.Logf,
				ReadBytes: opts.Served.Load})
			procs := runtime.GOMAXPROCS(0) // go-fuse sizes its readers by it
			srv, err := fs.Mount(ctx, r, mnt, opts)
			if err != nil {
				return err
			}
			spareProc(procs)
			fmt.Fprintf(c.stdout, "mounted %s at %s\n", r.Store().Location(), mnt)
			select {
			case <-srv.Done():
				fmt.Fprintf(logw, "snapcrypt mount: %s was unmounted\n", mnt)
				return nil
			case <-ctx.Done():
			}
			if err := srv.Unmount(); err != nil {
				fmt.Fprintf(logw, "snapcrypt mount: %v; detaching it lazily\n", err)
				if err := srv.UnmountLazy(); err != nil {
					return err
				}
				select {
				case <-srv.Done():
				case <-time.After(lazyWait):
				}
			}
			return nil
		},
	}
}

// inflightHeap is the heap a mount needs beyond its caches and index for
// the reads in flight: 32 FUSE requests of 1 MiB, what a sequential reader
// was seen to keep in flight with fs's MaxBackground of 64 (docs/bench.md),
// each holding a reply buffer. More readers may hold more: the limit is
// soft.
const inflightHeap = 32 << 20

// limitHeap sets the Go runtime's soft memory limit, unless GOMEMLIMIT
// sets one, and keeps it following the live heap until stop is called.
//
// The limit starts at the heap live now (the index, just loaded) plus the
// bound of the caches (the decrypted data's and, on S3, the read
// windows') plus inflightHeap. Without it the heap grows to twice what is
// live before a collection, and a mount reading a large file holds mostly
// garbage (docs/bench.md).
//
// But the nodes of the entries the kernel has looked up are live too (a
// walk of 200,000 files holds 200,000 of them), and a limit the live heap
// reaches makes the collector run almost without pause (docs/bench.md,
// scale). So after each collection the limit is raised to the heap then
// live plus headroom (a quarter of it, at least inflightHeap), and lowered
// again, never below the starting limit, when the kernel forgets entries.
// Collections then free at least that headroom each, as with GOGC=25 at
// worst.
func limitHeap(cacheBytes int64) (stop func()) {
	if os.Getenv("GOMEMLIMIT") != "" {
		return func() {}
	}
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	l := &heapLimit{floor: int64(ms.HeapAlloc) + cacheBytes + inflightHeap}
	debug.SetMemoryLimit(l.floor)
	l.arm()
	return func() { l.stopped.Store(true) }
}

// heapLimit moves the soft memory limit with the live heap.
type heapLimit struct {
	floor   int64 // the limit never goes below this
	stopped atomic.Bool
}

// limitFor is the limit for a heap of live bytes after a collection.
func (l *heapLimit) limitFor(live int64) int64 {
	return max(l.floor, live+max(live/4, inflightHeap))
}

// arm calls adjust after the next collection: a cleanup runs once the
// collector has found its object unreachable. (16 bytes, so the object
// is not one of the tiny allocations that share a block.)
func (l *heapLimit) arm() {
	runtime.AddCleanup(new([16]byte), (*heapLimit).adjust, l)
}

func (l *heapLimit) adjust() {
	if l.stopped.Load() {
		return
	}
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	if s[0].Value.Kind() == metrics.KindUint64 {
		debug.SetMemoryLimit(l.limitFor(int64(s[0].Value.Uint64())))
	}
	l.arm()
}

// spareProc sets GOMAXPROCS, unless the environment sets it, to
// sparedProcs(procs): the value go-fuse's server was made with (procs)
// sizes its readers, and the runtime gets a processor more than they can
// hold.
func spareProc(procs int) {
	if os.Getenv("GOMAXPROCS") != "" {
		return
	}
	if n := sparedProcs(procs); n > procs {
		runtime.GOMAXPROCS(n)
	}
}

// sparedProcs is the GOMAXPROCS that leaves one processor (P) of the Go
// runtime idle while every reader of go-fuse's server, made with GOMAXPROCS
// procs, waits in read(2) on /dev/fuse.
//
// go-fuse (v2.12: NewServer, fuseFD.readRequest) keeps up to
// max(2, min(16, procs)) + 1 goroutines reading requests, each blocked in
// the system call while no request is queued, holding its P. When no P is
// idle, the runtime's monitor thread takes a P back from a reader blocked
// for 20 µs, every time, and polls every 20 µs while it does; each request
// then costs thread switches and futex wake-ups. With a P idle it leaves
// blocked readers alone (for 10 ms) and sleeps. A cold tar of 200,000
// small files through the mount on 2 cores: half the nanosleeps, a quarter
// of the futex calls and about 0.8 of the mount's CPU with 4 Ps against 2
// (3 did no better than 2: no P idle); docs/bench.md, scale.
func sparedProcs(procs int) int {
	readers := min(max(procs, 2), 16) + 1
	return max(procs, readers+1)
}

// lockedWriter serializes log lines from the mount's goroutines.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
