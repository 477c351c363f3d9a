package keys

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/snapcrypt/snapcrypt/internal/hexid"
	"github.com/snapcrypt/snapcrypt/internal/strictjson"
	"github.com/snapcrypt/snapcrypt/repo/object"
)

// The host's record of each repository's keyring (docs/security.md,
// "Rollback"): the highest epoch this host accepted as authentic and the
// SHA-256 of its object. A keyring that later ends below that epoch, or
// whose epoch differs from the recorded one, was rewritten.

// StateDirEnv names the environment variable that sets the state
// directory. Unset, it is $XDG_STATE_HOME/snapcrypt, or
// ~/.local/state/snapcrypt.
const StateDirEnv = "SNAPCRYPT_STATE_DIR"

// StateDir returns the directory of the host's keyring records, or an
// error if none can be named (no home directory).
func StateDir() (string, error) {
	if d := os.Getenv(StateDirEnv); d != "" {
		return d, nil
	}
	if d := os.Getenv("XDG_STATE_HOME"); d != "" && filepath.IsAbs(d) {
		return filepath.Join(d, "snapcrypt"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil || home == "" {
		return "", fmt.Errorf("no state directory: set %s: %v", StateDirEnv, err)
	}
	return filepath.Join(home, ".local", "state", "snapcrypt"), nil
}

// record is what the host remembers of a repository's keyring.
type record struct {
	Epoch uint64 `json:"epoch"`
	Hash  string `json:"hash"` // 64 hex: SHA-256 of that epoch's object
}

// recordPath is the record file of a repository.
func recordPath(dir, repoID string) string {
	return filepath.Join(dir, repoID+".keyring")
}

// loadRecord reads the record of repoID; ok is false if there is none.
func loadRecord(repoID string) (rec record, ok bool, err error) {
	dir, err := StateDir()
	if err != nil {
		return rec, false, err
	}
	b, err := os.ReadFile(recordPath(dir, repoID))
	if errors.Is(err, fs.ErrNotExist) {
		return rec, false, nil
	}
	if err != nil {
		return rec, false, fmt.Errorf("keyring record: %w", err)
	}
	if err := strictjson.Decode(b, &rec); err != nil || rec.Epoch == 0 || !hexid.Valid(rec.Hash, 64) {
		return rec, false, fmt.Errorf("keyring record %s is %w: nothing writes to the repository until it is deleted (delete it to start afresh, after checking the keyring with a key you trust)", recordPath(dir, repoID), object.ErrCorrupt)
	}
	return rec, true, nil
}

// advanceRecord records epoch with hash for repoID unless the record holds
// that epoch or a higher one already. The file is replaced atomically
// (write, sync, rename) under a lock, so the record only ever advances.
func advanceRecord(repoID string, epoch uint64, hash [32]byte) error {
	dir, err := StateDir()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("keyring record: %w", err)
	}
	unlock, err := lockRecord(recordPath(dir, repoID) + ".lock")
	if err != nil {
		return fmt.Errorf("keyring record: %w", err)
	}
	defer unlock()
	if rec, ok, _ := loadRecord(repoID); ok && rec.Epoch >= epoch {
		return nil
	}
	b, _ := json.Marshal(record{Epoch: epoch, Hash: hex.EncodeToString(hash[:])})
	f, err := os.CreateTemp(dir, "."+repoID+".tmp-*")
	if err != nil {
		return fmt.Errorf("keyring record: %w", err)
	}
	defer os.Remove(f.Name())
	_, err = f.Write(append(b, '\n'))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), recordPath(dir, repoID))
	}
	if err != nil {
		return fmt.Errorf("keyring record: %w", err)
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}
