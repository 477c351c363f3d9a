package keys

import (
	"os"
	"testing"
)

// testArgon2 is cheap: tests derive many passphrase KEKs.
var testArgon2 = Argon2Params{T: 1, M: 64, P: 1}

func TestMain(m *testing.M) {
	argon2Params = testArgon2
	// Keyring records (state.go) of this run go to a directory of its
	// own; tests that make repositories give each its own (fresh).
	dir, err := os.MkdirTemp("", "snapcrypt-keys-state-")
	if err != nil {
		panic(err)
	}
	os.Setenv(StateDirEnv, dir)
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// freshState gives the test a host record directory of its own: every
// test's repositories share one repository id.
func freshState(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	t.Setenv(StateDirEnv, dir)
	return dir
}
