package rotation

import (
	"context"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"
)

// TestBackgroundRun: GOMAXPROCS is at least the CPUs plus a run's threads
// while background runs are active, and restored after the last one,
// however they overlap; a process that keeps more Ps keeps them as they are.
func TestBackgroundRun(t *testing.T) {
	orig := runtime.GOMAXPROCS(0)
	defer runtime.GOMAXPROCS(orig)
	cpus := runtime.NumCPU()
	for _, base := range []int{cpus, cpus + 1, cpus + Workers + 1, cpus + 10} {
		runtime.GOMAXPROCS(base)
		want := max(base, cpus+Workers+1)
		a := backgroundRun(Workers)
		b := backgroundRun(Workers)
		if got := runtime.GOMAXPROCS(0); got != want {
			t.Fatalf("from %d: GOMAXPROCS %d during two runs, want %d", base, got, want)
		}
		a()
		a() // a second call changes nothing
		if got := runtime.GOMAXPROCS(0); got != want {
			t.Fatalf("from %d: GOMAXPROCS %d with one run left, want %d", base, got, want)
		}
		b()
		if got := runtime.GOMAXPROCS(0); got != base {
			t.Fatalf("GOMAXPROCS %d after the runs, want %d as before", got, base)
		}
	}
}

// TestReadsActive: reading a file fast makes the process count as serving
// reads; an idle spell does not.
func TestReadsActive(t *testing.T) {
	if _, ok := selfRchar(); !ok {
		t.Fatal("/proc/self/io has no rchar")
	}
	m := newReadMeter()
	m.readsActive()
	time.Sleep(2 * readCheck)
	if m.readsActive() {
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
		active = m.readsActive()
	}
	if !active {
		t.Fatal("not active while reading 16 MiB at a time")
	}
}

// reader simulates a process that serves reads beside a paced worker, on
// a simulated clock: the reader reads at full bytes per second while the
// worker sleeps, and at hurt while a unit of work runs.
type reader struct {
	now        time.Time
	n          uint64
	full, hurt float64
	slept      time.Duration // by the worker, in all

	// mix, if set, is the reader's speed from one 200 ms to the next
	// (the sizes of the files it reads), times full and hurt alike.
	mix    func() float64
	m      float64   // the current mix
	mixAt  time.Time // when m was drawn
	idle   float64   // bytes the reader would have read without the work
	worked time.Duration

	// stealing, if set, says whether the host takes half of the CPU time
	// now (steal), which halves the reader's pace.
	stealing     func() bool
	steal, total float64 // CPU ticks of a 2-CPU machine at 100 a second

	// stopsInPauses: the reader nearly stops (5 % of its pace, below
	// readBusy) in the measured part of the pacer's quiet spells.
	stopsInPauses bool
	p             *pacer
}

func (r *reader) ticks() cpuTicks { return cpuTicks{steal: uint64(r.steal), total: uint64(r.total)} }

func (r *reader) advance(d time.Duration, rate float64) {
	m := 1.0
	if r.mix != nil {
		if r.now.Sub(r.mixAt) >= 200*time.Millisecond {
			r.m, r.mixAt = r.mix(), r.now
		}
		m = r.m
	}
	r.total += 200 * d.Seconds()
	if r.stopsInPauses && r.p != nil && r.p.quiet && !r.p.settling {
		m *= 0.05
	}
	if r.stealing != nil && r.stealing() {
		m /= 2
		r.steal += 100 * d.Seconds()
	}
	r.now = r.now.Add(d)
	r.n += uint64(m * rate * d.Seconds())
	r.idle += m * r.full * d.Seconds()
}

func (r *reader) meter() *readMeter {
	return &readMeter{rchar: func() (uint64, bool) { return r.n, true }, now: func() time.Time { return r.now }}
}

func (r *reader) pacer() *pacer {
	p := newPacer(r.meter())
	p.sleep = func(d time.Duration) { r.slept += d; r.advance(d, r.full) }
	p.ticks = r.ticks
	r.p = p
	return p
}

// work runs units of work of 1 ms each, paced, for d of simulated time.
func (r *reader) work(p *pacer, d time.Duration) {
	for end := r.now.Add(d); r.now.Before(end); {
		r.advance(time.Millisecond, r.hurt)
		r.worked += time.Millisecond
		p.pace(time.Millisecond)
	}
}

const mib = 1 << 20

