package main

import (
	"context"
	"fmt"

	"github.com/spf13/pflag"

	"github.com/snapcrypt/snapcrypt/repo"
)

func init() { register(migrateCommand()) }

func migrateCommand() *command {
	var comp string
	return &command{
		name:  "migrate",
		short: "Upgrade a format version 1 repository to version 2 (compressed snapshots from then on; snapcrypt before version 2 no longer opens it).",
		setup: func(fs *pflag.FlagSet, c *cli) {
			fs.StringVar(&comp, "compression", "auto", "default compression of snapshots after the upgrade: auto, off or max")
		},
		run: func(ctx context.Context, c *cli, args []string) error {
			if len(args) != 0 {
				return usagef("migrate takes no arguments")
			}
			cp, err := parseCompression(comp)
			if err != nil {
				return err
			}
			r, err := c.open(ctx, repo.Options{})
			if err != nil {
				return err
			}
			changed, err := r.Migrate(ctx, cp)
			if err != nil {
				return err
			}
			if !changed {
				fmt.Fprintf(c.stdout, "repository %s is format version %d already; nothing to do\n", r.Config().ID, r.Config().Version)
				return nil
			}
			fmt.Fprintf(c.stdout, "repository %s upgraded to format version %d, compression %s\n", r.Config().ID, r.Config().Version, r.Compression())
			return nil
		},
	}
}
