package integration

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// writeScript writes an executable shell script.
func writeScript(t testing.TB, path, body string) {
	t.Helper()
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
}

// TestMountRotateKeyCommand rotates a mount through .ctl/rotate to a key
// that a command prints: the daemon runs the command itself, with its
// environment; the rotation completes; the command line shows nowhere;
// afterwards the new key, again from a command, opens the repository and
// the old key matches nothing. A failing command in .ctl/keys is EINVAL
// with its exit status and first stderr line in the status.
func TestMountRotateKeyCommand(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	makeTree(t, src, 14)
	r := newRepo(t)
	r.Snapshot(t, "--name", "one", src)
	addDEKs(t, r, 300)
	oldKey := r.Key
	newKeyFile := keyFile(t, dir, "new-secret.key")
	getkey := filepath.Join(dir, "getkey-helper")
	ran := filepath.Join(dir, "ran")
	writeScript(t, getkey, `echo "$SNAPCRYPT_TEST_KEYCMD_MARK $PPID" > '`+ran+`'
cat "$1"`)
	newKey := "cmd:'" + getkey + "' '" + newKeyFile + "'"

	t.Setenv("SNAPCRYPT_TEST_KEYCMD_MARK", "daemon-environment")
	m := startMount(t, r)
	oldGen := readStatus(t, m).Keys.Current

	// A failing command: EINVAL, the keyring untouched, the status gives
	// its exit status and first stderr line, not its output.
	epoch := readStatus(t, m).Keys.Epoch
	failing := filepath.Join(dir, "failing-helper")
	writeScript(t, failing, `printf 'OUT-%s\n' 7e57
echo "vault: permission denied" >&2
exit 4`)
	if e := ctlWrite(t, m, "keys", []byte("cmd:'"+failing+"'\n")); e != syscall.EINVAL {
		t.Fatalf("a failing key command in .ctl/keys: errno %v, want EINVAL", e)
	}
	s := readStatus(t, m)
	if s.Keys.Epoch != epoch {
		t.Fatal("the keyring changed")
	}
	if lr := s.Rotation.LastRequest; lr == nil || !strings.Contains(lr.Result, "exit status 4") || !strings.Contains(lr.Result, "vault: permission denied") {
		t.Fatalf("status of a failing key command: %+v", lr)
	}

	if e := ctlWrite(t, m, "rotate", []byte(newKey+"\n")); e != 0 {
		t.Fatalf("write .ctl/rotate: %v\n%s", e, m.Stderr())
	}
	// The daemon ran the command, with its environment.
	b, err := os.ReadFile(ran)
	if err != nil {
		t.Fatalf("the key command did not run: %v", err)
	}
	if got, want := strings.TrimSpace(string(b)), "daemon-environment "+strconv.Itoa(m.cmd.Process.Pid); got != want {
		t.Fatalf("the key command ran with %q, want %q (mark, parent pid)", got, want)
	}
	if cur := readStatus(t, m).Keys.Current; cur == oldGen {
		t.Fatal("the write returned before the switch")
	}
	eventually(t, 120*time.Second, "rotation done", func() bool { return readStatus(t, m).Rotation.State == "done" })

	raw, err := os.ReadFile(m.Path(".ctl", "status"))
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{"getkey-helper", "new-secret.key", "failing-helper", "OUT-7e57", dir} {
		if strings.Contains(string(raw), secret) {
			t.Errorf(".ctl/status contains %q:\n%s", secret, raw)
		}
		if strings.Contains(m.Stderr(), secret) {
			t.Errorf("the mount's log contains %q:\n%s", secret, m.Stderr())
		}
	}
	if !strings.Contains(string(raw), `"kind": "cmd"`) {
		t.Errorf(".ctl/status does not show the request's kind of key spec (cmd):\n%s", raw)
	}
	m.Stop(t)

	// The new key alone, from a command, opens the repository.
	r.Key = newKey
	r.Snapshot(t, "--name", "two", src)
	out := filepath.Join(dir, "restored")
	r.SC(t, "restore", "latest", out)
	compareTrees(t, src, out)
	if res := run(t, "", binary, "snapshots", "-r", r.Dir, "-k", oldKey); res.Code != 3 || !strings.Contains(res.Stderr, "no key matches") {
		t.Fatalf("the retired key: exit %d\n%s", res.Code, res.Stderr)
	}
}

// TestKeyCommandCLI: a failing key command is exit 3 with its exit status
// and first stderr line; SNAPCRYPT_KEY and --new-key take command specs,
// and a passphrase command's output is a passphrase.
func TestKeyCommandCLI(t *testing.T) {
	dir := t.TempDir()
	r := newRepo(t)
	src := filepath.Join(dir, "src")
	makeTree(t, src, 15)
	r.Snapshot(t, "--name", "one", src)

	res := run(t, "", binary, "snapshots", "-r", r.Dir, "-k", `cmd:sh -c 'printf "SECRET-%s\n" 5a5a; echo "pass: snapcrypt is not in the password store" >&2; exit 1'`)
	if res.Code != 3 || !strings.Contains(res.Stderr, "exit status 1") ||
		!strings.Contains(res.Stderr, "pass: snapcrypt is not in the password store") || strings.Contains(res.Stderr+res.Stdout, "5a5a") {
		t.Fatalf("a failing key command: exit %d\n%s%s", res.Code, res.Stdout, res.Stderr)
	}
	res = run(t, "", binary, "snapshots", "-r", r.Dir, "-k", `cmd:sh -c 'echo unbalanced`)
	if res.Code != 3 || !strings.Contains(res.Stderr, "unbalanced single quote") || strings.Contains(res.Stderr, "echo") {
		t.Fatalf("an unbalanced quote: exit %d\n%s", res.Code, res.Stderr)
	}

	// Rotate to a passphrase a command prints, the old key from a command
	// in SNAPCRYPT_KEY.
	keyFile := strings.TrimPrefix(r.Key, "file:")
	pass := "passcmd:printf '%s\\n' 'a passphrase from a command'"
	cmd := exec.Command(binary, "rotate", "-r", r.Dir, "--new-key", pass)
	cmd.Env = append(os.Environ(), "SNAPCRYPT_REPO=", "SNAPCRYPT_KEY=cmd:cat '"+keyFile+"'")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("rotate: %v\n%s", err, b)
	}
	r.Key = pass
	out := filepath.Join(dir, "restored")
	r.SC(t, "restore", "latest", out)
	compareTrees(t, src, out)
	if res := run(t, "", binary, "snapshots", "-r", r.Dir, "-k", "passfile:"+writePass(t, dir, "a passphrase from a command\n")); res.Code != 0 {
		t.Fatalf("the same passphrase from a file: exit %d\n%s", res.Code, res.Stderr)
	}
}

func writePass(t testing.TB, dir, pass string) string {
	t.Helper()
	p := filepath.Join(dir, "pass")
	if err := os.WriteFile(p, []byte(pass), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
