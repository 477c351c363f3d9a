package fs

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"runtime/debug"
	"slices"
	"sort"
	"sync"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// Control is a file in MOUNTPOINT/.ctl/ through which programs talk to the
// running mount. .ctl/status is one (built in); key rotation adds others.
type Control struct {
	// Name is the file's name in .ctl/: one path component.
	Name string

	// Read, if set, makes the file readable by whoever can use the mount.
	// Each open reads what Read returns at that moment; once the kernel
	// opens without asking (mount.openless), each stat and read(2)
	// does, unless a read of its last result is under way
	// (ctlFile.content).
	Read func(ctx context.Context) ([]byte, error)

	// Write, if set, makes the file writable by the mounting user only
	// (anyone else gets EACCES). Each non-empty line written, without its
	// newline, is passed to Write (a write(2) without a newline is one
	// line; a write(2) of nothing but white space passes one empty line;
	// once the kernel opens without OPEN, a write(2) that starts inside a
	// page and crosses into the next comes as two, so write each request
	// from the start of the file, as `echo SPEC > FILE` does), and
	// the write(2) returns once Write has. Write's error becomes the
	// write(2)'s errno (see controlErrno) and one log line. ctx carries
	// the caller (fuse.FromContext) and ends when the mount does, not
	// when the writer gets a signal.
	Write func(ctx context.Context, line []byte) error
}

// Controller is the key rotation that runs beside a mount
// (rotation.Daemon is one). Programs steer it through control files and
// read it in .ctl/status:
//
//	.ctl/rotate   each line written is passed to Rotate: rotate to that key
//	.ctl/keys     each line written is passed to AddKey: hold one more key
//	.ctl/status   Status() shows under "rotation"
//
// Both files are writable by the mounting user only, as every Control.
// A handler's error becomes the write's errno (controlErrno): EINVAL for
// an error wrapping io/fs.ErrInvalid, EEXIST for io/fs.ErrExist, EBUSY for
// keys.ErrBusy, EIO for one that wraps none of the errors controlErrno
// knows. The error's message is logged (Options.Logf), so it must never
// contain the line written: a mistyped key spec may be the key itself.
type Controller interface {
	// Rotate handles a line written to .ctl/rotate, a key spec; it
	// returns once the switch to the new key is durable.
	Rotate(ctx context.Context, line []byte) error
	// AddKey handles a line written to .ctl/keys, a key spec.
	AddKey(ctx context.Context, line []byte) error
	// Status is marshalled as JSON under "rotation" in .ctl/status. It
	// must not show the lines written either.
	Status() any
}

// withRotation returns o with the control files and the status section
// of o.Rotation added.
func (o Options) withRotation() Options {
	if o.Rotation == nil {
		return o
	}
	o.Controls = append(slices.Clone(o.Controls),
		Control{Name: "rotate", Write: o.Rotation.Rotate},
		Control{Name: "keys", Write: o.Rotation.AddKey})
	sections := maps.Clone(o.StatusSections)
	if sections == nil {
		sections = map[string]func() any{}
	}
	sections["rotation"] = o.Rotation.Status
	o.StatusSections = sections
	return o
}

func (c Control) validate() error {
	if c.Name == "" || c.Name == "." || c.Name == ".." || bytes.ContainsAny([]byte(c.Name), "/\x00") {
		return fmt.Errorf("mount: bad control file name %q", c.Name)
	}
	if c.Read == nil && c.Write == nil {
		return fmt.Errorf("mount: control file %q can neither be read nor written", c.Name)
	}
	return nil
}

func (c Control) perm() uint32 {
	var p uint32
	if c.Read != nil {
		p |= 0o444
	}
	if c.Write != nil {
		p |= 0o200
	}
	return p
}

// ctlDir is .ctl/: status and Options.Controls.
func (m *mount) ctlDir() gofs.InodeEmbedder {
	ctls := m.controlFiles()
	entries := make([]ventry, 0, len(ctls))
	for ino, sh := range ctls {
		entries = append(entries, ventry{name: sh.c.Name, ino: ino, typ: syscall.S_IFREG,
			node: func() gofs.InodeEmbedder { return &ctlFile{m: m, ctlShared: sh} }})
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].name < entries[j].name })
	return &vdir{m: m, entries: func(*view) []ventry { return entries }}
}

