package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/pflag"

	"github.com/snapcrypt/snapcrypt/keys"
)

func init() { register(keyCommand()) }

// notRevocation is what key remove says, and the docs say: removing a slot
// does not shut its holder out.
const notRevocation = "removal is not revocation: whoever held that slot's key may have kept the generation's key; " +
	"rotating to a new key ('snapcrypt rotate --new-key') is the revocation"

// keyOptions are key's flags.
type keyOptions struct {
	all bool
}

func keyCommand() *command {
	o := &keyOptions{}
	return &command{
		name: "key", args: "list | add NEWSPEC | remove SLOTID",
		short: "Manage the key slots of the current key generation: list them, add a slot for NEWSPEC, remove one (needs a key that opens the current generation).",
		setup: func(fs *pflag.FlagSet, c *cli) {
			jsonFlag(fs, c)
			fs.BoolVar(&o.all, "all", false, "list: the slots of every live generation (current and retiring), not only the current one")
		},
		run: func(ctx context.Context, c *cli, args []string) error { return runKey(ctx, c, o, args) },
	}
}

func runKey(ctx context.Context, c *cli, o *keyOptions, args []string) error {
	if len(args) == 0 {
		return usagef("key takes a subcommand: list, add NEWSPEC or remove SLOTID")
	}
	sub, args := args[0], args[1:]
	if o.all && sub != "list" {
		return usagef("--all is for key list")
	}
	switch sub {
	case "list":
		if len(args) != 0 {
			return usagef("key list takes no arguments")
		}
		return runKeyList(ctx, c, o.all)
	case "add":
		if len(args) != 1 {
			return usagef("key add takes one argument, the new key's spec")
		}
		return runKeyAdd(ctx, c, args[0])
	case "remove":
		if len(args) != 1 {
			return usagef("key remove takes one argument, the slot id ('snapcrypt key list' shows them)")
		}
		return runKeyRemove(ctx, c, args[0])
	}
	return usagef("unknown key subcommand %q: list, add or remove", sub)
}

// keyWay is one row of key list: a way into a generation, never a secret.
type keyWay struct {
	Generation string    `json:"generation"`
	State      string    `json:"state"`
	Slot       string    `json:"slot"` // "primary" for the generation's own key
	Kind       string    `json:"kind"`
	Created    time.Time `json:"created"`
}

func runKeyList(ctx context.Context, c *cli, all bool) error {
	kc, err := c.openKeys(ctx)
	if err != nil {
		return err
	}
	kr := kc.Keyring()
	rows := []keyWay{}
	for _, g := range kr.Generations {
		if g.ID != kr.Current && (!all || g.State == keys.StateRetired) {
			continue
		}
		for _, w := range g.Ways() {
			rows = append(rows, keyWay{Generation: g.ID, State: string(g.State), Slot: w.ID, Kind: w.Kind, Created: w.Created.UTC()})
		}
	}
	if c.json {
		return c.printJSON(rows)
	}
	fmt.Fprintf(c.stdout, "%-16s  %-8s  %-16s  %-10s  %s\n", "GENERATION", "STATE", "SLOT", "KIND", "CREATED")
	for _, r := range rows {
		fmt.Fprintf(c.stdout, "%-16s  %-8s  %-16s  %-10s  %s\n", r.Generation, r.State, r.Slot, r.Kind, r.Created.Format(time.RFC3339))
	}
	return nil
}

func runKeyAdd(ctx context.Context, c *cli, spec string) error {
	sp, err := keys.ParseSpec(spec)
	if err != nil {
		return err
	}
	m, err := sp.Load()
	if err != nil {
		return err
	}
	kc, err := c.openKeys(ctx)
	if err != nil {
		return err
	}
	s, err := kc.AddSlot(ctx, m)
	if err != nil {
		return err
	}
	kr := kc.Keyring()
	fmt.Fprintf(c.stdout, "added key slot %s (%s, %s) to generation %s (keyring epoch %d)\n", s.ID, s.KDF.Kind(), sp, kr.Current, kr.Epoch)
	fmt.Fprintln(c.stderr, "note: the slot opens this generation only; a rotation's new generation has the slots given to 'rotate --slot'")
	return nil
}

func runKeyRemove(ctx context.Context, c *cli, id string) error {
	kc, err := c.openKeys(ctx)
	if err != nil {
		return err
	}
	if err := kc.RemoveSlot(ctx, id); err != nil {
		return err
	}
	kr := kc.Keyring()
	fmt.Fprintf(c.stdout, "removed key slot %s from generation %s (keyring epoch %d)\n", id, kr.Current, kr.Epoch)
	fmt.Fprintf(c.stderr, "warning: %s\n", notRevocation)
	return nil
}
