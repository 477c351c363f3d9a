package keys

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/snapcrypt/snapcrypt/internal/hexid"
	"github.com/snapcrypt/snapcrypt/internal/strictjson"
	"github.com/snapcrypt/snapcrypt/repo/object"
	"github.com/snapcrypt/snapcrypt/repo/store"
)

// KeyringVersion is the keyring format this code writes for a keyring
// that uses no feature of version 3, byte for byte as before there was
// one: an authenticated envelope (epoch.go). It also reads version 1
// (legacy, unauthenticated) and version 3.
const KeyringVersion = 2

// keyringVersion3 is the format of a keyring that uses a feature version
// 2 lacks (key slots, a generation with an awskms KDF), inside the same
// version 2 envelope. Writers use it only then (formatVersion), so a
// repository that uses none stays readable by a snapcrypt that reads
// versions 1 and 2.
const keyringVersion3 = 3

// keyringPrefix is where keyring epochs live.
const keyringPrefix = "keyring/"

// State is a generation's state.
type State string

// Generation states.
const (
	// StateCurrent: new DEKs are wrapped under this generation. Exactly one
	// generation is current.
	StateCurrent State = "current"
	// StateRetiring: being rotated away from; its wrapped DEKs are still
	// read (first) until each has a verified twin under the current one.
	StateRetiring State = "retiring"
	// StateRetired: no longer needed for anything; its prefix is (being)
	// deleted.
	StateRetired State = "retired"
)

// Keyring is the repository's single source of truth about keys. It changes
// only by creating keyring/<epoch+1>; see docs/format.md.
type Keyring struct {
	Version     int          `json:"version"`
	RepoID      string       `json:"repo_id"`
	Epoch       uint64       `json:"epoch"`
	Current     string       `json:"current"`
	Generations []Generation `json:"generations"`
	Rotation    *Rotation    `json:"rotation"`
	IDKeyDEK    string       `json:"id_key_dek"`
}

// Generation is one KEK generation.
type Generation struct {
	ID      string    `json:"id"`    // 16 hex characters, random per generation
	KDF     KDF       `json:"kdf"`   // how the KEK is derived from the operator's key
	Check   string    `json:"check"` // 64 hex characters: see checkValue
	State   State     `json:"state"`
	Created time.Time `json:"created"`
	// Slots are more ways to unlock the KEK (slot.go); a keyring with
	// any is format version 3.
	Slots []Slot `json:"slots,omitempty"`
}

// Rotation records the rotation in progress.
type Rotation struct {
	ID          string    `json:"id"`   // 32 hex characters, random per rotation
	From        []string  `json:"from"` // the retiring generations
	To          string    `json:"to"`   // the generation that was made current
	Started     time.Time `json:"started"`
	RequestedBy Requester `json:"requested_by"`
}

// Requester names the process that started a rotation.
type Requester struct {
	Host string `json:"host"`
	PID  int    `json:"pid"`
}

// keyringName returns the object name of an epoch.
func keyringName(epoch uint64) string {
	return fmt.Sprintf("%s%020d", keyringPrefix, epoch)
}

// Generation returns the generation with the given id, or nil.
func (r *Keyring) Generation(id string) *Generation {
	for i := range r.Generations {
		if r.Generations[i].ID == id {
			return &r.Generations[i]
		}
	}
	return nil
}

// Clone returns a deep copy.
func (r Keyring) Clone() Keyring {
	c := r
	c.Generations = cloneGenerations(r.Generations)
	if r.Rotation != nil {
		rot := *r.Rotation
		rot.From = slices.Clone(r.Rotation.From)
		c.Rotation = &rot
	}
	return c
}

