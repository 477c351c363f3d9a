package fs

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/snapcrypt/snapcrypt/repo"
)

// view is one immutable picture of the repository's snapshots; a refresh
// builds a new one and swaps it in.
type view struct {
	snaps  []*snapEntry // readable, oldest first
	byName map[string]*snapEntry
	byID   map[string]*snapEntry // by short id
	byObj  map[repo.ObjectID]*snapEntry
	ids    []string // short ids, sorted
	tags   map[string][]*snapEntry
	tagNms []string // sorted
	latest *snapEntry
	names  []string // directory names, sorted

	blocks uint64 // for statfs: plaintext bytes in packs / 4096
	files  uint64 // files and directories over all snapshots
	at     time.Time
}

type snapEntry struct {
	s     *repo.Snapshot // only ID is set when err is
	name  string         // directory name under snapshots/
	short string         // name under ids/
	ino   uint64
	err   error // the manifest could not be read
}

func (m *mount) current() *view { return m.view.Load() }

// refresh re-reads the snapshot list and then the index (in that order: a
// snapshot's index objects are written before it, so every blob of a listed
// snapshot is then known) and publishes a new view. Objects that cannot be
// read (corrupted, or sealed with a data key no key of the mount unwraps)
// are logged once, listed in status, and tried again next time; only a
// failure to list fails the refresh.
func (m *mount) refresh(ctx context.Context) error {
	m.refreshMu.Lock()
	defer m.refreshMu.Unlock()
	return m.refreshLocked(ctx)
}

func (m *mount) refreshLocked(ctx context.Context) error {
	m.refCount.Add(1)
	snaps, badSnaps, err := m.r.SnapshotsPartial(ctx)
	var badIdx map[repo.ObjectID]error
	if err == nil {
		badIdx, err = m.r.LoadIndexPartial(ctx)
	}
	if err != nil {
		msg := err.Error()
		m.refErr.Store(&msg)
		return err
	}
	m.refErr.Store(nil)
	var problems []Problem
	for _, bad := range []struct {
		prefix string
		errs   map[repo.ObjectID]error
	}{{"snapshots/", badSnaps}, {"index/", badIdx}} {
		for id, err := range bad.errs {
			problems = append(problems, Problem{Object: bad.prefix + id.String(), Error: err.Error()})
			m.noteError(err)
			m.logOnceKey(err.Error(), "cannot read %s%s: %v", bad.prefix, id, err)
		}
	}
	sort.Slice(problems, func(i, j int) bool { return problems[i].Object < problems[j].Object })
	m.problems.Store(&problems)
	m.view.Store(m.buildView(snaps, badSnaps))
	return nil
}

// refreshIfOlder refreshes when the current view is older than age; a
// lookup of a name that is not there calls it, so a snapshot taken a
// moment ago is found without waiting for the timer. Callers that waited
// for another's refresh do not refresh again.
func (m *mount) refreshIfOlder(age time.Duration) {
	defer m.recoverGo("refreshing the snapshot list")
	m.refreshMu.Lock()
	defer m.refreshMu.Unlock()
	if v := m.current(); v != nil && time.Since(v.at) < age {
		return
	}
	if err := m.refreshLocked(m.ctx); err != nil && m.ctx.Err() == nil {
		m.logOnce("re-reading the snapshot list: %v", err)
	}
}

// refresher re-reads the snapshot list every opts.Refresh until the mount
// ends.
func (m *mount) refresher() {
	t := time.NewTicker(m.opts.Refresh)
	defer t.Stop()
	for {
		select {
		case <-m.ctx.Done():
			return
		case <-t.C:
			m.refreshIfOlder(m.opts.Refresh / 2)
		}
	}
}

