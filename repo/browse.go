package repo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"

	"github.com/snapcrypt/snapcrypt/repo/object"
)

// What `ls`, `dump` and `diff` need: paths inside a snapshot resolved
// through its trees, without a mount and without reading file contents.

// ErrNoPath is returned (wrapped, naming the path) for a path that is not
// in a snapshot.
var ErrNoPath = errors.New("no such path in the snapshot")

// ErrNotDir is returned (wrapped) for a path whose parent is not a
// directory.
var ErrNotDir = errors.New("not a directory")

// RootNode is the snapshot's root directory as a node named "/". Manifests
// without root attributes give a directory of mode 0755.
func (s *Snapshot) RootNode() *Node {
	n := &Node{Name: []byte("/"), Type: TypeDir, Mode: 0o755, Links: 2, Subtree: s.Tree}
	if s.Root != nil {
		n.Mode, n.UID, n.GID, n.MTime = s.Root.Mode, s.Root.UID, s.Root.GID, s.Root.MTime
	}
	return n
}

// CleanPath turns a path inside a snapshot into its canonical form: a
// leading "/", no "." or empty components, no trailing "/"; ".." does not
// climb above the root.
func CleanPath(p string) string {
	return path.Clean("/" + p)
}

// Lookup resolves p (a path inside the snapshot; see CleanPath) to its
// node. The root is RootNode.
func (r *Repository) Lookup(ctx context.Context, s *Snapshot, p string) (*Node, error) {
	p = CleanPath(p)
	n := s.RootNode()
	if p == "/" {
		return n, nil
	}
	walked := ""
	for _, name := range strings.Split(p[1:], "/") {
		if n.Type != TypeDir {
			return nil, fmt.Errorf("%s: %s is %w", p, walked, ErrNotDir)
		}
		t, err := r.LoadTree(ctx, n.Subtree)
		if err != nil {
			return nil, err
		}
		c := t.Find([]byte(name))
		walked += "/" + name
		if c == nil {
			return nil, fmt.Errorf("%s: %w %s", p, ErrNoPath, s.ShortID())
		}
		n = c
	}
	return n, nil
}

// Browse calls fn for each entry of the directory tree id, in name order,
// with its path (prefix + "/" + name; prefix is the directory's path
// inside the snapshot, "/" for the root). With recursive it goes into
// subdirectories after calling fn for them. It reads trees only.
func (r *Repository) Browse(ctx context.Context, id BlobID, prefix string, recursive bool, fn func(p string, n *Node) error) error {
	t, err := r.LoadTree(ctx, id)
	if err != nil {
		return err
	}
	prefix = strings.TrimSuffix(prefix, "/")
	for i := range t.Nodes {
		if err := ctx.Err(); err != nil {
			return err
		}
		n := &t.Nodes[i]
		p := prefix + "/" + string(n.Name)
		if err := fn(p, n); err != nil {
			return err
		}
		if recursive && n.Type == TypeDir {
			if err := r.Browse(ctx, n.Subtree, p, true, fn); err != nil {
				return err
			}
		}
	}
	return nil
}

// WriteFile writes the content of the regular file n to w, chunk by chunk.
func (r *Repository) WriteFile(ctx context.Context, n *Node, w io.Writer) error {
	if n.Type != TypeFile {
		return fmt.Errorf("%s is a %s, not a regular file", n.Name, n.Type)
	}
	for _, c := range n.Chunks {
		b, err := r.ReadBlob(ctx, BlobData, c.ID)
		if err != nil {
			return err
		}
		if len(b) != int(c.Length) {
			return fmt.Errorf("chunk %s is %w (length %d, want %d)", c.ID.Short(), object.ErrCorrupt, len(b), c.Length)
		}
		if _, err := w.Write(b); err != nil {
			return err
		}
	}
	return nil
}
