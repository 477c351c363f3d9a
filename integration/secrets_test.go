package integration

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestMountRequestNotEchoed (issue #10): key material written by mistake
// into .ctl/rotate or .ctl/keys (a key's 64 hex characters after "file:"
// or bare, a passphrase after "env:" or "passfile:", a path naming a key
// file) is refused, and neither .ctl/status nor the mount's log repeats
// it; the status shows the kind of key spec only.
func TestMountRequestNotEchoed(t *testing.T) {
	dir := t.TempDir()
	r := newRepo(t)
	src := filepath.Join(dir, "src")
	os.MkdirAll(src, 0o755)
	os.WriteFile(filepath.Join(src, "f"), []byte("data"), 0o644)
	r.Snapshot(t, src)

	random := func() string {
		b := make([]byte, 32)
		rand.Read(b)
		return hex.EncodeToString(b)
	}
	hexKey := random()
	pass := "Passphrase" + random()[:20]
	// A key file that matches nothing, whose path carries a secret: the
	// keychain's error for it quotes the spec.
	secretDir := random()
	os.Mkdir(filepath.Join(dir, secretDir), 0o700)
	stranger := keyFile(t, filepath.Join(dir, secretDir), "stranger.key")

	m := startMount(t, r)
	cases := []struct {
		control, line, kind, secret string
	}{
		{"rotate", "file:" + hexKey + "\n", "file", hexKey},
		{"rotate", hexKey + "\n", "", hexKey},
		{"rotate", "env:" + pass, "env", pass},
		{"rotate", "passfile:" + pass, "passfile", pass},
		{"rotate", "env:my passphrase is " + pass, "", pass},
		{"keys", "file:" + hexKey, "file", hexKey},
		{"keys", "env:" + pass + "\n", "env", pass},
		{"keys", "file:" + stranger, "file", secretDir},
	}
	for _, c := range cases {
		if got := ctlWrite(t, m, c.control, []byte(c.line)); got != syscall.EINVAL {
			t.Errorf(".ctl/%s, a %q spec: errno %v, want EINVAL", c.control, c.kind, got)
		}
		b, err := os.ReadFile(m.Path(".ctl", "status"))
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(b), c.secret) {
			t.Errorf(".ctl/status repeats the request to .ctl/%s:\n%s", c.control, b)
		}
		var s struct {
			Rotation struct {
				LastRequest map[string]any `json:"last_request"`
			} `json:"rotation"`
		}
		if err := json.Unmarshal(b, &s); err != nil {
			t.Fatal(err)
		}
		lr := s.Rotation.LastRequest
		if kind, _ := lr["kind"].(string); lr["control"] != c.control || kind != c.kind || lr["errno"] != "EINVAL" || lr["result"] == "ok" {
			t.Errorf("last request %v, want control %s, kind %q, EINVAL", lr, c.control, c.kind)
		}
	}
	m.Stop(t)
	log := m.Stderr()
	if n := strings.Count(log, ".ctl/"); n < len(cases) {
		t.Fatalf("%d log lines about the requests, want %d:\n%s", n, len(cases), log)
	}
	for _, secret := range []string{hexKey, pass, secretDir} {
		if strings.Contains(log, secret) {
			t.Errorf("the mount's log repeats a request:\n%s", log)
		}
	}
}

// TestMountDebugShowsNoPayload: `mount --debug` logs every FUSE request,
// but neither a key written into .ctl/rotate (bare, as pasted by mistake,
// or after "file:") nor the plaintext of a file read: go-fuse's debug
// output quotes the first bytes of each request's and reply's data, and
// the mount takes them out.
func TestMountDebugShowsNoPayload(t *testing.T) {
	dir := t.TempDir()
	r := newRepo(t)
	src := filepath.Join(dir, "src")
	os.MkdirAll(src, 0o755)
	// Each secret of its own alphabet (the key's is hex without digits),
	// so that six of its characters in a row in the log can only be it.
	letters := func(set string, n int) string {
		b := make([]byte, n)
		rand.Read(b)
		for i := range b {
			b[i] = set[int(b[i])%len(set)]
		}
		return string(b)
	}
	plain := letters("qjxzvk", 64)
	os.WriteFile(filepath.Join(src, "f"), []byte(plain), 0o644)
	r.Snapshot(t, src)
	hexKey := letters("abcdef", 64)

	m := startMount(t, r, "--debug")
	for _, line := range []string{hexKey + "\n", "file:" + hexKey + "\n"} {
		if got := ctlWrite(t, m, "rotate", []byte(line)); got != syscall.EINVAL {
			t.Errorf(".ctl/rotate: errno %v, want EINVAL", got)
		}
	}
	b, err := os.ReadFile(m.Path("snapshots", "latest", "f"))
	if err != nil || string(b) != plain {
		t.Fatalf("read: %q, %v", b, err)
	}
	m.Stop(t)
	log := m.Stderr()
	if !strings.Contains(log, ": WRITE ") {
		t.Fatalf("no WRITE request in the log of mount --debug:\n%s", log)
	}
	if strings.Contains(log, `"file:`) {
		t.Errorf("the log quotes a request to .ctl/rotate")
	}
	for _, s := range []string{hexKey, plain} {
		for i := 0; i+6 <= len(s); i++ {
			if strings.Contains(log, s[i:i+6]) {
				t.Fatalf("the log of mount --debug holds %q of a secret:\n%s", s[i:i+6], log)
			}
		}
	}
}
