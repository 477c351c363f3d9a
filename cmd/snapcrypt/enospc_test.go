package main

import (
	"crypto/rand"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// smallFS mounts a tmpfs of size bytes and returns its directory; it is
// unmounted at the end of the test. Mounting needs root: without it the
// test is skipped, except in CI (CI=true), where it fails.
func smallFS(t *testing.T, size string) string {
	t.Helper()
	dir := t.TempDir()
	var why string
	if os.Geteuid() != 0 {
		why = "not root"
	} else if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size="+size+",mode=0700"); err != nil {
		why = "mounting a tmpfs: " + err.Error()
	}
	if why != "" {
		if os.Getenv("CI") == "true" {
			t.Fatalf("a small file system is needed to fill it (%s); this test must run in CI", why)
		}
		t.Skipf("a small file system is needed to fill it: %s", why)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, 0); err != nil {
			t.Errorf("unmounting %s: %v", dir, err)
			unix.Unmount(dir, unix.MNT_DETACH)
		}
	})
	return dir
}

// TestDiskFullMidSnapshot fills the repository's file system while a
// snapshot writes its packs: the snapshot fails saying the disk is full,
// and leaves a pack that no index names. Check counts it as unused space
// and passes; status shows it. Once space is freed the next snapshot
// succeeds, restores and checks clean, and the pack is still unused space,
// which prune then deletes.
func TestDiskFullMidSnapshot(t *testing.T) {
	small := smallFS(t, "72m")
	d := t.TempDir()
	key, rp, src := filepath.Join(d, "key"), filepath.Join(small, "repo"), filepath.Join(d, "src")
	env := []string{"SNAPCRYPT_REPO=" + rp, "SNAPCRYPT_KEY=file:" + key}
	sc(t, nil, "keygen", key).want(t, 0, "")
	sc(t, env, "init").want(t, 0, "")

	// 40 MiB of content: three packs (16 MiB each at most); 24 MiB free
	// lets the first through and not the second.
	if err := os.MkdirAll(src, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"a", "b"} {
		b := make([]byte, 20<<20)
		rand.Read(b)
		if err := os.WriteFile(filepath.Join(src, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var sfs unix.Statfs_t
	if err := unix.Statfs(small, &sfs); err != nil {
		t.Fatal(err)
	}
	filler := filepath.Join(small, "filler")
	free := int64(sfs.Bavail) * sfs.Bsize
	if err := os.WriteFile(filler, make([]byte, free-24<<20), 0o600); err != nil {
		t.Fatal(err)
	}

	r := sc(t, env, "snapshot", src)
	r.want(t, 1, "")
	if !strings.Contains(r.stderr, "no space left on device") || !strings.Contains(r.stderr, "disk") {
		t.Fatalf("the snapshot's error does not say the disk is full: %q", r.stderr)
	}
	if n := len(packs(t, rp)); n == 0 {
		t.Fatal("the interrupted snapshot left no pack: the test does not exercise unused space")
	}

	// Unused space, not damage.
	r = sc(t, env, "check")
	r.want(t, 0, "")
	if !strings.Contains(r.stdout, "no problems found") || !strings.Contains(r.stdout, "unused space") {
		t.Fatalf("check after a full disk: %q", r.stdout)
	}
	var res struct {
		Problems       []string
		Snapshots      int
		UnindexedPacks int   `json:"unindexed_packs"`
		UnindexedBytes int64 `json:"unindexed_bytes"`
	}
	r = sc(t, env, "check", "--json")
	r.want(t, 0, "")
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil {
		t.Fatalf("check --json: %v\n%s", err, r.stdout)
	}
	if len(res.Problems) != 0 || res.Snapshots != 0 || res.UnindexedPacks == 0 || res.UnindexedBytes < 1<<20 {
		t.Fatalf("check --json after a full disk: %+v", res)
	}
	var st struct {
		Unused struct {
			Packs int   `json:"unindexed_packs"`
			Bytes int64 `json:"unindexed_bytes"`
		} `json:"unused"`
	}
	r = sc(t, env, "status", "--json")
	r.want(t, 0, "")
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil {
		t.Fatalf("status --json: %v\n%s", err, r.stdout)
	}
	if st.Unused.Packs != res.UnindexedPacks || st.Unused.Bytes != res.UnindexedBytes {
		t.Fatalf("status counts %+v unused, check %d packs %d bytes", st.Unused, res.UnindexedPacks, res.UnindexedBytes)
	}
	r = sc(t, env, "status")
	r.want(t, 0, "")
	if !strings.Contains(r.stdout, "unused space: ") {
		t.Fatalf("status does not show unused space: %q", r.stdout)
	}

	// Space freed: everything works again.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	r = sc(t, env, "snapshot", src)
	r.want(t, 0, "")
	id := lastLine(r.stdout)
	r = sc(t, env, "check", "--read-data", "--json")
	r.want(t, 0, "")
	res.Problems = nil
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil {
		t.Fatal(err)
	}
	if len(res.Problems) != 0 || res.Snapshots != 1 || res.UnindexedPacks == 0 {
		t.Fatalf("check after space was freed: %+v", res)
	}
	dst := filepath.Join(d, "restored")
	sc(t, env, "restore", id, dst).want(t, 0, "")
	for _, name := range []string{"a", "b"} {
		want, _ := os.ReadFile(filepath.Join(src, name))
		got, err := os.ReadFile(filepath.Join(dst, name))
		if err != nil || string(got) != string(want) {
			t.Fatalf("restored %s: %d bytes, %v; want %d", name, len(got), err, len(want))
		}
	}

	// Prune reclaims the interrupted snapshot's packs; everything reads.
	unused := res.UnindexedPacks
	r = sc(t, env, "prune", "--json")
	r.want(t, 0, "")
	var pr struct {
		Unindexed int   `json:"unindexed_packs"`
		Deleted   int   `json:"deleted_packs"`
		Freed     int64 `json:"freed_bytes"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &pr); err != nil {
		t.Fatalf("prune --json: %v\n%s", err, r.stdout)
	}
	if pr.Unindexed != unused || pr.Deleted < unused || pr.Freed < res.UnindexedBytes {
		t.Fatalf("prune after a full disk: %+v, want the %d unindexed packs (%d bytes) deleted", pr, unused, res.UnindexedBytes)
	}
	r = sc(t, env, "check", "--read-data", "--json")
	r.want(t, 0, "")
	res.Problems = nil
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil {
		t.Fatal(err)
	}
	if len(res.Problems) != 0 || res.Snapshots != 1 || res.UnindexedPacks != 0 {
		t.Fatalf("check after prune: %+v", res)
	}
	dst2 := filepath.Join(d, "restored-after-prune")
	sc(t, env, "restore", id, dst2).want(t, 0, "")
	for _, name := range []string{"a", "b"} {
		want, _ := os.ReadFile(filepath.Join(src, name))
		if got, err := os.ReadFile(filepath.Join(dst2, name)); err != nil || string(got) != string(want) {
			t.Fatalf("restored %s after prune: %d bytes, %v; want %d", name, len(got), err, len(want))
		}
	}
}
