package object

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
)

const testName = "data/ab/ab01020304050607080910111213141516171819202122232425262728293031"

func testDEK(seed byte) []byte {
	dek := make([]byte, KeySize)
	for i := range dek {
		dek[i] = seed + byte(i)
	}
	return dek
}

func testHeader(t testing.TB, kind Kind) Header {
	t.Helper()
	h, err := NewHeader(kind, [16]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func testPlain(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 0x5eed))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func seal(t testing.TB, dek []byte, h Header, name string, plain []byte) []byte {
	t.Helper()
	obj, err := Seal(dek, h, name, plain)
	if err != nil {
		t.Fatal(err)
	}
	return obj
}

var testSizes = []int{
	0, 1, 15, 16, 17,
	SegmentSize - 1, SegmentSize, SegmentSize + 1,
	2*SegmentSize - 1, 2 * SegmentSize, 3 * SegmentSize, 3*SegmentSize + 7,
}

func TestRoundTrip(t *testing.T) {
	sizes := append([]int(nil), testSizes...)
	r := rand.New(rand.NewPCG(1, 2))
	for range 5 {
		sizes = append(sizes, r.IntN(5*SegmentSize))
	}
	dek := testDEK(7)
	for _, size := range sizes {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			plain := testPlain(size, uint64(size))
			h := testHeader(t, KindPack)
			obj := seal(t, dek, h, testName, plain)
			if got, want := int64(len(obj)), CiphertextSize(int64(size)); got != want {
				t.Fatalf("len(obj) = %d, CiphertextSize = %d", got, want)
			}
			if got, err := PlaintextSize(int64(len(obj))); err != nil || got != int64(size) {
				t.Fatalf("PlaintextSize(%d) = %d, %v; want %d", len(obj), got, err, size)
			}
			if !bytes.Equal(obj[:HeaderSize], h.Marshal()) {
				t.Fatal("object does not start with the header")
			}
			gh, got, err := Open(dek, testName, obj)
			if err != nil {
				t.Fatal(err)
			}
			if gh != h {
				t.Fatalf("header = %+v, want %+v", gh, h)
			}
			if !bytes.Equal(got, plain) {
				t.Fatal("plaintext differs")
			}
			// Appending to a dst with spare capacity keeps the prefix.
			c, err := NewCipher(dek, h, testName)
			if err != nil {
				t.Fatal(err)
			}
			prefix := []byte("prefix")
			dst := append(make([]byte, 0, 1<<20), prefix...)
			got, err = c.Open(dst, obj)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, append(prefix, plain...)) {
				t.Fatal("Open with dst: wrong result")
			}
			if sealed := c.Seal(prefix, plain); !bytes.Equal(sealed, append(prefix, obj...)) {
				t.Fatal("Cipher.Seal with dst: wrong result")
			}
		})
	}
}

func TestSealIsDeterministicForAHeader(t *testing.T) {
	h := testHeader(t, KindIndex)
	plain := testPlain(100, 1)
	a := seal(t, testDEK(1), h, testName, plain)
	b := seal(t, testDEK(1), h, testName, plain)
	if !bytes.Equal(a, b) {
		t.Fatal("same header, DEK, name and plaintext sealed differently")
	}
	h2 := testHeader(t, KindIndex)
	if h2.Salt == h.Salt {
		t.Fatal("NewHeader returned the same salt twice")
	}
	if c := seal(t, testDEK(1), h2, testName, plain); bytes.Equal(a[HeaderSize:], c[HeaderSize:]) {
		t.Fatal("different salts gave the same ciphertext")
	}
}

