package fs

import (
	"crypto/rand"
	"encoding/hex"
	"testing"
	"time"

	"github.com/snapcrypt/snapcrypt/repo/store"
)

// TestStatusUnusedSpace: .ctl/status counts the packs that no index names
// (what an interrupted snapshot leaves) as unused space.
func TestStatusUnusedSpace(t *testing.T) {
	f := newFixture(t)
	big := make([]byte, 200<<10)
	rand.Read(big)
	f.write("big", big)
	f.snapshot("one")
	f.mount(Options{})
	if u := f.status().Unused; u.Packs != 0 || u.Bytes != 0 || u.Error != "" || u.CountedAt.IsZero() {
		t.Fatalf("unused space of a clean repository: %+v", u)
	}

	var pack string
	if err := f.st.List(f.ctx, "data/", func(fi store.Info) error { pack = fi.Name; return nil }); err != nil || pack == "" {
		t.Fatalf("no pack listed: %v", err)
	}
	b, err := f.st.Get(f.ctx, pack)
	if err != nil {
		t.Fatal(err)
	}
	id := make([]byte, 32)
	rand.Read(id)
	h := hex.EncodeToString(id)
	if err := f.st.Create(f.ctx, "data/"+h[:2]+"/"+h, b); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "status counts the unindexed pack", func() bool {
		u := f.status().Unused
		return u.Packs == 1 && u.Bytes == int64(len(b)) && u.Error == ""
	})
}
