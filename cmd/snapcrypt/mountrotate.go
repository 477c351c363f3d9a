package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/snapcrypt/snapcrypt/fs"
	"github.com/snapcrypt/snapcrypt/keys"
	"github.com/snapcrypt/snapcrypt/repo"
)

// keyringPoll is how often a mount re-reads the keyring, so that it notices
// a rotation started elsewhere (and resumes one it can finish).
const keyringPoll = 2 * time.Second

// maxRequest bounds a line written to .ctl/rotate or .ctl/keys.
const maxRequest = 4096

func init() { mountHooks = append(mountHooks, mountRotation) }

// mountRotation adds .ctl/rotate, .ctl/keys and the "rotation" section of
// .ctl/status to a mount, and the keyring poll that resumes rotations.
func mountRotation(ctx context.Context, c *cli, r *repo.Repository, opts *fs.Options) {
	rc := &rotationControl{ctx: ctx, kc: r.Keys(), logf: opts.Logf, state: "idle",
		opts: keys.RotateOptions{LeaseDuration: c.lease, Workers: backgroundWorkers,
			StartWorker: backgroundPriority, Pace: backgroundPace}}
	rc.kc.SetRotateOptions(rc.opts)
	opts.Controls = append(opts.Controls,
		fs.Control{Name: "rotate", Write: rc.rotate},
		fs.Control{Name: "keys", Write: rc.addKey})
	if opts.StatusSections == nil {
		opts.StatusSections = map[string]func() any{}
	}
	opts.StatusSections["rotation"] = rc.status
	go rc.poll(ctx)
}

// rotationControl runs the rotations a mount is asked for or finds.
type rotationControl struct {
	ctx  context.Context // the mount's: background work ends with it
	kc   *keys.Keychain
	opts keys.RotateOptions
	logf func(format string, args ...any)

	req sync.Mutex // one request at a time

	mu        sync.Mutex
	state     string // idle, running, retiring, done, failed
	running   bool
	starting  bool // a .ctl/rotate request is switching: run comes next
	helping   bool // working shards of a rotation another process runs
	purging   bool // freeing the space of retired wrapped DEKs
	helped    int  // helping runs finished
	prog      keys.Progress
	started   time.Time
	ended     time.Time
	last      *requestStatus
	lastError string
}

type requestStatus struct {
	At      time.Time `json:"at"`
	Control string    `json:"control"`
	Key     string    `json:"key"` // the spec as it is safe to show
	Result  string    `json:"result"`
	Errno   string    `json:"errno,omitempty"`
}

// RotationStatus is the "rotation" section of .ctl/status.
type RotationStatus struct {
	Version     int            `json:"version"`
	State       string         `json:"state"`
	From        []string       `json:"from"`
	To          string         `json:"to,omitempty"`
	Rewrapped   int64          `json:"rewrapped"`
	Total       int64          `json:"total"`
	Deleted     int64          `json:"deleted"`
	Rate        float64        `json:"rate"` // data keys per second
	Started     *time.Time     `json:"started,omitempty"`
	Ended       *time.Time     `json:"ended,omitempty"`
	LastRequest *requestStatus `json:"last_request"`
	LastError   string         `json:"last_error,omitempty"`
	// Helping: this mount works shards of a rotation another process
	// coordinates; HelpRuns counts such runs finished.
	Helping  bool `json:"helping"`
	HelpRuns int  `json:"help_runs"`
}

func (rc *rotationControl) status() any {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	s := RotationStatus{Version: 1, State: rc.state, From: rc.prog.From, To: rc.prog.To,
		Rewrapped: rc.prog.Done, Total: rc.prog.Total, Deleted: rc.prog.Deleted, Rate: rc.prog.Rate,
		LastRequest: rc.last, LastError: rc.lastError, Helping: rc.helping, HelpRuns: rc.helped}
	if s.From == nil {
		s.From = []string{}
	}
	if !rc.started.IsZero() {
		t := rc.started.UTC()
		s.Started = &t
	}
	if !rc.ended.IsZero() {
		t := rc.ended.UTC()
		s.Ended = &t
	}
	// A rotation run by another process shows through the keyring.
	if !rc.running {
		if rot := rc.kc.Keyring().Rotation; rot != nil {
			s.State, s.From, s.To = "running elsewhere", rot.From, rot.To
		}
	}
	return s
}

// requestError is a refused request: its message, and the errno the writer
// gets (the only error it unwraps to, so that an errno inside the cause,
// such as ENOENT of a missing key file, does not take its place).
type requestError struct {
	errno syscall.Errno
	err   error
}

func (e requestError) Error() string { return e.err.Error() }
func (e requestError) Unwrap() error { return e.errno }

