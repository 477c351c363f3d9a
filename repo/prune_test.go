package repo

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/snapcrypt/snapcrypt/keys"
	"github.com/snapcrypt/snapcrypt/lease"
	"github.com/snapcrypt/snapcrypt/repo/object"
	"github.com/snapcrypt/snapcrypt/repo/store"
	"github.com/snapcrypt/snapcrypt/repo/store/faults"
	"github.com/snapcrypt/snapcrypt/repo/store/mem"
	"github.com/snapcrypt/snapcrypt/rotation"
)

// pruneFixture is a repository with snapshots of changing trees: every
// snapshot has a file shared by all and a file of its own.
type pruneFixture struct {
	t     *testing.T
	st    store.Store
	r     *Repository
	m     *keys.Material
	src   string
	snaps []*Snapshot
	trees map[ObjectID]map[string][]byte // snapshot -> file contents
}

func randBytes(t *testing.T, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func newPruneFixture(t *testing.T, st store.Store, n int) *pruneFixture {
	t.Helper()
	r, m := newTestRepo(t, st)
	f := &pruneFixture{t: t, st: st, r: r, m: m, src: t.TempDir(), trees: map[ObjectID]map[string][]byte{}}
	if err := os.WriteFile(filepath.Join(f.src, "shared"), randBytes(t, 300<<10), 0o644); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		f.snapshot(fmt.Sprintf("own%d", i), randBytes(t, 200<<10))
	}
	return f
}

// snapshot replaces the file of the last snapshot by name (content) and
// takes a snapshot with r.
func (f *pruneFixture) snapshot(name string, content []byte) *Snapshot {
	f.t.Helper()
	return f.snapshotWith(f.r, name, content)
}

func (f *pruneFixture) snapshotWith(r *Repository, name string, content []byte) *Snapshot {
	f.t.Helper()
	s, err := f.trySnapshot(r, name, content)
	if err != nil {
		f.t.Fatal(err)
	}
	return s
}

func (f *pruneFixture) trySnapshot(r *Repository, name string, content []byte) (*Snapshot, error) {
	ents, _ := os.ReadDir(f.src)
	for _, e := range ents {
		if e.Name() != "shared" {
			os.Remove(filepath.Join(f.src, e.Name()))
		}
	}
	if err := os.WriteFile(filepath.Join(f.src, name), content, 0o644); err != nil {
		return nil, err
	}
	shared, _ := os.ReadFile(filepath.Join(f.src, "shared"))
	res, err := r.TakeSnapshot(context.Background(), []string{f.src}, SnapshotOptions{Host: "h"})
	if err != nil {
		return nil, err
	}
	f.snaps = append(f.snaps, res.Snapshot)
	f.trees[res.Snapshot.ID] = map[string][]byte{"shared": shared, name: content}
	return res.Snapshot, nil
}

// forget forgets the snapshots of the given indexes in f.snaps.
func (f *pruneFixture) forget(is ...int) {
	f.t.Helper()
	for _, i := range is {
		if err := f.r.ForgetSnapshot(context.Background(), f.snaps[i].ID); err != nil {
			f.t.Fatal(err)
		}
		delete(f.trees, f.snaps[i].ID)
	}
}

// verify checks, with a fresh Repository (another process), that every
// snapshot left restores byte for byte and that check --read-data finds
// no problem; it returns the check.
func (f *pruneFixture) verify() *CheckResult {
	f.t.Helper()
	ctx := context.Background()
	r := reopen(f.t, f.st, f.m)
	snaps, err := r.Snapshots(ctx)
	if err != nil {
		f.t.Fatal(err)
	}
	if len(snaps) != len(f.trees) {
		f.t.Fatalf("%d snapshots, want %d", len(snaps), len(f.trees))
	}
	for _, s := range snaps {
		want, ok := f.trees[s.ID]
		if !ok {
			f.t.Fatalf("snapshot %s should be gone", s.ShortID())
		}
		dir := f.t.TempDir()
		if _, err := r.Restore(ctx, s, dir, RestoreOptions{}); err != nil {
			f.t.Fatalf("restoring %s: %v", s.ShortID(), err)
		}
		ents, _ := os.ReadDir(dir)
		if len(ents) != len(want) {
			f.t.Fatalf("snapshot %s restores %d files, want %d", s.ShortID(), len(ents), len(want))
		}
		for name, content := range want {
			got, err := os.ReadFile(filepath.Join(dir, name))
			if err != nil || !bytes.Equal(got, content) {
				f.t.Fatalf("snapshot %s: %s differs after restore (%v)", s.ShortID(), name, err)
			}
		}
	}
	c, err := r.Check(ctx, CheckOptions{ReadData: true})
	if err != nil {
		f.t.Fatal(err)
	}
	if len(c.Problems) > 0 {
		f.t.Fatalf("check: %v", c.Problems)
	}
	return c
}

