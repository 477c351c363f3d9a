package rotation

import (
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Background work (a rotation, a helping run, freeing the space of retired
// wrapped DEKs) takes only the time the reads a daemon serves leave: it
// runs at low priority (background), and while the process reads it is
// spread out in time (pacer) or, for housekeeping, held back (idle).

// Workers is how many wrapped DEKs a daemon's rotation works on at once:
// the daemon's job is serving reads.
const Workers = 2

// readCheck is how often the read rate is sampled; readBusy is the read
// rate (bytes per second) from which the process counts as serving reads.
// A rotation's own reads are 77 bytes per wrapped DEK and one DEK pack now
// and then: far below readBusy.
const (
	readCheck = 100 * time.Millisecond
	readBusy  = 8 << 20
)

// readMeter measures how fast this process serves reads: by the bytes of
// a mount's READ replies (DaemonOptions.ReadBytes), or by default by
// rchar of /proc/self/io, every byte read by a system call (pack files,
// the sockets of an object store, /dev/fuse). It is safe for concurrent
// use.
type readMeter struct {
	rchar func() (uint64, bool) // the counter; selfRchar by default
	now   func() time.Time

	mu     sync.Mutex
	at     time.Time // of the last sample
	n      uint64    // the counter at the last sample
	active bool      // the rate between the last two samples was readBusy or more
	rated  bool      // active was measured: there were two samples
}

func newReadMeter() *readMeter { return &readMeter{rchar: selfRchar, now: time.Now} }

// sample returns the counter, the time it was read, and whether the
// process read at readBusy or more in the last readCheck or so. It reads
// the counter at most once per readCheck, unless fresh.
func (m *readMeter) sample(fresh bool) (n uint64, at time.Time, active bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	el := now.Sub(m.at)
	if el >= readCheck || m.at.IsZero() || fresh {
		v, ok := m.rchar()
		if !ok {
			return m.n, m.at, false
		}
		if el >= readCheck && !m.at.IsZero() {
			m.active = float64(v-m.n) >= readBusy*el.Seconds()
			m.rated = true
		}
		if el >= readCheck || m.at.IsZero() {
			m.at, m.n = now, v
		} else {
			// Too soon for a rate: the counter for the caller only.
			return v, now, m.active
		}
	}
	return m.n, m.at, m.active
}

// readsActive reports whether the process read at readBusy or more in the
// last readCheck or so.
func (m *readMeter) readsActive() bool {
	_, _, a := m.sample(false)
	return a
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

// Pacing of a rotation while the process serves reads. After each
// paceQuantum or so of work (Rotator.parallelN sums its units) a worker
// sleeps factor times what that work cost: the CPU time of
// its thread (Options.WorkClock; time it waited for the disk costs readers
// no CPU), so that the rotation's work and the kernel's on its behalf
// (journal commits, freeing blocks: not charged to the low-priority
// thread) take at most 1/(factor+1) of the CPU a worker could use.
//
// The factor adapts to what the reader gets: every workSpell of paced
// work, all workers pause for a quiet spell, and the read rate of its last
// quietSpell (the reader alone; the first settleSpell lets the work under
// way end) is compared with the rate of the work spells (the reader beside
// the rotation). One spell's rate says little: a reader's bytes per second
// move by a third from one half second to the next with the sizes of the
// files it happens to read. So the rates are of the spells since the
// factor last changed (the older ones weighing less, by decay per cycle),
// and the factor changes only after minCycles of them: below aimShare of
// the quiet rate it doubles (up to maxFactor), above relaxShare it halves
// (down to minFactor). It starts at startFactor, half the most, so that
// the first cycles, before any comparison, cost the reader little: a
// rotation of 100,000 packed DEKs takes about 0.7 s of CPU on 2 cores,
// and at the least pacing (4) it ran in 2 s beside a reader that lost
// 23 % of its pace meanwhile, over before the first comparison; at 32 it
// takes 6 s and the reader lost 8-10 % (docs/bench.md). aimShare is
// above the 0.9 readers are promised (docs/rotation.md) by what the
// estimate still moves. A machine where the least pacing leaves the
// reader its pace comes down to minFactor in about 15 s of paced work
// (three halvings, minCycles each); one
// where the rotation costs the reader more (fewer or slower CPUs, a slower
// disk) paces harder until it does not. With no reads, nothing sleeps:
// nothing is waiting.
//
// On a virtual machine the host may run other guests: the kernel counts
// the CPU time they take as steal (/proc/stat), and the reader slows by as
// much. A cycle whose work spell and quiet spell had steal more than
// maxStealGap of all CPU time apart is not compared: it would measure the
// host, not the rotation. Even steal leaves the comparison alone.
const (
	minFactor   = 4
	startFactor = maxFactor / 2
	maxFactor   = 64
	workSpell   = 2 * time.Second
	settleSpell = 100 * time.Millisecond
	quietSpell  = 300 * time.Millisecond
	minCycles   = 2
	decay       = 0.75
	aimShare    = 0.93
	relaxShare  = 0.98
	maxStealGap = 0.02
)

// pacer paces the workers of one daemon. It is safe for concurrent use.
type pacer struct {
	meter *readMeter
	sleep func(time.Duration)

	mu       sync.Mutex
	factor   float64
	quiet    bool      // in a quiet spell
	settling bool      // in its first settleSpell: not measured
	since    time.Time // start of the current spell (of its measured part); zero: none yet
	n0       uint64    // the read counter at since
	until    time.Time // end of the current spell (of its settling part)
	work     spells    // the work spells since the factor changed
	rest     spells    // the measured quiet spells since then
	cycles   int       // work and quiet spell pairs in work and rest
	pending  spells    // the last work spell, until its quiet spell ends
	share    float64   // of the last comparison: work rate / quiet rate

	ticks      func() cpuTicks // the CPU time of the machine so far; cpuTimes
	spellTicks cpuTicks        // at since
	workSteal  float64         // steal in the last work spell, of all CPU time
	uneven     int             // cycles not compared for steal (maxStealGap)
}

// cpuTicks is CPU time of all the machine's CPUs, in ticks: steal and
// the total. Zero where it is not to be had.
type cpuTicks struct{ steal, total uint64 }

// stolen returns the steal between t and u, as a share of all CPU time
// (0 if unknown).
func stolen(t, u cpuTicks) float64 {
	if t.total == 0 || u.total <= t.total || u.steal < t.steal {
		return 0
	}
	return float64(u.steal-t.steal) / float64(u.total-t.total)
}

// cpuTimes reads the "cpu" line of /proc/stat: user, nice, system, idle,
// iowait, irq, softirq and steal (the eighth) make the total.
func cpuTimes() cpuTicks {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return cpuTicks{}
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return cpuTicks{}
	}
	var t cpuTicks
	for i, v := range f[1:9] {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return cpuTicks{}
		}
		t.total += n
		if i == 7 {
			t.steal = n
		}
	}
	return t
}

// spells sums the bytes read in spells and their seconds.
type spells struct{ n, secs float64 }

func (s *spells) add(n uint64, d time.Duration) { s.n += float64(n); s.secs += d.Seconds() }
func (s *spells) scale(f float64)               { s.n *= f; s.secs *= f }
func (s spells) rate() float64 {
	if s.secs <= 0 {
		return 0
	}
	return s.n / s.secs
}

func newPacer(m *readMeter) *pacer {
	return &pacer{meter: m, sleep: time.Sleep, factor: startFactor, ticks: cpuTimes}
}

// pace is Options.Pace: called by a worker after units of work with the
// time they took; it sleeps as the pacing says (through a quiet spell,
// in two sleeps).
func (p *pacer) pace(worked time.Duration) {
	for d := p.delay(worked); d > 0; d = p.delay(0) {
		p.sleep(d)
	}
}

// PaceStatus is how a paced rotation yields to reads, for status output.
type PaceStatus struct {
	Factor      float64 `json:"factor"`       // a worker sleeps this many times what its work cost
	ReaderShare float64 `json:"reader_share"` // the read rate beside the work / without it, at the last comparison; 0 before one
	Uneven      int     `json:"uneven_steal"` // cycles not compared: the host took CPU time (steal) unevenly between work and pause
}

// restart forgets the spells of an earlier run (a run that starts with
// reads under way would otherwise end a "work spell" that spans the time
// since the last run, with no work in it), and starts the factor again at
// startFactor, or where it was if higher. What an earlier run learned of a
// reader that the work did not slow is stale by the next (the reader may
// be another), and with a rotation of 100,000 DEKs over in 2 s at the
// least pacing, a run that started low was over before its first
// comparison: in (d), runs that kept the 8 an earlier one had come down
// to left the reader 0.83-0.92 of its pace (docs/bench.md). A factor
// that went up is kept: the reader needed it.
func (p *pacer) restart() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.quiet, p.settling, p.since = false, false, time.Time{}
	p.work, p.rest, p.pending, p.cycles, p.share = spells{}, spells{}, spells{}, 0, 0
	p.factor = max(p.factor, startFactor)
}

