package keys

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
)

// KeySize is the size of a raw key, a KEK and a DEK in bytes.
const KeySize = 32

// maxKeyFile bounds what Load reads from a key or passphrase file.
const maxKeyFile = 64 << 10

// SpecKind says where a Spec's key comes from.
type SpecKind string

// The kinds of key spec.
const (
	SpecFile     SpecKind = "file"     // a file holding a raw 32-byte key
	SpecPassfile SpecKind = "passfile" // a file holding a passphrase
	SpecEnv      SpecKind = "env"      // an environment variable holding a passphrase
	SpecCmd      SpecKind = "cmd"      // a command that prints a key (as a key file holds it)
	SpecPasscmd  SpecKind = "passcmd"  // a command that prints a passphrase
	SpecAWSKMS   SpecKind = "awskms"   // an AWS KMS key (id, ARN or alias) that holds the key
)

// Spec names where an operator's key comes from. It holds no key material.
// Its String method is safe to print; its Path field is not for the
// command kinds (a command line may carry a secret).
type Spec struct {
	Kind SpecKind
	// Path is the file path for SpecFile and SpecPassfile, the variable
	// name for SpecEnv, the command line for SpecCmd and SpecPasscmd, and
	// the KMS key id, ARN or alias for SpecAWSKMS.
	Path string
}

// ParseSpec parses a key spec:
//
//	file:PATH         a key file: 32 raw bytes, 64 hex characters or base64 of 32 bytes
//	passfile:PATH     a passphrase file: its content minus one trailing newline
//	env:NAME          a passphrase in the environment variable NAME
//	cmd:COMMAND       a command printing a key, read as a key file is
//	passcmd:COMMAND   a command printing a passphrase (minus one trailing newline)
//	awskms:KEY        an AWS KMS key: key id, key ARN, alias name or alias ARN
//	PATH              the same as file:PATH
//
// A COMMAND is split into words as splitCommand documents (POSIX shell
// quoting, no shell, no expansion) and checked here; it runs in Load.
// Errors about a command spec never repeat the command line.
func ParseSpec(s string) (Spec, error) {
	kind, rest, ok := strings.Cut(s, ":")
	var sp Spec
	switch {
	case ok && kind == string(SpecFile):
		sp = Spec{SpecFile, rest}
	case ok && kind == string(SpecPassfile):
		sp = Spec{SpecPassfile, rest}
	case ok && kind == string(SpecEnv):
		sp = Spec{SpecEnv, rest}
		if strings.ContainsAny(rest, "= \t\n\x00") {
			return Spec{}, badKey(nil, "key spec env:%s: not a valid environment variable name", rest)
		}
	case ok && (kind == string(SpecCmd) || kind == string(SpecPasscmd)):
		if _, err := splitCommand(rest); err != nil {
			return Spec{}, badKey(nil, "key spec %s:COMMAND: %v", kind, err)
		}
		return Spec{SpecKind(kind), rest}, nil
	case ok && kind == string(SpecAWSKMS):
		if err := validKMSKey(rest); err != nil {
			return Spec{}, badKey(nil, "key spec awskms:KEY: %v", err)
		}
		return Spec{SpecAWSKMS, rest}, nil
	default:
		sp = Spec{SpecFile, s}
	}
	if sp.Path == "" {
		return Spec{}, badKey(nil, "key spec %q: empty %s", s, map[bool]string{true: "variable name", false: "path"}[sp.Kind == SpecEnv])
	}
	return sp, nil
}

// IsExplicitSpec reports whether s names its kind (file:, passfile:, env:,
// cmd:, passcmd: or awskms:), rather than being a bare path.
func IsExplicitSpec(s string) bool {
	kind, _, ok := strings.Cut(s, ":")
	if !ok {
		return false
	}
	switch SpecKind(kind) {
	case SpecFile, SpecPassfile, SpecEnv, SpecCmd, SpecPasscmd, SpecAWSKMS:
		return true
	}
	return false
}

// String returns the spec as it is safe to show: as ParseSpec accepts it
// ("file:/etc/key", "env:NAME"), except that the command line of a cmd: or
// passcmd: spec is replaced by "[command not shown]".
func (s Spec) String() string {
	if s.Kind == SpecCmd || s.Kind == SpecPasscmd {
		return string(s.Kind) + ":" + commandNotShown
	}
	return string(s.Kind) + ":" + s.Path
}

