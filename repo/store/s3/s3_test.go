package s3_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/snapcrypt/snapcrypt/repo/store"
	"github.com/snapcrypt/snapcrypt/repo/store/retry"
	"github.com/snapcrypt/snapcrypt/repo/store/s3"
	"github.com/snapcrypt/snapcrypt/repo/store/s3/s3test"
	"github.com/snapcrypt/snapcrypt/repo/store/storetest"
)

func TestParseURL(t *testing.T) {
	good := []struct {
		url  string
		want s3.Config
	}{
		{"s3:http://127.0.0.1:7070/bucket", s3.Config{Endpoint: "127.0.0.1:7070", Bucket: "bucket"}},
		{"s3:https://s3.example.com/bucket/", s3.Config{Endpoint: "s3.example.com", Secure: true, Bucket: "bucket"}},
		{"s3:https://h/b/repos/one", s3.Config{Endpoint: "h", Secure: true, Bucket: "b", Prefix: "repos/one"}},
		{"s3:http://h:9000/b/p/", s3.Config{Endpoint: "h:9000", Bucket: "b", Prefix: "p"}},
	}
	for _, g := range good {
		got, err := s3.ParseURL(g.url)
		if err != nil || got != g.want {
			t.Errorf("ParseURL(%q) = %+v, %v; want %+v", g.url, got, err, g.want)
		}
	}
	for _, bad := range []string{
		"http://h/b", "s3:ftp://h/b", "s3:http:///b", "s3:http://h", "s3:http://h/",
		"s3:http://key:secret@h/b", "s3:http://h/b/../x", "s3:http://h/b/p//q", "s3:http://h/b?x=1",
	} {
		if cfg, err := s3.ParseURL(bad); err == nil {
			t.Errorf("ParseURL(%q) = %+v, want an error", bad, cfg)
		} else if strings.Contains(err.Error(), "secret") {
			t.Errorf("ParseURL(%q): error %q shows the secret", bad, err)
		}
	}
}

func TestOpenNeedsCredentials(t *testing.T) {
	t.Setenv("AWS_ACCESS_KEY_ID", "")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "")
	_, err := s3.Open(context.Background(), "s3:http://127.0.0.1:1/bucket")
	if err == nil || !strings.Contains(err.Error(), "AWS_ACCESS_KEY_ID") {
		t.Errorf("Open without credentials: %v", err)
	}
}

func open(t *testing.T, srv *s3test.Server, prefix string) *s3.Store {
	t.Helper()
	s, err := s3.Open(context.Background(), srv.URL(prefix))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestConformance(t *testing.T) {
	srv := s3test.Start(t)
	srv.SetEnv(t)
	storetest.Run(t, func(t *testing.T) store.Store {
		s := open(t, srv, srv.NewPrefix())
		if !s.SupportsCreateOnly() {
			t.Fatal("versitygw should honour If-None-Match")
		}
		return s
	})
}

// TestConformanceRetry runs the suite through the retry wrapper, as the
// command line uses S3.
func TestConformanceRetry(t *testing.T) {
	srv := s3test.Start(t)
	srv.SetEnv(t)
	storetest.Run(t, func(t *testing.T) store.Store {
		return retry.New(open(t, srv, srv.NewPrefix()), retry.Options{})
	})
}

func TestOpen(t *testing.T) {
	srv := s3test.Start(t)
	srv.SetEnv(t)
	ctx := context.Background()

	s := open(t, srv, "")
	if s.Location() != srv.URL("") {
		t.Errorf("Location = %q, want %q", s.Location(), srv.URL(""))
	}
	if strings.Contains(s.Location(), srv.SecretKey) || strings.Contains(s.Location(), srv.AccessKey) {
		t.Errorf("Location %q shows credentials", s.Location())
	}
	// The probe leaves nothing behind.
	for oi := range srv.Client(t).ListObjects(ctx, srv.Bucket, minio.ListObjectsOptions{Recursive: true}) {
		if oi.Err != nil {
			t.Fatal(oi.Err)
		}
		t.Errorf("object left in the bucket: %s", oi.Key)
	}

	if _, err := s3.Open(ctx, "s3:http://"+srv.Endpoint+"/no-such-bucket"); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("Open of a missing bucket: %v", err)
	}
	t.Setenv("AWS_SECRET_ACCESS_KEY", "wrong"+srv.SecretKey[5:])
	if _, err := s3.Open(ctx, srv.URL("")); err == nil {
		t.Error("Open with a wrong secret succeeded")
	} else if strings.Contains(err.Error(), srv.SecretKey[5:]) {
		t.Errorf("error %q shows the secret", err)
	}
}

