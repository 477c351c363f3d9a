// Package kmstest starts a private AWS KMS-compatible server for tests:
// local-kms (github.com/nsmithuk/local-kms) seeded with two fresh AES keys
// and an alias for each, behind a counting proxy on loopback that can
// refuse connections and inject KMS errors.
//
// The local-kms binary is looked up in PATH, then in $HOME/go/bin. Install
// it with
//
//	GOBIN=/usr/local/bin go install github.com/nsmithuk/local-kms@v0.0.0-20260228092603-2a5e92d09ab6
//
// Without it, Start skips the test, except when the environment variable CI
// is "true", where a skipped KMS test would hide a gap: then it fails.
package kmstest

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kms"
)

// Install is the command that installs local-kms.
const Install = "GOBIN=/usr/local/bin go install github.com/nsmithuk/local-kms@v0.0.0-20260228092603-2a5e92d09ab6"

// Region and Account are what local-kms puts in its key ARNs.
const (
	Region  = "eu-west-2"
	Account = "111122223333"
)

// Server is a running local-kms behind a proxy.
type Server struct {
	Endpoint string // http://127.0.0.1:PORT: the proxy
	KeyA     string // key id (a UUID) of the first key
	KeyB     string // key id of the second key
	AliasA   string // alias/... naming KeyA
	AliasB   string // alias/... naming KeyB

	backend string // 127.0.0.1:PORT of local-kms
	addr    string // the proxy's address

	mu     sync.Mutex
	ln     net.Listener // nil while Down
	srv    *http.Server
	calls  map[string]int         // requests by operation (Decrypt, Encrypt, ...)
	inject map[string][]injection // errors to answer instead, by operation
}

type injection struct {
	code string
	n    int
}

// Binary returns the path of local-kms, or fails or skips tb as the
// package doc says.
func Binary(tb testing.TB) string {
	tb.Helper()
	if p, err := exec.LookPath("local-kms"); err == nil {
		return p
	}
	if home, err := os.UserHomeDir(); err == nil {
		p := filepath.Join(home, "go", "bin", "local-kms")
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
			return p
		}
	}
	msg := "local-kms not found in PATH or ~/go/bin; install it with: " + Install
	if os.Getenv("CI") == "true" {
		tb.Fatal(msg)
	}
	tb.Skip(msg)
	return ""
}

// Start starts local-kms on a port of its choosing with a fresh seed (two
// AES keys with random material, aliases alias/snapcrypt-a-RANDOM and
// alias/snapcrypt-b-RANDOM) and a proxy on a free loopback port in front of
// it. Both stop when tb's test ends.
func Start(tb testing.TB) *Server {
	tb.Helper()
	bin := Binary(tb)
	dir := tb.TempDir()
	tag := randHex(4)
	s := &Server{
		KeyA: uuid(), KeyB: uuid(),
		AliasA: "alias/snapcrypt-a-" + tag, AliasB: "alias/snapcrypt-b-" + tag,
		calls: map[string]int{}, inject: map[string][]injection{},
	}
	seed := fmt.Sprintf(`Keys:
  Symmetric:
    Aes:
      - Metadata:
          KeyId: %s
        BackingKeys:
          - %s
      - Metadata:
          KeyId: %s
        BackingKeys:
          - %s
Aliases:
  - AliasName: %s
    TargetKeyId: %s
  - AliasName: %s
    TargetKeyId: %s
`, s.KeyA, randHex(32), s.KeyB, randHex(32), s.AliasA, s.KeyA, s.AliasB, s.KeyB)
	seedPath := filepath.Join(dir, "seed.yaml")
	if err := os.WriteFile(seedPath, []byte(seed), 0o600); err != nil {
		tb.Fatal(err)
	}
	if err := s.startBackend(tb, bin, dir, seedPath); err != nil {
		tb.Fatalf("starting local-kms: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	s.addr = ln.Addr().String()
	s.Endpoint = "http://" + s.addr
	s.serve(ln)
	tb.Cleanup(s.Down)
	return s
}

// started is the line local-kms logs once it listens.
var started = regexp.MustCompile(`Local KMS started on [0-9.]*:([0-9]+)`)

func (s *Server) startBackend(tb testing.TB, bin, dir, seedPath string) error {
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), "PORT=0", "KMS_SEED_PATH="+seedPath,
		"KMS_DATA_PATH="+filepath.Join(dir, "data"), "KMS_REGION="+Region, "KMS_ACCOUNT_ID="+Account)
	out, err := cmd.StderrPipe()
	if err != nil {
		return err
	}
	cmd.Stdout = io.Discard
	if err := cmd.Start(); err != nil {
		return err
	}
	var logMu sync.Mutex
	var lines []string
	log := func() string {
		logMu.Lock()
		defer logMu.Unlock()
		return strings.Join(lines, "\n")
	}
	port := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			logMu.Lock()
			lines = append(lines, sc.Text())
			logMu.Unlock()
			if m := started.FindSubmatch(sc.Bytes()); m != nil {
				select {
				case port <- string(m[1]):
				default:
				}
			}
		}
	}()
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exited)
	}()
	tb.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
		if tb.Failed() {
			tb.Logf("local-kms output:\n%s", log())
		}
	})
	select {
	case p := <-port:
		s.backend = "127.0.0.1:" + p
	case <-exited:
		return fmt.Errorf("local-kms exited:\n%s", log())
	case <-time.After(60 * time.Second):
		return fmt.Errorf("local-kms did not start:\n%s", log())
	}
	// It logs before it serves: wait until it answers.
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := client.Get("http://" + s.backend + "/")
		if err == nil {
			resp.Body.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("local-kms did not answer on %s: %v", s.backend, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (s *Server) serve(ln net.Listener) {
	target, _ := url.Parse("http://" + s.backend)
	proxy := httputil.NewSingleHostReverseProxy(target)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		op := r.Header.Get("X-Amz-Target")
		if _, after, ok := strings.Cut(op, "."); ok {
			op = after
		}
		s.mu.Lock()
		s.calls[op]++
		var code string
		if q := s.inject[op]; len(q) > 0 {
			code = q[0].code
			if q[0].n--; q[0].n == 0 {
				s.inject[op] = q[1:]
			}
		}
		s.mu.Unlock()
		if code != "" {
			w.Header().Set("Content-Type", "application/x-amz-json-1.1")
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprintf(w, `{"__type":%q,"message":"injected by kmstest"}`, code)
			return
		}
		proxy.ServeHTTP(w, r)
	})}
	s.mu.Lock()
	s.ln, s.srv = ln, srv
	s.mu.Unlock()
	go srv.Serve(ln)
}

