// Package s3 is a store.Store in an S3 bucket, for any server that speaks
// the S3 API (AWS, MinIO, Versity Gateway, Ceph RGW, ...).
//
// Object "a/b" is the key PREFIX/a/b. Reads are plain and ranged GETs, List
// is ListObjectsV2 (which returns keys in lexical byte order), Put is a
// single PUT, which S3 makes atomic. Create is a single PUT with the header
// If-None-Match: * and maps 412 Precondition Failed to store.ErrExist; this
// is the only way to get create-only semantics from S3, and not every server
// honours the header. Open therefore probes the server (see
// SupportsCreateOnly); on a server that ignores it, Create fails with an
// error wrapping store.ErrUnsupported and everything else works.
//
// S3 has no conditional delete, so Delete is a HEAD then a DELETE: two
// concurrent Deletes of one object may both succeed.
//
// No request waits forever: a connection that makes no progress (connect,
// response headers, body bytes in either direction) for Config.Timeout
// fails, and minio-go repeats a failed request at most three times; callers
// that want more wrap the store in package retry.
//
// Of the optional capabilities of package store, a Store is a RangeReader.
// It has no other that would help: a small GET costs what Get does,
// ListObjectsV2 returns names in lexical order with their sizes anyway, and
// S3 cannot delete a prefix atomically for readers.
package s3

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/snapcrypt/snapcrypt/repo/store"
)

// Config says where a store is and how to reach it.
type Config struct {
	Endpoint string // host[:port]
	Secure   bool   // https
	Bucket   string
	Prefix   string // "" or a key prefix without leading or trailing slash

	AccessKey    string
	SecretKey    string
	SessionToken string // optional
	Region       string // default "us-east-1"

	// Transport, if set, carries the HTTP requests (custom TLS roots,
	// tests). Timeout does not apply to it.
	Transport http.RoundTripper

	// InsecureHTTP allows plain http (Secure false) to an endpoint that is
	// not on loopback (see ErrInsecureHTTP).
	InsecureHTTP bool

	// Timeout is how long a connection may make no progress (connecting,
	// waiting for response headers, or between bytes of a body) before the
	// request fails (default DefaultTimeout).
	Timeout time.Duration
}

// DefaultTimeout is the default Config.Timeout.
const DefaultTimeout = 30 * time.Second

// maxRetries is how often minio-go sends one request at most.
const maxRetries = 3

// ParseURL parses a store URL of the form
// s3:http[s]://HOST[:PORT]/BUCKET[/PREFIX] into a Config without
// credentials.
func ParseURL(rawURL string) (Config, error) {
	rest, ok := strings.CutPrefix(rawURL, "s3:")
	if !ok {
		return Config{}, fmt.Errorf("s3 url %q: must start with s3:http:// or s3:https://", rawURL)
	}
	u, err := url.Parse(rest)
	if err != nil {
		return Config{}, fmt.Errorf("s3 url %q: %w", rawURL, err)
	}
	var cfg Config
	switch u.Scheme {
	case "http":
	case "https":
		cfg.Secure = true
	default:
		return Config{}, fmt.Errorf("s3 url %q: scheme must be http or https", rawURL)
	}
	if u.User != nil {
		return Config{}, fmt.Errorf("s3 url: credentials in the URL are not supported; use AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
	}
	if u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return Config{}, fmt.Errorf("s3 url %q: want s3:http[s]://HOST[:PORT]/BUCKET[/PREFIX]", rawURL)
	}
	cfg.Endpoint = u.Host
	path := strings.Trim(u.Path, "/")
	cfg.Bucket, cfg.Prefix, _ = strings.Cut(path, "/")
	if cfg.Bucket == "" {
		return Config{}, fmt.Errorf("s3 url %q: no bucket", rawURL)
	}
	if cfg.Prefix != "" {
		if err := store.CheckName(cfg.Prefix); err != nil {
			return Config{}, fmt.Errorf("s3 url %q: prefix: %w", rawURL, err)
		}
	}
	return cfg, nil
}

