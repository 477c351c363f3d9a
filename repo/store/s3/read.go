package s3

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"

	"github.com/minio/minio-go/v7"
)

// The reads: whole objects and ranges, read into a buffer of the
// announced size.

// maxObjectRead bounds the buffer allocated up front from a response's
// Content-Length; larger responses (none of snapcrypt's) are read growing.
const maxObjectRead = 1 << 30

// Get implements store.Reader.
func (s *Store) Get(ctx context.Context, name string) ([]byte, error) {
	if err := check(ctx, "get", name); err != nil {
		return nil, err
	}
	data, err := s.get(ctx, name, minio.GetObjectOptions{})
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", name, err)
	}
	return data, nil
}

func (s *Store) get(ctx context.Context, name string, opts minio.GetObjectOptions) ([]byte, error) {
	body, info, _, err := s.core.GetObject(ctx, s.bucket, s.key(name), opts)
	if err != nil {
		return nil, s.mapErr(err)
	}
	defer body.Close()
	// Read into a buffer of the announced size: growing one as io.ReadAll
	// does cost more CPU than decrypting the bytes.
	if info.Size >= 0 && info.Size <= maxObjectRead {
		data := make([]byte, info.Size)
		n, err := io.ReadFull(body, data)
		if err != nil {
			return nil, s.mapErr(err)
		}
		// Anything beyond the announced size is a broken response.
		if extra, _ := body.Read(make([]byte, 1)); extra > 0 {
			return nil, fmt.Errorf("response longer than its Content-Length %d", info.Size)
		}
		return data[:n], nil
	}
	data, err := io.ReadAll(body)
	if err != nil {
		return nil, s.mapErr(err)
	}
	return data, nil
}

// GetRange implements store.Reader with a ranged GET.
func (s *Store) GetRange(ctx context.Context, name string, off, length int64) ([]byte, error) {
	if err := check(ctx, "get range", name); err != nil {
		return nil, err
	}
	if off < 0 || length < 0 {
		return nil, fmt.Errorf("get range %s: negative offset %d or length %d", name, off, length)
	}
	if length == 0 {
		// Nothing to read, but a missing object must still be reported.
		if _, err := s.Stat(ctx, name); err != nil {
			return nil, fmt.Errorf("get range %s: %w", name, errors.Unwrap(err))
		}
		return []byte{}, nil
	}
	data, err := s.get(ctx, name, rangeOptions(off, length))
	if isCode(err, "InvalidRange") {
		return []byte{}, nil // the range starts at or past the end
	}
	if err != nil {
		return nil, fmt.Errorf("get range %s: %w", name, err)
	}
	if int64(len(data)) > length {
		data = data[:length] // a server that ignored the range
	}
	return data, nil
}

// rangeOptions are the options of a GET of length > 0 bytes from off >= 0.
func rangeOptions(off, length int64) minio.GetObjectOptions {
	var opts minio.GetObjectOptions
	switch {
	case length <= math.MaxInt64-off:
		opts.SetRange(off, off+length-1)
	case off > 0:
		opts.SetRange(off, 0) // bytes=off-
	}
	return opts
}

// ReadRange implements store.RangeReader with a ranged GET whose body is
// read straight into buf; a read of at least streamMin bytes reads on from
// or keeps the body of a GET to the object's end (stream.go). direct (read
// around the page cache) means nothing to S3 and is ignored.
func (s *Store) ReadRange(ctx context.Context, name string, off, length int64, buf []byte, direct bool) ([]byte, error) {
	if err := check(ctx, "get range", name); err != nil {
		return nil, err
	}
	if off < 0 || length < 0 || int64(len(buf)) < length {
		return nil, fmt.Errorf("get range %s: negative offset %d or length %d, or a buffer of %d bytes", name, off, length, len(buf))
	}
	if length == 0 {
		// Nothing to read, but a missing object must still be reported.
		if _, err := s.Stat(ctx, name); err != nil {
			return nil, fmt.Errorf("get range %s: %w", name, errors.Unwrap(err))
		}
		return buf[:0], nil
	}
	var n int
	var err error
	if length >= streamMin || s.streams.at(streamKey{name, off}) {
		n, err = s.readOn(ctx, name, off, buf, int(length))
	} else {
		n, err = s.readInto(ctx, name, rangeOptions(off, length), buf, int(length))
	}
	if isCode(err, "InvalidRange") {
		return buf[:0], nil // the range starts at or past the end
	}
	if err != nil {
		return nil, fmt.Errorf("get range %s: %w", name, err)
	}
	return buf[:n], nil
}

// readInto GETs the named object with opts and reads the body into
// buf[:length], returning how many bytes it read: fewer where the body
// ends first, and no more than length where it runs on (a server that
// ignored the range). As in get, a body that breaks off before its
// Content-Length, or runs past it, is an error.
func (s *Store) readInto(ctx context.Context, name string, opts minio.GetObjectOptions, buf []byte, length int) (int, error) {
	body, info, _, err := s.core.GetObject(ctx, s.bucket, s.key(name), opts)
	if err != nil {
		return 0, s.mapErr(err)
	}
	defer body.Close()
	if info.Size < 0 {
		// No Content-Length: the body ends where the object does.
		n, err := readUpTo(body, buf[:length])
		if err != nil {
			return 0, s.mapErr(err)
		}
		return n, nil
	}
	n := length
	if info.Size < int64(length) {
		n = int(info.Size) // the object ends first
	}
	if _, err := io.ReadFull(body, buf[:n]); err != nil {
		return 0, s.mapErr(err)
	}
	// Anything beyond the announced size is a broken response. (Reading to
	// io.EOF also hands the connection back for reuse.) A body longer than
	// length is left unread.
	if int64(n) == info.Size && n < len(buf) {
		if extra, _ := body.Read(buf[n : n+1]); extra > 0 {
			return 0, fmt.Errorf("response longer than its Content-Length %d", info.Size)
		}
	}
	return n, nil
}

// readUpTo reads from r into p until p is full or r ends with io.EOF.
// Unlike io.ReadFull, it reports an unexpected EOF from r (a chunked body
// cut off) as an error.
func readUpTo(r io.Reader, p []byte) (int, error) {
	n := 0
	for n < len(p) {
		m, err := r.Read(p[n:])
		n += m
		if err == io.EOF {
			break
		}
		if err != nil {
			return n, err
		}
	}
	return n, nil
}
