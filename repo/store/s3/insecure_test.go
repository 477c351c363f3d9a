package s3_test

import (
	"context"
	"errors"
	"net/http"
	"testing"

	"github.com/snapcrypt/snapcrypt/repo/store/s3"
	"github.com/snapcrypt/snapcrypt/repo/store/s3/s3test"
)

// TestInsecureHTTPRefused: plain http to a host that is not on loopback
// is refused before any request, whatever the host; loopback hosts are
// not refused (the connection to port 1 fails instead).
func TestInsecureHTTPRefused(t *testing.T) {
	t.Setenv("AWS_ACCESS_KEY_ID", "id")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "secret")
	t.Setenv("SNAPCRYPT_S3_TIMEOUT", "2s")
	ctx := context.Background()
	for _, host := range []string{"192.0.2.1:9000", "s3.example.com", "[2001:db8::1]:9000", "10.0.0.1", "localhost.example.com:80", "127.0.0.1.example.com"} {
		_, err := s3.Open(ctx, "s3:http://"+host+"/bucket")
		if !errors.Is(err, s3.ErrInsecureHTTP) {
			t.Errorf("http to %s: %v, want ErrInsecureHTTP", host, err)
		}
	}
	for _, host := range []string{"127.0.0.1:1", "127.8.9.10:1", "[::1]:1", "localhost:1", "LOCALHOST:1"} {
		if _, err := s3.Open(ctx, "s3:http://"+host+"/bucket"); err == nil || errors.Is(err, s3.ErrInsecureHTTP) {
			t.Errorf("http to %s: %v, want a connection error", host, err)
		}
	}
}

// redirect sends every request to the test server, whatever host it was
// made for, keeping the Host header it was signed with.
type redirect string

func (to redirect) RoundTrip(req *http.Request) (*http.Response, error) {
	req = req.Clone(req.Context())
	if req.Host == "" {
		req.Host = req.URL.Host
	}
	req.URL.Host = string(to)
	return http.DefaultTransport.RoundTrip(req)
}

// TestInsecureHTTPAllowed: with InsecureHTTP, a store on a host that is
// not on loopback opens over plain http (the requests reach the test
// server through a transport that redirects them).
func TestInsecureHTTPAllowed(t *testing.T) {
	srv := s3test.Start(t)
	cfg := s3.Config{Endpoint: "192.0.2.1:9000", Bucket: srv.Bucket, Prefix: srv.NewPrefix(),
		AccessKey: srv.AccessKey, SecretKey: srv.SecretKey, Transport: redirect(srv.Endpoint)}
	if _, err := s3.OpenConfig(context.Background(), cfg); !errors.Is(err, s3.ErrInsecureHTTP) {
		t.Fatalf("without InsecureHTTP: %v, want ErrInsecureHTTP", err)
	}
	cfg.InsecureHTTP = true
	st, err := s3.OpenConfig(context.Background(), cfg)
	if err != nil {
		t.Fatalf("with InsecureHTTP: %v", err)
	}
	if err := st.Put(context.Background(), "x", []byte("y")); err != nil {
		t.Fatalf("a write over the allowed plain http: %v", err)
	}
}
