package rotation

import (
	"context"
	"errors"
	"fmt"
	iofs "io/fs"
	"log"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/snapcrypt/snapcrypt/keys"
	"github.com/snapcrypt/snapcrypt/lease"
)

// DefaultPoll is how often a Daemon re-reads the keyring, so that it
// notices a rotation started elsewhere (and resumes one it can finish).
const DefaultPoll = 2 * time.Second

// maxRequest bounds a request line (a key spec).
const maxRequest = 4096

// Keychain is what a Daemon needs of the repository's keys and their
// rotation: an engine (a *keys.Keychain and its *Rotator) in a mount, a
// fake in tests.
type Keychain interface {
	// Keyring returns the keyring as last read.
	Keyring() keys.Keyring
	// Refresh re-reads the keyring.
	Refresh(ctx context.Context) error
	// Holds reports whether the key of generation gen is held.
	Holds(gen string) bool
	// AddKey holds one more key; keys.ErrNoKeyMatches if it is the key of
	// no current or retiring generation.
	AddKey(ctx context.Context, m *keys.Material) error
	// SetOptions sets the options later rotation runs use.
	SetOptions(o Options)
	// Start switches to m and returns once the switch is durable,
	// holding the rotation lease for Run. Errors:
	// ErrAlreadyCurrent, lease.ErrBusy, ErrRotationUnfinished,
	// keys.ErrBadKey; the keyring is then unchanged.
	Start(ctx context.Context, m *keys.Material) (resumed bool, err error)
	// Run finishes the rotation this process switched to or found
	// unfinished, calling progress as it goes; lease.ErrBusy if another
	// process runs it.
	Run(ctx context.Context, progress func(Progress)) error
	// Help works shards of a rotation another process
	// coordinates, until none is left; lease.ErrBusy if this process runs
	// one already, keys.ErrDEKUnavailable if it lacks a key it needs.
	Help(ctx context.Context, progress func(Progress)) error
	// Unfinished reports whether a rotation is unfinished.
	Unfinished(ctx context.Context) (bool, error)
	// Lease returns the live rotation lease, or nil.
	Lease(ctx context.Context) (*lease.Lease, error)
	// Purge frees the space of retired wrapped DEKs, calling pace after
	// each batch.
	Purge(ctx context.Context, pace func(worked time.Duration)) error
}

// engine is the Keychain of a real daemon: the keychain's keyring methods
// and the rotator's rotation methods.
type engine struct {
	*keys.Keychain
	*Rotator
}

// DaemonOptions tune a Daemon. Zero values mean defaults.
type DaemonOptions struct {
	// LeaseDuration is the lease lifetime of the rotations the daemon
	// runs: how long a killed daemon blocks others
	// (DefaultLeaseDuration).
	LeaseDuration time.Duration

	// Poll is how often the keyring is re-read (DefaultPoll).
	Poll time.Duration

	// Logf receives one line per event worth telling the operator: a
	// switch, a finished or failed rotation, a key added. Lines never
	// contain the text of a request. Default: log.Printf.
	Logf func(format string, args ...any)

	// ReadBytes, if set, returns the bytes the process has served to
	// its readers so far (a mount: the sizes of its READ replies); the
	// pacing measures the readers by it. By default every byte the
	// process read (rchar of /proc/self/io), which counts the rotation's
	// own reads too: 28 MB for 100,000 packed DEKs, 12-15 MB/s at full
	// speed, more than readBusy, so that a mount with no reader paced
	// its rotation against its own reads (1.9-2.3 s instead of 0.5).
	ReadBytes func() uint64
}

