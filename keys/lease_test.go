package keys

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/snapcrypt/snapcrypt/repo/object"
	"github.com/snapcrypt/snapcrypt/repo/store/mem"
)

type leaseVector struct {
	Name   string `json:"name"`
	Expect string `json:"expect"` // "ok" or "corrupted"
	Lease  string `json:"lease"`
}

const leaseVectorFile = "testdata/lease-vectors.json"

func makeLeaseVectors() []leaseVector {
	l := Lease{Holder: strings.Repeat("ab", 16), Host: "backup1", PID: 4242, Expires: time.Date(2025, 6, 1, 12, 0, 30, 0, time.UTC)}
	ok := string(l.marshal())
	return []leaseVector{
		{"ok", "ok", ok},
		{"unknown-field", "corrupted", strings.Replace(ok, `"host"`, `"colour": 1, "host"`, 1)},
		{"trailing", "corrupted", ok + "{}"},
		{"short-holder", "corrupted", strings.Replace(ok, strings.Repeat("ab", 16), "ab", 1)},
		{"no-expiry", "corrupted", `{"holder":"` + strings.Repeat("ab", 16) + `","host":"h","pid":1}`},
		{"negative-pid", "corrupted", strings.Replace(ok, "4242", "-1", 1)},
		{"not-json", "corrupted", "lease"},
	}
}

func TestLeaseVectors(t *testing.T) {
	gen := makeLeaseVectors()
	if *update {
		b, _ := json.MarshalIndent(gen, "", "  ")
		if err := os.WriteFile(leaseVectorFile, append(b, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	vs := loadLeaseVectors(t)
	if !reflect.DeepEqual(vs, gen) {
		t.Error("stored lease vectors differ from what the code produces now (run with -update)")
	}
	for _, v := range vs {
		l, err := ParseLease([]byte(v.Lease))
		got := "ok"
		if err != nil {
			if !errors.Is(err, object.ErrCorrupt) {
				t.Errorf("%s: error %v does not wrap object.ErrCorrupt", v.Name, err)
			}
			got = "corrupted"
		}
		if got != v.Expect {
			t.Errorf("%s: got %s (%v), expect %s", v.Name, got, err, v.Expect)
		}
		if err == nil && string(l.marshal()) != v.Lease {
			t.Errorf("%s: marshal does not give back the stored bytes", v.Name)
		}
	}
}

func loadLeaseVectors(t testing.TB) []leaseVector {
	t.Helper()
	b, err := os.ReadFile(leaseVectorFile)
	if err != nil {
		t.Fatalf("%v (run go test -run TestLeaseVectors -update)", err)
	}
	var vs []leaseVector
	if err := json.Unmarshal(b, &vs); err != nil || len(vs) == 0 {
		t.Fatalf("lease vectors: %v, %d loaded", err, len(vs))
	}
	return vs
}

func FuzzParseLease(f *testing.F) {
	for _, v := range loadLeaseVectors(f) {
		f.Add([]byte(v.Lease))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		l, err := ParseLease(b)
		if err != nil {
			return
		}
		l2, err := ParseLease(l.marshal())
		if err != nil || !l2.Expires.Equal(l.Expires) || l2.Holder != l.Holder || l2.Host != l.Host || l2.PID != l.PID {
			t.Fatalf("parse/marshal/parse changed the lease: %v", err)
		}
	})
}

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
		s.Generations[0].DEKs != 10 || !s.Generations[0].Held || s.Generations[0].State != StateCurrent || s.Generations[0].KDF != KDFRaw {
		t.Fatalf("status before rotation: %+v", s)
	}
	var during Status
	setCrash(k, func(p string) error {
		if p == PointBeforeRetire {
			during, err = k.Status(ctx)
		}
		return nil
	})
	if err := k.StartRotation(ctx, newKey, testOpts); err != nil {
		t.Fatal(err)
	}
	if err := k.RunRotation(ctx, nil); err != nil {
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
	if s.Unfinished || s.Lease != nil || s.Progress != nil || s.Generations[0].State != StateRetired || s.Generations[0].DEKs != 0 || s.Generations[1].DEKs != 10 {
		t.Fatalf("status after rotation: %+v", s)
	}
}

func TestLeaseTakeover(t *testing.T) {
	ctx := context.Background()
	st := mem.New()
	clock := newFakeClock()
	k1 := mustInit(t, st, rawKey(t, 1))
	setClock(k1, clock.Now)
	k2 := openWith(t, st, clock, rawKey(t, 1))
	opts := RotateOptions{LeaseDuration: time.Hour, Host: "one"}.withDefaults()
	h1, err := k1.takeLease(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer h1.abandon()
	if err := h1.renew(ctx); err != nil {
		t.Fatalf("renew: %v", err)
	}
	if _, err := k2.takeLease(ctx, opts); !errors.Is(err, ErrBusy) {
		t.Fatalf("take a live lease: %v", err)
	}
	clock.advance(2 * time.Hour)
	h2, err := k2.takeLease(ctx, opts)
	if err != nil {
		t.Fatalf("take an expired lease: %v", err)
	}
	defer h2.abandon()
	if err := h1.renew(ctx); err == nil || !strings.Contains(err.Error(), "taken over") {
		t.Fatalf("renewing a lease taken over: %v", err)
	}
	if err := h2.release(ctx); err != nil {
		t.Fatal(err)
	}
	if n, _ := k1.count(ctx, leasePrefix, 0); n != 0 {
		t.Fatalf("%d lease objects after release", n)
	}
	// A damaged lease object does not block rotation forever.
	st.Create(ctx, leaseName(7), []byte("garbage"))
	h3, err := k1.takeLease(ctx, opts)
	if err != nil {
		t.Fatalf("take over a damaged lease: %v", err)
	}
	h3.release(ctx)
}

// TestLeaseRace: of several processes creating the same lease sequence
// number at once exactly one holds the lease; the others are told it is
// busy. (A failed Create once counted as taken.)
func TestLeaseRace(t *testing.T) {
	ctx := context.Background()
	for _, prefix := range []string{leasePrefix, shardPrefix(strings.Repeat("cd", 16), 7)} {
		st := mem.New()
		clock := newFakeClock()
		k := mustInit(t, st, rawKey(t, 1))
		setClock(k, clock.Now)
		opts := RotateOptions{LeaseDuration: time.Hour, Host: "racer"}.withDefaults()
		const n = 8
		held := make([]*heldLease, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				held[i], errs[i] = k.createLeaseAt(ctx, prefix, "test lease", 0, opts)
			}()
		}
		wg.Wait()
		won := 0
		for i := range n {
			switch {
			case errs[i] == nil:
				won++
				held[i].abandon()
			case !errors.Is(errs[i], ErrBusy):
				t.Fatalf("%s: racer %d: %v", prefix, i, errs[i])
			}
		}
		if won != 1 {
			t.Fatalf("%s: %d racers hold the lease", prefix, won)
		}
	}
}
