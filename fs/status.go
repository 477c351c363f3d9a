package fs

import (
	"context"
	"encoding/json"
	"maps"
	"slices"
	"time"

	"github.com/snapcrypt/snapcrypt/keys"
	"github.com/snapcrypt/snapcrypt/repo"
)

// StatusVersion is the version of the .ctl/status format. Fields are only
// ever added within a version.
const StatusVersion = 1

// Status is the content of .ctl/status (JSON).
type Status struct {
	Version    int    `json:"version"`
	Repository string `json:"repository"` // repository id
	// Format is the repository's format version (its config's) and
	// Compression its default compression, "off" in format version 1.
	Format      int       `json:"format_version"`
	Compression string    `json:"compression,omitempty"`
	Mountpoint  string    `json:"mountpoint"`
	MountedAt   time.Time `json:"mounted_at"`

	Snapshots    int       `json:"snapshots"`
	Latest       string    `json:"latest,omitempty"` // directory name of the newest
	RefreshedAt  time.Time `json:"refreshed_at"`     // of the snapshot list
	Refreshes    uint64    `json:"refreshes"`        // of the snapshot list, so far
	RefreshError string    `json:"refresh_error,omitempty"`

	// Unreadable lists the snapshot manifests and index objects the last
	// refresh could not read; such a snapshot shows as
	// snapshots/unreadable-<short id>, which answers EIO.
	Unreadable []Problem `json:"unreadable"`

	Keys KeysStatus `json:"keys"`

	// Unused is the space of packs that no index names: an interrupted
	// snapshot's, or one in flight (docs/prune.md, "Unused space
	// today"). Counting it lists data/, at most once per refresh
	// interval; blobs no snapshot reaches need a walk and are counted by
	// check only.
	Unused UnusedStatus `json:"unused"`

	Cache      map[string]repo.CacheStats `json:"cache"`
	ReadErrors ReadErrors                 `json:"read_errors"`
	// EIO counts the requests answered EIO; Panics the internal errors
	// among them.
	EIO    uint64 `json:"eio"`
	Panics uint64 `json:"panics"`

	// Kernel tells how the kernel asks for snapshot files.
	Kernel KernelStatus `json:"kernel"`

	// Sections holds what Options.StatusSections add, each under its
	// own top-level key.
	Sections map[string]any `json:"-"`
}

// KernelStatus tells how the kernel asks for snapshot files.
type KernelStatus struct {
	// NoOpen: the kernel opens and closes files without asking the mount
	// (as root, from the first open of a file on).
	NoOpen bool `json:"no_open"`
	// Opens and Reads count the OPEN and READ requests for files;
	// StoredAhead the files stored into the kernel's cache ahead of a
	// tree walk (fs/ahead.go).
	Opens       uint64 `json:"opens"`
	Reads       uint64 `json:"reads"`
	StoredAhead uint64 `json:"stored_ahead"`
	// Lean tells whether directories are listed lean now (their files
	// with no node: fs/lean.go); ListedLean counts the lean listings,
	// LeanMisses the times a walk then asked for a file left out.
	Lean       bool   `json:"lean"`
	ListedLean uint64 `json:"listed_lean"`
	LeanMisses uint64 `json:"lean_misses"`
}

// UnusedStatus is unused space as the last listing of data/ found it.
type UnusedStatus struct {
	repo.Unindexed
	CountedAt time.Time `json:"counted_at"`
	Error     string    `json:"error,omitempty"` // why the listing failed
}

// KeysStatus tells the key generations and whether this mount holds them.
type KeysStatus struct {
	Epoch       uint64          `json:"epoch"`
	Current     string          `json:"current"`
	Generations []KeyGeneration `json:"generations"`
	Rotation    *keys.Rotation  `json:"rotation,omitempty"` // in progress
	// Missing lists the current and retiring generations whose key this
	// mount does not hold: data keys wrapped only under them cannot be
	// read.
	Missing []string `json:"missing"`
	// Errors are the distinct data-key errors met while reading, each
	// naming the key generation that would be needed, then the problems
	// of the keyring's history (keys.Keychain.Problems), each naming the
	// epoch.
	Errors []string `json:"errors"`
}

// KeyGeneration is one key generation of the keyring.
type KeyGeneration struct {
	ID      string     `json:"id"`
	State   keys.State `json:"state"`
	KDF     string     `json:"kdf"`
	Created time.Time  `json:"created"`
	Held    bool       `json:"held"` // this mount holds its key
	// Slots are the generation's key slots by id and kind, never a secret.
	Slots []keys.SlotInfo `json:"slots"`
}