// status returns the pacing as it stands.
func (p *pacer) status() PaceStatus {
	p.mu.Lock()
	defer p.mu.Unlock()
	return PaceStatus{Factor: p.factor, ReaderShare: p.share, Uneven: p.uneven}
}

// delay is how long a worker waits after a unit of work that took worked.
func (p *pacer) delay(worked time.Duration) time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.meter.now()
	boundary := p.since.IsZero() || !now.Before(p.until)
	// The end of a spell needs the counter now; the start of one (after
	// no reads) takes the meter's last sample, at most readCheck old:
	// with no reader, every unit of work starts afresh, and reading
	// /proc/self/io for each cost a rotation through an idle mount a
	// third of its CPU.
	n, at, active := p.meter.sample(!p.since.IsZero() && boundary)
	if !active && !p.quiet {
		p.since = time.Time{} // the reads stopped: start afresh when they resume
		return 0
	}
	switch {
	case p.since.IsZero():
		p.quiet, p.since, p.n0, p.until = false, at, n, now.Add(workSpell)
		p.spellTicks = p.ticks()
	case !boundary:
	case !p.quiet:
		p.pending = spells{}
		p.pending.add(n-p.n0, at.Sub(p.since))
		p.workSteal = stolen(p.spellTicks, p.ticks())
		p.quiet, p.settling, p.since, p.n0, p.until = true, true, at, n, now.Add(settleSpell)
	case p.settling:
		p.settling, p.since, p.n0, p.until = false, at, n, now.Add(quietSpell)
		p.spellTicks = p.ticks()
	default:
		t := p.ticks()
		switch gap := stolen(p.spellTicks, t) - p.workSteal; {
		case !active:
			// The reads stopped in the pause: its rate is not the reader's.
		case gap > maxStealGap || gap < -maxStealGap:
			p.uneven++
		default:
			p.endCycle(n-p.n0, at.Sub(p.since))
		}
		p.quiet, p.since, p.n0, p.until = false, at, n, now.Add(workSpell)
		p.spellTicks = t
	}
	switch {
	case p.quiet:
		return p.until.Sub(now)
	case !active:
		return 0
	}
	return time.Duration(p.factor * float64(worked))
}

