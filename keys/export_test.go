package keys

import (
	"os"
	"testing"
)

// testArgon2 is cheap: tests derive many passphrase KEKs.
var testArgon2 = Argon2Params{T: 1, M: 64, P: 1}

func TestMain(m *testing.M) {
	argon2Params = testArgon2
	os.Exit(m.Run())
}