// controlFiles returns the control files of .ctl/ by inode number, made
// once per mount: every node go-fuse makes for one (again after the
// kernel forgot the last) shares what it shows, and rawFS answers their
// GETATTR itself (ctlFile.getattr).
func (m *mount) controlFiles() map[uint64]*ctlShared {
	m.ctlOnce.Do(func() {
		controls := append([]Control{{Name: "status", Read: m.statusJSON}}, m.opts.Controls...)
		m.ctls = make(map[uint64]*ctlShared, len(controls))
		for _, c := range controls {
			ino := controlIno(c.Name)
			if c.Name == "status" {
				ino = inoStatus
			}
			m.ctls[ino] = &ctlShared{c: c}
		}
	})
	return m.ctls
}

// ctlFile is one control file. How it is read depends on whether the
// kernel still sends OPEN (see mount.openless). Opened through OPEN, it
// reads what Read returned at the open, bypassing the page cache
// (FOPEN_DIRECT_IO). Opened without, reads go through the page cache:
// each GETATTR shows the size of the content (ctlFile.content) and an
// mtime that changes with it, so the kernel drops what it cached
// (auto_inval_data) and sends READ, which serves that content. Its
// attributes are not cached (ctlTimeout): every stat and read(2) asks,
// except for a jiffy after READDIRPLUS (see attr).
type ctlFile struct {
	gofs.Inode
	readOnly
	m *mount
	*ctlShared
}

// ctlShared is what the nodes of one control file share.
type ctlShared struct {
	c   Control
	mu  sync.Mutex
	cur ctlContent // what GETATTR showed last
}

// ctlContent is what a control file's Read returned once.
type ctlContent struct {
	data   []byte
	err    error
	mtime  int64     // shown for it: it changes with every new content
	gen    uint64    // mount.ctlGen when read
	at     time.Time // when read
	served time.Time // the last READ from it
}

// ctlTimeout is how long the kernel keeps a control file's attributes:
// not at all (go-fuse takes 0 for "its default").
const ctlTimeout = time.Nanosecond

// A reader without OPEN reads a control file in several requests
// (GETATTR for fstat, GETATTR and READ for each read(2), GETATTR again
// for the read that finds the end); a new content between them could
// splice two (a longer new content read from where the old one ended).
// So a GETATTR reads the content again only if no READ was served from
// the last one within ctlQuiet, or it is older than ctlMaxAge, or
// something it shows changed since (mount.ctlGen: a control written, a
// read error). ctlQuiet is long enough for a reader descheduled between
// its read(2)s on a loaded machine; a reader that comes within it of
// another's read gets the same content, at most ctlMaxAge old.
//
// That holds for the GETATTR of a stat or fstat, which a reader sends
// before it reads (cat, os.ReadFile, Python's read). A GETATTR from
// inside a read(2) (the kernel's FUSE_GETATTR_FH) shows a new content
// only past ctlReadMaxAge: else a reader that polls without pause would
// get the new content at its read that finds the end, which reads the
// page again, and return the old content with the new one's tail.
const (
	ctlQuiet      = 200 * time.Millisecond
	ctlMaxAge     = time.Second
	ctlReadMaxAge = 10 * time.Second
)

var (
	_ gofs.NodeOpener    = (*ctlFile)(nil)
	_ gofs.NodeSetattrer = (*ctlFile)(nil)
	_ gofs.NodeGetattrer = (*ctlFile)(nil)
	_ gofs.NodeReader    = (*ctlFile)(nil)
	_ gofs.NodeWriter    = (*ctlFile)(nil)
)

// attr fills out with the attributes of a control file, for LOOKUP and
// READDIRPLUS: those of the content GETATTR showed last, so that a lookup
// between a reader's GETATTR and its READ changes neither size nor mtime.
// Without OPEN, a content is read now if none was: the kernel may trust
// the size it gets here for up to a jiffy (its smallest timeout).
func (f *ctlFile) attr(out *fuse.Attr) {
	f.mu.Lock()
	c := f.cur
	f.mu.Unlock()
	if c.at.IsZero() && f.m.noOpen.Load() {
		c = f.content(f.m.ctx, ctlLast)
	}
	f.attrOf(c, out)
}

