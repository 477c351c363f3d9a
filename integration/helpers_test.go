// Package integration tests the snapcrypt binary end to end: it builds the
// binary once, makes repositories with it and mounts them for real, then
// checks the mounts with the ordinary tools (diff, tar, find, rsync, cp, dd,
// sha256sum). The helpers in this file are meant for every such test (key
// rotation's too): build, make a repository, start a mount and wait for its
// ready line, stop it.
//
// Every test unmounts in its cleanup, and TestMain fails the run if a FUSE
// mount is left below the suite's temporary directory. Without /dev/fuse or
// fusermount3 the mount tests skip, but fail when CI=true.
package integration

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	// binary is the snapcrypt binary built for this run.
	binary string
	// suiteDir holds every temporary directory of the run (TMPDIR points
	// there), so that mounts left behind can be found.
	suiteDir string
)

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "snapcrypt-integration-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	suiteDir, _ = filepath.EvalSymlinks(dir)
	defer os.RemoveAll(suiteDir)
	binary = filepath.Join(suiteDir, "snapcrypt")
	build := exec.Command("go", "build", "-o", binary, "../cmd/snapcrypt")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building snapcrypt: %v\n%s", err, out)
		return 1
	}
	os.Setenv("TMPDIR", suiteDir)                                      // t.TempDir() goes below suiteDir
	os.Setenv("SNAPCRYPT_STATE_DIR", filepath.Join(suiteDir, "state")) // host keyring records
	code := m.Run()
	if left := mountsBelow(suiteDir); len(left) > 0 {
		fmt.Fprintf(os.Stderr, "FAIL: FUSE mounts left behind: %s\n", strings.Join(left, ", "))
		for _, mnt := range left {
			exec.Command("fusermount3", "-u", "-z", mnt).Run()
		}
		code = 1
	}
	return code
}

// mountsBelow lists the FUSE mounts below dir, from /proc/mounts.
func mountsBelow(dir string) []string {
	b, err := os.ReadFile("/proc/mounts")
	if err != nil {
		return nil
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 3 || !strings.HasPrefix(f[2], "fuse") {
			continue
		}
		mnt := strings.ReplaceAll(f[1], `\040`, " ")
		if mnt == dir || strings.HasPrefix(mnt, dir+"/") {
			out = append(out, mnt)
		}
	}
	return out
}

func isMounted(dir string) bool {
	for _, m := range mountsBelow(dir) {
		if m == dir {
			return true
		}
	}
	return false
}

// needFUSE skips a test that mounts where FUSE is missing, but fails it
// in CI.
func needFUSE(t testing.TB) {
	t.Helper()
	var missing []string
	if _, err := os.Stat("/dev/fuse"); err != nil {
		missing = append(missing, "/dev/fuse")
	}
	if _, err := exec.LookPath("fusermount3"); err != nil {
		missing = append(missing, "fusermount3")
	}
	if len(missing) == 0 {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s missing: mount tests must run in CI", strings.Join(missing, " and "))
	}
	t.Skipf("%s missing", strings.Join(missing, " and "))
}

// needTool skips a test whose tool is missing, but fails it in CI.
func needTool(t testing.TB, name string) {
	t.Helper()
	if _, err := exec.LookPath(name); err == nil {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s is missing", name)
	}
	t.Skipf("%s is missing", name)
}

// Result is what a command did.
type Result struct {
	Code           int
	Stdout, Stderr string
}

// run runs a command to its end.
func run(t testing.TB, dir, name string, args ...string) Result {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "SNAPCRYPT_REPO=", "SNAPCRYPT_KEY=", "LC_ALL=C")
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return Result{code, o.String(), e.String()}
}

// must runs a command that must succeed and returns its stdout.
func must(t testing.TB, dir, name string, args ...string) string {
	t.Helper()
	r := run(t, dir, name, args...)
	if r.Code != 0 {
		t.Fatalf("%s %s: exit %d\n%s%s", name, strings.Join(args, " "), r.Code, r.Stdout, r.Stderr)
	}
	return r.Stdout
}

// Repo is a repository made with the binary, with a key file.
type Repo struct {
	Dir string
	Key string // a key spec: file:PATH
}

// newRepo makes a key file (fast: no passphrase stretching) and a
// repository.
func newRepo(t testing.TB) *Repo {
	t.Helper()
	dir := t.TempDir()
	key := filepath.Join(dir, "key")
	must(t, "", binary, "keygen", key)
	r := &Repo{Dir: filepath.Join(dir, "repo"), Key: "file:" + key}
	r.SC(t, "init")
	return r
}

// SC runs a snapcrypt command on the repository; it must succeed.
func (r *Repo) SC(t testing.TB, args ...string) string {
	t.Helper()
	args = append(args[:1:1], append([]string{"-r", r.Dir, "-k", r.Key}, args[1:]...)...)
	return must(t, "", binary, args...)
}

// Snapshot takes a snapshot and returns its id.
func (r *Repo) Snapshot(t testing.TB, args ...string) string {
	t.Helper()
	out := strings.TrimSpace(r.SC(t, append([]string{"snapshot"}, args...)...))
	return out[strings.LastIndexByte(out, '\n')+1:]
}

