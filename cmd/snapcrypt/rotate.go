package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/pflag"

	"github.com/snapcrypt/snapcrypt/keys"
	"github.com/snapcrypt/snapcrypt/lease"
	"github.com/snapcrypt/snapcrypt/repo"
	"github.com/snapcrypt/snapcrypt/rotation"
)

func init() { register(rotateCommand()) }

// rotateOptions are rotate's flags.
type rotateOptions struct {
	newKey             string
	slots              []string
	noWait, breakLease bool
	workers            int
	leaseDur           time.Duration
}

func rotateCommand() *command {
	o := &rotateOptions{}
	return &command{
		name: "rotate",
		short: "Rotate the repository's master key to --new-key: switch new writes at once, re-wrap the data keys, " +
			"retire the old key. With no --new-key, or the same --new-key again, finish an interrupted rotation.",
		setup: func(fs *pflag.FlagSet, c *cli) {
			fs.StringVar(&o.newKey, "new-key", "", "the new key spec (file:PATH, passfile:PATH, env:NAME, cmd:COMMAND, passcmd:COMMAND, awskms:KEY or a path)")
			fs.StringArrayVar(&o.slots, "slot", nil, "a key spec the new generation also opens with (a key slot, as 'key add' makes); repeatable. "+
				"The old generation's slots are not carried over")
			fs.BoolVar(&o.noWait, "no-wait", false, "return once the switch is durable; the re-wrap is left to the next process that holds the new key")
			fs.IntVar(&o.workers, "workers", rotation.DefaultWorkers, "data keys re-wrapped in parallel")
			fs.DurationVar(&o.leaseDur, "lease", rotation.DefaultLeaseDuration, fmt.Sprintf("rotation lease lifetime: how long a killed rotator blocks others (at most %v)", lease.MaxDuration))
			fs.BoolVar(&o.breakLease, "break-lease", false, "end the rotation lease whoever holds it (a rotator known to be dead or hung), name the holder and exit; nothing else is done")
		},
		run: func(ctx context.Context, c *cli, args []string) error { return runRotate(ctx, c, o, args) },
	}
}

// runRotate switches to --new-key (or finds the rotation to finish),
// runs the rotation to its end and reports it.
func runRotate(ctx context.Context, c *cli, o *rotateOptions, args []string) error {
	if len(args) != 0 {
		return usagef("rotate takes no arguments")
	}
	if o.breakLease {
		if o.newKey != "" || o.noWait {
			return usagef("--break-lease takes no --new-key or --no-wait")
		}
		return runBreakLease(ctx, c)
	}
	if len(o.slots) > 0 && o.newKey == "" {
		return usagef("--slot needs --new-key: slots are given to the new generation")
	}
	var m *keys.Material
	if o.newKey != "" {
		spec, err := keys.ParseSpec(o.newKey)
		if err != nil {
			return err
		}
		if m, err = spec.Load(); err != nil {
			return err
		}
	}
	var slots []*keys.Material
	for _, s := range o.slots {
		spec, err := keys.ParseSpec(s)
		if err != nil {
			return err
		}
		sm, err := spec.Load()
		if err != nil {
			return err
		}
		slots = append(slots, sm)
	}
	// The new key opens the keys too: when this command is run
	// again after an interruption, the old key may be retired.
	kc, err := c.openKeys(ctx, m)
	if err != nil {
		return err
	}
	start := time.Now()
	logf := func(format string, args ...any) { fmt.Fprintf(c.stderr, "warning: "+format+"\n", args...) }
	before := kc.Keyring()
	rot := rotation.New(kc, rotation.Options{Workers: o.workers, LeaseDuration: o.leaseDur, Logf: logf, Slots: slots})
	var proceed bool
	if m != nil {
		proceed, err = switchKey(ctx, c, kc, rot, m, o.noWait, func() { reportSlots(c, before, kc.Keyring()) })
	} else {
		proceed, err = rotationToFinish(ctx, c, rot)
	}
	if err != nil || !proceed {
		return err
	}
	return finishRotation(ctx, c, rot, start)
}

