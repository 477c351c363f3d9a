// Package retention decides which snapshots a retention policy keeps and
// which it removes. It knows snapshots only by their id, time, host, paths,
// name and tags, and nothing of repositories or storage.
//
// The rules are those of restic's forget command (restic is the reference
// users know), so that for the same snapshot times, grouping and policy the
// kept set is the same:
//
//   - Snapshots are grouped first (GroupBy; restic's default is host and
//     paths) and a policy applies to each group on its own.
//   - Within a group snapshots are taken newest first. Each counted rule
//     (Last, Hourly, Daily, Weekly, Monthly, Yearly) keeps the newest
//     snapshot of each of its buckets, one hour, day, ISO 8601 week
//     (Monday to Sunday, the year being the week's year), month or year,
//     until it has kept its count; Last puts every snapshot in a bucket of
//     its own. Unlimited (-1) keeps one per bucket without end; 0 turns the
//     rule off. A snapshot kept by one rule still counts for every other
//     rule whose bucket it opens.
//   - A rule that still has counts left when it reaches the group's oldest
//     snapshot keeps that one too even if its bucket was already used
//     (reason "oldest daily snapshot" and so on), which keeps the longest
//     history while counts are left.
//   - Within keeps every snapshot strictly newer than the newest snapshot of
//     the group that is not in the future, minus the duration. A Duration
//     is years, months, days and hours, written like 1y2m3d4h; years,
//     months and days step the calendar (time.AddDate), hours are 60
//     minutes each.
//   - WithinHourly, WithinDaily, WithinWeekly, WithinMonthly and
//     WithinYearly each take a Duration and no count: among the snapshots
//     strictly newer than the group's newest (not in the future) minus
//     that duration, they keep the newest of each hour, day, ISO week,
//     month or year (reason "daily within 7d" and so on). The group's
//     oldest snapshot is kept too when it is within the duration, even in
//     a bucket already used ("oldest daily within 7d"). They keep their
//     own buckets, apart from those of the counted rules.
//   - Tags keeps every snapshot that carries all tags of at least one of its
//     lists; an empty tag in a list matches a snapshot without tags.
//   - A snapshot is kept if any rule keeps it; the reasons list every rule
//     that did.
//
// Differences on purpose, each documented where it applies:
//
//   - Time zone: buckets are computed in the *time.Location the caller
//     passes (UTC when nil). restic buckets each snapshot in the zone
//     recorded with its time; snapcrypt records times in UTC, so the
//     command line passes the local zone of the machine running forget
//     (TZ applies). For snapshots taken and forgotten in one zone, the
//     buckets are the same as restic's.
//   - Equal times: restic leaves snapshots of the same time in the order it
//     listed them, which is not defined; here, of two snapshots with the
//     same time, the one with the smaller id counts as the newer.
//   - Grouping can also be by name, which restic snapshots do not have.
//   - Durations with negative numbers are refused (restic refuses them in
//     forget too, after parsing).
package retention