// Mount is a running `snapcrypt mount`.
type Mount struct {
	Dir    string // the mountpoint
	cmd    *exec.Cmd
	stderr *syncBuffer
	done   chan struct{}
	err    error // of Wait, once done
}

// ReadyTimeout bounds the wait for a mount's ready line.
const ReadyTimeout = 30 * time.Second

// StopTimeout bounds the wait for a mount to end after a signal.
const StopTimeout = 20 * time.Second

// startMount mounts the repository on a new directory and returns once
// the mount printed its ready line. Cleanup stops it (SIGTERM) if the test
// did not, and fails the test if it is still mounted then.
func startMount(t testing.TB, r *Repo, args ...string) *Mount {
	t.Helper()
	needFUSE(t)
	dir := filepath.Join(t.TempDir(), "mnt")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	m, err := startMountAt(r, dir, args...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.cleanup(t) })
	return m
}

// startMountAt starts `snapcrypt mount` on dir and waits for the ready
// line; if the process ends first, the error holds its stderr.
func startMountAt(r *Repo, dir string, args ...string) (*Mount, error) {
	return startMountWith(binary, nil, r, dir, args...)
}

// startMountWith is startMountAt with the binary bin and, if not nil,
// cred: the user and group the mount runs as.
func startMountWith(bin string, cred *syscall.Credential, r *Repo, dir string, args ...string) (*Mount, error) {
	all := append([]string{"mount", "-r", r.Dir, "-k", r.Key}, args...)
	cmd := exec.Command(bin, append(all, dir)...)
	cmd.Env = append(os.Environ(), "SNAPCRYPT_REPO=", "SNAPCRYPT_KEY=")
	if cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	}
	m := &Mount{Dir: dir, cmd: cmd, stderr: &syncBuffer{}, done: make(chan struct{})}
	cmd.Stderr = m.stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		var lines []string
		for sc.Scan() {
			lines = append(lines, sc.Text())
			if len(lines) == 1 {
				ready <- sc.Text()
			}
		}
		if len(lines) > 1 {
			m.stderr.Write([]byte(fmt.Sprintf("(test) more than one line on stdout: %q\n", lines)))
		}
		close(ready)
		m.err = cmd.Wait()
		close(m.done)
	}()
	select {
	case line, ok := <-ready:
		if ok && strings.HasPrefix(line, "mounted ") && strings.HasSuffix(line, " at "+dir) {
			return m, nil
		}
		<-m.done
		return nil, fmt.Errorf("snapcrypt mount: %v; stdout %q; stderr:\n%s", m.err, line, m.stderr)
	case <-time.After(ReadyTimeout):
		m.cmd.Process.Kill()
		<-m.done
		exec.Command("fusermount3", "-u", "-z", dir).Run()
		return nil, fmt.Errorf("snapcrypt mount: no ready line after %v; stderr:\n%s", ReadyTimeout, m.stderr)
	}
}

// Path joins names below the mountpoint.
func (m *Mount) Path(names ...string) string {
	return filepath.Join(append([]string{m.Dir}, names...)...)
}

// Stderr returns what the mount wrote to stderr so far.
func (m *Mount) Stderr() string { return m.stderr.String() }

// Signal sends sig to the mount process.
func (m *Mount) Signal(t testing.TB, sig os.Signal) {
	t.Helper()
	if err := m.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
}

// Wait waits for the mount process to end and returns its exit code.
func (m *Mount) Wait(t testing.TB) int {
	t.Helper()
	select {
	case <-m.done:
	case <-time.After(StopTimeout):
		t.Fatalf("snapcrypt mount did not end within %v; stderr:\n%s", StopTimeout, m.Stderr())
	}
	if ee, ok := m.err.(*exec.ExitError); ok {
		return ee.ExitCode()
	} else if m.err != nil {
		t.Fatal(m.err)
	}
	return 0
}

// Stop ends the mount with SIGTERM and requires a clean exit.
func (m *Mount) Stop(t testing.TB) {
	t.Helper()
	m.Signal(t, syscall.SIGTERM)
	if code := m.Wait(t); code != 0 {
		t.Fatalf("snapcrypt mount exited %d; stderr:\n%s", code, m.Stderr())
	}
}

func (m *Mount) cleanup(t testing.TB) {
	select {
	case <-m.done:
	default:
		m.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-m.done:
		case <-time.After(StopTimeout):
			t.Errorf("snapcrypt mount did not end on SIGTERM; killing it")
			m.cmd.Process.Kill()
			<-m.done
		}
	}
	if isMounted(m.Dir) {
		t.Errorf("%s is still mounted after the mount process ended", m.Dir)
		exec.Command("fusermount3", "-u", "-z", m.Dir).Run()
	}
	if s := m.Stderr(); strings.Contains(s, "panic") {
		t.Errorf("the mount logged a panic:\n%s", s)
	}
}

// syncBuffer is a bytes.Buffer safe for concurrent use.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

var _ io.Writer = (*syncBuffer)(nil)

// eventually polls cond until it holds or the time is up.
func eventually(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	tick := time.NewTicker(25 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("not within %v: %s", within, what)
		case <-tick.C:
		}
	}
}
