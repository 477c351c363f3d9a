package repo

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/snapcrypt/snapcrypt/keys"
	"github.com/snapcrypt/snapcrypt/repo/object"
	"github.com/snapcrypt/snapcrypt/repo/store"
)

// A mark is one prune's plan, written before anything is deleted
// (docs/prune.md, step 6): what the plan read and wrote, and what it will
// delete. Writers read every mark before they deduplicate (W2, W3) and
// never reuse a candidate pack. It is a sealed object (kind 4) so that
// only a key holder can make a prune delete anything.

// markPrefix is where marks live: prune/<64 hex>.
const markPrefix = "prune/"

// MaxMarkSize bounds a sealed mark object (about 43 bytes per candidate
// pack: a prune of 1.5 million packs).
const MaxMarkSize = 64 << 20

// PackReason says why a mark lists a pack.
type PackReason byte

// The reasons, as encoded.
const (
	ReasonUnused    PackReason = 1 // indexed, no blob reachable
	ReasonRepacked  PackReason = 2 // its reachable blobs were copied to new packs
	ReasonUnindexed PackReason = 3 // no index object named it when the plan listed data/
)

func (r PackReason) String() string {
	switch r {
	case ReasonUnused:
		return "unused"
	case ReasonRepacked:
		return "repacked"
	case ReasonUnindexed:
		return "unindexed"
	}
	return fmt.Sprintf("reason(%d)", byte(r))
}

// MarkPack is a candidate pack of a mark.
type MarkPack struct {
	ID     ObjectID
	Size   int64 // bytes the object occupied in the store when listed
	Reason PackReason
}

// Mark is the content of a mark object.
type Mark struct {
	Time      time.Time
	Host      string
	PID       int
	Snapshots []ObjectID // the manifests the plan walked
	OldIndex  []ObjectID // I_old: the index objects the plan read
	NewIndex  []ObjectID // I_new: the index objects the prune wrote
	Packs     []MarkPack // candidate packs
	DEKs      [][16]byte // candidate DEK ids
	DEKPacks  []string   // DEK packs holding candidate entries, by object name

	ID ObjectID // the object's id; not encoded
}

const markVersion = 1

// maxMarkHost bounds the host name a mark records.
const maxMarkHost = 255

// maxDEKPackName bounds the name of a DEK pack a mark lists.
const maxDEKPackName = 128

var errMark = errors.New("malformed prune mark")

// MarshalMark encodes a mark's plaintext (docs/format.md, "Prune mark").
func MarshalMark(m *Mark) []byte {
	b := []byte{markVersion}
	b = binary.AppendVarint(b, m.Time.UnixNano())
	host := m.Host
	if len(host) > maxMarkHost {
		host = host[:maxMarkHost]
	}
	b = binary.AppendUvarint(b, uint64(len(host)))
	b = append(b, host...)
	b = binary.AppendUvarint(b, uint64(max(m.PID, 0)))
	for _, ids := range [][]ObjectID{m.Snapshots, m.OldIndex, m.NewIndex} {
		b = binary.AppendUvarint(b, uint64(len(ids)))
		for _, id := range ids {
			b = append(b, id[:]...)
		}
	}
	b = binary.AppendUvarint(b, uint64(len(m.Packs)))
	for _, p := range m.Packs {
		b = append(b, p.ID[:]...)
		b = binary.AppendUvarint(b, uint64(p.Size))
		b = append(b, byte(p.Reason))
	}
	b = binary.AppendUvarint(b, uint64(len(m.DEKs)))
	for _, d := range m.DEKs {
		b = append(b, d[:]...)
	}
	b = binary.AppendUvarint(b, uint64(len(m.DEKPacks)))
	for _, n := range m.DEKPacks {
		b = binary.AppendUvarint(b, uint64(len(n)))
		b = append(b, n...)
	}
	return b
}

