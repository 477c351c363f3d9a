package retention

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"
)

// Snapshot is what a policy knows of one snapshot.
type Snapshot struct {
	ID    string // unique; also orders snapshots of the same time
	Time  time.Time
	Host  string
	Paths []string
	Name  string
	Tags  []string
}

// Unlimited as a count keeps one snapshot per bucket without end.
const Unlimited = -1

// Policy says which snapshots to keep. Counts are 0 (the rule is off), a
// positive number, or Unlimited. See the package doc for the rules.
type Policy struct {
	Last, Hourly, Daily, Weekly, Monthly, Yearly int
	// Within keeps the snapshots newer than the group's newest minus this.
	Within Duration
	// WithinHourly and its siblings keep the newest snapshot of each hour,
	// day, ISO week, month or year among the snapshots newer than the
	// group's newest minus the duration, without a count.
	WithinHourly, WithinDaily, WithinWeekly, WithinMonthly, WithinYearly Duration
	// Tags keeps snapshots that carry every tag of at least one list.
	Tags [][]string
}

// Empty reports whether the policy has no rule at all. An empty policy
// keeps nothing; callers refuse it rather than removing everything.
func (p Policy) Empty() bool {
	return p.Last == 0 && p.Hourly == 0 && p.Daily == 0 && p.Weekly == 0 && p.Monthly == 0 &&
		p.Yearly == 0 && p.Within.IsZero() && len(p.Tags) == 0 &&
		!slices.ContainsFunc(p.withinRules(), func(r withinRule) bool { return !r.d.IsZero() })
}

// Validate refuses counts below Unlimited and negative durations.
func (p Policy) Validate() error {
	for _, r := range p.rules() {
		if r.count < Unlimited {
			return fmt.Errorf("keep %s: %d is negative (use %d or unlimited to keep all)", r.word, r.count, Unlimited)
		}
	}
	if p.Within.negative() {
		return errors.New("keep within: negative durations are not allowed")
	}
	for _, r := range p.withinRules() {
		if r.d.negative() {
			return fmt.Errorf("keep within %s: negative durations are not allowed", r.word)
		}
	}
	return nil
}

// String describes the policy in words, e.g. "keep 7 daily, 4 weekly
// snapshots and hourly snapshots within 2d of the newest and all snapshots
// within 1m of the newest".
func (p Policy) String() string {
	var counts []string
	for _, r := range p.rules() {
		switch {
		case r.count > 0:
			counts = append(counts, fmt.Sprintf("%d %s", r.count, r.word))
		case r.count == Unlimited:
			counts = append(counts, "all "+r.word)
		}
	}
	var parts []string
	if len(counts) > 0 {
		parts = append(parts, strings.Join(counts, ", ")+" snapshots")
	}
	var within []string
	for _, r := range p.withinRules() {
		if !r.d.IsZero() {
			within = append(within, fmt.Sprintf("%s snapshots within %s", r.word, r.d))
		}
	}
	if len(within) > 0 {
		parts = append(parts, strings.Join(within, ", ")+" of the newest")
	}
	for _, l := range p.Tags {
		parts = append(parts, "all snapshots tagged "+tagList(l))
	}
	if !p.Within.IsZero() {
		parts = append(parts, fmt.Sprintf("all snapshots within %s of the newest", p.Within))
	}
	if len(parts) == 0 {
		return "keep nothing"
	}
	return "keep " + strings.Join(parts, " and ")
}

func tagList(l []string) string { return "[" + strings.Join(l, ", ") + "]" }

// rule is one counted rule: how many buckets it keeps and how a snapshot's
// time (or its position, for Last) names its bucket.
type rule struct {
	count  int
	word   string // "latest", "hourly", ...
	reason string
	bucket func(t time.Time, nr int) int
}

func (p Policy) rules() []rule {
	return []rule{
		{p.Last, "latest", "last snapshot", func(_ time.Time, nr int) int { return nr }},
		{p.Hourly, "hourly", "hourly snapshot", hourOf},
		{p.Daily, "daily", "daily snapshot", dayOf},
		{p.Weekly, "weekly", "weekly snapshot", weekOf},
		{p.Monthly, "monthly", "monthly snapshot", monthOf},
		{p.Yearly, "yearly", "yearly snapshot", yearOf},
	}
}

// withinRule is one of WithinHourly and its siblings: the span it looks
// at and how a snapshot's time names its bucket.
type withinRule struct {
	d      Duration
	word   string // "hourly", ...
	bucket func(t time.Time, nr int) int
}

func (p Policy) withinRules() []withinRule {
	return []withinRule{
		{p.WithinHourly, "hourly", hourOf},
		{p.WithinDaily, "daily", dayOf},
		{p.WithinWeekly, "weekly", weekOf},
		{p.WithinMonthly, "monthly", monthOf},
		{p.WithinYearly, "yearly", yearOf},
	}
}

