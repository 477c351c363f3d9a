package retention

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestGroups(t *testing.T) {
	base := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	mk := func(id string, h int, host, name string, paths, tags []string) Snapshot {
		return Snapshot{ID: id, Time: base.Add(time.Duration(h) * time.Hour), Host: host, Name: name, Paths: paths, Tags: tags}
	}
	snaps := []Snapshot{
		mk("1", 1, "b", "home", []string{"/x", "/y"}, []string{"t2", "t1"}),
		mk("2", 2, "b", "home", []string{"/y", "/x"}, []string{"t1", "t2"}), // same paths, other order
		mk("3", 3, "a", "home", []string{"/x"}, nil),
		mk("4", 4, "b", "etc", []string{"/x", "/y"}, []string{"t1"}),
		mk("5", 5, "a", "etc", []string{"/x"}, nil),
	}
	show := func(gs []Group) string {
		var parts []string
		for _, g := range gs {
			var ids []string
			for _, s := range g.Snapshots {
				ids = append(ids, s.ID)
			}
			parts = append(parts, g.Key.String()+"="+strings.Join(ids, ","))
		}
		return strings.Join(parts, "; ")
	}
	for _, c := range []struct {
		by   string
		want string
	}{
		{"host,paths", "host a, paths [/x]=5,3; host b, paths [/x /y]=4,2,1"},
		{"", "all snapshots=5,4,3,2,1"},
		{"host", "host a=5,3; host b=4,2,1"},
		{"paths", "paths [/x]=5,3; paths [/x /y]=4,2,1"},
		{"name", "name etc=5,4; name home=3,2,1"},
		{"tags", "all snapshots=5,3; tags [t1]=4; tags [t1, t2]=2,1"},
		{"host,name,tags", "host a, name etc=5; host a, name home=3; host b, name etc, tags [t1]=4; host b, name home, tags [t1, t2]=2,1"},
	} {
		by, err := ParseGroupBy(c.by)
		if err != nil {
			t.Fatal(err)
		}
		in := append([]Snapshot(nil), snaps...)
		if got := show(Groups(snaps, by)); got != c.want {
			t.Errorf("group by %q:\ngot  %s\nwant %s", c.by, got, c.want)
		}
		if !reflect.DeepEqual(in, snaps) {
			t.Errorf("group by %q changed its input", c.by)
		}
	}
	if DefaultGroupBy.String() != "host,paths" {
		t.Errorf("default grouping %q", DefaultGroupBy)
	}
}

func TestParseGroupBy(t *testing.T) {
	g, err := ParseGroupBy("tag,path,hosts,names")
	if err != nil || g != (GroupBy{Host: true, Paths: true, Name: true, Tags: true}) {
		t.Errorf("got %+v, %v", g, err)
	}
	if g.String() != "host,paths,name,tags" {
		t.Errorf("String() = %q", g.String())
	}
	for _, bad := range []string{"hostname", "host,date", "time"} {
		if _, err := ParseGroupBy(bad); err == nil {
			t.Errorf("ParseGroupBy(%q) accepted", bad)
		}
	}
}

func TestFilter(t *testing.T) {
	s := Snapshot{Host: "a", Name: "home", Tags: []string{"x", "y"}}
	untagged := Snapshot{Host: "b"}
	for _, c := range []struct {
		f         Filter
		s, u      bool // matches s, matches untagged
		wantEmpty bool
	}{
		{Filter{}, true, true, true},
		{Filter{Hosts: []string{"b", "a"}}, true, true, false},
		{Filter{Hosts: []string{"c"}}, false, false, false},
		{Filter{Names: []string{"home"}}, true, false, false},
		{Filter{Tags: [][]string{{"x", "y"}}}, true, false, false},
		{Filter{Tags: [][]string{{"x", "z"}}}, false, false, false},
		{Filter{Tags: [][]string{{"z"}, {"y"}}}, true, false, false},
		{Filter{Tags: [][]string{{""}}}, false, true, false},
		{Filter{Hosts: []string{"a"}, Tags: [][]string{{"z"}}}, false, false, false},
	} {
		if got := c.f.Match(s); got != c.s {
			t.Errorf("%+v matches %+v: %v", c.f, s, got)
		}
		if got := c.f.Match(untagged); got != c.u {
			t.Errorf("%+v matches %+v: %v", c.f, untagged, got)
		}
		if c.f.Empty() != c.wantEmpty {
			t.Errorf("%+v Empty() = %v", c.f, !c.wantEmpty)
		}
	}
}
