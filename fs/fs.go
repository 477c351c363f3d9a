// Package fs serves a snapcrypt repository read-only over FUSE, decrypting
// on read. The tree it shows:
//
//	MOUNTPOINT/
//	  snapshots/<name>/...    one directory per snapshot: its name, else its
//	                          time as 2026-11-27T02:42:21Z; a name taken by
//	                          an older snapshot gets "-<short id>" appended
//	  snapshots/latest        -> the newest snapshot
//	  ids/<short id>          -> ../snapshots/<name>
//	  tags/<tag>/<name>       -> ../../snapshots/<name>
//	  .ctl/status             JSON (see Status)
//	  .ctl/rotate, .ctl/keys  with Options.Rotation (see Controller)
//	  .ctl/<control>          files added by Options.Controls
//
// Content is immutable, so the kernel is told to cache it: entries and
// attributes inside snapshots have long timeouts and open files keep their
// page cache. The snapshot list is re-read every Options.Refresh, so
// snapshots taken by another process appear without a remount.
//
// Inode numbers are stable for the life of a mount: an entry's number is a
// hash of its parent's number and its name; hard-linked files (link count
// above one) are numbered by their snapshot and original device and inode,
// so every link shows the same inode.
//
// Errors of the repository (a corrupted object, a data key that no supplied
// key unwraps) become EIO for the operation that met them, one log line per
// distinct error, and counts in .ctl/status. Every call that would change the
// tree answers EROFS (once the kernel opens files without asking, an open
// for writing succeeds and its writes answer EROFS: mount.openless). The
// fs package is the only place where errors become
// errno values (errors.go holds the one table).
//
// What a mount can reach is declared here, where it is used: Repository
// (repository.go), a read-only view of a repository that *repo.Repository
// satisfies, with no method that writes to the store or changes keys; and
// Controller (control.go), to which the lines written to .ctl/rotate and
// .ctl/keys go (the command gives it a rotation.Daemon). With Options.Debug
// every FUSE request is logged, never the data it carries (debuglog.go).
package fs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/snapcrypt/snapcrypt/repo"
)

// Options tune a mount. Zero values mean defaults.
type Options struct {
	// AllowOther lets other users use the mount (the fuse "allow_other"
	// option; an ordinary user needs user_allow_other in /etc/fuse.conf).
	// The kernel then checks permissions against the snapshotted modes
	// ("default_permissions").
	AllowOther bool

	// Refresh is how often the snapshot list and the index are re-read.
	// Default 2 s.
	Refresh time.Duration

	// ReadAhead is how far ahead of a sequential reader content is read:
	// default 8 MiB. As root, the kernel's readahead of the mount is set
	// to it, so the kernel keeps that much in requests in flight, each
	// decrypted straight into its reply. Otherwise (the kernel then reads
	// ahead 128 KiB) the mount decrypts that far ahead into the segment
	// cache, in the background past the chunk being read (see
	// repo.Repository.ReadChunksAt), at most an eighth of the cache.
	// Random readers get none.
	ReadAhead int64

	// Controls are files added to .ctl/ beside status.
	Controls []Control

	// Rotation, if set, is the key rotation running beside the mount: it
	// adds .ctl/rotate, .ctl/keys and the "rotation" section of
	// .ctl/status (see Controller).
	Rotation Controller

	// Served, if set, is added the size of every READ reply: the bytes
	// the mount served to readers, which a rotation beside them paces
	// itself against (rotation.DaemonOptions.ReadBytes).
	Served *atomic.Uint64

	// StatusSections add top-level keys to .ctl/status: each function is
	// called when status is read, and its result marshalled under its
	// name (a name the status already has is ignored).
	StatusSections map[string]func() any

	// Logf receives one line per problem worth telling the operator (a
	// corrupted object, a missing key, a panic). Default: log.Printf.
	Logf func(format string, args ...any)

	// Debug logs every FUSE request and reply through Logf: their file
	// names and sizes, never the data they carry (what is written to
	// .ctl/, a file's content, an extended attribute's value).
	Debug bool
}

const (
	defaultRefresh   = 2 * time.Second
	defaultReadAhead = 8 << 20

	// Timeouts of the kernel's caches. Snapshot content never changes;
	// the lists of snapshots, ids and tags do.
	immutableTimeout = time.Hour
	dynamicTimeout   = time.Second

	// maxRead is the largest read and write request the kernel sends.
	maxRead = 1 << 20
)

// Server is a mounted repository.
type Server struct {
	m    *mount
	srv  *fuse.Server
	done chan struct{}
	wg   sync.WaitGroup
}