// The buckets of the calendar rules, of a time already in the policy's
// zone: YYYYMMDDHH, YYYYMMDD, the ISO week as YYYYWW, YYYYMM and YYYY.

func hourOf(t time.Time, _ int) int {
	return ((t.Year()*100+int(t.Month()))*100+t.Day())*100 + t.Hour()
}

func dayOf(t time.Time, _ int) int { return (t.Year()*100+int(t.Month()))*100 + t.Day() }

func weekOf(t time.Time, _ int) int {
	y, w := t.ISOWeek()
	return y*100 + w
}

func monthOf(t time.Time, _ int) int { return t.Year()*100 + int(t.Month()) }

func yearOf(t time.Time, _ int) int { return t.Year() }

// Kept is a snapshot a policy keeps and every reason it does.
type Kept struct {
	Snapshot Snapshot
	Reasons  []string
}

// Result is one group's decision. Both lists are newest first.
type Result struct {
	Keep   []Kept
	Remove []Snapshot
}

// Newest sorts snapshots newest first; of equal times, the smaller id
// first.
func Newest(snaps []Snapshot) {
	sort.SliceStable(snaps, func(i, j int) bool {
		a, b := snaps[i], snaps[j]
		if !a.Time.Equal(b.Time) {
			return a.Time.After(b.Time)
		}
		return a.ID < b.ID
	})
}

// Apply decides for one group of snapshots. now is the current time (a
// snapshot after it does not count as the newest for Within); buckets of
// hours, days, weeks, months and years are those of loc (UTC when nil).
// snaps is not modified.
func (p Policy) Apply(snaps []Snapshot, now time.Time, loc *time.Location) Result {
	if loc == nil {
		loc = time.UTC
	}
	list := slices.Clone(snaps)
	Newest(list)

	var newest time.Time // the zero time when every snapshot is in the future
	for _, s := range list {
		if s.Time.After(newest) && s.Time.Before(now) {
			newest = s.Time
		}
	}
	cutoff := p.Within.before(newest, loc)

	rules := p.rules()
	type state struct {
		left int // counts left; Unlimited never runs out
		last int // bucket of the last snapshot this rule kept
		used bool
	}
	st := make([]state, len(rules))
	for i, r := range rules {
		st[i].left = r.count
	}
	within := p.withinRules()
	wst := make([]state, len(within)) // left is unused: these rules have no count
	wcut := make([]time.Time, len(within))
	for i, r := range within {
		wcut[i] = r.d.before(newest, loc)
	}

	var res Result
	for nr, s := range list {
		var reasons []string
		for _, l := range p.Tags {
			if hasTags(s.Tags, l) {
				reasons = append(reasons, "has tags "+tagList(l))
			}
		}
		if !p.Within.IsZero() && s.Time.After(cutoff) {
			reasons = append(reasons, "within "+p.Within.String())
		}
		oldest := nr == len(list)-1
		local := s.Time.In(loc)
		for i, r := range rules {
			if st[i].left == 0 || st[i].left < Unlimited {
				continue // off, used up, or invalid (see Validate)
			}
			b := r.bucket(local, nr)
			if st[i].used && b == st[i].last && !oldest {
				continue
			}
			reason := r.reason
			if st[i].used && b == st[i].last {
				reason = "oldest " + reason
			}
			reasons = append(reasons, reason)
			st[i].last, st[i].used = b, true
			if st[i].left > 0 {
				st[i].left--
			}
		}
		// Each within rule keeps the newest of each bucket among the
		// snapshots after its cutoff, and the group's oldest snapshot
		// when that is after the cutoff too.
		for i, r := range within {
			if r.d.IsZero() || !s.Time.After(wcut[i]) {
				continue
			}
			b := r.bucket(local, nr)
			if wst[i].used && b == wst[i].last && !oldest {
				continue
			}
			reason := r.word + " within " + r.d.String()
			if wst[i].used && b == wst[i].last {
				reason = "oldest " + reason
			}
			reasons = append(reasons, reason)
			wst[i].last, wst[i].used = b, true
		}
		if len(reasons) > 0 {
			res.Keep = append(res.Keep, Kept{Snapshot: s, Reasons: reasons})
		} else {
			res.Remove = append(res.Remove, s)
		}
	}
	return res
}

// hasTags reports whether tags holds every tag of want; an empty tag in
// want matches a snapshot without tags, and an empty want matches all.
func hasTags(tags, want []string) bool {
	for _, w := range want {
		if w == "" && len(tags) == 0 {
			return true
		}
		if !slices.Contains(tags, w) {
			return false
		}
	}
	return true
}

// ParseTagList reads one --keep-tag or --tag value: tags separated by
// commas, blanks around each trimmed.
func ParseTagList(s string) []string {
	l := strings.Split(s, ",")
	for i := range l {
		l[i] = strings.TrimSpace(l[i])
	}
	return l
}
