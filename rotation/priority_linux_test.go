package rotation

import (
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestLowerPriority: the goroutine's thread runs at backgroundNice
// and the lowest best-effort I/O priority afterwards, and other threads
// keep their priority.
func TestLowerPriority(t *testing.T) {
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
		lowerPriority()
		var err error
		got, err = get()
		done <- err
	}()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got.nice != backgroundNice || got.io != ioprioLow {
		t.Fatalf("after lowerPriority: nice %d, ioprio %#x; want %d, %#x", got.nice, got.io, backgroundNice, ioprioLow)
	}
	mine, err := get()
	if err != nil {
		t.Fatal(err)
	}
	if mine.nice == backgroundNice || mine.io == ioprioLow {
		t.Fatalf("the test's own thread got the background priority too: %+v", mine)
	}
}

// TestThreadCPU: the daemon's WorkClock counts what a locked thread
// computes, not the time it waits (for the disk, here for a timer).
func TestThreadCPU(t *testing.T) {
	done := make(chan time.Duration, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		c0 := threadCPU()
		time.Sleep(100 * time.Millisecond)
		waited := threadCPU() - c0
		c0 = threadCPU()
		for threadCPU()-c0 < 20*time.Millisecond { // terminates only if the clock counts computing
		}
		done <- waited
	}()
	if waited := <-done; waited >= 20*time.Millisecond {
		t.Fatalf("a thread that slept 100 ms used %v by threadCPU, want next to nothing", waited)
	}
}
