package s3_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/snapcrypt/snapcrypt/repo/store"
	"github.com/snapcrypt/snapcrypt/repo/store/s3"
)

// A server that accepts connections and never answers makes OpenConfig
// fail with a timeout instead of waiting forever.
func TestTimeoutSilentServer(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	defer func() {
		l.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	}()
	done := make(chan error, 1)
	go func() {
		_, err := s3.OpenConfig(context.Background(), s3.Config{
			Endpoint: l.Addr().String(), Bucket: "bkt", AccessKey: "a", SecretKey: "s", Timeout: 200 * time.Millisecond,
		})
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "timeout") {
			t.Fatalf("OpenConfig against a silent server: %v, want a timeout", err)
		}
	case <-time.After(2 * time.Minute): // a hang guard, far above the bound
		t.Fatal("OpenConfig against a silent server hung")
	}
}

// fakeS3 answers just enough of S3 for OpenConfig (HEAD bucket, the
// If-None-Match probe) and stalls the body of GET stall after its first
// bytes.
func fakeS3(t *testing.T) *httptest.Server {
	var mu sync.Mutex
	probes := map[string]bool{}
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == http.MethodHead && r.URL.Path == "/bkt/":
			w.WriteHeader(http.StatusOK)
		case r.Method == http.MethodHead:
			w.WriteHeader(http.StatusNotFound)
		case r.Method == http.MethodPut && strings.Contains(r.URL.Path, ".probe-"):
			mu.Lock()
			seen := probes[r.URL.Path]
			probes[r.URL.Path] = true
			mu.Unlock()
			if seen && r.Header.Get("If-None-Match") == "*" {
				w.Header().Set("Content-Type", "application/xml")
				w.WriteHeader(http.StatusPreconditionFailed)
				w.Write([]byte(`<?xml version="1.0" encoding="UTF-8"?><Error><Code>PreconditionFailed</Code><Message>At least one of the pre-conditions you specified did not hold</Message></Error>`))
				return
			}
			w.Header().Set("ETag", `"0"`)
			w.WriteHeader(http.StatusOK)
		case r.Method == http.MethodDelete:
			w.WriteHeader(http.StatusNoContent)
		case r.Method == http.MethodGet && r.URL.Path == "/bkt/stall":
			w.Header().Set("Content-Length", "1000")
			w.Header().Set("Content-Type", "application/octet-stream")
			w.Header().Set("Last-Modified", time.Now().UTC().Format(http.TimeFormat))
			w.Header().Set("ETag", `"1"`)
			w.WriteHeader(http.StatusOK)
			w.Write(make([]byte, 10))
			w.(http.Flusher).Flush()
			select {
			case <-release:
			case <-r.Context().Done():
			}
		default:
			w.WriteHeader(http.StatusNotImplemented)
		}
	}))
	t.Cleanup(func() {
		close(release)
		srv.Close()
	})
	return srv
}

// A body that stops arriving fails the read after the timeout.
func TestTimeoutStalledBody(t *testing.T) {
	srv := fakeS3(t)
	st, err := s3.OpenConfig(context.Background(), s3.Config{
		Endpoint: strings.TrimPrefix(srv.URL, "http://"), Bucket: "bkt", AccessKey: "a", SecretKey: "s", Timeout: 200 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	if !st.SupportsCreateOnly() {
		t.Fatal("the fake server's probe should find If-None-Match honoured")
	}
	done := make(chan error, 1)
	go func() {
		_, err := st.Get(context.Background(), "stall")
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "timeout") {
			t.Fatalf("Get of a stalled body: %v, want a timeout", err)
		}
	case <-time.After(2 * time.Minute):
		t.Fatal("Get of a stalled body hung")
	}
}

func TestMissingBucketNotExist(t *testing.T) {
	srv := fakeS3(t)
	_, err := s3.OpenConfig(context.Background(), s3.Config{
		Endpoint: strings.TrimPrefix(srv.URL, "http://"), Bucket: "nobucket", AccessKey: "a", SecretKey: "s",
	})
	if !errors.Is(err, store.ErrNotExist) || !strings.Contains(err.Error(), "bucket nobucket does not exist") {
		t.Fatalf("OpenConfig of a missing bucket: %v, want store.ErrNotExist naming the bucket", err)
	}
}

func TestOpenBadTimeout(t *testing.T) {
	t.Setenv("AWS_ACCESS_KEY_ID", "a")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "s")
	t.Setenv("SNAPCRYPT_S3_TIMEOUT", "soon")
	if _, err := s3.Open(context.Background(), "s3:http://127.0.0.1:1/b"); err == nil || !strings.Contains(err.Error(), "SNAPCRYPT_S3_TIMEOUT") {
		t.Fatalf("Open with a bad SNAPCRYPT_S3_TIMEOUT: %v", err)
	}
}