func TestHeader(t *testing.T) {
	h := testHeader(t, KindSnapshot)
	b := h.Marshal()
	if len(b) != HeaderSize {
		t.Fatalf("len(Marshal) = %d, want %d", len(b), HeaderSize)
	}
	if HeaderSize != 57 {
		t.Fatalf("HeaderSize = %d, want 57", HeaderSize)
	}
	if string(b[:8]) != "SNAPCRY\x01" || b[8] != 3 {
		t.Fatalf("header bytes %x", b)
	}
	got, err := ParseHeader(append(b, 0xff))
	if err != nil || got != h {
		t.Fatalf("ParseHeader = %+v, %v", got, err)
	}
	bad := map[string][]byte{
		"short":        b[:HeaderSize-1],
		"empty":        nil,
		"magic":        append([]byte("SNAPCRY\x02"), b[8:]...),
		"kind 0":       append(append([]byte(Magic), 0), b[9:]...),
		"kind 5":       append(append([]byte(Magic), 5), b[9:]...),
		"kind 255":     append(append([]byte(Magic), 255), b[9:]...),
		"lower magic":  append([]byte("snapcry\x01"), b[8:]...),
		"magic prefix": []byte(Magic),
	}
	for name, b := range bad {
		if _, err := ParseHeader(b); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: ParseHeader error = %v, want ErrCorrupt", name, err)
		}
	}
	for _, k := range []Kind{0, 5, 255} {
		if _, err := NewHeader(k, [16]byte{}); err == nil {
			t.Errorf("NewHeader(%d) succeeded", k)
		}
		if _, err := NewCipher(testDEK(0), Header{Kind: k}, "x"); err == nil {
			t.Errorf("NewCipher with kind %d succeeded", k)
		}
	}
}

func TestBadDEK(t *testing.T) {
	h := testHeader(t, KindPack)
	for _, n := range []int{0, 16, 31, 33, 64} {
		if _, err := Seal(make([]byte, n), h, "x", nil); err == nil {
			t.Errorf("Seal with %d-byte DEK succeeded", n)
		}
		if _, err := NewCipher(make([]byte, n), h, "x"); err == nil {
			t.Errorf("NewCipher with %d-byte DEK succeeded", n)
		}
	}
}

func TestSizes(t *testing.T) {
	const H, S, T int64 = HeaderSize, SegmentSize, TagSize
	cases := []struct{ plain, obj int64 }{
		{0, H + T},
		{1, H + 1 + T},
		{S - 1, H + S - 1 + T},
		{S, H + S + T},
		{S + 1, H + S + 1 + 2*T},
		{2 * S, H + 2*S + 2*T},
		{3*S + 5, H + 3*S + 5 + 4*T},
	}
	for _, c := range cases {
		if got := CiphertextSize(c.plain); got != c.obj {
			t.Errorf("CiphertextSize(%d) = %d, want %d", c.plain, got, c.obj)
		}
		if got, err := PlaintextSize(c.obj); err != nil || got != c.plain {
			t.Errorf("PlaintextSize(%d) = %d, %v; want %d", c.obj, got, err, c.plain)
		}
	}
	// Every object length maps back to itself or is rejected.
	for n := int64(0); n < 3*(S+T)+100; n++ {
		p, err := PlaintextSize(n)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("PlaintextSize(%d): %v, want ErrCorrupt", n, err)
			}
			continue
		}
		if CiphertextSize(p) != n {
			t.Fatalf("PlaintextSize(%d) = %d, CiphertextSize of that = %d", n, p, CiphertextSize(p))
		}
	}
	impossible := []int64{-1, 0, H, H + T - 1, H + S + T + 1, H + S + T + T, H + 2*(S+T) + T, H + S + T + 15}
	for _, n := range impossible {
		if _, err := PlaintextSize(n); !errors.Is(err, ErrCorrupt) {
			t.Errorf("PlaintextSize(%d) = %v, want ErrCorrupt", n, err)
		}
	}
}

// tamper is one way of damaging a sealed object; obj is the object of a
// 3-segment plaintext (last segment partial).
type tamper struct {
	name string
	fn   func(obj []byte) []byte
}

func segBounds(obj []byte, s int) (lo, hi int) {
	lo = HeaderSize + s*SealedSegmentSize
	hi = min(lo+SealedSegmentSize, len(obj))
	return lo, hi
}

func flipBit(off, bit int) func([]byte) []byte {
	return func(obj []byte) []byte {
		obj = bytes.Clone(obj)
		i := off
		if i < 0 {
			i += len(obj)
		}
		obj[i] ^= 1 << bit
		return obj
	}
}