// attrOf fills out with the attributes of a control file showing c.
func (f *ctlFile) attrOf(c ctlContent, out *fuse.Attr) {
	t := f.m.started.UnixNano()
	a := meta{typ: syscall.S_IFREG, perm: f.c.perm(), uid: f.m.uid, gid: f.m.gid, links: 1, mtime: t, ctime: t}
	if f.c.Read != nil && !c.at.IsZero() {
		a.size, a.mtime, a.ctime = uint64(len(c.data)), c.mtime, c.mtime
		if c.err != nil {
			a.size = 1 // so that a read asks, and gets the error
		}
	}
	a.fill(out)
}

func (f *ctlFile) timeout() time.Duration { return ctlTimeout }

func (f *ctlFile) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	f.m.statfs(out)
	return 0
}

func (f *ctlFile) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	f.getattr(ctx, false, out)
	return 0
}

// getattr answers GETATTR, inRead for one from inside a read(2)
// (FUSE_GETATTR_FH).
func (f *ctlFile) getattr(ctx context.Context, inRead bool, out *fuse.AttrOut) {
	show := ctlFresh
	if inRead {
		show = ctlInRead
	}
	f.attrOf(f.content(ctx, show), &out.Attr)
	out.SetTimeout(ctlTimeout)
}

// What content a request shows (ctlFile.content).
const (
	ctlLast   = iota // the last
	ctlFresh         // a new one unless a reader may be in the middle of the last
	ctlInRead        // a new one only past ctlReadMaxAge
)

// content returns the content to show, as show says.
func (f *ctlFile) content(ctx context.Context, show int) ctlContent {
	if f.c.Read == nil {
		return ctlContent{}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	now := time.Now()
	c := &f.cur
	if !c.at.IsZero() {
		switch show {
		case ctlLast:
			return *c
		case ctlInRead:
			if now.Sub(c.at) < ctlReadMaxAge {
				return *c
			}
		default:
			midway := now.Sub(c.served) < ctlQuiet && now.Sub(c.at) < ctlMaxAge
			if midway && c.gen == f.m.ctlGen.Load() {
				return *c
			}
		}
	}
	gen := f.m.ctlGen.Load()
	data, err := f.read(ctx)
	mtime := max(now.UnixNano(), c.mtime+1)
	*c = ctlContent{data: data, err: err, mtime: mtime, gen: gen, at: now}
	return *c
}

// read calls the control's Read; a panic in it is an error.
func (f *ctlFile) read(ctx context.Context) (data []byte, err error) {
	defer func() {
		if v := recover(); v != nil {
			f.m.panics.Add(1)
			f.m.opts.Logf("internal error (please report): panic reading .ctl/%s: %v\n%s", f.c.Name, v, debug.Stack())
			err = fmt.Errorf("panic: %v", v)
		}
	}()
	data, err = f.c.Read(f.handlerContext(ctx))
	if err != nil {
		f.m.logOnce(".ctl/%s: %v", f.c.Name, err)
	}
	return data, err
}

// Read serves a read of an open handle, or one without (the kernel's
// page cache asks): from the content the last GETATTR showed.
func (f *ctlFile) Read(ctx context.Context, fh gofs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	if h, ok := fh.(*ctlHandle); ok {
		return h.Read(ctx, dest, off)
	}
	if f.c.Read == nil {
		return nil, syscall.EACCES
	}
	c := f.content(ctx, ctlLast)
	f.mu.Lock()
	f.cur.served = time.Now()
	f.mu.Unlock()
	if c.err != nil {
		return nil, controlErrno(c.err)
	}
	return readAt(c.data, dest, off)
}

// Write serves a write of an open handle, or one without.
func (f *ctlFile) Write(ctx context.Context, fh gofs.FileHandle, data []byte, off int64) (uint32, syscall.Errno) {
	if _, ok := fh.(*ctlHandle); !ok && !f.mayWrite(ctx) {
		return 0, syscall.EACCES
	}
	n, errno := f.write(ctx, data)
	if fh == nil {
		// What was written went through the page cache: drop it there.
		f.m.dropPages(f.StableAttr().Ino)
	}
	return n, errno
}

// mayWrite tells whether the caller may write: the mounting user only.
func (f *ctlFile) mayWrite(ctx context.Context) bool {
	if f.c.Write == nil {
		return false
	}
	caller, ok := fuse.FromContext(ctx)
	return ok && caller.Uid == f.m.uid
}

func (f *ctlFile) Access(ctx context.Context, mask uint32) syscall.Errno {
	if mask&unixW_OK != 0 && !f.mayWrite(ctx) {
		return syscall.EACCES
	}
	if mask&4 != 0 && f.c.Read == nil { // R_OK
		return syscall.EACCES
	}
	return 0
}

// Setattr accepts the truncation that opening with O_TRUNC (a shell's ">")
// brings, and nothing else.
func (f *ctlFile) Setattr(ctx context.Context, fh gofs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	const harmless = fuse.FATTR_SIZE | fuse.FATTR_FH | fuse.FATTR_LOCKOWNER |
		fuse.FATTR_ATIME | fuse.FATTR_MTIME | fuse.FATTR_ATIME_NOW | fuse.FATTR_MTIME_NOW | fuse.FATTR_CTIME
	if in.Valid&^harmless != 0 || (in.Valid&fuse.FATTR_SIZE != 0 && in.Size != 0) {
		return syscall.EROFS
	}
	if !f.mayWrite(ctx) {
		return syscall.EACCES
	}
	f.attr(&out.Attr)
	return 0
}

func (f *ctlFile) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	acc := flags & syscall.O_ACCMODE
	if acc != syscall.O_RDONLY && !f.mayWrite(ctx) {
		return nil, 0, syscall.EACCES
	}
	h := &ctlHandle{}
	if acc != syscall.O_WRONLY {
		if f.c.Read == nil {
			return nil, 0, syscall.EACCES
		}
		data, err := f.read(ctx)
		if err != nil {
			return nil, 0, controlErrno(err)
		}
		h.data = data
	}
	return h, fuse.FOPEN_DIRECT_IO, 0
}

