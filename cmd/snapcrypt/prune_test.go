package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/snapcrypt/snapcrypt/lease"
	"github.com/snapcrypt/snapcrypt/repo"
	"github.com/snapcrypt/snapcrypt/repo/store/local"
)

// TestForgetPrune: forget --prune --json removes the old snapshots and
// frees their data; the snapshot left restores as it was, check is clean,
// and prune then has nothing to do. A prune while another holds the prune
// lease exits 6 naming the holder.
func TestForgetPrune(t *testing.T) {
	f := newFixture(t)
	var last string
	for i := range 3 {
		os.WriteFile(filepath.Join(f.src, "churn"), []byte(strings.Repeat(string(rune('a'+i)), 300<<10)), 0o644)
		last = snapAt(t, f, time.Date(2025, 1, 1+i, 0, 0, 0, 0, time.UTC).Format(time.RFC3339), "h")
	}
	want := describe(t, f.src)
	r := sc(t, f.env, "forget", "--keep-last", "1", "--prune", "--json")
	r.want(t, 0, "")
	var out struct {
		Groups []json.RawMessage `json:"groups"`
		Prune  *repo.PruneResult `json:"prune"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
		t.Fatalf("forget --prune --json: %v\n%s", err, r.stdout)
	}
	if out.Prune == nil || out.Prune.FreedBytes == 0 || out.Prune.DeletedPacks == 0 {
		t.Fatalf("forget --prune freed nothing: %s", r.stdout)
	}
	dst := filepath.Join(f.dir, "restored")
	sc(t, f.env, "restore", last, dst).want(t, 0, "")
	if got := describe(t, dst); got != want {
		t.Fatalf("restored tree differs after prune:\n%s\nwant\n%s", got, want)
	}
	sc(t, f.env, "check", "--read-data").want(t, 0, "")
	r = sc(t, f.env, "prune")
	r.want(t, 0, "")
	if !strings.Contains(r.stdout, "nothing to prune") {
		t.Errorf("a second prune says %q", r.stdout)
	}

	st, err := local.Open(f.repo)
	if err != nil {
		t.Fatal(err)
	}
	held, err := lease.Take(context.Background(), st, repo.PruneLeasePrefix, lease.Options{Host: "elsewhere", Duration: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	defer held.Release(context.Background())
	sc(t, f.env, "prune", "--no-wait").want(t, exitBusy, "host elsewhere")
	sc(t, f.env, "prune", "--wait", "--no-wait").want(t, exitUsage, "exclude")

	// A snapshot in flight elsewhere: status shows its lease; a prune
	// that may not wait defers its deletions, and status shows the mark
	// until a prune finishes it.
	held.Release(context.Background())
	writer, err := lease.Take(context.Background(), st, repo.WriterLeasePrefix+strings.Repeat("ab", 16)+"/", lease.Options{Host: "busyhost", Duration: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(f.src, "churn"), []byte(strings.Repeat("z", 300<<10)), 0o644)
	snapAt(t, f, time.Date(2025, 2, 1, 0, 0, 0, 0, time.UTC).Format(time.RFC3339), "h")
	sc(t, f.env, "forget", "--keep-last", "1").want(t, 0, "")
	sc(t, f.env, "prune", "--no-wait").want(t, 0, "")
	var status struct {
		Prune repo.PruneState `json:"prune"`
	}
	r = sc(t, f.env, "status", "--json")
	r.want(t, 0, "")
	if err := json.Unmarshal([]byte(r.stdout), &status); err != nil {
		t.Fatalf("status --json: %v\n%s", err, r.stdout)
	}
	if len(status.Prune.Pending) != 1 || status.Prune.Pending[0].Packs == 0 || len(status.Prune.Writers) != 1 || status.Prune.Writers[0].Host != "busyhost" {
		t.Fatalf("status shows prune %+v, want one deferred mark and the writer on busyhost", status.Prune)
	}
	r = sc(t, f.env, "status")
	r.want(t, 0, "")
	if !strings.Contains(r.stdout, "snapshot in flight: host busyhost") || !strings.Contains(r.stdout, "deferred:") {
		t.Errorf("status does not show the deferred prune and the writer:\n%s", r.stdout)
	}
	writer.Release(context.Background())
	sc(t, f.env, "prune").want(t, 0, "")
	r = sc(t, f.env, "status", "--json")
	status.Prune = repo.PruneState{}
	if err := json.Unmarshal([]byte(r.stdout), &status); err != nil || len(status.Prune.Pending) != 0 || len(status.Prune.Writers) != 0 {
		t.Fatalf("status after the prune finished: %v %+v", err, status.Prune)
	}
	sc(t, f.env, "check", "--read-data").want(t, 0, "")
}
