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
	"github.com/snapcrypt/snapcrypt/repo"
)

func init() { register(rotateCommand()) }

func rotateCommand() *command {
	r := &rotateRun{}
	return &command{
		name: "rotate",
		short: "Rotate the repository's master key to --new-key: switch new writes at once, re-wrap the data keys, " +
			"retire the old key. With no --new-key, finish an interrupted rotation.",
		setup: r.flags,
		run:   r.run,
	}
}

// rotateRun is one run of the rotate command: its flags, then its steps
// (load the new key, switch or find the unfinished rotation, re-wrap and
// retire, free the old objects' space, report).
type rotateRun struct {
	newKey  string
	noWait  bool
	workers int
	lease   time.Duration
}

func (r *rotateRun) flags(fs *pflag.FlagSet, c *cli) {
	fs.StringVar(&r.newKey, "new-key", "", "the new key spec (file:PATH, passfile:PATH, env:NAME or a path)")
	fs.BoolVar(&r.noWait, "no-wait", false, "return once the switch is durable; the re-wrap is left to the next process that holds the new key")
	fs.IntVar(&r.workers, "workers", keys.DefaultWorkers, "data keys re-wrapped in parallel")
	fs.DurationVar(&r.lease, "lease", keys.DefaultLeaseDuration, "rotation lease lifetime: how long a killed rotator blocks others")
}

func (r *rotateRun) run(ctx context.Context, c *cli, args []string) error {
	if len(args) != 0 {
		return usagef("rotate takes no arguments")
	}
	m, err := r.newMaterial()
	if err != nil {
		return err
	}
	kc, err := c.openKeys(ctx)
	if err != nil {
		return err
	}
	start := time.Now()
	opts := keys.RotateOptions{Workers: r.workers, LeaseDuration: r.lease}
	if more, err := r.begin(ctx, c, kc, m, opts); err != nil || !more {
		return err
	}
	phases, done, err := rewrap(ctx, c, kc)
	if err != nil {
		return fmt.Errorf("%w (the rotation is recorded in the repository: 'snapcrypt rotate' with the new key resumes it)", err)
	}
	deleted := time.Now()
	// The rotation is finished; give back the old objects' space.
	if err := kc.Purge(ctx, nil); err != nil {
		fmt.Fprintf(c.stderr, "warning: %v (the next rotation or mount frees it)\n", err)
	}
	if err := reportRotation(ctx, c, kc); err != nil {
		return err
	}
	printTiming(c, start, phases, deleted, done)
	return nil
}

// newMaterial loads the key of --new-key; nil without it.
func (r *rotateRun) newMaterial() (*keys.Material, error) {
	if r.newKey == "" {
		return nil, nil
	}
	spec, err := keys.ParseSpec(r.newKey)
	if err != nil {
		return nil, err
	}
	return spec.Load()
}

// begin switches to the new key m, or, without one, finds the unfinished
// rotation to finish. It reports whether there is a re-wrap to run here:
// not with --no-wait, nor when no rotation is unfinished.
func (r *rotateRun) begin(ctx context.Context, c *cli, kc *keys.Keychain, m *keys.Material, opts keys.RotateOptions) (more bool, err error) {
	if m == nil {
		kc.SetRotateOptions(opts)
		unfinished, err := kc.Unfinished(ctx)
		if err != nil {
			return false, err
		}
		if !unfinished {
			fmt.Fprintln(c.stderr, "no rotation to finish; give --new-key to rotate")
		}
		return unfinished, nil
	}
	if err := kc.StartRotation(ctx, m, opts); err != nil {
		if errors.Is(err, keys.ErrRotationUnfinished) {
			err = fmt.Errorf("%w (run 'snapcrypt rotate' without --new-key, holding the key it rotated to)", err)
		}
		return false, err
	}
	kr := kc.Keyring()
	fmt.Fprintf(c.stderr, "switched: new data keys are wrapped under generation %s (keyring epoch %d)\n", kr.Current, kr.Epoch)
	if r.noWait {
		return false, kc.Close(context.WithoutCancel(ctx))
	}
	return true, nil
}

// rewrap runs the rotation to its end (re-wrap, retire, delete the old
// prefix), showing progress. It returns when each phase began and how many
// data keys were re-wrapped.
func rewrap(ctx context.Context, c *cli, kc *keys.Keychain) (phases map[string]time.Time, done int64, err error) {
	progress, finish := rotationProgress(c)
	phases = map[string]time.Time{}
	err = kc.RunRotation(ctx, func(p keys.Progress) {
		if _, ok := phases[p.Phase]; !ok {
			phases[p.Phase] = time.Now()
		}
		done = p.Done
		progress(p)
	})
	finish()
	return phases, done, err
}

// reportRotation prints the current generation and the retired ones.
func reportRotation(ctx context.Context, c *cli, kc *keys.Keychain) error {
	st, err := kc.Status(ctx)
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
	return nil
}

// openKeys opens only the repository's keys: all a rotation touches (no
// index, no snapshot is read). The content-id key must open, as for
// repo.Open, so that a key that matches a generation but cannot unwrap the
// repository's secrets is refused before anything changes.
func (c *cli) openKeys(ctx context.Context) (*keys.Keychain, error) {
	st, ms, err := c.storeAndKeys(ctx)
	if err != nil {
		return nil, err
	}
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
func rotationProgress(c *cli) (func(keys.Progress), func()) {
	var last string
	if !isTerminal(c.stderr) {
		return func(p keys.Progress) {
			if p.Phase != last {
				last = p.Phase
				fmt.Fprintf(c.stderr, "rotation: %s (%d/%d data keys re-wrapped)\n", p.Phase, p.Done, p.Total)
			}
		}, func() {}
	}
	bar := progressbar.NewOptions64(-1, progressbar.OptionSetWriter(c.stderr), progressbar.OptionSetDescription("re-wrapping data keys"),
		progressbar.OptionShowCount(), progressbar.OptionShowIts(), progressbar.OptionSetItsString("keys"),
		progressbar.OptionThrottle(100*time.Millisecond), progressbar.OptionClearOnFinish())
	return func(p keys.Progress) {
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
	unfinished, err := kc.Unfinished(ctx)
	if err != nil || !unfinished || !kc.Holds(kc.Keyring().Current) {
		return func() {}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		err := kc.Resume(ctx, nil)
		switch {
		case err == nil:
			fmt.Fprintln(c.stderr, "finished an interrupted key rotation")
		case errors.Is(err, keys.ErrBusy):
		default:
			fmt.Fprintf(c.stderr, "warning: resuming the key rotation: %v\n", err)
		}
	}()
	return func() { <-done }
}
