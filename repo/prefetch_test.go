package repo_test

import (
	"bytes"
	"context"
	"testing"

	"github.com/snapcrypt/snapcrypt/repo"
)

// TestReadAheadChunks reads a file as a sequential reader of small
// requests does through a mount whose kernel readahead is 128 KiB: each
// request asks ReadChunksAt to read ahead, passing the chunks from the
// one it starts in to the end of the file. Every byte is right, and the
// chunks read ahead serve the requests: at most two ranged reads per
// chunk (about one each is made), where about three per chunk are made
// without (the first request of a chunk, and the rest of it read then).
func TestReadAheadChunks(t *testing.T) {
	ctx := context.Background()
	f := newBigFile(t, 16<<20+777)
	cs := &countingStore{Store: f.st}
	r, err := repo.Open(ctx, cs, repo.Options{}, f.key)
	if err != nil {
		t.Fatal(err)
	}
	cs.mu.Lock()
	cs.ranges = 0
	cs.mu.Unlock()
	const req, ahead = 128 << 10, 3 << 20
	p := make([]byte, req)
	requests := 0
	for off := int64(0); off < f.size(); off += req {
		// The chunk off is in, and where it starts.
		i, start := 0, int64(0)
		for start+int64(f.chunks[i].Length) <= off {
			start += int64(f.chunks[i].Length)
			i++
		}
		want := min(req, f.size()-off)
		n, err := r.ReadChunksAt(ctx, f.chunks[i:], p[:want], off-start, ahead)
		if err != nil || int64(n) != want || !bytes.Equal(p[:n], f.want[off:off+want]) {
			t.Fatalf("read at %d: %d bytes, %v, or wrong bytes", off, n, err)
		}
		requests++
	}
	cs.mu.Lock()
	ranges := cs.ranges
	cs.mu.Unlock()
	t.Logf("%d requests of %d KiB, %d chunks: %d ranged reads", requests, req>>10, len(f.chunks), ranges)
	if ranges > 2*len(f.chunks) {
		t.Errorf("%d ranged reads for %d requests over %d chunks: the chunks were not read ahead", ranges, requests, len(f.chunks))
	}
}
