package repo

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/snapcrypt/snapcrypt/internal/strictjson"
)

// Snapshot is the manifest of one snapshot.
type Snapshot struct {
	Version  int       `json:"version"`
	Time     time.Time `json:"time"`
	Host     string    `json:"host"`
	Username string    `json:"username,omitempty"`
	Paths    []string  `json:"paths"`
	Name     string    `json:"name,omitempty"`
	Tags     []string  `json:"tags,omitempty"`
	Tree     BlobID    `json:"tree"`
	Parent   *ObjectID `json:"parent,omitempty"`
	// Root holds the root directory's own attributes; manifests written
	// before it existed lack it.
	Root  *RootMeta `json:"root,omitempty"`
	Files uint64    `json:"files"`
	Dirs  uint64    `json:"dirs"`
	Bytes uint64    `json:"bytes"`
	// Exclude is what the snapshot left out by choice; manifests of
	// snapshots taken without exclusions (and older ones) lack it.
	Exclude *Exclusions `json:"exclude,omitempty"`
	// Added is what the snapshot added to the repository; written in
	// format version 2 only.
	Added *AddedBytes `json:"added,omitempty"`

	// ID is the snapshot object's id; not part of the manifest bytes.
	ID ObjectID `json:"-"`
}

const snapshotVersion = 1

// AddedBytes counts the blobs a snapshot stored: their plaintext and the bytes
// they take in packs (less where compressed).
type AddedBytes struct {
	Plain  int64 `json:"plain"`
	Stored int64 `json:"stored"`
}

// RootMeta are the attributes of a snapshot's root directory.
type RootMeta struct {
	Mode  uint32 `json:"mode"` // st_mode & 07777
	UID   uint32 `json:"uid"`
	GID   uint32 `json:"gid"`
	MTime int64  `json:"mtime"` // nanoseconds since the epoch
}

// MarshalJSON encodings of ids are hex strings.
func (id BlobID) MarshalText() ([]byte, error)   { return []byte(id.String()), nil }
func (id ObjectID) MarshalText() ([]byte, error) { return []byte(id.String()), nil }

// UnmarshalText parses 64 hex characters.
func (id *BlobID) UnmarshalText(b []byte) error {
	o, err := ParseObjectID(string(b))
	*id = BlobID(o)
	return err
}

// UnmarshalText parses 64 hex characters.
func (id *ObjectID) UnmarshalText(b []byte) error {
	o, err := ParseObjectID(string(b))
	*id = o
	return err
}

// MarshalSnapshot encodes a manifest.
func MarshalSnapshot(s *Snapshot) ([]byte, error) {
	return json.Marshal(s)
}

// UnmarshalSnapshot decodes a manifest strictly.
func UnmarshalSnapshot(b []byte) (*Snapshot, error) {
	var s Snapshot
	if err := strictjson.Decode(b, &s); err != nil {
		return nil, fmt.Errorf("malformed snapshot manifest: %w", err)
	}
	if s.Version != snapshotVersion {
		return nil, fmt.Errorf("malformed snapshot manifest: unknown version %d", s.Version)
	}
	if s.Time.IsZero() {
		return nil, fmt.Errorf("malformed snapshot manifest: no time")
	}
	return &s, nil
}

// ShortID is the first 8 hex characters of the snapshot id.
func (s *Snapshot) ShortID() string { return s.ID.String()[:8] }
