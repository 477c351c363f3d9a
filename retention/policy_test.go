package retention

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
	_ "time/tzdata" // Europe/Berlin on machines without a zone database
)

func at(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return t
}

func snap(id, when string, tags ...string) Snapshot {
	return Snapshot{ID: id, Time: at(when), Host: "h", Paths: []string{"/p"}, Tags: tags}
}

// decided writes a result as "id:reason+reason id:reason ... | removed ids".
func decided(r Result) string {
	var keep, rm []string
	for _, k := range r.Keep {
		keep = append(keep, k.Snapshot.ID+":"+strings.Join(k.Reasons, "+"))
	}
	for _, s := range r.Remove {
		rm = append(rm, s.ID)
	}
	return strings.Join(keep, " ") + " | " + strings.Join(rm, " ")
}

func TestApply(t *testing.T) {
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	now := at("2030-01-01T00:00:00Z")
	// A month of daily snapshots at 10:00 UTC plus a second one on some days.
	days := []Snapshot{
		snap("d01", "2024-01-01T10:00:00Z"), snap("d02", "2024-01-02T10:00:00Z"),
		snap("d03", "2024-01-03T10:00:00Z"), snap("d03b", "2024-01-03T18:00:00Z"),
		snap("d07", "2024-01-07T10:00:00Z"), // a Sunday: ISO week 1
		snap("d08", "2024-01-08T10:00:00Z"), // a Monday: ISO week 2
		snap("d15", "2024-01-15T10:00:00Z"), snap("d15b", "2024-01-15T10:30:00Z"),
		snap("d31", "2024-01-31T10:00:00Z"),
	}
	cases := []struct {
		name  string
		snaps []Snapshot
		p     Policy
		loc   *time.Location
		want  string
	}{
		{"no snapshots", nil, Policy{Last: 3}, nil, " | "},
		{"last 3", days, Policy{Last: 3}, nil,
			"d31:last snapshot d15b:last snapshot d15:last snapshot | d08 d07 d03b d03 d02 d01"},
		{"last unlimited keeps all", days[:3], Policy{Last: Unlimited}, nil,
			"d03:last snapshot d02:last snapshot d01:last snapshot | "},
		{"last more than there are", days[:2], Policy{Last: 5}, nil,
			"d02:last snapshot d01:last snapshot | "},
		{"daily keeps the newest of each day", days, Policy{Daily: 4}, nil,
			"d31:daily snapshot d15b:daily snapshot d08:daily snapshot d07:daily snapshot | d15 d03b d03 d02 d01"},
		{"daily with counts left keeps the oldest too", days[:4], Policy{Daily: 5}, nil,
			"d03b:daily snapshot d02:daily snapshot d01:daily snapshot | d03"},
		{"oldest in a used bucket, counts left", []Snapshot{snap("a", "2024-01-02T10:00:00Z"), snap("b", "2024-01-02T09:00:00Z")}, Policy{Daily: 2}, nil,
			"a:daily snapshot b:oldest daily snapshot | "},
		{"oldest in a used bucket, no counts left", []Snapshot{snap("a", "2024-01-02T10:00:00Z"), snap("b", "2024-01-02T09:00:00Z")}, Policy{Daily: 1}, nil,
			"a:daily snapshot | b"},
		{"weekly uses ISO weeks (Monday first)", days, Policy{Weekly: 3}, nil,
			"d31:weekly snapshot d15b:weekly snapshot d08:weekly snapshot | d15 d07 d03b d03 d02 d01"},
		{"weekly unlimited", days, Policy{Weekly: Unlimited}, nil,
			"d31:weekly snapshot d15b:weekly snapshot d08:weekly snapshot d07:weekly snapshot d01:oldest weekly snapshot | d15 d03b d03 d02"},
		{"ISO week year across new year", []Snapshot{
			snap("mon", "2021-01-04T12:00:00Z"), snap("sun", "2021-01-03T12:00:00Z"), snap("thu", "2020-12-31T12:00:00Z"), snap("old", "2020-12-27T12:00:00Z")},
			Policy{Weekly: 2}, nil, "mon:weekly snapshot sun:weekly snapshot | thu old"},
		{"monthly and yearly", []Snapshot{
			snap("a", "2024-03-05T00:00:00Z"), snap("b", "2024-02-29T23:59:59Z"), snap("c", "2024-02-01T00:00:00Z"),
			snap("d", "2023-12-31T23:59:59Z"), snap("e", "2023-06-01T00:00:00Z"), snap("f", "2022-01-01T00:00:00Z")},
			Policy{Monthly: 2, Yearly: 2}, nil,
			"a:monthly snapshot+yearly snapshot b:monthly snapshot d:yearly snapshot | c e f"},
		{"hourly", []Snapshot{
			snap("a", "2024-01-01T10:59:59Z"), snap("b", "2024-01-01T10:00:00Z"), snap("c", "2024-01-01T09:59:59Z"), snap("d", "2024-01-01T08:00:00Z")},
			Policy{Hourly: 2}, nil, "a:hourly snapshot c:hourly snapshot | b d"},
		{"rules add up, reasons list each", days, Policy{Last: 1, Daily: 2, Monthly: 1}, nil,
			"d31:last snapshot+daily snapshot+monthly snapshot d15b:daily snapshot | d15 d08 d07 d03b d03 d02 d01"},
		{"equal times: the smaller id counts as newer", []Snapshot{
			snap("b", "2024-01-01T10:00:00Z"), snap("c", "2024-01-01T10:00:00Z"), snap("a", "2024-01-01T10:00:00Z")},
			Policy{Last: 1}, nil, "a:last snapshot | b c"},
		{"equal times: one daily bucket, oldest kept with counts left", []Snapshot{
			snap("b", "2024-01-01T10:00:00Z"), snap("a", "2024-01-01T10:00:00Z"), snap("c", "2024-01-01T10:00:00Z")},
			Policy{Daily: 3}, nil, "a:daily snapshot c:oldest daily snapshot | b"},
		{"within is relative to the newest, strictly after", []Snapshot{
			snap("a", "2024-05-10T12:00:00Z"), snap("b", "2024-05-09T12:00:01Z"), snap("c", "2024-05-09T12:00:00Z")},
			Policy{Within: Duration{Days: 1}}, nil, "a:within 1d b:within 1d | c"},
		{"within ignores snapshots in the future for the newest", []Snapshot{
			snap("future", "2031-01-01T00:00:00Z"), snap("a", "2024-05-10T12:00:00Z"), snap("b", "2024-05-09T11:00:00Z")},
			Policy{Within: Duration{Hours: 12}}, nil, "future:within 12h a:within 12h | b"},
		{"within with everything in the future keeps everything", []Snapshot{
			snap("x", "2031-01-01T00:00:00Z"), snap("y", "2030-06-01T00:00:00Z")},
			Policy{Within: Duration{Days: 1}}, nil, "x:within 1d y:within 1d | "},
		{"within steps the calendar: one month before March 31 is March 2", []Snapshot{
			snap("a", "2024-03-31T12:00:00Z"), snap("b", "2024-03-02T12:00:01Z"), snap("c", "2024-03-02T12:00:00Z"), snap("d", "2024-02-29T12:00:00Z")},
			Policy{Within: Duration{Months: 1}}, nil, "a:within 1m b:within 1m | c d"},
		{"within 1y2m3d4h", []Snapshot{
			snap("a", "2024-05-10T12:00:00Z"), snap("b", "2023-03-07T08:00:01Z"), snap("c", "2023-03-07T08:00:00Z")},
			Policy{Within: Duration{1, 2, 3, 4}}, nil, "a:within 1y2m3d4h b:within 1y2m3d4h | c"},
		{"keep-tag lists: all tags of one list", []Snapshot{
			snap("a", "2024-01-05T00:00:00Z", "x", "y"), snap("b", "2024-01-04T00:00:00Z", "x"),
			snap("c", "2024-01-03T00:00:00Z", "z"), snap("d", "2024-01-02T00:00:00Z")},
			Policy{Tags: [][]string{{"x", "y"}, {"z"}}}, nil, "a:has tags [x, y] c:has tags [z] | b d"},
		{"keep-tag empty tag keeps untagged", []Snapshot{
			snap("a", "2024-01-05T00:00:00Z", "x"), snap("b", "2024-01-04T00:00:00Z")},
			Policy{Tags: [][]string{{""}}}, nil, "b:has tags [] | a"},
		{"tags do not use up counts", []Snapshot{
			snap("a", "2024-01-05T00:00:00Z", "keep"), snap("b", "2024-01-04T00:00:00Z"), snap("c", "2024-01-03T00:00:00Z")},
			Policy{Last: 1, Tags: [][]string{{"keep"}}}, nil, "a:has tags [keep]+last snapshot | b c"},
		// 21:30Z, 23:30Z and 00:30Z: two UTC days, but in UTC+2 the two newest share a day.
		{"buckets in UTC", []Snapshot{
			snap("A", "2024-01-01T21:30:00Z"), snap("B", "2024-01-01T23:30:00Z"), snap("C", "2024-01-02T00:30:00Z")},
			Policy{Daily: 2}, nil, "C:daily snapshot B:daily snapshot | A"},
		{"buckets in a zone two hours east", []Snapshot{
			snap("A", "2024-01-01T21:30:00Z"), snap("B", "2024-01-01T23:30:00Z"), snap("C", "2024-01-02T00:30:00Z")},
			Policy{Daily: 2}, time.FixedZone("UTC+2", 2*3600), "C:daily snapshot A:daily snapshot | B"},
		// At the end of summer time in Berlin, 00:30Z and 01:30Z are both 02:30 local.
		{"hourly across a DST change, UTC", []Snapshot{
			snap("x", "2024-10-27T01:30:00Z"), snap("y", "2024-10-27T00:30:00Z"), snap("z", "2024-10-26T23:30:00Z")},
			Policy{Hourly: 2}, nil, "x:hourly snapshot y:hourly snapshot | z"},
		{"hourly across a DST change, Europe/Berlin", []Snapshot{
			snap("x", "2024-10-27T01:30:00Z"), snap("y", "2024-10-27T00:30:00Z"), snap("z", "2024-10-26T23:30:00Z")},
			Policy{Hourly: 2}, berlin, "x:hourly snapshot z:hourly snapshot | y"},
		{"within steps the calendar in the zone", []Snapshot{
			// Newest is 2024-03-01 00:30 in Berlin; a day before is Feb 29 00:30 local = Feb 28 23:30Z.
			snap("a", "2024-02-29T23:30:00Z"), snap("b", "2024-02-28T23:30:01Z"), snap("c", "2024-02-28T23:30:00Z")},
			Policy{Within: Duration{Days: 1}}, berlin, "a:within 1d b:within 1d | c"},
		// The within rules: the newest of each bucket among the snapshots
		// strictly after the newest (not in the future) minus the span.
		{"hourly within", []Snapshot{
			snap("a", "2024-05-10T12:30:00Z"), snap("b", "2024-05-10T12:10:00Z"), snap("c", "2024-05-10T11:50:00Z"),
			snap("d", "2024-05-10T11:10:00Z"), snap("e", "2024-05-09T11:00:00Z")},
			Policy{WithinHourly: Duration{Days: 1}}, nil, "a:hourly within 1d c:hourly within 1d | b d e"},
		{"daily within: a snapshot exactly the span before the newest is out, oldest or not", []Snapshot{
			snap("a", "2024-05-10T12:00:00Z"), snap("b", "2024-05-09T12:00:01Z"), snap("c", "2024-05-09T12:00:00Z")},
			Policy{WithinDaily: Duration{Days: 1}}, nil, "a:daily within 1d b:daily within 1d | c"},
		{"daily within keeps the group's oldest when it is within the span", []Snapshot{
			snap("a", "2024-05-10T12:00:00Z"), snap("b", "2024-05-10T08:00:00Z")},
			Policy{WithinDaily: Duration{Days: 1}}, nil, "a:daily within 1d b:oldest daily within 1d | "},
		{"weekly within uses ISO weeks across new year", []Snapshot{
			// 2020-12-28 to 2021-01-03 is ISO week 53 of 2020; 2020-12-27, a Sunday, ends week 52.
			snap("mon", "2021-01-04T12:00:00Z"), snap("sun", "2021-01-03T12:00:00Z"), snap("thu", "2020-12-31T12:00:00Z"),
			snap("mon2", "2020-12-28T12:00:00Z"), snap("old", "2020-12-27T13:00:00Z"), snap("out", "2020-12-27T12:00:00Z")},
			Policy{WithinWeekly: Duration{Days: 8}}, nil, "mon:weekly within 8d sun:weekly within 8d old:weekly within 8d | thu mon2 out"},
		{"monthly and yearly within", []Snapshot{
			snap("a", "2024-03-05T00:00:00Z"), snap("b", "2024-02-29T23:59:59Z"), snap("c", "2024-02-01T00:00:00Z"),
			snap("d", "2023-12-31T23:59:59Z"), snap("e", "2023-06-01T00:00:00Z"), snap("f", "2022-01-01T00:00:00Z")},
			Policy{WithinMonthly: Duration{Months: 3}, WithinYearly: Duration{Years: 2}}, nil,
			"a:monthly within 3m+yearly within 2y b:monthly within 3m d:monthly within 3m+yearly within 2y | c e f"},
		{"within rules combined with the others, reasons in order", days,
			Policy{Last: 1, Monthly: 1, Within: Duration{Days: 1}, WithinHourly: Duration{Days: 16}, WithinDaily: Duration{Days: 17}}, nil,
			"d31:within 1d+last snapshot+monthly snapshot+hourly within 16d+daily within 17d d15b:hourly within 16d+daily within 17d | d15 d08 d07 d03b d03 d02 d01"},
		{"within rules beside a counted rule of the same bucket: each keeps its own", days,
			Policy{Daily: 1, WithinDaily: Duration{Days: 29}}, nil,
			"d31:daily snapshot+daily within 29d d15b:daily within 29d d08:daily within 29d d07:daily within 29d d03b:daily within 29d | d15 d03 d02 d01"},
		{"within rules measure from the newest not in the future", []Snapshot{
			snap("future", "2031-01-01T00:00:00Z"), snap("a", "2024-05-10T12:00:00Z"), snap("b", "2024-05-10T11:00:00Z"), snap("c", "2024-05-09T23:00:00Z")},
			Policy{WithinHourly: Duration{Hours: 12}}, nil, "future:hourly within 12h a:hourly within 12h b:hourly within 12h | c"},
		{"hourly within across a DST change, Europe/Berlin", []Snapshot{
			snap("x", "2024-10-27T01:30:00Z"), snap("y", "2024-10-27T00:30:00Z"), snap("z", "2024-10-26T23:30:00Z")},
			Policy{WithinHourly: Duration{Days: 1}}, berlin, "x:hourly within 1d z:hourly within 1d | y"},
		{"times given with an offset bucket by loc, not by their offset", []Snapshot{
			{ID: "p", Time: at("2024-01-02T00:30:00+02:00")}, {ID: "q", Time: at("2024-01-01T23:30:00Z")}},
			Policy{Daily: 1}, nil, "q:daily snapshot | p"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			in := append([]Snapshot(nil), c.snaps...)
			got := decided(c.p.Apply(c.snaps, now, c.loc))
			if got != c.want {
				t.Errorf("\ngot  %s\nwant %s", got, c.want)
			}
			if !reflect.DeepEqual(in, c.snaps) {
				t.Error("Apply changed its input")
			}
		})
	}
}

