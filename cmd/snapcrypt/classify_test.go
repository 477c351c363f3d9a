package main

import (
	"errors"
	"fmt"
	"testing"

	"github.com/snapcrypt/snapcrypt/keys"
	"github.com/snapcrypt/snapcrypt/lease"
	"github.com/snapcrypt/snapcrypt/repo"
	"github.com/snapcrypt/snapcrypt/repo/object"
)

// TestClassifyCorrupt: damaged bytes found by any package (a sealed object,
// the repository config, the keyring, a lease) wrap the one
// object.ErrCorrupt and exit with code 5.
func TestClassifyCorrupt(t *testing.T) {
	_, objErr := object.ParseHeader([]byte("not a sealed object header at all, not even close to one"))
	_, cfgErr := repo.ParseConfig([]byte(`{"version":1,"id":"not hex"}`))
	_, ringErr := keys.ParseKeyring([]byte(`{"version":1,"nonsense":true}`))
	_, leaseErr := lease.Parse([]byte(`[]`))
	for name, err := range map[string]error{
		"sealed object header": objErr,
		"config":               cfgErr,
		"keyring":              ringErr,
		"lease":                leaseErr,
	} {
		if err == nil {
			t.Errorf("%s: damaged bytes parsed", name)
			continue
		}
		if !errors.Is(err, object.ErrCorrupt) {
			t.Errorf("%s: error %v does not wrap object.ErrCorrupt", name, err)
		}
		if got := classify(fmt.Errorf("command: %w", err)); got != exitDamaged {
			t.Errorf("%s: exit code %d, want %d (error %v)", name, got, exitDamaged, err)
		}
	}
}
