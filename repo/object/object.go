// Package object implements the sealed-object format of a snapcrypt
// repository: a fixed header followed by the plaintext encrypted in 64 KiB
// segments with AES-256-GCM in the STREAM construction (a segment counter and
// a last-segment flag in the nonce).
//
// The per-object key is derived from a DEK and the header's random salt with
// HKDF-SHA256, so nonces never repeat across objects without any bookkeeping.
// The additional data of every segment is the header bytes followed by the
// object name, so neither segments nor whole objects can be moved, swapped,
// truncated or extended without detection.
//
// Every authentication or format failure returns an error wrapping
// ErrCorrupt, and says nothing more about why authentication failed.
//
// The byte-level format is specified in docs/format.md, section "sealed
// objects".
package object

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"golang.org/x/crypto/hkdf"
)

const (
	// SegmentSize is the plaintext size of every segment but the last.
	SegmentSize = 64 << 10
	// TagSize is the AES-GCM tag appended to every segment.
	TagSize = 16
	// SealedSegmentSize is the ciphertext size of a full segment.
	SealedSegmentSize = SegmentSize + TagSize
	// KeySize is the length of a DEK.
	KeySize = 32
	// Magic starts every sealed object: "SNAPCRY" and the format version 1.
	Magic = "SNAPCRY\x01"
	// HeaderSize is the fixed length of a marshalled Header: magic, kind,
	// DEK id, salt.
	HeaderSize = 8 + 1 + 16 + 32
	// kdfInfo is the HKDF info string of the per-object key.
	kdfInfo   = "snapcrypt object v1"
	nonceSize = 12
)

// ErrCorrupt is wrapped by every error that reports an object that fails
// authentication or does not follow the format. It is snapcrypt's one
// error for damaged repository bytes: packages repo (config, trees,
// indexes, packs) and keys (keyring, wrapped DEKs, DEK packs, leases) wrap
// it too, and the command line maps it to exit code 5.
var ErrCorrupt = errors.New("corrupted or tampered with")

// Kind says what a sealed object holds. It is authenticated with the header.
type Kind byte

// Object kinds. ParseHeader rejects any other value.
const (
	KindPack     Kind = 1
	KindIndex    Kind = 2
	KindSnapshot Kind = 3
	KindMark     Kind = 4 // a prune's plan (docs/prune.md)
)

func (k Kind) valid() bool { return k >= KindPack && k <= KindMark }

func (k Kind) String() string {
	switch k {
	case KindPack:
		return "pack"
	case KindIndex:
		return "index"
	case KindSnapshot:
		return "snapshot"
	case KindMark:
		return "mark"
	}
	return fmt.Sprintf("kind(%d)", byte(k))
}

// Header is the plaintext header of a sealed object. It is authenticated as
// part of every segment's additional data.
type Header struct {
	Kind  Kind
	DEKID [16]byte // names the DEK the object key is derived from
	Salt  [32]byte // random per object; HKDF salt of the object key
}

// NewHeader returns a header of the given kind with a fresh random salt.
func NewHeader(kind Kind, dekID [16]byte) (Header, error) {
	if !kind.valid() {
		return Header{}, fmt.Errorf("new object header: unknown kind %d", byte(kind))
	}
	h := Header{Kind: kind, DEKID: dekID}
	if _, err := io.ReadFull(rand.Reader, h.Salt[:]); err != nil {
		return Header{}, fmt.Errorf("new object header: reading random salt: %w", err)
	}
	return h, nil
}

// ParseHeader parses the first HeaderSize bytes of b (b may be a whole
// object). It fails with ErrCorrupt if b is short, the magic is wrong or the
// kind is unknown.
func ParseHeader(b []byte) (Header, error) {
	if len(b) < HeaderSize {
		return Header{}, fmt.Errorf("sealed object header: short (%d bytes): %w", len(b), ErrCorrupt)
	}
	if string(b[:len(Magic)]) != Magic {
		return Header{}, fmt.Errorf("sealed object header: bad magic: %w", ErrCorrupt)
	}
	b = b[len(Magic):]
	h := Header{Kind: Kind(b[0])}
	if !h.Kind.valid() {
		return Header{}, fmt.Errorf("sealed object header: unknown kind %d: %w", b[0], ErrCorrupt)
	}
	copy(h.DEKID[:], b[1:17])
	copy(h.Salt[:], b[17:49])
	return h, nil
}