// withErrno attaches the errno the writer gets.
func withErrno(errno syscall.Errno, err error) error { return requestError{errno, err} }

// loadRequest parses and loads the key spec in a control-file line. Its
// errors never repeat a line that did not parse, nor a bare word that names
// no file: either may be key material written by mistake.
func loadRequest(line []byte) (shown string, m *keys.Material, err error) {
	if len(line) > maxRequest {
		return "", nil, withErrno(syscall.EINVAL, fmt.Errorf("request of %d bytes is too long for a key spec", len(line)))
	}
	text := strings.TrimSpace(string(line))
	if text == "" {
		return "", nil, withErrno(syscall.EINVAL, errors.New("empty request: write a key spec (file:PATH, passfile:PATH, env:NAME, cmd:COMMAND or passcmd:COMMAND)"))
	}
	spec, err := keys.ParseSpec(text)
	if err != nil {
		return "", nil, withErrno(syscall.EINVAL, fmt.Errorf("the request is not a key spec (file:PATH, passfile:PATH, env:NAME, cmd:COMMAND or passcmd:COMMAND)"))
	}
	shown = spec.String()
	if !keys.IsExplicitSpec(text) {
		if _, serr := os.Stat(text); serr != nil {
			return "(not shown)", nil, withErrno(syscall.EINVAL, errors.New("the request names no readable key file (it is not shown, in case it was a key)"))
		}
	}
	m, err = spec.Load()
	if err != nil {
		return shown, nil, withErrno(syscall.EINVAL, err)
	}
	return shown, m, nil
}

func (rc *rotationControl) record(control, shown string, err error) error {
	rs := &requestStatus{At: time.Now().UTC(), Control: control, Key: shown, Result: "ok"}
	if err != nil {
		rs.Result = err.Error()
		var e syscall.Errno
		if errors.As(err, &e) {
			rs.Errno = errnoName(e)
		}
	}
	rc.mu.Lock()
	rc.last = rs
	if err != nil {
		rc.lastError = rs.Result
	}
	rc.mu.Unlock()
	return err
}

func errnoName(e syscall.Errno) string {
	switch e {
	case syscall.EINVAL:
		return "EINVAL"
	case syscall.EEXIST:
		return "EEXIST"
	case syscall.EBUSY:
		return "EBUSY"
	case syscall.EACCES:
		return "EACCES"
	case syscall.EKEYREJECTED:
		return "EKEYREJECTED"
	case syscall.EIO:
		return "EIO"
	}
	return e.Error()
}

// rotate handles a line written to .ctl/rotate: it returns once the switch
// is durable and runs the rest of the rotation in the background.
func (rc *rotationControl) rotate(ctx context.Context, line []byte) error {
	if !rc.req.TryLock() {
		return rc.record("rotate", "", withErrno(syscall.EBUSY, errors.New("another rotation request is being handled")))
	}
	defer rc.req.Unlock()
	shown, m, err := loadRequest(line)
	if err != nil {
		return rc.record("rotate", shown, err)
	}
	rc.mu.Lock()
	running := rc.running
	if !running {
		// From the switch on, the keyring shows an unfinished rotation
		// and the lease is ours: the keyring poll must not take this
		// process for a helper of its own rotation (its HelpRotation
		// would keep RunRotation from starting).
		rc.starting = true
	}
	rc.mu.Unlock()
	if running {
		return rc.record("rotate", shown, withErrno(syscall.EBUSY, keys.ErrBusy))
	}
	defer func() {
		rc.mu.Lock()
		rc.starting = false
		rc.mu.Unlock()
	}()
	err = rc.kc.StartRotation(ctx, m, rc.opts)
	switch {
	case err == nil:
	case errors.Is(err, keys.ErrAlreadyCurrent):
		return rc.record("rotate", shown, withErrno(syscall.EEXIST, err))
	case errors.Is(err, keys.ErrBusy), errors.Is(err, keys.ErrRotationUnfinished):
		return rc.record("rotate", shown, withErrno(syscall.EBUSY, err))
	case errors.Is(err, keys.ErrBadKey):
		return rc.record("rotate", shown, withErrno(syscall.EINVAL, err))
	default:
		return rc.record("rotate", shown, withErrno(syscall.EIO, err))
	}
	kr := rc.kc.Keyring()
	rc.logf("rotation: switched to key generation %s (keyring epoch %d); re-wrapping in the background", kr.Current, kr.Epoch)
	rc.run(rc.ctx)
	return rc.record("rotate", shown, nil)
}

