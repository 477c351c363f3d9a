package keys

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/snapcrypt/snapcrypt/internal/vectortest"
	"github.com/snapcrypt/snapcrypt/repo/object"
)

// Expectations of a wrapped-DEK vector, one per decoding stage.
const (
	expectSuccess   = "success"    // check value matches, DEK unwraps to dek
	expectNoMatch   = "no match"   // the key's check value does not match the generation
	expectBadFormat = "bad format" // the wrapped bytes do not parse
	expectCorrupted = "corrupted"  // parse, but fail authentication
)

// wrapVector is one known-answer vector: a generation (KDF, check value), an
// operator's key, and a wrapped DEK object with its name's ids.
type wrapVector struct {
	Comment    string `json:"comment"`
	Expect     string `json:"expect"`
	RawKey     string `json:"raw_key,omitempty"`    // hex
	Passphrase string `json:"passphrase,omitempty"` // text
	KDF        KDF    `json:"kdf"`
	RepoID     string `json:"repo_id"`
	GenID      string `json:"gen_id"`
	DEKID      string `json:"dek_id"`
	Check      string `json:"check"`
	KEK        string `json:"kek,omitempty"` // hex, on success: the derived KEK
	Wrapped    string `json:"wrapped"`       // hex: the object's bytes
	DEK        string `json:"dek,omitempty"` // hex, on success
}

// det returns n deterministic bytes for label: vectors regenerate the same.
func det(label string, n int) []byte {
	var out []byte
	for i := 0; len(out) < n; i++ {
		h := sha256.Sum256([]byte(fmt.Sprintf("snapcrypt test vector %s %d", label, i)))
		out = append(out, h[:]...)
	}
	return out[:n]
}

