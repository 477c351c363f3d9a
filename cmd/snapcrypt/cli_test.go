package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
)

// TestHelpOnceOnStdout: help asked for, at the top or of a command, is
// printed once, to stdout, and exits 0.
func TestHelpOnceOnStdout(t *testing.T) {
	for _, args := range [][]string{
		{"--help"}, {"-h"}, {"help"},
		{"snapshots", "--help"}, {"rotate", "-h"}, {"mount", "--help"}, {"version", "--help"},
	} {
		r := sc(t, nil, args...)
		if r.code != exitOK || r.stderr != "" {
			t.Errorf("%q: exit %d, stderr %q; want exit 0 and nothing on stderr", args, r.code, r.stderr)
		}
		if n := strings.Count(r.stdout, "usage: snapcrypt"); n != 1 {
			t.Errorf("%q: the usage is on stdout %d times, want once:\n%s", args, n, r.stdout)
		}
	}
	r := sc(t, nil, "rotate", "--help")
	if !strings.Contains(r.stdout, "--new-key") {
		t.Errorf("rotate --help does not list --new-key:\n%s", r.stdout)
	}
}

// TestUsageErrorOnStderr: a usage error says so on stderr, prints nothing
// on stdout and exits 2.
func TestUsageErrorOnStderr(t *testing.T) {
	for _, c := range []struct {
		args []string
		says string
	}{
		{nil, "usage: snapcrypt"},
		{[]string{"frobnicate"}, "unknown command"},
		{[]string{"snapshots", "--frobnicate"}, "unknown flag"},
		{[]string{"version", "extra"}, "version takes no arguments"},
		{[]string{"rotate", "extra"}, "rotate takes no arguments"},
	} {
		r := sc(t, nil, c.args...)
		if r.code != exitUsage || r.stdout != "" || !strings.Contains(r.stderr, c.says) {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want exit %d, nothing on stdout, %q on stderr",
				c.args, r.code, r.stdout, r.stderr, exitUsage, c.says)
		}
	}
}

// TestVersionPrintsRevision builds the command from a git checkout of the
// current sources (a worktree's .git file is not one to the go command)
// and checks that --version and the version command print the commit's
// revision and time and the Go version, on stdout, exit 0.
func TestVersionPrintsRevision(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("no git")
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("git", "-C", root, "ls-files", "--cached", "--others", "--exclude-standard").Output()
	if err != nil {
		t.Skipf("the sources are not a git checkout: %v", err)
	}
	src := t.TempDir()
	for _, name := range strings.Fields(string(out)) {
		if name != "go.mod" && name != "go.sum" && (!strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go")) {
			continue
		}
		b, err := os.ReadFile(filepath.Join(root, name))
		if os.IsNotExist(err) {
			continue // deleted in the working tree
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Join(src, filepath.Dir(name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(src, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	git := func(args ...string) string {
		t.Helper()
		cmd := exec.Command("git", append([]string{"-C", src}, args...)...)
		cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.com",
			"GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.com", "GIT_COMMITTER_DATE=2026-01-02T03:04:05Z")
		b, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %q: %v\n%s", args, err, b)
		}
		return strings.TrimSpace(string(b))
	}
	git("init", "-q")
	git("add", "-A")
	git("commit", "-q", "-m", "version test")
	rev := git("rev-parse", "HEAD")
	bin := filepath.Join(t.TempDir(), "snapcrypt")
	build := exec.Command("go", "build", "-buildvcs=true", "-o", bin, "./cmd/snapcrypt")
	build.Dir = src
	if b, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, b)
	}
	var first string
	for _, arg := range []string{"--version", "version"} {
		cmd := exec.Command(bin, arg)
		var o, e bytes.Buffer
		cmd.Stdout, cmd.Stderr = &o, &e
		if err := cmd.Run(); err != nil || e.Len() != 0 {
			t.Fatalf("snapcrypt %s: %v, stderr %q", arg, err, e.String())
		}
		for _, want := range []string{"revision " + rev + "\n", "committed 2026-01-02T03:04:05Z\n", runtime.Version()} {
			if !strings.Contains(o.String(), want) {
				t.Errorf("snapcrypt %s does not say %q:\n%s", arg, want, o.String())
			}
		}
		if strings.Contains(o.String(), "modified") {
			t.Errorf("snapcrypt %s calls a clean checkout modified:\n%s", arg, o.String())
		}
		if first == "" {
			first = o.String()
		} else if o.String() != first {
			t.Errorf("--version and version differ:\n%s\n%s", first, o.String())
		}
	}
}

// TestPrintVersion covers what the build can say: a modified tree, and a
// binary without version control information.
func TestPrintVersion(t *testing.T) {
	var b strings.Builder
	printVersion(&b, &debug.BuildInfo{GoVersion: "go1.99", Main: debug.Module{Version: "v1.2.3"}, Settings: []debug.BuildSetting{
		{Key: "vcs.revision", Value: "0123abcd"}, {Key: "vcs.time", Value: "2026-01-02T03:04:05Z"}, {Key: "vcs.modified", Value: "true"},
	}})
	want := "snapcrypt v1.2.3\nrevision 0123abcd (modified)\ncommitted 2026-01-02T03:04:05Z\nbuilt with go1.99\n"
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}
	b.Reset()
	printVersion(&b, &debug.BuildInfo{GoVersion: "go1.99", Main: debug.Module{Version: "(devel)"}})
	if !strings.Contains(b.String(), "revision unknown") || !strings.Contains(b.String(), "go1.99") {
		t.Errorf("without vcs information:\n%s", b.String())
	}
}
