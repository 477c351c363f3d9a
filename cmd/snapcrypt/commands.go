package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/pflag"
	"golang.org/x/term"

	"github.com/snapcrypt/snapcrypt/keys"
	"github.com/snapcrypt/snapcrypt/repo"
	"github.com/snapcrypt/snapcrypt/repo/store"
)

func init() {
	register(&command{name: "keygen", args: "FILE", short: "Write a new random 256-bit key file (mode 0600); refuses to overwrite.", noRepo: true, run: runKeygen})
	register(initCommand())
	register(snapshotCommand())
	register(&command{name: "snapshots", short: "List snapshots: id, time, name, tags, paths, files, size.", run: runSnapshots, setup: jsonFlag})
	register(restoreCommand())
	register(checkCommand())
	register(&command{name: "status", short: "Show the repository id, format, key generations, snapshots and size.", run: runStatus, setup: jsonFlag})
}

func jsonFlag(fs *pflag.FlagSet, c *cli) {
	fs.BoolVar(&c.json, "json", false, "print JSON")
}

func (c *cli) printJSON(v any) error {
	e := json.NewEncoder(c.stdout)
	e.SetIndent("", "  ")
	return e.Encode(v)
}

func isTerminal(f any) bool {
	if f, ok := f.(*os.File); ok {
		return term.IsTerminal(int(f.Fd()))
	}
	return false
}

func runKeygen(ctx context.Context, c *cli, args []string) error {
	if len(args) != 1 {
		return usagef("keygen takes one argument, the key file to write")
	}
	if err := keys.GenerateKeyFile(args[0]); err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "wrote a new key to %s (keep it safe: without it the repository cannot be read)\n", args[0])
	return nil
}

func initCommand() *command {
	var comp string
	var version int
	return &command{
		name: "init", short: "Create a new repository protected by the key.",
		setup: func(fs *pflag.FlagSet, c *cli) {
			fs.StringVar(&comp, "compression", "auto", "default compression of snapshots: auto (zstd where it saves space), off, or max (smaller, slower)")
			fs.IntVar(&version, "format-version", repo.FormatVersion, "repository format version: 2, or 1 for a repository that snapcrypt before compression reads (uncompressed; 'migrate' upgrades it)")
		},
		run: func(ctx context.Context, c *cli, args []string) error { return runInit(ctx, c, comp, version, args) },
	}
}

// parseCompression parses a --compression value ("" for none given).
func parseCompression(s string) (repo.Compression, error) {
	if s == "" {
		return 0, nil
	}
	comp, err := repo.ParseCompression(s)
	if err != nil {
		return 0, usagef("--compression: %v", err)
	}
	return comp, nil
}

func runInit(ctx context.Context, c *cli, compFlag string, version int, args []string) error {
	if len(args) != 0 {
		return usagef("init takes no arguments")
	}
	comp, err := parseCompression(compFlag)
	if err != nil {
		return err
	}
	if version != 1 && version != repo.FormatVersion {
		return usagef("--format-version %d: this snapcrypt creates version 1 or %d", version, repo.FormatVersion)
	}
	if version == 1 && comp != repo.CompressionAuto {
		return usagef("--compression: a format version 1 repository is not compressed")
	}
	ms, err := c.materials()
	if err != nil {
		return err
	}
	if len(ms) != 1 {
		return usagef("init takes exactly one key")
	}
	st, err := c.openStore(ctx, true)
	if err != nil {
		return err
	}
	io := repo.InitOptions{Version: version}
	if version > 1 {
		io.Compression = comp
	}
	r, err := repo.InitWith(ctx, st, ms[0], io)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "created repository %s at %s (format version %d, compression %s)\n", r.Config().ID, st.Location(), r.Config().Version, r.Compression())
	return nil
}

// snapshotOptions are snapshot's flags.
type snapshotOptions struct {
	name, host, at string
	compression    string
	tags           []string
	sf             snapshotFlags
}

func snapshotCommand() *command {
	o := &snapshotOptions{}
	return &command{
		name: "snapshot", args: "PATH... | --stdin | --stdin-from-command -- COMMAND [ARG...]",
		short: "Take one snapshot of PATH...; prints its id on the last line of stdout.",
		setup: func(fs *pflag.FlagSet, c *cli) {
			fs.StringVar(&o.name, "name", "", "snapshot name")
			fs.StringArrayVar(&o.tags, "tag", nil, "tag (repeatable)")
			fs.StringVar(&o.host, "host", "", "host name to record (default: this machine's)")
			fs.StringVar(&o.at, "time", "", "snapshot time to record, RFC 3339 (e.g. 2024-05-01T10:00:00+02:00; default: now)")
			fs.StringVar(&o.compression, "compression", "", "auto, off or max for this snapshot's new data (default: the repository's, set by init)")
			o.sf.setup(fs, c)
		},
		run: func(ctx context.Context, c *cli, args []string) error { return runSnapshot(ctx, c, o, args) },
	}
}