func tampers(obj []byte) []tamper {
	plainLen, err := PlaintextSize(int64(len(obj)))
	if err != nil {
		panic(err)
	}
	nseg := int(numSegments(plainLen))
	ts := []tamper{
		{"flip magic", flipBit(0, 0)},
		{"flip version", flipBit(7, 1)},
		{"flip kind", flipBit(8, 0)},
		{"kind to other valid", func(o []byte) []byte { o = bytes.Clone(o); o[8] = byte(KindIndex); return o }},
		{"flip dek id", flipBit(9, 3)},
		{"flip salt", flipBit(HeaderSize-1, 7)},
		{"flip last tag byte", flipBit(-1, 0)},
		{"truncate header", func(o []byte) []byte { return o[:HeaderSize-1] }},
		{"header only", func(o []byte) []byte { return o[:HeaderSize] }},
		{"truncate mid-tag", func(o []byte) []byte { return o[:len(o)-1] }},
		{"empty", func(o []byte) []byte { return nil }},
		{"append byte", func(o []byte) []byte { return append(bytes.Clone(o), 0) }},
		{"append empty segment", func(o []byte) []byte { return append(bytes.Clone(o), make([]byte, TagSize)...) }},
	}
	for s := range nseg {
		lo, hi := segBounds(obj, s)
		ts = append(ts,
			tamper{fmt.Sprintf("flip seg %d first byte", s), flipBit(lo, 2)},
			tamper{fmt.Sprintf("flip seg %d tag", s), flipBit(hi-1, 5)},
			tamper{fmt.Sprintf("flip seg %d middle", s), flipBit((lo+hi)/2, 4)},
		)
	}
	if nseg >= 2 {
		lo1, hi1 := segBounds(obj, 1)
		lo2, _ := segBounds(obj, nseg-1)
		ts = append(ts,
			tamper{"truncate at segment boundary 1", func(o []byte) []byte { return o[:lo1] }},
			tamper{"drop last segment", func(o []byte) []byte { return o[:lo2] }},
			tamper{"truncate mid-segment 1", func(o []byte) []byte { return o[:(lo1+hi1)/2] }},
			tamper{"truncate mid-segment 0", func(o []byte) []byte { return o[:HeaderSize+100] }},
			tamper{"swap segments 0 and 1", func(o []byte) []byte {
				o = bytes.Clone(o)
				a := o[HeaderSize : HeaderSize+SealedSegmentSize]
				b := o[lo1 : lo1+SealedSegmentSize]
				tmp := bytes.Clone(a)
				copy(a, b)
				copy(b, tmp)
				return o
			}},
			tamper{"duplicate segment 0", func(o []byte) []byte {
				o = bytes.Clone(o)
				copy(o[lo1:lo1+SealedSegmentSize], o[HeaderSize:HeaderSize+SealedSegmentSize])
				return o
			}},
			tamper{"append copy of segment 0", func(o []byte) []byte {
				return append(bytes.Clone(o), o[HeaderSize:HeaderSize+SealedSegmentSize]...)
			}},
		)
	}
	if nseg >= 3 {
		ts = append(ts, tamper{"reorder 0,1,2 to 1,2,0 (full segments)", func(o []byte) []byte {
			o = bytes.Clone(o)
			var s [3][]byte
			for i := range s {
				lo := HeaderSize + i*SealedSegmentSize
				s[i] = bytes.Clone(o[lo : lo+SealedSegmentSize])
			}
			copy(o[HeaderSize:], s[1])
			copy(o[HeaderSize+SealedSegmentSize:], s[2])
			copy(o[HeaderSize+2*SealedSegmentSize:], s[0])
			return o
		}})
	}
	return ts
}

func TestTamper(t *testing.T) {
	dek := testDEK(1)
	h := testHeader(t, KindPack)
	for _, size := range []int{0, 100, SegmentSize, 3 * SegmentSize, 3*SegmentSize + 100} {
		plain := testPlain(size, 3)
		obj := seal(t, dek, h, testName, plain)
		if _, _, err := Open(dek, testName, obj); err != nil {
			t.Fatalf("size %d: untampered object: %v", size, err)
		}
		for _, tc := range tampers(obj) {
			t.Run(fmt.Sprintf("%d/%s", size, tc.name), func(t *testing.T) {
				bad := tc.fn(obj)
				if bytes.Equal(bad, obj) {
					t.Fatal("tamper did not change the object")
				}
				if _, _, err := Open(dek, testName, bad); !errors.Is(err, ErrCorrupt) {
					t.Fatalf("Open error = %v, want ErrCorrupt", err)
				}
				// The cipher of the genuine header rejects it too, both
				// whole and through ranged reads over the claimed size.
				c, err := NewCipher(dek, h, testName)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := c.Open(nil, bad); !errors.Is(err, ErrCorrupt) {
					t.Fatalf("Cipher.Open error = %v, want ErrCorrupt", err)
				}
			})
		}
	}
}

