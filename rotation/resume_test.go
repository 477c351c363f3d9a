package rotation

import (
	"context"
	"errors"
	"testing"

	"github.com/snapcrypt/snapcrypt/keys"
	"github.com/snapcrypt/snapcrypt/lease"
	"github.com/snapcrypt/snapcrypt/repo/store/mem"
)

// TestRerunResumes: a rotation cut short after the switch (at every later
// crash point) is finished by running the same rotation again, Start with
// the same new key, in a fresh process (given only the old key while that
// is not retired yet): it resumes instead of failing with ErrAlreadyCurrent, and the old
// generation ends retired.
func TestRerunResumes(t *testing.T) {
	ctx := context.Background()
	for _, point := range []string{PointSwitch, PointRewrap, PointBeforeRetire, PointRetired, PointDelete} {
		t.Run(point, func(t *testing.T) {
			st := mem.New()
			clock := newFakeClock()
			oldKey, newKey := rawKey(t, 1), passKey(t, "new passphrase")
			k := mustInit(t, st, oldKey)
			setClock(k, clock.Now)
			deks := makeDEKs(t, k, 30)
			oldGen := k.Keyring().Current
			crashAt(k, point)
			err := startAndRun(ctx, k, newKey, testOpts)
			if !errors.Is(err, errCrash) {
				t.Fatalf("first run: %v, want the crash at %s", err, point)
			}
			// The same command again, while the dead process's lease is
			// live: busy, naming it.
			// It opens the repository with the keys it is given (the
			// old one, and the new one too: it cannot open with the
			// old key alone once that is retired).
			ms := []*keys.Material{oldKey}
			if point == PointRetired || point == PointDelete {
				ms = append(ms, newKey)
			}
			again := openWith(t, st, clock, ms...)
			if _, err := again.Start(ctx, newKey); !errors.Is(err, lease.ErrBusy) {
				t.Fatalf("rerun while the lease is live: %v", err)
			}
			// Once it lapses: resumed, and finished by Run.
			clock.advance(2 * testOpts.LeaseDuration)
			resumed, err := again.Start(ctx, newKey)
			if err != nil || !resumed {
				t.Fatalf("rerun: resumed %v, %v", resumed, err)
			}
			if err := again.Run(ctx, nil); err != nil {
				t.Fatal(err)
			}
			checkFinished(t, st, clock, deks, newKey)
			r := again.Keyring()
			if g := r.Generation(oldGen); g == nil || g.State != keys.StateRetired || len(r.Generations) != 2 {
				t.Fatalf("after the rerun: %+v", r.Generations)
			}
			// Nothing left to resume: the same command is refused now.
			if _, err := again.Start(ctx, newKey); !errors.Is(err, ErrAlreadyCurrent) {
				t.Fatalf("rerun after the rotation finished: %v", err)
			}
		})
	}
}
