package repo

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"time"
)

// StdinPathPrefix starts the one entry of Snapshot.Paths of a snapshot
// taken by SnapshotReader: "stdin:" and the file's name.
const StdinPathPrefix = "stdin:"

// SnapshotReader snapshots everything rd yields as one regular file named
// name (one path component) at the root of a new snapshot, mode 0644,
// owned by this process's user, its time the snapshot's. Any error reading
// rd fails the snapshot and no manifest is written: only a reader that
// ends with io.EOF makes a snapshot. (A pipe whose writer dies ends with
// EOF; a caller that runs the producing process, as `snapshot
// --stdin-from-command` does, turns its failure into a read error.)
// opts.Exclude does not apply.
func (r *Repository) SnapshotReader(ctx context.Context, rd io.Reader, name string, opts SnapshotOptions) (*SnapshotResult, error) {
	if name == "" || name == "." || name == ".." || bytes.ContainsAny([]byte(name), "/\x00") {
		return nil, fmt.Errorf("snapshot of standard input: %q is not a file name", name)
	}
	opts.Exclude = Exclusions{}
	a, stop, err := r.newArchiver(ctx, opts)
	if err != nil {
		return nil, err
	}
	defer stop()
	now := time.Now().UnixNano()
	if !opts.Time.IsZero() {
		now = opts.Time.UnixNano()
	}
	uid, gid := uint32(os.Getuid()), uint32(os.Getgid())
	n := Node{Name: []byte(name), Type: TypeFile, Mode: 0o644, UID: uid, GID: gid, MTime: now, CTime: now, Links: 1}
	a.prog.Files = 1
	a.prog.Current = name
	size, readErr, err := a.read(ctxReader{ctx, rd}, &n)
	if err != nil {
		return nil, err
	}
	if readErr != nil {
		return nil, fmt.Errorf("snapshot of standard input: reading failed after %d bytes, no snapshot written: %w", size, readErr)
	}
	n.Size = size
	a.prog.Bytes = size
	id, err := a.storeTree(ctx, &Tree{Nodes: []Node{n}})
	if err != nil {
		return nil, err
	}
	a.prog.Dirs = 1
	root := &Node{Name: []byte("/"), Type: TypeDir, Mode: 0o755, UID: uid, GID: gid, MTime: now, CTime: now, Links: 2, Subtree: id}
	return a.commit(ctx, root, []string{StdinPathPrefix + name}, nil)
}

// ctxReader fails reads once ctx is done, so an interrupt stops a
// snapshot of a reader that never ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