// A Daemon runs key rotations beside a process's real work (a mount's
// reads), taking only the time that work leaves: the rotations it is asked
// for (Rotate), the unfinished ones it finds on its keyring poll and can
// finish, and shards of those another process coordinates (helping). It
// frees the space of retired wrapped DEKs when the process is idle. Its
// own rotation is in one of these states:
//
//	idle      nothing asked for or found since the daemon started
//	running   re-wrapping (Rotate switched, or the poll resumed a rotation)
//	retiring  every wrapped DEK has its twin; retiring and deleting the old
//	done      the last run finished
//	failed    the last run failed; the next poll resumes it
//
// A run that finds another process running the rotation goes back to
// idle. Status shows "running elsewhere" instead of idle, done or
// retiring while the keyring names a rotation that this daemon does not
// run. A Daemon is safe for concurrent use.
type Daemon struct {
	kc   Keychain
	ctx  context.Context // background work ends with it
	logf func(format string, args ...any)
	poll time.Duration
	opts Options

	meter *readMeter
	pace  *pacer
	sleep func(time.Duration) // of housekeeping's wait for idleness
	// enter starts a background goroutine's work: low priority, and
	// GOMAXPROCS raised; leave ends it.
	enter func() (leave func())

	wg sync.WaitGroup // background goroutines

	req sync.Mutex // one request at a time

	mu       sync.Mutex
	state    string // see Daemon
	running  bool   // a Run goroutine is on
	starting bool   // a Rotate request is switching: its run comes next
	helping  bool   // a Help goroutine is on
	purging  bool   // a Purge goroutine is on
	helped   int    // helping runs finished
	purges   int    // Purge runs started
	prog     Progress
	started  time.Time
	ended    time.Time
	last     *Request
	lastErr  string
}

// StartDaemon returns a Daemon for kc and starts its keyring poll: it
// resumes an unfinished rotation it can finish and frees what killed
// processes left. The daemon's background work ends with ctx. Its
// rotations run through a Rotator of its own with the daemon's options
// (two paced workers at low priority).
func StartDaemon(ctx context.Context, kc *keys.Keychain, o DaemonOptions) *Daemon {
	d := newDaemon(engine{kc, New(kc, Options{})}, o)
	d.start(ctx)
	return d
}

// newDaemon returns a Daemon that has not started.
func newDaemon(kc Keychain, o DaemonOptions) *Daemon {
	if o.Poll <= 0 {
		o.Poll = DefaultPoll
	}
	if o.Logf == nil {
		o.Logf = log.Printf
	}
	m := newReadMeter()
	if o.ReadBytes != nil {
		m.rchar = func() (uint64, bool) { return o.ReadBytes(), true }
	}
	d := &Daemon{kc: kc, logf: o.Logf, poll: o.Poll, state: "idle",
		meter: m, pace: newPacer(m), sleep: time.Sleep}
	d.enter = func() func() {
		leave := backgroundRun(Workers)
		lowerPriority()
		d.pace.restart()
		return leave
	}
	d.opts = Options{LeaseDuration: o.LeaseDuration, Workers: Workers,
		StartWorker: lowerPriority, Pace: func(worked time.Duration) { d.pace.pace(worked) },
		WorkClock: threadCPU}
	return d
}

func (d *Daemon) start(ctx context.Context) {
	d.ctx = ctx
	d.kc.SetOptions(d.opts)
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		d.pollLoop(ctx)
	}()
}

// Wait waits, after the daemon's context has ended, until its background
// work has stopped.
func (d *Daemon) Wait() { d.wg.Wait() }

// DaemonStatus is what a Daemon shows (a mount's .ctl/status, "rotation").
type DaemonStatus struct {
	// Version is 2 since last_request shows the kind of key spec
	// ("kind") instead of the spec itself ("key", version 1), which could
	// be a key typed by mistake.
	Version     int        `json:"version"`
	State       string     `json:"state"`
	From        []string   `json:"from"`
	To          string     `json:"to,omitempty"`
	Rewrapped   int64      `json:"rewrapped"`
	Total       int64      `json:"total"`
	Deleted     int64      `json:"deleted"`
	Rate        float64    `json:"rate"` // data keys per second
	Started     *time.Time `json:"started,omitempty"`
	Ended       *time.Time `json:"ended,omitempty"`
	LastRequest *Request   `json:"last_request"`
	LastError   string     `json:"last_error,omitempty"`
	// Helping: this daemon works shards of a rotation another process
	// coordinates; HelpRuns counts such runs finished.
	Helping  bool `json:"helping"`
	HelpRuns int  `json:"help_runs"`
	// Pace: while this daemon rotates or helps, how it yields to the
	// reads the process serves (rotation/pace.go).
	Pace *PaceStatus `json:"pace,omitempty"`
}

// Request is the last request a Daemon handled. It never shows the
// request's text (a mistyped key spec may be the key itself), only the
// kind of key spec it was.
type Request struct {
	At      time.Time `json:"at"`
	Control string    `json:"control"`        // "rotate" or "keys"
	Kind    string    `json:"kind,omitempty"` // of key spec: file, passfile, env, cmd, passcmd; empty if it did not parse
	Result  string    `json:"result"`         // "ok", or why it was refused
	Errno   string    `json:"errno,omitempty"`
}

