package main

import (
	"path/filepath"
	"strings"
	"testing"
)

// TestInsecureHTTPFlag: s3:http:// to a host that is not on loopback is
// refused, naming --insecure-http, unless the flag is given.
func TestInsecureHTTPFlag(t *testing.T) {
	key := filepath.Join(t.TempDir(), "key")
	sc(t, nil, "keygen", key).want(t, 0, "")
	env := []string{"AWS_ACCESS_KEY_ID=id", "AWS_SECRET_ACCESS_KEY=secret", "SNAPCRYPT_S3_TIMEOUT=1s"}
	url := "s3:http://192.0.2.1:9000/bucket"
	r := sc(t, env, "snapshots", "-r", url, "-k", key)
	r.want(t, exitUsage, "not on loopback: use s3:https://, or --insecure-http")
	r = sc(t, env, "snapshots", "-r", url, "-k", key, "--insecure-http")
	if r.code == 0 || strings.Contains(r.stderr, "loopback") {
		t.Errorf("with --insecure-http: exit %d, %s; want a connection error", r.code, r.stderr)
	}
}
