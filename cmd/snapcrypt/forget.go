package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/pflag"

	"github.com/snapcrypt/snapcrypt/repo"
	"github.com/snapcrypt/snapcrypt/retention"
)

func init() { register(forgetCommand()) }

// countFlag is a --keep-* count: a number of at least 0, or "unlimited"
// (or -1).
type countFlag int

func (c *countFlag) Set(s string) error {
	if s == "unlimited" {
		*c = retention.Unlimited
		return nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < retention.Unlimited {
		return fmt.Errorf("want a count of 0 or more, or unlimited")
	}
	*c = countFlag(n)
	return nil
}

func (c *countFlag) String() string {
	if *c == retention.Unlimited {
		return "unlimited"
	}
	return strconv.Itoa(int(*c))
}

func (c *countFlag) Type() string { return "n" }

type durationFlag struct{ d *retention.Duration }

func (f durationFlag) Set(s string) error {
	d, err := retention.ParseDuration(s)
	if err != nil {
		return err
	}
	*f.d = d
	return nil
}

func (f durationFlag) String() string { return f.d.String() }
func (f durationFlag) Type() string   { return "duration" }

type groupByFlag struct{ g *retention.GroupBy }

func (f groupByFlag) Set(s string) error {
	g, err := retention.ParseGroupBy(s)
	if err != nil {
		return err
	}
	*f.g = g
	return nil
}

func (f groupByFlag) String() string { return f.g.String() }
func (f groupByFlag) Type() string   { return "fields" }

type forgetOptions struct {
	last, hourly, daily, weekly, monthly, yearly countFlag
	within                                       retention.Duration
	withinHourly, withinDaily, withinWeekly      retention.Duration
	withinMonthly, withinYearly                  retention.Duration
	keepTags, tags, names, hosts                 []string
	groupBy                                      retention.GroupBy
	dryRun                                       bool
	prune                                        bool
	pruneFlags                                   pruneFlags
	flags                                        *pflag.FlagSet
}

func (o *forgetOptions) policy() retention.Policy {
	p := retention.Policy{Last: int(o.last), Hourly: int(o.hourly), Daily: int(o.daily), Weekly: int(o.weekly),
		Monthly: int(o.monthly), Yearly: int(o.yearly), Within: o.within,
		WithinHourly: o.withinHourly, WithinDaily: o.withinDaily, WithinWeekly: o.withinWeekly,
		WithinMonthly: o.withinMonthly, WithinYearly: o.withinYearly}
	for _, t := range o.keepTags {
		p.Tags = append(p.Tags, retention.ParseTagList(t))
	}
	return p
}

func (o *forgetOptions) filter() retention.Filter {
	f := retention.Filter{Hosts: o.hosts, Names: o.names}
	for _, t := range o.tags {
		f.Tags = append(f.Tags, retention.ParseTagList(t))
	}
	return f
}

func forgetCommand() *command {
	o := &forgetOptions{groupBy: retention.DefaultGroupBy}
	return &command{
		name: "forget", args: "[SNAPSHOT...]",
		short: "Remove the snapshots named (id, unique id prefix, name or 'latest'), or those a --keep-* policy does not keep. " +
			"Only the snapshot manifests go: the data stays until prune (or --prune) reclaims it.",
		setup: func(fs *pflag.FlagSet, c *cli) {
			o.flags = fs
			fs.Var(&o.last, "keep-last", "keep the `n` newest snapshots ('unlimited': all)")
			fs.Var(&o.hourly, "keep-hourly", "keep the newest snapshot of each of the last `n` hours that have one ('unlimited': of every hour)")
			fs.Var(&o.daily, "keep-daily", "keep the newest snapshot of each of the last `n` days that have one")
			fs.Var(&o.weekly, "keep-weekly", "keep the newest snapshot of each of the last `n` ISO weeks (Monday to Sunday) that have one")
			fs.Var(&o.monthly, "keep-monthly", "keep the newest snapshot of each of the last `n` months that have one")
			fs.Var(&o.yearly, "keep-yearly", "keep the newest snapshot of each of the last `n` years that have one")
			fs.Var(durationFlag{&o.within}, "keep-within", "keep snapshots newer than the group's newest minus `duration` (e.g. 1y2m3d4h)")
			fs.Var(durationFlag{&o.withinHourly}, "keep-within-hourly", "keep the newest snapshot of each hour among those newer than the group's newest minus `duration`")
			fs.Var(durationFlag{&o.withinDaily}, "keep-within-daily", "keep the newest snapshot of each day among those newer than the group's newest minus `duration`")
			fs.Var(durationFlag{&o.withinWeekly}, "keep-within-weekly", "keep the newest snapshot of each ISO week among those newer than the group's newest minus `duration`")
			fs.Var(durationFlag{&o.withinMonthly}, "keep-within-monthly", "keep the newest snapshot of each month among those newer than the group's newest minus `duration`")
			fs.Var(durationFlag{&o.withinYearly}, "keep-within-yearly", "keep the newest snapshot of each year among those newer than the group's newest minus `duration`")
			fs.StringArrayVar(&o.keepTags, "keep-tag", nil, "keep snapshots that carry every tag of `t1[,t2...]` (repeatable: any of the lists)")
			fs.StringArrayVar(&o.tags, "tag", nil, "only consider snapshots that carry every tag of `t1[,t2...]` (repeatable: any of the lists)")
			fs.StringArrayVar(&o.names, "name", nil, "only consider snapshots of this `name` (repeatable)")
			fs.StringArrayVar(&o.hosts, "host", nil, "only consider snapshots of this `host` (repeatable)")
			fs.Var(groupByFlag{&o.groupBy}, "group-by", "apply the policy to each group of snapshots sharing these `fields`: host, paths, name, tags ('' for one group)")
			fs.BoolVarP(&o.dryRun, "dry-run", "n", false, "remove nothing; print what would be removed")
			fs.BoolVar(&o.prune, "prune", false, "then prune: delete the data no snapshot left references (prune's flags apply)")
			o.pruneFlags.setup(fs, false)
			jsonFlag(fs, c)
		},
		run: func(ctx context.Context, c *cli, args []string) error { return runForget(ctx, c, o, args) },
	}
}

// forgetGroup is one group of forget's --json output.
type forgetGroup struct {
	Host    string             `json:"host,omitempty"`
	Paths   []string           `json:"paths,omitempty"`
	Name    string             `json:"name,omitempty"`
	Tags    []string           `json:"tags,omitempty"`
	Keep    []forgetSnapshot   `json:"keep"`
	Remove  []forgetSnapshot   `json:"remove"`
	Reasons []forgetKeepReason `json:"reasons"`
}

type forgetSnapshot struct {
	ID      string    `json:"id"`
	ShortID string    `json:"short_id"`
	Time    time.Time `json:"time"`
	Host    string    `json:"host"`
	Name    string    `json:"name,omitempty"`
	Tags    []string  `json:"tags"`
	Paths   []string  `json:"paths"`
}

type forgetKeepReason struct {
	ID      string    `json:"id"`
	Time    time.Time `json:"time"`
	Matches []string  `json:"matches"`
}

// runForget checks the arguments, decides what to remove (the snapshots
// named, or what the policy does not keep), prints it and removes it
// unless --dry-run.
func runForget(ctx context.Context, c *cli, o *forgetOptions, args []string) error {
	p := o.policy()
	if err := checkForgetArgs(o, p, args); err != nil {
		return err
	}
	r, err := c.open(ctx, repo.Options{})
	if err != nil {
		return err
	}
	var groups []forgetGroup
	var remove []*repo.Snapshot
	if len(args) > 0 {
		groups, remove, err = forgetNamed(ctx, r, args)
	} else {
		groups, remove, err = forgetByPolicy(ctx, r, o, p)
	}
	if err != nil {
		return err
	}

	if !c.json {
		if len(args) == 0 {
			fmt.Fprintf(c.stdout, "applying the policy: %s (grouped by %s; hours, days, weeks, months and years of the local time zone, now %s)\n\n",
				p, groupByWords(o.groupBy), time.Now().Format("MST -07:00"))
		}
		printForget(c.stdout, groups, len(args) == 0)
	}
	if o.dryRun {
		if c.json {
			return c.printJSON(groups)
		}
		fmt.Fprintf(c.stdout, "dry run: would remove %d snapshots\n", len(remove))
		return nil
	}
	if !o.prune {
		return removeSnapshots(ctx, c, r, groups, remove, false)
	}
	popts, err := o.pruneFlags.options(c)
	if err != nil {
		return err
	}
	// With --json, one object: the groups and the prune's result.
	json := c.json
	c.json = false
	out := c.stdout
	if json {
		c.stdout = io.Discard
	}
	err = removeSnapshots(ctx, c, r, groups, remove, true)
	c.stdout = out
	if err != nil {
		return err
	}
	if json {
		res, err := r.Prune(ctx, popts)
		if err != nil {
			return err
		}
		c.json = true
		return c.printJSON(struct {
			Groups []forgetGroup     `json:"groups"`
			Prune  *repo.PruneResult `json:"prune"`
		}{groups, res})
	}
	return runPrune(ctx, c, r, popts)
}

// checkForgetArgs refuses what forget must not guess at: snapshots named
// together with a policy or a selection, and neither snapshots nor a
// policy (which would remove everything).
func checkForgetArgs(o *forgetOptions, p retention.Policy, args []string) error {
	if err := p.Validate(); err != nil {
		return usagef("%v", err)
	}
	if len(args) > 0 {
		if !p.Empty() {
			return usagef("name snapshots or give a --keep-* policy, not both")
		}
		if !o.filter().Empty() || o.flags.Changed("group-by") {
			return usagef("--tag, --name, --host and --group-by select snapshots for a policy; they do not apply to snapshots named")
		}
	} else if p.Empty() {
		return usagef("no policy and no snapshot named: refusing to remove every snapshot (give --keep-* flags or snapshot ids)")
	}
	return nil
}

// forgetNamed returns the snapshots named (each once) as one group to
// remove.
func forgetNamed(ctx context.Context, r *repo.Repository, args []string) ([]forgetGroup, []*repo.Snapshot, error) {
	// Every manifest must read, as for a policy.
	if _, err := r.Snapshots(ctx); err != nil {
		return nil, nil, err
	}
	g := forgetGroup{Keep: []forgetSnapshot{}, Reasons: []forgetKeepReason{}}
	var remove []*repo.Snapshot
	seen := map[repo.ObjectID]bool{}
	for _, ref := range args {
		s, err := r.FindSnapshot(ctx, ref)
		if err != nil {
			return nil, nil, err
		}
		if !seen[s.ID] {
			seen[s.ID] = true
			remove = append(remove, s)
			g.Remove = append(g.Remove, forgetJSON(s))
		}
	}
	return []forgetGroup{g}, remove, nil
}

// forgetByPolicy applies the policy to each group of the snapshots the
// selection matches, and returns the groups and the snapshots to remove.
// It refuses a policy that keeps none of a group.
func forgetByPolicy(ctx context.Context, r *repo.Repository, o *forgetOptions, p retention.Policy) ([]forgetGroup, []*repo.Snapshot, error) {
	// Every manifest must read: a policy decided without one of them could
	// remove what it would have kept.
	snaps, err := r.Snapshots(ctx)
	if err != nil {
		return nil, nil, err
	}
	byID := map[string]*repo.Snapshot{}
	var rs []retention.Snapshot
	filter := o.filter()
	for _, s := range snaps {
		byID[s.ID.String()] = s
		if t := retentionSnapshot(s); filter.Match(t) {
			rs = append(rs, t)
		}
	}
	var groups []forgetGroup
	var remove []*repo.Snapshot
	now := time.Now()
	for _, grp := range retention.Groups(rs, o.groupBy) {
		res := p.Apply(grp.Snapshots, now, time.Local)
		if len(res.Keep) == 0 {
			return nil, nil, fmt.Errorf("refusing to remove every snapshot of the group %s: the policy keeps none of its %d; nothing was removed",
				grp.Key, len(grp.Snapshots))
		}
		g := forgetGroup{Host: grp.Key.Host, Paths: grp.Key.Paths, Name: grp.Key.Name, Tags: grp.Key.Tags,
			Keep: []forgetSnapshot{}, Remove: []forgetSnapshot{}, Reasons: []forgetKeepReason{}}
		for _, k := range res.Keep {
			s := byID[k.Snapshot.ID]
			g.Keep = append(g.Keep, forgetJSON(s))
			g.Reasons = append(g.Reasons, forgetKeepReason{ID: s.ID.String(), Time: s.Time, Matches: k.Reasons})
		}
		for _, rm := range res.Remove {
			s := byID[rm.ID]
			g.Remove = append(g.Remove, forgetJSON(s))
			remove = append(remove, s)
		}
		groups = append(groups, g)
	}
	return groups, remove, nil
}

// removeSnapshots removes the snapshots' manifests, goes on past a
// failure, prints the count (or the groups as JSON) and returns the
// failures.
func removeSnapshots(ctx context.Context, c *cli, r *repo.Repository, groups []forgetGroup, remove []*repo.Snapshot, pruning bool) error {
	var failed []string
	for _, s := range remove {
		if err := r.ForgetSnapshot(ctx, s.ID); err != nil {
			failed = append(failed, err.Error())
		}
	}
	if c.json {
		if err := c.printJSON(groups); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(c.stdout, "removed %d snapshots\n", len(remove)-len(failed))
	}
	if len(remove) > len(failed) && !pruning {
		fmt.Fprintln(c.stderr, "note: forget removes snapshot manifests only; the data they alone referenced takes space until prune reclaims it")
	}
	if len(failed) > 0 {
		return errors.New(strings.Join(failed, "; "))
	}
	return nil
}

func groupByWords(g retention.GroupBy) string {
	if s := g.String(); s != "" {
		return s
	}
	return "nothing"
}

func retentionSnapshot(s *repo.Snapshot) retention.Snapshot {
	return retention.Snapshot{ID: s.ID.String(), Time: s.Time, Host: s.Host, Paths: s.Paths, Name: s.Name, Tags: s.Tags}
}

func forgetJSON(s *repo.Snapshot) forgetSnapshot {
	tags := s.Tags
	if tags == nil {
		tags = []string{}
	}
	return forgetSnapshot{ID: s.ID.String(), ShortID: s.ShortID(), Time: s.Time, Host: s.Host, Name: s.Name, Tags: tags, Paths: s.Paths}
}

// printForget writes a table per group: the snapshots kept, with their
// reasons, then those removed.
func printForget(w io.Writer, groups []forgetGroup, policy bool) {
	for _, g := range groups {
		if policy {
			key := retention.Key{Host: g.Host, Paths: g.Paths, Name: g.Name, Tags: g.Tags}
			if key.Host == "" && key.Paths == nil && key.Name == "" && key.Tags == nil {
				fmt.Fprintln(w, "all snapshots:")
			} else {
				fmt.Fprintf(w, "snapshots of %s:\n", key)
			}
		}
		reasons := map[string][]string{}
		for _, r := range g.Reasons {
			reasons[r.ID] = r.Matches
		}
		for _, part := range []struct {
			verb  string
			snaps []forgetSnapshot
		}{{"keep", g.Keep}, {"remove", g.Remove}} {
			if len(part.snaps) == 0 {
				continue
			}
			fmt.Fprintf(w, "%s %d snapshots:\n", part.verb, len(part.snaps))
			tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
			head := "ID\tTIME\tHOST\tNAME\tTAGS\tPATHS"
			if part.verb == "keep" && policy {
				head = "ID\tTIME\tHOST\tNAME\tTAGS\tREASONS\tPATHS"
			}
			fmt.Fprintln(tw, head)
			for _, s := range part.snaps {
				row := []string{s.ShortID, s.Time.In(time.Local).Format(time.RFC3339), s.Host, s.Name, strings.Join(s.Tags, ",")}
				if part.verb == "keep" && policy {
					row = append(row, strings.Join(reasons[s.ID], ", "))
				}
				row = append(row, strings.Join(s.Paths, " "))
				fmt.Fprintln(tw, strings.Join(row, "\t"))
			}
			tw.Flush()
			fmt.Fprintln(w)
		}
	}
}