// runSnapshot checks the arguments, takes the snapshot (finishing an
// interrupted key rotation beside it when it can), reports it and removes
// stale temporary objects.
func runSnapshot(ctx context.Context, c *cli, o *snapshotOptions, args []string) error {
	sf := &o.sf
	when, err := checkSnapshotArgs(o, args)
	if err != nil {
		return err
	}
	comp, err := parseCompression(o.compression)
	if err != nil {
		return err
	}
	// Packs in flight dominate memory; a soft limit keeps the
	// garbage collector from letting the heap grow past it.
	debug.SetMemoryLimit(160 << 20)
	r, err := c.open(ctx, repo.Options{})
	if err != nil {
		return err
	}
	rep := newReporter(c, sf.quiet)
	if comp != 0 && comp != repo.CompressionOff && r.Config().Version < 2 {
		return usagef("--compression %s: the repository is format version 1, which stores data uncompressed ('snapcrypt migrate' upgrades it)", comp)
	}
	opts := repo.SnapshotOptions{Name: o.name, Tags: o.tags, Host: o.host, Time: when, Exclude: sf.ex, Compression: comp,
		Warn: func(msg string) { rep.println(c.stderr, "warning:", msg) }}
	if sf.quiet {
		opts.Note = func(string) {}
	}
	if rep != nil {
		opts.Progress = snapshotProgress(rep)
	}
	wait := resumeRotation(ctx, c, r.Keys())
	res, err := takeSnapshot(ctx, c, r, sf, rep, args, opts)
	wait()
	rep.finish()
	if errors.Is(err, syscall.ENOSPC) {
		return fmt.Errorf("the repository's disk is full: free space and take the snapshot again (what it wrote so far is unused space, which check counts): %w", err)
	}
	if err != nil {
		return err
	}
	printSnapshot(c, sf.quiet, res)
	if sf.quiet {
		removeStale(ctx, &cli{stdout: io.Discard, stderr: io.Discard}, r.Store())
	} else {
		removeStale(ctx, c, r.Store())
	}
	if res.Warnings > 0 {
		return withCode(exitWarnings, fmt.Errorf("snapshot %s written, but %d entries were skipped (see warnings)", res.Snapshot.ShortID(), res.Warnings))
	}
	return nil
}

// checkSnapshotArgs checks that the snapshot has one source (paths,
// --stdin or a command) and returns the --time given (zero if none).
func checkSnapshotArgs(o *snapshotOptions, args []string) (time.Time, error) {
	sf := &o.sf
	switch {
	case sf.stdin && sf.stdinCommand:
		return time.Time{}, usagef("--stdin and --stdin-from-command exclude each other")
	case sf.stdin && len(args) != 0:
		return time.Time{}, usagef("snapshot --stdin takes no PATH (name the file with --stdin-filename)")
	case sf.stdinCommand && len(args) == 0:
		return time.Time{}, usagef("snapshot --stdin-from-command needs a COMMAND")
	case !sf.stdin && !sf.stdinCommand && len(args) == 0:
		return time.Time{}, usagef("snapshot needs at least one PATH")
	}
	if o.at == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, o.at)
	if err != nil {
		return time.Time{}, usagef("--time %q is not an RFC 3339 time such as 2024-05-01T10:00:00Z", o.at)
	}
	return t, nil
}

// takeSnapshot takes the snapshot from its source: stdin, a command's
// output, or the paths args (with a pre-scan beside it for the display's
// totals).
func takeSnapshot(ctx context.Context, c *cli, r *repo.Repository, sf *snapshotFlags, rep *reporter, args []string, opts repo.SnapshotOptions) (*repo.SnapshotResult, error) {
	switch {
	case sf.stdin:
		return r.SnapshotReader(ctx, os.Stdin, sf.stdinName, opts)
	case sf.stdinCommand:
		cr, err := startCommand(ctx, args, c.stderr)
		if err != nil {
			return nil, err
		}
		res, err := r.SnapshotReader(ctx, cr, sf.stdinName, opts)
		cr.close()
		return res, err
	}
	if rep != nil {
		// The pre-scan runs beside the snapshot and gives the
		// display its totals, and so an ETA.
		sctx, stop := context.WithCancel(ctx)
		defer stop()
		go func() {
			if files, bytes, err := repo.Totals(sctx, args, sf.ex); err == nil {
				rep.setTotals(files, bytes)
			}
		}()
	}
	return r.TakeSnapshot(ctx, args, opts)
}

