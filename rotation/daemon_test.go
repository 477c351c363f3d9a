package rotation

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	iofs "io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/snapcrypt/snapcrypt/keys"
	"github.com/snapcrypt/snapcrypt/lease"
)

// call is one call of a fake keychain's RunRotation or HelpRotation: the
// test answers it.
type call struct {
	progress func(Progress)
	result   chan error
}

// fakeKeychain is a Keychain whose long calls (RunRotation, HelpRotation)
// wait for the test to answer them, and whose answers to the others the
// test sets.
type fakeKeychain struct {
	runs  chan call // RunRotation calls
	helps chan call // HelpRotation calls

	mu         sync.Mutex
	ring       keys.Keyring
	held       map[string]bool
	unfinished bool
	lease      *lease.Lease
	startErr   error                                 // StartRotation's answer
	startGate  chan struct{}                         // if set, StartRotation waits for it
	addErr     func(m *keys.Material) error          // AddKey's answer
	startOpts  Options                               // of the last StartRotation
	setOpts    Options                               // of the last SetOptions
	starts     int                                   // StartRotation calls
	refreshes  int                                   // Refresh calls
	purges     int                                   // Purge calls
	purged     int                                   // Purge calls that returned
	purgeWork  func(pace func(worked time.Duration)) // what Purge does
}

func newFakeKeychain() *fakeKeychain {
	return &fakeKeychain{runs: make(chan call), helps: make(chan call),
		ring: keys.Keyring{Epoch: 1, Current: "g1"}, held: map[string]bool{"g1": true}}
}

func (f *fakeKeychain) Keyring() keys.Keyring {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.ring
}

func (f *fakeKeychain) Refresh(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.refreshes++
	return nil
}

func (f *fakeKeychain) Holds(gen string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.held[gen]
}

func (f *fakeKeychain) AddKey(ctx context.Context, m *keys.Material) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.addErr != nil {
		return f.addErr(m)
	}
	return nil
}

func (f *fakeKeychain) SetOptions(o Options) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.setOpts = o
}

