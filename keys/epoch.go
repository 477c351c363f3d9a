package keys

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/snapcrypt/snapcrypt/internal/hexid"
	"github.com/snapcrypt/snapcrypt/internal/strictjson"
	"github.com/snapcrypt/snapcrypt/repo/object"
)

// Keyring epoch objects (docs/format.md, "Keyring"). From format version 2
// on, keyring/<epoch> is an envelope around the keyring:
//
//	{
//	  "version": 2,
//	  "prev": SHA-256 of epoch e-1's object (64 hex; "" in epoch 1),
//	  "macs": [{"gen": generation id, "mac": 64 hex}, ...],
//	  "keyring": the keyring (version 2, or 3 with an awskms generation)
//	}
//
// Each MAC is HMAC-SHA256 under the signing generation's keyring key of
// epochMACDomain || repository id || epoch || prev || generation id || the
// keyring's bytes as stored. A version 1 object (a bare keyring) is a
// legacy epoch: accepted only before the first authenticated one.

// epochMACDomain starts every keyring MAC's input. Changing it changes the
// format.
const epochMACDomain = "snapcrypt keyring epoch v2"

// infoKeyring derives a generation's keyring key from its KEK.
const infoKeyring = "snapcrypt keyring v2"

// legacyKeyringVersion is the unauthenticated keyring of format version 1.
const legacyKeyringVersion = 1

// MaxKeyringSize bounds a keyring epoch object. A keyring grows by one
// generation (about 400 bytes) per rotation: 1 MiB is thousands of
// rotations, and a larger object planted as an epoch is refused without
// reading more than that.
const MaxKeyringSize = 1 << 20

// epochMAC is one MAC of an epoch.
type epochMAC struct {
	Gen string `json:"gen"` // 16 hex: the signing generation
	MAC string `json:"mac"` // 64 hex
}

// epochObj is one keyring epoch as stored.
type epochObj struct {
	ring   *Keyring
	raw    []byte   // the object's bytes
	hash   [32]byte // SHA-256 of raw: the next epoch's prev
	legacy bool     // a version 1 object: no prev, no MACs
	prev   []byte   // 32 bytes; nil in epoch 1 and in legacy epochs
	macs   []epochMAC
	body   []byte // the keyring's bytes as stored (the MACs' input)
}

// keyringKey returns a generation's keyring key (it MACs keyring epochs).
func keyringKey(kek [KeySize]byte) []byte { return subkey(kek, infoKeyring) }

// epochMACInput is what a MAC of an epoch covers.
func epochMACInput(rid [16]byte, epoch uint64, prev []byte, gen [8]byte, body []byte) []byte {
	in := make([]byte, 0, len(epochMACDomain)+16+8+32+8+len(body))
	in = append(in, epochMACDomain...)
	in = append(in, rid[:]...)
	in = binary.BigEndian.AppendUint64(in, epoch)
	if prev == nil {
		in = append(in, make([]byte, 32)...)
	} else {
		in = append(in, prev...)
	}
	in = append(in, gen[:]...)
	return append(in, body...)
}

// epochMACWith computes the MAC of an epoch under a keyring key.
func epochMACWith(key []byte, rid [16]byte, epoch uint64, prev []byte, gen [8]byte, body []byte) []byte {
	h := hmac.New(sha256.New, key)
	h.Write(epochMACInput(rid, epoch, prev, gen, body))
	return h.Sum(nil)
}

// marshalBody encodes the keyring as it sits inside an envelope (indented
// one level further). It validates first.
func (r *Keyring) marshalBody() ([]byte, error) {
	if err := r.validate(); err != nil {
		return nil, fmt.Errorf("keyring epoch %d: %w", r.Epoch, err)
	}
	return json.MarshalIndent(r, "  ", "  ")
}

// marshalEnvelope assembles an epoch object: the canonical encoding, the
// only one decoders accept.
func marshalEnvelope(prev []byte, macs []epochMAC, body []byte) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "{\n  \"version\": %d,\n  \"prev\": %q,\n  \"macs\": [", KeyringVersion, hex.EncodeToString(prev))
	for i, m := range macs {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "\n    {\"gen\": %q, \"mac\": %q}", m.Gen, m.MAC)
	}
	b.WriteString("\n  ],\n  \"keyring\": ")
	b.Write(body)
	b.WriteString("\n}\n")
	return b.Bytes()
}

