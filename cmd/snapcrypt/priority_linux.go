package main

import (
	"runtime"

	"golang.org/x/sys/unix"
)

// ioprioWhoProcess is IOPRIO_WHO_PROCESS: the "which" of ioprio_set(2)
// for one thread.
const ioprioWhoProcess = 1

// ioprioIdle is IOPRIO_PRIO_VALUE(IOPRIO_CLASS_IDLE, 0) for ioprio_set(2).
const ioprioIdle = 3 << 13

// backgroundPriority runs the calling goroutine, for the rest of its life,
// on an OS thread of its own at the lowest CPU priority (nice 19) and in
// the idle I/O class: it then gets only CPU and disk time that nothing
// else wants. The thread ends with the goroutine (it stays locked), so no
// other goroutine ever runs at that priority. Failures leave the thread as
// it was: a slower reader, never an error.
func backgroundPriority() {
	runtime.LockOSThread()
	tid := unix.Gettid()
	unix.Setpriority(unix.PRIO_PROCESS, tid, 19)
	unix.Syscall(unix.SYS_IOPRIO_SET, ioprioWhoProcess, uintptr(tid), ioprioIdle)
}
