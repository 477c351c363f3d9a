package retention

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Duration is a span of calendar time as retention policies count it:
// years, months and days step the calendar, hours are 60 minutes.
type Duration struct {
	Years, Months, Days, Hours int
}

// maxDurationPart bounds each number of a Duration, so that hours cannot
// overflow a time.Duration (about 2.5 million hours).
const maxDurationPart = 999999

// ParseDuration parses a sequence of numbers each followed by its unit, y,
// m, d or h, such as "1y2m3d" or "36h". Units may come in any order; a unit
// given twice takes the last value. The empty string is the zero duration.
// Negative numbers and numbers above 999999 are refused.
func ParseDuration(s string) (Duration, error) {
	var d Duration
	rest := strings.TrimSpace(s)
	for rest != "" {
		i := 0
		for i < len(rest) && rest[i] >= '0' && rest[i] <= '9' {
			i++
		}
		if i == 0 && rest[0] == '-' {
			return Duration{}, fmt.Errorf("duration %q: negative numbers are not allowed", s)
		}
		if i == 0 {
			return Duration{}, fmt.Errorf("duration %q: want a number before each unit, such as 1y2m3d4h", s)
		}
		n, err := strconv.Atoi(rest[:i])
		if err != nil || n > maxDurationPart {
			return Duration{}, fmt.Errorf("duration %q: %s is more than %d", s, rest[:i], maxDurationPart)
		}
		if i == len(rest) {
			return Duration{}, fmt.Errorf("duration %q: no unit after %d (y, m, d or h)", s, n)
		}
		switch rest[i] {
		case 'y':
			d.Years = n
		case 'm':
			d.Months = n
		case 'd':
			d.Days = n
		case 'h':
			d.Hours = n
		default:
			return Duration{}, fmt.Errorf("duration %q: unknown unit %q (y, m, d or h)", s, rest[i])
		}
		rest = rest[i+1:]
	}
	return d, nil
}

// IsZero reports whether every part is zero.
func (d Duration) IsZero() bool { return d == Duration{} }

// negative reports whether any part is below zero.
func (d Duration) negative() bool { return d.Years < 0 || d.Months < 0 || d.Days < 0 || d.Hours < 0 }

// String writes d the way ParseDuration reads it, zero parts left out.
func (d Duration) String() string {
	var b strings.Builder
	for _, p := range []struct {
		n    int
		unit string
	}{{d.Years, "y"}, {d.Months, "m"}, {d.Days, "d"}, {d.Hours, "h"}} {
		if p.n != 0 {
			fmt.Fprintf(&b, "%d%s", p.n, p.unit)
		}
	}
	return b.String()
}

// before returns the instant d before t, stepping the calendar in loc.
func (d Duration) before(t time.Time, loc *time.Location) time.Time {
	return t.In(loc).AddDate(-d.Years, -d.Months, -d.Days).Add(-time.Duration(d.Hours) * time.Hour)
}
