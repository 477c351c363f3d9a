package repo_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/snapcrypt/snapcrypt/repo"
	"github.com/snapcrypt/snapcrypt/repo/store/s3"
	"github.com/snapcrypt/snapcrypt/repo/store/s3/s3test"
)

// packGets counts the GETs of pack objects (data/) an S3 store sends.
type packGets struct {
	mu     sync.Mutex
	n      int
	ranges []string
}

func (c *packGets) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method == http.MethodGet && strings.Contains(req.URL.Path, "/data/") {
		c.mu.Lock()
		c.n++
		c.ranges = append(c.ranges, req.Header.Get("Range"))
		c.mu.Unlock()
	}
	return http.DefaultTransport.RoundTrip(req)
}

// TestS3SequentialReadRequests: a cold sequential read of a 24 MiB file
// from a repository on S3, with the read windows the command line gives
// such a repository, in the 1 MiB reads the mount gets, sends about one
// GET per pack (the packs' bodies read on from window to window), not
// one per 4 MiB window; every byte right.
func TestS3SequentialReadRequests(t *testing.T) {
	srv := s3test.Start(t)
	ctx := context.Background()
	cfg, err := s3.ParseURL(srv.URL(srv.NewPrefix()))
	if err != nil {
		t.Fatal(err)
	}
	cfg.AccessKey, cfg.SecretKey = srv.AccessKey, srv.SecretKey
	gets := &packGets{}
	cfg.Transport = gets
	st, err := s3.OpenConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	key := testKey(t)
	w, err := repo.Init(ctx, st, key)
	if err != nil {
		t.Fatal(err)
	}
	const size = 24 << 20
	want := make([]byte, size)
	rand.Read(want)
	f := &bigFile{key: key, want: want, chunks: snapshotFile(t, w, want)}
	r, err := repo.Open(ctx, st, repo.Options{ReadWindow: repo.RemoteReadWindow}, key)
	if err != nil {
		t.Fatal(err)
	}
	gets.mu.Lock()
	gets.n, gets.ranges = 0, nil
	gets.mu.Unlock()
	p := make([]byte, 1<<20)
	for off := int64(0); off < size; off += 1 << 20 {
		n, err := f.readAt(r, p, off)
		if err != nil || n != len(p) || !bytes.Equal(p, want[off:off+1<<20]) {
			t.Fatalf("read at %d: %d bytes, %v, or wrong bytes", off, n, err)
		}
	}
	// 24 MiB of chunks lie in two or three packs; a read that crosses
	// into a pack reads its small first part on its own.
	t.Logf("%d GETs of packs, Range headers %q", gets.n, gets.ranges)
	if gets.n > 6 {
		t.Errorf("a sequential read of %d MiB sent %d GETs of packs (Range headers %q), want at most 6: one per pack and a small one where a read crosses into the next", size>>20, gets.n, gets.ranges)
	}
}