// Store is a store in one bucket under one key prefix.
type Store struct {
	client   *minio.Client // with minio-go's own retries
	core     minio.Core    // the same, for single-request calls
	once     minio.Core    // without retries, for conditional PUTs
	bucket   string
	prefix   string // "" or ending in "/"
	location string

	createOnly bool
	noCreate   error // why Create is unavailable, when !createOnly

	streams streams // bodies of large reads, to read on from (stream.go)
}

var (
	_ store.Store       = (*Store)(nil)
	_ store.RangeReader = (*Store)(nil)
)

// ErrInsecureHTTP is returned (wrapped) when a store is to be reached over
// plain http at an endpoint that is not on loopback (127.0.0.0/8, ::1,
// localhost) and Config.InsecureHTTP is not set: the objects are sealed,
// but their names, sizes and the requests' credentials' signatures would
// cross the network in the clear, and anyone on the path could change or
// withhold answers.
var ErrInsecureHTTP = errors.New("plain http to an endpoint that is not on loopback")

// loopback tells whether endpoint (host[:port]) is on this machine:
// localhost or an address in 127.0.0.0/8 or ::1.
func loopback(endpoint string) bool {
	host := endpoint
	if h, _, err := net.SplitHostPort(endpoint); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.Trim(host, "[]"), ".")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Open opens the store at a URL of the form
// s3:http[s]://HOST[:PORT]/BUCKET[/PREFIX] with credentials from the
// environment variables AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
// AWS_SESSION_TOKEN (optional) and AWS_REGION (optional), and the stall
// timeout from SNAPCRYPT_S3_TIMEOUT (optional, a Go duration such as "10s").
// Buckets are addressed path-style. See OpenConfig.
func Open(ctx context.Context, rawURL string) (*Store, error) {
	return OpenURL(ctx, rawURL, false)
}

// OpenURL is Open, with plain http to an endpoint that is not on loopback
// allowed if insecureHTTP (Config.InsecureHTTP).
func OpenURL(ctx context.Context, rawURL string, insecureHTTP bool) (*Store, error) {
	cfg, err := ParseURL(rawURL)
	if err != nil {
		return nil, err
	}
	cfg.InsecureHTTP = insecureHTTP
	cfg.AccessKey = os.Getenv("AWS_ACCESS_KEY_ID")
	cfg.SecretKey = os.Getenv("AWS_SECRET_ACCESS_KEY")
	cfg.SessionToken = os.Getenv("AWS_SESSION_TOKEN")
	cfg.Region = os.Getenv("AWS_REGION")
	if v := os.Getenv("SNAPCRYPT_S3_TIMEOUT"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return nil, fmt.Errorf("SNAPCRYPT_S3_TIMEOUT=%q: want a positive duration such as 30s", v)
		}
		cfg.Timeout = d
	}
	return OpenConfig(ctx, cfg)
}

// noBucketError reports a missing bucket; it is a store.ErrNotExist.
type noBucketError struct{ bucket string }

func (e noBucketError) Error() string        { return "bucket " + e.bucket + " does not exist" }
func (e noBucketError) Is(target error) bool { return target == store.ErrNotExist }

// stallConn fails a Read or Write that makes no progress for timeout. A
// Write also pushes the read deadline on, so that the answer to a request
// is due timeout after its last byte was sent, and an idle pooled
// connection's pending read does not expire under a new request.
type stallConn struct {
	net.Conn
	timeout time.Duration
}

func (c *stallConn) Read(p []byte) (int, error) {
	c.Conn.SetReadDeadline(time.Now().Add(c.timeout))
	return c.Conn.Read(p)
}

func (c *stallConn) Write(p []byte) (int, error) {
	c.Conn.SetDeadline(time.Now().Add(c.timeout))
	return c.Conn.Write(p)
}

// maxIdleConns is the least number of idle connections the transport
// keeps to the server.
const maxIdleConns = 64

