package repo

import (
	"os"
	"testing"
)

// TestMain keeps the host keyring records (keys.StateDir) of the run in a
// directory of its own, removed at the end.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "snapcrypt-repo-state-")
	if err != nil {
		panic(err)
	}
	os.Setenv("SNAPCRYPT_STATE_DIR", dir)
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}
