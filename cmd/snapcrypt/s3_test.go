package main

// CLI tests through the built binary against a real S3 server (Versity
// Gateway, started by s3test for each test). Without versitygw in PATH they
// skip, except with CI=true, where they fail.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/snapcrypt/snapcrypt/repo/store/s3/s3test"
)

// s3Fixture is a fixture whose repository is a fresh prefix in a bucket of
// its own versitygw.
type s3Fixture struct {
	*fixture
	srv    *s3test.Server
	prefix string
}

func newS3Fixture(t *testing.T) *s3Fixture {
	t.Helper()
	srv := s3test.Start(t)
	d := t.TempDir()
	prefix := srv.NewPrefix()
	f := &fixture{dir: d, key: filepath.Join(d, "key"), repo: srv.URL(prefix), src: filepath.Join(d, "src")}
	f.env = append(srv.Env(), "SNAPCRYPT_REPO="+f.repo, "SNAPCRYPT_KEY=file:"+f.key)
	sc(t, nil, "keygen", f.key).want(t, 0, "")
	r := sc(t, f.env, "init")
	r.want(t, 0, "")
	if !strings.Contains(r.stdout, f.repo) {
		t.Fatalf("init does not name the repository %s: %s", f.repo, r.stdout)
	}
	makeTree(t, f.src)
	return &s3Fixture{fixture: f, srv: srv, prefix: prefix}
}

// objects lists the keys below the fixture's prefix that start with sub.
func (f *s3Fixture) objects(t *testing.T, sub string) []minio.ObjectInfo {
	t.Helper()
	var out []minio.ObjectInfo
	for oi := range f.srv.Client(t).ListObjects(context.Background(), f.srv.Bucket,
		minio.ListObjectsOptions{Prefix: f.prefix + "/" + sub, Recursive: true}) {
		if oi.Err != nil {
			t.Fatal(oi.Err)
		}
		out = append(out, oi)
	}
	return out
}

