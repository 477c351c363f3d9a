package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"time"
	"unicode/utf8"

	"github.com/spf13/pflag"

	"github.com/snapcrypt/snapcrypt/repo"
)

func init() {
	register(lsCommand())
	register(&command{name: "dump", args: "SNAPSHOT PATH",
		short: "Write one file of a snapshot (PATH inside it) to stdout.", run: runDump})
	register(diffCommand())
}

// entryJSON is one entry as ls --json and diff --json print it.
type entryJSON struct {
	Path string `json:"path"`
	// PathRaw holds the path's bytes (base64) when they are not UTF-8,
	// which Path then shows with U+FFFD in their place.
	PathRaw     []byte    `json:"path_raw,omitempty"`
	Type        string    `json:"type"`
	Mode        uint32    `json:"mode"`
	Permissions string    `json:"permissions"`
	UID         uint32    `json:"uid"`
	GID         uint32    `json:"gid"`
	Size        uint64    `json:"size"`
	MTime       time.Time `json:"mtime"`
	Links       uint32    `json:"links"`
	Target      string    `json:"target,omitempty"`
}

func entryOf(p string, n *repo.Node) entryJSON {
	e := entryJSON{Path: p, Type: n.Type.String(), Mode: n.Mode, Permissions: permString(n), UID: n.UID, GID: n.GID,
		Size: n.Size, MTime: time.Unix(0, n.MTime).UTC(), Links: n.Links, Target: string(n.Target)}
	if !utf8.ValidString(p) {
		e.PathRaw = []byte(p)
	}
	return e
}

// permString is the mode as ls -l shows it: type, then rwx with s/S and
// t/T for the set-id and sticky bits.
func permString(n *repo.Node) string {
	b := []byte("----------")
	switch n.Type {
	case repo.TypeDir:
		b[0] = 'd'
	case repo.TypeSymlink:
		b[0] = 'l'
	}
	for i, c := range "rwxrwxrwx" {
		if n.Mode&(1<<(8-i)) != 0 {
			b[i+1] = byte(c)
		}
	}
	special := func(bit uint32, at int, set, unset byte) {
		if n.Mode&bit != 0 {
			if b[at] == 'x' {
				b[at] = set
			} else {
				b[at] = unset
			}
		}
	}
	special(0o4000, 3, 's', 'S')
	special(0o2000, 6, 's', 'S')
	special(0o1000, 9, 't', 'T')
	return string(b)
}

func lsCommand() *command {
	var long, recursive bool
	return &command{
		name: "ls", args: "SNAPSHOT [PATH]",
		short: "List a snapshot's entries at PATH (default: the root), without a mount.",
		setup: func(fs *pflag.FlagSet, c *cli) {
			fs.BoolVarP(&long, "long", "l", false, "long listing: mode, owner, size, mtime")
			fs.BoolVarP(&recursive, "recursive", "R", false, "list subdirectories too")
			fs.BoolVar(&c.json, "json", false, "print one JSON object per entry, one a line")
		},
		run: func(ctx context.Context, c *cli, args []string) error {
			if len(args) < 1 || len(args) > 2 {
				return usagef("ls takes SNAPSHOT and optionally a PATH inside it")
			}
			r, s, err := c.openSnapshot(ctx, args[0])
			if err != nil {
				return err
			}
			p := "/"
			if len(args) == 2 {
				p = repo.CleanPath(args[1])
			}
			n, err := r.Lookup(ctx, s, p)
			if err != nil {
				return err
			}
			enc := json.NewEncoder(c.stdout)
			show := func(p string, n *repo.Node) error {
				switch {
				case c.json:
					return enc.Encode(entryOf(p, n))
				case long:
					return printLong(c.stdout, p, n)
				}
				_, err := fmt.Fprintln(c.stdout, p)
				return err
			}
			if n.Type != repo.TypeDir {
				return show(p, n)
			}
			return r.Browse(ctx, n.Subtree, p, recursive, show)
		},
	}
}

func printLong(w io.Writer, p string, n *repo.Node) error {
	mt := time.Unix(0, n.MTime).Local().Format("2006-01-02 15:04:05")
	line := fmt.Sprintf("%s %6d %6d %12d %s %s", permString(n), n.UID, n.GID, n.Size, mt, p)
	if n.Type == repo.TypeSymlink {
		line += " -> " + string(n.Target)
	}
	_, err := fmt.Fprintln(w, line)
	return err
}

func runDump(ctx context.Context, c *cli, args []string) error {
	if len(args) != 2 {
		return usagef("dump takes SNAPSHOT and the PATH of a file inside it")
	}
	r, s, err := c.openSnapshot(ctx, args[0])
	if err != nil {
		return err
	}
	p := repo.CleanPath(args[1])
	n, err := r.Lookup(ctx, s, p)
	if err != nil {
		return err
	}
	switch n.Type {
	case repo.TypeDir:
		return fmt.Errorf("%s is a directory in snapshot %s: dump writes one file (use restore --include for a directory)", p, s.ShortID())
	case repo.TypeSymlink:
		return fmt.Errorf("%s is a symlink to %s in snapshot %s: dump writes regular files", p, n.Target, s.ShortID())
	}
	return r.WriteFile(ctx, n, c.stdout)
}

