// Command benchtool is a helper of the bench scripts (scripts/bench-*.sh),
// not part of snapcrypt. It builds test repositories through the library and
// reads mounts the way a benchmark needs.
//
//	benchtool fill -r REPO -k SPEC -total N [-workers W]
//	    adds wrapped data keys (Keychain.NewDEK, in parallel) until the
//	    current key generation of the local repository REPO has N of them.
//	benchtool read -dir DIR [-ready FILE] [-workers W]
//	    reads every regular file below DIR, over and over, dropping each
//	    file's pages from the kernel's page cache before reading it (so every
//	    read reaches the FUSE daemon), until SIGINT or SIGTERM; then prints
//	    one line: bytes, files, errors, seconds, MiB/s, files/s. FILE is
//	    created once the listing is done and reading starts.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/snapcrypt/snapcrypt/keys"
	"github.com/snapcrypt/snapcrypt/rotation"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: benchtool fill|read [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "fill":
		err = fill(os.Args[2:])
	case "read":
		err = read(os.Args[2:])
	default:
		fmt.Fprintf(os.Stderr, "benchtool: unknown command %q\n", os.Args[1])
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "benchtool %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}

// fill tops up the current generation's wrapped DEKs to -total; -r is a
// directory or an s3: URL (fillStore in fills3.go).
func fill(args []string) error { return fillStore(args) }

func currentDEKs(ctx context.Context, kc *keys.Keychain) (int, string, error) {
	s, err := rotation.New(kc, rotation.Options{}).Status(ctx)
	if err != nil {
		return 0, "", err
	}
	for _, g := range s.Generations {
		if g.ID == s.Current {
			return g.DEKs, g.ID, nil
		}
	}
	return 0, "", fmt.Errorf("current generation %s not in the keyring", s.Current)
}

// read loops over every file below -dir until a signal.
func read(args []string) error {
	f := flag.NewFlagSet("read", flag.ExitOnError)
	dir := f.String("dir", "", "directory to read (symbolic links to it are followed)")
	ready := f.String("ready", "", "file to create when reading starts")
	workers := f.Int("workers", 1, "parallel readers (each walks the whole list, from a different start)")
	f.Parse(args)
	if *dir == "" {
		return errors.New("-dir is required")
	}
	root, err := filepath.EvalSymlinks(*dir)
	if err != nil {
		return err
	}
	var files []string
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if len(files) == 0 {
		return fmt.Errorf("no files below %s", root)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if *ready != "" {
		if err := os.WriteFile(*ready, nil, 0o644); err != nil {
			return err
		}
	}
	var nbytes, nfiles, nerrs atomic.Int64
	start := time.Now()
	var wg sync.WaitGroup
	for w := range *workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 1<<20)
			for i := w * len(files) / *workers; ctx.Err() == nil; i++ {
				n, err := readFile(ctx, files[i%len(files)], buf)
				nbytes.Add(n)
				if err != nil {
					if nerrs.Add(1) <= 10 {
						fmt.Fprintf(os.Stderr, "benchtool read: %v\n", err)
					}
					continue
				}
				nfiles.Add(1)
			}
		}()
	}
	wg.Wait()
	el := time.Since(start).Seconds()
	fmt.Printf("read: %d bytes %d files %d errors %.3f s %.2f MiB/s %.1f files/s\n",
		nbytes.Load(), nfiles.Load(), nerrs.Load(), el,
		float64(nbytes.Load())/(1<<20)/el, float64(nfiles.Load())/el)
	return nil
}

// readFile evicts the file's cached pages, then reads it whole.
func readFile(ctx context.Context, p string, buf []byte) (int64, error) {
	fh, err := os.Open(p)
	if err != nil {
		return 0, err
	}
	defer fh.Close()
	if err := unix.Fadvise(int(fh.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
		return 0, fmt.Errorf("fadvise %s: %w", p, err)
	}
	var n int64
	for ctx.Err() == nil {
		k, err := fh.Read(buf)
		n += int64(k)
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
	return n, nil
}
