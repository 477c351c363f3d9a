package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/snapcrypt/snapcrypt/keys"
	"github.com/snapcrypt/snapcrypt/lease"
	"github.com/snapcrypt/snapcrypt/repo"
	"github.com/snapcrypt/snapcrypt/repo/object"
	"github.com/snapcrypt/snapcrypt/repo/store"
	"github.com/snapcrypt/snapcrypt/repo/store/local"
	"github.com/snapcrypt/snapcrypt/repo/store/retry"
	"github.com/snapcrypt/snapcrypt/repo/store/s3"
	"github.com/snapcrypt/snapcrypt/rotation"
)

// classify maps library errors to exit codes.
func classify(err error) int {
	switch {
	case errors.Is(err, keys.ErrNoKeyMatches), errors.Is(err, keys.ErrBadKey), errors.Is(err, errNoKey),
		errors.Is(err, rotation.ErrAlreadyCurrent), errors.Is(err, keys.ErrDEKUnavailable):
		return exitKey
	case errors.Is(err, repo.ErrNotRepository):
		return exitNoRepo
	case errors.Is(err, object.ErrCorrupt):
		return exitDamaged
	case errors.Is(err, lease.ErrBusy):
		return exitBusy
	}
	return exitFailure
}

var errNoKey = errors.New("no key given: use -k/--key SPEC or set SNAPCRYPT_KEY")

// materials loads every key given.
func (c *cli) materials() ([]*keys.Material, error) {
	if len(c.keys) == 0 {
		return nil, errNoKey
	}
	var ms []*keys.Material
	for _, s := range c.keys {
		spec, err := keys.ParseSpec(s)
		if err != nil {
			return nil, err
		}
		m, err := spec.Load()
		if err != nil {
			return nil, err
		}
		ms = append(ms, m)
	}
	return ms, nil
}

// openStore opens the store named by --repo.
func (c *cli) openStore(ctx context.Context, create bool) (store.Store, error) {
	if c.repo == "" {
		return nil, usagef("no repository given: use -r/--repo or set SNAPCRYPT_REPO")
	}
	if strings.HasPrefix(c.repo, "s3:") {
		st, err := s3.OpenURL(ctx, c.repo, c.insecureHTTP)
		if errors.Is(err, store.ErrNotExist) { // the bucket does not exist
			return nil, fmt.Errorf("%w: %w", err, repo.ErrNotRepository)
		}
		if errors.Is(err, s3.ErrInsecureHTTP) {
			return nil, usagef("%v: use s3:https://, or --insecure-http to allow it", err)
		}
		if err != nil {
			return nil, err
		}
		return retry.New(st, retry.Options{}), nil
	}
	if create {
		return local.Init(c.repo)
	}
	st, err := local.Open(c.repo)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, store.ErrNotExist) {
			return nil, fmt.Errorf("repository %s: %w (the directory does not exist)", c.repo, repo.ErrNotRepository)
		}
		return nil, fmt.Errorf("repository %s: %w", c.repo, err)
	}
	return st, nil
}

// open opens the repository with the given keys.
func (c *cli) open(ctx context.Context, opts repo.Options) (*repo.Repository, error) {
	st, ms, err := c.storeAndKeys(ctx)
	if err != nil {
		return nil, err
	}
	if strings.HasPrefix(c.repo, "s3:") && opts.ReadWindow == 0 {
		opts.ReadWindow = repo.RemoteReadWindow // fewer, larger GETs
	}
	r, err := repo.Open(ctx, st, opts, ms...)
	if err != nil {
		return nil, err
	}
	// Reading goes on from the newest good keyring epoch; writing refuses.
	for _, p := range r.Keys().Problems() {
		fmt.Fprintf(c.stderr, "snapcrypt: warning: %v\n", p)
	}
	return r, nil
}

// openSnapshot opens the repository and finds the snapshot ref names
// ("latest", a name, an id or a unique id prefix).
func (c *cli) openSnapshot(ctx context.Context, ref string) (*repo.Repository, *repo.Snapshot, error) {
	r, err := c.open(ctx, repo.Options{})
	if err != nil {
		return nil, nil, err
	}
	s, err := r.FindSnapshot(ctx, ref)
	if err != nil {
		return nil, nil, err
	}
	return r, s, nil
}

// storeAndKeys loads the given keys and opens the repository's store.
func (c *cli) storeAndKeys(ctx context.Context) (store.Store, []*keys.Material, error) {
	ms, err := c.materials()
	if err != nil {
		return nil, nil, err
	}
	st, err := c.openStore(ctx, false)
	if err != nil {
		return nil, nil, err
	}
	return st, ms, nil
}