// transport returns minio-go's default transport with every connection
// bounded by timeout.
func transport(secure bool, timeout time.Duration) (http.RoundTripper, error) {
	tr, err := minio.DefaultTransport(secure)
	if err != nil {
		return nil, err
	}
	dialer := &net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dialer.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &stallConn{Conn: c, timeout: timeout}, nil
	}
	tr.ResponseHeaderTimeout = timeout
	tr.TLSHandshakeTimeout = timeout
	// Keep an idle connection for each read in flight (the mount has up
	// to 32): beyond minio-go's 16 per host, each read dialled anew.
	tr.MaxIdleConnsPerHost = max(tr.MaxIdleConnsPerHost, maxIdleConns)
	tr.MaxIdleConns = max(tr.MaxIdleConns, maxIdleConns)
	// Close idle connections well before their pending read expires.
	tr.IdleConnTimeout = timeout / 2
	return tr, nil
}

// OpenConfig opens the store cfg describes. It refuses plain http to an
// endpoint that is not on loopback unless cfg.InsecureHTTP (an error
// wrapping ErrInsecureHTTP, before any request). It checks that the bucket
// exists and probes whether the server honours If-None-Match, by creating
// a probe object (a key under the prefix starting with ".probe-", which no
// object name can) twice and deleting it. A server that lets the second
// write through, or refuses the first, leaves Create unavailable.
func OpenConfig(ctx context.Context, cfg Config) (*Store, error) {
	if cfg.AccessKey == "" || cfg.SecretKey == "" {
		return nil, errors.New("open s3 store: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY must be set")
	}
	if cfg.Region == "" {
		cfg.Region = "us-east-1"
	}
	loc := "s3:http://"
	if cfg.Secure {
		loc = "s3:https://"
	}
	loc += cfg.Endpoint + "/" + cfg.Bucket
	prefix := strings.Trim(cfg.Prefix, "/")
	if prefix != "" {
		loc += "/" + prefix
		prefix += "/"
	}
	if !cfg.Secure && !cfg.InsecureHTTP && !loopback(cfg.Endpoint) {
		return nil, fmt.Errorf("open %s: %w", loc, ErrInsecureHTTP)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Transport == nil {
		tr, err := transport(cfg.Secure, cfg.Timeout)
		if err != nil {
			return nil, fmt.Errorf("open %s: %w", loc, err)
		}
		cfg.Transport = tr
	}
	newClient := func(retries int) (*minio.Client, error) {
		return minio.New(cfg.Endpoint, &minio.Options{
			Creds:        credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, cfg.SessionToken),
			Secure:       cfg.Secure,
			Transport:    cfg.Transport,
			Region:       cfg.Region,
			BucketLookup: minio.BucketLookupPath,
			MaxRetries:   retries,
		})
	}
	client, err := newClient(maxRetries)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", loc, err)
	}
	// A conditional PUT that minio-go retried after a lost response would
	// fail with 412 against its own first attempt; leave retrying it to the
	// caller (package retry knows how).
	onceClient, err := newClient(1)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", loc, err)
	}
	s := &Store{client: client, core: minio.Core{Client: client}, once: minio.Core{Client: onceClient}, bucket: cfg.Bucket, prefix: prefix, location: loc}
	ok, err := client.BucketExists(ctx, cfg.Bucket)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", loc, s.mapErr(err))
	}
	if !ok {
		return nil, fmt.Errorf("open %s: %w", loc, noBucketError{cfg.Bucket})
	}
	if err := s.probe(ctx); err != nil {
		return nil, fmt.Errorf("open %s: probing If-None-Match support: %w", loc, err)
	}
	return s, nil
}

