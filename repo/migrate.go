package repo

import (
	"context"
	"encoding/json"
	"fmt"
)

// Migrate upgrades a version 1 repository to format version 2, with comp
// (0: CompressionAuto) as its default compression, and tells whether it
// did (false: the repository is version 2 already, and nothing changes).
// Old blobs stay as they are and keep reading; new snapshots compress.
//
// It is crash-safe and may be run again after any failure
// (docs/format.md, "Migration"): it writes `settings` (Put: while config
// says version 1 nothing reads it), then replaces `config` with one that
// says version 2 (Put, which the store does atomically and durably:
// readers see the old config or the new, never a part), and reads config
// back. A crash before the config is replaced leaves a version 1
// repository (and an unread settings object that the next run
// overwrites); after, a version 2 one. Processes that opened the
// repository as version 1 go on writing version 1 objects, which version
// 2 reads; a snapcrypt that reads only version 1 refuses the repository
// from then on ("repository format version 2").
func (r *Repository) Migrate(ctx context.Context, comp Compression) (bool, error) {
	if comp == 0 {
		comp = CompressionAuto
	}
	cfg, err := ReadConfig(ctx, r.st)
	if err != nil {
		return false, err
	}
	if cfg.ID != r.cfg.ID {
		return false, fmt.Errorf("migrate: the config now names repository %s, not %s", cfg.ID, r.cfg.ID)
	}
	if cfg.Version >= 2 {
		return false, nil
	}
	if err := r.st.Put(ctx, settingsName, marshalSettings(Settings{Compression: comp.String()})); err != nil {
		return false, fmt.Errorf("migrate: writing %s: %w", settingsName, err)
	}
	next := Config{Version: 2, ID: cfg.ID}
	b, _ := json.Marshal(next)
	if err := r.st.Put(ctx, "config", append(b, '\n')); err != nil {
		return false, fmt.Errorf("migrate: writing config: %w", err)
	}
	got, err := ReadConfig(ctx, r.st)
	if err != nil {
		return false, fmt.Errorf("migrate: reading config back: %w", err)
	}
	if got != next {
		return false, fmt.Errorf("migrate: config reads back as %+v, want %+v", got, next)
	}
	r.cfg, r.comp = next, comp
	return true, nil
}
