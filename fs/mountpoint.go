package fs

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	iofs "io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// ErrDeadMount is wrapped when the mountpoint is a FUSE mount whose server
// is gone (a killed process): it must be unmounted first.
var ErrDeadMount = errors.New("dead FUSE mount")

// CheckMountpoint tells, in words an operator can act on, why dir cannot be
// mounted on: it does not exist, is not a directory, is not empty, or is a
// dead mount (ErrDeadMount). Mount checks this itself; a caller may check
// earlier, before slower work.
func CheckMountpoint(dir string) error {
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, syscall.ENOTCONN):
		return deadMount(dir)
	case errors.Is(err, iofs.ErrNotExist):
		return fmt.Errorf("mountpoint %s does not exist (create it first: mkdir %s)", dir, dir)
	case err != nil:
		return fmt.Errorf("mountpoint: %w", err)
	case !fi.IsDir():
		return fmt.Errorf("mountpoint %s is not a directory", dir)
	}
	f, err := os.Open(dir)
	if err != nil {
		if errors.Is(err, syscall.ENOTCONN) {
			return deadMount(dir)
		}
		return fmt.Errorf("mountpoint: %w", err)
	}
	defer f.Close()
	names, err := f.Readdirnames(1)
	if err != nil && !errors.Is(err, io.EOF) {
		if errors.Is(err, syscall.ENOTCONN) {
			return deadMount(dir)
		}
		return fmt.Errorf("mountpoint: %w", err)
	}
	if len(names) > 0 {
		if isMounted(dir) {
			return fmt.Errorf("mountpoint %s is already a mount point (unmount it first: fusermount3 -u %s)", dir, dir)
		}
		return fmt.Errorf("mountpoint %s is not empty (mount on an empty directory)", dir)
	}
	return nil
}

func deadMount(dir string) error {
	return fmt.Errorf("mountpoint %s is a %w left by a process that ended without unmounting: run 'fusermount3 -u %s' and try again", dir, ErrDeadMount, dir)
}

// isMounted tells whether dir is a mount point, from /proc/self/mountinfo.
func isMounted(dir string) bool {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return false
	}
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 && unescapeMountinfo(fields[4]) == abs {
			return true
		}
	}
	return false
}

// unescapeMountinfo undoes the octal escapes (\040 for a space, ...) of a
// path in /proc/self/mountinfo.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// lazyUnmount detaches dir even while busy.
func lazyUnmount(dir string) error {
	if os.Geteuid() == 0 {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err == nil {
			return nil
		}
	}
	for _, prog := range []string{"fusermount3", "fusermount"} {
		path, err := exec.LookPath(prog)
		if err != nil {
			continue
		}
		out, err := exec.Command(path, "-u", "-z", dir).CombinedOutput()
		if err != nil {
			return fmt.Errorf("unmounting %s: %s: %v", dir, strings.TrimSpace(string(out)), err)
		}
		return nil
	}
	return fmt.Errorf("unmounting %s: no fusermount3 found", dir)
}

// setKernelReadAhead raises the kernel's readahead for the mount (the
// FUSE handshake caps it at 128 KiB) to bytes, and tells whether it could:
// only root may. The kernel then keeps several requests of up to a
// megabyte (maxRead) in flight ahead of a sequential reader, which the
// server answers in parallel.
func setKernelReadAhead(mountpoint string, bytes int64) bool {
	var st unix.Stat_t
	if unix.Stat(mountpoint, &st) != nil {
		return false
	}
	p := fmt.Sprintf("/sys/class/bdi/%d:%d/read_ahead_kb", unix.Major(st.Dev), unix.Minor(st.Dev))
	return os.WriteFile(p, []byte(strconv.FormatInt(bytes>>10, 10)), 0) == nil
}