// TestPacerAdapts: where the rotation's work costs the reader more than
// the least pacing makes up for, the pacer paces harder until the reader
// keeps minShare of its pace; once the work stops costing, it goes back to
// the least pacing.
func TestPacerAdapts(t *testing.T) {
	r := &reader{now: time.Unix(1e9, 0), full: 100 * mib, hurt: 30 * mib}
	p := r.pacer()
	r.work(p, time.Minute)
	// At minFactor the reader would keep (30+4*100)/5 = 86 of 100.
	if p.factor <= minFactor || p.share < aimShare {
		t.Fatalf("factor %v, reader's share %.3f: want more pacing than %d and a share of %v or more", p.factor, p.share, minFactor, aimShare)
	}
	r.hurt = r.full
	r.work(p, time.Minute)
	if p.factor != minFactor {
		t.Fatalf("factor %v once the work costs the reader nothing, want %d", p.factor, minFactor)
	}
}

// TestPacerLeastPacing: a reader that the work does not slow down gets
// today's pacing (sleep minFactor times each unit, and a quiet spell per
// work spell); with no reads, no sleep at all.
func TestPacerLeastPacing(t *testing.T) {
	r := &reader{now: time.Unix(1e9, 0), full: 100 * mib, hurt: 100 * mib}
	p := r.pacer()
	r.work(p, time.Minute)
	if p.factor != minFactor {
		t.Fatalf("factor %v for a reader the work does not slow, want %d", p.factor, minFactor)
	}
	// Once there, each cycle: a work spell that sleeps minFactor times
	// what it works, then a quiet spell.
	r.slept, r.worked = 0, 0
	r.work(p, time.Minute)
	want := minFactor + float64((settleSpell+quietSpell)*(minFactor+1))/float64(workSpell)
	if ratio := float64(r.slept) / float64(r.worked); ratio < want || ratio > want*1.1 {
		t.Fatalf("slept %.2f times as long as it worked, want %.2f (minFactor %d, and the quiet spells)", ratio, want, minFactor)
	}

	r.full, r.hurt, r.slept = 0, 0, 0
	r.work(p, time.Second) // the reads stop: the first readCheck still counts them
	r.slept = 0
	r.work(p, time.Minute)
	if r.slept != 0 {
		t.Fatalf("slept %v with no reads", r.slept)
	}
}

// TestPacerNoisyReader: a reader whose pace moves by up to 40 % from one
// 200 ms to the next (the sizes of the files it reads), and whom the work
// slows as in TestPacerAdapts, keeps 0.9 of what it would read without the
// rotation, over the whole rotation, for every seed: one quiet spell's
// rate is not taken for the reader's pace.
func TestPacerNoisyReader(t *testing.T) {
	for seed := range uint64(20) {
		rng := rand.New(rand.NewPCG(seed, 1))
		r := &reader{now: time.Unix(1e9, 0), full: 100 * mib, hurt: 30 * mib,
			mix: func() float64 { return 0.6 + 0.8*rng.Float64() }}
		p := r.pacer()
		r.work(p, 30*time.Second)
		if share := float64(r.n) / r.idle; share < 0.9 {
			t.Errorf("seed %d: the reader kept %.3f of its pace over 30 s (factor at the end %v), want 0.9 or more", seed, share, p.factor)
		}
	}
}

// TestPacerUnevenSteal: a host that takes half the CPU time during the
// work spells of every other 5 s (steal, in /proc/stat) halves the
// reader's pace then, though the rotation costs it nothing; the pacer
// does not compare those cycles, and paces no harder than the least.
func TestPacerUnevenSteal(t *testing.T) {
	r := &reader{now: time.Unix(1e9, 0), full: 100 * mib, hurt: 100 * mib}
	p := r.pacer()
	r.stealing = func() bool { return !p.quiet && r.now.Unix()/5%2 == 0 }
	r.work(p, time.Minute)
	if st := p.status(); st.Factor != minFactor || st.Uneven == 0 {
		t.Fatalf("pacing %+v: want factor %d and cycles left out for uneven steal", st, minFactor)
	}
	// Even steal (all the time) is compared as it is.
	r.stealing = func() bool { return true }
	uneven := p.uneven
	r.work(p, time.Minute)
	if st := p.status(); st.Factor != minFactor || st.Uneven > uneven+1 {
		t.Fatalf("pacing %+v with steal all the time: want factor %d and no more cycles left out", st, minFactor)
	}
}