func (f *fakeKeychain) Start(ctx context.Context, m *keys.Material) (resumed bool, err error) {
	f.mu.Lock()
	f.starts++
	f.startOpts = f.setOpts
	gate, startErr := f.startGate, f.startErr
	f.mu.Unlock()
	if gate != nil {
		<-gate
	}
	if startErr != nil {
		return false, startErr
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ring.Epoch++
	f.ring.Rotation = &keys.Rotation{From: []string{f.ring.Current}, To: "g2"}
	f.ring.Current = "g2"
	f.held["g2"] = true
	f.unfinished = true
	return false, nil
}

func (f *fakeKeychain) answer(ctx context.Context, ch chan call, progress func(Progress)) error {
	c := call{progress: progress, result: make(chan error)}
	select {
	case ch <- c:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-c.result:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (f *fakeKeychain) Run(ctx context.Context, progress func(Progress)) error {
	return f.answer(ctx, f.runs, progress)
}

func (f *fakeKeychain) Help(ctx context.Context, progress func(Progress)) error {
	return f.answer(ctx, f.helps, progress)
}

func (f *fakeKeychain) Unfinished(ctx context.Context) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.unfinished, nil
}

func (f *fakeKeychain) Lease(ctx context.Context) (*lease.Lease, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.lease, nil
}

func (f *fakeKeychain) Purge(ctx context.Context, pace func(worked time.Duration)) error {
	f.mu.Lock()
	f.purges++
	work := f.purgeWork
	f.mu.Unlock()
	if work != nil {
		work(pace)
	}
	f.mu.Lock()
	f.purged++
	f.mu.Unlock()
	return nil
}

// finished marks the rotation of the fake's keyring finished.
func (f *fakeKeychain) finished() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ring.Epoch++
	f.ring.Rotation = nil
	f.unfinished = false
}

// counts returns the fake's call counts: Refresh, Purge, Purge returned.
func (f *fakeKeychain) counts() (refreshes, purges, purged int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.refreshes, f.purges, f.purged
}

// rig is a started Daemon on a fake keychain, its log and a fake read
// rate.
type rig struct {
	t    *testing.T
	kc   *fakeKeychain
	d    *Daemon
	ctx  context.Context
	mu   sync.Mutex
	logs []string

	reading atomic.Bool // the process reads at 100 MiB/s
}

// newRig starts a Daemon on a fake keychain (prepared by prepare, if not
// nil) polling every 10 ms. The test's end stops it and waits for its
// work to end.
func newRig(t *testing.T, prepare func(r *rig)) *rig {
	r := &rig{t: t, kc: newFakeKeychain()}
	if prepare != nil {
		prepare(r)
	}
	r.d = newDaemon(r.kc, DaemonOptions{Poll: 10 * time.Millisecond, Logf: func(format string, a ...any) {
		r.mu.Lock()
		r.logs = append(r.logs, fmt.Sprintf(format, a...))
		r.mu.Unlock()
	}})
	// The read counter grows at 100 MiB/s while reading.
	var n atomic.Uint64
	last := time.Now()
	var lastMu sync.Mutex
	r.d.meter.rchar = func() (uint64, bool) {
		lastMu.Lock()
		defer lastMu.Unlock()
		now := time.Now()
		if r.reading.Load() {
			n.Add(uint64(100 * mib * now.Sub(last).Seconds()))
		}
		last = now
		return n.Load(), true
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.ctx = ctx
	r.d.start(ctx)
	t.Cleanup(func() {
		cancel()
		r.d.Wait()
	})
	return r
}

func (r *rig) log() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(r.logs, "\n")
}

// waitFor fails the test unless cond holds within 10 s.
func (r *rig) waitFor(what string, cond func() bool) {
	r.t.Helper()
	for end := time.Now().Add(10 * time.Second); !cond(); {
		if time.Now().After(end) {
			r.t.Fatalf("waited 10 s for %s; status %+v", what, r.d.status())
		}
		time.Sleep(time.Millisecond)
	}
}

// polls waits until the daemon has polled the keyring n more times.
func (r *rig) polls(n int) {
	r.t.Helper()
	from, _, _ := r.kc.counts()
	r.waitFor(fmt.Sprintf("%d keyring polls", n), func() bool { got, _, _ := r.kc.counts(); return got >= from+n })
}

// purges returns how many purges the daemon started.
func (r *rig) purges() int {
	r.d.mu.Lock()
	defer r.d.mu.Unlock()
	return r.d.purges
}

func recv(t *testing.T, ch chan call, what string) call {
	t.Helper()
	select {
	case c := <-ch:
		return c
	case <-time.After(10 * time.Second):
		t.Fatalf("no %s call within 10 s", what)
		return call{}
	}
}

// noCall fails the test if ch gets a call during the next few polls.
func (r *rig) noCall(ch chan call, what string) {
	r.t.Helper()
	from, _, _ := r.kc.counts()
	for {
		select {
		case <-ch:
			r.t.Fatalf("unexpected %s call", what)
		case <-time.After(time.Millisecond):
		}
		if got, _, _ := r.kc.counts(); got >= from+5 {
			return
		}
	}
}

// keyFile writes a key file and returns its spec.
func keyFile(t *testing.T) string {
	p := filepath.Join(t.TempDir(), "new.key")
	if err := keys.GenerateKeyFile(p); err != nil {
		t.Fatal(err)
	}
	return "file:" + p
}

// TestRotateRun: a rotation request switches and returns; the run goes
// from running through retiring to done and is followed by a purge; a
// request during the run gets EBUSY without reaching the keychain.
func TestRotateRun(t *testing.T) {
	r := newRig(t, nil)
	r.polls(1)
	if s := r.d.status(); s.State != "idle" || s.LastRequest != nil || s.Version != 2 {
		t.Fatalf("before any request (want version 2, no last request): %+v", s)
	}
	purgesBefore := r.purges()
	if err := r.d.Rotate(r.ctx, []byte(keyFile(t)+"\n")); err != nil {
		t.Fatal(err)
	}
	if r.kc.startOpts.Workers != Workers || r.kc.startOpts.Pace == nil || r.kc.startOpts.StartWorker == nil {
		t.Fatalf("the rotation runs with options %+v: want %d workers, paced, at low priority", r.kc.startOpts, Workers)
	}
	if r.kc.setOpts.Workers != Workers || r.kc.setOpts.Pace == nil {
		t.Fatalf("resumed rotations run with options %+v", r.kc.setOpts)
	}
	run := recv(t, r.kc.runs, "RunRotation")
	s := r.d.status()
	if s.State != "running" || s.Started == nil || s.LastRequest == nil ||
		s.LastRequest.Control != "rotate" || s.LastRequest.Kind != "file" || s.LastRequest.Result != "ok" || s.LastRequest.Errno != "" {
		t.Fatalf("after the switch: %+v, last request %+v", s, s.LastRequest)
	}
	if !strings.Contains(r.log(), "switched to key generation g2") {
		t.Fatalf("no log line of the switch: %q", r.log())
	}

	err := r.d.Rotate(r.ctx, []byte(keyFile(t)))
	if !errors.Is(err, lease.ErrBusy) {
		t.Fatalf("a request during the run: %v, want ErrBusy", err)
	}
	if s := r.d.status(); s.LastRequest.Errno != "EBUSY" || s.LastRequest.Result == "ok" || s.State != "running" {
		t.Fatalf("after a request during the run: %+v, last request %+v", s, s.LastRequest)
	}
	if r.kc.starts != 1 {
		t.Fatalf("StartRotation called %d times, want 1", r.kc.starts)
	}
	r.polls(3) // the poll neither helps nor starts another run
	r.noCall(r.kc.helps, "HelpRotation")

	run.progress(Progress{Phase: "rewrap", From: []string{"g1"}, To: "g2", Done: 5, Total: 10})
	if s := r.d.status(); s.State != "running" || s.Rewrapped != 5 || s.Total != 10 || s.To != "g2" {
		t.Fatalf("re-wrapping: %+v", s)
	}
	if s := r.d.status(); s.Pace == nil || s.Pace.Factor != startFactor || s.Pace.ReaderShare != 0 {
		t.Fatalf("pacing while re-wrapping: %+v, want factor %d and no comparison yet", s.Pace, startFactor)
	}
	run.progress(Progress{Phase: "retire", From: []string{"g1"}, To: "g2", Done: 10, Total: 10})
	if s := r.d.status(); s.State != "retiring" {
		t.Fatalf("retiring: %+v", s)
	}
	if r.purges() != purgesBefore {
		t.Fatalf("a purge started during the run")
	}
	r.kc.finished()
	run.result <- nil
	r.waitFor("state done", func() bool { return r.d.status().State == "done" })
	if s := r.d.status(); s.Ended == nil || s.Rewrapped != 10 || s.Pace != nil {
		t.Fatalf("done (no pacing shown): %+v", s)
	}
	r.waitFor("a purge after the run", func() bool { return r.purges() == purgesBefore+1 })
	if !strings.Contains(r.log(), "rotation: done; generation(s) g1 retired") {
		t.Fatalf("no log line of the end: %q", r.log())
	}
}

// TestRotateConcurrentRequests: a second request while the first is
// switching gets EBUSY at once.
func TestRotateConcurrentRequests(t *testing.T) {
	gate := make(chan struct{})
	r := newRig(t, func(r *rig) { r.kc.startGate = gate })
	first := make(chan error, 1)
	go func() { first <- r.d.Rotate(r.ctx, []byte(keyFile(t))) }()
	r.waitFor("the first request to switch", func() bool {
		r.kc.mu.Lock()
		defer r.kc.mu.Unlock()
		return r.kc.starts == 1
	})
	second := make(chan error, 1)
	go func() { second <- r.d.Rotate(r.ctx, []byte(keyFile(t))) }()
	var err error
	select {
	case err = <-second:
	case <-time.After(5 * time.Second):
		close(gate)
		t.Fatal("the second request waits for the first")
	}
	var re *RequestError
	if !errors.Is(err, lease.ErrBusy) || !errors.As(err, &re) {
		t.Fatalf("second request: %v, want a RequestError of class ErrBusy", err)
	}
	close(gate)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	recv(t, r.kc.runs, "RunRotation").result <- nil
}

// TestRotateRefused: each error of StartRotation is a RequestError of its
// class, shown in status with its errno; the daemon stays idle.
func TestRotateRefused(t *testing.T) {
	cases := []struct {
		err   error
		class error
		errno string
	}{
		{fmt.Errorf("rotate: %w (generation g1)", ErrAlreadyCurrent), iofs.ErrExist, "EEXIST"},
		{fmt.Errorf("rotate: %w", &lease.BusyError{Host: "h", PID: 1}), lease.ErrBusy, "EBUSY"},
		{fmt.Errorf("rotate: %w", ErrRotationUnfinished), lease.ErrBusy, "EBUSY"},
		{fmt.Errorf("rotate: %w: no key", keys.ErrBadKey), iofs.ErrInvalid, "EINVAL"},
		{fmt.Errorf("rotate: writing keyring/2: %w", iofs.ErrNotExist), ErrFailed, "EIO"},
	}
	for _, c := range cases {
		t.Run(c.errno+" "+c.err.Error(), func(t *testing.T) {
			r := newRig(t, func(r *rig) { r.kc.startErr = c.err })
			err := r.d.Rotate(r.ctx, []byte(keyFile(t)))
			var re *RequestError
			if !errors.As(err, &re) || re.Class != c.class {
				t.Fatalf("error %v, want a RequestError of class %v", err, c.class)
			}
			if c.class != iofs.ErrNotExist && errors.Is(err, iofs.ErrNotExist) {
				t.Fatal("the cause inside the error decides its class")
			}
			s := r.d.status()
			if s.State != "idle" || s.LastRequest.Errno != c.errno || s.LastRequest.Result != c.err.Error() || s.LastError != c.err.Error() {
				t.Fatalf("status %+v, last request %+v", s, s.LastRequest)
			}
			r.noCall(r.kc.runs, "RunRotation")
		})
	}
}

// TestRunFailed: a failed run shows as failed with its error, is logged,
// and the next poll resumes it; a run that finds another process running
// the rotation goes back to idle.
func TestRunFailed(t *testing.T) {
	r := newRig(t, nil)
	if err := r.d.Rotate(r.ctx, []byte(keyFile(t))); err != nil {
		t.Fatal(err)
	}
	run := recv(t, r.kc.runs, "RunRotation")
	r.kc.mu.Lock()
	r.kc.unfinished = false // until the test says so, for a look at the failed state
	r.kc.mu.Unlock()
	run.result <- errors.New("re-wrap: writing deks/g2/x: disk full")
	r.waitFor("state failed", func() bool { return r.d.status().State == "failed" })
	s := r.d.status()
	if !strings.Contains(s.LastError, "disk full") || s.Ended == nil {
		t.Fatalf("failed: %+v", s)
	}
	if !strings.Contains(r.log(), "disk full (it resumes on the next keyring poll)") {
		t.Fatalf("the failure is not logged: %q", r.log())
	}
	purges := r.purges()

	r.kc.mu.Lock()
	r.kc.unfinished = true
	r.kc.mu.Unlock()
	run = recv(t, r.kc.runs, "RunRotation (resumed by the poll)")
	if s := r.d.status(); s.State != "running" {
		t.Fatalf("resumed: %+v", s)
	}
	run.result <- fmt.Errorf("run: %w", lease.ErrBusy)
	r.waitFor("state idle", func() bool { return r.d.status().State == "idle" || r.d.status().State == "running elsewhere" })
	if r.purges() != purges {
		t.Fatal("a purge after a failed or busy run")
	}
	// The keyring still has the rotation: the next poll tries again.
	run = recv(t, r.kc.runs, "RunRotation (resumed again)")
	r.kc.finished()
	run.result <- nil
	r.waitFor("state done", func() bool { return r.d.status().State == "done" })
}

// TestPollElsewhere: the poll notices a rotation another process runs. It
// shows it; with the keys, it helps while the other process holds the
// lease and runs the rest when the lease has lapsed; without them, it
// does nothing.
func TestPollElsewhere(t *testing.T) {
	elsewhere := func(r *rig) {
		kc := r.kc
		kc.ring = keys.Keyring{Epoch: 2, Current: "g2", Rotation: &keys.Rotation{From: []string{"g1"}, To: "g2"}}
		kc.unfinished = true
		kc.lease = &lease.Lease{Host: "other", PID: 7, Expires: time.Now().Add(time.Minute)}
	}
	t.Run("without the new key", func(t *testing.T) {
		r := newRig(t, elsewhere)
		r.noCall(r.kc.helps, "HelpRotation")
		r.noCall(r.kc.runs, "RunRotation")
		if s := r.d.status(); s.State != "running elsewhere" || s.To != "g2" || len(s.From) != 1 || s.Helping {
			t.Fatalf("status %+v", s)
		}
	})
	t.Run("with the keys", func(t *testing.T) {
		r := newRig(t, func(r *rig) { elsewhere(r); r.kc.held = map[string]bool{"g1": true, "g2": true} })
		help := recv(t, r.kc.helps, "HelpRotation")
		if s := r.d.status(); s.State != "running elsewhere" || !s.Helping {
			t.Fatalf("helping: %+v", s)
		}
		r.noCall(r.kc.helps, "second HelpRotation") // one helping run at a time
		purges := r.purges()
		help.result <- nil
		r.waitFor("a finished helping run", func() bool { s := r.d.status(); return s.HelpRuns == 1 && !s.Helping })
		r.waitFor("a purge after helping", func() bool { return r.purges() > purges })

		help = recv(t, r.kc.helps, "HelpRotation (next poll)")
		r.kc.mu.Lock()
		r.kc.lease = nil // the coordinator died: its lease lapsed
		r.kc.mu.Unlock()
		help.result <- fmt.Errorf("help: %w", keys.ErrDEKUnavailable)
		run := recv(t, r.kc.runs, "RunRotation (taking over)")
		if s := r.d.status(); s.State != "running" {
			t.Fatalf("taking over: %+v", s)
		}
		r.kc.finished()
		run.result <- nil
		r.waitFor("state done", func() bool { return r.d.status().State == "done" })
		if strings.Contains(r.log(), "helping") {
			t.Fatalf("a helping run that lacked a key is logged: %q", r.log())
		}
	})
}

// TestPurgeWhenIdle: housekeeping waits while the process reads, and none
// starts while a rotation runs.
func TestPurgeWhenIdle(t *testing.T) {
	worked := make(chan struct{}, 1)
	r := newRig(t, func(r *rig) {
		r.reading.Store(true)
		r.kc.purgeWork = func(pace func(time.Duration)) {
			select {
			case worked <- struct{}{}:
			default:
			}
			pace(time.Millisecond) // one batch freed
		}
	})
	// The purge at start (what killed processes left) frees a batch,
	// then waits for the reads to stop.
	<-worked
	r.polls(10)
	if _, purges, purged := r.kc.counts(); purges != 1 || purged != 0 {
		t.Fatalf("%d purges, %d returned, while the process reads: want 1 waiting", purges, purged)
	}
	r.reading.Store(false)
	r.waitFor("the purge to end", func() bool { _, _, purged := r.kc.counts(); return purged == 1 })

	// None starts while a rotation runs.
	for _, on := range []*bool{&r.d.running, &r.d.helping, &r.d.starting} {
		r.d.mu.Lock()
		*on = true
		r.d.purge()
		*on = false
		started := r.d.purges
		r.d.mu.Unlock()
		if started != 1 {
			t.Fatalf("a purge started while a rotation, helping run or request was on (%d purges)", started)
		}
	}
}

// TestRequestNeverEchoed: requests that are key material written by
// mistake (a key's 64 hex characters after "file:", a passphrase after
// "env:" or "passfile:", a bare key) are refused with messages, a status
// and log lines that never contain them; status shows the kind of spec.
func TestRequestNeverEchoed(t *testing.T) {
	const hexKey = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
	const pass = "CorrectHorseBatteryStaple42"
	dir := t.TempDir()
	// A real key file whose path carries the secret, for the errors of
	// the keychain that quote the spec.
	named := filepath.Join(dir, hexKey)
	if err := keys.GenerateKeyFile(named); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, control, line, kind string
		secret                    string
		keychainErr               error
	}{
		{"file: and a key", "rotate", "file:" + hexKey, "file", hexKey, nil},
		{"file: and a key, keys", "keys", "file:" + hexKey + "\n", "file", hexKey, nil},
		{"a bare key", "rotate", hexKey, "", hexKey, nil},
		{"env: and a passphrase", "rotate", "env:" + pass, "env", pass, nil},
		{"env: and a passphrase, keys", "keys", "env:" + pass, "env", pass, nil},
		{"env: and a passphrase with spaces", "rotate", "env:correct horse " + pass, "", pass, nil},
		{"passfile: and a passphrase", "rotate", "passfile:" + pass, "passfile", pass, nil},
		{"a key file the keychain quotes", "rotate", "file:" + named, "file", hexKey,
			fmt.Errorf("rotate: %w (file:%s is the key of generation g0, which was retired)", keys.ErrBadKey, named)},
		{"a key file the keychain quotes, keys", "keys", named, "file", hexKey,
			fmt.Errorf("add key file:%s: %w", named, keys.ErrNoKeyMatches)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := newRig(t, func(r *rig) {
				r.kc.startErr = c.keychainErr
				r.kc.addErr = func(*keys.Material) error { return c.keychainErr }
			})
			handle := r.d.Rotate
			if c.control == "keys" {
				handle = r.d.AddKey
			}
			err := handle(r.ctx, []byte(c.line))
			if !errors.Is(err, iofs.ErrInvalid) {
				t.Fatalf("error %v, want one of class ErrInvalid", err)
			}
			b, jerr := json.Marshal(r.d.Status())
			if jerr != nil {
				t.Fatal(jerr)
			}
			for what, text := range map[string]string{"error": err.Error(), "status": string(b), "log": r.log()} {
				if strings.Contains(text, c.secret) {
					t.Errorf("the %s repeats the request: %s", what, text)
				}
			}
			lr := r.d.status().LastRequest
			if lr == nil || lr.Control != c.control || lr.Kind != c.kind || lr.Errno != "EINVAL" || lr.Result == "ok" || lr.Result == "" {
				t.Fatalf("last request %+v", lr)
			}
			t.Logf("%s", lr.Result)
		})
	}
}

