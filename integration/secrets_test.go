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
