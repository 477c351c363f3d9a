package store

import (
	"errors"
	"testing"
)

func TestCheckName(t *testing.T) {
	good := []string{"config", "keyring/00000000000000000001", "data/3f/3f0a", "a/b/c/d", "a..b", "x.", "a-b_c"}
	for _, n := range good {
		if err := CheckName(n); err != nil {
			t.Errorf("CheckName(%q) = %v, want nil", n, err)
		}
	}
	bad := []string{"", "/abs", "a/", "a//b", "..", "a/../b", ".", "./a", "a/.", ".tmp", "a/.hidden", `a\b`, "a\x00b", "/"}
	for _, n := range bad {
		if err := CheckName(n); !errors.Is(err, ErrInvalidName) {
			t.Errorf("CheckName(%q) = %v, want ErrInvalidName", n, err)
		}
	}
}
