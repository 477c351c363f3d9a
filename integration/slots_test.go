package integration

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// TestMountWithSlotKey mounts a repository with only the key of a slot
// added by 'key add': every file reads as it was, and .ctl/status shows
// the slot by id and kind.
func TestMountWithSlotKey(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	makeTree(t, src, 21)
	r := newRepo(t)
	r.Snapshot(t, "--name", "one", src)
	rec := keyFile(t, dir, "recovery.key")
	r.SC(t, "key", "add", "file:"+rec)
	m := startMount(t, &Repo{Dir: r.Dir, Key: "file:" + rec})
	compareTrees(t, src, m.Path("snapshots", "one"))
	b, err := os.ReadFile(m.Path(".ctl", "status"))
	if err != nil {
		t.Fatal(err)
	}
	var s struct {
		Keys struct {
			Generations []struct {
				Held  bool `json:"held"`
				Slots []struct {
					ID   string `json:"id"`
					Kind string `json:"kind"`
				} `json:"slots"`
			} `json:"generations"`
		} `json:"keys"`
	}
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatal(err)
	}
	gs := s.Keys.Generations
	if len(gs) != 1 || !gs[0].Held || len(gs[0].Slots) != 1 || gs[0].Slots[0].Kind != "raw key" || len(gs[0].Slots[0].ID) != 16 {
		t.Fatalf(".ctl/status keys: %s", b)
	}
	m.Stop(t)
}