// Marshal returns the HeaderSize bytes of h.
func (h Header) Marshal() []byte {
	return h.appendTo(make([]byte, 0, HeaderSize))
}

func (h Header) appendTo(b []byte) []byte {
	b = append(b, Magic...)
	b = append(b, byte(h.Kind))
	b = append(b, h.DEKID[:]...)
	return append(b, h.Salt[:]...)
}

// numSegments returns the number of segments of a plaintext of plainLen
// bytes: ceil(plainLen/SegmentSize), and 1 for an empty plaintext.
func numSegments(plainLen int64) int64 {
	if plainLen == 0 {
		return 1
	}
	return (plainLen + SegmentSize - 1) / SegmentSize
}

// CiphertextSize returns the length of the sealed object (header included)
// of a plaintext of plainLen bytes. plainLen must not be negative.
func CiphertextSize(plainLen int64) int64 {
	return int64(HeaderSize) + plainLen + numSegments(plainLen)*TagSize
}

// PlaintextSize returns the plaintext length of a sealed object of objectLen
// bytes (header included). It fails with ErrCorrupt if no plaintext seals to
// that length.
func PlaintextSize(objectLen int64) (int64, error) {
	n := objectLen - int64(HeaderSize)
	if n < TagSize {
		return 0, fmt.Errorf("sealed object: impossible length %d: %w", objectLen, ErrCorrupt)
	}
	full, rest := n/SealedSegmentSize, n%SealedSegmentSize
	switch {
	case rest == 0:
		return full * SegmentSize, nil
	case rest < TagSize, rest == TagSize && full > 0:
		// A partial tag, or an empty last segment after full ones.
		return 0, fmt.Errorf("sealed object: impossible length %d: %w", objectLen, ErrCorrupt)
	}
	return full*SegmentSize + rest - TagSize, nil
}

// clip returns the segments first..last that cover plaintext [off, off+n)
// clipped to [0, plainSize), and the clipped bounds. An empty clipped range
// is covered by the final segment, so that reading at or past the end still
// authenticates where the object ends.
func clip(off, n, plainSize int64) (first, last, start, end int64) {
	final := numSegments(plainSize) - 1
	if off < 0 || n <= 0 || off >= plainSize {
		return final, final, plainSize, plainSize
	}
	end = plainSize
	if n < plainSize-off {
		end = off + n
	}
	return off / SegmentSize, (end - 1) / SegmentSize, off, end
}

// segmentPlainSize returns the plaintext size of segment s, final being the
// index of the final segment.
func segmentPlainSize(s, final, plainSize int64) int64 {
	if s < final {
		return SegmentSize
	}
	return plainSize - final*SegmentSize
}

// CipherRange returns which bytes of a sealed object (ctOff and ctLen,
// relative to the start of the object) hold the segments covering plaintext
// [off, off+n), clipped to the plaintext size plainSize, and the index of the
// first of those segments. A range that is empty after clipping (including
// one at or past the end) is covered by the final segment, which OpenRange
// authenticates to confirm where the object ends.
func CipherRange(off, n, plainSize int64) (ctOff, ctLen int64, firstSeg int64) {
	if plainSize < 0 {
		plainSize = 0
	}
	first, last, _, _ := clip(off, n, plainSize)
	final := numSegments(plainSize) - 1
	ctOff = int64(HeaderSize) + first*SealedSegmentSize
	ctEnd := int64(HeaderSize) + last*SealedSegmentSize + segmentPlainSize(last, final, plainSize) + TagSize
	return ctOff, ctEnd - ctOff, first
}

// Cipher seals and opens one object: it holds the per-object AEAD derived
// from the DEK and the header, and the additional data (header and name).
// It is safe for concurrent use.
type Cipher struct {
	aead   cipher.AEAD
	header Header
	ad     []byte // header bytes || name
}

