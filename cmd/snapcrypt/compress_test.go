package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCompressionCommands: init --format-version 1 makes a repository
// that refuses a compressed snapshot; migrate upgrades it (and a second
// run has nothing to do); status and snapshots --json then show the
// format, the compression and the stored and plaintext sizes; init
// --compression sets the default and refuses an unknown value.
func TestCompressionCommands(t *testing.T) {
	d := t.TempDir()
	key := filepath.Join(d, "key")
	env := []string{"SNAPCRYPT_REPO=" + filepath.Join(d, "repo"), "SNAPCRYPT_KEY=file:" + key}
	sc(t, nil, "keygen", key).want(t, 0, "")
	sc(t, env, "init", "--format-version", "1").want(t, 0, "")
	src := filepath.Join(d, "src")
	os.MkdirAll(src, 0o755)
	os.WriteFile(filepath.Join(src, "text.txt"), []byte(strings.Repeat("compressible text, again and again\n", 30000)), 0o644)
	if r := sc(t, env, "status"); !strings.Contains(r.stdout, "format version 1, compression off") {
		t.Fatalf("status of a version 1 repository: %s", r.stdout)
	}
	sc(t, env, "snapshot", "--compression", "auto", src).want(t, exitUsage, "format version 1")
	sc(t, env, "snapshot", "--name", "v1", src).want(t, 0, "")
	if r := sc(t, env, "migrate", "--compression", "max"); r.code != 0 || !strings.Contains(r.stdout, "upgraded to format version 2, compression max") {
		t.Fatalf("migrate: %d %s %s", r.code, r.stdout, r.stderr)
	}
	if r := sc(t, env, "migrate"); r.code != 0 || !strings.Contains(r.stdout, "nothing to do") {
		t.Fatalf("migrate again: %d %s %s", r.code, r.stdout, r.stderr)
	}
	os.WriteFile(filepath.Join(src, "more.txt"), []byte(strings.Repeat("more compressible text\n", 40000)), 0o644)
	sc(t, env, "snapshot", "--name", "v2", src).want(t, 0, "")
	r := sc(t, env, "status", "--json")
	var st struct {
		Format      int    `json:"format_version"`
		Compression string `json:"compression"`
		Blobs       struct {
			Plain, Stored uint64
		} `json:"blob_bytes"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil || st.Format != 2 || st.Compression != "max" || st.Blobs.Stored >= st.Blobs.Plain {
		t.Fatalf("status --json: %v %+v\n%s", err, st, r.stdout)
	}
	r = sc(t, env, "snapshots", "--json")
	var snaps []struct {
		Name  string
		Added *struct{ Plain, Stored int64 }
	}
	if err := json.Unmarshal([]byte(r.stdout), &snaps); err != nil || len(snaps) != 2 {
		t.Fatalf("snapshots --json: %v\n%s", err, r.stdout)
	}
	if snaps[0].Added != nil || snaps[1].Added == nil || snaps[1].Added.Stored*4 > snaps[1].Added.Plain {
		t.Fatalf("snapshots --json: added %+v, %+v", snaps[0].Added, snaps[1].Added)
	}
	sc(t, env, "restore", "v1", filepath.Join(d, "out")).want(t, 0, "")

	env2 := []string{"SNAPCRYPT_REPO=" + filepath.Join(d, "repo2"), "SNAPCRYPT_KEY=file:" + key}
	sc(t, env2, "init", "--compression", "fast").want(t, exitUsage, "auto, off or max")
	sc(t, env2, "init", "--compression", "off").want(t, 0, "")
	if r := sc(t, env2, "status"); !strings.Contains(r.stdout, "format version 2, compression off") {
		t.Fatalf("status: %s", r.stdout)
	}
}