// switchKey starts the rotation to m (or finds it started already) and
// says so; with noWait it returns false once the switch is durable.
func switchKey(ctx context.Context, c *cli, kc *keys.Keychain, rot *rotation.Rotator, m *keys.Material, noWait bool, switched func()) (proceed bool, err error) {
	resumed, err := rot.Start(ctx, m)
	if err != nil {
		if errors.Is(err, rotation.ErrRotationUnfinished) {
			err = fmt.Errorf("%w (run 'snapcrypt rotate' without --new-key, holding the key it rotated to)", err)
		}
		return false, err
	}
	kr := kc.Keyring()
	if resumed {
		fmt.Fprintf(c.stderr, "resuming: generation %s is current already; finishing the rotation to it (keyring epoch %d)\n", kr.Current, kr.Epoch)
	} else {
		fmt.Fprintf(c.stderr, "switched: new data keys are wrapped under generation %s (keyring epoch %d)\n", kr.Current, kr.Epoch)
		switched()
	}
	if noWait {
		return false, rot.Close(context.WithoutCancel(ctx))
	}
	return true, nil
}

// reportSlots says, after a switch from the keyring before to the one
// after, which slots the new generation has and which slots of the old
// current generation were not carried over (they end with it).
func reportSlots(c *cli, before, after keys.Keyring) {
	g := after.Generation(after.Current)
	for _, s := range g.Slots {
		fmt.Fprintf(c.stderr, "generation %s has key slot %s (%s)\n", g.ID, s.ID, s.KDF.Kind())
	}
	old := before.Generation(before.Current)
	if old == nil || old.ID == g.ID || len(old.Slots) == 0 {
		return
	}
	for _, s := range old.Slots {
		fmt.Fprintf(c.stderr, "not carried over: key slot %s (%s) of generation %s opens only that generation and ends with it\n", s.ID, s.KDF.Kind(), old.ID)
	}
	fmt.Fprintln(c.stderr, "give those keys to the new generation with 'snapcrypt key add' (or 'rotate --slot' next time)")
}

// rotationToFinish reports whether a rotation is unfinished (rotate
// without --new-key), and says so when none is.
func rotationToFinish(ctx context.Context, c *cli, rot *rotation.Rotator) (bool, error) {
	unfinished, err := rot.Unfinished(ctx)
	if err != nil {
		return false, err
	}
	if !unfinished {
		fmt.Fprintln(c.stderr, "no rotation to finish; give --new-key to rotate")
	}
	return unfinished, nil
}

// finishRotation runs the rotation to its end with a progress display,
// frees the old objects' space and prints the outcome and its timing
// (from start).
func finishRotation(ctx context.Context, c *cli, rot *rotation.Rotator, start time.Time) error {
	progress, finish := rotationProgress(c)
	phases := map[string]time.Time{}
	var done int64
	err := rot.Run(ctx, func(p rotation.Progress) {
		if _, ok := phases[p.Phase]; !ok {
			phases[p.Phase] = time.Now()
		}
		done = p.Done
		progress(p)
	})
	finish()
	if err != nil {
		return fmt.Errorf("%w (the rotation is recorded in the repository: 'snapcrypt rotate' with the new key resumes it)", err)
	}
	deleted := time.Now()
	// The rotation is finished; give back the old objects' space.
	if err := rot.Purge(ctx, nil); err != nil {
		fmt.Fprintf(c.stderr, "warning: %v (the next rotation or mount frees it)\n", err)
	}
	st, err := rot.Status(ctx)
	if err != nil {
		return err
	}
	var retired []string
	for _, g := range st.Generations {
		if g.State == keys.StateRetired {
			retired = append(retired, g.ID)
		}
	}
	fmt.Fprintf(c.stdout, "rotation done: current generation %s; retired %s; the old key is no longer needed\n", st.Current, strings.Join(retired, ", "))
	printTiming(c, start, phases, deleted, done)
	return nil
}

// runBreakLease ends the rotation lease whoever holds it and names the
// holder (rotate --break-lease). It needs the repository's keys like any
// rotate: only a key holder may interfere with a rotation.
func runBreakLease(ctx context.Context, c *cli) error {
	kc, err := c.openKeys(ctx)
	if err != nil {
		return err
	}
	broke, err := rotation.BreakLease(ctx, kc)
	if err != nil {
		return err
	}
	if broke == nil {
		fmt.Fprintln(c.stdout, "no rotation lease is held")
		return nil
	}
	fmt.Fprintf(c.stdout, "broke the rotation lease of %s; 'snapcrypt rotate' resumes the rotation\n", broke)
	return nil
}

