package rotation

import (
	"runtime"
	"time"

	"golang.org/x/sys/unix"
)

// ioprioWhoProcess is IOPRIO_WHO_PROCESS: the "which" of ioprio_set(2)
// for one thread.
const ioprioWhoProcess = 1

// ioprioLow is IOPRIO_PRIO_VALUE(IOPRIO_CLASS_BE, 7) for ioprio_set(2):
// the lowest best-effort I/O priority (the idle class could starve).
const ioprioLow = 2<<13 | 7

// backgroundNice is the CPU priority of background work: a tenth of a
// normal thread's share when they compete, never starved (nice 19 was:
// a rotation on a busy host made no progress).
const backgroundNice = 10

// lowerPriority runs the calling goroutine, for the rest of its life, on
// an OS thread of its own at a low CPU priority (backgroundNice) and the
// lowest best-effort I/O priority, so that readers win when they compete
// with it. The thread ends with the goroutine (it stays locked), so no
// other goroutine ever runs at that priority. Failures leave the thread as
// it was: slower readers, never an error.
func lowerPriority() {
	runtime.LockOSThread()
	tid := unix.Gettid()
	unix.Setpriority(unix.PRIO_PROCESS, tid, backgroundNice)
	unix.Syscall(unix.SYS_IOPRIO_SET, ioprioWhoProcess, uintptr(tid), ioprioLow)
}

// threadCPU returns the CPU time (user and system) the calling thread has
// used; it is the WorkClock of a daemon's workers, each locked to a thread
// of its own (lowerPriority). It returns 0 where the clock fails, which
// leaves the work unpaced rather than the rotation stopped.
func threadCPU() time.Duration {
	var ts unix.Timespec
	if unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts) != nil {
		return 0
	}
	return time.Duration(ts.Nano())
}
