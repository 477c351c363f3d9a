package fs

import (
	"context"
	"encoding/json"
	"errors"
	iofs "io/fs"
	"os"
	"sync"
	"syscall"
	"testing"

	"github.com/snapcrypt/snapcrypt/lease"
	"github.com/snapcrypt/snapcrypt/rotation"
)

// controller is a Controller that records the lines it is handed and
// answers with the error each line names.
type controller struct {
	mu    sync.Mutex
	lines []string
	errs  map[string]error
}

func (c *controller) handle(control string, line []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lines = append(c.lines, control+":"+string(line))
	return c.errs[string(line)]
}

func (c *controller) Rotate(ctx context.Context, line []byte) error { return c.handle("rotate", line) }
func (c *controller) AddKey(ctx context.Context, line []byte) error { return c.handle("keys", line) }
func (c *controller) Status() any                                   { return map[string]string{"state": "testing"} }

// TestController: Options.Rotation adds .ctl/rotate and .ctl/keys, passes
// them the lines written, shows its status under "rotation", and each
// class of rotation.RequestError reaches the writer as the errno
// Controller's contract gives it (the names rotation's status shows: its
// TestErrnoNames).
func TestController(t *testing.T) {
	f := newFixture(t)
	f.write("a", []byte("1"))
	f.snapshot("one")
	c := &controller{errs: map[string]error{
		"invalid": &rotation.RequestError{Class: iofs.ErrInvalid, Msg: "no key spec"},
		"exists":  &rotation.RequestError{Class: iofs.ErrExist, Msg: "already current"},
		"busy":    &rotation.RequestError{Class: lease.ErrBusy, Msg: "a rotation runs"},
		"failed":  &rotation.RequestError{Class: rotation.ErrFailed, Msg: "cannot write"},
		// A cause inside does not decide the errno: only the class.
		"missing": &rotation.RequestError{Class: iofs.ErrInvalid, Msg: "no such file"},
	}}
	f.mount(Options{Rotation: c})
	for _, name := range []string{"rotate", "keys"} {
		fi, err := os.Stat(f.path(".ctl", name))
		if err != nil || fi.Mode().Perm() != 0o200 {
			t.Fatalf(".ctl/%s: %v, %v", name, fi, err)
		}
	}
	if err := os.WriteFile(f.path(".ctl", "rotate"), []byte("file:/k\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(f.path(".ctl", "keys"), []byte("env:K\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c.mu.Lock()
	if got := c.lines; len(got) != 2 || got[0] != "rotate:file:/k" || got[1] != "keys:env:K" {
		t.Errorf("lines handed on: %q", got)
	}
	c.mu.Unlock()
	for line, want := range map[string]syscall.Errno{"invalid": syscall.EINVAL, "exists": syscall.EEXIST,
		"busy": syscall.EBUSY, "failed": syscall.EIO, "missing": syscall.EINVAL} {
		err := os.WriteFile(f.path(".ctl", "rotate"), []byte(line), 0o644)
		if !errors.Is(err, want) {
			t.Errorf("write %q: %v, want %v", line, err, want)
		}
	}
	b, err := os.ReadFile(f.path(".ctl", "status"))
	if err != nil {
		t.Fatal(err)
	}
	var s struct {
		Rotation map[string]string `json:"rotation"`
	}
	if err := json.Unmarshal(b, &s); err != nil || s.Rotation["state"] != "testing" {
		t.Errorf("status has no rotation section: %v\n%s", err, b)
	}
}
