package repo

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/snapcrypt/snapcrypt/repo/object"
)

// RestoreOptions tune a restore.
type RestoreOptions struct {
	// Include, when non-empty, restores only entries whose path inside the
	// snapshot (slash-separated, no leading slash) matches one of the
	// patterns (path.Match), with their parents and, for directories,
	// everything below them.
	Include []string
	// Warn receives a message for each entry that could not be restored
	// fully (ownership as an ordinary user, for example).
	Warn func(msg string)
	// Progress, when set, is called now and then (and once at the end)
	// with the figures so far.
	Progress func(RestoreProgress)
}

// RestoreProgress are the running figures of a restore.
type RestoreProgress struct {
	Files   uint64 // regular files written (hard links count once)
	Bytes   uint64 // bytes of content written
	Start   time.Time
	Current string // the file being written; empty at the end
}

// RestoreResult tells what a restore did.
type RestoreResult struct {
	Files, Dirs, Symlinks, Hardlinks uint64
	Bytes                            uint64
	Warnings                         int
}

type restorer struct {
	r     *Repository
	opts  RestoreOptions
	res   RestoreResult
	links map[[2]uint64]string
	root  bool
	path  []BlobID // the trees from the root to the one being restored
	prog  RestoreProgress
	last  time.Time
}

func (rs *restorer) progress(force bool) {
	if rs.opts.Progress == nil {
		return
	}
	if now := time.Now(); force || now.Sub(rs.last) > 200*time.Millisecond {
		rs.last = now
		rs.opts.Progress(rs.prog)
	}
}

// Restore writes the snapshot's tree below target, which must be absent or
// an empty directory. Content, modes, ownership (as root), times with
// nanoseconds, symlinks and hard links are reproduced; target itself gets
// the root directory's attributes (unless Include selects a part).
func (r *Repository) Restore(ctx context.Context, s *Snapshot, target string, opts RestoreOptions) (*RestoreResult, error) {
	for _, p := range opts.Include {
		if _, err := path.Match(p, ""); err != nil {
			return nil, fmt.Errorf("include pattern %q: %w", p, err)
		}
	}
	if ents, err := os.ReadDir(target); err == nil && len(ents) > 0 {
		return nil, fmt.Errorf("restore target %s is not empty", target)
	} else if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("restore target: %w", err)
	}
	if err := os.MkdirAll(target, 0o700); err != nil {
		return nil, fmt.Errorf("restore target: %w", err)
	}
	rs := &restorer{r: r, opts: opts, links: map[[2]uint64]string{}, root: os.Geteuid() == 0}
	rs.prog.Start = time.Now()
	if err := rs.dir(ctx, s.Tree, target, ""); err != nil {
		return &rs.res, err
	}
	rs.prog.Current = ""
	rs.progress(true)
	if s.Root != nil && len(opts.Include) == 0 {
		rs.meta(&Node{Type: TypeDir, Mode: s.Root.Mode, UID: s.Root.UID, GID: s.Root.GID, MTime: s.Root.MTime}, target)
	}
	return &rs.res, nil
}

// RestoreTotals counts the regular files (a hard-linked file once) and
// their bytes that Restore with the include patterns given (none: the
// whole snapshot) would write: the pre-scan that gives restore's progress
// its totals and ETA. It reads trees only, and stops at MaxTreeDepth.
func (r *Repository) RestoreTotals(ctx context.Context, s *Snapshot, include []string) (files, bytes uint64, err error) {
	rs := &restorer{r: r, opts: RestoreOptions{Include: include}}
	seen := map[[2]uint64]bool{}
	var walk func(id BlobID, rel string, all bool, depth int) error
	walk = func(id BlobID, rel string, all bool, depth int) error {
		if depth > MaxTreeDepth {
			return fmt.Errorf("tree %s is %w: %w", id.Short(), object.ErrCorrupt, ErrTreeLoop)
		}
		t, err := r.LoadTree(ctx, id)
		if err != nil {
			return err
		}
		for i := range t.Nodes {
			if err := ctx.Err(); err != nil {
				return err
			}
			n := &t.Nodes[i]
			nrel := string(n.Name)
			if rel != "" {
				nrel = rel + "/" + nrel
			}
			m := 1
			if !all {
				m = rs.match(nrel)
			}
			switch {
			case m == 0 || (m == 2 && n.Type != TypeDir):
			case n.Type == TypeDir:
				if err := walk(n.Subtree, nrel, all || m == 1, depth+1); err != nil {
					return err
				}
			case n.Type == TypeFile:
				if n.Links > 1 {
					k := [2]uint64{n.Dev, n.Inode}
					if seen[k] {
						continue
					}
					seen[k] = true
				}
				files++
				bytes += n.Size
			}
		}
		return nil
	}
	err = walk(s.Tree, "", len(include) == 0, 0)
	return files, bytes, err
}

// match tells whether rel is selected (1), an ancestor of a selection (2),
// or neither (0).
func (rs *restorer) match(rel string) int {
	if len(rs.opts.Include) == 0 {
		return 1
	}
	sel := 0
	for _, p := range rs.opts.Include {
		if ok, _ := path.Match(p, rel); ok {
			return 1
		}
		// An ancestor of what a pattern can match.
		pp := strings.Split(p, "/")
		rp := strings.Split(rel, "/")
		if len(rp) < len(pp) {
			anc := true
			for i := range rp {
				if ok, _ := path.Match(pp[i], rp[i]); !ok {
					anc = false
					break
				}
			}
			if anc {
				sel = 2
			}
		}
	}
	return sel
}

func (rs *restorer) warn(format string, args ...any) {
	rs.res.Warnings++
	if rs.opts.Warn != nil {
		rs.opts.Warn(fmt.Sprintf(format, args...))
	}
}