// TestPacerRestart: a run after a pause starts its spells afresh (with
// reads under way between runs, the first "work spell" would span the
// pause, with no work in it, and read as the reader's full pace), at
// startFactor, or at the factor the last run reached if higher.
func TestPacerRestart(t *testing.T) {
	r := &reader{now: time.Unix(1e9, 0), full: 100 * mib, hurt: 100 * mib}
	p := r.pacer()
	r.work(p, time.Minute)
	if p.factor != minFactor {
		t.Fatalf("factor %v after a run that does not slow the reader, want %d", p.factor, minFactor)
	}
	r.advance(10*time.Second, r.full) // between runs: reads, no work
	p.restart()
	r.work(p, workSpell/2)
	if st := p.status(); st.Factor != startFactor || st.ReaderShare != 0 || p.cycles != 0 {
		t.Fatalf("after a restart and half a work spell: %+v, %d cycles; want factor %d and no comparison", st, p.cycles, startFactor)
	}

	// A run that paced harder than startFactor (the model's reader,
	// slowed only while work runs, keeps 97 % at 32 even when stopped
	// then: set by hand): the next starts there.
	p.factor = maxFactor
	f := p.factor
	r.hurt = 30 * mib
	r.advance(10*time.Second, r.full)
	p.restart()
	r.work(p, workSpell/2)
	if st := p.status(); st.Factor != f || st.ReaderShare != 0 || p.cycles != 0 {
		t.Fatalf("after a restart and half a work spell: %+v, %d cycles; want factor %v and no comparison", st, p.cycles, f)
	}
	r.work(p, time.Minute)
	if p.share < aimShare {
		t.Fatalf("share %.3f after a minute of the third run, want %v or more", p.share, aimShare)
	}
}

// TestPacerReadsStopInPause: a pause in which the reads stopped says
// nothing of the reader's pace (its rate would make the work look free):
// such cycles are not compared, and the factor stays where it started.
func TestPacerReadsStopInPause(t *testing.T) {
	r := &reader{now: time.Unix(1e9, 0), full: 100 * mib, hurt: 100 * mib, stopsInPauses: true}
	p := r.pacer()
	r.work(p, time.Minute)
	if st := p.status(); st.Factor != startFactor || st.ReaderShare != 0 {
		t.Fatalf("pacing %+v: want factor %d and no comparison", st, startFactor)
	}
}

