package object

import (
	"bytes"
	"errors"
	"testing"
)

// vectorObjects returns the object of every known-answer vector, for seeding
// the fuzzers. It fails if none loaded.
func vectorObjects(f *testing.F) (objs [][]byte, vs []vector) {
	f.Helper()
	vs = loadVectors(f)
	for i := range vs {
		_, obj := vs[i].build(f)
		objs = append(objs, obj)
	}
	if len(objs) == 0 {
		f.Fatal("no fuzz seeds loaded from " + vectorsFile)
	}
	return objs, vs
}

func FuzzParseHeader(f *testing.F) {
	objs, _ := vectorObjects(f)
	for _, obj := range objs {
		f.Add(obj[:min(len(obj), HeaderSize+8)])
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := ParseHeader(b)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("ParseHeader error does not wrap ErrCorrupt: %v", err)
			}
			return
		}
		if got := h.Marshal(); !bytes.Equal(got, b[:HeaderSize]) {
			t.Fatalf("Marshal(ParseHeader(b)) = %x, want %x", got, b[:HeaderSize])
		}
	})
}

// FuzzOpen opens arbitrary bytes as an object (never panics, fails only with
// ErrCorrupt, and anything that opens is the canonical sealing of its
// plaintext), reads arbitrary ranges of it, and checks the Seal → Open and
// Seal → OpenRange round trips with the input as plaintext.
func FuzzOpen(f *testing.F) {
	objs, vs := vectorObjects(f)
	dek, name := vs[0].openDEK(f), vs[0].openName()
	opened := 0
	for i, obj := range objs {
		if len(obj) > 4096 {
			continue // large inputs stall the fuzzing engine; see bigPlain
		}
		f.Add(obj, int64(0), int64(len(obj)))
		f.Add(obj, int64(SegmentSize-3), int64(10))
		if vs[i].Expect == expectSuccess && bytes.Equal(vs[i].openDEK(f), dek) && vs[i].openName() == name {
			opened++
		}
	}
	if opened == 0 {
		f.Fatal("no seed opens with the fuzz DEK and name")
	}
	h := Header{Kind: KindPack, DEKID: [16]byte{1}, Salt: [32]byte{2}}
	sealer, err := NewCipher(dek, h, name)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, obj []byte, off, n int64) {
		off, n = max(off, 0)%(int64(len(obj))+2), max(n, 0)
		rangeOf := func(c *Cipher, obj []byte, size int64) ([]byte, error) {
			ctOff, ctLen, _ := CipherRange(off, n, size)
			if ctOff+ctLen > int64(len(obj)) {
				return nil, ErrCorrupt
			}
			return c.OpenRange(nil, obj[ctOff:ctOff+ctLen], off, n, size)
		}
		want := func(plain []byte) []byte {
			size := int64(len(plain))
			return plain[min(off, size):min(size, off+min(n, size))]
		}

		// Arbitrary bytes as an object.
		oh, plain, err := Open(dek, name, obj)
		if err != nil && !errors.Is(err, ErrCorrupt) {
			t.Fatalf("Open error does not wrap ErrCorrupt: %v", err)
		}
		if err == nil {
			again, err := Seal(dek, oh, name, plain)
			if err != nil || !bytes.Equal(again, obj) {
				t.Fatalf("opened object is not the sealing of its plaintext: %v", err)
			}
		}
		if ph, herr := ParseHeader(obj); herr == nil {
			c, cerr := NewCipher(dek, ph, name)
			if cerr != nil {
				t.Fatal(cerr)
			}
			if size, serr := PlaintextSize(int64(len(obj))); serr == nil {
				got, rerr := rangeOf(c, obj, size)
				if rerr != nil && !errors.Is(rerr, ErrCorrupt) {
					t.Fatalf("OpenRange error does not wrap ErrCorrupt: %v", rerr)
				}
				if err == nil && (rerr != nil || !bytes.Equal(got, want(plain))) {
					t.Fatalf("OpenRange(%d, %d) of a valid object: %v", off, n, rerr)
				}
			}
		}

		// The input as plaintext.
		sealed := sealer.Seal(nil, obj)
		if int64(len(sealed)) != CiphertextSize(int64(len(obj))) {
			t.Fatalf("sealed %d bytes, CiphertextSize %d", len(sealed), CiphertextSize(int64(len(obj))))
		}
		gh, got, err := Open(dek, name, sealed)
		if err != nil || gh != h || !bytes.Equal(got, obj) {
			t.Fatalf("Seal → Open round trip: %v", err)
		}
		got, err = rangeOf(sealer, sealed, int64(len(obj)))
		if err != nil || !bytes.Equal(got, want(obj)) {
			t.Fatalf("Seal → OpenRange(%d, %d) round trip: %v", off, n, err)
		}

		// A multi-segment plaintext made from the input: round trip,
		// ranged read, and one flipped bit anywhere must be caught.
		big := bigPlain(obj, int(uint64(n)%(3*SegmentSize+2)))
		sealed = sealer.Seal(sealed[:0], big)
		if _, got, err := Open(dek, name, sealed); err != nil || !bytes.Equal(got, big) {
			t.Fatalf("Seal → Open of %d bytes: %v", len(big), err)
		}
		got, err = rangeOf(sealer, sealed, int64(len(big)))
		if err != nil || !bytes.Equal(got, want(big)) {
			t.Fatalf("Seal → OpenRange(%d, %d) of %d bytes: %v", off, n, len(big), err)
		}
		pos := uint64(off)*0x9e3779b97f4a7c15 ^ uint64(n)
		sealed[pos%uint64(len(sealed))] ^= 1 << (pos >> 61)
		if _, _, err := Open(dek, name, sealed); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("flipped bit %d of byte %d of %d not caught: %v", pos>>61, pos%uint64(len(sealed)), len(sealed), err)
		}
	})
}

// bigPlain returns size bytes repeating seed (zeros if seed is empty).
func bigPlain(seed []byte, size int) []byte {
	b := make([]byte, size)
	if len(seed) > 0 {
		for i := 0; i < size; i += copy(b[i:], seed) {
		}
	}
	return b
}