// addKey handles a line written to .ctl/keys: the mount holds one more key.
func (rc *rotationControl) addKey(ctx context.Context, line []byte) error {
	rc.req.Lock()
	defer rc.req.Unlock()
	shown, m, err := loadRequest(line)
	if err != nil {
		return rc.record("keys", shown, err)
	}
	if err := rc.kc.AddKey(ctx, m); err != nil {
		if errors.Is(err, keys.ErrNoKeyMatches) {
			err = withErrno(syscall.EINVAL, err)
		}
		return rc.record("keys", shown, err)
	}
	rc.logf("keys: now holding %s", shown)
	rc.resumeIfNeeded(rc.ctx)
	return rc.record("keys", shown, nil)
}

// run starts RunRotation in the background unless one runs here already.
func (rc *rotationControl) run(ctx context.Context) {
	rc.mu.Lock()
	if rc.running {
		rc.mu.Unlock()
		return
	}
	rc.running, rc.state, rc.started, rc.ended, rc.prog = true, "running", time.Now(), time.Time{}, keys.Progress{}
	rc.mu.Unlock()
	go func() {
		// Readers come first: the rotation (this goroutine and its
		// workers) gets the CPU and disk time they leave.
		defer backgroundRun()()
		backgroundPriority()
		err := rc.kc.RunRotation(ctx, func(p keys.Progress) {
			rc.mu.Lock()
			rc.prog = p
			if p.Phase == "retire" || p.Phase == "delete" {
				rc.state = "retiring"
			}
			rc.mu.Unlock()
		})
		rc.mu.Lock()
		defer rc.mu.Unlock()
		rc.running, rc.ended = false, time.Now()
		switch {
		case err == nil:
			rc.state = "done"
			rc.logf("rotation: done; generation(s) %s retired", strings.Join(rc.prog.From, ","))
			rc.purge(ctx)
		case errors.Is(err, keys.ErrBusy):
			rc.state = "idle" // another process runs it
		default:
			rc.state, rc.lastError = "failed", err.Error()
			rc.logf("rotation: %v (it resumes on the next keyring poll)", err)
		}
	}()
}

// resumeIfNeeded resumes an unfinished rotation this mount can finish.
func (rc *rotationControl) resumeIfNeeded(ctx context.Context) {
	rc.mu.Lock()
	starting := rc.starting
	rc.mu.Unlock()
	if starting {
		return
	}
	unfinished, err := rc.kc.Unfinished(ctx)
	if err != nil || !unfinished || !rc.kc.Holds(rc.kc.Keyring().Current) {
		return
	}
	lease, err := rc.kc.RotationLease(ctx)
	if err != nil {
		return
	}
	if lease != nil {
		rc.help(ctx) // another live process coordinates it: take shards
		return
	}
	rc.run(ctx)
}

// help works shards of a rotation another process coordinates, once at a
// time (the seed's "distribute the key-rotation step").
func (rc *rotationControl) help(ctx context.Context) {
	rc.mu.Lock()
	if rc.running || rc.helping || rc.starting {
		rc.mu.Unlock()
		return
	}
	rc.helping = true
	rc.mu.Unlock()
	go func() {
		defer backgroundRun()()
		backgroundPriority()
		err := rc.kc.HelpRotation(ctx, nil)
		rc.mu.Lock()
		rc.helping = false
		rc.helped++
		rc.purge(ctx)
		rc.mu.Unlock()
		if err != nil && !errors.Is(err, keys.ErrDEKUnavailable) && !errors.Is(err, keys.ErrBusy) {
			rc.logf("rotation: helping: %v", err)
		}
	}()
}

// purge frees the space of retired wrapped DEKs (keys.Purge) in the
// background, one purge at a time, only while the mount serves no reads:
// the rotation is finished, so this can wait. Called with rc.mu held.
func (rc *rotationControl) purge(ctx context.Context) {
	if rc.purging {
		return
	}
	rc.purging = true
	go func() {
		defer backgroundRun()()
		backgroundPriority()
		kc := rc.kc
		err := kc.Purge(ctx, idlePace)
		rc.mu.Lock()
		rc.purging = false
		rc.mu.Unlock()
		if err != nil && ctx.Err() == nil {
			rc.logf("rotation: %v", err)
		}
	}()
}

// poll re-reads the keyring now and then until ctx ends.
func (rc *rotationControl) poll(ctx context.Context) {
	rc.resumeIfNeeded(ctx)
	rc.mu.Lock()
	rc.purge(ctx) // what killed processes left
	rc.mu.Unlock()
	t := time.NewTicker(keyringPoll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := rc.kc.Refresh(ctx); err != nil {
			rc.logf("keyring: %v", err)
			continue
		}
		rc.resumeIfNeeded(ctx)
	}
}