// signEpoch makes the object of epoch r: prev is the previous epoch's hash
// (nil for epoch 1), signers the generations that MAC it, in order, with
// their KEKs.
func signEpoch(r *Keyring, rid [16]byte, prev []byte, signers []*kek) (*epochObj, error) {
	r.Version = r.formatVersion()
	body, err := r.marshalBody()
	if err != nil {
		return nil, err
	}
	var macs []epochMAC
	for _, s := range signers {
		macs = append(macs, epochMAC{Gen: hex.EncodeToString(s.gen[:]), MAC: hex.EncodeToString(epochMACWith(s.ringKey, rid, r.Epoch, prev, s.gen, body))})
	}
	raw := marshalEnvelope(prev, macs, body)
	return &epochObj{ring: r, raw: raw, hash: sha256.Sum256(raw), prev: prev, macs: macs, body: body}, nil
}

// parseEpoch decodes a keyring epoch object strictly: a version 2 envelope
// in its canonical encoding around a valid version 2 or 3 keyring, or a legacy
// version 1 keyring. Structural errors wrap object.ErrCorrupt; an unknown version
// does not (it is a newer format). It checks no MAC and no chain: see
// docs/format.md for what makes an epoch acceptable.
func parseEpoch(b []byte) (*epochObj, error) {
	var probe struct {
		Version int `json:"version"`
	}
	if err := json.Unmarshal(b, &probe); err != nil {
		return nil, fmt.Errorf("keyring: %w: %v", object.ErrCorrupt, err)
	}
	switch probe.Version {
	case legacyKeyringVersion:
		r, err := ParseKeyring(b)
		if err != nil {
			return nil, err
		}
		return &epochObj{ring: r, raw: b, hash: sha256.Sum256(b), legacy: true, body: b}, nil
	case KeyringVersion:
	case keyringVersion3:
		return nil, fmt.Errorf("keyring: %w: a version 3 keyring outside an envelope", object.ErrCorrupt)
	default:
		return nil, newerFormat(probe.Version)
	}
	var env struct {
		Version int             `json:"version"`
		Prev    string          `json:"prev"`
		MACs    []epochMAC      `json:"macs"`
		Keyring json.RawMessage `json:"keyring"`
	}
	if err := strictjson.Decode(b, &env); err != nil {
		return nil, fmt.Errorf("keyring: %w: %v", object.ErrCorrupt, err)
	}
	e := &epochObj{raw: b, hash: sha256.Sum256(b), macs: env.MACs, body: env.Keyring}
	if env.Prev != "" {
		if !hexid.Valid(env.Prev, 64) {
			return nil, fmt.Errorf("keyring: %w: prev is not 64 hex characters", object.ErrCorrupt)
		}
		e.prev, _ = hex.DecodeString(env.Prev)
	}
	if len(env.MACs) == 0 {
		return nil, fmt.Errorf("keyring: %w: no MAC", object.ErrCorrupt)
	}
	for i, m := range env.MACs {
		if !hexid.Valid(m.Gen, 16) || !hexid.Valid(m.MAC, 64) {
			return nil, fmt.Errorf("keyring: %w: MAC %d is malformed", object.ErrCorrupt, i)
		}
		for _, o := range env.MACs[:i] {
			if o.Gen == m.Gen {
				return nil, fmt.Errorf("keyring: %w: two MACs by generation %s", object.ErrCorrupt, m.Gen)
			}
		}
	}
	r, err := ParseKeyring(env.Keyring)
	if err != nil {
		return nil, err
	}
	if r.Version == legacyKeyringVersion {
		return nil, fmt.Errorf("keyring: %w: a version %d keyring in a version %d envelope", object.ErrCorrupt, r.Version, KeyringVersion)
	}
	if (e.prev == nil) != (r.Epoch == 1) {
		return nil, fmt.Errorf("keyring: %w: epoch %d with prev %q", object.ErrCorrupt, r.Epoch, env.Prev)
	}
	e.ring = r
	// One encoding only: the bytes must be what a writer makes of them.
	body, err := r.marshalBody()
	if err != nil || !bytes.Equal(body, env.Keyring) {
		return nil, fmt.Errorf("keyring: %w: keyring not in its canonical encoding", object.ErrCorrupt)
	}
	if !bytes.Equal(marshalEnvelope(e.prev, e.macs, body), b) {
		return nil, fmt.Errorf("keyring: %w: not in its canonical encoding", object.ErrCorrupt)
	}
	return e, nil
}