// GoString is String, so that %#v does not show a command line either.
func (s Spec) GoString() string { return s.String() }

// Load reads the key material the spec names; for cmd: and passcmd: it
// runs the command (see runCommand) with a timeout of
// DefaultCommandTimeout or what CommandTimeoutEnv says; for awskms: it
// configures a KMS client (NewAWSKMSKey) and sends nothing yet. Its errors
// wrap ErrBadKey, say what is wrong and never contain key bytes, a
// command's output or its command line.
func (s Spec) Load() (*Material, error) {
	switch s.Kind {
	case SpecAWSKMS:
		return NewAWSKMSKey(context.Background(), s.Path)
	case SpecCmd:
		out, err := loadCommand(context.Background(), "key command", s.Path)
		if err != nil {
			return nil, err
		}
		defer clear(out)
		raw, err := parseKeyBytes(out)
		if err != nil {
			hint := ""
			if isText(out) && !strings.Contains(err.Error(), "passphrase") {
				hint = " (a passphrase belongs in passcmd:COMMAND)"
			}
			return nil, badKey(nil, "key command: its output: %v%s", err, hint)
		}
		m := newRaw(raw, s.String())
		clear(raw)
		return m, nil
	case SpecPasscmd:
		out, err := loadCommand(context.Background(), "passphrase command", s.Path)
		if err != nil {
			return nil, err
		}
		defer clear(out)
		p := trimNewline(out)
		if len(p) == 0 {
			return nil, badKey(nil, "passphrase command printed an empty line")
		}
		return newPassphrase(p, s.String()), nil
	case SpecFile:
		b, err := readKeyFile("key file", s.Path)
		if err != nil {
			return nil, err
		}
		defer clear(b)
		raw, err := parseKeyBytes(b)
		if err != nil {
			return nil, badKey(nil, "key file %s: %v", s.Path, err)
		}
		m := newRaw(raw, s.String())
		clear(raw)
		return m, nil
	case SpecPassfile:
		b, err := readKeyFile("passphrase file", s.Path)
		if err != nil {
			return nil, err
		}
		defer clear(b)
		p := trimNewline(b)
		if len(p) == 0 {
			return nil, badKey(nil, "passphrase file %s is empty", s.Path)
		}
		return newPassphrase(p, s.String()), nil
	case SpecEnv:
		v, ok := os.LookupEnv(s.Path)
		if !ok {
			return nil, badKey(nil, "environment variable %s is not set", s.Path)
		}
		if v == "" {
			return nil, badKey(nil, "environment variable %s is empty", s.Path)
		}
		return newPassphrase([]byte(v), s.String()), nil
	}
	return nil, badKey(nil, "key spec %s: unknown kind %q", s, s.Kind)
}

// trimNewline returns p without one trailing "\n" or "\r\n".
func trimNewline(p []byte) []byte {
	if bytes.HasSuffix(p, []byte("\n")) {
		p = p[:len(p)-1]
		p = bytes.TrimSuffix(p, []byte("\r"))
	}
	return p
}

func readKeyFile(what, path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, badKey(err, "%s %s: %v", what, path, errors.Unwrap(err))
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, badKey(err, "%s %s: %v", what, path, err)
	}
	if fi.IsDir() {
		return nil, badKey(nil, "%s %s is a directory", what, path)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxKeyFile+1))
	if err != nil {
		// A read error on a directory or special file; the error names the path.
		return nil, badKey(err, "%s %s: %v", what, path, errors.Unwrap(err))
	}
	if len(b) > maxKeyFile {
		clear(b)
		return nil, badKey(nil, "%s %s: larger than %d bytes", what, path, maxKeyFile)
	}
	return b, nil
}