// Marshal encodes the keyring as stored (indented JSON and a newline). It
// validates first.
func (r *Keyring) Marshal() ([]byte, error) {
	if err := r.validate(); err != nil {
		return nil, fmt.Errorf("keyring epoch %d: %w", r.Epoch, err)
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// ParseKeyring decodes a keyring (the bare JSON of a legacy epoch, or the
// keyring inside an epoch envelope: see parseEpoch) strictly: unknown
// fields, trailing data, an unknown version, malformed ids, duplicate generation ids, bad states, not
// exactly one current generation or an inconsistent rotation record are
// errors wrapping object.ErrCorrupt (an unknown version does not: it is a newer
// format, not damage).
func ParseKeyring(b []byte) (*Keyring, error) {
	var probe struct {
		Version int `json:"version"`
	}
	if err := json.Unmarshal(b, &probe); err != nil {
		return nil, fmt.Errorf("keyring: %w: %v", object.ErrCorrupt, err)
	}
	if probe.Version < legacyKeyringVersion || probe.Version > keyringVersion3 {
		return nil, newerFormat(probe.Version)
	}
	var r Keyring
	if err := strictjson.Decode(b, &r); err != nil {
		return nil, fmt.Errorf("keyring: %w: %v", object.ErrCorrupt, err)
	}
	if err := r.validate(); err != nil {
		return nil, fmt.Errorf("keyring: %w: %v", object.ErrCorrupt, err)
	}
	return &r, nil
}

// newerFormat is the error of a keyring or envelope version this code does
// not read. It does not wrap object.ErrCorrupt: it is a newer format, not
// damage.
func newerFormat(v int) error {
	return fmt.Errorf("keyring: format version %d, newer than this snapcrypt reads (versions %d to %d): upgrade snapcrypt", v, legacyKeyringVersion, keyringVersion3)
}

// formatVersion is the version a writer gives r: version 3 if it uses a
// feature of version 3, else version 2.
func (r *Keyring) formatVersion() int {
	if r.usesV3() {
		return keyringVersion3
	}
	return KeyringVersion
}

// usesV3 reports whether r uses a feature of format version 3: a
// generation with key slots or with an awskms KDF.
func (r *Keyring) usesV3() bool {
	for i := range r.Generations {
		if g := &r.Generations[i]; len(g.Slots) > 0 || g.KDF.Type == KDFAWSKMS {
			return true
		}
	}
	return false
}

// checkTime says why t is not a time as version 3 writes it (RFC 3339
// UTC, whole seconds), if it is not. Version 1 and 2 keyrings do not
// check it (their frozen vectors hold none such, but their decoders took
// any time).
func checkTime(t time.Time) error {
	switch {
	case t.IsZero():
		return errors.New("no time")
	case t.Location() != time.UTC || t.Nanosecond() != 0:
		return fmt.Errorf("%s is not RFC 3339 UTC in whole seconds", t.Format(time.RFC3339Nano))
	}
	return nil
}

// validate checks the keyring's fields, its generations (exactly one
// current, the one the keyring names) and its rotation record; a version
// 3 keyring must use a feature of version 3, and only it may, and its
// times must be RFC 3339 UTC in whole seconds.
func (r *Keyring) validate() error {
	switch r.Version {
	case legacyKeyringVersion, KeyringVersion:
		if r.usesV3() {
			return fmt.Errorf("a feature of version 3 (key slots or an awskms key) in a version %d keyring", r.Version)
		}
	case keyringVersion3:
		if !r.usesV3() {
			return errors.New("a version 3 keyring that uses no feature of version 3")
		}
		if err := r.checkTimes(); err != nil {
			return err
		}
	default:
		return fmt.Errorf("version %d", r.Version)
	}
	if !hexid.Valid(r.RepoID, 32) {
		return errors.New("repository id is not 32 hex characters")
	}
	if r.Epoch < 1 {
		return errors.New("epoch 0")
	}
	if !hexid.Valid(r.IDKeyDEK, 32) {
		return errors.New("id_key_dek is not 32 hex characters")
	}
	if len(r.Generations) == 0 {
		return errors.New("no generations")
	}
	if err := r.validateGenerations(); err != nil {
		return err
	}
	return r.validateRotation()
}

// checkTimes checks the generations' creation times and the rotation's
// start with checkTime (slots check their own).
func (r *Keyring) checkTimes() error {
	for _, g := range r.Generations {
		if err := checkTime(g.Created); err != nil {
			return fmt.Errorf("generation %s: created: %v", g.ID, err)
		}
	}
	if r.Rotation != nil {
		if err := checkTime(r.Rotation.Started); err != nil {
			return fmt.Errorf("rotation started: %v", err)
		}
	}
	return nil
}

// validateGenerations checks each generation and that exactly one is
// current: the one the keyring names.
func (r *Keyring) validateGenerations() error {
	seen := map[string]bool{}
	current := 0
	for _, g := range r.Generations {
		if !hexid.Valid(g.ID, 16) {
			return fmt.Errorf("generation id %q is not 16 hex characters", g.ID)
		}
		if seen[g.ID] {
			return fmt.Errorf("duplicate generation %s", g.ID)
		}
		seen[g.ID] = true
		if err := g.KDF.validate(); err != nil {
			return fmt.Errorf("generation %s: %v", g.ID, err)
		}
		if !hexid.Valid(g.Check, 64) {
			return fmt.Errorf("generation %s: check value is not 64 hex characters", g.ID)
		}
		if g.Created.IsZero() {
			return fmt.Errorf("generation %s: no creation time", g.ID)
		}
		if err := g.validateSlots(); err != nil {
			return err
		}
		switch g.State {
		case StateCurrent:
			current++
			if g.ID != r.Current {
				return fmt.Errorf("generation %s is current but the keyring names %q", g.ID, r.Current)
			}
		case StateRetiring, StateRetired:
		default:
			return fmt.Errorf("generation %s: bad state %q", g.ID, g.State)
		}
	}
	if current != 1 {
		return fmt.Errorf("%d current generations, want 1", current)
	}
	return nil
}

// validateRotation checks the rotation record against the generations:
// there is one exactly when some are retiring, it rotates to the current
// one from exactly the retiring ones.
func (r *Keyring) validateRotation() error {
	retiring := 0
	for _, g := range r.Generations {
		if g.State == StateRetiring {
			retiring++
		}
	}
	rot := r.Rotation
	if rot == nil {
		if retiring > 0 {
			return errors.New("retiring generations but no rotation record")
		}
		return nil
	}
	if !hexid.Valid(rot.ID, 32) {
		return errors.New("rotation id is not 32 hex characters")
	}
	if rot.To != r.Current {
		return fmt.Errorf("rotation to %q but current is %s", rot.To, r.Current)
	}
	if rot.Started.IsZero() {
		return errors.New("rotation has no start time")
	}
	if len(rot.From) != retiring {
		return fmt.Errorf("rotation from %d generations, %d are retiring", len(rot.From), retiring)
	}
	for i, id := range rot.From {
		g := r.Generation(id)
		if g == nil || g.State != StateRetiring || slices.Contains(rot.From[:i], id) {
			return fmt.Errorf("rotation from %q: not a retiring generation", id)
		}
	}
	return nil
}

// LoadKeyring reads the keyring of the highest epoch, checking neither its
// MACs nor its history (for tools; a Keychain verifies both). It returns an
// error wrapping store.ErrNotExist if there is none.
func LoadKeyring(ctx context.Context, st store.Reader) (*Keyring, error) {
	epochs, err := listEpochs(ctx, st)
	if err != nil {
		return nil, err
	}
	if len(epochs) == 0 {
		return nil, fmt.Errorf("no keyring: %w", store.ErrNotExist)
	}
	e, err := readEpoch(ctx, st, epochs[len(epochs)-1])
	if err != nil {
		return nil, err
	}
	return e.ring, nil
}

// listEpochs returns the epochs of the objects below keyring/, in
// increasing order. Any other name there is an error wrapping object.ErrCorrupt.
func listEpochs(ctx context.Context, st store.Reader) ([]uint64, error) {
	var out []uint64
	err := st.List(ctx, keyringPrefix, func(info store.Info) error {
		e, err := parseEpochName(info.Name)
		if err != nil {
			return err
		}
		out = append(out, e)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("listing keyring: %w", err)
	}
	slices.Sort(out)
	return out, nil
}

func parseEpochName(name string) (uint64, error) {
	s := strings.TrimPrefix(name, keyringPrefix)
	e, err := strconv.ParseUint(s, 10, 64)
	if err != nil || len(s) != 20 || e == 0 {
		return 0, fmt.Errorf("unexpected object %s: %w", name, object.ErrCorrupt)
	}
	return e, nil
}

// readEpoch reads (at most MaxKeyringSize bytes) and parses one epoch
// object. Not-exist errors wrap store.ErrNotExist; a larger object, one
// that does not parse or holds another epoch wraps object.ErrCorrupt.
func readEpoch(ctx context.Context, st store.Reader, epoch uint64) (*epochObj, error) {
	name := keyringName(epoch)
	b, err := store.GetBounded(ctx, st, name, MaxKeyringSize)
	if errors.Is(err, store.ErrTooLarge) {
		return nil, fmt.Errorf("%s: %w: %v", name, object.ErrCorrupt, err)
	}
	if err != nil {
		return nil, fmt.Errorf("reading keyring: %w", err)
	}
	e, err := parseEpoch(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if e.ring.Epoch != epoch {
		return nil, fmt.Errorf("%s: %w: holds epoch %d", name, object.ErrCorrupt, e.ring.Epoch)
	}
	return e, nil
}

// commitEpoch writes e as epoch e.ring.Epoch, create-only. It returns an
// error wrapping ErrConflict if that epoch exists already.
func commitEpoch(ctx context.Context, st store.Store, e *epochObj) error {
	name := keyringName(e.ring.Epoch)
	if err := st.Create(ctx, name, e.raw); err != nil {
		// A lost response (or a retried request) may hide that the write
		// was ours: the object then holds our bytes.
		if got, gerr := store.GetBounded(ctx, st, name, MaxKeyringSize); gerr == nil && bytes.Equal(got, e.raw) {
			return nil
		}
		if errors.Is(err, store.ErrExist) {
			return fmt.Errorf("committing %s: %w", name, ErrConflict)
		}
		return fmt.Errorf("committing %s: %w", name, err)
	}
	return nil
}

func parseGenID(s string) ([8]byte, error) {
	var id [8]byte
	if !hexid.Valid(s, 16) {
		return id, fmt.Errorf("generation id %q: %w", s, object.ErrCorrupt)
	}
	hex.Decode(id[:], []byte(s))
	return id, nil
}

func parseDEKID(s string) ([16]byte, error) {
	var id [16]byte
	if !hexid.Valid(s, 32) {
		return id, fmt.Errorf("data key id %q: %w", s, object.ErrCorrupt)
	}
	hex.Decode(id[:], []byte(s))
	return id, nil
}