// signers returns the generations whose MACs epoch next must carry, in
// order: the current generation of the epoch before (none for epoch 1),
// then next's current generation if it differs (a switch). Every epoch is
// thus MACed by its own current generation.
func signers(base, next *Keyring) []string {
	if base == nil || base.Current == next.Current {
		return []string{next.Current}
	}
	return []string{base.Current, next.Current}
}

// checkMACs checks the MACs of e, whose epoch before is base (nil for
// epoch 1), with the keys of keyFor (nil: not held). It returns how many
// MACs it could check, and an error if the MACs are not exactly those of
// signers(base, e.ring) or one it checked is wrong.
func checkMACs(e *epochObj, base *Keyring, rid [16]byte, keyFor func(gen string) *kek) (checked int, err error) {
	want := signers(base, e.ring)
	var got []string
	for _, m := range e.macs {
		got = append(got, m.Gen)
	}
	if !slicesEqual(got, want) {
		return 0, fmt.Errorf("%w: MACs by generation(s) %s, want %s", errUnauthenticated, strings.Join(got, ","), strings.Join(want, ","))
	}
	for _, m := range e.macs {
		kk := keyFor(m.Gen)
		if kk == nil {
			continue
		}
		mac, _ := hex.DecodeString(m.MAC)
		if !hmac.Equal(mac, epochMACWith(kk.ringKey, rid, e.ring.Epoch, e.prev, kk.gen, e.body)) {
			return checked, fmt.Errorf("%w: the MAC of generation %s does not verify", errUnauthenticated, m.Gen)
		}
		checked++
	}
	return checked, nil
}

func slicesEqual(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// Kinds of bad epochs (wrapped, with object.ErrCorrupt, by the errors of
// Keychain.Problems).
var (
	errIllegal         = errors.New("illegal keyring transition")
	errUnauthenticated = errors.New("not authenticated")
	errBadChain        = errors.New("broken hash chain")
)

// checkTransition says why next cannot follow base, if it cannot (the
// rules of docs/format.md, "Keyring history"). Errors wrap errIllegal.
func checkTransition(base, next *Keyring) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", errIllegal, fmt.Sprintf(format, args...))
	}
	if next.Epoch != base.Epoch+1 {
		return bad("epoch %d follows epoch %d", next.Epoch, base.Epoch)
	}
	if next.RepoID != base.RepoID {
		return bad("repository id changed")
	}
	if next.IDKeyDEK != base.IDKeyDEK {
		return bad("the content-id key changed")
	}
	if len(next.Generations) < len(base.Generations) {
		return bad("a generation disappeared")
	}
	for i := range base.Generations {
		b, n := &base.Generations[i], &next.Generations[i]
		if b.ID != n.ID || b.KDF != n.KDF || b.Check != n.Check || !b.Created.Equal(n.Created) {
			return bad("generation %s disappeared or changed", b.ID)
		}
		if !stateMoves(b.State, n.State) {
			return bad("generation %s went from %s to %s", b.ID, b.State, n.State)
		}
		if err := slotsMove(b, n); err != nil {
			return bad("%v", err)
		}
	}
	added := next.Generations[len(base.Generations):]
	switch {
	case len(added) > 1:
		return bad("%d generations added at once", len(added))
	case len(added) == 1 && next.Current != added[0].ID:
		return bad("generation %s added but not made current", added[0].ID)
	case next.Current != base.Current && (len(added) != 1):
		return bad("generation %s made current, but it is not new", next.Current)
	}
	// A rotation record is made by a switch, kept as it is until the
	// retire commit removes it, and names the newest generation.
	switch br, nr := base.Rotation, next.Rotation; {
	case nr == nil:
	case len(added) == 1:
		if br != nil && br.ID == nr.ID {
			return bad("rotation %s reused by a new switch", nr.ID)
		}
	case br == nil || !rotationsEqual(br, nr):
		return bad("rotation record changed without a switch")
	}
	if nr := next.Rotation; nr != nil && nr.To != next.Generations[len(next.Generations)-1].ID {
		return bad("rotation to %s, which is not the newest generation", nr.To)
	}
	return nil
}

// stateMoves reports whether a generation may go from state a to state b
// in one epoch: it stays, or moves current → retiring → retired.
func stateMoves(a, b State) bool {
	return a == b || (a == StateCurrent && b == StateRetiring) || (a == StateRetiring && b == StateRetired)
}

func rotationsEqual(a, b *Rotation) bool {
	return a.ID == b.ID && slicesEqual(a.From, b.From) && a.To == b.To && a.Started.Equal(b.Started) && a.RequestedBy == b.RequestedBy
}