func storedBytes(t *testing.T, st store.Store, prefix string) (n int64) {
	t.Helper()
	if err := st.List(context.Background(), prefix, func(fi store.Info) error { n += fi.Size; return nil }); err != nil {
		t.Fatal(err)
	}
	return n
}

func countObjects(t *testing.T, st store.Store, prefix string) (n int) {
	t.Helper()
	if err := st.List(context.Background(), prefix, func(store.Info) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	return n
}

// testPrune are the options of tests: waits for writers, with no clock
// skew to wait out.
func testPrune() PruneOptions {
	return PruneOptions{Skew: time.Millisecond, Poll: 5 * time.Millisecond}
}

// TestPruneForget: after forgetting two of three snapshots, prune frees
// their data: the store shrinks, the snapshot left restores and checks
// clean with no unused space left, the DEKs of the deleted data are gone
// (a stray copy of a deleted pack no longer decrypts), and no mark or
// lease is left behind.
func TestPruneForget(t *testing.T) {
	ctx := context.Background()
	st := mem.New()
	f := newPruneFixture(t, st, 3)
	// A pack of the first snapshot, kept aside as a stray copy.
	var stray string
	var strayBytes []byte
	first, err := f.r.headerDEK(ctx, snapshotName(f.snaps[0].ID))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range f.r.Index().Packs() {
		if h, _ := object.ParseHeader(p.Header); h.DEKID == first {
			stray = packName(p.ID)
			strayBytes, _ = st.Get(ctx, stray)
		}
	}
	if stray == "" {
		t.Fatal("no pack of the first snapshot")
	}
	f.forget(0, 1)
	before := storedBytes(t, st, "data/")
	res, err := f.r.Prune(ctx, testPrune())
	if err != nil {
		t.Fatal(err)
	}
	after := storedBytes(t, st, "data/")
	if after > before-2*(200<<10) {
		t.Errorf("packs: %d bytes before prune, %d after: the two forgotten files' 400 KiB not freed", before, after)
	}
	if res.FreedBytes == 0 || res.DeletedPacks == 0 || res.DeletedDEKs == 0 {
		t.Errorf("prune result %+v: nothing deleted", res)
	}
	c := f.verify()
	if c.UnindexedPacks != 0 || c.UnreachableBlobs != 0 {
		t.Errorf("after prune: %d unindexed packs, %d unreachable blobs", c.UnindexedPacks, c.UnreachableBlobs)
	}
	for _, p := range []string{markPrefix, WriterLeasePrefix, PruneLeasePrefix} {
		if n := countObjects(t, st, p); n != 0 {
			t.Errorf("%d objects left below %s", n, p)
		}
	}
	// The stray copy: its DEK is gone, so it reads as nothing.
	if err := st.Put(ctx, stray, strayBytes); err != nil {
		t.Fatal(err)
	}
	h, _ := object.ParseHeader(strayBytes)
	r2 := reopen(t, st, f.m)
	if _, err := r2.Keys().DEK(ctx, h.DEKID); err == nil {
		t.Errorf("the DEK of deleted pack %s still unwraps", stray)
	}
	// A second prune deletes the stray pack as unindexed and frees it.
	res, err = r2.Prune(ctx, testPrune())
	if err != nil {
		t.Fatal(err)
	}
	if res.UnindexedPacks != 1 || res.DeletedPacks != 1 {
		t.Errorf("second prune: %+v, want the stray pack deleted", res)
	}
	f.verify()
}

// TestPruneDryRun: a dry run says what prune would free and changes
// nothing.
func TestPruneDryRun(t *testing.T) {
	ctx := context.Background()
	st := mem.New()
	f := newPruneFixture(t, st, 2)
	f.forget(0)
	before := storeNames(t, st)
	o := testPrune()
	o.DryRun = true
	res, err := f.r.Prune(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	if res.CandidateBytes == 0 || res.RepackedPacks+res.UnusedPacks == 0 {
		t.Errorf("dry run %+v: nothing to free", res)
	}
	if after := storeNames(t, st); strings.Join(after, " ") != strings.Join(before, " ") {
		t.Errorf("a dry run changed the store:\nbefore %v\nafter  %v", before, after)
	}
}

// TestPruneStopsOnUnreadable: a manifest that cannot be read stops the
// prune before it deletes anything.
func TestPruneStopsOnUnreadable(t *testing.T) {
	ctx := context.Background()
	st := mem.New()
	f := newPruneFixture(t, st, 2)
	f.forget(0)
	name := snapshotName(f.snaps[1].ID)
	b, _ := st.Get(ctx, name)
	b[len(b)-1] ^= 1
	st.Put(ctx, name, b)
	before := storeNames(t, st)
	if _, err := reopen(t, st, f.m).Prune(ctx, testPrune()); !errors.Is(err, errPrune) {
		t.Fatalf("prune with a damaged manifest: %v, want it stopped", err)
	}
	if after := storeNames(t, st); strings.Join(after, " ") != strings.Join(before, " ") {
		t.Errorf("a stopped prune changed the store")
	}
}

// TestPruneCrashPoints stops a prune at each step (a hook returning an
// error, as a kill would) and at failing store calls inside steps; every
// snapshot left still reads and checks clean, and the next prune finishes
// the job (no unused space left).
func TestPruneCrashPoints(t *testing.T) {
	ctx := context.Background()
	type point struct {
		name string
		step string
		rule *faults.Rule
	}
	points := []point{
		{name: "planned", step: "planned"},
		{name: "repacked", step: "repacked"},
		{name: "marked", step: "marked"},
		{name: "waited", step: "waited"},
		{name: "rechecked", step: "rechecked"},
		{name: "dropped", step: "dropped"},
		{name: "deleted", step: "deleted"},
		{name: "deks", step: "deks"},
		{name: "new pack written, index not", rule: &faults.Rule{Ops: []faults.Op{faults.Create}, Prefix: "index/", Times: 1}},
		{name: "mark not written", rule: &faults.Rule{Ops: []faults.Op{faults.Create}, Prefix: "prune/", Times: 1}},
		{name: "some old indexes deleted", rule: &faults.Rule{Ops: []faults.Op{faults.Delete}, Prefix: "index/", Every: 2, Times: 1}},
		{name: "some packs deleted", rule: &faults.Rule{Ops: []faults.Op{faults.Delete}, Prefix: "data/", Every: 2, Times: 1}},
		{name: "some DEKs deleted", rule: &faults.Rule{Ops: []faults.Op{faults.Delete}, Prefix: "deks/", Every: 2, Times: 1}},
		{name: "mark not deleted", rule: &faults.Rule{Ops: []faults.Op{faults.Delete}, Prefix: "prune/", Times: 1}},
	}
	for _, pt := range points {
		t.Run(pt.name, func(t *testing.T) {
			fs := faults.New(mem.New())
			f := newPruneFixture(t, fs, 4)
			f.forget(0, 2)
			o := testPrune()
			o.MaxUnused = 0
			if pt.step != "" {
				f.r.hooks.pruneStep = func(step string) error {
					if step == pt.step {
						return errors.New("killed")
					}
					return nil
				}
			} else {
				fs.Add(*pt.rule)
			}
			if _, err := f.r.Prune(ctx, o); err == nil {
				t.Fatal("the prune was not stopped")
			}
			fs.Reset()
			f.verify()
			if _, err := reopen(t, fs, f.m).Prune(ctx, o); err != nil {
				t.Fatal(err)
			}
			// A third prune has nothing left to do: it changes nothing
			// (a prune reaches a fixed point).
			before := storeNames(t, fs)
			res, err := reopen(t, fs, f.m).Prune(ctx, o)
			if err != nil {
				t.Fatal(err)
			}
			if after := storeNames(t, fs); res.Mark != "" || res.DeletedPacks != 0 || res.DeletedDEKs != 0 || strings.Join(after, " ") != strings.Join(before, " ") {
				t.Errorf("a third prune still changes the repository: %+v", res)
			}
			c := f.verify()
			if c.UnindexedPacks != 0 || c.UnreachableBlobs != 0 {
				t.Errorf("after the next prunes: %d unindexed packs, %d unreachable blobs", c.UnindexedPacks, c.UnreachableBlobs)
			}
			if n := countObjects(t, fs, markPrefix); n != 0 {
				t.Errorf("%d marks left", n)
			}
		})
	}
}

// TestPruneWaitsForWriter: a snapshot that loaded the index before the
// mark and deduplicated against a pack prune is about to delete (the
// data of a forgotten snapshot) commits while prune waits at step 7;
// prune's re-check keeps the pack, and the snapshot reads whole.
func TestPruneWaitsForWriter(t *testing.T) {
	ctx := context.Background()
	st := mem.New()
	f := newPruneFixture(t, st, 2)
	content := randBytes(t, 200<<10)
	f.snapshot("again", content)
	f.forget(2) // its file's chunks are now in an unused pack
	b := reopen(t, st, f.m)
	ready, commit := make(chan struct{}), make(chan struct{})
	b.hooks.beforeManifest = func() { close(ready); <-commit }
	done := make(chan error)
	go func() { _, err := f.trySnapshot(b, "again", content); done <- err }()
	<-ready
	var once sync.Once
	o := testPrune()
	o.Progress = func(p PruneProgress) {
		if p.Step == "wait" {
			once.Do(func() { close(commit) }) // commits while prune waits for it
		}
	}
	res, err := f.r.Prune(ctx, o)
	once.Do(func() { close(commit) }) // a prune that did not wait: too late
	if err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if res.Rescued == 0 {
		t.Errorf("prune %+v kept no candidate for the snapshot committed meanwhile", res)
	}
	f.verify()
}

// TestPruneWriterAfterListing: a snapshot that takes its lease after
// prune listed the writer leases (step 7) and commits before the packs
// are deleted saw the mark, so it did not reuse the candidate pack that
// holds its content: it wrote the content again.
func TestPruneWriterAfterListing(t *testing.T) {
	ctx := context.Background()
	st := mem.New()
	f := newPruneFixture(t, st, 2)
	content := randBytes(t, 200<<10)
	f.snapshot("again", content)
	f.forget(2)
	b := reopen(t, st, f.m) // its index was loaded before the mark
	f.r.hooks.pruneStep = func(step string) error {
		if step == "rechecked" {
			_, err := f.trySnapshot(b, "again", content)
			return err
		}
		return nil
	}
	if _, err := f.r.Prune(ctx, testPrune()); err != nil {
		t.Fatal(err)
	}
	f.verify()
}

// TestPruneLapsedWriter: a snapshot whose lease lapsed (its process was
// paused past the expiry) while a prune deleted the pack it reused fails
// at W5 and writes no manifest; the repository stays clean.
func TestPruneLapsedWriter(t *testing.T) {
	ctx := context.Background()
	st := mem.New()
	f := newPruneFixture(t, st, 2)
	content := randBytes(t, 200<<10)
	f.snapshot("again", content)
	f.forget(2)
	b, err := Open(ctx, st, Options{WriterLease: 30 * time.Millisecond}, f.m)
	if err != nil {
		t.Fatal(err)
	}
	var held *lease.Held
	b.hooks.writerLeaseTaken = func(h *lease.Held) { held = h }
	ready, resume := make(chan struct{}), make(chan struct{})
	b.hooks.beforeManifest = func() {
		held.Abandon() // paused: no renewal
		time.Sleep(60 * time.Millisecond)
		close(ready)
		<-resume
	}
	done := make(chan error)
	go func() { _, err := f.trySnapshot(b, "again", content); done <- err }()
	<-ready
	if _, err := f.r.Prune(ctx, testPrune()); err != nil {
		t.Fatal(err)
	}
	close(resume)
	if err := <-done; !errors.Is(err, ErrLeaseLapsed) {
		t.Fatalf("snapshot after its lease lapsed: %v, want ErrLeaseLapsed", err)
	}
	f.verify()
}

// TestPruneBusy: a second prune while one holds the lease is refused,
// naming the holder.
func TestPruneBusy(t *testing.T) {
	ctx := context.Background()
	st := mem.New()
	f := newPruneFixture(t, st, 2)
	f.forget(0)
	var second error
	f.r.hooks.pruneStep = func(step string) error {
		if step == "marked" {
			o := testPrune()
			o.Host = "other"
			_, second = reopen(t, st, f.m).Prune(ctx, o)
		}
		return nil
	}
	o := testPrune()
	o.Host = "first"
	if _, err := f.r.Prune(ctx, o); err != nil {
		t.Fatal(err)
	}
	var busy *lease.BusyError
	if !errors.As(second, &busy) || busy.Host != "first" {
		t.Fatalf("second prune: %v, want busy naming host first", second)
	}
	f.verify()
}

// TestPruneDuplicates: a blob stored twice (as concurrent snapshots used
// to) is kept once after a prune that repacks every partly used pack.
func TestPruneDuplicates(t *testing.T) {
	ctx := context.Background()
	st := mem.New()
	f := newPruneFixture(t, st, 1)
	// Store the snapshot's blobs a second time, in packs of their own.
	w := newWriter(f.r.writerView(nil), CompressionOff)
	for _, p := range f.r.Index().Packs() {
		for _, pb := range p.Blobs {
			data, err := f.r.ReadBlob(ctx, pb.Type, pb.ID)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := w.add(ctx, pb.Type, pb.ID, data); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := w.flush(ctx); err != nil {
		t.Fatal(err)
	}
	if c := f.verify(); c.UnreachableBlobs == 0 {
		t.Fatal("no duplicate blobs to prune")
	}
	o := testPrune()
	o.MaxUnused = 0
	if _, err := reopen(t, st, f.m).Prune(ctx, o); err != nil {
		t.Fatal(err)
	}
	if c := f.verify(); c.UnreachableBlobs != 0 {
		t.Errorf("after prune %d duplicate blobs are left", c.UnreachableBlobs)
	}
}

// TestPruneReaderRefreshes: a reader opened before the prune (a mount)
// reads the snapshot left after its next index load, although the pack
// it first found the data in was repacked and deleted.
func TestPruneReaderRefreshes(t *testing.T) {
	ctx := context.Background()
	st := mem.New()
	f := newPruneFixture(t, st, 2)
	reader := reopen(t, st, f.m)
	f.forget(0)
	o := testPrune()
	o.MaxUnused = 0
	if _, err := f.r.Prune(ctx, o); err != nil {
		t.Fatal(err)
	}
	if _, err := reader.LoadIndexPartial(ctx); err != nil {
		t.Fatal(err)
	}
	s, err := reader.LoadSnapshot(ctx, f.snaps[1].ID)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if _, err := reader.Restore(ctx, s, dir, RestoreOptions{}); err != nil {
		t.Fatalf("the reader cannot read the snapshot left: %v", err)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "shared")); !bytes.Equal(got, f.trees[s.ID]["shared"]) {
		t.Error("the reader restores other bytes")
	}
	if n, live := len(reader.Index().Packs()), countObjects(t, st, "data/"); n != live {
		t.Errorf("the reader's index holds %d packs, the store %d", n, live)
	}
}

func newKeyMaterial(t *testing.T) *keys.Material {
	t.Helper()
	p := filepath.Join(t.TempDir(), "key")
	if err := keys.GenerateKeyFile(p); err != nil {
		t.Fatal(err)
	}
	spec, err := keys.ParseSpec("file:" + p)
	if err != nil {
		t.Fatal(err)
	}
	m, err := spec.Load()
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestPruneBesideRotation runs a key rotation at the dangerous instants of
// a prune: started before the prune deletes DEKs and finished after; run
// whole between the prune's plan (which listed the DEKs) and its DEK
// deletions. Either way the rotation finishes, every snapshot left reads
// with the new key alone, and check is clean.
func TestPruneBesideRotation(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name        string
		start, run  string // prune steps at which the rotation starts and runs
		runAfterAll bool
	}{
		{name: "switch before DEK deletion, re-wrap after the prune", start: "deleted", runAfterAll: true},
		{name: "whole rotation between plan and DEK deletion", start: "rechecked", run: "rechecked"},
		{name: "switch before the plan, re-wrap during the wait", start: "", run: "waited"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := mem.New()
			f := newPruneFixture(t, st, 4)
			f.forget(0, 2)
			newKey := newKeyMaterial(t)
			rot := rotation.New(f.r.Keys(), rotation.Options{})
			start := func() error { _, err := rot.Start(ctx, newKey); return err }
			runRot := func() error { return rot.Run(ctx, nil) }
			if tc.start == "" {
				if err := start(); err != nil {
					t.Fatal(err)
				}
			}
			f.r.hooks.pruneStep = func(step string) error {
				if step == tc.start {
					if err := start(); err != nil {
						return err
					}
				}
				if step == tc.run {
					return runRot()
				}
				return nil
			}
			o := testPrune()
			o.MaxUnused = 0
			if _, err := f.r.Prune(ctx, o); err != nil {
				t.Fatal(err)
			}
			if tc.runAfterAll {
				if err := runRot(); err != nil {
					t.Fatal(err)
				}
			}
			f.m = newKey
			c := f.verify()
			if c.UnindexedPacks != 0 || c.UnreachableBlobs != 0 {
				t.Errorf("after prune and rotation: %d unindexed packs, %d unreachable blobs", c.UnindexedPacks, c.UnreachableBlobs)
			}
		})
	}
}

// forgetOnHeaderRead is a store in which a manifest is forgotten (by
// another host) just as prune reads its header: after the plan listed and
// read it.
type forgetOnHeaderRead struct {
	store.Store
	victim string
}

func (s *forgetOnHeaderRead) GetRange(ctx context.Context, name string, off, n int64) ([]byte, error) {
	if name == s.victim {
		s.Store.Delete(ctx, name)
	}
	return s.Store.GetRange(ctx, name, off, n)
}

// TestPruneManifestForgottenMeanwhile: a snapshot forgotten while prune
// plans is no reason to stop (it was on S3, with hosts forgetting beside
// a prune).
func TestPruneManifestForgottenMeanwhile(t *testing.T) {
	ctx := context.Background()
	st := &forgetOnHeaderRead{Store: mem.New()}
	f := newPruneFixture(t, st, 3)
	f.forget(0)
	st.victim = snapshotName(f.snaps[1].ID)
	delete(f.trees, f.snaps[1].ID)
	if _, err := f.r.Prune(ctx, testPrune()); err != nil {
		t.Fatal(err)
	}
	st.victim = ""
	f.verify()
}

// TestRepackKeepsFrames: a repack copies a compressed blob as its stored
// frame: a blob that a snapshot compressed at the best level (--compression
// max) keeps its stored bytes in its new pack, where compressing it again
// at the repository's default level would store it differently; its file
// restores and checks as before.
func TestRepackKeepsFrames(t *testing.T) {
	ctx := context.Background()
	st := mem.New()
	r, m := newTestRepo(t, st)
	text := bytes.Repeat([]byte("a line of text that compresses, again and again, 0123456789\n"), 4000)
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "text"), text, 0o644)
	os.WriteFile(filepath.Join(src, "random"), randBytes(t, 200<<10), 0o644)
	first, err := r.TakeSnapshot(ctx, []string{src}, SnapshotOptions{Host: "h", Compression: CompressionMax})
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(src, "random"))
	if _, err := r.TakeSnapshot(ctx, []string{src}, SnapshotOptions{Host: "h"}); err != nil {
		t.Fatal(err)
	}
	tree, err := r.LoadTree(ctx, first.Snapshot.Tree)
	if err != nil {
		t.Fatal(err)
	}
	id := tree.Find([]byte("text")).Chunks[0].ID
	stored := func(r *Repository) ([]byte, blobLoc) {
		t.Helper()
		loc, ok := r.index.lookup(BlobData, id)
		if !ok || !loc.zstd {
			t.Fatalf("the text's blob is not stored compressed (%v)", ok)
		}
		z, err := r.eng.readStored(ctx, loc, nil)
		if err != nil {
			t.Fatal(err)
		}
		return z, loc
	}
	before, loc0 := stored(r)
	if z := compressBlob(CompressionAuto, text); bytes.Equal(z, before) {
		t.Fatal("the default level compresses the text to the same frame: the test shows nothing")
	}
	if err := r.ForgetSnapshot(ctx, first.Snapshot.ID); err != nil {
		t.Fatal(err)
	}
	res, err := r.Prune(ctx, testPrune())
	if err != nil {
		t.Fatal(err)
	}
	if res.RepackedPacks == 0 {
		t.Fatal("nothing was repacked")
	}
	r2 := reopen(t, st, m)
	after, loc1 := stored(r2)
	if loc1.pack.ID == loc0.pack.ID {
		t.Fatal("the text's blob was not moved")
	}
	if !bytes.Equal(after, before) {
		t.Errorf("the repack stored the text's blob as %d bytes, it was %d: compressed again", len(after), len(before))
	}
	if c, err := r2.Check(ctx, CheckOptions{ReadData: true}); err != nil || len(c.Problems) != 0 {
		t.Fatalf("check after the repack: %v %+v", err, c)
	}
}