func makeWrapVectors() map[string]wrapVector {
	rid := [16]byte(det("repo", 16))
	gen := [8]byte(det("gen", 8))
	dekID := [16]byte(det("dek id", 16))
	dek := det("dek", KeySize)
	nonce := det("nonce", 24)
	rawKey := det("raw key", KeySize)
	raw, _ := NewRawKey(rawKey)
	pass, _ := NewPassphrase([]byte("correct horse battery staple"))
	rawKDF := KDF{Type: KDFRaw, Salt: hex.EncodeToString(det("raw salt", saltSize))}
	argKDF := KDF{Type: KDFArgon2id, Salt: hex.EncodeToString(det("argon salt", saltSize)), T: 1, M: 64, P: 1}

	mk := func(comment string, m *Material, kdf KDF, mutate func(v *wrapVector, w []byte) []byte) wrapVector {
		k, _ := deriveKEK(context.Background(), kdf, m, [16]byte{}, [8]byte{})
		kk := newKEK(k, rid, gen)
		w := kk.wrapNonce(rid, dekID, dek, nonce)
		v := wrapVector{
			Comment: comment, Expect: expectSuccess, KDF: kdf,
			RepoID: hex.EncodeToString(rid[:]), GenID: hex.EncodeToString(gen[:]), DEKID: hex.EncodeToString(dekID[:]),
			Check: hex.EncodeToString(kk.check), KEK: hex.EncodeToString(k[:]), DEK: hex.EncodeToString(dek),
		}
		if m.IsPassphrase() {
			v.Passphrase = string(m.pass)
		} else {
			v.RawKey = hex.EncodeToString(m.raw)
		}
		if mutate != nil {
			w = mutate(&v, bytes.Clone(w))
		}
		v.Wrapped = hex.EncodeToString(w)
		if v.Expect != expectSuccess {
			v.KEK, v.DEK = "", ""
		}
		return v
	}
	other, _ := NewRawKey(det("other key", KeySize))
	vs := map[string]wrapVector{
		"raw-success":      mk("raw key, raw kdf", raw, rawKDF, nil),
		"argon2id-success": mk("passphrase, argon2id t=1 m=64 p=1", pass, argKDF, nil),
		"wrong-key": mk("the generation's check value was made with another key", raw, rawKDF, func(v *wrapVector, w []byte) []byte {
			v.Expect = expectNoMatch
			k, _ := deriveKEK(context.Background(), rawKDF, other, [16]byte{}, [8]byte{})
			v.Check = hex.EncodeToString(checkValue(k, rid, gen))
			return w
		}),
		"wrong-passphrase": mk("passphrase differs by one character", pass, argKDF, func(v *wrapVector, w []byte) []byte {
			v.Expect = expectNoMatch
			v.Passphrase = "correct horse battery stapLe"
			return w
		}),
		"truncated": mk("last byte missing", raw, rawKDF, func(v *wrapVector, w []byte) []byte {
			v.Expect = expectBadFormat
			return w[:len(w)-1]
		}),
		"bad-magic": mk("magic SCWX", raw, rawKDF, func(v *wrapVector, w []byte) []byte {
			v.Expect = expectBadFormat
			w[3] = 'X'
			return w
		}),
		"bad-version": mk("version 2", raw, rawKDF, func(v *wrapVector, w []byte) []byte {
			v.Expect = expectBadFormat
			w[4] = 2
			return w
		}),
		"flipped-ciphertext": mk("one bit of the sealed DEK flipped", raw, rawKDF, func(v *wrapVector, w []byte) []byte {
			v.Expect = expectCorrupted
			w[wrapHeader+24] ^= 0x01
			return w
		}),
		"flipped-tag": mk("one bit of the tag flipped", raw, rawKDF, func(v *wrapVector, w []byte) []byte {
			v.Expect = expectCorrupted
			w[len(w)-1] ^= 0x80
			return w
		}),
		"flipped-nonce": mk("one bit of the nonce flipped", raw, rawKDF, func(v *wrapVector, w []byte) []byte {
			v.Expect = expectCorrupted
			w[wrapHeader] ^= 0x01
			return w
		}),
		"moved-dek-id": mk("object renamed to another DEK id (additional data)", raw, rawKDF, func(v *wrapVector, w []byte) []byte {
			v.Expect = expectCorrupted
			v.DEKID = hex.EncodeToString(det("another dek id", 16))
			return w
		}),
		"moved-generation": mk("object moved to another generation with the same key (additional data)", raw, rawKDF, func(v *wrapVector, w []byte) []byte {
			v.Expect = expectCorrupted
			g2 := [8]byte(det("another gen", 8))
			v.GenID = hex.EncodeToString(g2[:])
			k, _ := deriveKEK(context.Background(), rawKDF, raw, [16]byte{}, [8]byte{})
			v.Check = hex.EncodeToString(checkValue(k, rid, g2))
			return w
		}),
		"moved-repository": mk("object copied to another repository with the same key (additional data)", raw, rawKDF, func(v *wrapVector, w []byte) []byte {
			v.Expect = expectCorrupted
			r2 := [16]byte(det("another repo", 16))
			v.RepoID = hex.EncodeToString(r2[:])
			k, _ := deriveKEK(context.Background(), rawKDF, raw, [16]byte{}, [8]byte{})
			v.Check = hex.EncodeToString(checkValue(k, r2, gen))
			return w
		}),
	}
	return vs
}

const wrapVectorDir = "testdata/wrapped"