// Mount checks mountpoint, mounts the repository r (read-only: see
// Repository) on it and serves it until Unmount is called or the
// mountpoint is unmounted from outside (umount, fusermount3 -u); Wait and
// Done tell when that happened. ctx bounds the mounting only. Mount
// returns once the mount is ready to use.
func Mount(ctx context.Context, r Repository, mountpoint string, opts Options) (*Server, error) {
	if err := CheckMountpoint(mountpoint); err != nil {
		return nil, err
	}
	mountpoint, err := filepath.Abs(mountpoint)
	if err != nil {
		return nil, fmt.Errorf("mountpoint: %w", err)
	}
	opts, err = opts.complete()
	if err != nil {
		return nil, err
	}

	m := newMount(r, mountpoint, opts)
	if err := m.refresh(ctx); err != nil {
		m.cancel()
		return nil, fmt.Errorf("mount: %w", err)
	}
	fopts := m.fuseOptions()
	srv, err := fuse.NewServer(newRawFS(m, m.rootDir(), fopts), mountpoint, &fopts.MountOptions)
	if err == nil {
		go srv.Serve()
		err = srv.WaitMount()
	}
	if err != nil {
		m.cancel()
		return nil, fmt.Errorf("mounting %s: %w", mountpoint, err)
	}
	if kernelReadAhead(mountpoint, opts.ReadAhead) {
		m.ahead.Store(0) // the kernel reads ahead
	}
	s := &Server{m: m, srv: srv, done: make(chan struct{})}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		m.refresher()
	}()
	go func() {
		srv.Wait()
		m.cancel()
		s.wg.Wait()
		close(s.done)
	}()
	return s, nil
}

// kernelReadAhead is setKernelReadAhead; tests make it fail to mount as
// an ordinary user would, with the mount's own read-ahead and OPEN.
var kernelReadAhead = setKernelReadAhead

func ptr[T any](v T) *T { return &v }

// complete returns o with its defaults filled in and the rotation's
// control files added, or an error if a control file is invalid or two
// share a name.
func (o Options) complete() (Options, error) {
	if o.Refresh <= 0 {
		o.Refresh = defaultRefresh
	}
	if o.ReadAhead <= 0 {
		o.ReadAhead = defaultReadAhead
	}
	if o.Logf == nil {
		o.Logf = log.Printf
	}
	o = o.withRotation()
	seen := map[string]bool{"status": true}
	for _, c := range o.Controls {
		if err := c.validate(); err != nil {
			return o, err
		}
		if seen[c.Name] {
			return o, fmt.Errorf("mount: two control files named %q", c.Name)
		}
		seen[c.Name] = true
	}
	return o, nil
}

// fuseOptions returns the options go-fuse mounts m with: its kernel
// caching, request sizes and logger.
func (m *mount) fuseOptions() *gofs.Options {
	opts := m.opts
	logger := log.New(logWriter{opts.Logf}, "", 0)
	fopts := &gofs.Options{
		MountOptions: fuse.MountOptions{
			AllowOther:   opts.AllowOther,
			FsName:       "snapcrypt:" + m.r.Config().ID[:8],
			Name:         "snapcrypt",
			MaxWrite:     maxRead,
			MaxReadAhead: maxRead,
			// The kernel skips async readahead while this many
			// background requests less a quarter (congestion) are in
			// flight; 16 (12) cut the readahead of a sequential reader
			// short (docs/bench.md, 579df26).
			MaxBackground: 64,
			DisableSplice: true, // reads return memory, not file descriptors: writev it
			DirectMount:   os.Geteuid() == 0,
			Debug:         opts.Debug,
			Logger:        logger,
			PanicHandler:  m.panicked,
		},
		EntryTimeout:    ptr(immutableTimeout),
		AttrTimeout:     ptr(immutableTimeout),
		NegativeTimeout: ptr(immutableTimeout),
		NullPermissions: true,
		Logger:          logger,
		RootStableAttr:  &gofs.StableAttr{Ino: fuse.FUSE_ROOT_ID},
	}
	if opts.AllowOther {
		fopts.MountOptions.Options = append(fopts.MountOptions.Options, "default_permissions")
	}
	return fopts
}

// Done is closed when the mount has ended and the server has stopped.
func (s *Server) Done() <-chan struct{} { return s.done }

// Wait blocks until the mount has ended.
func (s *Server) Wait() { <-s.done }