func TestApplyKeepsOrRemovesEach(t *testing.T) {
	var snaps []Snapshot
	for i := 0; i < 200; i++ {
		snaps = append(snaps, snap(fmt.Sprintf("s%03d", i), time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(i)*7*time.Hour).Format(time.RFC3339)))
	}
	p := Policy{Last: 3, Hourly: 5, Daily: 7, Weekly: 4, Monthly: 3, Yearly: 1}
	r := p.Apply(snaps, time.Now(), nil)
	if len(r.Keep)+len(r.Remove) != len(snaps) {
		t.Fatalf("%d kept + %d removed of %d", len(r.Keep), len(r.Remove), len(snaps))
	}
	// Every count is finite, so at most their sum is kept (the oldest rule
	// only applies while counts are left, within that sum).
	if max := 3 + 5 + 7 + 4 + 3 + 1; len(r.Keep) > max {
		t.Fatalf("kept %d, more than the %d the counts allow", len(r.Keep), max)
	}
	seen := map[string]bool{}
	for _, k := range r.Keep {
		seen[k.Snapshot.ID] = true
		if len(k.Reasons) == 0 {
			t.Fatalf("%s kept without a reason", k.Snapshot.ID)
		}
	}
	for _, s := range r.Remove {
		if seen[s.ID] {
			t.Fatalf("%s both kept and removed", s.ID)
		}
	}
}