// endCycle adds a work spell (p.pending) and the quiet spell after it
// (quiet bytes in d) to the sums, and adapts the factor once they hold
// minCycles.
func (p *pacer) endCycle(quiet uint64, d time.Duration) {
	if p.cycles >= minCycles {
		p.work.scale(decay)
		p.rest.scale(decay)
	}
	p.work.n, p.work.secs = p.work.n+p.pending.n, p.work.secs+p.pending.secs
	p.rest.add(quiet, d)
	p.cycles++
	q := p.rest.rate()
	if p.cycles < minCycles || q <= 0 {
		return
	}
	p.share = p.work.rate() / q
	f := p.factor
	switch {
	case p.share < aimShare:
		f = min(2*f, maxFactor)
	case p.share > relaxShare:
		f = max(f/2, minFactor)
	}
	if f != p.factor {
		p.factor, p.work, p.rest, p.cycles = f, spells{}, spells{}, 0
	}
}

// idle is the pace of housekeeping (freeing the space of retired wrapped
// DEKs): after each batch it waits until the process is known not to be
// reading. Nothing waits for housekeeping.
func idle(m *readMeter, sleep func(time.Duration)) func(worked time.Duration) {
	return func(time.Duration) {
		for !m.quiet() {
			sleep(readCheck)
		}
	}
}

// quiet reports whether the process read less than readBusy in the last
// readCheck or so; false until that was measured.
func (m *readMeter) quiet() bool {
	_, _, active := m.sample(false)
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.rated && !active
}

// Background work runs on locked threads at low priority (lowerPriority).
// The Go scheduler does not see that the kernel sets such a thread aside
// while it runs Go code, so the thread keeps its P: with GOMAXPROCS equal
// to the number of CPUs, the readers would be left fewer Ps. While any
// background run is active, GOMAXPROCS is at least the number of CPUs plus
// the most threads it may hold a P with (its workers and the goroutine
// that runs it). Not more: Ps a process already keeps to spare (a mount:
// cmd/snapcrypt's spareProc) count, for the collector runs a dedicated mark
// worker per 4 Ps, rounded (runtime/mgcpacer.go), and at 7 Ps on 2 CPUs (a
// mount's 4 plus 3) every collection took both CPUs from the readers; at
// 5 it takes one.
var background struct {
	mu    sync.Mutex
	runs  int
	extra int
}

// backgroundRun marks the start of one background run of up to workers
// workers; the returned func marks its end (calls after the first do
// nothing).
func backgroundRun(workers int) (done func()) {
	background.mu.Lock()
	defer background.mu.Unlock()
	background.runs++
	if background.runs == 1 {
		procs := runtime.GOMAXPROCS(0)
		background.extra = max(0, runtime.NumCPU()+workers+1-procs)
		if background.extra > 0 {
			runtime.GOMAXPROCS(procs + background.extra)
		}
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			background.mu.Lock()
			defer background.mu.Unlock()
			background.runs--
			if background.runs == 0 && background.extra > 0 {
				runtime.GOMAXPROCS(max(1, runtime.GOMAXPROCS(0)-background.extra))
				background.extra = 0
			}
		})
	}
}
