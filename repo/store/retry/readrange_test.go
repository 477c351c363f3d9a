package retry_test

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"testing"
	"unsafe"

	"github.com/snapcrypt/snapcrypt/repo/store"
	"github.com/snapcrypt/snapcrypt/repo/store/faults"
	"github.com/snapcrypt/snapcrypt/repo/store/mem"
	"github.com/snapcrypt/snapcrypt/repo/store/retry"
	"github.com/snapcrypt/snapcrypt/repo/store/storetest"
)

var errFlaky = errors.New("flaky")

// rangeStore is a store with ReadRange. Its first fails calls scribble
// over buf and fail transiently; the others put the range a few bytes
// into buf, as an O_DIRECT read may.
type rangeStore struct {
	*mem.Store
	fails int

	mu      sync.Mutex
	calls   int
	bufs    []*byte // the buffers it was given
	directs []bool
}

func (s *rangeStore) ReadRange(ctx context.Context, name string, off, length int64, buf []byte, direct bool) ([]byte, error) {
	s.mu.Lock()
	s.calls++
	fail := s.calls <= s.fails
	s.bufs = append(s.bufs, unsafe.SliceData(buf))
	s.directs = append(s.directs, direct)
	s.mu.Unlock()
	if off < 0 || length < 0 || int64(len(buf)) < length {
		return nil, errors.New("bad range or buffer") // not marked permanent
	}
	for i := range buf {
		buf[i] = 0xEE
	}
	if fail {
		return buf[:length/2], errFlaky
	}
	data, err := s.Store.GetRange(ctx, name, off, length)
	if err != nil {
		return nil, err
	}
	skip := min(3, len(buf)-len(data))
	return buf[skip : skip+copy(buf[skip:], data)], nil
}

func TestReadRangeRetries(t *testing.T) {
	ctx := context.Background()
	inner := &rangeStore{Store: mem.New(), fails: 2}
	data := []byte("0123456789abcdefghij")
	inner.Put(ctx, "obj", data)
	sl := &sleeps{}
	s := retry.New(inner, retry.Options{Sleep: sl.sleep})
	buf := make([]byte, 32)
	got, err := s.ReadRange(ctx, "obj", 5, 10, buf, true)
	if err != nil || !bytes.Equal(got, data[5:15]) {
		t.Fatalf("ReadRange = %q, %v; want %q", got, err, data[5:15])
	}
	if !storetest.Inside(got, buf) {
		t.Error("ReadRange did not return a part of buf")
	}
	if inner.calls != 3 || sl.count() != 2 {
		t.Errorf("%d calls, %d waits; want 3, 2", inner.calls, sl.count())
	}
	for i, p := range inner.bufs {
		if p != unsafe.SliceData(buf) || !inner.directs[i] {
			t.Errorf("attempt %d: another buffer, or direct %v", i+1, inner.directs[i])
		}
	}
}

// TestReadRangeNoRetry: errors that retrying cannot fix are returned at
// once, and a store that keeps failing is given up on.
func TestReadRangeNoRetry(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct {
		what        string
		name        string
		off, length int64
		room        int
		fails       int
		calls       int
		err         error
	}{
		{"missing", "missing", 0, 10, 10, 0, 1, store.ErrNotExist},
		{"buffer too small", "obj", 0, 10, 9, 0, 1, nil},
		{"negative offset", "obj", -1, 10, 10, 0, 1, nil},
		{"negative length", "obj", 0, -1, 10, 0, 1, nil},
		{"always failing", "obj", 0, 10, 10, 100, 3, errFlaky},
	} {
		inner := &rangeStore{Store: mem.New(), fails: c.fails}
		inner.Put(ctx, "obj", []byte("0123456789"))
		sl := &sleeps{}
		s := retry.New(inner, retry.Options{Attempts: 3, Sleep: sl.sleep})
		got, err := s.ReadRange(ctx, c.name, c.off, c.length, make([]byte, c.room), false)
		if err == nil || c.err != nil && !errors.Is(err, c.err) {
			t.Errorf("%s: ReadRange = %q, %v; want an error %v", c.what, got, err, c.err)
		}
		if got != nil {
			t.Errorf("%s: ReadRange returned %d bytes with its error", c.what, len(got))
		}
		if inner.calls != c.calls || sl.count() != c.calls-1 {
			t.Errorf("%s: %d calls, %d waits; want %d, %d", c.what, inner.calls, sl.count(), c.calls, c.calls-1)
		}
	}
}

// TestReadRangeWithoutInner: over a store without ReadRange, ReadRange
// reads with GetRange, retried, and copies into buf.
func TestReadRangeWithoutInner(t *testing.T) {
	ctx := context.Background()
	s, f, sl := newStores(retry.Options{})
	if _, ok := f.Inner().(store.RangeReader); ok {
		t.Fatal("mem.Store has ReadRange: this test needs a store without")
	}
	data := []byte("0123456789abcdefghij")
	f.Inner().Put(ctx, "obj", data)
	f.Add(faults.Rule{Ops: []faults.Op{faults.GetRange}, Times: 2})
	cases := []struct {
		what        string
		name        string
		off, length int64
		room        int
		want        []byte
		err         error // nil: no error; errAny: any error
		calls       int   // GetRange calls
	}{
		{"middle, after two failures", "obj", 5, 10, 32, data[5:15], nil, 3},
		{"whole", "obj", 0, 20, 20, data, nil, 1},
		{"runs past the end", "obj", 15, 10, 10, data[15:], nil, 1},
		{"past the end", "obj", 25, 10, 10, nil, nil, 1},
		{"zero length", "obj", 5, 0, 0, nil, nil, 1},
		{"missing", "missing", 0, 10, 10, nil, store.ErrNotExist, 1},
		{"buffer too small", "obj", 0, 10, 9, nil, errAny, 0},
		{"negative offset", "obj", -1, 10, 10, nil, errAny, 1},
	}
	for _, c := range cases {
		before, waits := f.Calls(faults.GetRange), sl.count()
		buf := bytes.Repeat([]byte{0xEE}, c.room)
		got, err := s.ReadRange(ctx, c.name, c.off, c.length, buf, true)
		switch {
		case c.err == nil && (err != nil || !bytes.Equal(got, c.want)):
			t.Errorf("%s: ReadRange = %q, %v; want %q", c.what, got, err, c.want)
		case c.err == nil && (got == nil || !storetest.Inside(got, buf)):
			t.Errorf("%s: ReadRange did not return a part of buf", c.what)
		case c.err == errAny && err == nil, c.err != nil && c.err != errAny && !errors.Is(err, c.err):
			t.Errorf("%s: ReadRange = %q, %v; want error %v", c.what, got, err, c.err)
		}
		if calls := f.Calls(faults.GetRange) - before; calls != c.calls || sl.count()-waits != c.calls-1 && c.calls > 0 {
			t.Errorf("%s: %d GetRange calls, %d waits; want %d, %d", c.what, calls, sl.count()-waits, c.calls, c.calls-1)
		}
	}
}

var errAny = errors.New("any error")
