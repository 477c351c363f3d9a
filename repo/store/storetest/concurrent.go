package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/snapcrypt/snapcrypt/repo/store"
)

// The tests of concurrent use: racing Creates of one name, listing while
// writing, and writers and readers of the same objects at once.

func testCreateConcurrent(t *testing.T, s store.Store) {
	const writers = 16
	const rounds = 4
	ctx := context.Background()
	for round := range rounds {
		name := fmt.Sprintf("keyring/%020d", round)
		var (
			wg    sync.WaitGroup
			start = make(chan struct{})
			errs  [writers]error
		)
		for i := range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				errs[i] = s.Create(ctx, name, payload(uint64(100*round+i), 1000+i))
			}()
		}
		close(start)
		wg.Wait()
		winner := -1
		for i, err := range errs {
			switch {
			case err == nil && winner >= 0:
				t.Fatalf("%s: Creates %d and %d both succeeded", name, winner, i)
			case err == nil:
				winner = i
			case !errors.Is(err, store.ErrExist):
				t.Fatalf("%s: Create %d: %v, want success or ErrExist", name, i, err)
			}
		}
		if winner < 0 {
			t.Fatalf("%s: no Create succeeded", name)
		}
		mustGet(t, s, name, payload(uint64(100*round+winner), 1000+winner))
	}
}

// testListWhileWriting lists while the callback deletes the object it is
// given and writes others, as retiring a key generation does.
func testListWhileWriting(t *testing.T, s store.Store) {
	ctx := context.Background()
	for i := range 20 {
		mustCreate(t, s, fmt.Sprintf("deks/old/%02d", i), []byte{byte(i)})
	}
	n := 0
	err := s.List(ctx, "deks/old/", func(info store.Info) error {
		n++
		if err := s.Put(ctx, "deks/new/"+strings.TrimPrefix(info.Name, "deks/old/"), []byte("n")); err != nil {
			return err
		}
		return s.Delete(ctx, info.Name)
	})
	if err != nil {
		t.Fatalf("List with writes in the callback: %v", err)
	}
	if n != 20 {
		t.Errorf("List called back %d times, want 20", n)
	}
	if got := listAll(t, s, "deks/old/"); len(got) != 0 {
		t.Errorf("objects left under deks/old/: %v", got)
	}
	if got := listAll(t, s, "deks/new/"); len(got) != 20 {
		t.Errorf("%d objects under deks/new/, want 20", len(got))
	}
}

// versioned returns version v of an object for testConcurrentReadWrite: its
// length and every byte tell the version, so a mix of two shows.
func versioned(v int) []byte {
	return bytes.Repeat([]byte{byte(v)}, 1000+v*37)
}

func checkVersioned(got []byte) error {
	if len(got) == 0 {
		return errors.New("empty object")
	}
	v := int(got[0])
	if !bytes.Equal(got, versioned(v)) {
		return fmt.Errorf("torn read: %d bytes starting with version %d", len(got), v)
	}
	return nil
}

// testConcurrentReadWrite runs writers (Put of one shared object, Create
// and Delete of their own) beside readers (Get and GetRange of the shared
// object, List and Get of the others): no read is torn, no listed size
// lies, and what was not deleted is there at the end.
func testConcurrentReadWrite(t *testing.T, s store.Store) {
	const (
		writers    = 4
		readers    = 4
		iterations = 25
	)
	ctx := context.Background()
	if err := s.Put(ctx, "shared", versioned(0)); err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, writers+readers+2)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := concurrentWriter(ctx, s, w, iterations); err != nil {
				errc <- fmt.Errorf("writer %d: %w", w, err)
			}
		}()
	}
	for r := range readers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := concurrentReader(ctx, s, iterations); err != nil {
				errc <- fmt.Errorf("reader %d: %w", r, err)
			}
		}()
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}
	kept := writers * (iterations - iterations/2) // odd iterations delete
	if got := listAll(t, s, "own/"); len(got) != kept {
		t.Errorf("%d objects under own/, want %d", len(got), kept)
	}
}

// concurrentWriter is writer w of testConcurrentReadWrite: each iteration
// puts a new version of "shared", creates an object of its own and, every
// other time, deletes it again.
func concurrentWriter(ctx context.Context, s store.Store, w, iterations int) error {
	for i := range iterations {
		v := 1 + (w*iterations+i)%200
		if err := s.Put(ctx, "shared", versioned(v)); err != nil {
			return fmt.Errorf("put shared: %w", err)
		}
		own := fmt.Sprintf("own/%d/%d", w, i)
		if err := s.Create(ctx, own, versioned(v)); err != nil {
			return fmt.Errorf("create %s: %w", own, err)
		}
		if i%2 == 1 {
			if err := s.Delete(ctx, own); err != nil {
				return fmt.Errorf("delete %s: %w", own, err)
			}
		}
	}
	return nil
}

// concurrentReader is a reader of testConcurrentReadWrite: each iteration
// reads "shared" whole and in part, and lists and reads the writers' own
// objects.
func concurrentReader(ctx context.Context, s store.Store, iterations int) error {
	for range iterations {
		got, err := s.Get(ctx, "shared")
		if err == nil {
			err = checkVersioned(got)
		}
		if err != nil {
			return fmt.Errorf("get shared: %w", err)
		}
		part, err := s.GetRange(ctx, "shared", 500, 600)
		if err == nil && (len(part) == 0 || !bytes.Equal(part, bytes.Repeat(part[:1], len(part)))) {
			err = fmt.Errorf("torn range read of %d bytes", len(part))
		}
		if err != nil {
			return fmt.Errorf("get a range of shared: %w", err)
		}
		err = s.List(ctx, "own/", func(info store.Info) error {
			got, err := s.Get(ctx, info.Name)
			if errors.Is(err, store.ErrNotExist) {
				return nil // deleted since listed
			}
			if err == nil {
				err = checkVersioned(got)
			}
			if err == nil && int64(len(got)) != info.Size {
				err = fmt.Errorf("%s: listed with size %d, read %d bytes", info.Name, info.Size, len(got))
			}
			return err
		})
		if err != nil {
			return fmt.Errorf("list own/: %w", err)
		}
	}
	return nil
}
