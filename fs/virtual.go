package fs

import (
	"context"
	"sort"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/snapcrypt/snapcrypt/repo"
)

// vdir is a directory the mount makes up: the root, snapshots/, ids/,
// tags/, tags/<tag>/ and .ctl/. Its entries come from the current view, so
// they follow refreshes.
type vdir struct {
	gofs.Inode
	readOnly
	m       *mount
	entries func(v *view) []ventry // sorted by name
	// dynamic: a missing name triggers a refresh, and the kernel does not
	// remember that it was missing.
	dynamic bool
}

// ventry is one entry of a vdir.
type ventry struct {
	name string
	ino  uint64
	typ  uint32 // S_IFDIR, S_IFLNK or S_IFREG
	node func() gofs.InodeEmbedder
}

// attrer is a node that can fill stat attributes.
type attrer interface {
	attr(out *fuse.Attr)
	timeout() time.Duration
}

func (d *vdir) attr(out *fuse.Attr) {
	v := d.m.current()
	t := d.m.started.UnixNano()
	if v != nil && v.latest != nil {
		t = v.latest.s.Time.UnixNano()
	}
	a := meta{typ: syscall.S_IFDIR, perm: 0o555, uid: d.m.uid, gid: d.m.gid, links: 2, mtime: t, ctime: t}
	a.fill(out)
}

func (d *vdir) timeout() time.Duration { return dynamicTimeout }

func (d *vdir) Getattr(ctx context.Context, f gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	d.attr(&out.Attr)
	out.SetTimeout(dynamicTimeout)
	return 0
}

func (d *vdir) find(name string) (ventry, bool) {
	es := d.entries(d.m.current())
	i := sort.Search(len(es), func(i int) bool { return es[i].name >= name })
	if i < len(es) && es[i].name == name {
		return es[i], true
	}
	return ventry{}, false
}

func (d *vdir) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	e, ok := d.find(name)
	if !ok && d.dynamic {
		d.m.refreshIfOlder(time.Second)
		e, ok = d.find(name)
	}
	if !ok {
		if d.dynamic {
			out.SetEntryTimeout(time.Nanosecond) // do not cache the miss
		}
		return nil, syscall.ENOENT
	}
	ops := e.node()
	ch := d.NewInode(ctx, ops, gofs.StableAttr{Mode: e.typ, Ino: e.ino})
	if a, ok := ch.Operations().(attrer); ok {
		a.attr(&out.Attr)
		out.SetAttrTimeout(a.timeout())
	}
	out.SetEntryTimeout(dynamicTimeout)
	return ch, 0
}

func (d *vdir) Readdir(ctx context.Context) (gofs.DirStream, syscall.Errno) {
	es := d.entries(d.m.current())
	list := make([]fuse.DirEntry, 0, len(es)+2)
	_, parent := d.Parent()
	pino := d.StableAttr().Ino
	if parent != nil {
		pino = parent.StableAttr().Ino
	}
	list = append(list,
		fuse.DirEntry{Name: ".", Mode: syscall.S_IFDIR, Ino: d.StableAttr().Ino},
		fuse.DirEntry{Name: "..", Mode: syscall.S_IFDIR, Ino: pino})
	for _, e := range es {
		list = append(list, fuse.DirEntry{Name: e.name, Mode: e.typ, Ino: e.ino})
	}
	return gofs.NewListDirStream(list), 0
}

func (d *vdir) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	d.m.statfs(out)
	return 0
}

// vlink is a symlink the mount makes up; its target follows refreshes.
type vlink struct {
	gofs.Inode
	readOnly
	m      *mount
	target func(v *view) (string, *snapEntry)
}

func (l *vlink) attr(out *fuse.Attr) {
	t, e := l.target(l.m.current())
	a := meta{typ: syscall.S_IFLNK, perm: 0o777, uid: l.m.uid, gid: l.m.gid, links: 1, size: uint64(len(t))}
	if e != nil && e.err == nil {
		a.mtime = e.s.Time.UnixNano()
		a.ctime = a.mtime
	}
	a.fill(out)
}

func (l *vlink) timeout() time.Duration { return dynamicTimeout }

func (l *vlink) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	l.m.statfs(out)
	return 0
}

func (l *vlink) Getattr(ctx context.Context, f gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	l.attr(&out.Attr)
	out.SetTimeout(dynamicTimeout)
	return 0
}

func (l *vlink) Readlink(ctx context.Context) ([]byte, syscall.Errno) {
	t, e := l.target(l.m.current())
	if e == nil {
		return nil, syscall.ENOENT
	}
	return []byte(t), 0
}

// The tree of made-up directories.