// NewCipher derives the key of the object with header h and the given name
// from dek, which must be KeySize bytes.
func NewCipher(dek []byte, h Header, name string) (*Cipher, error) {
	if len(dek) != KeySize {
		return nil, fmt.Errorf("object cipher: DEK is %d bytes, want %d", len(dek), KeySize)
	}
	if !h.Kind.valid() {
		return nil, fmt.Errorf("object cipher: unknown kind %d", byte(h.Kind))
	}
	key := make([]byte, 32)
	if _, err := io.ReadFull(hkdf.New(sha256.New, dek, h.Salt[:], []byte(kdfInfo)), key); err != nil {
		return nil, fmt.Errorf("object cipher: deriving key: %w", err)
	}
	block, err := aes.NewCipher(key)
	clear(key)
	if err != nil {
		return nil, fmt.Errorf("object cipher: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("object cipher: %w", err)
	}
	ad := h.appendTo(make([]byte, 0, HeaderSize+len(name)))
	ad = append(ad, name...)
	return &Cipher{aead: aead, header: h, ad: ad}, nil
}

// Header returns the header the cipher was made for.
func (c *Cipher) Header() Header { return c.header }

// setNonce writes the nonce of segment s: the 11-byte big-endian counter
// followed by the last-segment flag. n[0:3] stays zero.
func setNonce(n []byte, s int64, last bool) {
	binary.BigEndian.PutUint64(n[3:11], uint64(s))
	n[11] = 0
	if last {
		n[11] = 1
	}
}

// Seal appends the sealed object (header and segments) of plaintext to dst
// and returns the extended slice. dst and plaintext must not overlap.
func (c *Cipher) Seal(dst, plaintext []byte) []byte {
	plainLen := int64(len(plaintext))
	ret, out := grow(dst, int(CiphertextSize(plainLen)))
	copy(out, c.ad[:HeaderSize])
	pos := HeaderSize
	nonce := make([]byte, nonceSize)
	final := numSegments(plainLen) - 1
	for s := int64(0); s <= final; s++ {
		lo := s * SegmentSize
		hi := lo + segmentPlainSize(s, final, plainLen)
		setNonce(nonce, s, s == final)
		c.aead.Seal(out[pos:pos], nonce, plaintext[lo:hi], c.ad)
		pos += int(hi-lo) + TagSize
	}
	return ret
}

// Open authenticates and decrypts the whole sealed object obj (header
// included), appends the plaintext to dst and returns the extended slice.
func (c *Cipher) Open(dst, obj []byte) ([]byte, error) {
	if len(obj) < HeaderSize || string(obj[:HeaderSize]) != string(c.ad[:HeaderSize]) {
		return nil, fmt.Errorf("sealed object: header mismatch: %w", ErrCorrupt)
	}
	plainLen, err := PlaintextSize(int64(len(obj)))
	if err != nil {
		return nil, err
	}
	return c.OpenRange(dst, obj[HeaderSize:], 0, plainLen, plainLen)
}

// OpenRange authenticates and decrypts ct, the object bytes named by
// CipherRange(off, n, plainSize), appends plaintext [off, off+n) clipped to
// plainSize to dst, and returns the extended slice. The final segment is
// opened with the last-segment flag, so a wrong plainSize, a truncated or
// an extended object fails when the range reaches the end. A range that is
// empty after clipping authenticates the final segment and appends nothing.
func (c *Cipher) OpenRange(dst []byte, ct []byte, off, n, plainSize int64) ([]byte, error) {
	if off < 0 || n < 0 || plainSize < 0 {
		return nil, fmt.Errorf("sealed object: invalid range off=%d n=%d size=%d", off, n, plainSize)
	}
	first, last, start, end := clip(off, n, plainSize)
	final := numSegments(plainSize) - 1
	segStart := first * SegmentSize
	segEnd := segStart + (last-first)*SegmentSize + segmentPlainSize(last, final, plainSize)
	if int64(len(ct)) != segEnd-segStart+(last-first+1)*TagSize {
		return nil, fmt.Errorf("sealed object: %d ciphertext bytes for segments %d-%d: %w", len(ct), first, last, ErrCorrupt)
	}
	ret, out := grow(dst, int(segEnd-segStart))
	nonce := make([]byte, nonceSize)
	pos, opos := 0, 0
	for s := first; s <= last; s++ {
		plen := int(segmentPlainSize(s, final, plainSize))
		setNonce(nonce, s, s == final)
		if _, err := c.aead.Open(out[opos:opos], nonce, ct[pos:pos+plen+TagSize], c.ad); err != nil {
			clear(out)
			return nil, fmt.Errorf("sealed object: segment %d: %w", s, ErrCorrupt)
		}
		pos += plen + TagSize
		opos += plen
	}
	want := int(end - start)
	if skip := int(start - segStart); skip > 0 {
		copy(out, out[skip:skip+want])
	}
	clear(out[want:])
	return ret[:len(dst)+want], nil
}

// OpenSegments authenticates and decrypts, in place, the whole segments
// first.. of an object whose plaintext size is plainSize, given ct, the
// object bytes CipherRange names for a range starting at segment first. It
// returns one slice of ct per segment holding that segment's plaintext:
// nothing is allocated or copied, so a reader can keep the segments (they
// share ct's memory; ct is overwritten). Failures wrap ErrCorrupt.
func (c *Cipher) OpenSegments(ct []byte, first, plainSize int64) ([][]byte, error) {
	if first < 0 || plainSize < 0 {
		return nil, fmt.Errorf("sealed object: invalid segment %d or size %d", first, plainSize)
	}
	final := numSegments(plainSize) - 1
	if first > final {
		return nil, fmt.Errorf("sealed object: segment %d past the last (%d): %w", first, final, ErrCorrupt)
	}
	var nonce [nonceSize]byte
	var segs [][]byte
	pos := 0
	for s := first; pos < len(ct); s++ {
		if s > final {
			return nil, fmt.Errorf("sealed object: %d bytes past the last segment: %w", len(ct)-pos, ErrCorrupt)
		}
		plen := int(segmentPlainSize(s, final, plainSize))
		if pos+plen+TagSize > len(ct) {
			return nil, fmt.Errorf("sealed object: segment %d cut short: %w", s, ErrCorrupt)
		}
		setNonce(nonce[:], s, s == final)
		seg := ct[pos : pos+plen+TagSize]
		if _, err := c.aead.Open(seg[:0], nonce[:], seg, c.ad); err != nil {
			return nil, fmt.Errorf("sealed object: segment %d: %w", s, ErrCorrupt)
		}
		segs = append(segs, seg[:plen:plen])
		pos += plen + TagSize
	}
	if len(segs) == 0 {
		return nil, fmt.Errorf("sealed object: no segment: %w", ErrCorrupt)
	}
	return segs, nil
}

// OpenSegment authenticates and decrypts sealed, the sealed bytes of
// segment s (plaintext and tag) of an object whose plaintext size is
// plainSize, appends the plaintext to dst and returns the extended slice.
// dst's free capacity may be sealed's memory exactly (sealed[:0], in place)
// or must not overlap it: a reader decrypts straight into the buffer that
// wants the plaintext. Failures wrap ErrCorrupt and leave no plaintext
// behind in dst.
func (c *Cipher) OpenSegment(dst, sealed []byte, s, plainSize int64) ([]byte, error) {
	if s < 0 || plainSize < 0 {
		return nil, fmt.Errorf("sealed object: invalid segment %d or size %d", s, plainSize)
	}
	final := numSegments(plainSize) - 1
	if s > final {
		return nil, fmt.Errorf("sealed object: segment %d past the last (%d): %w", s, final, ErrCorrupt)
	}
	if want := segmentPlainSize(s, final, plainSize) + TagSize; int64(len(sealed)) != want {
		return nil, fmt.Errorf("sealed object: segment %d is %d bytes, want %d: %w", s, len(sealed), want, ErrCorrupt)
	}
	var nonce [nonceSize]byte
	setNonce(nonce[:], s, s == final)
	out, err := c.aead.Open(dst, nonce[:], sealed, c.ad)
	if err != nil {
		return nil, fmt.Errorf("sealed object: segment %d: %w", s, ErrCorrupt)
	}
	return out, nil
}

// grow extends b by n bytes, returning the extended slice and the new tail.
func grow(b []byte, n int) (all, tail []byte) {
	if total := len(b) + n; cap(b) >= total {
		all = b[:total]
	} else {
		all = make([]byte, total)
		copy(all, b)
	}
	return all, all[len(b):]
}

// Seal returns the sealed object of plaintext: h's header followed by the
// segments, keyed from dek and bound to the object name.
func Seal(dek []byte, h Header, name string, plaintext []byte) ([]byte, error) {
	c, err := NewCipher(dek, h, name)
	if err != nil {
		return nil, err
	}
	return c.Seal(nil, plaintext), nil
}

// Open authenticates and decrypts the whole sealed object obj stored under
// name. It detects truncation, extension, reordered or swapped segments, a
// wrong name and a wrong DEK, all as ErrCorrupt.
func Open(dek []byte, name string, obj []byte) (Header, []byte, error) {
	h, err := ParseHeader(obj)
	if err != nil {
		return Header{}, nil, err
	}
	c, err := NewCipher(dek, h, name)
	if err != nil {
		return Header{}, nil, err
	}
	plain, err := c.Open(nil, obj)
	if err != nil {
		return Header{}, nil, err
	}
	return h, plain, nil
}