// TestRefusalsSayWhy: a refused request's message still says what was
// wrong, with the argument put as "of the request".
func TestRefusalsSayWhy(t *testing.T) {
	r := newRig(t, nil)
	dir := t.TempDir()
	short := filepath.Join(dir, "short.key")
	if err := os.WriteFile(short, make([]byte, 31), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := map[string]string{
		"file:" + filepath.Join(dir, "nope"):     "the key file of the request: no such file or directory",
		"file:" + short:                          "the key file of the request: 31 bytes",
		"env:SNAPCRYPT_TEST_UNSET_VARIABLE_1234": "the environment variable of the request is not set",
		"":                                       "empty request",
		strings.Repeat("x", maxRequest+1):        "too long",
	}
	for line, want := range cases {
		err := r.d.Rotate(r.ctx, []byte(line))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%.40q: %v, want it to say %q", line, err, want)
		}
	}
}

// TestRedact: an argument that still occurs after the known phrasings are
// replaced gives the fallback.
func TestRedact(t *testing.T) {
	sp := keys.Spec{Kind: keys.SpecFile, Path: "k"}
	if got := redact("key file k: no such file or directory", sp, "fallback"); got != "fallback" {
		t.Errorf("a one-letter argument: %q", got)
	}
	sp = keys.Spec{Kind: keys.SpecEnv, Path: "SECRETVALUE"}
	if got := redact(`lookup "SECRETVALUE" failed`, sp, "fallback"); got != "fallback" {
		t.Errorf("an argument quoted another way: %q", got)
	}
	if got := redact("environment variable SECRETVALUE is not set", sp, "fallback"); got != "the environment variable of the request is not set" {
		t.Errorf("got %q", got)
	}
}

// TestErrnoNames: status names the errno fs gives each class.
func TestErrnoNames(t *testing.T) {
	for class, want := range map[error]string{iofs.ErrInvalid: "EINVAL", iofs.ErrExist: "EEXIST", lease.ErrBusy: "EBUSY", ErrFailed: "EIO"} {
		if got := errnoName(class); got != want {
			t.Errorf("errnoName(%v) = %s, want %s", class, got, want)
		}
	}
}

// TestDaemonReadBytes: a daemon given ReadBytes measures its readers by
// it, not by what the process reads.
func TestDaemonReadBytes(t *testing.T) {
	var n atomic.Uint64
	d := newDaemon(nil, DaemonOptions{ReadBytes: n.Load})
	n.Store(42 << 20)
	if v, ok := d.meter.rchar(); !ok || v != 42<<20 {
		t.Fatalf("meter reads %d, %v; want %d", v, ok, 42<<20)
	}
	if v, _ := newDaemon(nil, DaemonOptions{}).meter.rchar(); v == 42<<20 {
		t.Fatal("a daemon without ReadBytes reads the same counter")
	}
}
