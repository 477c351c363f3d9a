package repo

import (
	"context"
	"fmt"

	"github.com/snapcrypt/snapcrypt/repo/object"
)

// Reached is what a walk reports: a blob it reached, or a tree it could not
// walk.
type Reached struct {
	Type BlobType
	ID   BlobID
	// Path is where the walk reached the blob first: "snapshot <short
	// id>" for a snapshot's root tree, then the names below it, joined
	// with "/".
	Path string
	// Err, for a tree only, says why the walk did not go into it: it
	// could not be loaded, or it is on the path that led to it (a loop)
	// or deeper than MaxTreeDepth (both wrap ErrTreeLoop and object.ErrCorrupt).
	// A tree reached without error is reported once with a nil Err; a
	// tree met again through a loop is reported again, with the error.
	Err error
}

// treeLoader loads a decoded tree by id; *Repository.LoadTree is one.
type treeLoader func(ctx context.Context, id BlobID) (*Tree, error)

// Walk reports to visit every tree and data blob reachable from the root
// trees of snaps, each once (a tree, then the data blobs of its files, then
// its subdirectories, depth first, in entry order), and
// every tree it cannot walk (see Reached.Err). It never follows a loop and
// never goes deeper than MaxTreeDepth. It stops when visit returns an error,
// and returns that error, or ctx's.
//
// Memory: a set of the ids reached (bounded by the repository), and per
// level of the current path the ids and names of that directory's
// subdirectories; decoded trees are not held (LoadTree's cache may keep
// them).
func (r *Repository) Walk(ctx context.Context, snaps []*Snapshot, visit func(Reached) error) error {
	return walkTrees(ctx, r.LoadTree, snaps, visit)
}

// walkFrame is one level of the walk's path: a directory's subdirectories
// not walked yet.
type walkFrame struct {
	id   BlobID
	path string
	dirs []walkDir
	next int
}

type walkDir struct {
	name string
	id   BlobID
}

// walkState is what a walk has seen.
type walkState struct {
	load  treeLoader
	visit func(Reached) error
	trees map[BlobID]bool // true while the tree is on the current path
	data  map[BlobID]bool
	stack []walkFrame
}

func walkTrees(ctx context.Context, load treeLoader, snaps []*Snapshot, visit func(Reached) error) error {
	w := &walkState{load: load, visit: visit, trees: map[BlobID]bool{}, data: map[BlobID]bool{}}
	for _, s := range snaps {
		if err := w.enter(ctx, s.Tree, "snapshot "+s.ShortID()); err != nil {
			return err
		}
		for len(w.stack) > 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
			f := &w.stack[len(w.stack)-1]
			if f.next == len(f.dirs) {
				w.trees[f.id] = false // done: no longer on the path
				w.stack = w.stack[:len(w.stack)-1]
				continue
			}
			d := f.dirs[f.next]
			f.next++
			if err := w.enter(ctx, d.id, f.path+"/"+d.name); err != nil {
				return err
			}
		}
	}
	return nil
}

// enter reaches tree id at path, one level below the top of the stack:
// it reports the tree and its data blobs not seen before, and pushes its
// subdirectories, unless the tree was walked already, loops or is too deep.
func (w *walkState) enter(ctx context.Context, id BlobID, path string) error {
	onPath, seen := w.trees[id]
	switch {
	case onPath:
		return w.visit(Reached{Type: BlobTree, ID: id, Path: path,
			Err: fmt.Errorf("tree %s contains itself: %w: %w", id.Short(), ErrTreeLoop, object.ErrCorrupt)})
	case seen:
		return nil
	case len(w.stack) > MaxTreeDepth:
		return w.visit(Reached{Type: BlobTree, ID: id, Path: path,
			Err: fmt.Errorf("tree %s nests deeper than %d levels: %w: %w", id.Short(), MaxTreeDepth, ErrTreeLoop, object.ErrCorrupt)})
	}
	w.trees[id] = false
	t, err := w.load(ctx, id)
	if err != nil {
		return w.visit(Reached{Type: BlobTree, ID: id, Path: path, Err: err})
	}
	if err := w.visit(Reached{Type: BlobTree, ID: id, Path: path}); err != nil {
		return err
	}
	f := walkFrame{id: id, path: path}
	for i := range t.Nodes {
		n := &t.Nodes[i]
		switch n.Type {
		case TypeDir:
			f.dirs = append(f.dirs, walkDir{string(n.Name), n.Subtree})
		case TypeFile:
			for _, c := range n.Chunks {
				if w.data[c.ID] {
					continue
				}
				w.data[c.ID] = true
				if err := w.visit(Reached{Type: BlobData, ID: c.ID, Path: path + "/" + string(n.Name)}); err != nil {
					return err
				}
			}
		}
	}
	w.trees[id] = true
	w.stack = append(w.stack, f)
	return nil
}