// Unmount unmounts and waits for the server to stop. If the mountpoint is
// busy (a process has its working directory or an open file there), it
// fails with an error wrapping syscall.EBUSY; UnmountLazy detaches anyway.
func (s *Server) Unmount() error {
	select {
	case <-s.done:
		return nil // unmounted from outside already
	default:
	}
	if err := s.srv.Unmount(); err != nil {
		if isMounted(s.m.mountpoint) {
			return fmt.Errorf("unmounting %s: %w", s.m.mountpoint, errBusy(err))
		}
	}
	s.Wait()
	return nil
}

// UnmountLazy detaches the mount even while it is busy (umount -l) and
// returns at once: the tree disappears from the mountpoint, and the server
// stops (Done) once the last process using it lets go, or when this
// process exits.
func (s *Server) UnmountLazy() error {
	return lazyUnmount(s.m.mountpoint)
}

func errBusy(err error) error {
	if errors.Is(err, syscall.EBUSY) {
		return err
	}
	return fmt.Errorf("%w (%v)", syscall.EBUSY, err)
}

// logWriter adapts Logf to an io.Writer for go-fuse's logger, and takes
// out of each line the payload go-fuse's debug output quotes
// (redactPayload).
type logWriter struct{ logf func(string, ...any) }

func (w logWriter) Write(p []byte) (int, error) {
	s := strings.TrimRight(string(p), "\n")
	lines := strings.Split(s, "\n")
	for i, line := range lines {
		lines[i] = redactPayload(line)
	}
	w.logf("%s", strings.Join(lines, "\n"))
	return len(p), nil
}

var _ io.Writer = logWriter{}

// mount is the state every node shares.
type mount struct {
	r          Repository
	opts       Options
	mountpoint string
	uid, gid   uint32
	started    time.Time

	// ctx lives as long as the mount: repository calls use it rather than
	// the request's context, which the kernel cancels on any signal to the
	// reader (Go programs get SIGURG all the time), and a read that fails
	// with EINTR inside the page cache reaches the reader as EIO.
	ctx    context.Context
	cancel context.CancelFunc

	noStore atomic.Bool // the kernel refused FUSE_NOTIFY_STORE (see storeSmall)
	noOpen  atomic.Bool // the kernel opens files without OPEN (see openless)
	walk    walker      // the tree walk files are stored ahead of (mount.walked)
	list    lister      // whether listings leave out files' nodes (fs/lean.go)
	kstats  kernelStats
	ctlGen  atomic.Uint64 // bumped by what .ctl/status shows (ctlFile.content)
	ctlOnce sync.Once
	ctls    map[uint64]*ctlShared // .ctl/'s files by inode number (controlFiles)
	srv     atomic.Pointer[fuse.Server]

	nodes *nodeTable // snapshot content the kernel knows

	view      atomic.Pointer[view]
	refreshMu sync.Mutex               // one refresh at a time
	names     map[repo.ObjectID]string // names given so far: they never change
	nameUsed  map[string]bool

	ahead atomic.Int64 // how far the mount reads ahead for sequential readers

	errMu    sync.Mutex
	logged   map[string]bool // error lines already logged
	keyErrs  []string        // distinct data-key errors, for status
	eio      atomic.Uint64   // EIO answers
	panics   atomic.Uint64
	refErr   atomic.Pointer[string]
	problems atomic.Pointer[[]Problem] // objects the last refresh could not read
	refCount atomic.Uint64

	unusedMu   sync.Mutex // one count of unused space at a time
	unusedAt   time.Time  // of the last count
	unusedLast UnusedStatus
}

func newMount(r Repository, mountpoint string, opts Options) *mount {
	ctx, cancel := context.WithCancel(context.Background())
	m := &mount{
		r: r, opts: opts, mountpoint: mountpoint,
		uid: uint32(os.Getuid()), gid: uint32(os.Getgid()), started: time.Now(),
		ctx: ctx, cancel: cancel,
		names: map[repo.ObjectID]string{}, nameUsed: map[string]bool{},
		logged: map[string]bool{}, nodes: newNodeTable(),
	}
	m.ahead.Store(readAhead(r, opts.ReadAhead))
	return m
}

// panicked is go-fuse's PanicHandler: log, count, answer EIO, keep serving.
func (m *mount) panicked(v any) fuse.Status {
	m.panics.Add(1)
	m.eio.Add(1)
	m.opts.Logf("internal error (please report): panic in FUSE handler: %v\n%s", v, debug.Stack())
	return fuse.EIO
}

// recoverGo is deferred by goroutines the mount starts.
func (m *mount) recoverGo(what string) {
	if v := recover(); v != nil {
		m.panics.Add(1)
		m.opts.Logf("internal error (please report): panic in %s: %v\n%s", what, v, debug.Stack())
	}
}
