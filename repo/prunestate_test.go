package repo

import (
	"context"
	"testing"

	"github.com/snapcrypt/snapcrypt/repo/store/mem"
)

// TestPruneState: while a writer is in flight, a prune with NoWait leaves
// its mark; PruneState shows the mark (when, by whom, what it will free)
// and the writer's lease, and writes nothing. Once the writer is done and
// a prune finished the mark, it shows neither.
func TestPruneState(t *testing.T) {
	ctx := context.Background()
	st := mem.New()
	f := newPruneFixture(t, st, 2)
	f.forget(0)
	w := reopen(t, st, f.m)
	g, err := w.beginWrite(ctx, "writer-host")
	if err != nil {
		t.Fatal(err)
	}
	o := testPrune()
	o.NoWait = true
	o.Host = "prune-host"
	res, err := f.r.Prune(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Deferred) != 1 {
		t.Fatalf("the prune deferred for %d writers, want 1", len(res.Deferred))
	}
	objects := countObjects(t, st, "")
	ps, err := reopen(t, st, f.m).PruneState(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n := countObjects(t, st, ""); n != objects {
		t.Errorf("PruneState changed the store: %d objects, then %d", objects, n)
	}
	if len(ps.Pending) != 1 {
		t.Fatalf("pending prunes %+v, want one", ps.Pending)
	}
	p := ps.Pending[0]
	if p.Host != "prune-host" || p.PID == 0 || p.Time.IsZero() || p.Packs == 0 || p.Bytes <= 0 || len(p.ID) != 64 {
		t.Errorf("pending prune %+v", p)
	}
	if len(ps.Writers) != 1 || ps.Writers[0].Host != "writer-host" || ps.Writers[0].PID == 0 || ps.Writers[0].Expires.IsZero() {
		t.Errorf("writers %+v, want the writer's lease", ps.Writers)
	}

	g.release(ctx)
	if _, err := f.r.Prune(ctx, testPrune()); err != nil {
		t.Fatal(err)
	}
	ps, err = f.r.PruneState(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(ps.Pending) != 0 || len(ps.Writers) != 0 {
		t.Errorf("after the prune finished: %+v", ps)
	}
}