// buildView names the snapshots. A snapshot keeps the name it got first for
// the life of the mount; a new snapshot whose name is taken gets its short
// id appended. Called with refreshMu held.
func (m *mount) buildView(snaps []*repo.Snapshot, unreadable map[repo.ObjectID]error) *view {
	v := &view{byName: map[string]*snapEntry{}, byID: map[string]*snapEntry{}, byObj: map[repo.ObjectID]*snapEntry{}, tags: map[string][]*snapEntry{}, at: time.Now()}
	for _, s := range snaps {
		name, ok := m.names[s.ID]
		if !ok {
			name = m.nameFor(s)
			m.names[s.ID] = name
			m.nameUsed[name] = true
		}
		e := &snapEntry{s: s, name: name, ino: snapshotIno(s.ID)}
		v.snaps = append(v.snaps, e)
		v.byName[name] = e
		v.names = append(v.names, name)
		for _, t := range s.Tags {
			t = cleanName(t)
			if t == "" {
				continue
			}
			if len(v.tags[t]) == 0 {
				v.tagNms = append(v.tagNms, t)
			}
			v.tags[t] = append(v.tags[t], e)
		}
		v.files += s.Files + s.Dirs
	}
	all := v.snaps
	for id, err := range unreadable {
		// Shown under an interim name: reading it answers EIO, and
		// status says why (which key generation it needs).
		e := &snapEntry{s: &repo.Snapshot{ID: id}, name: "unreadable-" + id.String()[:8], ino: snapshotIno(id), err: err}
		if _, taken := v.byName[e.name]; taken {
			e.name = "unreadable-" + id.String()
		}
		v.byName[e.name] = e
		v.names = append(v.names, e.name)
		all = append(all, e)
	}
	if len(v.snaps) > 0 {
		v.latest = v.snaps[len(v.snaps)-1]
		if _, taken := v.byName["latest"]; !taken {
			v.names = append(v.names, "latest")
		}
	}
	sort.Strings(v.names)
	sort.Strings(v.tagNms)
	for _, t := range v.tagNms {
		sort.Slice(v.tags[t], func(i, j int) bool { return v.tags[t][i].name < v.tags[t][j].name })
	}
	// Short ids: 8 hex characters, longer where two snapshots share them.
	full := make([]string, len(all))
	for i, e := range all {
		full[i] = e.s.ID.String()
	}
	sort.Strings(full)
	byFull := map[string]*snapEntry{}
	for _, e := range all {
		byFull[e.s.ID.String()] = e
	}
	for i, id := range full {
		n := 8
		for _, other := range []int{i - 1, i + 1} {
			if other < 0 || other >= len(full) {
				continue
			}
			if c := commonPrefix(id, full[other]) + 1; c > n {
				n = c
			}
		}
		e := byFull[id]
		v.byObj[e.s.ID] = e
		e.short = id[:min(n, len(id))]
		v.byID[e.short] = e
		v.ids = append(v.ids, e.short)
	}
	sort.Strings(v.ids)
	v.blocks = (m.r.PackedBytes() + 4095) / 4096
	return v
}

func commonPrefix(a, b string) int {
	n := 0
	for n < len(a) && n < len(b) && a[n] == b[n] {
		n++
	}
	return n
}

// nameFor picks the directory name of a snapshot new to this mount.
func (m *mount) nameFor(s *repo.Snapshot) string {
	base := cleanName(s.Name)
	if base == "" {
		base = s.Time.UTC().Format("2006-01-02T15:04:05Z")
	}
	if base != "latest" && !m.nameUsed[base] {
		return base
	}
	name := base + "-" + s.ShortID()
	if !m.nameUsed[name] {
		return name
	}
	return base + "-" + s.ID.String()
}

// cleanName makes a snapshot name or tag usable as one path component.
func cleanName(s string) string {
	s = strings.Map(func(r rune) rune {
		if r == '/' || r == 0 {
			return '_'
		}
		return r
	}, s)
	if s == "." || s == ".." {
		return ""
	}
	return s
}

func (e *snapEntry) String() string { return fmt.Sprintf("%s (%s)", e.name, e.s.ShortID()) }
