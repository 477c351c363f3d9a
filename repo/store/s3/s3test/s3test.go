// Package s3test starts a private S3 server, Versity Gateway (versitygw)
// over a temporary directory, for tests of the s3 store and for integration
// tests that want an S3 repository.
//
// The versitygw binary is looked up in PATH. Install it with
//
//	GOBIN=/usr/local/bin go install github.com/versity/versitygw/cmd/versitygw@v1.8.0
//
// Without it, Start skips the test, except when the environment variable CI
// is "true", where a skipped S3 test would hide a gap: then it fails.
package s3test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// Server is a running versitygw serving one bucket.
type Server struct {
	Endpoint  string // 127.0.0.1:PORT
	AccessKey string
	SecretKey string
	Bucket    string
	Dir       string // the directory versitygw serves

	prefixes atomic.Int64
}

// Binary returns the path of versitygw, or fails or skips tb as the package
// doc says.
func Binary(tb testing.TB) string {
	tb.Helper()
	path, err := exec.LookPath("versitygw")
	if err != nil {
		msg := "versitygw not found in PATH; install it with: GOBIN=/usr/local/bin go install github.com/versity/versitygw/cmd/versitygw@v1.8.0"
		if os.Getenv("CI") == "true" {
			tb.Fatal(msg)
		}
		tb.Skip(msg)
	}
	return path
}

// Start starts versitygw on a free loopback port with fresh credentials,
// waits until it answers, creates a bucket, and stops the server when tb's
// test ends.
func Start(tb testing.TB) *Server {
	tb.Helper()
	bin := Binary(tb)
	dir := tb.TempDir()
	root := filepath.Join(dir, "root")
	if err := os.Mkdir(root, 0o700); err != nil {
		tb.Fatal(err)
	}
	s := &Server{
		AccessKey: "snapcrypt" + randHex(4),
		SecretKey: randHex(20),
		Bucket:    "snapcrypt-test",
		Dir:       root,
	}
	var lastErr error
	for range 3 { // a port taken between choosing and binding: choose again
		if lastErr = s.start(tb, bin, dir); lastErr == nil {
			break
		}
	}
	if lastErr != nil {
		tb.Fatalf("starting versitygw: %v", lastErr)
	}
	ctx := context.Background()
	if err := s.Client(tb).MakeBucket(ctx, s.Bucket, minio.MakeBucketOptions{}); err != nil {
		tb.Fatalf("versitygw: creating bucket: %v", err)
	}
	return s
}

// syncBuffer collects a process's output.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func (s *Server) start(tb testing.TB, bin, dir string) error {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	addr := l.Addr().String()
	l.Close()

	out := &syncBuffer{}
	cmd := exec.Command(bin, "--port", addr, "--quiet", "posix", s.Dir)
	cmd.Env = append(os.Environ(), "ROOT_ACCESS_KEY="+s.AccessKey, "ROOT_SECRET_KEY="+s.SecretKey)
	cmd.Stdout = out
	cmd.Stderr = out
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exited)
	}()
	stop := func() {
		cmd.Process.Kill()
		<-exited
	}

	// Wait until it answers HTTP (any status) or exits.
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := client.Get("http://" + addr + "/")
		if err == nil {
			resp.Body.Close()
			break
		}
		select {
		case <-exited:
			return fmt.Errorf("versitygw exited: %s", out.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			stop()
			return fmt.Errorf("versitygw did not answer on %s: %v\n%s", addr, err, out.String())
		}
	}
	s.Endpoint = addr
	tb.Cleanup(func() {
		stop()
		if tb.Failed() {
			tb.Logf("versitygw output:\n%s", out.String())
		}
	})
	return nil
}

// Client returns a minio-go client for the server.
func (s *Server) Client(tb testing.TB) *minio.Client {
	tb.Helper()
	c, err := minio.New(s.Endpoint, &minio.Options{
		Creds:        credentials.NewStaticV4(s.AccessKey, s.SecretKey, ""),
		BucketLookup: minio.BucketLookupPath,
		Region:       "us-east-1",
	})
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

// URL returns the store URL of the bucket under the key prefix (which may
// be empty): s3:http://127.0.0.1:PORT/BUCKET[/PREFIX].
func (s *Server) URL(prefix string) string {
	u := "s3:http://" + s.Endpoint + "/" + s.Bucket
	if prefix != "" {
		u += "/" + prefix
	}
	return u
}

// NewPrefix returns a key prefix that no earlier call returned, for a fresh,
// empty store in the same bucket.
func (s *Server) NewPrefix() string {
	return fmt.Sprintf("t%04d", s.prefixes.Add(1))
}

// Env returns the environment variables that give a process (such as the
// snapcrypt binary) the server's credentials.
func (s *Server) Env() []string {
	return []string{
		"AWS_ACCESS_KEY_ID=" + s.AccessKey,
		"AWS_SECRET_ACCESS_KEY=" + s.SecretKey,
		"AWS_SESSION_TOKEN=",
		"AWS_REGION=us-east-1",
	}
}

// SetEnv sets the variables of Env in this process for the rest of tb's
// test (tb must not be parallel), as s3.Open reads them.
func (s *Server) SetEnv(tb interface{ Setenv(k, v string) }) {
	for _, kv := range s.Env() {
		k, v, _ := strings.Cut(kv, "=")
		tb.Setenv(k, v)
	}
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
