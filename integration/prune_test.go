package integration

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestS3HostsPrune: on S3, host a and host b keep taking snapshots of
// changing trees and forgetting all but their newest (forget --prune),
// while host c prunes again and again and a mount reads a snapshot that
// stays. Nothing any snapshot left references is lost: every snapshot
// left dumps its file as it was, check --read-data is clean, the mount
// read on without a failure, and a last prune leaves no unused space.
func TestS3HostsPrune(t *testing.T) {
	r := newS3Repo(t)
	dir := t.TempDir()
	base := filepath.Join(dir, "base")
	makeTree(t, base, 7)
	r.Snapshot(t, "--name", "base", "--host", "keep", base)
	m := startMount(t, r.Repo)
	want := sums(t, base)
	rd := startReader(m, "base", want)
	defer rd.end(t, "the mount")
	rd.waitRounds(t, 1, 30*time.Second, "the mount reads the base snapshot once")
	rd.counted.Store(true)

	var mu sync.Mutex
	files := map[string][32]byte{} // snapshot id -> the sum of its file f
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for _, host := range []string{"a", "b"} {
		src := filepath.Join(dir, "src-"+host)
		os.MkdirAll(src, 0o755)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 4 {
				b := make([]byte, 3<<20)
				rand.Read(b)
				os.WriteFile(filepath.Join(src, "f"), b, 0o644)
				res := run(t, "", binary, "snapshot", "-r", r.Dir, "-k", r.Key, "--host", host, src)
				if res.Code != 0 {
					errs <- fmt.Errorf("snapshot on host %s: exit %d: %s", host, res.Code, res.Stderr)
					return
				}
				out := strings.TrimSpace(res.Stdout)
				mu.Lock()
				files[out[strings.LastIndexByte(out, '\n')+1:]] = sha256.Sum256(b)
				mu.Unlock()
				if i%2 == 1 {
					res = run(t, "", binary, "forget", "-r", r.Dir, "-k", r.Key, "--host", host, "--keep-last", "1", "--prune", "--no-wait")
					if res.Code != 0 && res.Code != 6 { // 6: host c's prune holds the lease
						errs <- fmt.Errorf("forget --prune on host %s: exit %d: %s", host, res.Code, res.Stderr)
						return
					}
				}
			}
		}()
	}
	stop := make(chan struct{})
	prunes := 0
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			res := run(t, "", binary, "prune", "-r", r.Dir, "-k", r.Key, "--no-wait")
			if res.Code != 0 && res.Code != 6 {
				errs <- fmt.Errorf("prune on host c: exit %d: %s", res.Code, res.Stderr)
				return
			}
			mu.Lock()
			prunes++
			mu.Unlock()
		}
	}()
	// The snapshot hosts end first; then host c stops.
	done := make(chan struct{})
	go func() {
		for {
			mu.Lock()
			n := len(files)
			mu.Unlock()
			if n == 8 {
				break
			}
			select {
			case err := <-errs:
				errs <- err
				close(done)
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
		close(done)
	}()
	<-done
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	rd.waitRounds(t, 1, 30*time.Second, "the mount reads the base snapshot again")
	rd.end(t, "the mount")
	t.Logf("%d prunes on host c; the mount read %d files during them", prunes, rd.during.Load())

	// A last prune with everyone done: nothing unused is left, and
	// everything left reads.
	r.SC(t, "prune", "--wait")
	var chk struct {
		Problems         []string
		UnindexedPacks   int `json:"unindexed_packs"`
		UnreachableBlobs int `json:"unreachable_blobs"`
	}
	if err := json.Unmarshal([]byte(r.SC(t, "check", "--read-data", "--json")), &chk); err != nil {
		t.Fatal(err)
	}
	if len(chk.Problems) != 0 || chk.UnindexedPacks != 0 {
		t.Fatalf("check after the prunes: %+v", chk)
	}
	var snaps []struct {
		ID   string `json:"id"`
		Host string `json:"host"`
	}
	if err := json.Unmarshal([]byte(r.SC(t, "snapshots", "--json")), &snaps); err != nil {
		t.Fatal(err)
	}
	left := 0
	for _, s := range snaps {
		if s.Host == "keep" {
			continue
		}
		left++
		sum, ok := files[s.ID]
		if !ok {
			t.Fatalf("snapshot %s is not one the hosts took", s.ID)
		}
		if got := sha256.Sum256([]byte(r.SC(t, "dump", s.ID, "/f"))); got != sum {
			t.Fatalf("snapshot %s of host %s dumps other bytes", s.ID, s.Host)
		}
	}
	if left < 2 {
		t.Fatalf("%d snapshots of hosts a and b left, want at least their newest", left)
	}
	out := filepath.Join(dir, "restored")
	r.SC(t, "restore", "base", out)
	compareTrees(t, base, out)
}