// probe finds out whether the server honours If-None-Match: *.
func (s *Store) probe(ctx context.Context) error {
	var r [16]byte
	rand.Read(r[:])
	key := s.prefix + ".probe-" + hex.EncodeToString(r[:])
	data := []byte("snapcrypt If-None-Match probe\n")
	err := s.putIfNoneMatch(ctx, key, data)
	if err != nil {
		if isCode(err, "AccessDenied") || isCode(err, "NotImplemented") {
			s.noCreate = fmt.Errorf("the create-only probe write was refused (%v)", err)
			return nil
		}
		return err
	}
	defer func() {
		// Best effort: a leftover probe object is invisible to List.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		s.client.RemoveObject(cctx, s.bucket, key, minio.RemoveObjectOptions{})
	}()
	err = s.putIfNoneMatch(ctx, key, data)
	switch {
	case err == nil:
		s.noCreate = errors.New("this S3 server ignores If-None-Match: create-only writes (keyring changes, rotation) are unavailable")
		return nil
	case isCode(err, "PreconditionFailed"):
		s.createOnly = true
		return nil
	case isCode(err, "NotImplemented"):
		s.noCreate = fmt.Errorf("this S3 server does not implement If-None-Match (%v): create-only writes (keyring changes, rotation) are unavailable", err)
		return nil
	}
	return err
}

// SupportsCreateOnly reports whether the server honours If-None-Match, that
// is, whether Create works.
func (s *Store) SupportsCreateOnly() bool { return s.createOnly }

// Location implements store.Store: the URL without credentials.
func (s *Store) Location() string { return s.location }

func (s *Store) key(name string) string { return s.prefix + name }

func check(ctx context.Context, op, name string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s %s: %w", op, name, err)
	}
	if err := store.CheckName(name); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	return nil
}

func isCode(err error, code string) bool {
	var resp minio.ErrorResponse
	return errors.As(err, &resp) && resp.Code == code
}

// permanentError marks errors that retrying cannot fix, for package retry.
type permanentError struct{ error }

func (e permanentError) Unwrap() error   { return e.error }
func (e permanentError) Permanent() bool { return true }

// mapErr turns a missing key into store.ErrNotExist and marks permanent
// errors.
func (s *Store) mapErr(err error) error {
	var resp minio.ErrorResponse
	if !errors.As(err, &resp) {
		return err
	}
	switch resp.Code {
	case "NoSuchKey", "NotFound":
		return fmt.Errorf("%w (%s)", store.ErrNotExist, resp.Code)
	case "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "NoSuchBucket",
		"InvalidBucketName", "AllAccessDisabled", "InvalidArgument", "InvalidRequest", "NotImplemented":
		return permanentError{err}
	}
	return err
}

// Stat implements store.Reader.
func (s *Store) Stat(ctx context.Context, name string) (store.Info, error) {
	if err := check(ctx, "stat", name); err != nil {
		return store.Info{}, err
	}
	oi, err := s.client.StatObject(ctx, s.bucket, s.key(name), minio.StatObjectOptions{})
	if err != nil {
		return store.Info{}, fmt.Errorf("stat %s: %w", name, s.mapErr(err))
	}
	return store.Info{Name: name, Size: oi.Size}, nil
}

// List implements store.Reader. Keys under the store's prefix that are not
// valid object names (such as probe objects) are skipped.
func (s *Store) List(ctx context.Context, prefix string, fn func(store.Info) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("list %q: %w", prefix, err)
	}
	lctx, cancel := context.WithCancel(ctx)
	defer cancel() // stops the listing goroutine when fn fails
	for oi := range s.client.ListObjects(lctx, s.bucket, minio.ListObjectsOptions{Prefix: s.key(prefix), Recursive: true}) {
		if oi.Err != nil {
			return fmt.Errorf("list %q: %w", prefix, s.mapErr(oi.Err))
		}
		name, ok := strings.CutPrefix(oi.Key, s.prefix)
		if !ok || store.CheckName(name) != nil {
			continue
		}
		if err := fn(store.Info{Name: name, Size: oi.Size}); err != nil {
			return err
		}
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("list %q: %w", prefix, err)
	}
	return nil
}