// printSnapshot reports the snapshot taken: a JSON summary, its id alone
// (quiet), or a summary line on stderr and its id on stdout.
func printSnapshot(c *cli, quiet bool, res *repo.SnapshotResult) {
	p := res.Progress
	switch {
	case c.json:
		json.NewEncoder(c.stdout).Encode(snapshotSummary{MessageType: "summary", SnapshotID: res.Snapshot.ID.String(),
			Files: p.Files, Dirs: p.Dirs, Bytes: p.Bytes, ReadBytes: p.ReadBytes, UnchangedFiles: p.Reused,
			NewBlobs: p.NewBlobs, StoredBytes: p.Stored, Excluded: p.Excluded, Warnings: res.Warnings,
			Seconds: time.Since(p.Start).Seconds()})
	case quiet:
		fmt.Fprintln(c.stdout, res.Snapshot.ID)
	default:
		excluded := ""
		if p.Excluded > 0 {
			excluded = fmt.Sprintf(", %d entries excluded", p.Excluded)
		}
		fmt.Fprintf(c.stderr, "snapshot %s: %d files, %d dirs, %s%s; read %s, %d files unchanged, %d new blobs, %s stored in %.1fs\n",
			res.Snapshot.ShortID(), p.Files, p.Dirs, bytesStr(p.Bytes), excluded, bytesStr(p.ReadBytes), p.Reused, p.NewBlobs,
			bytesStr(uint64(p.Stored)), time.Since(p.Start).Seconds())
		fmt.Fprintln(c.stdout, res.Snapshot.ID)
	}
}