func TestWrongContext(t *testing.T) {
	dek := testDEK(1)
	h := testHeader(t, KindPack)
	plain := testPlain(2*SegmentSize+10, 4)
	obj := seal(t, dek, h, testName, plain)
	other := seal(t, dek, h, testName+"x", plain)
	cases := map[string]func() error{
		"wrong name": func() error { _, _, err := Open(dek, "data/00/00", obj); return err },
		"name prefix": func() error {
			_, _, err := Open(dek, testName[:len(testName)-1], obj)
			return err
		},
		"wrong DEK": func() error { _, _, err := Open(testDEK(2), testName, obj); return err },
		"object of another name": func() error {
			_, _, err := Open(dek, testName, other)
			return err
		},
		"segment from another object": func() error {
			o := bytes.Clone(obj)
			copy(o[HeaderSize:], other[HeaderSize:HeaderSize+SealedSegmentSize])
			_, _, err := Open(dek, testName, o)
			return err
		},
		"segment from same name, other salt": func() error {
			o2 := seal(t, dek, testHeader(t, KindPack), testName, plain)
			o := bytes.Clone(obj)
			copy(o[HeaderSize:], o2[HeaderSize:HeaderSize+SealedSegmentSize])
			_, _, err := Open(dek, testName, o)
			return err
		},
		"ranged read with wrong plainSize": func() error {
			c, _ := NewCipher(dek, h, testName)
			size := int64(len(plain)) - 1
			off, n, _ := CipherRange(0, size, size)
			_, err := c.OpenRange(nil, obj[off:off+n], 0, size, size)
			return err
		},
		"ranged read with larger plainSize": func() error {
			c, _ := NewCipher(dek, h, testName)
			size := int64(len(plain)) + SegmentSize
			off, n, _ := CipherRange(2*SegmentSize, SegmentSize, size)
			_, err := c.OpenRange(nil, obj[off:min(off+n, int64(len(obj)))], 2*SegmentSize, SegmentSize, size)
			return err
		},
	}
	for name, fn := range cases {
		if err := fn(); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: error = %v, want ErrCorrupt", name, err)
		}
	}
}

func TestOpenRange(t *testing.T) {
	dek := testDEK(9)
	for _, size := range []int{0, 1, 100, SegmentSize - 1, SegmentSize, SegmentSize + 1, 3 * SegmentSize, 3*SegmentSize + 1234} {
		plain := testPlain(size, uint64(size)+1)
		h := testHeader(t, KindPack)
		obj := seal(t, dek, h, testName, plain)
		c, err := NewCipher(dek, h, testName)
		if err != nil {
			t.Fatal(err)
		}
		ps := int64(size)
		points := []int64{0, 1, 2, SegmentSize - 1, SegmentSize, SegmentSize + 1, 2*SegmentSize - 1, 2 * SegmentSize, ps - 1, ps, ps + 1, ps + SegmentSize}
		lengths := []int64{0, 1, 2, 100, SegmentSize - 1, SegmentSize, SegmentSize + 1, 2 * SegmentSize, ps, ps + 1, 1 << 62}
		r := rand.New(rand.NewPCG(uint64(size), 7))
		for range 20 {
			points = append(points, r.Int64N(ps+2))
			lengths = append(lengths, r.Int64N(ps+2))
		}
		for _, off := range points {
			if off < 0 {
				continue
			}
			for _, n := range lengths {
				if n < 0 {
					continue
				}
				ctOff, ctLen, first := CipherRange(off, n, ps)
				if ctOff < HeaderSize || ctOff+ctLen > int64(len(obj)) || ctLen < TagSize {
					t.Fatalf("size %d: CipherRange(%d, %d) = %d, %d outside the object (%d bytes)", size, off, n, ctOff, ctLen, len(obj))
				}
				if want := HeaderSize + first*SealedSegmentSize; ctOff != want {
					t.Fatalf("size %d: CipherRange(%d, %d): ctOff %d, first %d", size, off, n, ctOff, first)
				}
				got, err := c.OpenRange([]byte("p"), obj[ctOff:ctOff+ctLen], off, n, ps)
				if err != nil {
					t.Fatalf("size %d: OpenRange(%d, %d): %v", size, off, n, err)
				}
				lo, hi := min(off, ps), min(ps, off+min(n, ps))
				if want := append([]byte("p"), plain[lo:hi]...); !bytes.Equal(got, want) {
					t.Fatalf("size %d: OpenRange(%d, %d) = %d bytes, want %d", size, off, n, len(got)-1, len(want)-1)
				}
				// Damage in the returned ciphertext is always caught.
				bad := bytes.Clone(obj[ctOff : ctOff+ctLen])
				bad[len(bad)-1] ^= 1
				if _, err := c.OpenRange(nil, bad, off, n, ps); !errors.Is(err, ErrCorrupt) {
					t.Fatalf("size %d: OpenRange(%d, %d) of damaged ciphertext: %v", size, off, n, err)
				}
				if _, err := c.OpenRange(nil, bad[:len(bad)-1], off, n, ps); !errors.Is(err, ErrCorrupt) {
					t.Fatalf("size %d: OpenRange(%d, %d) of short ciphertext: %v", size, off, n, err)
				}
			}
		}
		if _, err := c.OpenRange(nil, nil, -1, 1, ps); err == nil {
			t.Fatal("negative offset accepted")
		}
		if _, err := c.OpenRange(nil, nil, 0, -1, ps); err == nil {
			t.Fatal("negative length accepted")
		}
	}
}

