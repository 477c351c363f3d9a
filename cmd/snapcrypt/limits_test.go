package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/snapcrypt/snapcrypt/keys"
	"github.com/snapcrypt/snapcrypt/repo"
	"github.com/snapcrypt/snapcrypt/repo/repotest"
	"github.com/snapcrypt/snapcrypt/repo/store/local"
)

// scPeak runs the binary as sc does and also returns its peak resident
// memory in bytes.
func scPeak(t *testing.T, env []string, args ...string) (result, int64) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = append(os.Environ(), "SNAPCRYPT_REPO=", "SNAPCRYPT_KEY=")
	cmd.Env = append(cmd.Env, env...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	if _, ok := err.(*exec.ExitError); err != nil && !ok {
		t.Fatal(err)
	}
	ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	if !ok {
		t.Fatal("no resource usage for the process")
	}
	return result{cmd.ProcessState.ExitCode(), o.String(), e.String()}, ru.Maxrss << 10 // KiB on Linux
}

// TestOversizedManifest: a 1 GiB object planted as a snapshot manifest (a
// sparse file, so nothing writes a gigabyte) makes snapshots, restore and
// check fail with an error that names it, and none of them holds more
// than 64 MiB above what it holds on the repository without it.
func TestOversizedManifest(t *testing.T) {
	f := newFixture(t)
	sc(t, f.env, "snapshot", f.src).want(t, 0, "")
	cmds := map[string][]string{
		"snapshots": {"snapshots"},
		"restore":   {"restore", "latest"},
		"check":     {"check"},
	}
	base := map[string]int64{}
	for name, args := range cmds {
		if name == "restore" {
			args = append(args, filepath.Join(f.dir, "base-"+name))
		}
		r, peak := scPeak(t, f.env, args...)
		r.want(t, 0, "")
		base[name] = peak
	}
	planted := "snapshots/" + strings.Repeat("ab", 32)
	p, err := os.Create(filepath.Join(f.repo, planted))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Truncate(1 << 30); err != nil {
		t.Fatal(err)
	}
	p.Close()
	for name, args := range cmds {
		if name == "restore" {
			args = append(args, filepath.Join(f.dir, "planted-"+name))
		}
		r, peak := scPeak(t, f.env, args...)
		out := r.stderr
		code := exitDamaged
		if name == "check" {
			out, code = r.stdout, exitFailure
		}
		if r.code != code || !strings.Contains(out, planted) || !strings.Contains(out, "larger than") {
			t.Errorf("%s: exit %d, want %d and a message naming %s\nstdout: %s\nstderr: %s", name, r.code, code, planted, r.stdout, r.stderr)
		}
		if d := peak - base[name]; d > 64<<20 {
			t.Errorf("%s: peak memory %d MiB, %d MiB above the %d MiB without the planted object", name, peak>>20, d>>20, base[name]>>20)
		}
	}
}

// TestDeepTreeCommands: on a crafted snapshot whose trees nest one level
// deeper than the limit, restore fails as damage and check reports it,
// both naming where.
func TestDeepTreeCommands(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	st, err := local.Open(f.repo)
	if err != nil {
		t.Fatal(err)
	}
	spec, err := keys.ParseSpec("file:" + f.key)
	if err != nil {
		t.Fatal(err)
	}
	m, err := spec.Load()
	if err != nil {
		t.Fatal(err)
	}
	r, err := repo.Open(ctx, st, repo.Options{}, m)
	if err != nil {
		t.Fatal(err)
	}
	c, err := repotest.New(ctx, r)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Snapshot(ctx, "deep", c.Chain(repo.MaxTreeDepth+1)); err != nil {
		t.Fatal(err)
	}
	where := strings.Repeat("/d", repo.MaxTreeDepth+1) + ": tree"
	res := sc(t, f.env, "restore", "deep", filepath.Join(f.dir, "out"))
	res.want(t, exitDamaged, "nests deeper than 512")
	if !strings.Contains(res.stderr, where) {
		t.Errorf("restore does not say where: %s", res.stderr)
	}
	res = sc(t, f.env, "check")
	res.want(t, exitFailure, "")
	if !strings.Contains(res.stdout, where) || !strings.Contains(res.stdout, "nests deeper than 512") {
		t.Errorf("check does not report the depth: %s", res.stdout)
	}
}
