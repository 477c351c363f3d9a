package repo

// Compression of blobs (format version 2, docs/format.md "Compressed
// blobs"): a writer compresses each blob with zstd before it goes into a
// pack, and keeps the result only where it saves space; readers decompress
// by what the blob's index entry says, whatever the repository's setting.

import (
	"fmt"
	"sync"

	"github.com/klauspost/compress/zstd"
	"github.com/restic/chunker"
)

// Compression is how a writer stores new blobs.
type Compression uint8

// The compression settings (init --compression, snapshot --compression).
const (
	// CompressionAuto compresses each blob at zstd's default level when
	// a sample of it compresses and the whole saves at least 1/32.
	CompressionAuto Compression = iota + 1
	// CompressionOff stores every blob as it is.
	CompressionOff
	// CompressionMax is CompressionAuto at zstd's best level: smaller
	// and several times slower.
	CompressionMax
)

func (c Compression) String() string {
	switch c {
	case CompressionAuto:
		return "auto"
	case CompressionOff:
		return "off"
	case CompressionMax:
		return "max"
	}
	return fmt.Sprintf("compression(%d)", uint8(c))
}

// ParseCompression parses "auto", "off" or "max".
func ParseCompression(s string) (Compression, error) {
	for _, c := range []Compression{CompressionAuto, CompressionOff, CompressionMax} {
		if s == c.String() {
			return c, nil
		}
	}
	return 0, fmt.Errorf("compression %q: want auto, off or max", s)
}

// MaxChunkSize is the largest data blob: the chunker's maximum.
const MaxChunkSize = chunker.MaxSize

// Compression's tuning (measured in repo/compress_test.go's benchmarks):
const (
	// sampleSize is how much of a larger blob is compressed first, at
	// the fastest level, to tell whether the rest is worth trying: a
	// chunk of random or already compressed bytes costs this much
	// rather than a compression of its whole.
	sampleSize = 64 << 10
	// sampleKeep: a sample that does not shrink below sampleKeep/16 of
	// its size marks the blob as incompressible.
	sampleKeep = 15
	// saveMin: a compressed blob is kept only if it is smaller than
	// its plaintext by at least 1/saveMin: less is not worth
	// decompressing for.
	saveMin = 32
	// zstdWindow is the window zstd compresses with, and the largest a
	// reader accepts (a tree may be larger: it is then compressed in
	// blocks of a window).
	zstdWindow = 8 << 20
)

// encoders are the zstd encoders, made on first use and shared (EncodeAll
// is safe for concurrent use, one encoder state per core).
var encoders = sync.OnceValue(func() map[zstd.EncoderLevel]*zstd.Encoder {
	m := map[zstd.EncoderLevel]*zstd.Encoder{}
	for _, l := range []zstd.EncoderLevel{zstd.SpeedFastest, zstd.SpeedDefault, zstd.SpeedBestCompression} {
		e, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(l), zstd.WithEncoderCRC(false),
			zstd.WithWindowSize(zstdWindow), zstd.WithLowerEncoderMem(true))
		if err != nil {
			panic(err) // the options are constants
		}
		m[l] = e
	}
	return m
})

// compressBlob returns the zstd frame to store for plaintext b under
// setting c, or nil when b is to be stored as it is: c is off, a sample
// of b does not compress, or the whole does not save 1/saveMin. The
// decision is made for each blob on its own (docs/security.md).
func compressBlob(c Compression, b []byte) []byte {
	if c == CompressionOff || len(b) < 64 {
		return nil
	}
	enc := encoders()
	if len(b) > 2*sampleSize {
		s := enc[zstd.SpeedFastest].EncodeAll(b[:sampleSize], nil)
		if len(s) > sampleSize*sampleKeep/16 {
			return nil
		}
	}
	level := zstd.SpeedDefault
	if c == CompressionMax {
		level = zstd.SpeedBestCompression
	}
	z := enc[level].EncodeAll(b, make([]byte, 0, len(b)))
	if len(z) > len(b)-len(b)/saveMin {
		return nil
	}
	return z
}

// zstdDecoder decompresses blobs. DecodeAll decodes into the capacity of the
// buffer it is given and no further (WithDecodeAllCapLimit), so a blob
// never costs more than the plaintext length its index entry records,
// itself bounded by blobLimit.
var zstdDecoder = sync.OnceValue(func() *zstd.Decoder {
	d, err := zstd.NewReader(nil, zstd.WithDecodeAllCapLimit(true), zstd.WithDecoderMaxMemory(MaxTreeSize),
		zstd.WithDecoderMaxWindow(zstdWindow), zstd.WithDecoderConcurrency(0))
	if err != nil {
		panic(err) // the options are constants
	}
	return d
})

// blobLimit is the largest plaintext a blob of type t may have.
func blobLimit(t BlobType) uint32 {
	if t == BlobTree {
		return MaxTreeSize
	}
	return MaxChunkSize
}

// decompressBlob decompresses the stored bytes z of a blob whose
// plaintext is plain bytes long into dst (of that capacity or more; nil
// allocates). Bytes that do not decode, or decode to another length, are
// an error (the caller wraps it with object.ErrCorrupt and the blob's
// name).
func decompressBlob(dst, z []byte, plain uint32) ([]byte, error) {
	if uint32(cap(dst)) < plain {
		dst = make([]byte, 0, plain)
	}
	out, err := zstdDecoder().DecodeAll(z, dst[:0:plain])
	if err != nil {
		return nil, fmt.Errorf("zstd: %v", err)
	}
	if uint32(len(out)) != plain {
		return nil, fmt.Errorf("zstd: %d bytes, the index says %d", len(out), plain)
	}
	return out, nil
}
