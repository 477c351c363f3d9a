package rotation

import (
	"context"
	"testing"

	"github.com/snapcrypt/snapcrypt/keys"
	"github.com/snapcrypt/snapcrypt/repo/store/mem"
)

func TestStatus(t *testing.T) {
	ctx := context.Background()
	st := mem.New()
	clock := newFakeClock()
	oldKey, newKey := rawKey(t, 1), rawKey(t, 2)
	k := mustInit(t, st, oldKey)
	setClock(k, clock.Now)
	makeDEKs(t, k, 9)
	s, err := k.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if s.Unfinished || s.Rotation != nil || s.Lease != nil || s.Progress != nil || len(s.Generations) != 1 ||
		s.Generations[0].DEKs != 10 || !s.Generations[0].Held || s.Generations[0].State != keys.StateCurrent || s.Generations[0].KDF != keys.KDFRaw {
		t.Fatalf("status before rotation: %+v", s)
	}
	var during Status
	setCrash(k, func(p string) error {
		if p == PointBeforeRetire {
			during, err = k.Status(ctx)
		}
		return nil
	})
	if err := k.start(ctx, newKey, testOpts); err != nil {
		t.Fatal(err)
	}
	if err := k.Run(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	if !during.Unfinished || during.Rotation == nil || during.Lease == nil || during.Progress == nil ||
		during.Progress.Done != 10 || during.Progress.Total != 10 || len(during.Generations) != 2 ||
		during.Generations[0].DEKs != 10 || during.Generations[1].DEKs != 10 {
		t.Fatalf("status during rotation: %+v %+v", during, during.Progress)
	}
	s, _ = k.Status(ctx)
	if s.Unfinished || s.Lease != nil || s.Progress != nil || s.Generations[0].State != keys.StateRetired || s.Generations[0].DEKs != 0 || s.Generations[1].DEKs != 10 {
		t.Fatalf("status after rotation: %+v", s)
	}
}
