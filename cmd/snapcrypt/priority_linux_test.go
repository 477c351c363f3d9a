package main

import (
	"os"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestBackgroundPriority: the goroutine's thread runs at backgroundNice
// and the lowest best-effort I/O priority afterwards, and other threads
// keep their priority.
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
	if got.nice != backgroundNice || got.io != ioprioLow {
		t.Fatalf("after backgroundPriority: nice %d, ioprio %#x; want %d, %#x", got.nice, got.io, backgroundNice, ioprioLow)
	}
	mine, err := get()
	if err != nil {
		t.Fatal(err)
	}
	if mine.nice == backgroundNice || mine.io == ioprioLow {
		t.Fatalf("the test's own thread got the background priority too: %+v", mine)
	}
}

// TestBackgroundRun: GOMAXPROCS is raised while background runs are active
// and restored after the last one, however they overlap.
func TestBackgroundRun(t *testing.T) {
	base := runtime.GOMAXPROCS(0)
	a := backgroundRun()
	b := backgroundRun()
	if got := runtime.GOMAXPROCS(0); got != base+backgroundWorkers+1 {
		t.Fatalf("GOMAXPROCS %d during two runs, want %d", got, base+backgroundWorkers+1)
	}
	a()
	a() // a second call changes nothing
	if got := runtime.GOMAXPROCS(0); got != base+backgroundWorkers+1 {
		t.Fatalf("GOMAXPROCS %d with one run left, want %d", got, base+backgroundWorkers+1)
	}
	b()
	if got := runtime.GOMAXPROCS(0); got != base {
		t.Fatalf("GOMAXPROCS %d after the runs, want %d", got, base)
	}
}

// TestReadsActive: reading a file fast makes the process count as serving
// reads; an idle spell does not.
func TestReadsActive(t *testing.T) {
	if _, ok := selfRchar(); !ok {
		t.Fatal("/proc/self/io has no rchar")
	}
	readsActive()
	time.Sleep(2 * readCheck)
	if readsActive() {
		t.Fatal("active after an idle spell")
	}
	buf := make([]byte, 1<<20)
	f, err := os.Open("/dev/zero")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	deadline := time.Now().Add(3 * readCheck)
	active := false
	for time.Now().Before(deadline) && !active {
		for range 16 {
			f.Read(buf)
		}
		active = readsActive()
	}
	if !active {
		t.Fatal("not active while reading 16 MiB at a time")
	}
}