func (m *mount) rootDir() *vdir {
	entries := []ventry{
		{name: ".ctl", ino: inoCtl, typ: syscall.S_IFDIR, node: m.ctlDir},
		{name: "ids", ino: inoIDs, typ: syscall.S_IFDIR, node: m.idsDir},
		{name: "snapshots", ino: inoSnapshots, typ: syscall.S_IFDIR, node: m.snapshotsDir},
		{name: "tags", ino: inoTags, typ: syscall.S_IFDIR, node: m.tagsDir},
	}
	return &vdir{m: m, entries: func(*view) []ventry { return entries }}
}

func (m *mount) snapshotsDir() gofs.InodeEmbedder {
	return &vdir{m: m, dynamic: true, entries: func(v *view) []ventry {
		es := make([]ventry, 0, len(v.names))
		for _, name := range v.names {
			if e := v.byName[name]; e != nil && e.err != nil {
				es = append(es, ventry{name: name, ino: e.ino, typ: syscall.S_IFDIR,
					node: func() gofs.InodeEmbedder { return &unreadableDir{m: m, err: e.err} }})
			} else if e != nil {
				es = append(es, ventry{name: name, ino: e.ino, typ: syscall.S_IFDIR,
					node: func() gofs.InodeEmbedder { return m.snapshotRoot(e) }})
			} else if name == "latest" {
				es = append(es, ventry{name: name, ino: inoLatest, typ: syscall.S_IFLNK,
					node: func() gofs.InodeEmbedder { return &vlink{m: m, target: latestTarget} }})
			}
		}
		return es
	}}
}

func latestTarget(v *view) (string, *snapEntry) {
	if v.latest == nil {
		return "", nil
	}
	return v.latest.name, v.latest
}

func (m *mount) idsDir() gofs.InodeEmbedder {
	return &vdir{m: m, dynamic: true, entries: func(v *view) []ventry {
		es := make([]ventry, 0, len(v.ids))
		for _, short := range v.ids {
			id := v.byID[short].s.ID
			es = append(es, ventry{name: short, ino: idLinkIno(id), typ: syscall.S_IFLNK,
				node: func() gofs.InodeEmbedder { return &vlink{m: m, target: snapshotTarget("../snapshots/", id)} }})
		}
		return es
	}}
}

// snapshotTarget points at the snapshot with the given id, by its name.
func snapshotTarget(prefix string, id repo.ObjectID) func(v *view) (string, *snapEntry) {
	return func(v *view) (string, *snapEntry) {
		if e := v.byObj[id]; e != nil {
			return prefix + e.name, e
		}
		return "", nil
	}
}

func (m *mount) tagsDir() gofs.InodeEmbedder {
	return &vdir{m: m, dynamic: true, entries: func(v *view) []ventry {
		es := make([]ventry, 0, len(v.tagNms))
		for _, tag := range v.tagNms {
			es = append(es, ventry{name: tag, ino: tagDirIno(tag), typ: syscall.S_IFDIR,
				node: func() gofs.InodeEmbedder { return m.tagDir(tag) }})
		}
		return es
	}}
}

func (m *mount) tagDir(tag string) gofs.InodeEmbedder {
	return &vdir{m: m, dynamic: true, entries: func(v *view) []ventry {
		tagged := v.tags[tag]
		es := make([]ventry, 0, len(tagged))
		for _, e := range tagged {
			id := e.s.ID
			es = append(es, ventry{name: e.name, ino: tagLinkIno(tag, id), typ: syscall.S_IFLNK,
				node: func() gofs.InodeEmbedder { return &vlink{m: m, target: snapshotTarget("../../snapshots/", id)} }})
		}
		return es
	}}
}

func (m *mount) statfs(out *fuse.StatfsOut) {
	*out = fuse.StatfsOut{}
	out.Bsize = 4096
	out.Frsize = 4096
	out.NameLen = 255
	if v := m.current(); v != nil {
		out.Blocks = v.blocks
		out.Files = v.files
	}
}

// unreadableDir is the directory of a snapshot whose manifest cannot be
// read: looking inside answers EIO (status tells why).
type unreadableDir struct {
	gofs.Inode
	readOnly
	m   *mount
	err error
}

func (d *unreadableDir) attr(out *fuse.Attr) {
	a := meta{typ: syscall.S_IFDIR, perm: 0o555, uid: d.m.uid, gid: d.m.gid, links: 2}
	a.fill(out)
}

func (d *unreadableDir) timeout() time.Duration { return dynamicTimeout }

func (d *unreadableDir) Getattr(ctx context.Context, f gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	d.attr(&out.Attr)
	out.SetTimeout(dynamicTimeout)
	return 0
}

func (d *unreadableDir) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	return nil, d.m.fail(inodePlace{&d.Inode}, d.err)
}

func (d *unreadableDir) OpendirHandle(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	return nil, 0, d.m.fail(inodePlace{&d.Inode}, d.err)
}

func (d *unreadableDir) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	d.m.statfs(out)
	return 0
}
