package local

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// tmpPrefix starts the name of the temporary file of every write (see
// write); readers skip such names.
const tmpPrefix = ".tmp-"

// RemoveStale implements store.StaleRemover: it removes the temporary
// files that writers killed between creating and renaming them left behind
// (.tmp-* anywhere in the store), if they were last modified more than age
// ago. Trash directories (DeletePrefix) are left to PurgeTrash.
func (s *Store) RemoveStale(ctx context.Context, age time.Duration) (int, error) {
	n := 0
	cutoff := time.Now().Add(-age)
	var walk func(dir string) error
	walk = func(dir string) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		entries, err := os.ReadDir(dir)
		if errors.Is(err, fs.ErrNotExist) {
			return nil // removed meanwhile (DeletePrefix)
		}
		if err != nil {
			return err
		}
		for _, e := range entries {
			name := e.Name()
			p := filepath.Join(dir, name)
			switch {
			case e.IsDir() && !strings.HasPrefix(name, trashPrefix):
				if err := walk(p); err != nil {
					return err
				}
			case e.Type().IsRegular() && strings.HasPrefix(name, tmpPrefix):
				fi, err := e.Info()
				if errors.Is(err, fs.ErrNotExist) {
					continue // its writer finished
				}
				if err != nil {
					return err
				}
				if fi.ModTime().After(cutoff) {
					continue
				}
				if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
					return err
				}
				n++
			}
		}
		return nil
	}
	if err := walk(s.root); err != nil {
		return n, fmt.Errorf("removing stale temporary files in %s: %w", s.root, err)
	}
	return n, nil
}