// TestPrefixesAreSeparate checks that stores under different prefixes of a
// bucket, and one at its root, see only their own objects.
func TestPrefixesAreSeparate(t *testing.T) {
	srv := s3test.Start(t)
	srv.SetEnv(t)
	ctx := context.Background()
	a, b, root := open(t, srv, "repo/a"), open(t, srv, "repo/ab"), open(t, srv, "")
	if err := a.Create(ctx, "config", []byte("a")); err != nil {
		t.Fatal(err)
	}
	if err := b.Create(ctx, "config", []byte("b")); err != nil {
		t.Fatal(err)
	}
	var names []string
	a.List(ctx, "", func(info store.Info) error { names = append(names, info.Name); return nil })
	if strings.Join(names, " ") != "config" {
		t.Errorf("store repo/a lists %v", names)
	}
	if got, err := root.Get(ctx, "repo/ab/config"); err != nil || string(got) != "b" {
		t.Errorf("root store: repo/ab/config = %q, %v", got, err)
	}
}

// TestCreateRaceInstances races Creates through separate Store values, as
// separate processes would.
func TestCreateRaceInstances(t *testing.T) {
	srv := s3test.Start(t)
	srv.SetEnv(t)
	prefix := srv.NewPrefix()
	const instances, names = 4, 10
	stores := make([]*s3.Store, instances)
	for i := range stores {
		stores[i] = open(t, srv, prefix)
	}
	ctx := context.Background()
	wins := make([]int, names)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, s := range stores {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := range names {
				err := s.Create(ctx, "keyring/"+string(rune('a'+n)), []byte("x"))
				if err != nil && !errors.Is(err, store.ErrExist) {
					t.Error(err)
					return
				}
				if err == nil {
					mu.Lock()
					wins[n]++
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	for n, w := range wins {
		if w != 1 {
			t.Errorf("name %d created %d times, want once", n, w)
		}
	}
}

// ignoreIfNoneMatch makes a server look as if it ignored If-None-Match: a
// conditional PUT refused with 412 is reported as a success.
type ignoreIfNoneMatch struct{}

func (ignoreIfNoneMatch) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil || req.Method != http.MethodPut || req.Header.Get("If-None-Match") == "" || resp.StatusCode != http.StatusPreconditionFailed {
		return resp, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return &http.Response{
		Status:     "200 OK",
		StatusCode: http.StatusOK,
		Proto:      resp.Proto, ProtoMajor: resp.ProtoMajor, ProtoMinor: resp.ProtoMinor,
		Header:  http.Header{"Etag": {`"00000000000000000000000000000000"`}},
		Body:    http.NoBody,
		Request: req,
	}, nil
}

func TestServerIgnoringIfNoneMatch(t *testing.T) {
	srv := s3test.Start(t)
	ctx := context.Background()
	cfg, err := s3.ParseURL(srv.URL(srv.NewPrefix()))
	if err != nil {
		t.Fatal(err)
	}
	cfg.AccessKey, cfg.SecretKey = srv.AccessKey, srv.SecretKey
	cfg.Transport = ignoreIfNoneMatch{}
	s, err := s3.OpenConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if s.SupportsCreateOnly() {
		t.Fatal("SupportsCreateOnly = true for a server that ignores If-None-Match")
	}
	err = s.Create(ctx, "keyring/00000000000000000001", []byte("x"))
	if !errors.Is(err, store.ErrUnsupported) || !strings.Contains(err.Error(), "ignores If-None-Match") || !strings.Contains(err.Error(), "keyring/00000000000000000001") {
		t.Errorf("Create: %v, want an ErrUnsupported that says why", err)
	}
	if _, err := s.Stat(ctx, "keyring/00000000000000000001"); !errors.Is(err, store.ErrNotExist) {
		t.Errorf("refused Create wrote the object: Stat = %v", err)
	}
	// Everything else works.
	if err := s.Put(ctx, "config", []byte("c")); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Get(ctx, "config"); err != nil || string(got) != "c" {
		t.Errorf("Get = %q, %v", got, err)
	}
	if got, err := s.GetRange(ctx, "config", 0, 1); err != nil || string(got) != "c" {
		t.Errorf("GetRange = %q, %v", got, err)
	}
	n := 0
	if err := s.List(ctx, "", func(store.Info) error { n++; return nil }); err != nil || n != 1 {
		t.Errorf("List: %d objects, %v; want 1", n, err)
	}
	if err := s.Delete(ctx, "config"); err != nil {
		t.Error(err)
	}
	// The retry wrapper gives up at once.
	r := retry.New(s, retry.Options{Sleep: func(context.Context, time.Duration) error {
		t.Error("retried an unsupported Create")
		return nil
	}})
	if err := r.Create(ctx, "x", nil); !errors.Is(err, store.ErrUnsupported) {
		t.Errorf("retrying Create: %v", err)
	}
}