// dir restores the entries of tree id into the existing directory dst.
// rel is dst's path inside the snapshot.
func (rs *restorer) dir(ctx context.Context, id BlobID, dst, rel string) error {
	if err := rs.enter(id, rel); err != nil {
		return err
	}
	defer func() { rs.path = rs.path[:len(rs.path)-1] }()
	t, err := rs.r.LoadTree(ctx, id)
	if err != nil {
		return err
	}
	for i := range t.Nodes {
		if err := ctx.Err(); err != nil {
			return err
		}
		n := &t.Nodes[i]
		nrel := string(n.Name)
		if rel != "" {
			nrel = rel + "/" + nrel
		}
		m := rs.match(nrel)
		if m == 0 {
			continue
		}
		p := filepath.Join(dst, string(n.Name))
		if m == 2 && n.Type != TypeDir {
			continue
		}
		switch n.Type {
		case TypeDir:
			if err := os.Mkdir(p, 0o700); err != nil {
				return fmt.Errorf("restore: %w", err)
			}
			sub := nrel
			if m == 1 {
				// everything below a selected directory is selected
				saved := rs.opts.Include
				rs.opts.Include = nil
				err = rs.dir(ctx, n.Subtree, p, sub)
				rs.opts.Include = saved
			} else {
				err = rs.dir(ctx, n.Subtree, p, sub)
			}
			if err != nil {
				return err
			}
			rs.res.Dirs++
		case TypeSymlink:
			if err := os.Symlink(string(n.Target), p); err != nil {
				return fmt.Errorf("restore: %w", err)
			}
			rs.res.Symlinks++
		case TypeFile:
			key := [2]uint64{n.Dev, n.Inode}
			if n.Links > 1 {
				if first, ok := rs.links[key]; ok {
					if err := os.Link(first, p); err != nil {
						return fmt.Errorf("restore: %w", err)
					}
					rs.res.Hardlinks++
					continue
				}
			}
			if err := rs.file(ctx, n, p); err != nil {
				return err
			}
			if n.Links > 1 {
				rs.links[key] = p
			}
			rs.res.Files++
		}
		rs.meta(n, p)
	}
	return nil
}

// enter puts tree id, at rel, on the path of trees being restored, unless
// it is on it already (a loop) or the path is MaxTreeDepth trees long.
func (rs *restorer) enter(id BlobID, rel string) error {
	where := "/" + rel
	for _, p := range rs.path {
		if p == id {
			return fmt.Errorf("restore %s: tree %s contains itself: %w: %w", where, id.Short(), ErrTreeLoop, object.ErrCorrupt)
		}
	}
	if len(rs.path) > MaxTreeDepth {
		return fmt.Errorf("restore %s: tree %s nests deeper than %d levels: %w: %w", where, id.Short(), MaxTreeDepth, ErrTreeLoop, object.ErrCorrupt)
	}
	rs.path = append(rs.path, id)
	return nil
}

func (rs *restorer) file(ctx context.Context, n *Node, p string) error {
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	var off int64
	rs.prog.Current = p
	for _, c := range n.Chunks {
		b, err := rs.r.ReadBlob(ctx, BlobData, c.ID)
		if err != nil {
			f.Close()
			return fmt.Errorf("restore %s: %w", p, err)
		}
		if len(b) != int(c.Length) {
			f.Close()
			return fmt.Errorf("restore %s: chunk %s is %w (length %d, want %d)", p, c.ID.Short(), object.ErrCorrupt, len(b), c.Length)
		}
		rs.prog.Bytes += uint64(len(b))
		rs.progress(false)
		if isZero(b) {
			off += int64(len(b)) // keep sparse files sparse
			continue
		}
		if _, err := f.WriteAt(b, off); err != nil {
			f.Close()
			return fmt.Errorf("restore %s: %w", p, err)
		}
		off += int64(len(b))
	}
	rs.prog.Files++
	rs.progress(false)
	if err := f.Truncate(int64(n.Size)); err != nil {
		f.Close()
		return fmt.Errorf("restore %s: %w", p, err)
	}
	rs.res.Bytes += n.Size
	if err := f.Close(); err != nil {
		return fmt.Errorf("restore %s: %w", p, err)
	}
	return nil
}

func isZero(b []byte) bool {
	for len(b) >= 8 {
		if b[0]|b[1]|b[2]|b[3]|b[4]|b[5]|b[6]|b[7] != 0 {
			return false
		}
		b = b[8:]
	}
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// meta sets ownership, mode and times; directories get theirs after their
// contents (dir calls meta on the parent's loop after recursing).
func (rs *restorer) meta(n *Node, p string) {
	if rs.root {
		if err := os.Lchown(p, int(n.UID), int(n.GID)); err != nil {
			rs.warn("%s: chown: %v", p, err)
		}
	}
	if n.Type != TypeSymlink {
		if err := os.Chmod(p, os.FileMode(n.Mode&0o777)|modeBits(n.Mode)); err != nil {
			rs.warn("%s: chmod: %v", p, err)
		}
	}
	ts := []unix.Timespec{unix.NsecToTimespec(n.MTime), unix.NsecToTimespec(n.MTime)}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		rs.warn("%s: times: %v", p, err)
	}
}

func modeBits(m uint32) os.FileMode {
	var fm os.FileMode
	if m&syscall.S_ISUID != 0 {
		fm |= os.ModeSetuid
	}
	if m&syscall.S_ISGID != 0 {
		fm |= os.ModeSetgid
	}
	if m&syscall.S_ISVTX != 0 {
		fm |= os.ModeSticky
	}
	return fm
}
