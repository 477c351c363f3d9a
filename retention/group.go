package retention

import (
	"fmt"
	"slices"
	"sort"
	"strings"
)

// GroupBy says which fields put snapshots in the same group; with none,
// all snapshots form one group.
type GroupBy struct {
	Host, Paths, Name, Tags bool
}

// DefaultGroupBy is restic's default: host and paths.
var DefaultGroupBy = GroupBy{Host: true, Paths: true}

// ParseGroupBy reads a comma-separated list of host, paths, name and tags
// (the singular forms too); the empty string groups nothing.
func ParseGroupBy(s string) (GroupBy, error) {
	var g GroupBy
	for _, f := range strings.Split(s, ",") {
		switch strings.TrimSpace(f) {
		case "host", "hosts":
			g.Host = true
		case "path", "paths":
			g.Paths = true
		case "name", "names":
			g.Name = true
		case "tag", "tags":
			g.Tags = true
		case "":
		default:
			return GroupBy{}, fmt.Errorf("unknown grouping %q (host, paths, name, tags)", f)
		}
	}
	return g, nil
}

// String writes g the way ParseGroupBy reads it.
func (g GroupBy) String() string {
	var fs []string
	for _, f := range []struct {
		on   bool
		name string
	}{{g.Host, "host"}, {g.Paths, "paths"}, {g.Name, "name"}, {g.Tags, "tags"}} {
		if f.on {
			fs = append(fs, f.name)
		}
	}
	return strings.Join(fs, ",")
}

// Key is what the snapshots of one group share: the fields grouped by (the
// others are empty). Paths and Tags are sorted.
type Key struct {
	Host  string   `json:"host,omitempty"`
	Paths []string `json:"paths,omitempty"`
	Name  string   `json:"name,omitempty"`
	Tags  []string `json:"tags,omitempty"`
}

// String describes the key for people, e.g. `host a, paths [/x /y]`.
func (k Key) String() string {
	var parts []string
	if k.Host != "" {
		parts = append(parts, "host "+k.Host)
	}
	if len(k.Paths) > 0 {
		parts = append(parts, "paths ["+strings.Join(k.Paths, " ")+"]")
	}
	if k.Name != "" {
		parts = append(parts, "name "+k.Name)
	}
	if len(k.Tags) > 0 {
		parts = append(parts, "tags "+tagList(k.Tags))
	}
	if len(parts) == 0 {
		return "all snapshots"
	}
	return strings.Join(parts, ", ")
}

func compareKeys(a, b Key) int {
	if c := strings.Compare(a.Host, b.Host); c != 0 {
		return c
	}
	if c := slices.Compare(a.Paths, b.Paths); c != 0 {
		return c
	}
	if c := strings.Compare(a.Name, b.Name); c != 0 {
		return c
	}
	return slices.Compare(a.Tags, b.Tags)
}

// Group is the snapshots that share one Key, newest first.
type Group struct {
	Key       Key
	Snapshots []Snapshot
}

// Groups splits snaps by the fields of by. Groups come in the order of
// their keys (host, then paths, name and tags); snapshots in each newest
// first. snaps is not modified.
func Groups(snaps []Snapshot, by GroupBy) []Group {
	var groups []Group
	for _, s := range snaps {
		var k Key
		if by.Host {
			k.Host = s.Host
		}
		if by.Paths {
			k.Paths = sorted(s.Paths)
		}
		if by.Name {
			k.Name = s.Name
		}
		if by.Tags {
			k.Tags = sorted(s.Tags)
		}
		i := slices.IndexFunc(groups, func(g Group) bool { return compareKeys(g.Key, k) == 0 })
		if i < 0 {
			groups = append(groups, Group{Key: k})
			i = len(groups) - 1
		}
		groups[i].Snapshots = append(groups[i].Snapshots, s)
	}
	sort.Slice(groups, func(i, j int) bool { return compareKeys(groups[i].Key, groups[j].Key) < 0 })
	for i := range groups {
		Newest(groups[i].Snapshots)
	}
	return groups
}

func sorted(l []string) []string {
	if len(l) == 0 {
		return nil
	}
	l = slices.Clone(l)
	sort.Strings(l)
	return l
}

// Filter selects the snapshots a forget considers. An empty field selects
// all; Hosts and Names select snapshots with any of the values, Tags those
// that carry every tag of at least one list (as Policy.Tags).
type Filter struct {
	Hosts []string
	Names []string
	Tags  [][]string
}

// Match reports whether the filter selects s.
func (f Filter) Match(s Snapshot) bool {
	if len(f.Hosts) > 0 && !slices.Contains(f.Hosts, s.Host) {
		return false
	}
	if len(f.Names) > 0 && !slices.Contains(f.Names, s.Name) {
		return false
	}
	if len(f.Tags) > 0 && !slices.ContainsFunc(f.Tags, func(l []string) bool { return hasTags(s.Tags, l) }) {
		return false
	}
	return true
}

// Empty reports whether the filter selects every snapshot.
func (f Filter) Empty() bool { return len(f.Hosts) == 0 && len(f.Names) == 0 && len(f.Tags) == 0 }
