package fs

import (
	"crypto/sha256"
	"encoding/binary"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/snapcrypt/snapcrypt/repo"
)

// meta is what a node shows in stat: the snapshotted attributes.
type meta struct {
	typ          uint32 // S_IFDIR, S_IFREG or S_IFLNK
	perm         uint32 // st_mode & 07777
	uid, gid     uint32
	links        uint32
	size         uint64
	mtime, ctime int64 // ns since the epoch
}

func metaOf(n *repo.Node) meta {
	a := meta{perm: n.Mode & 07777, uid: n.UID, gid: n.GID, links: n.Links,
		size: n.Size, mtime: n.MTime, ctime: n.CTime}
	switch n.Type {
	case repo.TypeDir:
		a.typ = syscall.S_IFDIR
		a.size = 0
	case repo.TypeSymlink:
		a.typ = syscall.S_IFLNK
		a.size = uint64(len(n.Target))
	default:
		a.typ = syscall.S_IFREG
	}
	if a.links == 0 {
		a.links = 1
	}
	return a
}

// fill writes the attributes into out. Ino is the bridge's to set.
func (a *meta) fill(out *fuse.Attr) {
	out.Mode = a.typ | a.perm
	out.Size = a.size
	out.Blocks = (a.size + 4095) / 4096 * 8
	out.Blksize = 4096
	out.Nlink = a.links
	out.Uid, out.Gid = a.uid, a.gid
	out.Mtime, out.Mtimensec = splitNs(a.mtime)
	out.Atime, out.Atimensec = out.Mtime, out.Mtimensec
	out.Ctime, out.Ctimensec = splitNs(a.ctime)
}

// splitNs splits nanoseconds since the epoch into seconds and a
// non-negative remainder, as the kernel wants them (seconds may be
// negative: the kernel reads the u64 as signed).
func splitNs(ns int64) (uint64, uint32) {
	sec := ns / 1e9
	rem := ns % 1e9
	if rem < 0 {
		sec--
		rem += 1e9
	}
	return uint64(sec), uint32(rem)
}

// Inode numbers. The root is 1; the directories the mount makes up have
// small fixed numbers; everything else is a hash, so it needs no table and
// is the same however the kernel reaches it.
const (
	inoRoot      = fuse.FUSE_ROOT_ID
	inoSnapshots = 2
	inoIDs       = 3
	inoTags      = 4
	inoCtl       = 5
	inoLatest    = 6
	inoStatus    = 7
	inoFirstHash = 1 << 16
)

// hashIno is the first 8 bytes (little-endian) of the SHA-256 of the
// parts, each preceded by its length (4 bytes, little-endian). It
// allocates nothing for the short inputs inode numbers are made of (a
// listing numbers each entry).
func hashIno(parts ...[]byte) uint64 {
	var buf [256]byte
	b := buf[:0]
	for _, p := range parts {
		b = binary.LittleEndian.AppendUint32(b, uint32(len(p)))
		b = append(b, p...)
	}
	sum := sha256.Sum256(b)
	v := binary.LittleEndian.Uint64(sum[:])
	if v < inoFirstHash || v == ^uint64(0) {
		v += inoFirstHash * 2 // fold reserved values away
	}
	return v
}

// childIno numbers an entry of a snapshot directory. Hard-linked files share
// a number derived from their snapshot root and original device and inode.
func childIno(snapIno, parentIno uint64, n *repo.Node) uint64 {
	var a, b, c [8]byte
	if n.Type == repo.TypeFile && n.Links > 1 && n.Inode != 0 {
		binary.LittleEndian.PutUint64(a[:], snapIno)
		binary.LittleEndian.PutUint64(b[:], n.Dev)
		binary.LittleEndian.PutUint64(c[:], n.Inode)
		return hashIno([]byte("link"), a[:], b[:], c[:])
	}
	binary.LittleEndian.PutUint64(a[:], parentIno)
	return hashIno([]byte("entry"), a[:], n.Name)
}

func snapshotIno(id repo.ObjectID) uint64 { return hashIno([]byte("snapshot"), id[:]) }
func idLinkIno(id repo.ObjectID) uint64   { return hashIno([]byte("id"), id[:]) }
func tagDirIno(tag string) uint64         { return hashIno([]byte("tag"), []byte(tag)) }
func tagLinkIno(tag string, id repo.ObjectID) uint64 {
	return hashIno([]byte("tagged"), []byte(tag), id[:])
}
func controlIno(name string) uint64 { return hashIno([]byte("control"), []byte(name)) }

func typeOf(n *repo.Node) uint32 {
	switch n.Type {
	case repo.TypeDir:
		return syscall.S_IFDIR
	case repo.TypeSymlink:
		return syscall.S_IFLNK
	}
	return syscall.S_IFREG
}