// Status returns the daemon's state; a mount shows it in .ctl/status.
func (d *Daemon) Status() any { return d.status() }

func (d *Daemon) status() DaemonStatus {
	d.mu.Lock()
	defer d.mu.Unlock()
	s := DaemonStatus{Version: 2, State: d.state, From: d.prog.From, To: d.prog.To,
		Rewrapped: d.prog.Done, Total: d.prog.Total, Deleted: d.prog.Deleted, Rate: d.prog.Rate,
		LastRequest: d.last, LastError: d.lastErr, Helping: d.helping, HelpRuns: d.helped}
	if s.From == nil {
		s.From = []string{}
	}
	if !d.started.IsZero() {
		t := d.started.UTC()
		s.Started = &t
	}
	if !d.ended.IsZero() {
		t := d.ended.UTC()
		s.Ended = &t
	}
	if d.running || d.helping {
		ps := d.pace.status()
		s.Pace = &ps
	}
	// A rotation run by another process shows through the keyring; a
	// failed run of this daemon stays "failed" (with its error) until the
	// poll resumes it or another run ends.
	if !d.running && d.state != "failed" {
		if rot := d.kc.Keyring().Rotation; rot != nil {
			s.State, s.From, s.To = "running elsewhere", rot.From, rot.To
		}
	}
	return s
}

// Rotate handles a rotation request: line is a key spec (file:PATH,
// passfile:PATH, env:NAME, cmd:COMMAND, passcmd:COMMAND, or a PATH that
// exists) naming the new key.
// It returns once the switch is durable and finishes the rotation in the
// background. Its errors are *RequestError.
func (d *Daemon) Rotate(ctx context.Context, line []byte) error {
	if !d.req.TryLock() {
		return d.record("rotate", "", refuse(lease.ErrBusy, "another rotation request is being handled"))
	}
	defer d.req.Unlock()
	sp, m, err := loadRequest(line)
	if err != nil {
		return d.record("rotate", sp.Kind, err)
	}
	d.mu.Lock()
	running := d.running
	if !running {
		// From the switch on, the keyring shows an unfinished rotation
		// and the lease is ours: the keyring poll must not take this
		// process for a helper of its own rotation (its Help
		// would keep Run from starting).
		d.starting = true
	}
	d.mu.Unlock()
	if running {
		return d.record("rotate", sp.Kind, refuse(lease.ErrBusy, lease.ErrBusy.Error()))
	}
	defer func() {
		d.mu.Lock()
		d.starting = false
		d.mu.Unlock()
	}()
	if _, err := d.kc.Start(ctx, m); err != nil {
		class := ErrFailed
		switch {
		case errors.Is(err, ErrAlreadyCurrent):
			class = iofs.ErrExist
		case errors.Is(err, lease.ErrBusy), errors.Is(err, ErrRotationUnfinished):
			class = lease.ErrBusy
		case errors.Is(err, keys.ErrBadKey):
			class = iofs.ErrInvalid
		}
		return d.record("rotate", sp.Kind, refuse(class, redact(err.Error(), sp, "the rotation to the key of the request was refused")))
	}
	kr := d.kc.Keyring()
	d.logf("rotation: switched to key generation %s (keyring epoch %d); re-wrapping in the background", kr.Current, kr.Epoch)
	d.run()
	return d.record("rotate", sp.Kind, nil)
}

// AddKey handles a request to hold one more key (of a current or retiring
// generation) without rotating: line is a key spec as for Rotate. Its
// errors are *RequestError.
func (d *Daemon) AddKey(ctx context.Context, line []byte) error {
	d.req.Lock()
	defer d.req.Unlock()
	sp, m, err := loadRequest(line)
	if err != nil {
		return d.record("keys", sp.Kind, err)
	}
	if err := d.kc.AddKey(ctx, m); err != nil {
		class := ErrFailed
		if errors.Is(err, keys.ErrNoKeyMatches) {
			class = iofs.ErrInvalid
		}
		return d.record("keys", sp.Kind, refuse(class, redact(err.Error(), sp, "the key of the request was not added")))
	}
	d.logf("keys: now holding one more key (a %s key spec)", sp.Kind)
	d.resumeIfNeeded(d.ctx)
	return d.record("keys", sp.Kind, nil)
}

