package repo

import (
	"fmt"
	"os"
	"slices"
	"sort"

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