// Calls returns how many requests of operation op ("Decrypt", "Encrypt",
// ...) reached the proxy, injected failures included.
func (s *Server) Calls(op string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[op]
}

// Inject makes the next n requests of operation op fail with the KMS error
// code (an exception name such as "AccessDeniedException" or
// "ThrottlingException") instead of reaching local-kms.
func (s *Server) Inject(op, code string, n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.inject[op] = append(s.inject[op], injection{code, n})
}

// ClearInjected drops the injected failures not answered yet.
func (s *Server) ClearInjected() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.inject)
}

// Down closes the proxy: connections to Endpoint are refused until Up.
func (s *Server) Down() {
	s.mu.Lock()
	srv := s.srv
	s.ln, s.srv = nil, nil
	s.mu.Unlock()
	if srv != nil {
		srv.Close()
	}
}

// Up listens at Endpoint again after Down.
func (s *Server) Up(tb testing.TB) {
	tb.Helper()
	ln, err := net.Listen("tcp", s.addr)
	if err != nil {
		tb.Fatalf("kmstest: listening on %s again: %v", s.addr, err)
	}
	s.serve(ln)
}

// Env returns the environment that points a process's AWS SDK at the
// server (AWS_ENDPOINT_URL_KMS) with the server's region and dummy
// credentials, and keeps it from reading the host's AWS configuration or
// the instance metadata service.
func (s *Server) Env() []string {
	return []string{
		"AWS_ENDPOINT_URL_KMS=" + s.Endpoint,
		"AWS_REGION=" + Region,
		"AWS_ACCESS_KEY_ID=snapcrypt-test",
		"AWS_SECRET_ACCESS_KEY=snapcrypt-test-secret",
		"AWS_SESSION_TOKEN=",
		"AWS_PROFILE=",
		"AWS_CONFIG_FILE=" + os.DevNull,
		"AWS_SHARED_CREDENTIALS_FILE=" + os.DevNull,
		"AWS_EC2_METADATA_DISABLED=true",
	}
}

// SetEnv sets the variables of Env in this process for the rest of tb's
// test (tb must not be parallel).
func (s *Server) SetEnv(tb interface{ Setenv(k, v string) }) {
	for _, kv := range s.Env() {
		k, v, _ := strings.Cut(kv, "=")
		tb.Setenv(k, v)
	}
}

// Client returns a KMS client that talks to local-kms directly (not
// through the proxy, so it is not counted), to manage keys in a test.
func (s *Server) Client() *kms.Client {
	return kms.New(kms.Options{
		Region:       Region,
		BaseEndpoint: aws.String("http://" + s.backend),
		Credentials:  credentials.NewStaticCredentialsProvider("snapcrypt-test", "snapcrypt-test-secret", ""),
	})
}

// DisableKey disables the key key (id, ARN or alias).
func (s *Server) DisableKey(tb testing.TB, key string) {
	tb.Helper()
	if _, err := s.Client().DisableKey(context.Background(), &kms.DisableKeyInput{KeyId: aws.String(key)}); err != nil {
		tb.Fatalf("kmstest: disabling %s: %v", key, err)
	}
}

// EnableKey enables the key key again.
func (s *Server) EnableKey(tb testing.TB, key string) {
	tb.Helper()
	if _, err := s.Client().EnableKey(context.Background(), &kms.EnableKeyInput{KeyId: aws.String(key)}); err != nil {
		tb.Fatalf("kmstest: enabling %s: %v", key, err)
	}
}

// ARN returns the ARN of key id.
func ARN(id string) string {
	return "arn:aws:kms:" + Region + ":" + Account + ":key/" + id
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func uuid() string {
	b := make([]byte, 16)
	rand.Read(b)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b)
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}
