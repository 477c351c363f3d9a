package rotation

import (
	"bytes"
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/snapcrypt/snapcrypt/keys"
	"github.com/snapcrypt/snapcrypt/repo/store"
)

// The test seam of the package: a Rotator made here has test hooks (a
// clock, the crash hook). Production Rotators (New) have none.

const testRepoID = "00112233445566778899aabbccddeeff"

// testArgon2 is cheap: tests derive many passphrase KEKs.
var testArgon2 = keys.Argon2Params{T: 1, M: 64, P: 1}

// keyringPrefix is where the keyring epochs live (docs/format.md).
const keyringPrefix = "keyring/"

// proc is one process of a test: a Keychain and its Rotator.
type proc struct {
	*keys.Keychain
	*Rotator
}

// newProc makes kc's Rotator, with test hooks and the test options.
func newProc(kc *keys.Keychain) *proc {
	r := New(kc, testOpts)
	r.t = &testHooks{}
	return &proc{kc, r}
}

// start is Start with options o (set for the later runs too), for the
// tests that do not look at resumed.
func (p *proc) start(ctx context.Context, m *keys.Material, o Options) error {
	p.SetOptions(o)
	_, err := p.Start(ctx, m)
	return err
}

// setClock makes p use now instead of time.Now.
func setClock(p *proc, now func() time.Time) { p.t.now = now }

// setCrash makes p call f at every rotation step.
func setCrash(p *proc, f func(point string) error) { p.t.crash = f }

func rawKey(t testing.TB, b byte) *keys.Material {
	t.Helper()
	m, err := keys.NewRawKey(bytes.Repeat([]byte{b, b ^ 0x5a, 0xc3, 0x11}, 8))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func passKey(t testing.TB, p string) *keys.Material {
	t.Helper()
	m, err := keys.NewPassphrase([]byte(p))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// mustInit makes a repository's keys on st under m (a passphrase with
// keys.DefaultArgon2: Init takes no KDF cost).
func mustInit(t testing.TB, st store.Store, m *keys.Material) *proc {
	t.Helper()
	freshState(t)
	kc, err := keys.Init(context.Background(), st, testRepoID, m)
	if err != nil {
		t.Fatal(err)
	}
	return newProc(kc)
}

// snapshotPrefix returns every object below prefix.
func snapshotPrefix(t testing.TB, st store.Store, prefix string) map[string][]byte {
	t.Helper()
	ctx := context.Background()
	out := map[string][]byte{}
	err := st.List(ctx, prefix, func(i store.Info) error {
		b, err := st.Get(ctx, i.Name)
		out[i.Name] = b
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func equalObjects(a, b map[string][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for n, x := range a {
		if y, ok := b[n]; !ok || !bytes.Equal(x, y) {
			return false
		}
	}
	return true
}

// afterDEKWriteStore calls a hook right after each successful Create of a
// single wrapped DEK (deks/<gen>/<id>): for a Keychain on it, the moment
// between NewDEK's write and its re-read of the keyring.
type afterDEKWriteStore struct {
	store.Store
	after atomic.Pointer[func()]
}

func (s *afterDEKWriteStore) setAfter(f func()) { s.after.Store(&f) }

func (s *afterDEKWriteStore) Create(ctx context.Context, name string, b []byte) error {
	err := s.Store.Create(ctx, name, b)
	if f := s.after.Load(); f != nil && err == nil && strings.HasPrefix(name, "deks/") && !keys.IsPackName(name) {
		(*f)()
	}
	return err
}

// freshState gives the test a state directory of its own (the host's
// keyring records, keys.StateDirEnv): every test repository has the same
// id, and a record of another test's repository would read as a rewritten
// history.
func freshState(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	t.Setenv(keys.StateDirEnv, dir)
	return dir
}