// parseKeyBytes accepts 32 raw bytes, or (surrounding white space trimmed)
// 64 hex characters or base64 (standard or URL alphabet, padded or not) of
// 32 bytes. A 32-byte file of printable text is refused: it is almost
// certainly a short passphrase or a hex-encoded 16-byte key, not a raw key.
// Errors never quote the input.
func parseKeyBytes(b []byte) ([]byte, error) {
	want := "want 32 raw bytes, 64 hex characters or base64 of 32 bytes"
	if len(b) == KeySize {
		if isText(b) {
			return nil, fmt.Errorf("32 bytes of text, %s (a passphrase belongs in passfile:PATH or passcmd:COMMAND)", want)
		}
		return bytes.Clone(b), nil
	}
	t := bytes.TrimSpace(b)
	if len(t) == 2*KeySize {
		raw := make([]byte, KeySize)
		if _, err := hex.Decode(raw, t); err == nil {
			return raw, nil
		}
		clear(raw)
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if enc.DecodedLen(len(t)) < KeySize || enc.DecodedLen(len(t)) > KeySize+2 {
			continue
		}
		raw := make([]byte, enc.DecodedLen(len(t)))
		n, err := enc.Decode(raw, t)
		if err == nil && n == KeySize {
			return raw[:n], nil
		}
		clear(raw)
	}
	return nil, fmt.Errorf("%d bytes, %s", len(b), want)
}

func isText(b []byte) bool {
	for _, c := range b {
		if (c < 0x20 || c > 0x7e) && c != '\n' && c != '\r' && c != '\t' {
			return false
		}
	}
	return true
}

// GenerateKeyFile writes a new random 32-byte key to path as 64 lower-case
// hex characters and a newline (text survives copying and editors; Load
// accepts it). The file is created with mode 0600 and never overwritten: if
// path exists, GenerateKeyFile fails.
func GenerateKeyFile(path string) error {
	raw := make([]byte, KeySize)
	if _, err := rand.Read(raw); err != nil {
		return err
	}
	text := make([]byte, 2*KeySize+1)
	hex.Encode(text, raw)
	text[2*KeySize] = '\n'
	clear(raw)
	defer clear(text)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("generating key file: %w", err)
	}
	_, err = f.Write(text)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return fmt.Errorf("generating key file %s: %w", path, err)
	}
	return nil
}

// Material is an operator's key: a raw 32-byte key, a passphrase, or a
// reference to an AWS KMS key (no secret: a client that asks KMS). It
// never prints its content: String, GoString and every fmt verb give
// "[key material]". It is safe for concurrent use.
type Material struct {
	raw    []byte  // KeySize bytes, or nil
	pass   []byte  // non-empty passphrase, or nil
	kms    *kmsKey // a KMS-held key (awskms.go), or nil
	source string  // where it came from, e.g. "file:/etc/key"; safe to print

	mu        sync.Mutex
	stretched map[string][KeySize]byte // Argon2id outputs by salt and parameters
}

// NewRawKey returns Material for a raw 32-byte key. It copies key.
func NewRawKey(key []byte) (*Material, error) {
	if len(key) != KeySize {
		return nil, badKey(nil, "raw key: %d bytes, want %d", len(key), KeySize)
	}
	return newRaw(key, "raw key"), nil
}

// NewPassphrase returns Material for a non-empty passphrase, used as the
// given bytes (no Unicode normalisation). It copies pass.
func NewPassphrase(pass []byte) (*Material, error) {
	if len(pass) == 0 {
		return nil, badKey(nil, "empty passphrase")
	}
	return newPassphrase(pass, "passphrase"), nil
}

func newRaw(key []byte, source string) *Material {
	return &Material{raw: bytes.Clone(key), source: source}
}

func newPassphrase(p []byte, source string) *Material {
	return &Material{pass: bytes.Clone(p), source: source}
}

// IsPassphrase reports whether m is a passphrase (else a raw key or a KMS
// key).
func (m *Material) IsPassphrase() bool { return m.pass != nil }

// IsKMS reports whether m is a key held by AWS KMS.
func (m *Material) IsKMS() bool { return m.kms != nil }

// Source says where the material came from ("file:/etc/key", "env:NAME",
// "awskms:alias/backup", "raw key", "passphrase"). It is safe to print.
func (m *Material) Source() string { return m.source }

// String returns "[key material]".
func (m *Material) String() string { return "[key material]" }

// GoString returns "[key material]".
func (m *Material) GoString() string { return "[key material]" }

// Format prints "[key material]" for every verb.
func (m *Material) Format(f fmt.State, verb rune) { io.WriteString(f, "[key material]") }
