package repo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/snapcrypt/snapcrypt/internal/strictjson"
	"github.com/snapcrypt/snapcrypt/repo/object"
	"github.com/snapcrypt/snapcrypt/repo/store"
)

// settingsName is the object that holds a version 2 repository's
// settings. They are not in config because a snapcrypt that reads only
// version 1 decodes config strictly: a field it does not know would make
// it call the config corrupted instead of saying that the repository is
// newer (docs/format.md, "Settings").
const settingsName = "settings"

// MaxSettingsSize bounds the settings object.
const MaxSettingsSize = 4 << 10

// Settings is the plaintext `settings` object of a version 2 repository.
// It only steers writers: readers take how each blob is stored from its
// (authenticated) index entry, never from here.
type Settings struct {
	// Compression is the default compression of snapshots: "auto",
	// "off" or "max".
	Compression string `json:"compression"`
}

func marshalSettings(s Settings) []byte {
	b, _ := json.Marshal(s)
	return append(b, '\n')
}

// ParseSettings decodes the settings object strictly.
func ParseSettings(b []byte) (Settings, error) {
	var s Settings
	if err := strictjson.Decode(b, &s); err != nil {
		return s, fmt.Errorf("object %s is %w: %v", settingsName, object.ErrCorrupt, err)
	}
	if _, err := ParseCompression(s.Compression); err != nil {
		return s, fmt.Errorf("object %s is %w: %v", settingsName, object.ErrCorrupt, err)
	}
	return s, nil
}

// ReadSettings reads the settings object of a version 2 repository. A
// missing one (a migration stopped before it wrote one: it writes it
// before config says version 2, so only a deleted one) reads as the
// default, compression auto.
func ReadSettings(ctx context.Context, st store.Reader) (Settings, error) {
	b, err := readBounded(ctx, st, settingsName, MaxSettingsSize)
	if errors.Is(err, store.ErrNotExist) {
		return Settings{Compression: CompressionAuto.String()}, nil
	}
	if err != nil {
		return Settings{}, err
	}
	return ParseSettings(b)
}
