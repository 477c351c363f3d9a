package fs

import (
	"bytes"
	"io"
	"os"
	"testing"
)

// TestReadAheadByMount reads a large file sequentially with the mount
// reading ahead as it does when the kernel's readahead could not be raised
// (an ordinary user's mount): every byte right, and most segments are
// found in the segment cache, read ahead (without, the kernel's requests
// are decrypted straight into their replies, and only the segments two
// requests share are found there).
func TestReadAheadByMount(t *testing.T) {
	f := newFixture(t)
	big := randBytes(12<<20 + 4321)
	f.write("big", big)
	f.snapshot("s")
	f.mount(Options{})
	f.srv.m.ahead.Store(readAhead(f.mr, defaultReadAhead))
	if f.srv.m.ahead.Load() <= 0 {
		t.Fatal("the mount does not read ahead")
	}
	fd, err := os.Open(f.path("snapshots", "s", "big"))
	if err != nil {
		t.Fatal(err)
	}
	defer fd.Close()
	hitsBefore := f.mr.CacheStats()["segments"].Hits
	got, err := io.ReadAll(io.NewSectionReader(fd, 0, int64(len(big))))
	if err != nil || !bytes.Equal(got, big) {
		t.Fatalf("sequential read: %d bytes, %v, or wrong bytes", len(got), err)
	}
	segments := uint64(len(big)) / (64 << 10)
	hits := f.mr.CacheStats()["segments"].Hits - hitsBefore
	t.Logf("%d segment hits for %d segments", hits, segments)
	if hits < segments/2 {
		t.Errorf("%d segments of %d found in the cache: the file was not read ahead", hits, segments)
	}
}