// UnmarshalMark decodes a mark's plaintext strictly: another version, a
// varint not in its shortest form, a count larger than the bytes left
// allow (so nothing is allocated beyond the input's size), a reason other
// than the three, a host longer than 255 bytes, a DEK pack name that is
// not one, or trailing bytes are errors.
func UnmarshalMark(b []byte) (*Mark, error) {
	d := &markDecoder{decoder{b: b}}
	if d.byte() != markVersion {
		return nil, fmt.Errorf("%w: unknown version", errMark)
	}
	m := &Mark{}
	m.Time = time.Unix(0, d.canonVarint()).UTC()
	hl := d.canonUvarint()
	if hl > maxMarkHost {
		return nil, fmt.Errorf("%w: host of %d bytes", errMark, hl)
	}
	m.Host = string(d.bytes(hl))
	pid := d.canonUvarint()
	if pid > 1<<31-1 {
		return nil, fmt.Errorf("%w: pid %d", errMark, pid)
	}
	m.PID = int(pid)
	for _, ids := range []*[]ObjectID{&m.Snapshots, &m.OldIndex, &m.NewIndex} {
		c := d.canonUvarint()
		if d.err != nil || c > uint64(len(d.b))/32 {
			return nil, fmt.Errorf("%w: id count", errMark)
		}
		*ids = make([]ObjectID, c)
		for i := range *ids {
			copy((*ids)[i][:], d.bytes(32))
		}
	}
	c := d.canonUvarint()
	if d.err != nil || c > uint64(len(d.b))/34 {
		return nil, fmt.Errorf("%w: pack count", errMark)
	}
	m.Packs = make([]MarkPack, c)
	for i := range m.Packs {
		p := &m.Packs[i]
		copy(p.ID[:], d.bytes(32))
		size := d.canonUvarint()
		if size > 1<<62 {
			return nil, fmt.Errorf("%w: pack size", errMark)
		}
		p.Size = int64(size)
		p.Reason = PackReason(d.byte())
		if d.err == nil && (p.Reason < ReasonUnused || p.Reason > ReasonUnindexed) {
			return nil, fmt.Errorf("%w: pack reason %d", errMark, p.Reason)
		}
	}
	c = d.canonUvarint()
	if d.err != nil || c > uint64(len(d.b))/16 {
		return nil, fmt.Errorf("%w: DEK count", errMark)
	}
	m.DEKs = make([][16]byte, c)
	for i := range m.DEKs {
		copy(m.DEKs[i][:], d.bytes(16))
	}
	c = d.canonUvarint()
	if d.err != nil || c > uint64(len(d.b))/2 {
		return nil, fmt.Errorf("%w: DEK pack count", errMark)
	}
	m.DEKPacks = make([]string, c)
	for i := range m.DEKPacks {
		l := d.canonUvarint()
		if l > maxDEKPackName {
			return nil, fmt.Errorf("%w: DEK pack name of %d bytes", errMark, l)
		}
		name := string(d.bytes(l))
		if d.err == nil && !keys.IsPackName(name) {
			return nil, fmt.Errorf("%w: %q is not a DEK pack name", errMark, name)
		}
		m.DEKPacks[i] = name
	}
	if d.err != nil {
		return nil, fmt.Errorf("%w: %v", errMark, d.err)
	}
	if len(d.b) != 0 {
		return nil, fmt.Errorf("%w: %d trailing bytes", errMark, len(d.b))
	}
	return m, nil
}

// markDecoder accepts only the shortest encoding of each varint, so that
// a mark has one encoding (MarshalMark gives back the bytes decoded).
type markDecoder struct{ decoder }

func (d *markDecoder) canonUvarint() uint64 {
	n := len(d.b)
	v := d.uvarint()
	if d.err == nil && n-len(d.b) != len(binary.AppendUvarint(nil, v)) {
		d.fail()
	}
	return v
}

func (d *markDecoder) canonVarint() int64 {
	n := len(d.b)
	v := d.varint()
	if d.err == nil && n-len(d.b) != len(binary.AppendVarint(nil, v)) {
		d.fail()
	}
	return v
}

func markName(id ObjectID) string { return markPrefix + id.String() }

// Marks reads every mark below prune/, oldest first. A mark that cannot
// be read is an error: its candidates are unknown, so neither a writer
// (which must not reuse them) nor a prune (which would finish it) can go
// on; check names it.
func (r *Repository) Marks(ctx context.Context) ([]*Mark, error) {
	var ids []ObjectID
	err := r.st.List(ctx, markPrefix, func(fi store.Info) error {
		id, err := ParseObjectID(strings.TrimPrefix(fi.Name, markPrefix))
		if err != nil {
			return fmt.Errorf("object %s: not a valid prune mark name", fi.Name)
		}
		ids = append(ids, id)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("listing prune marks: %w", err)
	}
	var ms []*Mark
	for _, id := range ids {
		m, err := r.readMark(ctx, id)
		if errors.Is(err, store.ErrNotExist) {
			continue // finished meanwhile
		}
		if err != nil {
			return nil, err
		}
		ms = append(ms, m)
	}
	sort.SliceStable(ms, func(i, j int) bool { return ms[i].Time.Before(ms[j].Time) })
	return ms, nil
}

func (r *Repository) readMark(ctx context.Context, id ObjectID) (*Mark, error) {
	name := markName(id)
	plain, err := r.openObject(ctx, name, object.KindMark)
	if err != nil {
		return nil, err
	}
	m, err := UnmarshalMark(plain)
	if err != nil {
		return nil, fmt.Errorf("object %s is %w: %v", name, object.ErrCorrupt, err)
	}
	m.ID = id
	return m, nil
}

// writeMark seals m under the DEK given and writes it create-only.
func (r *Repository) writeMark(ctx context.Context, m *Mark, dekID [16]byte, dek []byte) error {
	if _, err := rand.Read(m.ID[:]); err != nil {
		return err
	}
	plain := MarshalMark(m)
	if object.CiphertextSize(int64(len(plain))) > MaxMarkSize {
		return fmt.Errorf("prune: the mark would be %d bytes, more than the %d a mark may hold; prune fewer snapshots' data at once", len(plain), MaxMarkSize)
	}
	_, _, err := r.sealObject(ctx, markName(m.ID), object.KindMark, dekID, dek, plain)
	return err
}

// candidatePacks returns the ids of the candidate packs of marks.
func candidatePacks(marks []*Mark) map[ObjectID]bool {
	c := map[ObjectID]bool{}
	for _, m := range marks {
		for _, p := range m.Packs {
			c[p.ID] = true
		}
	}
	return c
}
