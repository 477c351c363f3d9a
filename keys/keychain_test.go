package keys

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/snapcrypt/snapcrypt/repo/object"
	"github.com/snapcrypt/snapcrypt/repo/store"
	"github.com/snapcrypt/snapcrypt/repo/store/mem"
)

const testRepoID = "00112233445566778899aabbccddeeff"

func rawKey(t testing.TB, b byte) *Material {
	t.Helper()
	m, err := NewRawKey(bytes.Repeat([]byte{b, b ^ 0x5a, 0xc3, 0x11}, 8))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func passKey(t testing.TB, p string) *Material {
	t.Helper()
	m, err := NewPassphrase([]byte(p))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func mustInit(t testing.TB, st store.Store, m *Material) *Keychain {
	t.Helper()
	freshState(t)
	k, err := Init(context.Background(), st, testRepoID, m)
	if err != nil {
		t.Fatal(err)
	}
	return k
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

func TestInitOpen(t *testing.T) {
	ctx := context.Background()
	for _, m := range []*Material{rawKey(t, 1), passKey(t, "hunter2")} {
		st := mem.New()
		k := mustInit(t, st, m)
		r := k.Keyring()
		if r.Epoch != 1 || len(r.Generations) != 1 || r.Generations[0].State != StateCurrent || r.Current != r.Generations[0].ID {
			t.Fatalf("bad initial keyring %+v", r)
		}
		wantKDF := KDFRaw
		if m.IsPassphrase() {
			wantKDF = KDFArgon2id
		}
		if r.Generations[0].KDF.Type != wantKDF {
			t.Errorf("kdf %q, want %q", r.Generations[0].KDF.Type, wantKDF)
		}
		idk, err := k.IDKey(ctx)
		if err != nil || len(idk) != KeySize {
			t.Fatalf("IDKey: %v", err)
		}
		id, dek, err := k.NewDEK(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Init(ctx, st, testRepoID, m); err == nil {
			t.Fatal("Init over an existing keyring succeeded")
		}
		// A fresh Keychain from a separate material value with the same key.
		var m2 *Material
		if m.IsPassphrase() {
			m2 = passKey(t, "hunter2")
		} else {
			m2 = rawKey(t, 1)
		}
		k2, err := Open(ctx, st, testRepoID, rawKey(t, 9), m2)
		if err != nil {
			t.Fatal(err)
		}
		got, err := k2.DEK(ctx, id)
		if err != nil || !bytes.Equal(got, dek) {
			t.Fatalf("DEK after reopen: %v", err)
		}
		idk2, err := k2.IDKey(ctx)
		if err != nil || !bytes.Equal(idk, idk2) {
			t.Fatalf("IDKey after reopen: %v", err)
		}
		_, err = Open(ctx, st, testRepoID, rawKey(t, 2), passKey(t, "hunter3"))
		if !errors.Is(err, ErrNoKeyMatches) || !strings.Contains(err.Error(), "no key matches this repository") {
			t.Fatalf("Open with wrong keys: %v", err)
		}
		if _, err := Open(ctx, st, "ffffffffffffffffffffffffffffffff", m2); !errors.Is(err, object.ErrCorrupt) {
			t.Fatalf("Open with another repository id: %v", err)
		}
	}
}

func TestOpenNoKeyring(t *testing.T) {
	_, err := Open(context.Background(), mem.New(), testRepoID, rawKey(t, 1))
	if !errors.Is(err, store.ErrNotExist) {
		t.Fatalf("Open of empty store: %v", err)
	}
}

func TestDEKErrors(t *testing.T) {
	ctx := context.Background()
	st := mem.New()
	k := mustInit(t, st, rawKey(t, 1))
	id, _, err := k.NewDEK(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var missing [16]byte
	missing[0] = 7
	if _, err := k.DEK(ctx, missing); !errors.Is(err, ErrDEKUnavailable) || !errors.Is(err, store.ErrNotExist) {
		t.Fatalf("missing DEK: %v", err)
	}
	// Corrupt the wrapped DEK; a fresh Keychain (empty cache) must name the object.
	r := k.Keyring()
	gen, _ := parseGenID(r.Current)
	name := dekName(gen, id)
	b, _ := st.Get(ctx, name)
	b[len(b)-1] ^= 1
	st.Put(ctx, name, b)
	k2, err := Open(ctx, st, testRepoID, rawKey(t, 1))
	if err != nil {
		t.Fatal(err)
	}
	_, err = k2.DEK(ctx, id)
	if !errors.Is(err, object.ErrCorrupt) || !strings.Contains(err.Error(), name) || !strings.Contains(err.Error(), "corrupted or tampered with") {
		t.Fatalf("corrupt DEK: %v", err)
	}
	// The cached copy in k is unaffected.
	if _, err := k.DEK(ctx, id); err != nil {
		t.Fatalf("cached DEK: %v", err)
	}
}

func TestAddKey(t *testing.T) {
	ctx := context.Background()
	st := mem.New()
	a := rawKey(t, 1)
	k := mustInit(t, st, a)
	if err := k.AddKey(ctx, rawKey(t, 1)); err != nil {
		t.Fatalf("AddKey of a held key: %v", err)
	}
	if err := k.AddKey(ctx, rawKey(t, 2)); !errors.Is(err, ErrNoKeyMatches) {
		t.Fatalf("AddKey of a foreign key: %v", err)
	}
	if err := k.AddKey(ctx, nil); !errors.Is(err, ErrBadKey) {
		t.Fatalf("AddKey(nil): %v", err)
	}
}

func TestConcurrentNewDEK(t *testing.T) {
	ctx := context.Background()
	st := mem.New()
	k := mustInit(t, st, rawKey(t, 1))
	var wg sync.WaitGroup
	var mu sync.Mutex
	deks := map[[16]byte][]byte{}
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 20 {
				id, dek, err := k.NewDEK(ctx)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				deks[id] = dek
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	k2, err := Open(ctx, st, testRepoID, rawKey(t, 1))
	if err != nil {
		t.Fatal(err)
	}
	for id, dek := range deks {
		got, err := k2.DEK(ctx, id)
		if err != nil || !bytes.Equal(got, dek) {
			t.Fatalf("DEK %x: %v", id, err)
		}
	}
	if n := len(snapshotPrefix(t, st, "deks/")); n != len(deks)+1 {
		t.Fatalf("%d wrapped DEKs stored, want %d", n, len(deks)+1)
	}
}

func TestWrappedDEKBinding(t *testing.T) {
	// A wrapped DEK moved to another id does not unwrap.
	ctx := context.Background()
	st := mem.New()
	k := mustInit(t, st, rawKey(t, 1))
	id, _, _ := k.NewDEK(ctx)
	gen, _ := parseGenID(k.Keyring().Current)
	b, _ := st.Get(ctx, dekName(gen, id))
	var other [16]byte
	copy(other[:], id[:])
	other[15] ^= 1
	st.Create(ctx, dekName(gen, other), b)
	k2, _ := Open(ctx, st, testRepoID, rawKey(t, 1))
	if _, err := k2.DEK(ctx, other); !errors.Is(err, object.ErrCorrupt) {
		t.Fatalf("moved DEK: %v", err)
	}
	if !strings.Contains(hex.EncodeToString(b), hex.EncodeToString([]byte(wrapMagic))) {
		t.Fatal("no magic")
	}
}