// openKeys opens only the repository's keys: all a rotation touches (no
// index, no snapshot is read), with the keys given (-k) and extra ones (a
// nil one is skipped). The content-id key must open, as for repo.Open, so
// that a key that matches a generation but cannot unwrap the repository's
// secrets is refused before anything changes.
func (c *cli) openKeys(ctx context.Context, extra ...*keys.Material) (*keys.Keychain, error) {
	st, ms, err := c.storeAndKeys(ctx)
	if err != nil {
		return nil, err
	}
	ms = append(ms, extra...)
	cfg, err := repo.ReadConfig(ctx, st)
	if err != nil {
		return nil, err
	}
	kc, err := keys.Open(ctx, st, cfg.ID, ms...)
	if err != nil {
		return nil, err
	}
	if _, err := kc.IDKey(ctx); err != nil {
		return nil, fmt.Errorf("content-id key: %w", err)
	}
	return kc, nil
}

// printTiming reports how long the phases of a rotation took, from start
// (just before the switch): the re-wrap until the retire commit, the old
// prefix deleted (the rotation finished), the space of its objects freed.
func printTiming(c *cli, start time.Time, phases map[string]time.Time, deletedAt time.Time, done int64) {
	at := func(phase string) float64 {
		if t, ok := phases[phase]; ok {
			return t.Sub(start).Seconds()
		}
		return -1
	}
	retired, deleted, end := at("delete"), deletedAt.Sub(start).Seconds(), time.Since(start).Seconds()
	if retired < 0 {
		return // nothing was re-wrapped here: only a deletion resumed
	}
	rate := ""
	if deleted > 0 {
		rate = fmt.Sprintf(" (%.0f/s)", float64(done)/deleted)
	}
	fmt.Fprintf(c.stdout, "timing: %d data keys re-wrapped and retired in %.2f s, old prefix deleted at %.2f s%s, space freed at %.2f s\n",
		done, retired, deleted, rate, end)
}

// rotationProgress returns a progress callback: a bar on a terminal, a line
// per phase otherwise.
func rotationProgress(c *cli) (func(rotation.Progress), func()) {
	var last string
	if !isTerminal(c.stderr) {
		return func(p rotation.Progress) {
			if p.Phase != last {
				last = p.Phase
				fmt.Fprintf(c.stderr, "rotation: %s (%d/%d data keys re-wrapped)\n", p.Phase, p.Done, p.Total)
			}
		}, func() {}
	}
	bar := progressbar.NewOptions64(-1, progressbar.OptionSetWriter(c.stderr), progressbar.OptionSetDescription("re-wrapping data keys"),
		progressbar.OptionShowCount(), progressbar.OptionShowIts(), progressbar.OptionSetItsString("keys"),
		progressbar.OptionThrottle(100*time.Millisecond), progressbar.OptionClearOnFinish())
	return func(p rotation.Progress) {
			if p.Total > 0 && bar.GetMax64() != p.Total {
				bar.ChangeMax64(p.Total)
			}
			bar.Set64(p.Done)
			if p.Phase != last {
				last = p.Phase
				bar.Describe(p.Phase)
			}
		}, func() {
			bar.Finish()
			io.WriteString(c.stderr, "\n")
		}
}

// resumeRotation finishes an unfinished rotation in the background when
// this process holds the key it rotated to; wait returns once that is done
// (or was not needed). A rotation that another live process runs is left
// to it. Failures are reported, never fatal: the next process resumes.
func resumeRotation(ctx context.Context, c *cli, kc *keys.Keychain) (wait func()) {
	rot := rotation.New(kc, rotation.Options{})
	unfinished, err := rot.Unfinished(ctx)
	if err != nil || !unfinished || !kc.Holds(kc.Keyring().Current) {
		return func() {}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		err := rot.Resume(ctx, nil)
		switch {
		case err == nil:
			fmt.Fprintln(c.stderr, "finished an interrupted key rotation")
		case errors.Is(err, lease.ErrBusy):
		default:
			fmt.Fprintf(c.stderr, "warning: resuming the key rotation: %v\n", err)
		}
	}()
	return func() { <-done }
}