// handlerContext is the mount's context with the caller of the request.
func (f *ctlFile) handlerContext(ctx context.Context) context.Context {
	if caller, ok := fuse.FromContext(ctx); ok {
		return fuse.NewContext(f.m.ctx, caller)
	}
	return f.m.ctx
}

// ctlHandle is a control file opened through OPEN: the content read at
// open.
type ctlHandle struct {
	data []byte
}

func (h *ctlHandle) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	return readAt(h.data, dest, off)
}

// readAt serves a read of [off, off+len(dest)) of data.
func readAt(data, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	if off < 0 {
		return nil, syscall.EINVAL
	}
	if off >= int64(len(data)) {
		return fuse.ReadResultData(nil), 0
	}
	return fuse.ReadResultData(data[off:min(off+int64(len(dest)), int64(len(data)))]), 0
}

// write passes each line of data to the control's Write (see
// Control.Write).
func (f *ctlFile) write(ctx context.Context, data []byte) (uint32, syscall.Errno) {
	if f.c.Write == nil {
		return 0, syscall.EBADF
	}
	defer f.m.ctlGen.Add(1) // what it did may show in status
	hctx := f.handlerContext(ctx)
	if len(bytes.TrimSpace(data)) == 0 {
		// An empty request is the handler's to refuse, not a no-op.
		if err := f.c.Write(hctx, nil); err != nil {
			f.m.opts.Logf(".ctl/%s: %v", f.c.Name, err)
			return 0, controlErrno(err)
		}
		return uint32(len(data)), 0
	}
	for rest := data; len(rest) > 0; {
		line := rest
		if i := bytes.IndexByte(rest, '\n'); i >= 0 {
			line, rest = rest[:i], rest[i+1:]
		} else {
			rest = nil
		}
		if len(line) == 0 {
			continue
		}
		if err := f.c.Write(hctx, bytes.Clone(line)); err != nil {
			f.m.opts.Logf(".ctl/%s: %v", f.c.Name, err)
			return 0, controlErrno(err)
		}
	}
	return uint32(len(data)), 0
}