func diffCommand() *command {
	return &command{
		name: "diff", args: "SNAPSHOT1 SNAPSHOT2 [PATH]",
		short: "Show what changed from SNAPSHOT1 to SNAPSHOT2 (below PATH): trees only, no file contents read.",
		setup: jsonFlag,
		run: func(ctx context.Context, c *cli, args []string) error {
			if len(args) < 2 || len(args) > 3 {
				return usagef("diff takes two snapshots and optionally a PATH inside them")
			}
			r, err := c.open(ctx, repo.Options{})
			if err != nil {
				return err
			}
			var snaps [2]*repo.Snapshot
			for i := range snaps {
				if snaps[i], err = r.FindSnapshot(ctx, args[i]); err != nil {
					return err
				}
			}
			p := "/"
			if len(args) == 3 {
				p = repo.CleanPath(args[2])
			}
			var nodes [2]*repo.Node
			for i, s := range snaps {
				n, err := r.Lookup(ctx, s, p)
				if err != nil && !errors.Is(err, repo.ErrNoPath) {
					return err
				}
				nodes[i] = n
			}
			if nodes[0] == nil && nodes[1] == nil {
				return fmt.Errorf("%s is in neither snapshot (%s, %s): %w", p, snaps[0].ShortID(), snaps[1].ShortID(), repo.ErrNoPath)
			}
			out := diffJSON{Changes: []changeJSON{}}
			add := func(ch repo.Change) error {
				cj := changeJSON{Path: ch.Path, Change: ch.Kind.String()}
				if !utf8.ValidString(ch.Path) {
					cj.PathRaw = []byte(ch.Path)
				}
				n := ch.New
				if n == nil {
					n = ch.Old
				}
				cj.Type = n.Type.String()
				sum := &out.Summary
				switch ch.Kind {
				case repo.Added:
					sum.Added++
					sum.AddedBytes += n.Size
					cj.NewSize = &ch.New.Size
				case repo.Removed:
					sum.Removed++
					sum.RemovedBytes += n.Size
					cj.OldSize = &ch.Old.Size
				case repo.Modified:
					sum.Modified++
					cj.OldSize, cj.NewSize = &ch.Old.Size, &ch.New.Size
				case repo.MetaOnly:
					sum.Metadata++
				}
				if c.json {
					out.Changes = append(out.Changes, cj)
					return nil
				}
				return printChange(c.stdout, ch)
			}
			if err := r.Diff(ctx, nodes[0], nodes[1], p, add); err != nil {
				return err
			}
			if c.json {
				return c.printJSON(out)
			}
			s := out.Summary
			fmt.Fprintf(c.stdout, "%d added (%s), %d removed (%s), %d modified, %d metadata only\n",
				s.Added, bytesStr(s.AddedBytes), s.Removed, bytesStr(s.RemovedBytes), s.Modified, s.Metadata)
			return nil
		},
	}
}

type changeJSON struct {
	Path    string  `json:"path"`
	PathRaw []byte  `json:"path_raw,omitempty"`
	Change  string  `json:"change"` // added, removed, modified, metadata
	Type    string  `json:"type"`
	OldSize *uint64 `json:"old_size,omitempty"`
	NewSize *uint64 `json:"new_size,omitempty"`
}

type diffJSON struct {
	Changes []changeJSON `json:"changes"`
	Summary struct {
		Added        int    `json:"added"`
		Removed      int    `json:"removed"`
		Modified     int    `json:"modified"`
		Metadata     int    `json:"metadata"`
		AddedBytes   uint64 `json:"added_bytes"`
		RemovedBytes uint64 `json:"removed_bytes"`
	} `json:"summary"`
}

// printChange prints one change as restic's diff does: "+" added, "-"
// removed, "M" modified (with the sizes of files), "U" metadata only.
func printChange(w io.Writer, ch repo.Change) error {
	p := ch.Path
	if (ch.New != nil && ch.New.Type == repo.TypeDir) || (ch.New == nil && ch.Old.Type == repo.TypeDir) {
		p = path.Clean(p) + "/"
	}
	var err error
	switch ch.Kind {
	case repo.Added:
		_, err = fmt.Fprintf(w, "+    %s\n", p)
	case repo.Removed:
		_, err = fmt.Fprintf(w, "-    %s\n", p)
	case repo.Modified:
		if ch.New.Type == repo.TypeFile {
			_, err = fmt.Fprintf(w, "M    %s  (%s -> %s)\n", p, bytesStr(ch.Old.Size), bytesStr(ch.New.Size))
		} else {
			_, err = fmt.Fprintf(w, "M    %s  (-> %s)\n", p, ch.New.Target)
		}
	case repo.MetaOnly:
		_, err = fmt.Fprintf(w, "U    %s\n", p)
	}
	return err
}
