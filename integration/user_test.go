package integration

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// TestMountAsOrdinaryUser: an ordinary user mounts through fusermount3
// (go-fuse mounts directly only as root): the mount reads, the kernel shows
// it as that user's, and that user's `fusermount3 -u` ends it with exit 0.
// Run as root, the test runs the mount as nobody (65534), opening
// /dev/fuse to others for the test if it is not (Debian's udev rule makes
// it 0666; a bare container may have 0600); run as an ordinary user, it is
// that user's mount.
func TestMountAsOrdinaryUser(t *testing.T) {
	needFUSE(t)
	r := newRepo(t)
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "note.txt"), []byte("read by an ordinary user\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r.Snapshot(t, src)

	var cred *syscall.Credential
	uid := os.Geteuid()
	// Below /tmp itself: the suite's temporary directories are 0700.
	dir, err := os.MkdirTemp("/tmp", "snapcrypt-user-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	bin, repo, key := binary, r.Dir, r.Key
	if uid == 0 {
		uid = 65534
		cred = &syscall.Credential{Uid: 65534, Gid: 65534}
		fi, err := os.Stat("/dev/fuse")
		if err != nil {
			t.Fatal(err)
		}
		if mode := fi.Mode().Perm(); mode&0o006 != 0o006 {
			if err := os.Chmod("/dev/fuse", mode|0o006); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.Chmod("/dev/fuse", mode) })
		}
		// Everything the user needs, below a directory it can reach.
		bin, repo, key = filepath.Join(dir, "snapcrypt"), filepath.Join(dir, "repo"), filepath.Join(dir, "key")
		must(t, "", "cp", "-a", binary, bin)
		must(t, "", "cp", "-a", r.Dir, repo)
		must(t, "", "cp", "-a", strings.TrimPrefix(r.Key, "file:"), key)
		key = "file:" + key
		must(t, "", "chown", "-R", "65534:65534", dir)
		if err := os.Chmod(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	mnt := filepath.Join(dir, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	if cred != nil {
		os.Chown(mnt, 65534, 65534)
	}
	asUser := func(name string, args ...string) ([]byte, error) {
		cmd := exec.Command(name, args...)
		if cred != nil {
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
		}
		return cmd.CombinedOutput()
	}

	m, err := startMountWith(bin, cred, &Repo{Dir: repo, Key: key}, mnt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if isMounted(mnt) {
			asUser("fusermount3", "-u", "-z", mnt)
			exec.Command("umount", "-l", mnt).Run()
		}
	})
	b, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		t.Fatal(err)
	}
	var line string
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) > 3 && f[1] == mnt {
			line = l
		}
	}
	if line == "" || !strings.Contains(line, "user_id="+strconv.Itoa(uid)) {
		t.Fatalf("mount table entry %q: want a FUSE mount of user %d", line, uid)
	}
	got, err := asUser("cat", filepath.Join(mnt, "snapshots", "latest", "note.txt"))
	if err != nil || string(got) != "read by an ordinary user\n" {
		t.Fatalf("reading as the mounting user: %q, %v", got, err)
	}
	if out, err := asUser("fusermount3", "-u", mnt); err != nil {
		t.Fatalf("fusermount3 -u as the mounting user: %v %s", err, out)
	}
	if code := m.Wait(t); code != 0 {
		t.Fatalf("mount exited %d after fusermount3 -u; stderr:\n%s", code, m.Stderr())
	}
}
