package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/spf13/pflag"

	"github.com/snapcrypt/snapcrypt/repo"
)

func init() { register(pruneCommand()) }

// pruneFlags are prune's flags, which forget --prune shares.
type pruneFlags struct {
	dryRun    bool
	maxUnused float64
	wait      bool
	noWait    bool
}

// setup declares the flags; dryRun only for prune itself (forget has
// its own --dry-run, which then covers both).
func (o *pruneFlags) setup(fs *pflag.FlagSet, withDryRun bool) {
	if withDryRun {
		fs.BoolVarP(&o.dryRun, "dry-run", "n", false, "delete nothing; print what prune would free")
	}
	fs.Float64Var(&o.maxUnused, "max-unused", repo.DefaultMaxUnused, "repack a partly used pack when more than `PERCENT` of it is unused (0: every one; 100: none)")
	fs.BoolVar(&o.wait, "wait", false, "wait for snapshots in flight (their leases) before deleting (the default on a terminal)")
	fs.BoolVar(&o.noWait, "no-wait", false, "with snapshots in flight, leave the deletion to the next prune instead of waiting (the default off a terminal)")
}

func (o *pruneFlags) options(c *cli) (repo.PruneOptions, error) {
	if o.wait && o.noWait {
		return repo.PruneOptions{}, usagef("--wait and --no-wait exclude each other")
	}
	if o.maxUnused < 0 || o.maxUnused > 100 {
		return repo.PruneOptions{}, usagef("--max-unused wants a percentage from 0 to 100")
	}
	wait := o.wait || !o.noWait && isTerminal(c.stderr)
	return repo.PruneOptions{DryRun: o.dryRun, MaxUnused: o.maxUnused, NoWait: !wait}, nil
}

func pruneCommand() *command {
	o := &pruneFlags{}
	return &command{
		name: "prune", args: "",
		short: "Delete the data no snapshot references: unused packs, partly used ones (repacked), interrupted writes, " +
			"and the data keys nothing is sealed with any more. Safe beside snapshots, mounts and rotations on any host.",
		setup: func(fs *pflag.FlagSet, c *cli) {
			o.setup(fs, true)
			jsonFlag(fs, c)
		},
		run: func(ctx context.Context, c *cli, args []string) error {
			if len(args) > 0 {
				return usagef("prune takes no arguments")
			}
			opts, err := o.options(c)
			if err != nil {
				return err
			}
			r, err := c.open(ctx, repo.Options{})
			if err != nil {
				return err
			}
			return runPrune(ctx, c, r, opts)
		},
	}
}

// runPrune runs a prune on r with a progress line on a terminal, then
// prints what it freed (or, with --json, the result).
func runPrune(ctx context.Context, c *cli, r *repo.Repository, opts repo.PruneOptions) error {
	if !c.json && isTerminal(c.stderr) {
		opts.Progress = func(p repo.PruneProgress) {
			line := "prune: " + p.Step
			if p.Total > 0 && p.Step != "wait" {
				const width = 30
				n := width * p.Done / p.Total
				line += fmt.Sprintf(" [%s%s] %d/%d", strings.Repeat("#", n), strings.Repeat(" ", width-n), p.Done, p.Total)
			}
			if p.Detail != "" {
				line += ": waiting for " + p.Detail
			}
			fmt.Fprintf(c.stderr, "\r\033[K%s", line)
		}
		defer fmt.Fprint(c.stderr, "\r\033[K")
	}
	res, err := r.Prune(ctx, opts)
	if err != nil {
		return err
	}
	if c.json {
		return c.printJSON(res)
	}
	printPrune(c, res)
	return nil
}

func printPrune(c *cli, res *repo.PruneResult) {
	w := c.stdout
	if res.Resumed {
		fmt.Fprintf(w, "finishing the prune of mark %s\n", res.Mark[:8])
	}
	packs := res.UnusedPacks + res.RepackedPacks + res.UnindexedPacks
	fmt.Fprintf(w, "%d snapshots; %d packs to delete (%d unused, %d repacked, %d unindexed): %s; %d data keys\n",
		res.Snapshots, packs, res.UnusedPacks, res.RepackedPacks, res.UnindexedPacks, bytesStr(uint64(res.CandidateBytes)), res.CandidateDEKs)
	switch {
	case res.DryRun:
		fmt.Fprintf(w, "dry run: would free %s (repacking copies %s)\n", bytesStr(uint64(res.CandidateBytes)), bytesStr(uint64(res.RepackBytes)))
	case len(res.Deferred) > 0:
		var who []string
		for _, l := range res.Deferred {
			who = append(who, l.String())
		}
		fmt.Fprintf(w, "deferred %s in %d packs: %d snapshots in flight (%s); the next prune finishes\n",
			bytesStr(uint64(res.CandidateBytes)), packs, len(res.Deferred), strings.Join(who, ", "))
	case packs == 0 && res.CandidateDEKs == 0:
		fmt.Fprintln(w, "nothing to prune")
	default:
		if res.Rescued > 0 {
			fmt.Fprintf(w, "kept %d packs that snapshots committed meanwhile use\n", res.Rescued)
		}
		fmt.Fprintf(w, "deleted %d packs, %d index objects and %d data keys: freed %s\n",
			res.DeletedPacks, res.DeletedIndexes, res.DeletedDEKs, bytesStr(uint64(res.FreedBytes)))
	}
}
