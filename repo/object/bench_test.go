package object

import (
	"crypto/aes"
	"crypto/cipher"
	"testing"
)

const benchSize = 16 << 20

func BenchmarkSeal(b *testing.B) {
	dek := testDEK(1)
	h := testHeader(b, KindPack)
	plain := testPlain(benchSize, 1)
	b.SetBytes(benchSize)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Seal(dek, h, testName, plain); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCipherSeal seals into a reused buffer, without key derivation.
func BenchmarkCipherSeal(b *testing.B) {
	h := testHeader(b, KindPack)
	c, err := NewCipher(testDEK(1), h, testName)
	if err != nil {
		b.Fatal(err)
	}
	plain := testPlain(benchSize, 1)
	buf := make([]byte, 0, CiphertextSize(benchSize))
	b.SetBytes(benchSize)
	b.ReportAllocs()
	for b.Loop() {
		buf = c.Seal(buf[:0], plain)
	}
}

func BenchmarkOpen(b *testing.B) {
	dek := testDEK(1)
	h := testHeader(b, KindPack)
	obj := seal(b, dek, h, testName, testPlain(benchSize, 1))
	b.SetBytes(benchSize)
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := Open(dek, testName, obj); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCipherOpen opens into a reused buffer, without key derivation.
func BenchmarkCipherOpen(b *testing.B) {
	h := testHeader(b, KindPack)
	c, err := NewCipher(testDEK(1), h, testName)
	if err != nil {
		b.Fatal(err)
	}
	obj := c.Seal(nil, testPlain(benchSize, 1))
	buf := make([]byte, 0, benchSize)
	b.SetBytes(benchSize)
	b.ReportAllocs()
	for b.Loop() {
		if buf, err = c.Open(buf[:0], obj); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkOpenRange reads 128 KiB at an unaligned offset (three segments)
// from a 16 MiB object, as a FUSE read handler does.
func BenchmarkOpenRange(b *testing.B) {
	h := testHeader(b, KindPack)
	c, err := NewCipher(testDEK(1), h, testName)
	if err != nil {
		b.Fatal(err)
	}
	obj := c.Seal(nil, testPlain(benchSize, 1))
	const off, n = 5*SegmentSize + 1000, 128 << 10
	ctOff, ctLen, _ := CipherRange(off, n, benchSize)
	ct := obj[ctOff : ctOff+ctLen]
	buf := make([]byte, 0, 3*SegmentSize)
	b.SetBytes(n)
	b.ReportAllocs()
	for b.Loop() {
		if buf, err = c.OpenRange(buf[:0], ct, off, n, benchSize); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkGCM is the baseline: raw AES-256-GCM over the same bytes in
// 64 KiB calls, no framing.
func BenchmarkGCM(b *testing.B) {
	block, _ := aes.NewCipher(testDEK(1))
	aead, _ := cipher.NewGCM(block)
	plain := testPlain(benchSize, 1)
	out := make([]byte, CiphertextSize(benchSize))
	nonce := make([]byte, 12)
	b.SetBytes(benchSize)
	for b.Loop() {
		pos := 0
		for i := 0; i < benchSize; i += SegmentSize {
			aead.Seal(out[pos:pos], nonce, plain[i:i+SegmentSize], nil)
			pos += SealedSegmentSize
		}
	}
}

// BenchmarkNewCipher is the per-object setup: HKDF, AES key schedule, GCM.
func BenchmarkNewCipher(b *testing.B) {
	dek := testDEK(1)
	h := testHeader(b, KindPack)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := NewCipher(dek, h, testName); err != nil {
			b.Fatal(err)
		}
	}
}