func TestPolicyEmptyValidateString(t *testing.T) {
	if !(Policy{}).Empty() {
		t.Error("zero policy is not empty")
	}
	for _, p := range []Policy{{Last: 1}, {Yearly: Unlimited}, {Within: Duration{Hours: 1}}, {Tags: [][]string{{"a"}}},
		{WithinHourly: Duration{Hours: 1}}, {WithinDaily: Duration{Days: 1}}, {WithinWeekly: Duration{Months: 1}},
		{WithinMonthly: Duration{Years: 1}}, {WithinYearly: Duration{Years: 5}}} {
		if p.Empty() {
			t.Errorf("%+v is empty", p)
		}
		if err := p.Validate(); err != nil {
			t.Errorf("%+v: %v", p, err)
		}
	}
	for _, p := range []Policy{{Last: -2}, {Weekly: -5}, {Within: Duration{Days: -1}},
		{WithinHourly: Duration{Hours: -1}}, {WithinDaily: Duration{Days: -1}}, {WithinWeekly: Duration{Days: 1, Hours: -1}},
		{WithinMonthly: Duration{Months: -1}}, {WithinYearly: Duration{Years: -1}}} {
		if err := p.Validate(); err == nil {
			t.Errorf("%+v validates", p)
		}
	}
	got := Policy{Daily: 7, Weekly: Unlimited, Within: Duration{Months: 1}, Tags: [][]string{{"a", "b"}}}.String()
	want := "keep 7 daily, all weekly snapshots and all snapshots tagged [a, b] and all snapshots within 1m of the newest"
	if got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	got = Policy{Last: 3, WithinHourly: Duration{Days: 2}, WithinYearly: Duration{Years: 10}, Within: Duration{Days: 1}}.String()
	want = "keep 3 latest snapshots and hourly snapshots within 2d, yearly snapshots within 10y of the newest and all snapshots within 1d of the newest"
	if got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
}

