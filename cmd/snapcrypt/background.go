package main

import (
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"
)

// backgroundWorkers is how many wrapped DEKs a mount's background rotation
// works on at once: the daemon's job is serving reads, and the rotation
// only uses time they leave (backgroundPriority).
const backgroundWorkers = 2

// backgroundPace spreads a background rotation out while this process
// serves reads: after each unit of work its worker sleeps four times as
// long as the unit took, so that the rotation's own work and the kernel's
// on its behalf (journal commits, freeing blocks: not charged to the
// low-priority thread) take at most a fifth of each worker's time. With
// no reads it does not sleep: nothing is waiting.
func backgroundPace(worked time.Duration) {
	if readsActive() {
		time.Sleep(4 * worked)
	}
}

// idlePace holds background housekeeping (freeing the space of retired
// wrapped DEKs) back while the process serves reads: after each batch it
// waits until reads have stopped. Nothing waits for housekeeping.
func idlePace(worked time.Duration) {
	for readsActive() {
		time.Sleep(readCheck)
	}
}

// readActivity tracks how much this process reads (/proc/self/io rchar:
// every byte read by a system call, from pack files, sockets of an object
// store, /dev/fuse). A rotation's own reads are 77 bytes per wrapped DEK
// and one DEK pack now and then: far below readBusy.
var readActivity struct {
	mu     sync.Mutex
	at     time.Time
	rchar  uint64
	active bool
}

// readCheck is how often readsActive looks again; readBusy is the read
// rate (bytes per second) from which the process counts as serving reads.
const (
	readCheck = 100 * time.Millisecond
	readBusy  = 8 << 20
)

// readsActive reports whether the process read at readBusy or more in the
// last readCheck or so.
func readsActive() bool {
	ra := &readActivity
	ra.mu.Lock()
	defer ra.mu.Unlock()
	now := time.Now()
	if el := now.Sub(ra.at); el >= readCheck {
		n, ok := selfRchar()
		if ok && !ra.at.IsZero() {
			ra.active = float64(n-ra.rchar) >= readBusy*el.Seconds()
		}
		ra.at, ra.rchar = now, n
	}
	return ra.active
}

// selfRchar returns the rchar line of /proc/self/io.
func selfRchar() (uint64, bool) {
	b, err := os.ReadFile("/proc/self/io")
	if err != nil {
		return 0, false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "rchar: "); ok {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
			return n, err == nil
		}
	}
	return 0, false
}

// Background work runs on locked threads at the lowest priority. The Go
// scheduler does not see that the kernel sets such a thread aside while it
// runs Go code, so the thread keeps its P: with GOMAXPROCS equal to the
// number of CPUs, the readers would be left fewer Ps. While any background
// run is active, GOMAXPROCS is raised by the most threads it may hold a P
// with (its workers and the goroutine that runs it).
var background struct {
	mu    sync.Mutex
	runs  int
	extra int
}

// backgroundRun marks the start of one background run (a rotation, a
// helping run); the returned func marks its end.
func backgroundRun() (done func()) {
	background.mu.Lock()
	defer background.mu.Unlock()
	background.runs++
	if background.runs == 1 {
		background.extra = backgroundWorkers + 1
		runtime.GOMAXPROCS(runtime.GOMAXPROCS(0) + background.extra)
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			background.mu.Lock()
			defer background.mu.Unlock()
			background.runs--
			if background.runs == 0 {
				runtime.GOMAXPROCS(max(1, runtime.GOMAXPROCS(0)-background.extra))
				background.extra = 0
			}
		})
	}
}