// Problem is an object that could not be read, and why.
type Problem struct {
	Object string `json:"object"`
	Error  string `json:"error"`
}

// ReadErrors are the repository's read errors: how many, and the latest.
type ReadErrors struct {
	Count  uint64   `json:"count"`
	Recent []string `json:"recent"`
}

// MarshalJSON puts Sections beside the fixed fields.
func (s Status) MarshalJSON() ([]byte, error) {
	type plain Status
	b, err := json.Marshal(plain(s))
	if err != nil || len(s.Sections) == 0 {
		return b, err
	}
	var all map[string]json.RawMessage
	if err := json.Unmarshal(b, &all); err != nil {
		return nil, err
	}
	for k, v := range s.Sections {
		if _, taken := all[k]; taken {
			continue
		}
		raw, err := json.Marshal(v)
		if err != nil {
			return nil, err
		}
		all[k] = raw
	}
	return json.Marshal(all)
}

// status gathers the figures.
func (m *mount) status() Status {
	s := Status{
		Version:    StatusVersion,
		Repository: m.r.Config().ID,
		Mountpoint: m.mountpoint,
		MountedAt:  m.started.UTC(),
		Cache:      m.r.CacheStats(),
		EIO:        m.eio.Load(),
		Panics:     m.panics.Load(),
		Refreshes:  m.refCount.Load(),
		Format:     m.r.Config().Version,
		Kernel: KernelStatus{NoOpen: m.noOpen.Load(), Opens: m.kstats.opens.Load(),
			Reads: m.kstats.reads.Load(), StoredAhead: m.kstats.storedAhead.Load(),
			Lean: m.list.lean.Load(), ListedLean: m.list.listedLean.Load(), LeanMisses: m.list.misses.Load()},
	}
	if c, ok := m.r.(interface{ Compression() repo.Compression }); ok {
		s.Compression = c.Compression().String()
	}
	if v := m.current(); v != nil {
		s.Snapshots = len(v.snaps)
		s.RefreshedAt = v.at.UTC()
		if v.latest != nil {
			s.Latest = v.latest.name
		}
	}
	if e := m.refErr.Load(); e != nil {
		s.RefreshError = *e
	}
	s.Unreadable = []Problem{}
	if p := m.problems.Load(); p != nil {
		s.Unreadable = append(s.Unreadable, *p...)
	}
	s.ReadErrors.Count, s.ReadErrors.Recent = m.r.ReadErrors()
	if s.ReadErrors.Recent == nil {
		s.ReadErrors.Recent = []string{}
	}

	ring := m.r.Keyring()
	ks := KeysStatus{Epoch: ring.Epoch, Current: ring.Current, Rotation: ring.Rotation,
		Generations: []KeyGeneration{}, Missing: []string{}}
	for _, g := range ring.Generations {
		held := m.r.HoldsKey(g.ID)
		ks.Generations = append(ks.Generations, KeyGeneration{ID: g.ID, State: g.State, KDF: g.KDF.Type, Created: g.Created.UTC(), Held: held, Slots: g.SlotInfos()})
		if !held && (g.State == keys.StateCurrent || g.State == keys.StateRetiring) {
			ks.Missing = append(ks.Missing, g.ID)
		}
	}
	m.errMu.Lock()
	ks.Errors = append([]string{}, m.keyErrs...)
	m.errMu.Unlock()
	for _, p := range m.r.KeyringProblems() { // the keyring's history
		ks.Errors = append(ks.Errors, p.Error())
	}
	s.Keys = ks

	if len(m.opts.StatusSections) > 0 {
		s.Sections = map[string]any{}
		for _, name := range slices.Sorted(maps.Keys(m.opts.StatusSections)) {
			s.Sections[name] = m.opts.StatusSections[name]()
		}
	}
	return s
}

// unused returns the unused space, counted again when the last count is
// older than the refresh interval.
func (m *mount) unused() UnusedStatus {
	m.unusedMu.Lock()
	defer m.unusedMu.Unlock()
	if !m.unusedAt.IsZero() && time.Since(m.unusedAt) < m.opts.Refresh {
		return m.unusedLast
	}
	u, err := m.r.Unindexed(m.ctx)
	m.unusedAt = time.Now()
	m.unusedLast = UnusedStatus{Unindexed: u, CountedAt: m.unusedAt.UTC()}
	if err != nil {
		m.unusedLast.Error = err.Error()
	}
	return m.unusedLast
}

func (m *mount) statusJSON(ctx context.Context) ([]byte, error) {
	s := m.status()
	s.Unused = m.unused()
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}
