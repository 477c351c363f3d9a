package keys

import (
	"crypto/rand"
	"errors"
	"testing"

	"github.com/snapcrypt/snapcrypt/repo/object"
)

// TestVerifyWrappedDifferentKey: a wrapped DEK that opens to another key is
// ErrDifferentKey (and corrupt); one that does not open is corrupt but not
// ErrDifferentKey, so the rotation can tell a disagreeing writer from
// damage that a new copy supersedes.
func TestVerifyWrappedDifferentKey(t *testing.T) {
	var raw [KeySize]byte
	var rid [16]byte
	var gen [8]byte
	var id [16]byte
	for _, b := range [][]byte{raw[:], rid[:], gen[:], id[:]} {
		rand.Read(b)
	}
	kk := newKEK(raw, rid, gen)
	dek, other := make([]byte, KeySize), make([]byte, KeySize)
	rand.Read(dek)
	rand.Read(other)
	w, err := kk.wrap(rid, id, dek)
	if err != nil {
		t.Fatal(err)
	}
	if err := kk.verifyWrapped(rid, id, w, dek); err != nil {
		t.Fatalf("the right key: %v", err)
	}
	err = kk.verifyWrapped(rid, id, w, other)
	if !errors.Is(err, ErrDifferentKey) || !errors.Is(err, object.ErrCorrupt) {
		t.Fatalf("another key: %v, want ErrDifferentKey wrapping object.ErrCorrupt", err)
	}
	damaged := append([]byte(nil), w...)
	damaged[len(damaged)-1] ^= 1
	err = kk.verifyWrapped(rid, id, damaged, dek)
	if !errors.Is(err, object.ErrCorrupt) || errors.Is(err, ErrDifferentKey) {
		t.Fatalf("damaged copy: %v, want object.ErrCorrupt and not ErrDifferentKey", err)
	}
}
