package repo

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"syscall"

	"github.com/snapcrypt/snapcrypt/exclude"
)

// Exclusions choose what a snapshot leaves out. They are recorded in the
// snapshot's manifest as they were given.
type Exclusions struct {
	// Patterns, in order: the last one that matches a path decides (see
	// package exclude for the syntax). They match the path inside the
	// snapshot.
	Patterns []Pattern `json:"patterns,omitempty"`
	// Caches leaves out the contents of directories holding a valid
	// CACHEDIR.TAG, keeping the directory and the tag.
	Caches bool `json:"caches,omitempty"`
	// IfPresent leaves out the contents of directories holding an entry of
	// one of these names, keeping the directory and that entry.
	IfPresent []string `json:"if_present,omitempty"`
	// LargerThan, when above 0, leaves out regular files larger than this
	// many bytes.
	LargerThan uint64 `json:"larger_than,omitempty"`
	// OneFileSystem stores a directory on another file system than the
	// path given (a mount point) without its contents, and leaves out
	// other entries on another file system.
	OneFileSystem bool `json:"one_file_system,omitempty"`
}

// Pattern is one exclude pattern.
type Pattern struct {
	Pattern    string `json:"pattern"`
	IgnoreCase bool   `json:"ignore_case,omitempty"`
}

func (e *Exclusions) empty() bool {
	return len(e.Patterns) == 0 && !e.Caches && len(e.IfPresent) == 0 && e.LargerThan == 0 && !e.OneFileSystem
}

// selector applies Exclusions during a walk.
type selector struct {
	ex      Exclusions
	m       exclude.Matcher
	markers []string // names whose presence empties a directory
}

func newSelector(ex Exclusions) (*selector, error) {
	s := &selector{ex: ex}
	for _, p := range ex.Patterns {
		if err := s.m.Add(p.Pattern, p.IgnoreCase); err != nil {
			return nil, err
		}
	}
	for _, n := range ex.IfPresent {
		if n == "" || n == "." || n == ".." || slices.Contains([]byte(n), '/') {
			return nil, fmt.Errorf("exclude-if-present: %q is not a file name", n)
		}
	}
	s.markers = ex.IfPresent
	return s, nil
}

// excluded tells whether the entry at rel (inside the snapshot), whose
// Lstat is fi, is left out by a pattern or by its size.
func (s *selector) excluded(rel string, fi os.FileInfo) bool {
	if s.ex.LargerThan > 0 && fi.Mode().IsRegular() && uint64(fi.Size()) > s.ex.LargerThan {
		return true
	}
	return s.m.Excluded(rel, fi.IsDir())
}

// children lists the names in dir in byte order, without those that a
// cache tag or a marker leaves out; left is how many were left out.
func (s *selector) children(dir string) (names []string, left uint64, err error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, 0, err
	}
	names, err = f.Readdirnames(-1)
	f.Close()
	if err != nil {
		return nil, 0, err
	}
	sort.Strings(names) // byte order
	keep := ""
	for _, m := range s.markers {
		if _, ok := slices.BinarySearch(names, m); ok {
			keep = m
			break
		}
	}
	if keep == "" && s.ex.Caches {
		if _, ok := slices.BinarySearch(names, exclude.CacheTagName); ok && exclude.IsCacheDir(dir) {
			keep = exclude.CacheTagName
		}
	}
	if keep == "" {
		return names, 0, nil
	}
	return []string{keep}, uint64(len(names) - 1), nil
}

// Totals counts the regular files, and their bytes, that TakeSnapshot of
// paths with ex would visit, reading metadata only; a progress display
// runs it beside the snapshot for an ETA. Entries that cannot be read are
// passed over.
func Totals(ctx context.Context, paths []string, ex Exclusions) (files, bytes uint64, err error) {
	s, err := newSelector(ex)
	if err != nil {
		return 0, 0, err
	}
	c := &counter{ctx: ctx, s: s}
	if len(paths) == 1 {
		if fi, err := os.Lstat(paths[0]); err == nil && fi.IsDir() {
			c.dev = devOf(fi)
			err := c.dir(paths[0], "", fi)
			return c.files, c.bytes, err
		}
	}
	for _, p := range paths {
		fi, err := os.Lstat(p)
		if err != nil {
			continue
		}
		rel := filepath.Base(p)
		if s.excluded(rel, fi) {
			continue
		}
		c.dev = devOf(fi)
		if err := c.entry(p, rel, fi); err != nil {
			return c.files, c.bytes, err
		}
	}
	return c.files, c.bytes, nil
}

type counter struct {
	ctx          context.Context
	s            *selector
	dev          uint64
	files, bytes uint64
}

func devOf(fi os.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Dev
	}
	return 0
}

func (c *counter) entry(p, rel string, fi os.FileInfo) error {
	switch {
	case fi.IsDir():
		return c.dir(p, rel, fi)
	case fi.Mode().IsRegular():
		c.files++
		c.bytes += uint64(fi.Size())
	}
	return nil
}

func (c *counter) dir(p, rel string, fi os.FileInfo) error {
	if err := c.ctx.Err(); err != nil {
		return err
	}
	if c.s.ex.OneFileSystem && devOf(fi) != c.dev {
		return nil
	}
	names, _, err := c.s.children(p)
	if err != nil {
		return nil
	}
	for _, nm := range names {
		cp := filepath.Join(p, nm)
		crel := nm
		if rel != "" {
			crel = rel + "/" + nm
		}
		cfi, err := os.Lstat(cp)
		if err != nil || c.s.excluded(crel, cfi) {
			continue
		}
		if c.s.ex.OneFileSystem && !cfi.IsDir() && devOf(cfi) != c.dev {
			continue
		}
		if err := c.entry(cp, crel, cfi); err != nil {
			return err
		}
	}
	return nil
}
