package keys

import (
	"os"
	"testing"
	"time"
)

// testArgon2 is cheap: tests derive many passphrase KEKs.
var testArgon2 = Argon2Params{T: 1, M: 64, P: 1}

func TestMain(m *testing.M) {
	argon2Params = testArgon2
	os.Exit(m.Run())
}

// setClock makes k use now instead of time.Now.
func setClock(k *Keychain, now func() time.Time) { k.now = now }

// setCrash makes k call f at every rotation step.
func setCrash(k *Keychain, f func(point string) error) { k.crash = f }

// setAfterDEKWrite makes NewDEK call f between its write and the re-read.
func setAfterDEKWrite(k *Keychain, f func()) { k.afterDEKWrite = f }
