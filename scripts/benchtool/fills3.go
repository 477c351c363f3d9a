package main

// The fill-store mode: `fill` for any repository location the CLI accepts,
// S3 included (benchtool's fill opens local directories only).
//
//	benchtool fill-store -r REPO -k SPEC -total N [-workers W]
//	    as fill, where REPO is a directory or
//	    s3:http[s]://HOST[:PORT]/BUCKET[/PREFIX] (credentials from
//	    AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION).
//
// It lives in its own file and dispatches from init, before main, so that
// main.go stays as its owner wrote it.

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/snapcrypt/snapcrypt/keys"
	"github.com/snapcrypt/snapcrypt/repo"
	"github.com/snapcrypt/snapcrypt/repo/store"
	"github.com/snapcrypt/snapcrypt/repo/store/local"
	"github.com/snapcrypt/snapcrypt/repo/store/retry"
	"github.com/snapcrypt/snapcrypt/repo/store/s3"
)

func init() {
	if len(os.Args) >= 2 && os.Args[1] == "fill-store" {
		if err := fillStore(os.Args[2:]); err != nil {
			fmt.Fprintf(os.Stderr, "benchtool fill-store: %v\n", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
}

// openLocation opens a directory or an s3: URL the way the CLI does.
func openLocation(ctx context.Context, loc string) (store.Store, error) {
	if strings.HasPrefix(loc, "s3:") {
		st, err := s3.Open(ctx, loc)
		if err != nil {
			return nil, err
		}
		return retry.New(st, retry.Options{}), nil
	}
	return local.Open(loc)
}

// fillStore tops up the current generation's wrapped DEKs to -total.
func fillStore(args []string) error {
	f := flag.NewFlagSet("fill-store", flag.ExitOnError)
	loc := f.String("r", "", "repository: a directory or an s3: URL")
	spec := f.String("k", "", "key spec of the current generation")
	total := f.Int("total", 0, "wanted number of wrapped data keys under the current generation")
	workers := f.Int("workers", 64, "parallel NewDEK calls")
	f.Parse(args)
	if *loc == "" || *spec == "" || *total <= 0 {
		return errors.New("-r, -k and -total are required")
	}
	ctx := context.Background()
	sp, err := keys.ParseSpec(*spec)
	if err != nil {
		return err
	}
	m, err := sp.Load()
	if err != nil {
		return err
	}
	st, err := openLocation(ctx, *loc)
	if err != nil {
		return err
	}
	cfg, err := repo.ReadConfig(ctx, st)
	if err != nil {
		return err
	}
	kc, err := keys.Open(ctx, st, cfg.ID, m)
	if err != nil {
		return err
	}
	have, gen, err := currentDEKs(ctx, kc)
	if err != nil {
		return err
	}
	n := *total - have
	start := time.Now()
	if n > 0 {
		var next atomic.Int64
		var wg sync.WaitGroup
		var once sync.Once
		var firstErr error
		for range *workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for next.Add(1) <= int64(n) {
					_, dek, err := kc.NewDEK(ctx)
					if err != nil {
						once.Do(func() { firstErr = err })
						return
					}
					clear(dek)
				}
			}()
		}
		wg.Wait()
		if firstErr != nil {
			return firstErr
		}
	}
	el := time.Since(start).Seconds()
	after, _, err := currentDEKs(ctx, kc)
	if err != nil {
		return err
	}
	if after < *total {
		return fmt.Errorf("generation %s holds %d data keys after the fill, want %d", gen, after, *total)
	}
	rate := 0.0
	if n > 0 && el > 0 {
		rate = float64(n) / el
	}
	fmt.Printf("fill-store: added %d data keys in %.1fs (%.0f/s); generation %s holds %d\n", max(n, 0), el, rate, gen, after)
	return nil
}
