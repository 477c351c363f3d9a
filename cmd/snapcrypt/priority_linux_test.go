package main

import (
	"testing"

	"golang.org/x/sys/unix"
)

// TestBackgroundPriority: the goroutine's thread runs at nice 19 in the
// idle I/O class afterwards, and other threads keep their priority.
func TestBackgroundPriority(t *testing.T) {
	type prio struct{ nice, io int }
	get := func() (prio, error) {
		tid := unix.Gettid()
		// getpriority(2) returns 20 - nice.
		n, err := unix.Getpriority(unix.PRIO_PROCESS, tid)
		if err != nil {
			return prio{}, err
		}
		io, _, errno := unix.Syscall(unix.SYS_IOPRIO_GET, ioprioWhoProcess, uintptr(tid), 0)
		if errno != 0 {
			return prio{}, errno
		}
		return prio{20 - n, int(io)}, nil
	}
	done := make(chan error, 1)
	var got prio
	go func() {
		backgroundPriority()
		var err error
		got, err = get()
		done <- err
	}()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got.nice != 19 || got.io != ioprioIdle {
		t.Fatalf("after backgroundPriority: nice %d, ioprio %#x; want 19, %#x", got.nice, got.io, ioprioIdle)
	}
	mine, err := get()
	if err != nil {
		t.Fatal(err)
	}
	if mine.nice == 19 || mine.io == ioprioIdle {
		t.Fatalf("the test's own thread got the background priority too: %+v", mine)
	}
}