func TestS3RoundTrip(t *testing.T) {
	f := newS3Fixture(t)
	r := sc(t, f.env, "snapshot", "--name", "first", "--tag", "s3", f.src)
	r.want(t, 0, "fifo files are not kept")
	id := lastLine(r.stdout)
	if len(id) != 64 {
		t.Fatalf("last line of stdout %q is not a snapshot id", id)
	}
	if len(f.objects(t, "data/")) == 0 {
		t.Fatal("the snapshot wrote no pack into the bucket")
	}

	r = sc(t, f.env, "snapshots", "--json")
	r.want(t, 0, "")
	var list []map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &list); err != nil || len(list) != 1 ||
		list[0]["id"] != id || list[0]["name"] != "first" {
		t.Fatalf("snapshots --json: %v %s", err, r.stdout)
	}

	for i, ref := range []string{id, id[:10], "first", "latest"} {
		dst := filepath.Join(f.dir, fmt.Sprint("restore-", i))
		sc(t, f.env, "restore", ref, dst).want(t, 0, "")
		if got, want := describe(t, dst), describe(t, f.src); got != want {
			t.Fatalf("restored tree differs from the source\nsource:\n%s\nrestored:\n%s", want, got)
		}
	}

	r = sc(t, f.env, "check", "--read-data")
	r.want(t, 0, "")
	if !strings.Contains(r.stdout, "no problems found") {
		t.Fatalf("check --read-data: %s", r.stdout)
	}

	// An unchanged re-snapshot reads nothing again.
	r = sc(t, f.env, "snapshot", f.src)
	r.want(t, 0, "")
	if !strings.Contains(r.stderr, "read 0 B") {
		t.Fatalf("second snapshot re-read files: %s", r.stderr)
	}

	r = sc(t, f.env, "status", "--json")
	r.want(t, 0, "")
	var status struct {
		Location    string `json:"location"`
		Snapshots   int    `json:"snapshots"`
		Packs       int    `json:"packs"`
		Bytes       int64  `json:"repository_bytes"`
		Generations []struct {
			State string `json:"state"`
			DEKs  int    `json:"wrapped_deks"`
		} `json:"generations"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &status); err != nil {
		t.Fatalf("status --json: %v\n%s", err, r.stdout)
	}
	if status.Location != f.repo || status.Snapshots != 2 || status.Packs == 0 || status.Bytes < 3<<20 ||
		len(status.Generations) != 1 || status.Generations[0].State != "current" || status.Generations[0].DEKs < 2 {
		t.Fatalf("status --json: %s", r.stdout)
	}
	r = sc(t, f.env, "status")
	r.want(t, 0, "")
	if !strings.Contains(r.stdout, "at "+f.repo) || !strings.Contains(r.stdout, "2 snapshots") {
		t.Fatalf("status: %s", r.stdout)
	}
}

// TestS3CorruptedObject flips one byte of the largest pack in the bucket
// through the S3 API: check names it and exits 1, restore exits 5.
func TestS3CorruptedObject(t *testing.T) {
	f := newS3Fixture(t)
	sc(t, f.env, "snapshot", f.src).want(t, 0, "")
	sc(t, f.env, "check", "--read-data").want(t, 0, "")

	var target minio.ObjectInfo
	for _, oi := range f.objects(t, "data/") {
		if oi.Size > target.Size {
			target = oi
		}
	}
	if target.Key == "" {
		t.Fatal("no pack in the bucket")
	}
	ctx := context.Background()
	client := f.srv.Client(t)
	obj, err := client.GetObject(ctx, f.srv.Bucket, target.Key, minio.GetObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(obj)
	obj.Close()
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0x40
	if _, err := client.PutObject(ctx, f.srv.Bucket, target.Key, bytes.NewReader(b), int64(len(b)), minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	name := strings.TrimPrefix(target.Key, f.prefix+"/") // data/xx/<id>

	r := sc(t, f.env, "check", "--read-data")
	r.want(t, exitFailure, "problems found")
	named := false
	for _, line := range strings.Split(r.stdout, "\n") {
		if strings.Contains(line, name) && strings.Contains(line, "corrupted or tampered with") {
			named = true
		}
	}
	if !named {
		t.Fatalf("check output does not name %s as corrupted or tampered with:\n%s", name, r.stdout)
	}
	r = sc(t, f.env, "restore", "latest", filepath.Join(f.dir, "out"))
	r.want(t, exitDamaged, "corrupted or tampered with")
}

func TestS3WrongKey(t *testing.T) {
	f := newS3Fixture(t)
	sc(t, f.env, "snapshot", f.src).want(t, 0, "")
	other := filepath.Join(f.dir, "other.key")
	sc(t, nil, "keygen", other).want(t, 0, "")
	env := append(f.env, "SNAPCRYPT_KEY=file:"+other)
	for _, args := range [][]string{{"snapshots"}, {"check"}, {"restore", "latest", filepath.Join(f.dir, "out")}} {
		r := sc(t, env, args...)
		r.want(t, exitKey, "no key matches")
		key, _ := os.ReadFile(f.key)
		if bytes.Contains([]byte(r.stderr+r.stdout), bytes.TrimSpace(key)) {
			t.Fatal("output contains key material")
		}
	}
}

// blackHole accepts TCP connections and never answers on them.
func blackHole(t *testing.T) string {
	t.Helper()
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
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return l.Addr().String()
}

// closedPort returns a loopback address nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// scBounded runs the binary like sc but kills it if it has not exited after
// limit, failing the test: a guard against hangs, not a timing assertion.
func scBounded(t *testing.T, limit time.Duration, env []string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Env = append(os.Environ(), "SNAPCRYPT_REPO=", "SNAPCRYPT_KEY=")
	cmd.Env = append(cmd.Env, env...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("snapcrypt %s hung: killed after %v\nstderr: %s", strings.Join(args, " "), limit, e.String())
	}
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return result{code, o.String(), e.String()}
}

// TestS3Unavailable: a missing bucket, a closed port and a server that
// never answers each end the command with a clear error and a non-zero
// exit, without hanging.
func TestS3Unavailable(t *testing.T) {
	srv := s3test.Start(t)
	d := t.TempDir()
	key := filepath.Join(d, "key")
	sc(t, nil, "keygen", key).want(t, 0, "")
	// SNAPCRYPT_S3_TIMEOUT shortens the stall timeout so that the black
	// hole fails in seconds; the default (30s) bounds it the same way.
	env := append(srv.Env(), "SNAPCRYPT_KEY=file:"+key, "SNAPCRYPT_S3_TIMEOUT=1s")
	cases := []struct {
		name, url, says string
		code            int
	}{
		// s3.Open's error wraps store.ErrNotExist; exit 4 (exitNoRepo)
		// once openStore maps that to repo.ErrNotRepository for s3, as it
		// does for a local directory. Until then only non-zero is checked.
		{"missing bucket", "s3:http://" + srv.Endpoint + "/no-such-bucket/repo", "bucket no-such-bucket does not exist", exitNoRepo},
		{"no repository under the prefix", srv.URL("nothing-here"), "no snapcrypt repository", exitNoRepo},
		{"closed port", "s3:http://" + closedPort(t) + "/bucket", "connection refused", exitFailure},
		{"server never answers", "s3:http://" + blackHole(t) + "/bucket", "timeout", exitFailure},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			for _, args := range [][]string{{"snapshots"}, {"snapshot", d}, {"init"}} {
				if c.name == "no repository under the prefix" && args[0] == "init" {
					continue // init succeeds there
				}
				r := scBounded(t, 3*time.Minute, env, append(args, "-r", c.url)...)
				if r.code == 0 {
					t.Fatalf("%s: exit 0\nstdout: %s", args[0], r.stdout)
				}
				if !strings.Contains(r.stderr, c.says) {
					t.Fatalf("%s: stderr %q does not say %q", args[0], r.stderr, c.says)
				}
				if args[0] != "init" && c.code != 0 && r.code != c.code {
					t.Fatalf("%s: exit %d, want %d\nstderr: %s", args[0], r.code, c.code, r.stderr)
				}
			}
		})
	}
}

func TestS3ConcurrentSnapshots(t *testing.T) {
	f := newS3Fixture(t)
	var wg sync.WaitGroup
	ids := make([]string, 2)
	for i := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := sc(t, f.env, "snapshot", "--name", fmt.Sprint("p", i), f.src)
			if r.code != 0 {
				t.Errorf("snapshot %d: exit %d: %s", i, r.code, r.stderr)
			}
			ids[i] = lastLine(r.stdout)
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	if ids[0] == ids[1] {
		t.Fatalf("both snapshots have id %s", ids[0])
	}
	r := sc(t, f.env, "snapshots", "--json")
	r.want(t, 0, "")
	var list []map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &list); err != nil || len(list) != 2 {
		t.Fatalf("snapshots --json after two concurrent snapshots: %v %s", err, r.stdout)
	}
	for i, id := range ids {
		dst := filepath.Join(f.dir, fmt.Sprint("r", i))
		sc(t, f.env, "restore", id, dst).want(t, 0, "")
		if describe(t, dst) != describe(t, f.src) {
			t.Fatalf("snapshot %d does not restore the source", i)
		}
	}
	sc(t, f.env, "check", "--read-data").want(t, 0, "")
}