func bytesStr(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

type snapshotJSON struct {
	ID    string    `json:"id"`
	Short string    `json:"short_id"`
	Time  time.Time `json:"time"`
	Host  string    `json:"host"`
	Name  string    `json:"name,omitempty"`
	Tags  []string  `json:"tags"`
	Paths []string  `json:"paths"`
	Files uint64    `json:"files"`
	Bytes uint64    `json:"bytes"`
	Tree  string    `json:"tree"`
	// Exclude is what the snapshot left out by choice, if anything.
	Exclude *repo.Exclusions `json:"exclude,omitempty"`
	// Added is the plaintext and stored bytes the snapshot added to the
	// repository (format version 2 manifests only).
	Added *repo.AddedBytes `json:"added,omitempty"`
}

func runSnapshots(ctx context.Context, c *cli, args []string) error {
	if len(args) != 0 {
		return usagef("snapshots takes no arguments")
	}
	r, err := c.open(ctx, repo.Options{})
	if err != nil {
		return err
	}
	snaps, err := r.Snapshots(ctx)
	if err != nil {
		return err
	}
	if c.json {
		out := []snapshotJSON{}
		for _, s := range snaps {
			tags := s.Tags
			if tags == nil {
				tags = []string{}
			}
			out = append(out, snapshotJSON{s.ID.String(), s.ShortID(), s.Time, s.Host, s.Name, tags, s.Paths, s.Files, s.Bytes, s.Tree.String(), s.Exclude, s.Added})
		}
		return c.printJSON(out)
	}
	fmt.Fprintf(c.stdout, "%-8s  %-20s  %-12s  %-12s  %8s  %10s  %s\n", "ID", "TIME", "NAME", "TAGS", "FILES", "SIZE", "PATHS")
	for _, s := range snaps {
		fmt.Fprintf(c.stdout, "%-8s  %-20s  %-12s  %-12s  %8d  %10s  %s\n", s.ShortID(), s.Time.Format(time.RFC3339),
			s.Name, strings.Join(s.Tags, ","), s.Files, bytesStr(s.Bytes), strings.Join(s.Paths, " "))
	}
	fmt.Fprintf(c.stdout, "%d snapshots\n", len(snaps))
	return nil
}

func restoreCommand() *command {
	var include []string
	var quiet bool
	return &command{
		name: "restore", args: "SNAPSHOT TARGET",
		short: "Restore a snapshot (id, unique id prefix, name or 'latest') into TARGET, an absent or empty directory.",
		setup: func(fs *pflag.FlagSet, c *cli) {
			fs.StringArrayVar(&include, "include", nil, "restore only paths matching PATTERN (path inside the snapshot, shell pattern; repeatable)")
			fs.BoolVar(&c.json, "json", false, "print status and a final summary as JSON objects, one a line, on stdout")
			fs.BoolVarP(&quiet, "quiet", "q", false, "print only warnings and errors")
		},
		run: func(ctx context.Context, c *cli, args []string) error {
			if len(args) != 2 {
				return usagef("restore takes SNAPSHOT and TARGET")
			}
			r, s, err := c.openSnapshot(ctx, args[0])
			if err != nil {
				return err
			}
			rep := newReporter(c, quiet)
			opts := repo.RestoreOptions{Include: include,
				Warn: func(msg string) { rep.println(c.stderr, "warning:", msg) }}
			if rep != nil {
				opts.Progress = restoreProgress(rep)
				// The totals (of the part --include selects) for
				// the ETA, from the trees, beside the restore.
				sctx, stop := context.WithCancel(ctx)
				defer stop()
				go func() {
					if files, bytes, err := r.RestoreTotals(sctx, s, include); err == nil {
						rep.setTotals(files, bytes)
					}
				}()
			}
			start := time.Now()
			res, err := r.Restore(ctx, s, args[1], opts)
			rep.finish()
			if err != nil {
				return err
			}
			switch {
			case c.json:
				return json.NewEncoder(c.stdout).Encode(restoreSummary{MessageType: "summary", SnapshotID: s.ID.String(),
					Files: res.Files, Dirs: res.Dirs, Symlinks: res.Symlinks, Hardlinks: res.Hardlinks, Bytes: res.Bytes,
					Warnings: res.Warnings, Seconds: time.Since(start).Seconds()})
			case !quiet:
				fmt.Fprintf(c.stdout, "restored snapshot %s to %s: %d files, %d dirs, %d symlinks, %d hard links, %s\n",
					s.ShortID(), args[1], res.Files, res.Dirs, res.Symlinks, res.Hardlinks, bytesStr(res.Bytes))
			}
			return nil
		},
	}
}

func checkCommand() *command {
	var readData bool
	return &command{
		name:  "check",
		short: "Check that every referenced object exists, every data key unwraps and the index agrees with the packs; exit 1 listing problems.",
		setup: func(fs *pflag.FlagSet, c *cli) {
			fs.BoolVar(&readData, "read-data", false, "also decrypt and authenticate every byte")
			jsonFlag(fs, c)
		},
		run: func(ctx context.Context, c *cli, args []string) error {
			if len(args) != 0 {
				return usagef("check takes no arguments")
			}
			r, err := c.open(ctx, repo.Options{})
			if err != nil {
				return err
			}
			res, err := r.Check(ctx, repo.CheckOptions{ReadData: readData})
			if err != nil {
				return err
			}
			if c.json {
				if res.Problems == nil {
					res.Problems = []string{}
				}
				if err := c.printJSON(res); err != nil {
					return err
				}
			} else {
				fmt.Fprintf(c.stdout, "checked %d snapshots, %d trees, %d blobs, %d packs, %d data keys\n", res.Snapshots, res.Trees, res.Blobs, res.Packs, res.DEKs)
				fmt.Fprintf(c.stdout, "unused space (not a problem; prune will reclaim it): %d packs no index names, %s; %d blobs no snapshot reaches, %s\n",
					res.UnindexedPacks, bytesStr(uint64(res.UnindexedBytes)), res.UnreachableBlobs, bytesStr(uint64(res.UnreachableBytes)))
				for _, p := range res.Problems {
					fmt.Fprintln(c.stdout, "problem:", p)
				}
			}
			if len(res.Problems) > 0 {
				if !c.json {
					fmt.Fprintf(c.stderr, "snapcrypt check: %d problems found\n", len(res.Problems))
				}
				return withCode(exitFailure, errReported)
			}
			if !c.json {
				fmt.Fprintln(c.stdout, "no problems found")
			}
			return nil
		},
	}
}

// staleAge is how old a temporary file of the store must be for snapshot
// to take it for the leftover of a killed writer.
const staleAge = time.Hour

// removeStale removes, after a snapshot, the temporary files killed
// writers left in the store, and says so; a failure is a warning only.
func removeStale(ctx context.Context, c *cli, st store.Store) {
	n, err := store.RemoveStale(ctx, st, staleAge)
	if n > 0 {
		fmt.Fprintf(c.stderr, "removed %d temporary files that killed writers left (older than %v)\n", n, staleAge)
	}
	if err != nil {
		fmt.Fprintf(c.stderr, "warning: %v\n", err)
	}
}
