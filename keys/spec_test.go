package keys

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeFile(t *testing.T, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestParseSpec(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Spec
		err  bool
	}{
		{"file:/a/b", Spec{SpecFile, "/a/b"}, false},
		{"passfile:/p", Spec{SpecPassfile, "/p"}, false},
		{"env:SNAP_PASS", Spec{SpecEnv, "SNAP_PASS"}, false},
		{"/bare/path", Spec{SpecFile, "/bare/path"}, false},
		{"rel:ative", Spec{SpecFile, "rel:ative"}, false},
		{"file:", Spec{}, true},
		{"env:", Spec{}, true},
		{"env:A=B", Spec{}, true},
		{"", Spec{}, true},
	} {
		got, err := ParseSpec(tc.in)
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("ParseSpec(%q) = %v, %v; want %v, error %v", tc.in, got, err, tc.want, tc.err)
		}
		if err != nil && !errors.Is(err, ErrBadKey) {
			t.Errorf("ParseSpec(%q) error %v does not wrap ErrBadKey", tc.in, err)
		}
		if err == nil && got.String() != string(got.Kind)+":"+got.Path {
			t.Errorf("String() = %q", got.String())
		}
	}
}

func TestLoadKeyFile(t *testing.T) {
	raw := bytes.Repeat([]byte{0x01, 0xfe, 0x80, 0x7f}, 8)
	for _, tc := range []struct {
		name string
		data []byte
	}{
		{"raw", raw},
		{"hex", []byte(hex.EncodeToString(raw))},
		{"hex-newline", []byte("  " + hex.EncodeToString(raw) + "\n")},
		{"hex-upper", []byte(strings.ToUpper(hex.EncodeToString(raw)) + "\r\n")},
		{"base64", []byte(base64.StdEncoding.EncodeToString(raw) + "\n")},
		{"base64-raw-url", []byte(base64.RawURLEncoding.EncodeToString(raw))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := writeFile(t, "key", tc.data)
			m, err := Spec{SpecFile, p}.Load()
			if err != nil {
				t.Fatal(err)
			}
			if m.IsPassphrase() || !bytes.Equal(m.raw, raw) {
				t.Fatalf("loaded the wrong key")
			}
			if m.Source() != "file:"+p {
				t.Errorf("Source() = %q", m.Source())
			}
		})
	}
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	secret := "correct horse battery staple!!!\n" // 32 bytes of text
	short := writeFile(t, "short", bytes.Repeat([]byte{0x9c}, 31))
	text32 := writeFile(t, "text32", []byte(secret))
	badhex := writeFile(t, "badhex", []byte(strings.Repeat("zz", 32)))
	emptyPass := writeFile(t, "emptypass", []byte("\n"))
	t.Setenv("SNAPCRYPT_TEST_EMPTY", "")
	for _, tc := range []struct {
		spec Spec
		want string
	}{
		{Spec{SpecFile, short}, "key file " + short + ": 31 bytes, want 32 raw bytes, 64 hex characters or base64 of 32 bytes"},
		{Spec{SpecFile, text32}, "32 bytes of text"},
		{Spec{SpecFile, badhex}, "64 bytes, want 32 raw bytes"},
		{Spec{SpecFile, dir}, "key file " + dir + " is a directory"},
		{Spec{SpecFile, filepath.Join(dir, "missing")}, "no such file or directory"},
		{Spec{SpecPassfile, emptyPass}, "passphrase file " + emptyPass + " is empty"},
		{Spec{SpecPassfile, dir}, "passphrase file " + dir + " is a directory"},
		{Spec{SpecEnv, "SNAPCRYPT_TEST_EMPTY"}, "environment variable SNAPCRYPT_TEST_EMPTY is empty"},
		{Spec{SpecEnv, "SNAPCRYPT_TEST_UNSET_XYZ"}, "environment variable SNAPCRYPT_TEST_UNSET_XYZ is not set"},
	} {
		_, err := tc.spec.Load()
		if err == nil {
			t.Errorf("%v: loaded", tc.spec)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %q, want it to contain %q", tc.spec, err, tc.want)
		}
		if !errors.Is(err, ErrBadKey) {
			t.Errorf("%v: error %q does not wrap ErrBadKey", tc.spec, err)
		}
		if strings.Contains(err.Error(), "horse") || strings.Contains(err.Error(), "zzzz") {
			t.Errorf("%v: error %q quotes the key", tc.spec, err)
		}
	}
}

func TestLoadPassphrase(t *testing.T) {
	for _, tc := range []struct{ data, want string }{
		{"hunter2\n", "hunter2"},
		{"hunter2", "hunter2"},
		{"hunter2\r\n", "hunter2"},
		{"two lines\n\n", "two lines\n"},
		{" spaced \n", " spaced "},
	} {
		p := writeFile(t, "pass", []byte(tc.data))
		m, err := Spec{SpecPassfile, p}.Load()
		if err != nil {
			t.Fatal(err)
		}
		if !m.IsPassphrase() || string(m.pass) != tc.want {
			t.Errorf("passfile %q: got %q, want %q", tc.data, m.pass, tc.want)
		}
	}
	t.Setenv("SNAPCRYPT_TEST_PASS", "from env\n")
	m, err := Spec{SpecEnv, "SNAPCRYPT_TEST_PASS"}.Load()
	if err != nil || string(m.pass) != "from env\n" {
		t.Fatalf("env: %v", err)
	}
}

func TestMaterialDoesNotPrint(t *testing.T) {
	m, _ := NewPassphrase([]byte("s3cret-pass"))
	r, _ := NewRawKey(bytes.Repeat([]byte{'k'}, 32))
	for _, x := range []*Material{m, r} {
		for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d"} {
			s := fmt.Sprintf(verb, x)
			if s != "[key material]" {
				t.Errorf("Sprintf(%s) = %q", verb, s)
			}
		}
		if s := fmt.Sprintf("%v", struct{ M *Material }{x}); strings.Contains(s, "s3cret") || strings.Contains(s, "kkkk") {
			t.Errorf("embedded: %s", s)
		}
	}
	if _, err := NewRawKey(make([]byte, 31)); !errors.Is(err, ErrBadKey) {
		t.Errorf("NewRawKey(31 bytes): %v", err)
	}
	if _, err := NewPassphrase(nil); !errors.Is(err, ErrBadKey) {
		t.Errorf("NewPassphrase(nil): %v", err)
	}
}

func TestGenerateKeyFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "k")
	if err := GenerateKeyFile(p); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 || fi.Size() != 65 {
		t.Errorf("mode %v size %d, want 0600 and 65", fi.Mode().Perm(), fi.Size())
	}
	before, _ := os.ReadFile(p)
	if err := GenerateKeyFile(p); err == nil {
		t.Fatal("overwrote an existing key file")
	}
	after, _ := os.ReadFile(p)
	if !bytes.Equal(before, after) {
		t.Fatal("key file changed")
	}
	m, err := Spec{SpecFile, p}.Load()
	if err != nil {
		t.Fatal(err)
	}
	p2 := filepath.Join(t.TempDir(), "k2")
	GenerateKeyFile(p2)
	m2, _ := Spec{SpecFile, p2}.Load()
	if bytes.Equal(m.raw, m2.raw) {
		t.Fatal("two generated keys are equal")
	}
}