// TestRangeFinalSegmentFlag checks that a ranged read of the final segment
// fails when the object was cut at a segment boundary and the reader
// believes the shorter size (the final flag is missing), and that a read of
// a middle segment fails if the reader believes it is the last.
func TestRangeFinalSegmentFlag(t *testing.T) {
	dek := testDEK(3)
	h := testHeader(t, KindPack)
	plain := testPlain(3*SegmentSize, 5)
	obj := seal(t, dek, h, testName, plain)
	c, _ := NewCipher(dek, h, testName)
	short := int64(2 * SegmentSize) // as if the last segment were dropped
	for _, off := range []int64{SegmentSize, short - 1, short, short + 10} {
		ctOff, ctLen, _ := CipherRange(off, 10, short)
		if _, err := c.OpenRange(nil, obj[ctOff:ctOff+ctLen], off, 10, short); !errors.Is(err, ErrCorrupt) {
			t.Errorf("read at %d with truncated size: %v, want ErrCorrupt", off, err)
		}
	}
	// Reads that do not reach the end cannot see the truncation; they
	// still succeed, as in any STREAM construction.
	ctOff, ctLen, _ := CipherRange(0, 10, short)
	if _, err := c.OpenRange(nil, obj[ctOff:ctOff+ctLen], 0, 10, short); err != nil {
		t.Errorf("read of first segment: %v", err)
	}
}

