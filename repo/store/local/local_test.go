package local_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/snapcrypt/snapcrypt/repo/store"
	"github.com/snapcrypt/snapcrypt/repo/store/local"
	"github.com/snapcrypt/snapcrypt/repo/store/storetest"
)

func newStore(t *testing.T) *local.Store {
	t.Helper()
	s, err := local.Init(filepath.Join(t.TempDir(), "repo"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return newStore(t) })
}

func TestOpen(t *testing.T) {
	dir := t.TempDir()
	if _, err := local.Open(filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Open of a missing directory: %v, want ErrNotExist", err)
	}
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := local.Open(file); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Errorf("Open of a file: %v, want a not-a-directory error", err)
	}
	s, err := local.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if s.Location() != dir {
		t.Errorf("Location = %q, want %q", s.Location(), dir)
	}
	// A relative path is made absolute.
	t.Chdir(dir)
	s, err = local.Open(".")
	if err != nil {
		t.Fatal(err)
	}
	if s.Location() != dir {
		t.Errorf("Location = %q, want %q", s.Location(), dir)
	}
}

func TestInit(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "b")
	s, err := local.Init(dir)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(dir)
	if err != nil || !fi.IsDir() {
		t.Fatalf("Init did not make the directory: %v", err)
	}
	// An empty existing directory is fine.
	if _, err := local.Init(dir); err != nil {
		t.Errorf("Init of an empty directory: %v", err)
	}
	if err := s.Create(context.Background(), "config", []byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := local.Init(dir); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Errorf("Init of a non-empty directory: %v, want a not-empty error", err)
	}
}

// TestLayout checks where objects live on disk and that no temporary files
// are left.
func TestLayout(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	if err := s.Create(ctx, "data/3f/3f0a", []byte("pack")); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, "index/i", []byte("idx")); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, "index/i", []byte("idx2")); err != nil {
		t.Fatal(err)
	}
	if err := s.Create(ctx, "index/i", []byte("x")); !errors.Is(err, store.ErrExist) {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(s.Location(), "data", "3f", "3f0a"))
	if err != nil || string(got) != "pack" {
		t.Errorf("data/3f/3f0a on disk: %q, %v", got, err)
	}
	if files := allFiles(t, s.Location()); strings.Join(files, " ") != "data/3f/3f0a index/i" {
		t.Errorf("files on disk: %v", files)
	}
}

func allFiles(t *testing.T, root string) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		files = append(files, filepath.ToSlash(rel))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

