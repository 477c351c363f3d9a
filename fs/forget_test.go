package fs

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"testing"
	"time"

	"github.com/snapcrypt/snapcrypt/repo"
)

// TestForgottenSnapshotLeaves: a snapshot forgotten by another process
// leaves snapshots/, ids/ and tags/ within the refresh interval (plus the
// kernel's one-second entry timeout), while a file opened in it before
// reads to the end and the other snapshot is untouched.
func TestForgottenSnapshotLeaves(t *testing.T) {
	f := newFixture(t)
	big := randBytes(3<<20 + 17)
	f.write("big", big)
	one := f.snapshot("one", "t")
	f.write("small", []byte("2"))
	f.snapshot("two", "t")
	f.mount(Options{Refresh: time.Second})

	fd, err := os.Open(f.path("snapshots", "one", "big"))
	if err != nil {
		t.Fatal(err)
	}
	defer fd.Close()
	head := make([]byte, 4096)
	if _, err := io.ReadFull(fd, head); err != nil {
		t.Fatal(err)
	}

	other, err := repo.Open(f.ctx, f.st, repo.Options{}, f.key) // another process
	if err != nil {
		t.Fatal(err)
	}
	if err := other.ForgetSnapshot(f.ctx, one.ID); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	gone := func(p string) bool {
		_, err := os.Lstat(p)
		return errors.Is(err, fs.ErrNotExist)
	}
	eventually(t, 5*time.Second, "snapshot one leaves the mount", func() bool {
		ents, err := os.ReadDir(f.path("snapshots"))
		if err != nil {
			return false
		}
		for _, e := range ents {
			if e.Name() == "one" {
				return false
			}
		}
		return gone(f.path("snapshots", "one")) && gone(f.path("ids", one.ShortID())) && gone(f.path("tags", "t", "one"))
	})
	t.Logf("the forgotten snapshot left after %v", time.Since(start))

	rest, err := io.ReadAll(fd)
	if err != nil {
		t.Fatalf("reading a file opened before its snapshot was forgotten: %v", err)
	}
	if !bytes.Equal(append(head, rest...), big) {
		t.Fatal("a file opened before its snapshot was forgotten reads wrong bytes")
	}
	for path, want := range map[string][]byte{"snapshots/two/big": big, "snapshots/latest/small": []byte("2"), "tags/t/two/small": []byte("2")} {
		if b, err := os.ReadFile(f.path(path)); err != nil || !bytes.Equal(b, want) {
			t.Errorf("%s: %d bytes, %v", path, len(b), err)
		}
	}
	if s := f.status(); len(s.Unreadable) != 0 || s.Snapshots != 1 {
		t.Errorf("status after a forget: %d snapshots, unreadable %+v", s.Snapshots, s.Unreadable)
	}
}
