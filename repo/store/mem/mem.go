// Package mem is an in-memory store.Store for tests and for tools that need a
// scratch repository. Contents live as long as the Store value.
package mem

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/snapcrypt/snapcrypt/repo/store"
)

// Store keeps objects in a map. It copies data on the way in and out, so
// callers may reuse their buffers. The zero value is not usable; call New.
type Store struct {
	mu      sync.RWMutex
	objects map[string][]byte
}

var _ store.Store = (*Store)(nil)

// New returns an empty Store.
func New() *Store {
	return &Store{objects: make(map[string][]byte)}
}

func check(ctx context.Context, op, name string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s %s: %w", op, name, err)
	}
	if err := store.CheckName(name); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	return nil
}

// Get implements store.Reader.
func (s *Store) Get(ctx context.Context, name string) ([]byte, error) {
	if err := check(ctx, "get", name); err != nil {
		return nil, err
	}
	s.mu.RLock()
	data, ok := s.objects[name]
	s.mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("get %s: %w", name, store.ErrNotExist)
	}
	return slices.Clone(data), nil
}

// GetRange implements store.Reader.
func (s *Store) GetRange(ctx context.Context, name string, off, length int64) ([]byte, error) {
	if err := check(ctx, "get range", name); err != nil {
		return nil, err
	}
	if off < 0 || length < 0 {
		return nil, fmt.Errorf("get range %s: negative offset %d or length %d", name, off, length)
	}
	s.mu.RLock()
	data, ok := s.objects[name]
	s.mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("get range %s: %w", name, store.ErrNotExist)
	}
	size := int64(len(data))
	if off >= size {
		return []byte{}, nil
	}
	end := size
	if length < size-off {
		end = off + length
	}
	return slices.Clone(data[off:end]), nil
}

// Stat implements store.Reader.
func (s *Store) Stat(ctx context.Context, name string) (store.Info, error) {
	if err := check(ctx, "stat", name); err != nil {
		return store.Info{}, err
	}
	s.mu.RLock()
	data, ok := s.objects[name]
	s.mu.RUnlock()
	if !ok {
		return store.Info{}, fmt.Errorf("stat %s: %w", name, store.ErrNotExist)
	}
	return store.Info{Name: name, Size: int64(len(data))}, nil
}

// List implements store.Reader. It takes a snapshot of the matching names and
// sizes first, so fn may call any method of s.
func (s *Store) List(ctx context.Context, prefix string, fn func(store.Info) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("list %q: %w", prefix, err)
	}
	var infos []store.Info
	s.mu.RLock()
	for name, data := range s.objects {
		if strings.HasPrefix(name, prefix) {
			infos = append(infos, store.Info{Name: name, Size: int64(len(data))})
		}
	}
	s.mu.RUnlock()
	slices.SortFunc(infos, func(a, b store.Info) int { return strings.Compare(a.Name, b.Name) })
	for _, info := range infos {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("list %q: %w", prefix, err)
		}
		if err := fn(info); err != nil {
			return err
		}
	}
	return nil
}

// Create implements store.Store.
func (s *Store) Create(ctx context.Context, name string, data []byte) error {
	if err := check(ctx, "create", name); err != nil {
		return err
	}
	data = slices.Clone(data)
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.objects[name]; ok {
		return fmt.Errorf("create %s: %w", name, store.ErrExist)
	}
	s.objects[name] = nonNil(data)
	return nil
}

// Put implements store.Store.
func (s *Store) Put(ctx context.Context, name string, data []byte) error {
	if err := check(ctx, "put", name); err != nil {
		return err
	}
	data = slices.Clone(data)
	s.mu.Lock()
	s.objects[name] = nonNil(data)
	s.mu.Unlock()
	return nil
}

// Delete implements store.Store.
func (s *Store) Delete(ctx context.Context, name string) error {
	if err := check(ctx, "delete", name); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.objects[name]; !ok {
		return fmt.Errorf("delete %s: %w", name, store.ErrNotExist)
	}
	delete(s.objects, name)
	return nil
}

// Location implements store.Store.
func (s *Store) Location() string { return "mem:" }

func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}
