package s3_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"runtime"
	"sync"
	"testing"

	"github.com/snapcrypt/snapcrypt/repo/store/s3"
	"github.com/snapcrypt/snapcrypt/repo/store/s3/s3test"
)

// countingTransport counts the GETs it carries and notes their Range
// headers; its bodies can be held back (gate) or broken (fail).
type countingTransport struct {
	mu     sync.Mutex
	gets   int
	ranges []string
	gate   chan struct{} // when set, the body of the next GET waits for it to close
	bodies []*testBody
}

func (c *countingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil || req.Method != http.MethodGet || req.URL.Query().Has("list-type") || req.URL.Query().Has("location") {
		return resp, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gets++
	c.ranges = append(c.ranges, req.Header.Get("Range"))
	b := &testBody{ReadCloser: resp.Body, gate: c.gate}
	c.gate = nil
	c.bodies = append(c.bodies, b)
	resp.Body = b
	return resp, nil
}

func (c *countingTransport) count() (int, []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gets, append([]string(nil), c.ranges...)
}

type testBody struct {
	io.ReadCloser
	gate   chan struct{}
	mu     sync.Mutex
	broken bool
}

func (b *testBody) Read(p []byte) (int, error) {
	if b.gate != nil {
		<-b.gate
	}
	b.mu.Lock()
	broken := b.broken
	b.mu.Unlock()
	if broken {
		return 0, errors.New("connection reset by test")
	}
	return b.ReadCloser.Read(p)
}

// countingStore opens a store over a fresh prefix of srv whose GETs tr
// counts, with one object of size bytes, and returns the object's bytes.
func countingStore(t *testing.T, srv *s3test.Server, tr *countingTransport, size int) (*s3.Store, []byte) {
	t.Helper()
	cfg, err := s3.ParseURL(srv.URL(srv.NewPrefix()))
	if err != nil {
		t.Fatal(err)
	}
	cfg.AccessKey, cfg.SecretKey = srv.AccessKey, srv.SecretKey
	cfg.Transport = tr
	s, err := s3.OpenConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	data := make([]byte, size)
	for i := range data {
		data[i] = byte(i*13 + i>>10)
	}
	if err := s.Put(context.Background(), "data/pack", data); err != nil {
		t.Fatal(err)
	}
	tr.mu.Lock()
	tr.gets, tr.ranges = 0, nil
	tr.mu.Unlock()
	return s, data
}

// readAt reads [off, off+n) of data/pack and checks the bytes.
func readAt(t *testing.T, s *s3.Store, data []byte, off, n int) {
	t.Helper()
	got, err := s.ReadRange(context.Background(), "data/pack", int64(off), int64(n), make([]byte, n+100), false)
	want := data[off:min(off+n, len(data))]
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("ReadRange(%d, %d) = %d bytes, %v; want %d bytes of the object", off, n, len(got), err, len(want))
	}
}

// TestReadOnSequential: a sequential reader of large ranges (as the read
// engine's windows are, after a pack header of 57 bytes) makes one GET for
// the object, without a Range header (which servers serve more cheaply),
// to the last range, which is smaller.
func TestReadOnSequential(t *testing.T) {
	srv := s3test.Start(t)
	tr := &countingTransport{}
	const size = 10<<20 + 12345
	s, data := countingStore(t, srv, tr, size)
	const window = 3 << 19 // 1.5 MiB
	for off := 57; off < size; off += window {
		readAt(t, s, data, off, window)
	}
	if n, ranges := tr.count(); n != 1 || ranges[0] != "" {
		t.Errorf("a sequential read of %d bytes in ranges of %d made %d GETs with Range headers %q; want one GET without a Range", size, window, n, ranges)
	}
	// Far into the object, a read asks for the rest of it with a range.
	readAt(t, s, data, 5<<20, window)
	readAt(t, s, data, 5<<20+window, window)
	if n, ranges := tr.count(); n != 2 || ranges[1] != "bytes=5242880-" {
		t.Errorf("two more reads from 5 MiB made %d GETs in all with Range headers %q; want 2, the second bytes=5242880-", n, ranges)
	}
}

// TestReadOnWaitsForRead: a read that starts where a read in flight will
// end waits for it and reads on from its body (the kernel sends the
// requests of a sequential reader in parallel).
func TestReadOnWaitsForRead(t *testing.T) {
	srv := s3test.Start(t)
	tr := &countingTransport{}
	s, data := countingStore(t, srv, tr, 6<<20)
	gate := make(chan struct{})
	tr.mu.Lock()
	tr.gate = gate
	tr.mu.Unlock()
	var wg sync.WaitGroup
	first := make(chan struct{})
	wg.Add(2)
	go func() {
		defer wg.Done()
		go func() {
			// The first GET is out (its body held back) before the second
			// read starts.
			for {
				if n, _ := tr.count(); n == 1 {
					close(first)
					return
				}
				runtime.Gosched()
			}
		}()
		readAt(t, s, data, 0, 2<<20)
	}()
	go func() {
		defer wg.Done()
		<-first
		close(gate)
		readAt(t, s, data, 2<<20, 2<<20)
	}()
	wg.Wait()
	readAt(t, s, data, 4<<20, 2<<20)
	if n, ranges := tr.count(); n != 1 {
		t.Errorf("two reads in parallel and one after made %d GETs (Range headers %q); want 1", n, ranges)
	}
}

// TestReadOnStaleBody: a kept body that fails to read on is dropped and the
// range read with a GET of its own.
func TestReadOnStaleBody(t *testing.T) {
	srv := s3test.Start(t)
	tr := &countingTransport{}
	s, data := countingStore(t, srv, tr, 4<<20)
	readAt(t, s, data, 0, 1<<20)
	tr.mu.Lock()
	for _, b := range tr.bodies {
		b.mu.Lock()
		b.broken = true
		b.mu.Unlock()
	}
	tr.mu.Unlock()
	readAt(t, s, data, 1<<20, 1<<20)
	readAt(t, s, data, 2<<20, 2<<20)
	if n, ranges := tr.count(); n != 2 || ranges[1] != "bytes=1048576-" {
		t.Errorf("reads after a broken body made %d GETs with Range headers %q; want 2, the second from 1 MiB", n, ranges)
	}
}

// TestReadOnReplaced: a Put drops the kept bodies of the object it
// replaces; reads after it see the new bytes.
func TestReadOnReplaced(t *testing.T) {
	srv := s3test.Start(t)
	tr := &countingTransport{}
	s, data := countingStore(t, srv, tr, 4<<20)
	readAt(t, s, data, 0, 1<<20)
	fresh := bytes.Repeat([]byte{7}, len(data))
	if err := s.Put(context.Background(), "data/pack", fresh); err != nil {
		t.Fatal(err)
	}
	readAt(t, s, fresh, 1<<20, 1<<20)
}

// TestReadOnOutlivesContext: the body a read keeps is read on after the
// context of the read that opened it has ended (the mount's requests each
// have their own).
func TestReadOnOutlivesContext(t *testing.T) {
	srv := s3test.Start(t)
	tr := &countingTransport{}
	s, data := countingStore(t, srv, tr, 4<<20)
	ctx, cancel := context.WithCancel(context.Background())
	if _, err := s.ReadRange(ctx, "data/pack", 0, 1<<20, make([]byte, 1<<20), false); err != nil {
		t.Fatal(err)
	}
	cancel()
	readAt(t, s, data, 1<<20, 1<<20)
	if n, ranges := tr.count(); n != 1 {
		t.Errorf("a read after the first one's context ended made %d GETs in all (Range headers %q), want 1", n, ranges)
	}
}
