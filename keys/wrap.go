package keys

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"

	"golang.org/x/crypto/chacha20poly1305"

	"github.com/snapcrypt/snapcrypt/repo/object"
	"github.com/snapcrypt/snapcrypt/repo/store"
)

// Wrapped DEK object layout (docs/format.md, "keys"):
//
//	magic "SCWK" (4) | version 0x01 (1) | nonce (24) | XChaCha20-Poly1305(DEK) (32+16)
//
// The additional data is magic || version || repository id (16) ||
// generation id (8) || DEK id (16), so a wrapped DEK cannot be moved to
// another repository, generation or id.
const (
	wrapMagic   = "SCWK"
	wrapVersion = 1
	wrapHeader  = len(wrapMagic) + 1
)

// WrappedSize is the size of a wrapped DEK (77 bytes): a single object
// deks/<gen>/<id>, or the wrapped part of a DEK pack entry.
const WrappedSize = wrapHeader + chacha20poly1305.NonceSizeX + KeySize + chacha20poly1305.Overhead

// errWrapFormat is wrapped by structural errors of a wrapped DEK.
var errWrapFormat = errors.New("not a wrapped data key")

const deksPrefix = "deks/"

// dekName is the object name of a DEK wrapped under a generation.
func dekName(gen [8]byte, id [16]byte) string {
	return deksPrefix + hex.EncodeToString(gen[:]) + "/" + hex.EncodeToString(id[:])
}

// DEKObject is the name of the single object of DEK id wrapped under
// generation gen (16 hex): deks/<gen>/<id, 32 hex>.
func DEKObject(gen string, id [16]byte) string { return GenPrefix(gen) + hex.EncodeToString(id[:]) }

// GenPrefix is the prefix of every wrapped DEK of generation gen, single
// objects and DEK packs: deks/<gen>/.
func GenPrefix(gen string) string { return deksPrefix + gen + "/" }

func wrapAD(repoID [16]byte, gen [8]byte, id [16]byte) []byte {
	ad := make([]byte, 0, wrapHeader+16+8+16)
	ad = append(ad, wrapMagic...)
	ad = append(ad, wrapVersion)
	ad = append(ad, repoID[:]...)
	ad = append(ad, gen[:]...)
	return append(ad, id[:]...)
}

// wrap seals dek under k with a random nonce.
func (k *kek) wrap(repoID [16]byte, id [16]byte, dek []byte) ([]byte, error) {
	nonce := make([]byte, chacha20poly1305.NonceSizeX)
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	return k.wrapNonce(repoID, id, dek, nonce), nil
}

func (k *kek) wrapNonce(repoID [16]byte, id [16]byte, dek, nonce []byte) []byte {
	if len(dek) != KeySize {
		panic("keys: wrapping a DEK of the wrong size")
	}
	out := make([]byte, 0, WrappedSize)
	out = append(out, wrapMagic...)
	out = append(out, wrapVersion)
	out = append(out, nonce...)
	return k.aead.Seal(out, nonce, dek, wrapAD(repoID, k.gen, id))
}

// parseWrapped checks the structure of a wrapped DEK and returns its nonce
// and sealed part.
func parseWrapped(b []byte) (nonce, sealed []byte, err error) {
	if len(b) < wrapHeader || string(b[:len(wrapMagic)]) != wrapMagic {
		return nil, nil, fmt.Errorf("%w: bad magic", errWrapFormat)
	}
	if b[len(wrapMagic)] != wrapVersion {
		return nil, nil, fmt.Errorf("%w: version %d, this snapcrypt reads version %d", errWrapFormat, b[len(wrapMagic)], wrapVersion)
	}
	if len(b) != WrappedSize {
		return nil, nil, fmt.Errorf("%w: %d bytes, want %d", errWrapFormat, len(b), WrappedSize)
	}
	return b[wrapHeader : wrapHeader+chacha20poly1305.NonceSizeX], b[wrapHeader+chacha20poly1305.NonceSizeX:], nil
}

// unwrap opens a wrapped DEK. Every failure wraps object.ErrCorrupt.
func (k *kek) unwrap(repoID [16]byte, id [16]byte, b []byte) ([]byte, error) {
	nonce, sealed, err := parseWrapped(b)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", object.ErrCorrupt, err)
	}
	dek, err := k.aead.Open(make([]byte, 0, KeySize), nonce, sealed, wrapAD(repoID, k.gen, id))
	if err != nil {
		return nil, object.ErrCorrupt
	}
	return dek, nil
}

// verifyWrapped reports whether b unwraps under k to dek: nil if it does,
// ErrDifferentKey if it opens to another key, and an error wrapping
// object.ErrCorrupt if it does not open.
func (k *kek) verifyWrapped(repoID [16]byte, id [16]byte, b, dek []byte) error {
	got, err := k.unwrap(repoID, id, b)
	if err != nil {
		return err
	}
	defer clear(got)
	if !bytes.Equal(got, dek) {
		return ErrDifferentKey
	}
	return nil
}

// ReadWrapped reads a wrapped DEK object, never more than wrappedSize+1
// bytes of it: a larger object is an error wrapping object.ErrCorrupt that names
// it. Not-exist errors wrap store.ErrNotExist.
func ReadWrapped(ctx context.Context, st store.Reader, name string) ([]byte, error) {
	b, err := store.GetBounded(ctx, st, name, int64(WrappedSize))
	if errors.Is(err, store.ErrTooLarge) {
		return nil, fmt.Errorf("object %s is %w: %v", name, object.ErrCorrupt, err)
	}
	return b, err
}
