package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// openPTY opens a pseudo-terminal pair.
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	ws := &unix.Winsize{Row: 24, Col: 100}
	if err := unix.IoctlSetWinsize(int(s.Fd()), unix.TIOCSWINSZ, ws); err != nil {
		t.Fatal(err)
	}
	return m, s
}

// On a terminal (stderr), snapshot and restore draw a progress line in
// place and clear it at the end; stdout stays clean.
func TestProgressOnTerminal(t *testing.T) {
	f := newFixture(t)
	for _, args := range [][]string{{"snapshot", f.src}, {"restore", "latest", f.dir + "/r"}} {
		m, s := openPTY(t)
		cmd := exec.Command(binary, args...)
		cmd.Env = append(append(os.Environ(), "SNAPCRYPT_REPO=", "SNAPCRYPT_KEY="), f.env...)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, s
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		s.Close()
		var tty bytes.Buffer
		io.Copy(&tty, m) // ends with EIO once the child has closed the slave
		m.Close()
		if err := cmd.Wait(); err != nil {
			t.Fatalf("%s: %v\n%s", args[0], err, tty.String())
		}
		got := tty.String()
		if !strings.Contains(got, "\r[0:00] ") || !strings.Contains(got, "files") || !strings.Contains(got, "/s") {
			t.Fatalf("%s drew no progress line on the terminal: %q", args[0], got)
		}
		if strings.Contains(out.String(), "\r") {
			t.Fatalf("%s wrote progress to stdout: %q", args[0], out.String())
		}
		for _, line := range strings.Split(got, "\r") {
			// A progress line fits; a warning starts on a line of its own.
			if strings.Contains(line, "warning:") && !strings.HasPrefix(strings.TrimLeft(line, " "), "warning:") {
				t.Fatalf("%s wrote a warning onto the progress line: %q", args[0], line)
			}
			if strings.HasPrefix(line, "[") && len([]rune(line)) > 100 {
				t.Fatalf("%s drew a line wider than the terminal: %q", args[0], line)
			}
		}
	}
}