// TestWorkClockFails: a work clock that fails (reads 0) when the worker
// starts bills nothing for the first unit, not the thread's whole time.
func TestWorkClockFails(t *testing.T) {
	setClockGap(t, 0)
	var mu sync.Mutex
	clock, reads := time.Hour, 0 // a thread that has run for an hour
	var paced []time.Duration
	r := &Rotator{opts: Options{Workers: 1,
		WorkClock: func() time.Duration {
			mu.Lock()
			defer mu.Unlock()
			reads++
			if reads == 1 {
				return 0
			}
			return clock
		},
		Pace: func(worked time.Duration) {
			mu.Lock()
			defer mu.Unlock()
			paced = append(paced, worked)
		}}.withDefaults()}
	const units = 8
	err := r.parallelN(context.Background(), 1, units, func(int) error {
		mu.Lock()
		defer mu.Unlock()
		clock += paceQuantum / 2
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var sum time.Duration
	for _, d := range paced {
		sum += d
	}
	if sum > units*paceQuantum/2 || sum < (units-1)*paceQuantum/2 {
		t.Fatalf("Pace got %v (%v in all) for %d units of %v with one failed clock read", paced, sum, units, paceQuantum/2)
	}
}

// TestWorkClockCancelled: a worker whose run was cancelled stops without
// paying what it owes: a sleep would only delay the end.
func TestWorkClockCancelled(t *testing.T) {
	setClockGap(t, 0)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var clock time.Duration = time.Hour
	var paced int
	r := &Rotator{opts: Options{Workers: 1,
		WorkClock: func() time.Duration { return clock },
		Pace:      func(time.Duration) { paced++ }}.withDefaults()}
	r.parallelN(ctx, 1, 4, func(i int) error {
		clock += paceQuantum / 4
		if i == 0 {
			cancel()
		}
		return nil
	})
	if paced != 0 {
		t.Fatalf("Pace called %d times after the run was cancelled", paced)
	}
}

// TestCPUTimes: this machine's /proc/stat gives a total that grows.
func TestCPUTimes(t *testing.T) {
	a := cpuTimes()
	time.Sleep(50 * time.Millisecond)
	b := cpuTimes()
	if a.total == 0 || b.total <= a.total || b.steal < a.steal {
		t.Fatalf("CPU ticks %+v, then %+v", a, b)
	}
	if s := stolen(a, b); s < 0 || s > 1 {
		t.Fatalf("stolen %v", s)
	}
}

// TestPacerIdleSamples: with no reads, the pacer reads the process's read
// counter (/proc/self/io) at most once per readCheck, not after every
// unit of work (which cost a rotation through an idle mount a third of
// its CPU).
func TestPacerIdleSamples(t *testing.T) {
	r := &reader{now: time.Unix(1e9, 0)}
	m := r.meter()
	reads := 0
	rchar := m.rchar
	m.rchar = func() (uint64, bool) { reads++; return rchar() }
	p := newPacer(m)
	p.sleep = func(d time.Duration) { r.slept += d; r.advance(d, 0) }
	r.work(p, time.Second) // 1,000 units of 1 ms
	if limit := int(time.Second/readCheck) + 2; reads > limit {
		t.Errorf("%d reads of the counter in 1 s of work with no reads, want at most %d", reads, limit)
	}
	if r.slept != 0 {
		t.Errorf("slept %v with no reads", r.slept)
	}
}

// TestIdle: housekeeping's pace waits until the process stops reading.
func TestIdle(t *testing.T) {
	r := &reader{now: time.Unix(1e9, 0), full: 100 * mib}
	m := r.meter()
	m.sample(false)
	r.advance(readCheck, r.full)
	waits := 0
	pace := idle(m, func(d time.Duration) {
		waits++
		if waits == 20 {
			r.full = 0 // the reads stop
		}
		r.advance(d, r.full)
	})
	pace(time.Millisecond)
	if waits < 20 {
		t.Fatalf("returned after %d waits, while the process was still reading", waits)
	}
	waits = 0
	pace(time.Millisecond)
	if waits != 0 {
		t.Fatalf("waited %d times with no reads", waits)
	}
}

// TestWorkClock: a worker that reads its clock after every unit pays in
// sleeps of at least paceQuantum of work, and what is left after its
// last unit.
func TestWorkClock(t *testing.T) {
	paced, _ := payCosts(t, 0)
	if want := []time.Duration{paceQuantum * 3 / 2, paceQuantum * 3 / 2, paceQuantum / 4}; !slices.Equal(paced, want) {
		t.Fatalf("Pace got %v, want %v", paced, want)
	}
}

// TestWorkClockGap: a worker whose units take less wall time than
// workClockGap reads its clock only when it starts and after its last
// unit, and is billed the sum.
func TestWorkClockGap(t *testing.T) {
	paced, reads := payCosts(t, time.Hour)
	if want := []time.Duration{paceQuantum * 13 / 4}; !slices.Equal(paced, want) || reads != 2 {
		t.Fatalf("Pace got %v after %d clock readings, want %v after 2", paced, reads, want)
	}
}

// payCosts runs units that cost 1/2, 1, 3/2 and 1/4 paceQuantum on one
// paced worker whose clock is read at most every gap, and returns what
// Pace was given and how often the clock was read.
func payCosts(t *testing.T, gap time.Duration) (paced []time.Duration, reads int) {
	t.Helper()
	setClockGap(t, gap)
	var mu sync.Mutex
	clock := time.Second // the worker's thread time: advanced by its units (0 would be a clock that failed)
	r := &Rotator{opts: Options{Workers: 1,
		WorkClock: func() time.Duration {
			mu.Lock()
			defer mu.Unlock()
			reads++
			return clock
		},
		Pace: func(worked time.Duration) {
			mu.Lock()
			defer mu.Unlock()
			paced = append(paced, worked)
		}}.withDefaults()}
	costs := []time.Duration{paceQuantum / 2, paceQuantum, paceQuantum * 3 / 2, paceQuantum / 4}
	err := r.parallelN(context.Background(), 1, len(costs), func(i int) error {
		mu.Lock()
		defer mu.Unlock()
		clock += costs[i]
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return paced, reads
}

// setClockGap sets workClockGap for the rest of the test.
func setClockGap(t *testing.T, d time.Duration) {
	g := workClockGap
	workClockGap = d
	t.Cleanup(func() { workClockGap = g })
}

// TestPacedDriver: paced bills the work of the calling goroutine to Pace;
// an unpaced run only runs it.
func TestPacedDriver(t *testing.T) {
	clock := time.Second
	var paced []time.Duration
	r := &Rotator{opts: Options{WorkClock: func() time.Duration { return clock },
		Pace: func(worked time.Duration) { paced = append(paced, worked) }}.withDefaults()}
	r.paced(func() { clock += 3 * time.Millisecond })
	r.paced(func() {}) // nothing worked: nothing billed
	if want := []time.Duration{3 * time.Millisecond}; !slices.Equal(paced, want) {
		t.Fatalf("Pace got %v, want %v", paced, want)
	}
	ran := false
	(&Rotator{opts: Options{}.withDefaults()}).paced(func() { ran = true })
	if !ran {
		t.Fatal("an unpaced run did not run fn")
	}
}