// putOptions are the options of a PUT of data. The body goes with its
// CRC-32C in x-amz-checksum-crc32c, which the server checks (it refuses a
// body damaged on the way), and an unsigned payload
// (X-Amz-Content-Sha256: UNSIGNED-PAYLOAD). A signed payload costs a
// SHA-256 pass over every byte on both ends (over plain http minio-go signs
// each 64 KiB chunk), and Content-MD5 an MD5 pass on both ends (Versity
// Gateway then hashes MD5 twice); with them, snapshots into S3 over
// loopback were CPU-bound (docs/bench.md). CRC-32C is what the
// AWS SDKs send by default now and costs next to nothing (SSE 4.2). A
// server that ignores the header stores the body unchecked; every object
// but the few small plaintext ones is sealed with AES-GCM, so damage is
// still found when the object is read (check --read-data).
func putOptions(data []byte) minio.PutObjectOptions {
	var sum [4]byte
	binary.BigEndian.PutUint32(sum[:], crc32.Checksum(data, castagnoli))
	return minio.PutObjectOptions{
		ContentType:          "application/octet-stream",
		DisableContentSha256: true,
		// minio-go sends x-amz-checksum-* keys as headers, not metadata.
		UserMetadata: map[string]string{"X-Amz-Checksum-Crc32c": base64.StdEncoding.EncodeToString(sum[:])},
	}
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// putIfNoneMatch PUTs data at key only if the key does not exist. A server
// may answer 409 ConditionalRequestConflict while a competing conditional
// write is in flight; the PUT is repeated then until it gets a final
// answer.
func (s *Store) putIfNoneMatch(ctx context.Context, key string, data []byte) error {
	opts := putOptions(data)
	opts.SetMatchETagExcept("*")
	for attempt := 0; ; attempt++ {
		_, err := s.once.PutObject(ctx, s.bucket, key, bytes.NewReader(data), int64(len(data)), "", "", opts)
		if !isCode(err, "ConditionalRequestConflict") || attempt == 10 {
			return err
		}
		t := time.NewTimer(time.Duration(attempt+1) * 20 * time.Millisecond)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
	}
}

// Create implements store.Store with a PUT carrying If-None-Match: *.
func (s *Store) Create(ctx context.Context, name string, data []byte) error {
	if err := check(ctx, "create", name); err != nil {
		return err
	}
	if !s.createOnly {
		return fmt.Errorf("create %s: %w: %w", name, s.noCreate, store.ErrUnsupported)
	}
	err := s.putIfNoneMatch(ctx, s.key(name), data)
	if isCode(err, "PreconditionFailed") {
		return fmt.Errorf("create %s: %w", name, store.ErrExist)
	}
	if err != nil {
		return fmt.Errorf("create %s: %w", name, s.mapErr(err))
	}
	return nil
}

// Put implements store.Store with a single PUT.
func (s *Store) Put(ctx context.Context, name string, data []byte) error {
	if err := check(ctx, "put", name); err != nil {
		return err
	}
	s.streams.forget(name)
	_, err := s.core.PutObject(ctx, s.bucket, s.key(name), bytes.NewReader(data), int64(len(data)),
		"", "", putOptions(data))
	if err != nil {
		return fmt.Errorf("put %s: %w", name, s.mapErr(err))
	}
	return nil
}

// Delete implements store.Store: HEAD to report a missing object, then
// DELETE (which S3 answers with success for a missing key).
func (s *Store) Delete(ctx context.Context, name string) error {
	if err := check(ctx, "delete", name); err != nil {
		return err
	}
	s.streams.forget(name)
	if _, err := s.client.StatObject(ctx, s.bucket, s.key(name), minio.StatObjectOptions{}); err != nil {
		return fmt.Errorf("delete %s: %w", name, s.mapErr(err))
	}
	if err := s.client.RemoveObject(ctx, s.bucket, s.key(name), minio.RemoveObjectOptions{}); err != nil {
		return fmt.Errorf("delete %s: %w", name, s.mapErr(err))
	}
	return nil
}