// record makes err the result of the last request and returns it.
func (d *Daemon) record(control string, kind keys.SpecKind, err error) error {
	r := &Request{At: time.Now().UTC(), Control: control, Kind: string(kind), Result: "ok"}
	if err != nil {
		r.Result = err.Error()
		var re *RequestError
		if errors.As(err, &re) {
			r.Errno = errnoName(re.Class)
		}
	}
	d.mu.Lock()
	d.last = r
	if err != nil {
		d.lastErr = r.Result
	}
	d.mu.Unlock()
	return err
}

// run starts Run in the background unless one runs here already.
func (d *Daemon) run() {
	ctx := d.ctx
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.running {
		return
	}
	d.running, d.state, d.started, d.ended, d.prog = true, "running", time.Now(), time.Time{}, Progress{}
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		// Readers come first: the rotation (this goroutine and its
		// workers) gets the CPU and disk time they leave.
		defer d.enter()()
		err := d.kc.Run(ctx, func(p Progress) {
			d.mu.Lock()
			d.prog = p
			if p.Phase == "retire" || p.Phase == "delete" {
				d.state = "retiring"
			}
			d.mu.Unlock()
		})
		d.mu.Lock()
		defer d.mu.Unlock()
		d.running, d.ended = false, time.Now()
		switch {
		case err == nil:
			d.state = "done"
			d.logf("rotation: done; generation(s) %s retired", strings.Join(d.prog.From, ","))
			d.purge()
		case errors.Is(err, lease.ErrBusy):
			d.state = "idle" // another process runs it
		default:
			d.state, d.lastErr = "failed", err.Error()
			d.logf("rotation: %v (it resumes on the next keyring poll)", err)
		}
	}()
}

// resumeIfNeeded resumes an unfinished rotation this daemon can finish: it
// runs it if no live process holds the rotation lease, and helps
// otherwise.
func (d *Daemon) resumeIfNeeded(ctx context.Context) {
	d.mu.Lock()
	starting := d.starting
	d.mu.Unlock()
	if starting {
		return
	}
	unfinished, err := d.kc.Unfinished(ctx)
	if err != nil || !unfinished || !d.kc.Holds(d.kc.Keyring().Current) {
		return
	}
	lease, err := d.kc.Lease(ctx)
	if err != nil {
		return
	}
	if lease != nil {
		d.help() // another live process coordinates it: take shards
		return
	}
	d.run()
}

// help works shards of a rotation another process coordinates, one
// helping run at a time (the seed's "distribute the key-rotation step").
func (d *Daemon) help() {
	ctx := d.ctx
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.running || d.helping || d.starting {
		return
	}
	d.helping = true
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		defer d.enter()()
		err := d.kc.Help(ctx, nil)
		d.mu.Lock()
		d.helping = false
		d.helped++
		d.purge()
		d.mu.Unlock()
		if err != nil && !errors.Is(err, keys.ErrDEKUnavailable) && !errors.Is(err, lease.ErrBusy) {
			d.logf("rotation: helping: %v", err)
		}
	}()
}

// purge frees the space of retired wrapped DEKs in the background: one
// purge at a time, started only while no rotation or helping run is on,
// and waiting after each batch until the process has stopped reading. The
// rotation is finished: this can wait. Called with d.mu held.
func (d *Daemon) purge() {
	if d.purging || d.running || d.helping || d.starting {
		return
	}
	ctx := d.ctx
	d.purging = true
	d.purges++
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		defer d.enter()()
		err := d.kc.Purge(ctx, idle(d.meter, d.sleep))
		d.mu.Lock()
		d.purging = false
		d.mu.Unlock()
		if err != nil && ctx.Err() == nil {
			d.logf("rotation: %v", err)
		}
	}()
}

// pollLoop re-reads the keyring every d.poll until ctx ends.
func (d *Daemon) pollLoop(ctx context.Context) {
	d.resumeIfNeeded(ctx)
	d.mu.Lock()
	d.purge() // what killed processes left
	d.mu.Unlock()
	t := time.NewTicker(d.poll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := d.kc.Refresh(ctx); err != nil {
			if ctx.Err() == nil {
				d.logf("keyring: %v", err)
			}
			continue
		}
		d.resumeIfNeeded(ctx)
	}
}