// runWrapVector runs a vector through every decoding stage and returns the
// outcome.
func runWrapVector(v wrapVector) (string, error) {
	var m *Material
	var err error
	if v.Passphrase != "" {
		m, err = NewPassphrase([]byte(v.Passphrase))
	} else {
		b, _ := hex.DecodeString(v.RawKey)
		m, err = NewRawKey(b)
	}
	if err != nil {
		return "", err
	}
	rid, err := parseRepoID(v.RepoID)
	if err != nil {
		return "", err
	}
	dekID, err := parseDEKID(v.DEKID)
	if err != nil {
		return "", err
	}
	g := &Generation{ID: v.GenID, KDF: v.KDF, Check: v.Check, State: StateCurrent, Created: time.Unix(1, 0)}
	if err := g.KDF.validate(); err != nil {
		return "", err
	}
	kk := matchKEK(context.Background(), g, m, rid)
	if kk == nil {
		return expectNoMatch, nil
	}
	if v.KEK != "" {
		raw, _ := deriveKEK(context.Background(), v.KDF, m, [16]byte{}, [8]byte{})
		if hex.EncodeToString(raw[:]) != v.KEK {
			return "", errors.New("derived KEK differs")
		}
	}
	w, _ := hex.DecodeString(v.Wrapped)
	if _, _, err := parseWrapped(w); err != nil {
		return expectBadFormat, nil
	}
	dek, err := kk.unwrap(rid, dekID, w)
	if err != nil {
		if !errors.Is(err, object.ErrCorrupt) {
			return "", fmt.Errorf("unwrap error %v does not wrap object.ErrCorrupt", err)
		}
		return expectCorrupted, nil
	}
	if hex.EncodeToString(dek) != v.DEK {
		return "", errors.New("unwrapped DEK differs")
	}
	return expectSuccess, nil
}

func loadWrapVectors(t testing.TB) map[string]wrapVector {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(wrapVectorDir, "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatalf("no vectors in %s (run go test -run TestWrapVectors -update)", wrapVectorDir)
	}
	out := map[string]wrapVector{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var v wrapVector
		d := json.NewDecoder(bytes.NewReader(b))
		d.DisallowUnknownFields()
		if err := d.Decode(&v); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		out[strings.TrimSuffix(filepath.Base(f), ".json")] = v
	}
	return out
}

func TestWrapVectors(t *testing.T) {
	gen := makeWrapVectors()
	if vectortest.Update() {
		os.MkdirAll(wrapVectorDir, 0o755)
		for name, v := range gen {
			b, _ := json.MarshalIndent(v, "", "  ")
			if err := os.WriteFile(filepath.Join(wrapVectorDir, name+".json"), append(b, '\n'), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	vs := loadWrapVectors(t)
	if len(vs) != len(gen) {
		t.Errorf("%d vectors stored, %d generated (run with -update)", len(vs), len(gen))
	}
	for name, v := range vs {
		got, err := runWrapVector(v)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if got != v.Expect {
			t.Errorf("%s: got %q, expect %q", name, got, v.Expect)
		}
		// The format is frozen: today's code must produce the stored bytes.
		if g, ok := gen[name]; !ok || g != v {
			t.Errorf("%s: stored vector differs from what the code produces now", name)
		}
	}
}

func FuzzParseWrapped(f *testing.F) {
	vs := loadWrapVectors(f)
	for _, v := range vs {
		b, _ := hex.DecodeString(v.Wrapped)
		f.Add(b)
	}
	v := vs["raw-success"]
	dekID, _ := parseDEKID(v.DEKID)
	kk, rid := packVectorKEK(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		nonce, sealed, err := parseWrapped(b)
		if err != nil {
			if _, uerr := kk.unwrap(rid, dekID, b); !errors.Is(uerr, object.ErrCorrupt) {
				t.Fatalf("unparseable bytes: unwrap error %v", uerr)
			}
			return
		}
		if len(b) != WrappedSize || len(nonce) != 24 || len(sealed) != KeySize+16 {
			t.Fatalf("parsed %d bytes: nonce %d sealed %d", len(b), len(nonce), len(sealed))
		}
		// Re-assembling the parts gives back the input.
		again := append(append([]byte(wrapMagic+"\x01"), nonce...), sealed...)
		if !bytes.Equal(again, b) {
			t.Fatal("parse/assemble differs")
		}
		dek, err := kk.unwrap(rid, dekID, b)
		if err == nil && hex.EncodeToString(dek) != v.DEK {
			t.Fatal("forged wrapped DEK unwrapped")
		}
	})
}
