package keys

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestSplitCommand(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string // nil: an error
	}{
		{"pass show snapcrypt", []string{"pass", "show", "snapcrypt"}},
		{"  a \t b  ", []string{"a", "b"}},
		{"/usr/bin/prog", []string{"/usr/bin/prog"}},
		{"sh -c 'echo a; echo b | cat'", []string{"sh", "-c", "echo a; echo b | cat"}},
		{`echo "a b" 'c d'`, []string{"echo", "a b", "c d"}},
		{`a'b'"c"d`, []string{"abcd"}},
		{`x '' ""`, []string{"x", "", ""}},
		{`a\ b`, []string{"a b"}},
		{`a\'b \"c\" \\ \$HOME \|`, []string{"a'b", `"c"`, `\`, "$HOME", "|"}},
		{"a\\\nb", []string{"ab"}},
		{`"a\"b \\ \$x \` + "`" + ` \n \'"`, []string{`a"b \ $x ` + "` " + `\n \'`}},
		{"\"a\\\nb\"", []string{"ab"}},
		{`'a\b "c"'`, []string{`a\b "c"`}},
		{`'$HOME ~ * ? [ ; # |'`, []string{"$HOME ~ * ? [ ; # |"}},
		{"a~b c#d e=f g]h {i} !j %k", []string{"a~b", "c#d", "e=f", "g]h", "{i}", "!j", "%k"}},
		{`\~ \#x`, []string{"~", "#x"}},
		{"héllo wörld", []string{"héllo", "wörld"}},
		// Errors: unbalanced quotes, a trailing backslash, no word, shell syntax.
		{`echo 'abc`, nil},
		{`echo "abc`, nil},
		{`echo "abc\"`, nil},
		{`'`, nil},
		{`"`, nil},
		{`a"b'c`, nil},
		{`echo abc\`, nil},
		{``, nil},
		{"  \t ", nil},
		{`''x'`, nil},
		{"a | b", nil},
		{"a|b", nil},
		{"a && b", nil},
		{"a; b", nil},
		{"a > f", nil},
		{"a < f", nil},
		{"a (b)", nil},
		{"echo $HOME", nil},
		{"echo `id`", nil},
		{"cat /run/keys/*", nil},
		{"curl http://x/?a", nil},
		{"ls [ab]", nil},
		{"~/bin/getkey", nil},
		{"prog # comment", nil},
		{"a\nb", nil},
	} {
		got, err := splitCommand(tc.in)
		if tc.want == nil {
			if err == nil {
				t.Errorf("splitCommand(%q) = %q, want an error", tc.in, got)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("splitCommand(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

// TestParseSpecCommand: a command spec that does not split is a key error
// (EINVAL on a mount, exit 3 in the CLI) that names the problem and not
// the command line; String never shows the command line.
func TestParseSpecCommand(t *testing.T) {
	for _, in := range []string{"cmd:get-key 'hunter2", `passcmd:get-key "hunter2`, "cmd:", "passcmd:  ", "cmd:get-key hunter2\\", "cmd:get-key $hunter2"} {
		_, err := ParseSpec(in)
		if !errors.Is(err, ErrBadKey) {
			t.Errorf("ParseSpec(%q) = %v, want an error wrapping ErrBadKey", in, err)
			continue
		}
		if strings.Contains(err.Error(), "hunter2") || strings.Contains(err.Error(), "get-key") {
			t.Errorf("ParseSpec(%q): the error repeats the command line: %v", in, err)
		}
	}
	for _, tc := range []struct {
		in   string
		want Spec
	}{
		{"cmd:pass show 'snap crypt'", Spec{SpecCmd, "pass show 'snap crypt'"}},
		{"passcmd:get-pass hunter2", Spec{SpecPasscmd, "get-pass hunter2"}},
		{"cmd:a:b", Spec{SpecCmd, "a:b"}},
	} {
		got, err := ParseSpec(tc.in)
		if err != nil || got != tc.want {
			t.Fatalf("ParseSpec(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
		for _, s := range []string{got.String(), fmt.Sprint(got), fmt.Sprintf("%v %+v %#v %s", got, got, got, got)} {
			if strings.Contains(s, "snap") || strings.Contains(s, "hunter2") || strings.Contains(s, "get-pass") || strings.Contains(s, "a:b") {
				t.Errorf("%q shown as %q", tc.in, s)
			}
		}
		if want := string(tc.want.Kind) + ":[command not shown]"; got.String() != want {
			t.Errorf("String() = %q, want %q", got.String(), want)
		}
	}
	for in, want := range map[string]bool{"cmd:x": true, "passcmd:x": true, "file:x": true, "passfile:x": true, "env:X": true, "/a/b": false, "rel:ative": false, "cmd": false} {
		if IsExplicitSpec(in) != want {
			t.Errorf("IsExplicitSpec(%q) = %v", in, !want)
		}
	}
}

// script writes an executable shell script and returns a command line
// that runs it.
func script(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "key-command")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return "'" + p + "'"
}

func loadSpec(t *testing.T, spec string) (*Material, error) {
	t.Helper()
	sp, err := ParseSpec(spec)
	if err != nil {
		t.Fatalf("ParseSpec: %v", err)
	}
	return sp.Load()
}

func TestCommandKey(t *testing.T) {
	raw := bytes.Repeat([]byte{0x5a, 0xa5, 0x00, 0xff}, 8)
	t.Setenv("KEYCMD_HEX", hex.EncodeToString(raw))
	for name, line := range map[string]string{
		"script":        script(t, `printf '%s\n' "$KEYCMD_HEX"`),
		"sh-c":          `sh -c 'printf "%s" "$KEYCMD_HEX"'`,
		"arguments":     `printf '%s\n' "` + hex.EncodeToString(raw) + `"`,
		"raw-32-bytes":  `printf '\132\245\000\377\132\245\000\377\132\245\000\377\132\245\000\377\132\245\000\377\132\245\000\377\132\245\000\377\132\245\000\377'`,
		"env-inherited": `sh -c 'echo "$KEYCMD_HEX" | tr a-f A-F'`,
	} {
		t.Run(name, func(t *testing.T) {
			m, err := loadSpec(t, "cmd:"+line)
			if err != nil {
				t.Fatal(err)
			}
			if m.IsPassphrase() || !bytes.Equal(m.raw, raw) {
				t.Fatal("loaded the wrong key")
			}
			if m.Source() != "cmd:[command not shown]" {
				t.Errorf("Source() = %q", m.Source())
			}
		})
	}
	// cmd: takes keys only: a passphrase printed to cmd: is refused, not
	// stretched, and the error says where a passphrase belongs.
	_, err := loadSpec(t, "cmd:echo correct-horse-battery")
	if !errors.Is(err, ErrBadKey) || !strings.Contains(err.Error(), "passcmd:") || strings.Contains(err.Error(), "horse") {
		t.Fatalf("a passphrase printed to cmd: gave %v", err)
	}
}

func TestCommandPassphrase(t *testing.T) {
	t.Setenv("KEYCMD_PASS", "from the environment")
	for line, want := range map[string]string{
		`echo 'correct horse battery staple'`:      "correct horse battery staple",
		`printf 'two\r\n'`:                         "two",
		`printf 'no newline'`:                      "no newline",
		`printf 'keeps one\n\n'`:                   "keeps one\n",
		`sh -c 'printf "%s\n" "$KEYCMD_PASS"'`:     "from the environment",
		script(t, `echo "  spaces kept  "`):        "  spaces kept  ",
		`printf '%s' 0123456789abcdef0123456789ab`: "0123456789abcdef0123456789ab",
		// 64 hex characters are a passphrase here, not a key.
		`printf '%s\n' ` + strings.Repeat("ab", 32): strings.Repeat("ab", 32),
	} {
		m, err := loadSpec(t, "passcmd:"+line)
		if err != nil {
			t.Fatalf("passcmd:%s: %v", line, err)
		}
		if !m.IsPassphrase() || string(m.pass) != want {
			t.Errorf("passcmd:%s gave %q, want %q", line, m.pass, want)
		}
		if m.Source() != "passcmd:[command not shown]" {
			t.Errorf("Source() = %q", m.Source())
		}
	}
	// A passphrase command's output is stretched as a passphrase: the KEK
	// is the one passfile: gives for the same passphrase.
	m1, err := loadSpec(t, `passcmd:echo 'same passphrase'`)
	if err != nil {
		t.Fatal(err)
	}
	m2, err := Spec{SpecPassfile, writeFile(t, "pass", []byte("same passphrase\n"))}.Load()
	if err != nil {
		t.Fatal(err)
	}
	k := KDF{Type: KDFArgon2id, Salt: strings.Repeat("ab", saltSize), T: 1, M: 64, P: 1}
	a, ok1 := deriveKEK(context.Background(), k, m1, [16]byte{}, [8]byte{})
	b, ok2 := deriveKEK(context.Background(), k, m2, [16]byte{}, [8]byte{})
	if !ok1 || !ok2 || a != b {
		t.Fatal("passcmd: and passfile: of the same passphrase derive different KEKs")
	}
	if _, err := loadSpec(t, `passcmd:echo`); !errors.Is(err, ErrBadKey) || !strings.Contains(err.Error(), "empty") {
		t.Fatalf("an empty passphrase line gave %v", err)
	}
}

// TestCommandFails: the error gives the exit status and the first line of
// standard error, never standard output, a later stderr line or the
// command line.
func TestCommandFails(t *testing.T) {
	line := script(t, `printf 'STDOUT-%s-SECRET\n' 4f7a
echo "gpg: decryption failed: No secret key" >&2
printf 'STDERR-%s-SECRET\n' 9c1b >&2
exit 7`)
	for _, kind := range []string{"cmd:", "passcmd:"} {
		_, err := loadSpec(t, kind+line)
		if !errors.Is(err, ErrBadKey) {
			t.Fatalf("%s: %v, want an error wrapping ErrBadKey", kind, err)
		}
		msg := err.Error()
		for _, want := range []string{"exit status 7", "gpg: decryption failed: No secret key"} {
			if !strings.Contains(msg, want) {
				t.Errorf("%s: error %q lacks %q", kind, msg, want)
			}
		}
		for _, secret := range []string{"STDOUT-4f7a-SECRET", "4f7a", "STDERR-9c1b-SECRET", "9c1b", "key-command"} {
			if strings.Contains(msg, secret) {
				t.Errorf("%s: error %q contains %q", kind, msg, secret)
			}
		}
	}
	// Killed by a signal.
	_, err := loadSpec(t, `cmd:sh -c 'echo about to die >&2; kill -9 $$'`)
	if !errors.Is(err, ErrBadKey) || !strings.Contains(err.Error(), "signal: killed") || !strings.Contains(err.Error(), "about to die") {
		t.Fatalf("a command killed by a signal gave %v", err)
	}
	// A first stderr line is bounded and quoted.
	_, err = loadSpec(t, `cmd:sh -c 'head -c 100000 /dev/zero | tr "\0" x >&2; printf "\033[2J" >&2; exit 1'`)
	if !errors.Is(err, ErrBadKey) || len(err.Error()) > maxStderrLine+200 || !strings.Contains(err.Error(), "xxxx") {
		t.Fatalf("a long stderr line gave %d bytes: %.300v", len(err.Error()), err)
	}
	_, err = loadSpec(t, `cmd:sh -c 'printf "\033[2Jcleared\n" >&2; exit 1'`)
	if err == nil || strings.Contains(err.Error(), "\033") || !strings.Contains(err.Error(), "cleared") {
		t.Fatalf("a control sequence on stderr gave %q", err)
	}
	// A program that cannot start: the error gives why, not its name.
	_, err = loadSpec(t, "cmd:/nonexistent/hunter2-getkey")
	if !errors.Is(err, ErrBadKey) || !errors.Is(err, os.ErrNotExist) || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("a missing program gave %v", err)
	}
	_, err = loadSpec(t, "cmd:hunter2-not-in-path-getkey")
	if !errors.Is(err, ErrBadKey) || strings.Contains(err.Error(), "hunter2") || !strings.Contains(err.Error(), "not found") {
		t.Fatalf("a program not in PATH gave %v", err)
	}
}

// TestCommandNothing: a command that prints nothing, and exits 0, is a key
// error.
func TestCommandNothing(t *testing.T) {
	for _, spec := range []string{"cmd:true", "passcmd:true", `cmd:sh -c 'echo only on stderr >&2'`} {
		_, err := loadSpec(t, spec)
		if !errors.Is(err, ErrBadKey) || !strings.Contains(err.Error(), "printed nothing") || !strings.Contains(err.Error(), "exit status 0") {
			t.Errorf("%s: %v", spec, err)
		}
	}
	_, err := loadSpec(t, `cmd:sh -c 'echo only on stderr >&2'`)
	if err == nil || !strings.Contains(err.Error(), "only on stderr") {
		t.Errorf("stderr of a command that printed nothing: %v", err)
	}
}

// TestCommandTooMuch: output past maxCommandOutput is refused, and a
// command that never stops printing is killed at once, not at the timeout.
func TestCommandTooMuch(t *testing.T) {
	t.Setenv(CommandTimeoutEnv, "20s")
	big := fmt.Sprintf(`cmd:sh -c 'head -c %d /dev/zero | tr "\0" a'`, maxCommandOutput+1)
	_, err := loadSpec(t, big)
	if !errors.Is(err, ErrBadKey) || !strings.Contains(err.Error(), "more than 4096 bytes") || strings.Contains(err.Error(), "aaaa") {
		t.Fatalf("%d bytes of output gave %v", maxCommandOutput+1, err)
	}
	// Exactly the bound is read (and refused as a key: 4096 bytes of text).
	_, err = loadSpec(t, fmt.Sprintf(`passcmd:sh -c 'head -c %d /dev/zero | tr "\0" a'`, maxCommandOutput))
	if err != nil {
		t.Fatalf("%d bytes of passphrase: %v", maxCommandOutput, err)
	}
	start := time.Now()
	pidFile := filepath.Join(t.TempDir(), "pid")
	_, err = loadSpec(t, `cmd:sh -c 'trap "" PIPE; echo $$ > "$0"; while :; do echo yyyyyyyy || :; done' '`+pidFile+`'`)
	if !errors.Is(err, ErrBadKey) || !strings.Contains(err.Error(), "more than 4096 bytes") {
		t.Fatalf("endless output gave %v", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("endless output took %v: killed at the timeout, not at the bound", d)
	}
	waitGone(t, readPid(t, pidFile))
}

// TestCommandTimeout: a command that hangs is killed with its whole
// process group at the timeout.
func TestCommandTimeout(t *testing.T) {
	t.Setenv(CommandTimeoutEnv, "1s")
	pidFile := filepath.Join(t.TempDir(), "pid")
	// The shell starts a child and waits for it; both must go.
	line := script(t, `sleep 1000 &
echo $$ $! > '`+pidFile+`'
echo waiting for a pinentry that never comes >&2
wait`)
	for _, kind := range []string{"cmd:", "passcmd:"} {
		start := time.Now()
		_, err := loadSpec(t, kind+line)
		if !errors.Is(err, ErrBadKey) || !strings.Contains(err.Error(), "timed out after 1s") ||
			!strings.Contains(err.Error(), CommandTimeoutEnv) || !strings.Contains(err.Error(), "waiting for a pinentry") {
			t.Fatalf("%s: a hanging command gave %v", kind, err)
		}
		if d := time.Since(start); d > 30*time.Second {
			t.Fatalf("%s: returned after %v", kind, d)
		}
		for _, pid := range strings.Fields(readFile(t, pidFile)) {
			n, _ := strconv.Atoi(pid)
			waitGone(t, n)
		}
	}
	for _, bad := range []string{"0s", "-1s", "30", "soon"} {
		t.Setenv(CommandTimeoutEnv, bad)
		if _, err := loadSpec(t, "cmd:true"); !errors.Is(err, ErrBadKey) || !strings.Contains(err.Error(), CommandTimeoutEnv) {
			t.Errorf("%s=%s: %v", CommandTimeoutEnv, bad, err)
		}
	}
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func readPid(t *testing.T, p string) int {
	t.Helper()
	n, err := strconv.Atoi(strings.TrimSpace(readFile(t, p)))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// waitGone waits until process pid has ended (gone, or a zombie waiting
// for a parent that is not this test to reap it).
func waitGone(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return
		}
		// The state follows the parenthesised command name.
		if i := bytes.LastIndexByte(b, ')'); i >= 0 && i+2 < len(b) && (b[i+2] == 'Z' || b[i+2] == 'X') {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("process %d still runs: %s", pid, b)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// FuzzSplitCommand: splitCommand never panics, and the words of a line it
// accepts, each put back in single quotes, split into the same words.
func FuzzSplitCommand(f *testing.F) {
	for _, s := range []string{"pass show x", `a'b'"c"d`, `x '' ""`, `a\ b "c\"d" 'e\f'`, "a\\\nb", `"\$\` + "`" + `\\"`, `'`, `"`, `a\`, "a|b", "~x", "é ü"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		words, err := splitCommand(s)
		if err != nil {
			return
		}
		if len(words) == 0 {
			t.Fatalf("splitCommand(%q) accepted no words", s)
		}
		var quoted []string
		for _, w := range words {
			quoted = append(quoted, "'"+strings.ReplaceAll(w, "'", `'\''`)+"'")
		}
		again, err := splitCommand(strings.Join(quoted, " "))
		if err != nil || !reflect.DeepEqual(again, words) {
			t.Fatalf("splitCommand(%q) = %q; requoted %q, err %v", s, words, again, err)
		}
	})
}
