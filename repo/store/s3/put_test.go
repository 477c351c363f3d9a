package s3_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/snapcrypt/snapcrypt/repo/store"
	"github.com/snapcrypt/snapcrypt/repo/store/s3"
	"github.com/snapcrypt/snapcrypt/repo/store/s3/s3test"
)

// damagingTransport flips one byte in the body of each PUT while damage is
// set, and records the X-Amz-Content-Sha256 header of every PUT.
type damagingTransport struct {
	mu      sync.Mutex
	damage  bool
	payload []string
}

type flipReader struct {
	io.ReadCloser
	n int64
}

func (r *flipReader) Read(p []byte) (int, error) {
	n, err := r.ReadCloser.Read(p)
	for i := range n {
		if r.n == 1000 {
			p[i] ^= 0x01
		}
		r.n++
	}
	return n, err
}

func (d *damagingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method == http.MethodPut && req.Body != nil {
		d.mu.Lock()
		d.payload = append(d.payload, req.Header.Get("X-Amz-Content-Sha256")+" crc32c="+req.Header.Get("X-Amz-Checksum-Crc32c"))
		damage := d.damage
		d.mu.Unlock()
		if damage {
			req = req.Clone(req.Context())
			req.Body = &flipReader{ReadCloser: req.Body}
		}
	}
	return http.DefaultTransport.RoundTrip(req)
}

// TestPutDamagedOnTheWay: a body damaged between client and server is
// refused by its CRC-32C (x-amz-checksum-crc32c), for Put and Create, and
// what is stored stays intact. The payload itself is not signed (no SHA-256
// pass over it).
func TestPutDamagedOnTheWay(t *testing.T) {
	srv := s3test.Start(t)
	ctx := context.Background()
	tr := &damagingTransport{}
	st, err := s3.OpenConfig(ctx, s3.Config{Endpoint: srv.Endpoint, Bucket: srv.Bucket, Prefix: srv.NewPrefix(),
		AccessKey: srv.AccessKey, SecretKey: srv.SecretKey, Transport: tr})
	if err != nil {
		t.Fatal(err)
	}
	good := make([]byte, 4096)
	for i := range good {
		good[i] = byte(i)
	}
	if err := st.Put(ctx, "data/00/p", good); err != nil {
		t.Fatal(err)
	}
	tr.mu.Lock()
	tr.damage = true
	tr.mu.Unlock()
	bad := append([]byte(nil), good...)
	bad[0] = 0xff
	if err := st.Put(ctx, "data/00/p", bad); err == nil {
		t.Fatal("Put of a body damaged on the way succeeded")
	}
	if err := st.Create(ctx, "data/00/q", good); err == nil {
		t.Fatal("Create of a body damaged on the way succeeded")
	}
	tr.mu.Lock()
	tr.damage = false
	for _, p := range tr.payload {
		if !strings.HasPrefix(p, "UNSIGNED-PAYLOAD crc32c=") || len(p) == len("UNSIGNED-PAYLOAD crc32c=") {
			t.Errorf("a PUT went out with X-Amz-Content-Sha256 and checksum %q, want UNSIGNED-PAYLOAD and a CRC-32C", p)
		}
	}
	tr.mu.Unlock()
	if got, err := st.Get(ctx, "data/00/p"); err != nil || string(got) != string(good) {
		t.Fatalf("after a refused Put the object holds %d bytes (%v), not the earlier ones", len(got), err)
	}
	if _, err := st.Stat(ctx, "data/00/q"); !errors.Is(err, store.ErrNotExist) {
		t.Fatalf("a refused Create left an object: %v", err)
	}
}
