package repo

import (
	"bytes"
	"context"
	"slices"
)

// ChangeKind says how an entry differs between two snapshots.
type ChangeKind uint8

// Kinds of change.
const (
	Added    ChangeKind = iota + 1
	Removed             // in the old snapshot only
	Modified            // content differs: other chunks, or another symlink target
	MetaOnly            // same content; mode, owner, mtime or link count differ
)

func (k ChangeKind) String() string {
	switch k {
	case Added:
		return "added"
	case Removed:
		return "removed"
	case Modified:
		return "modified"
	case MetaOnly:
		return "metadata"
	}
	return "?"
}

// Change is one difference. Old is nil for Added, New for Removed.
type Change struct {
	Path     string
	Kind     ChangeKind
	Old, New *Node
}

// diffDirs reports the differences between the entries of the
// directories old and new, whose paths are prefix.
func (r *Repository) diffDirs(ctx context.Context, old, new *Node, prefix string, fn func(Change) error) error {
	if old.Subtree == new.Subtree {
		return nil
	}
	ot, err := r.LoadTree(ctx, old.Subtree)
	if err != nil {
		return err
	}
	nt, err := r.LoadTree(ctx, new.Subtree)
	if err != nil {
		return err
	}
	if prefix == "/" {
		prefix = ""
	}
	i, j := 0, 0
	for i < len(ot.Nodes) || j < len(nt.Nodes) {
		if err := ctx.Err(); err != nil {
			return err
		}
		var c int
		switch {
		case i == len(ot.Nodes):
			c = 1
		case j == len(nt.Nodes):
			c = -1
		default:
			c = bytes.Compare(ot.Nodes[i].Name, nt.Nodes[j].Name)
		}
		switch {
		case c < 0:
			o := &ot.Nodes[i]
			if err := r.all(ctx, Removed, o, prefix+"/"+string(o.Name), fn); err != nil {
				return err
			}
			i++
		case c > 0:
			n := &nt.Nodes[j]
			if err := r.all(ctx, Added, n, prefix+"/"+string(n.Name), fn); err != nil {
				return err
			}
			j++
		default:
			o, n := &ot.Nodes[i], &nt.Nodes[j]
			if err := r.Diff(ctx, o, n, prefix+"/"+string(o.Name), fn); err != nil {
				return err
			}
			i++
			j++
		}
	}
	return nil
}

// Diff calls fn for every difference between the entries o and n (of
// any types), whose path (inside their snapshots) is p; for two
// directories, that is their own metadata and everything below. Subtrees
// with the same tree id are identical and skipped; files compare by their
// chunk lists, so no file content is read. An entry that changed type is
// Removed then Added; below an added or removed directory every entry is
// reported too. A directory whose entries changed is not reported for its
// mtime alone. A nil o (n) reports n (o) and everything below it as
// added (removed).
func (r *Repository) Diff(ctx context.Context, o, n *Node, p string, fn func(Change) error) error {
	switch {
	case o == nil && n == nil:
		return nil
	case o == nil:
		return r.all(ctx, Added, n, p, fn)
	case n == nil:
		return r.all(ctx, Removed, o, p, fn)
	}
	if o.Type != n.Type {
		if err := r.all(ctx, Removed, o, p, fn); err != nil {
			return err
		}
		return r.all(ctx, Added, n, p, fn)
	}
	meta := o.Mode != n.Mode || o.UID != n.UID || o.GID != n.GID
	switch n.Type {
	case TypeDir:
		if o.Subtree == n.Subtree && o.MTime != n.MTime {
			meta = true
		}
		if meta {
			if err := fn(Change{Path: p, Kind: MetaOnly, Old: o, New: n}); err != nil {
				return err
			}
		}
		return r.diffDirs(ctx, o, n, p, fn)
	case TypeFile:
		if !slices.Equal(o.Chunks, n.Chunks) {
			return fn(Change{Path: p, Kind: Modified, Old: o, New: n})
		}
		meta = meta || o.MTime != n.MTime || o.Links != n.Links
	case TypeSymlink:
		if !bytes.Equal(o.Target, n.Target) {
			return fn(Change{Path: p, Kind: Modified, Old: o, New: n})
		}
		meta = meta || o.MTime != n.MTime
	}
	if meta {
		return fn(Change{Path: p, Kind: MetaOnly, Old: o, New: n})
	}
	return nil
}

// all reports n, and everything below it if it is a directory, as added
// or removed.
func (r *Repository) all(ctx context.Context, k ChangeKind, n *Node, p string, fn func(Change) error) error {
	c := Change{Path: p, Kind: k}
	if k == Added {
		c.New = n
	} else {
		c.Old = n
	}
	if err := fn(c); err != nil {
		return err
	}
	if n.Type != TypeDir {
		return nil
	}
	return r.Browse(ctx, n.Subtree, p, true, func(q string, m *Node) error {
		c := Change{Path: q, Kind: k}
		if k == Added {
			c.New = m
		} else {
			c.Old = m
		}
		return fn(c)
	})
}
