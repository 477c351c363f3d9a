package fs

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestMain puts every temporary directory of the run below one directory
// and fails the run if a FUSE mount is left below it.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "snapcrypt-fs-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	dir, _ = filepath.EvalSymlinks(dir)
	os.Setenv("TMPDIR", dir)
	os.Setenv("SNAPCRYPT_STATE_DIR", filepath.Join(dir, "state")) // host keyring records
	code := m.Run()
	b, _ := os.ReadFile("/proc/mounts")
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 2 && strings.HasPrefix(f[2], "fuse") && strings.HasPrefix(f[1], dir+"/") {
			fmt.Fprintf(os.Stderr, "FAIL: FUSE mount left behind: %s\n", f[1])
			lazyUnmount(f[1])
			code = 1
		}
	}
	os.RemoveAll(dir)
	os.Exit(code)
}