// TestCipherConcurrent shares one Cipher between goroutines (run with -race).
func TestCipherConcurrent(t *testing.T) {
	h := testHeader(t, KindPack)
	c, err := NewCipher(testDEK(4), h, testName)
	if err != nil {
		t.Fatal(err)
	}
	plain := testPlain(4*SegmentSize+77, 8)
	obj := c.Seal(nil, plain)
	size := int64(len(plain))
	errs := make(chan error, 8)
	for g := range 8 {
		go func() {
			for i := range 50 {
				off := int64((g*50+i)*4099) % size
				ctOff, ctLen, _ := CipherRange(off, 70000, size)
				got, err := c.OpenRange(nil, obj[ctOff:ctOff+ctLen], off, 70000, size)
				if err == nil && !bytes.Equal(got, plain[off:min(size, off+70000)]) {
					err = fmt.Errorf("OpenRange(%d): wrong plaintext", off)
				}
				if err == nil && i%10 == 0 {
					_, err = c.Open(nil, c.Seal(nil, plain[:off]))
				}
				if err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

func TestOpenSegments(t *testing.T) {
	dek := make([]byte, KeySize)
	h, err := NewHeader(KindPack, [16]byte{1})
	if err != nil {
		t.Fatal(err)
	}
	for _, size := range []int64{0, 1, SegmentSize, SegmentSize + 1, 3*SegmentSize + 17} {
		plain := make([]byte, size)
		for i := range plain {
			plain[i] = byte(i * 7)
		}
		obj, err := Seal(dek, h, "p", plain)
		if err != nil {
			t.Fatal(err)
		}
		c, err := NewCipher(dek, h, "p")
		if err != nil {
			t.Fatal(err)
		}
		for first := int64(0); first < numSegments(size); first++ {
			ctOff, ctLen, seg := CipherRange(first*SegmentSize, size, size)
			if seg != first {
				t.Fatalf("CipherRange first segment %d, want %d", seg, first)
			}
			ct := append([]byte(nil), obj[ctOff:ctOff+ctLen]...)
			segs, err := c.OpenSegments(ct, first, size)
			if err != nil {
				t.Fatalf("size %d first %d: %v", size, first, err)
			}
			var got []byte
			for _, s := range segs {
				got = append(got, s...)
			}
			if string(got) != string(plain[first*SegmentSize:]) {
				t.Fatalf("size %d first %d: wrong plaintext", size, first)
			}
			// Tampering, truncation and a wrong segment number are caught.
			ct = append([]byte(nil), obj[ctOff:ctOff+ctLen]...)
			ct[len(ct)/2] ^= 1
			if _, err := c.OpenSegments(ct, first, size); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("tampered: %v", err)
			}
			ct = append([]byte(nil), obj[ctOff:ctOff+ctLen-1]...)
			if _, err := c.OpenSegments(ct, first, size); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("truncated: %v", err)
			}
			if numSegments(size) > 1 {
				ct = append([]byte(nil), obj[ctOff:ctOff+ctLen]...)
				if _, err := c.OpenSegments(ct, (first+1)%numSegments(size), size); !errors.Is(err, ErrCorrupt) {
					t.Fatalf("wrong segment number: %v", err)
				}
			}
		}
	}
}

func TestOpenSegment(t *testing.T) {
	dek := testDEK(3)
	h := testHeader(t, KindPack)
	for _, size := range []int64{0, 1, SegmentSize, SegmentSize + 1, 3*SegmentSize + 17} {
		plain := testPlain(int(size), uint64(size))
		obj := seal(t, dek, h, "p", plain)
		c, err := NewCipher(dek, h, "p")
		if err != nil {
			t.Fatal(err)
		}
		final := numSegments(size) - 1
		for s := int64(0); s <= final; s++ {
			lo := s * SegmentSize
			hi := min(lo+SegmentSize, size)
			ctOff, ctLen, _ := CipherRange(lo, hi-lo, size)
			if size == 0 {
				ctOff, ctLen, _ = CipherRange(0, 0, 0)
			}
			sealed := obj[ctOff : ctOff+ctLen]
			// Into a buffer of its own, after what it holds already.
			got, err := c.OpenSegment([]byte("x"), sealed, s, size)
			if err != nil || string(got) != "x"+string(plain[lo:hi]) {
				t.Fatalf("size %d segment %d: %v (%d bytes)", size, s, err, len(got))
			}
			// In place.
			ct := append([]byte(nil), sealed...)
			if got, err := c.OpenSegment(ct[:0], ct, s, size); err != nil || string(got) != string(plain[lo:hi]) {
				t.Fatalf("size %d segment %d in place: %v", size, s, err)
			}
			// Tampered, cut short, numbered wrong, the final flag wrong.
			ct = append([]byte(nil), sealed...)
			ct[len(ct)-1] ^= 1
			bad := map[string]func() ([]byte, error){
				"tampered":     func() ([]byte, error) { return c.OpenSegment(nil, ct, s, size) },
				"short":        func() ([]byte, error) { return c.OpenSegment(nil, sealed[:len(sealed)-1], s, size) },
				"past the end": func() ([]byte, error) { return c.OpenSegment(nil, sealed, final+1, size) },
			}
			if s == final { // no longer final, or of another length
				bad["other size"] = func() ([]byte, error) { return c.OpenSegment(nil, sealed, s, size+SegmentSize) }
			}
			if final > 0 {
				bad["other number"] = func() ([]byte, error) { return c.OpenSegment(nil, sealed, (s+1)%(final+1), size) }
			}
			for what, open := range bad {
				if out, err := open(); !errors.Is(err, ErrCorrupt) || out != nil {
					t.Errorf("size %d segment %d %s: %v, %d bytes; want ErrCorrupt", size, s, what, err, len(out))
				}
			}
		}
	}
}
