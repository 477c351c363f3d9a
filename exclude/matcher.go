// Package exclude holds what decides which entries a snapshot leaves out:
// gitignore-style patterns (Matcher), the Cache Directory Tagging check
// (IsCacheDir).
//
// Patterns match a path inside the snapshot: slash-separated, relative to
// the snapshot's root, as `snapcrypt ls` shows it. The syntax is that of
// gitignore:
//
//   - In a file (ReadFile), a blank line or one starting with '#' is no
//     pattern; write "\#" for a name that starts with '#'.
//   - A leading '!' negates: a path it matches is included again. The last
//     pattern that matches a path decides. A directory that is excluded is
//     not entered, so nothing below it can be included again.
//   - A trailing '/' matches directories only.
//   - A pattern with a '/' at its start or in its middle is anchored: it
//     matches from the root. Otherwise it matches a name at any depth.
//   - '*' matches any run of characters but '/', '?' one character but '/',
//     '[...]' one character of a class ([a-z], [!a-z] or [^a-z],
//     [[:digit:]]). A leading "**/" matches in every directory, a trailing
//     "/**" everything inside, "/**/" zero or more directories.
//   - '\' makes the next character literal (\*, \?, \[, \!, \#, "\ ").
//     Trailing spaces are dropped unless escaped.
//
// Names need not be UTF-8: bytes that are not match byte for byte, and '?'
// matches one such byte.
package exclude

import (
	"fmt"
	"strings"
)

// Matcher is an ordered list of patterns. It is safe for concurrent use
// once built.
type Matcher struct {
	rules []rule
}

type rule struct {
	src      string
	neg      bool
	dirOnly  bool
	anchored bool
	fold     bool
	// base is the single glob of an unanchored pattern, matched against
	// the last component.
	base *glob
	// segs are the components of an anchored pattern; nil marks "**".
	segs []*glob
}

// Add appends a pattern; fold makes it case-insensitive. An empty pattern
// is an error; so is a malformed one (an unclosed '[', a trailing '\').
func (m *Matcher) Add(pattern string, fold bool) error {
	r, err := compile(pattern, fold)
	if err != nil {
		return fmt.Errorf("exclude pattern %q: %w", pattern, err)
	}
	m.rules = append(m.rules, r)
	return nil
}

// Len is the number of patterns.
func (m *Matcher) Len() int { return len(m.rules) }

func compile(p string, fold bool) (rule, error) {
	r := rule{src: p, fold: fold}
	p = trimSpaces(p)
	if strings.HasPrefix(p, "!") {
		r.neg = true
		p = p[1:]
	}
	if strings.HasSuffix(p, "/") && !strings.HasSuffix(p, "\\/") {
		r.dirOnly = true
		p = strings.TrimRight(p, "/")
	}
	if p == "" {
		return r, fmt.Errorf("%w: empty", errBadPattern)
	}
	if strings.HasPrefix(p, "/") {
		r.anchored = true
		p = strings.TrimLeft(p, "/")
	} else if strings.Contains(p, "/") {
		r.anchored = true
	}
	if !r.anchored {
		if p == "**" {
			r.segs = []*glob{nil}
			r.anchored = true
			return r, nil
		}
		g, err := compileGlob(p, fold)
		if err != nil {
			return r, err
		}
		r.base = g
		return r, nil
	}
	for _, s := range strings.Split(p, "/") {
		if s == "" {
			continue // "a//b" is "a/b"
		}
		if s == "**" {
			if n := len(r.segs); n > 0 && r.segs[n-1] == nil {
				continue
			}
			r.segs = append(r.segs, nil)
			continue
		}
		g, err := compileGlob(s, fold)
		if err != nil {
			return r, err
		}
		r.segs = append(r.segs, g)
	}
	// "**/name" is "name" at any depth.
	if len(r.segs) == 2 && r.segs[0] == nil && r.segs[1] != nil {
		r.base, r.segs, r.anchored = r.segs[1], nil, false
	}
	return r, nil
}

// trimSpaces drops trailing spaces that are not escaped.
func trimSpaces(p string) string {
	for strings.HasSuffix(p, " ") {
		q := p[:len(p)-1]
		bs := len(q) - len(strings.TrimRight(q, "\\"))
		if bs%2 == 1 {
			return p
		}
		p = q
	}
	return p
}

// Excluded tells whether path (inside the snapshot, slash-separated, no
// leading slash) is excluded. It decides for path alone: the caller walks
// from the root and does not enter excluded directories, so a path below
// one is never asked about.
func (m *Matcher) Excluded(path string, isDir bool) bool {
	if len(m.rules) == 0 {
		return false
	}
	path = strings.TrimLeft(path, "/")
	base := path
	if j := strings.LastIndexByte(path, '/'); j >= 0 {
		base = path[j+1:]
	}
	// Folded forms, made when a case-insensitive rule first needs them.
	var lowerBase, lowerPath string
	var haveBase, havePath bool
	for i := len(m.rules) - 1; i >= 0; i-- {
		r := &m.rules[i]
		if r.dirOnly && !isDir {
			continue
		}
		var hit bool
		switch {
		case !r.anchored && !r.fold:
			hit = r.base.match(base, false)
		case !r.anchored:
			if !haveBase {
				lowerBase, haveBase = foldString(base), true
			}
			hit = r.base.match(lowerBase, true)
		case !r.fold:
			hit = matchSegs(r.segs, path, path != "", false)
		default:
			if !havePath {
				lowerPath, havePath = foldString(path), true
			}
			hit = matchSegs(r.segs, lowerPath, lowerPath != "", true)
		}
		if hit {
			return !r.neg
		}
	}
	return false
}

// matchSegs matches the components of rest (more: rest holds at least one
// component) against pattern segments, nil being "**" (zero or more
// components). It does not allocate.
func matchSegs(segs []*glob, rest string, more bool, fold bool) bool {
	for len(segs) > 0 {
		if segs[0] == nil {
			if len(segs) == 1 {
				// A trailing "**" matches everything inside, not the
				// directory itself.
				return more
			}
			for {
				if matchSegs(segs[1:], rest, more, fold) {
					return true
				}
				if !more {
					return false
				}
				_, rest, more = strings.Cut(rest, "/")
			}
		}
		if !more {
			return false
		}
		var comp string
		comp, rest, more = strings.Cut(rest, "/")
		if !segs[0].match(comp, fold) {
			return false
		}
		segs = segs[1:]
	}
	return !more
}