func TestListSkipsForeignFiles(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	if err := s.Create(ctx, "keys/a", []byte("a")); err != nil {
		t.Fatal(err)
	}
	root := s.Location()
	// A temporary file left by a crash, a dot directory and a symlink.
	for _, p := range []string{".tmp-123", "keys/.tmp-456", ".git/config"} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(root, p)), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, p), []byte("junk"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("a", filepath.Join(root, "keys", "link")); err != nil {
		t.Fatal(err)
	}
	var names []string
	err := s.List(ctx, "", func(info store.Info) error {
		names = append(names, info.Name)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(names, " ") != "keys/a" {
		t.Errorf("List = %v, want [keys/a]", names)
	}
}

func TestDeleteKeepsDirectories(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	if err := os.MkdirAll(filepath.Join(s.Location(), "emptydir"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, "emptydir"); !errors.Is(err, store.ErrNotExist) {
		t.Errorf("Delete of an empty directory: %v, want ErrNotExist", err)
	}
	if fi, err := os.Stat(filepath.Join(s.Location(), "emptydir")); err != nil || !fi.IsDir() {
		t.Errorf("Delete removed a directory: %v", err)
	}
}

func TestWriteErrors(t *testing.T) {
	ctx := context.Background()
	for _, op := range []string{"create", "put"} {
		t.Run(op, func(t *testing.T) {
			s := newStore(t)
			if err := s.Put(ctx, "data/00/obj", []byte("old")); err != nil {
				t.Fatal(err)
			}
			local.SetWriteHook(s, func(f *os.File, data []byte) error {
				// Half the data makes it to disk, then the disk is full.
				if _, err := f.Write(data[:len(data)/2]); err != nil {
					return err
				}
				return &os.PathError{Op: "write", Path: f.Name(), Err: syscall.ENOSPC}
			})
			write := s.Put
			name := "data/00/obj"
			if op == "create" {
				write = s.Create
				name = "data/00/new"
			}
			err := write(ctx, name, bytes.Repeat([]byte("n"), 1000))
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("%s: %v, want ENOSPC", op, err)
			}
			if !strings.Contains(err.Error(), name) {
				t.Errorf("error %q does not name the object", err)
			}
			if files := allFiles(t, s.Location()); strings.Join(files, " ") != "data/00/obj" {
				t.Errorf("files left after a failed %s: %v", op, files)
			}
			local.SetWriteHook(s, nil)
			got, err := s.Get(ctx, "data/00/obj")
			if err != nil || string(got) != "old" {
				t.Errorf("object after a failed %s: %q, %v", op, got, err)
			}
		})
	}
}

func TestUnwritableDirectory(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root ignores directory permissions")
	}
	s := newStore(t)
	ctx := context.Background()
	if err := os.Chmod(s.Location(), 0o500); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chmod(s.Location(), 0o700) })
	err := s.Create(ctx, "obj", []byte("x"))
	if !errors.Is(err, os.ErrPermission) || !strings.Contains(err.Error(), "obj") {
		t.Errorf("Create in a read-only directory: %v", err)
	}
}