// ErrFailed classifies a request that failed for a reason other than the
// request itself or a rotation under way (the repository could not be read
// or written).
var ErrFailed = errors.New("request failed")

// RequestError is a request a Daemon refused. Its message says why and
// never contains the request's text. It unwraps to Class alone, so that a
// cause inside (ENOENT of a missing key file) does not decide how the
// caller classifies it.
type RequestError struct {
	// Class is iofs.ErrInvalid (a request that is no usable key spec, or
	// a key that matches no generation), iofs.ErrExist (the key is the
	// current one already), lease.ErrBusy (a rotation is under way, here
	// or elsewhere, or another request is being handled) or ErrFailed.
	Class error
	Msg   string
}

func (e *RequestError) Error() string { return e.Msg }

// Unwrap returns Class.
func (e *RequestError) Unwrap() error { return e.Class }

func refuse(class error, msg string) error { return &RequestError{Class: class, Msg: msg} }

// errnoName names the errno a mount answers a request of class with (see
// fs.Controller), for Status.
func errnoName(class error) string {
	switch class {
	case iofs.ErrInvalid:
		return "EINVAL"
	case iofs.ErrExist:
		return "EEXIST"
	case lease.ErrBusy:
		return "EBUSY"
	}
	return "EIO"
}

// loadRequest parses and loads the key spec in a request line. Its errors
// never repeat the line, nor the argument of the spec: either may be key
// material written by mistake (a key file's 64 hex characters after
// "file:", a passphrase after "env:"). sp is the zero Spec if the line did
// not parse.
func loadRequest(line []byte) (sp keys.Spec, m *keys.Material, err error) {
	if len(line) > maxRequest {
		return sp, nil, refuse(iofs.ErrInvalid, fmt.Sprintf("request of %d bytes is too long for a key spec", len(line)))
	}
	text := strings.TrimSpace(string(line))
	if text == "" {
		return sp, nil, refuse(iofs.ErrInvalid, "empty request: write a key spec (file:PATH, passfile:PATH, env:NAME, cmd:COMMAND, passcmd:COMMAND or awskms:KEY)")
	}
	sp, err = keys.ParseSpec(text)
	if err != nil {
		return keys.Spec{}, nil, refuse(iofs.ErrInvalid, "the request is not a key spec (file:PATH, passfile:PATH, env:NAME, cmd:COMMAND, passcmd:COMMAND or awskms:KEY)")
	}
	if !keys.IsExplicitSpec(text) {
		if _, err := os.Stat(text); err != nil {
			return keys.Spec{}, nil, refuse(iofs.ErrInvalid, "the request names no readable key file (it is not shown, in case it was a key)")
		}
	}
	m, err = sp.Load()
	if err != nil {
		return sp, nil, refuse(iofs.ErrInvalid, redact(err.Error(), sp, "the "+what(sp.Kind)+" of the request cannot be used as a key"))
	}
	return sp, m, nil
}

// what names where a spec of kind takes its key from.
func what(kind keys.SpecKind) string {
	switch kind {
	case keys.SpecPassfile:
		return "passphrase file"
	case keys.SpecEnv:
		return "environment variable"
	case keys.SpecCmd:
		return "key command"
	case keys.SpecPasscmd:
		return "passphrase command"
	case keys.SpecAWSKMS:
		return "KMS key"
	}
	return "key file"
}

// redact returns msg, an error message about the key spec sp of a request,
// with every mention of the spec ("file:ARG") or of its argument after what
// it names ("key file ARG") put as "the ... of the request". If the
// argument still occurs anywhere (a short one inside other words, or one
// quoted another way), it returns fallback instead.
func redact(msg string, sp keys.Spec, fallback string) string {
	if sp.Path == "" {
		return msg
	}
	msg = strings.ReplaceAll(msg, sp.String(), "the "+string(sp.Kind)+" spec of the request")
	for _, w := range []string{"key file", "passphrase file", "environment variable", "key command", "passphrase command", "key spec"} {
		msg = strings.ReplaceAll(msg, w+" "+sp.Path, "the "+w+" of the request")
	}
	if strings.Contains(msg, sp.Path) {
		return fallback
	}
	return msg
}