func TestParseDuration(t *testing.T) {
	for _, c := range []struct {
		in   string
		want Duration
	}{
		{"1y2m3d4h", Duration{1, 2, 3, 4}},
		{"36h", Duration{Hours: 36}},
		{"2h1y", Duration{Years: 1, Hours: 2}},
		{"1d2d", Duration{Days: 2}}, // the last value of a unit counts
		{" 7d ", Duration{Days: 7}},
		{"", Duration{}},
		{"0d", Duration{}},
		{"999999h", Duration{Hours: 999999}},
	} {
		got, err := ParseDuration(c.in)
		if err != nil || got != c.want {
			t.Errorf("ParseDuration(%q) = %+v, %v; want %+v", c.in, got, err, c.want)
		}
	}
	for _, in := range []string{"-1d", "1d-2h", "1", "1w", "d", "1.5d", "1000000h", "99999999999999999999y", "1 d"} {
		if d, err := ParseDuration(in); err == nil {
			t.Errorf("ParseDuration(%q) = %+v, want an error", in, d)
		}
	}
	for _, d := range []Duration{{1, 2, 3, 4}, {Days: 10}, {Years: 2, Hours: 1}} {
		back, err := ParseDuration(d.String())
		if err != nil || back != d {
			t.Errorf("%+v -> %q -> %+v, %v", d, d.String(), back, err)
		}
	}
}

func TestParseTagList(t *testing.T) {
	if got := ParseTagList(" a, b ,c"); !reflect.DeepEqual(got, []string{"a", "b", "c"}) {
		t.Errorf("got %q", got)
	}
	if got := ParseTagList(""); !reflect.DeepEqual(got, []string{""}) {
		t.Errorf("got %q", got)
	}
}
