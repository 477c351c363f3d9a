package main

import (
	"context"
	"fmt"
	"io"
	"runtime/debug"
	"strings"
)

func init() {
	register(&command{name: "version", short: "Print the version: module version, source revision and time, Go version.", noRepo: true, run: runVersion})
}

func runVersion(ctx context.Context, c *cli, args []string) error {
	if len(args) != 0 {
		return usagef("version takes no arguments")
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		bi = nil
	}
	printVersion(c.stdout, bi)
	return nil
}

// printVersion writes what the build info says about this binary: the
// module version, the version control revision and commit time (and
// whether the tree had uncommitted changes), and the Go version. A binary
// built outside a checkout, or with -buildvcs=false, has no revision.
func printVersion(w io.Writer, bi *debug.BuildInfo) {
	if bi == nil {
		fmt.Fprintln(w, "snapcrypt: no build information in this binary")
		return
	}
	version := bi.Main.Version
	if version == "" {
		version = "(unknown)"
	}
	settings := map[string]string{}
	for _, s := range bi.Settings {
		settings[s.Key] = s.Value
	}
	fmt.Fprintf(w, "snapcrypt %s\n", version)
	if rev := settings["vcs.revision"]; rev != "" {
		line := "revision " + rev
		if settings["vcs.modified"] == "true" {
			line += " (modified)"
		}
		fmt.Fprintln(w, line)
	} else {
		fmt.Fprintln(w, "revision unknown (not built from a version-controlled tree)")
	}
	if t := settings["vcs.time"]; t != "" {
		fmt.Fprintf(w, "committed %s\n", t)
	}
	fmt.Fprintf(w, "built with %s\n", strings.TrimSpace(bi.GoVersion))
}
