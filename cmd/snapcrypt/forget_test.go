package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"
)

// snapAt takes a snapshot of f.src recorded at the given time and host and
// returns its id.
func snapAt(t *testing.T, f *fixture, when, host string, extra ...string) string {
	t.Helper()
	args := append([]string{"snapshot", "--time", when, "--host", host}, extra...)
	r := sc(t, f.env, append(args, f.src)...)
	if r.code != 0 && r.code != exitWarnings {
		t.Fatalf("snapshot: exit %d: %s", r.code, r.stderr)
	}
	return lastLine(r.stdout)
}

type listed struct {
	ID   string    `json:"id"`
	Time time.Time `json:"time"`
	Host string    `json:"host"`
}

func listSnaps(t *testing.T, f *fixture) []listed {
	t.Helper()
	r := sc(t, f.env, "snapshots", "--json")
	r.want(t, 0, "")
	var l []listed
	if err := json.Unmarshal([]byte(r.stdout), &l); err != nil {
		t.Fatalf("snapshots --json: %v\n%s", err, r.stdout)
	}
	return l
}

func ids(l []listed) []string {
	var out []string
	for _, s := range l {
		out = append(out, s.ID)
	}
	sort.Strings(out)
	return out
}

func manifests(t *testing.T, f *fixture) []string {
	t.Helper()
	es, err := os.ReadDir(filepath.Join(f.repo, "snapshots"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names
}

func TestSnapshotTimeAndHost(t *testing.T) {
	f := newFixture(t)
	id := snapAt(t, f, "2024-05-01T10:00:00.5+02:00", "imported-host")
	l := listSnaps(t, f)
	if len(l) != 1 || l[0].ID != id || l[0].Host != "imported-host" ||
		!l[0].Time.Equal(time.Date(2024, 5, 1, 8, 0, 0, 5e8, time.UTC)) {
		t.Fatalf("recorded %+v", l)
	}
	for _, bad := range []string{"yesterday", "2024-05-01", "2024-05-01 10:00:00"} {
		sc(t, f.env, "snapshot", "--time", bad, f.src).want(t, exitUsage, "RFC 3339")
	}
	if n := len(listSnaps(t, f)); n != 1 {
		t.Fatalf("a refused snapshot was written: %d snapshots", n)
	}
}

func TestForgetRefuses(t *testing.T) {
	f := newFixture(t)
	id := snapAt(t, f, "2024-01-01T00:00:00Z", "h")
	for _, args := range [][]string{
		{"forget"},
		{"forget", "--keep-last", "0"},
		{"forget", "--dry-run", "--json"},
		{"forget", "--tag", "x"},
		{"forget", "--keep-last", "-2"},
		{"forget", "--keep-daily", "many"},
		{"forget", "--keep-within", "1w"},
		{"forget", "--keep-within", "-1d"},
		{"forget", "--keep-last", "1", "--group-by", "host,time"},
		{"forget", "--keep-last", "1", id},
		{"forget", "--host", "h", id},
		{"forget", "--group-by", "host", id},
	} {
		sc(t, f.env, args...).want(t, exitUsage, "")
	}
	// A policy that keeps nothing of a group removes nothing at all.
	snapAt(t, f, "2024-01-02T00:00:00Z", "other")
	sc(t, f.env, "forget", "--keep-tag", "absent").want(t, exitFailure, "refusing to remove every snapshot of the group host h")
	// An unknown id removes nothing either, even next to a good one.
	sc(t, f.env, "forget", id, "0000dead").want(t, exitFailure, "no snapshot matches")
	if n := len(manifests(t, f)); n != 2 {
		t.Fatalf("%d manifests left after refusals, want 2", n)
	}
}

// forgetJSONGroup is what a script reads from forget --json.
type forgetJSONGroup struct {
	Host    string   `json:"host"`
	Paths   []string `json:"paths"`
	Keep    []listed `json:"keep"`
	Remove  []listed `json:"remove"`
	Reasons []struct {
		ID      string    `json:"id"`
		Time    time.Time `json:"time"`
		Matches []string  `json:"matches"`
	} `json:"reasons"`
}

func TestForgetPolicy(t *testing.T) {
	f := newFixture(t)
	env := append(f.env, "TZ=UTC")
	byTime := map[string]string{}
	for _, when := range []string{"2024-01-01T10:00:00Z", "2024-01-02T10:00:00Z", "2024-01-02T20:00:00Z", "2024-01-03T10:00:00Z", "2024-01-09T10:00:00Z"} {
		byTime[when] = snapAt(t, f, when, "h1")
	}
	other := snapAt(t, f, "2024-01-01T00:00:00Z", "h2")

	// Dry run: the decision, and nothing removed.
	before := manifests(t, f)
	r := sc(t, env, "forget", "--keep-daily", "3", "--dry-run")
	r.want(t, 0, "")
	if !strings.Contains(r.stdout, "would remove 2 snapshots") || !strings.Contains(r.stdout, "daily snapshot") {
		t.Fatalf("dry run said:\n%s", r.stdout)
	}
	if after := manifests(t, f); !slices.Equal(before, after) {
		t.Fatalf("dry run removed manifests: %v -> %v", before, after)
	}

	r = sc(t, env, "forget", "--keep-daily", "3", "--json")
	r.want(t, 0, "")
	var groups []forgetJSONGroup
	if err := json.Unmarshal([]byte(r.stdout), &groups); err != nil {
		t.Fatalf("forget --json: %v\n%s", err, r.stdout)
	}
	if len(groups) != 2 || groups[0].Host != "h1" || groups[1].Host != "h2" || len(groups[0].Paths) != 1 {
		t.Fatalf("groups: %+v", groups)
	}
	g := groups[0]
	var kept, removed []string
	for _, s := range g.Keep {
		kept = append(kept, s.Time.Format(time.RFC3339))
		if s.ID != byTime[s.Time.Format(time.RFC3339)] {
			t.Fatalf("kept entry %+v: id does not match its time", s)
		}
	}
	for _, s := range g.Remove {
		removed = append(removed, s.Time.Format(time.RFC3339))
	}
	// Newest of each of the three newest days; Jan 1 is the fourth day.
	if want := []string{"2024-01-09T10:00:00Z", "2024-01-03T10:00:00Z", "2024-01-02T20:00:00Z"}; !slices.Equal(kept, want) {
		t.Fatalf("kept %v, want %v", kept, want)
	}
	if want := []string{"2024-01-02T10:00:00Z", "2024-01-01T10:00:00Z"}; !slices.Equal(removed, want) {
		t.Fatalf("removed %v, want %v", removed, want)
	}
	if len(g.Reasons) != 3 || g.Reasons[0].ID != g.Keep[0].ID || !slices.Equal(g.Reasons[0].Matches, []string{"daily snapshot"}) {
		t.Fatalf("reasons: %+v", g.Reasons)
	}
	if len(groups[1].Keep) != 1 || groups[1].Keep[0].ID != other || len(groups[1].Remove) != 0 {
		t.Fatalf("group of h2: %+v", groups[1])
	}
	want := []string{byTime["2024-01-09T10:00:00Z"], byTime["2024-01-03T10:00:00Z"], byTime["2024-01-02T20:00:00Z"], other}
	sort.Strings(want)
	if got := ids(listSnaps(t, f)); !slices.Equal(got, want) {
		t.Fatalf("left %v, want %v", got, want)
	}
	sc(t, f.env, "check", "--read-data").want(t, 0, "")
	for _, id := range want {
		sc(t, f.env, "restore", id, filepath.Join(f.dir, "r-"+id[:8])).want(t, 0, "")
	}

	// Filters: only h1's snapshots are considered; h2's one stays.
	r = sc(t, env, "forget", "--host", "h1", "--keep-last", "1")
	r.want(t, 0, "")
	want = []string{byTime["2024-01-09T10:00:00Z"], other}
	sort.Strings(want)
	if got := ids(listSnaps(t, f)); !slices.Equal(got, want) {
		t.Fatalf("after forget --host h1 --keep-last 1: %v, want %v", got, want)
	}
}

func TestForgetNamed(t *testing.T) {
	f := newFixture(t)
	a := snapAt(t, f, "2024-01-01T00:00:00Z", "h")
	b := snapAt(t, f, "2024-01-02T00:00:00Z", "h")
	c := snapAt(t, f, "2024-01-03T00:00:00Z", "h")
	d := snapAt(t, f, "2024-01-04T00:00:00Z", "h")

	r := sc(t, f.env, "forget", "--dry-run", a[:8], b)
	r.want(t, 0, "")
	if len(manifests(t, f)) != 4 {
		t.Fatal("dry run removed a named snapshot")
	}
	r = sc(t, f.env, "forget", "--json", a[:8], b, b[:12])
	r.want(t, 0, "")
	var groups []forgetJSONGroup
	if err := json.Unmarshal([]byte(r.stdout), &groups); err != nil {
		t.Fatalf("forget --json: %v\n%s", err, r.stdout)
	}
	if len(groups) != 1 || len(groups[0].Keep) != 0 || len(groups[0].Remove) != 2 ||
		groups[0].Remove[0].ID != a || groups[0].Remove[1].ID != b || groups[0].Remove[0].Time.IsZero() {
		t.Fatalf("groups: %s", r.stdout)
	}
	want := []string{c, d}
	sort.Strings(want)
	if got := ids(listSnaps(t, f)); !slices.Equal(got, want) {
		t.Fatalf("left %v, want %v", got, want)
	}
	sc(t, f.env, "forget", "latest").want(t, 0, "")
	if got := ids(listSnaps(t, f)); !slices.Equal(got, []string{c}) {
		t.Fatalf("after forget latest: %v, want only %s", got, c)
	}
	sc(t, f.env, "forget", a).want(t, exitFailure, "no snapshot matches")
	sc(t, f.env, "check").want(t, 0, "")
}

func TestForgetKeepWithinBuckets(t *testing.T) {
	f := newFixture(t)
	env := append(f.env, "TZ=UTC")
	byTime := map[string]string{}
	for _, when := range []string{"2024-01-01T10:00:00Z", "2024-01-08T10:00:00Z", "2024-01-08T12:00:00Z", "2024-01-09T09:00:00Z", "2024-01-09T10:00:00Z"} {
		byTime[when] = snapAt(t, f, when, "h")
	}
	for _, args := range [][]string{
		{"forget", "--keep-within-hourly", "1w"},
		{"forget", "--keep-within-weekly", "-1d"},
		{"forget", "--keep-within-yearly", "1y", byTime["2024-01-01T10:00:00Z"]},
	} {
		sc(t, env, args...).want(t, exitUsage, "")
	}

	policy := []string{"forget", "--keep-within-daily", "2d", "--keep-within-monthly", "1y"}
	r := sc(t, env, append(policy, "--dry-run")...)
	r.want(t, 0, "")
	if !strings.Contains(r.stdout, "keep daily snapshots within 2d, monthly snapshots within 1y of the newest") ||
		!strings.Contains(r.stdout, "would remove 2 snapshots") {
		t.Fatalf("dry run said:\n%s", r.stdout)
	}
	if n := len(manifests(t, f)); n != 5 {
		t.Fatalf("dry run left %d manifests, want 5", n)
	}

	r = sc(t, env, append(policy, "--json")...)
	r.want(t, 0, "")
	var groups []forgetJSONGroup
	if err := json.Unmarshal([]byte(r.stdout), &groups); err != nil {
		t.Fatalf("forget --json: %v\n%s", err, r.stdout)
	}
	if len(groups) != 1 {
		t.Fatalf("groups: %s", r.stdout)
	}
	// The newest of each day within 2 days of Jan 9 10:00 (Jan 7 10:00 is
	// the cutoff), the newest of each month within a year, and the oldest
	// of the group, which is within that year.
	got := map[string][]string{}
	for _, k := range groups[0].Reasons {
		got[k.Time.Format(time.RFC3339)] = k.Matches
		if k.ID != byTime[k.Time.Format(time.RFC3339)] {
			t.Fatalf("reason %+v: id does not match its time", k)
		}
	}
	want := map[string][]string{
		"2024-01-09T10:00:00Z": {"daily within 2d", "monthly within 1y"},
		"2024-01-08T12:00:00Z": {"daily within 2d"},
		"2024-01-01T10:00:00Z": {"oldest monthly within 1y"},
	}
	if len(got) != len(want) {
		t.Fatalf("reasons %v, want %v", got, want)
	}
	for when, m := range want {
		if !slices.Equal(got[when], m) {
			t.Fatalf("reasons %v, want %v", got, want)
		}
	}
	var removed []string
	for _, s := range groups[0].Remove {
		removed = append(removed, s.Time.Format(time.RFC3339))
	}
	if w := []string{"2024-01-09T09:00:00Z", "2024-01-08T10:00:00Z"}; !slices.Equal(removed, w) {
		t.Fatalf("removed %v, want %v", removed, w)
	}
	left := []string{byTime["2024-01-09T10:00:00Z"], byTime["2024-01-08T12:00:00Z"], byTime["2024-01-01T10:00:00Z"]}
	sort.Strings(left)
	if ids := ids(listSnaps(t, f)); !slices.Equal(ids, left) {
		t.Fatalf("left %v, want %v", ids, left)
	}
}