// TestCreateRaceInstances races Creates through two Store values of one
// directory, as two processes would have.
func TestCreateRaceInstances(t *testing.T) {
	a := newStore(t)
	b, err := local.Open(a.Location())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	const names = 50
	var wg sync.WaitGroup
	won := make([][names]bool, 2)
	errs := make(chan error, 2)
	for i, s := range []*local.Store{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := range names {
				err := s.Create(ctx, fmt.Sprintf("leases/%d/lease", n), []byte{byte(i)})
				switch {
				case err == nil:
					won[i][n] = true
				case !errors.Is(err, store.ErrExist):
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for n := range names {
		if won[0][n] == won[1][n] {
			t.Errorf("lease %d: won by both or neither (%v, %v)", n, won[0][n], won[1][n])
		}
	}
}

const helperEnv = "SNAPCRYPT_LOCAL_CREATE_HELPER"

// TestCreateRaceProcesses runs this test binary several times as helper
// processes that race to Create the same names in one directory, and checks
// that every name was won by exactly one process and holds its content.
func TestCreateRaceProcesses(t *testing.T) {
	if os.Getenv(helperEnv) != "" {
		t.Skip("helper process")
	}
	const procs, names = 4, 40
	s := newStore(t)
	type child struct {
		cmd   *exec.Cmd
		stdin io.WriteCloser
		out   bytes.Buffer
	}
	children := make([]*child, procs)
	for i := range children {
		c := &child{cmd: exec.Command(os.Args[0], "-test.run=^TestCreateRaceHelper$", "-test.v")}
		c.cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s,%d,%d", helperEnv, s.Location(), i, names))
		c.cmd.Stdout = &c.out
		c.cmd.Stderr = &c.out
		var err error
		if c.stdin, err = c.cmd.StdinPipe(); err != nil {
			t.Fatal(err)
		}
		if err := c.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		children[i] = c
	}
	// The helpers wait for their standard input to close: start them all at
	// once.
	for _, c := range children {
		c.stdin.Close()
	}
	winners := map[string]int{}
	for i, c := range children {
		if err := c.cmd.Wait(); err != nil {
			t.Fatalf("helper %d: %v\n%s", i, err, c.out.String())
		}
		sc := bufio.NewScanner(&c.out)
		for sc.Scan() {
			name, ok := strings.CutPrefix(sc.Text(), "WON ")
			if !ok {
				continue
			}
			if w, dup := winners[name]; dup {
				t.Errorf("%s won by helpers %d and %d", name, w, i)
			}
			winners[name] = i
		}
	}
	ctx := context.Background()
	for n := range names {
		name := fmt.Sprintf("keyring/%020d", n)
		w, ok := winners[name]
		if !ok {
			t.Errorf("%s won by no helper", name)
			continue
		}
		got, err := s.Get(ctx, name)
		if err != nil || string(got) != "helper "+strconv.Itoa(w) {
			t.Errorf("%s = %q, %v; want the content of helper %d", name, got, err, w)
		}
	}
	if files := allFiles(t, s.Location()); len(files) != names {
		t.Errorf("%d files on disk, want %d (temporary files left?)", len(files), names)
	}
}

// TestCreateRaceHelper is the helper process of TestCreateRaceProcesses.
func TestCreateRaceHelper(t *testing.T) {
	arg := os.Getenv(helperEnv)
	if arg == "" {
		t.Skip("only run as a helper process")
	}
	parts := strings.Split(arg, ",")
	id, names := parts[1], 0
	fmt.Sscan(parts[2], &names)
	s, err := local.Open(parts[0])
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, os.Stdin) // wait for the start signal
	ctx := context.Background()
	for n := range names {
		name := fmt.Sprintf("keyring/%020d", n)
		err := s.Create(ctx, name, []byte("helper "+id))
		switch {
		case err == nil:
			fmt.Printf("WON %s\n", name)
		case !errors.Is(err, store.ErrExist):
			t.Fatalf("Create(%s): %v", name, err)
		}
	}
}

// TestReadRange reads ranges of objects into buffers of several sizes and
// alignments, through the page cache and around it (direct), and compares
// with GetRange.
func TestReadRange(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	for _, size := range []int{3*4096 + 777, 1<<20 + 333} {
		name := fmt.Sprintf("data/ab/%d", size)
		data := make([]byte, size)
		for i := range data {
			data[i] = byte(i*7 + i>>12)
		}
		if err := s.Create(ctx, name, data); err != nil {
			t.Fatal(err)
		}
		for _, off := range []int{0, 1, 4095, 4096, 5000, size - 10, size, size + 5} {
			for _, length := range []int{0, 1, 4096, 300000, size} {
				want, err := s.GetRange(ctx, name, int64(off), int64(length))
				if err != nil {
					t.Fatal(err)
				}
				for _, direct := range []bool{false, true} {
					for _, room := range []int{0, 12 << 10, 12<<10 + 1} {
						buf := make([]byte, length+room+1)[1:] // not aligned
						got, err := s.ReadRange(ctx, name, int64(off), int64(length), buf, direct)
						if err != nil || !bytes.Equal(got, want) {
							t.Fatalf("size %d: ReadRange(%d, %d, room %d, direct %v) = %d bytes, %v; want %d bytes",
								size, off, length, room, direct, len(got), err, len(want))
						}
					}
				}
			}
		}
	}
	buf := make([]byte, 64<<10)
	for _, direct := range []bool{false, true} {
		for _, name := range []string{"data/ab/missing", "data/ab"} {
			if _, err := s.ReadRange(ctx, name, 0, 10, buf, direct); !errors.Is(err, store.ErrNotExist) {
				t.Errorf("ReadRange of %s (direct %v): %v, want ErrNotExist", name, direct, err)
			}
		}
		if _, err := s.ReadRange(ctx, "data/ab/1049109", -1, 10, buf, direct); err == nil {
			t.Errorf("ReadRange at a negative offset (direct %v) did not fail", direct)
		}
		if _, err := s.ReadRange(ctx, "data/ab/1049109", 0, 100<<10, buf, direct); err == nil {
			t.Errorf("ReadRange into a short buffer (direct %v) did not fail", direct)
		}
	}
}
