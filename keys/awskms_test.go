package keys

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/smithy-go/middleware"

	"github.com/snapcrypt/snapcrypt/internal/kmstest"
	"github.com/snapcrypt/snapcrypt/repo/store"
	"github.com/snapcrypt/snapcrypt/repo/store/mem"
)

// startKMS starts local-kms and points this process's AWS SDK at it.
func startKMS(t *testing.T) *kmstest.Server {
	t.Helper()
	s := kmstest.Start(t)
	s.SetEnv(t)
	return s
}

// kmsKey loads the spec awskms:key as an operator's key.
func kmsMaterial(t testing.TB, key string) *Material {
	t.Helper()
	sp, err := ParseSpec("awskms:" + key)
	if err != nil {
		t.Fatal(err)
	}
	m, err := sp.Load()
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// kmsRecord returns the awskms KDF of generation gen of the stored keyring.
func kmsRecord(t *testing.T, st store.Store, gen string) KDF {
	t.Helper()
	r, err := LoadKeyring(context.Background(), st)
	if err != nil {
		t.Fatal(err)
	}
	g := r.Generation(gen)
	if g == nil || g.KDF.Type != KDFAWSKMS {
		t.Fatalf("generation %s: %+v, want an awskms kdf", gen, g)
	}
	return g.KDF
}

func TestAWSKMSSpec(t *testing.T) {
	for _, s := range []string{"awskms:", "awskms:alias/a b", "awskms:alias/\x01", "awskms:" + strings.Repeat("k", maxKMSKey+1)} {
		if _, err := ParseSpec(s); !errors.Is(err, ErrBadKey) {
			t.Errorf("ParseSpec(%q): %v, want a key error", s, err)
		}
	}
	sp, err := ParseSpec("awskms:alias/backup")
	if err != nil || sp.Kind != SpecAWSKMS || sp.Path != "alias/backup" || sp.String() != "awskms:alias/backup" || !IsExplicitSpec("awskms:alias/backup") {
		t.Fatalf("ParseSpec: %+v, %v", sp, err)
	}
	// No region anywhere: a key id alone cannot be used, an ARN names one.
	for _, k := range []string{"AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE"} {
		t.Setenv(k, "")
	}
	t.Setenv("AWS_CONFIG_FILE", "/dev/null")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
	if _, err := sp.Load(); !errors.Is(err, ErrBadKey) || !strings.Contains(err.Error(), "no AWS region") {
		t.Fatalf("Load without a region: %v", err)
	}
	m, err := ParseSpec("awskms:" + kmstest.ARN("bc436485-5092-42b8-92a3-0aa8b93536dc"))
	if err != nil {
		t.Fatal(err)
	}
	mat, err := m.Load()
	if err != nil || mat.kms.client.(*kms.Client).Options().Region != kmstest.Region || !mat.IsKMS() || mat.IsPassphrase() {
		t.Fatalf("Load of an ARN without a region: %v", err)
	}
}

// TestAWSKMSInitOpen: a repository made with a KMS key records only the
// KMS ciphertext (keyring version 3), the process that made it asks KMS
// nothing more, and another process opens it with one Decrypt, through
// the endpoint AWS_ENDPOINT_URL_KMS names.
func TestAWSKMSInitOpen(t *testing.T) {
	s := startKMS(t)
	ctx := context.Background()
	st := mem.New()
	m := kmsMaterial(t, s.AliasA)
	k := mustInit(t, st, m)
	if s.Calls("Encrypt") != 1 || s.Calls("Decrypt") != 0 {
		t.Fatalf("init: %d Encrypt, %d Decrypt calls reached AWS_ENDPOINT_URL_KMS, want 1 and 0", s.Calls("Encrypt"), s.Calls("Decrypt"))
	}
	deks := makeDEKs(t, k, 5)
	r := k.Keyring()
	if r.Version != keyringVersion3 {
		t.Fatalf("keyring version %d, want %d", r.Version, keyringVersion3)
	}
	rec := kmsRecord(t, st, r.Current)
	if rec.Key != s.AliasA {
		t.Fatalf("record names key %q, want the alias as given", rec.Key)
	}
	// The record is bound to repository and generation: KMS decrypts it
	// only with that encryption context.
	blob, _ := base64.StdEncoding.DecodeString(rec.Ciphertext)
	rid, _ := parseRepoID(testRepoID)
	gen, _ := parseGenID(r.Current)
	direct := s.Client()
	for _, ec := range []map[string]string{nil, {kmsContextRepository: testRepoID, kmsContextGeneration: "0000000000000000"}} {
		if _, err := direct.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: blob, EncryptionContext: ec}); err == nil {
			t.Fatalf("the record decrypts with context %v", ec)
		}
	}
	out, err := direct.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: blob, EncryptionContext: kmsContext(rid, gen)})
	if err != nil || len(out.Plaintext) != KeySize {
		t.Fatalf("the record does not decrypt with its context: %v", err)
	}
	// Nothing of the plaintext is in the repository.
	for name, b := range snapshotPrefix(t, st, "") {
		for _, enc := range [][]byte{out.Plaintext, []byte(hex.EncodeToString(out.Plaintext)), []byte(base64.StdEncoding.EncodeToString(out.Plaintext))} {
			if bytes.Contains(b, enc) {
				t.Fatalf("%s holds the KMS plaintext", name)
			}
		}
	}

	// Another process: one Decrypt, however much it reads.
	m2 := kmsMaterial(t, s.AliasA)
	k2, err := Open(ctx, st, testRepoID, m2)
	if err != nil {
		t.Fatal(err)
	}
	for id, want := range deks {
		got, err := k2.DEK(ctx, id)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("DEK %x: %v", id, err)
		}
	}
	makeDEKs(t, k2, 3)
	for range 3 {
		if err := k2.Refresh(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := Open(ctx, st, testRepoID, m2); err != nil {
		t.Fatal(err)
	}
	if n := s.Calls("Decrypt"); n != 1 {
		t.Fatalf("%d Decrypt calls, want 1", n)
	}

	// The same key as another string (its ARN) is another key to the
	// keyring: it is not asked, and nothing matches.
	_, err = Open(ctx, st, testRepoID, kmsMaterial(t, kmstest.ARN(s.KeyB)))
	if !errors.Is(err, ErrNoKeyMatches) || s.Calls("Decrypt") != 1 {
		t.Fatalf("open with another key: %v (%d Decrypt calls)", err, s.Calls("Decrypt"))
	}
}

// TestAWSKMSRotate: a rotation from a file key to a KMS key and on to
// another KMS key; a process holding both KMS keys asks KMS once per
// generation.
func TestAWSKMSRotate(t *testing.T) {
	s := startKMS(t)
	ctx := context.Background()
	st := mem.New()
	k := mustInit(t, st, rawKey(t, 1))
	deks := makeDEKs(t, k, 20)
	a, b := kmsMaterial(t, s.AliasA), kmsMaterial(t, kmstest.ARN(s.KeyB))
	rotateTo(t, k, a)
	rotateTo(t, k, b)
	if s.Calls("Decrypt") != 0 {
		t.Fatalf("the rotating process made %d Decrypt calls, want 0", s.Calls("Decrypt"))
	}
	r := k.Keyring()
	if len(r.Generations) != 3 || r.Generations[0].KDF.Type != KDFRaw || r.Generations[1].KDF.Key != s.AliasA || r.Generations[2].KDF.Key != kmstest.ARN(s.KeyB) {
		t.Fatalf("generations: %+v", r.Generations)
	}
	k2, err := Open(ctx, st, testRepoID, kmsMaterial(t, s.AliasA), kmsMaterial(t, kmstest.ARN(s.KeyB)))
	if err != nil {
		t.Fatal(err)
	}
	for id, want := range deks {
		if got, err := k2.DEK(ctx, id); err != nil || !bytes.Equal(got, want) {
			t.Fatalf("DEK %x: %v", id, err)
		}
	}
	// alias A's generation is retired: its MACs are checked (one Decrypt
	// of it, nothing kept), B's is current (one Decrypt).
	if n := s.Calls("Decrypt"); n != 2 {
		t.Fatalf("%d Decrypt calls, want 2", n)
	}
	// The file key alone opens nothing now.
	if _, err := Open(ctx, st, testRepoID, rawKey(t, 1)); !errors.Is(err, ErrNoKeyMatches) {
		t.Fatalf("open with the retired file key: %v", err)
	}
}

// openErr opens st with a fresh Material for key and returns the error.
func openErr(t *testing.T, st store.Store, key string) error {
	t.Helper()
	_, err := Open(context.Background(), st, testRepoID, kmsMaterial(t, key))
	if err == nil {
		t.Fatal("open succeeded")
	}
	if !errors.Is(err, ErrBadKey) || !errors.Is(err, ErrNoKeyMatches) {
		t.Errorf("%v: want an error wrapping ErrBadKey and ErrNoKeyMatches", err)
	}
	return err
}

func TestAWSKMSErrors(t *testing.T) {
	s := startKMS(t)
	ctx := context.Background()
	st := mem.New()
	mustInit(t, st, kmsMaterial(t, s.AliasA))

	t.Run("unreachable", func(t *testing.T) {
		s.Down()
		defer s.Up(t)
		err := openErr(t, st, s.AliasA)
		if !strings.Contains(err.Error(), "KMS endpoint "+s.Endpoint) || !strings.Contains(err.Error(), "unreachable") {
			t.Fatalf("%v: want it to name the endpoint as unreachable", err)
		}
	})
	t.Run("access denied", func(t *testing.T) {
		s.Inject("Decrypt", "AccessDeniedException", 1)
		if err := openErr(t, st, s.AliasA); !strings.Contains(err.Error(), "access denied") {
			t.Fatalf("%v: want access denied", err)
		}
	})
	t.Run("throttled", func(t *testing.T) {
		s.Inject("Decrypt", "ThrottlingException", 2)
		before := s.Calls("Decrypt")
		if _, err := Open(ctx, st, testRepoID, kmsMaterial(t, s.AliasA)); err != nil {
			t.Fatalf("two throttled attempts are retried: %v", err)
		}
		if n := s.Calls("Decrypt") - before; n != 3 {
			t.Fatalf("%d attempts, want 3", n)
		}
		s.Inject("Decrypt", "ThrottlingException", 10)
		defer s.ClearInjected()
		if err := openErr(t, st, s.AliasA); !strings.Contains(err.Error(), "throttling") || !strings.Contains(err.Error(), "attempts") {
			t.Fatalf("%v: want throttling named", err)
		}
	})
	t.Run("disabled", func(t *testing.T) {
		s.DisableKey(t, s.KeyA)
		defer s.EnableKey(t, s.KeyA)
		err := openErr(t, st, s.AliasA)
		var d *types.DisabledException
		if !errors.As(err, &d) || !strings.Contains(err.Error(), "disabled") {
			t.Fatalf("%v: want the key named disabled", err)
		}
	})
	t.Run("not found", func(t *testing.T) {
		_, err := Init(ctx, mem.New(), testRepoID, kmsMaterial(t, "alias/no-such-key"))
		var nf *types.NotFoundException
		if !errors.Is(err, ErrBadKey) || !errors.As(err, &nf) || !strings.Contains(err.Error(), "not found") {
			t.Fatalf("init with a missing key: %v", err)
		}
	})
	t.Run("wrong region", func(t *testing.T) {
		arn := strings.Replace(kmstest.ARN(s.KeyA), kmstest.Region, "us-east-1", 1)
		_, err := Init(ctx, mem.New(), testRepoID, kmsMaterial(t, arn))
		var nf *types.NotFoundException
		if !errors.As(err, &nf) || !strings.Contains(err.Error(), "not found (check the key id or alias and the region)") {
			t.Fatalf("init with the key's ARN in another region: %v", err)
		}
	})
	t.Run("another repository's ciphertext", func(t *testing.T) {
		// The keyring of st gets the KMS record of another repository with
		// the same id and key: its context names another generation.
		other := mem.New()
		freshState(t)
		mustInit(t, other, kmsMaterial(t, s.AliasA))
		st2 := mem.New()
		mustInit(t, st2, kmsMaterial(t, s.AliasA))
		swapCiphertext(t, st2, kmsRecord(t, other, mustRing(t, other).Current).Ciphertext)
		freshState(t)
		err := openErr(t, st2, s.AliasA)
		var ic *types.InvalidCiphertextException
		if !errors.As(err, &ic) || !strings.Contains(err.Error(), "refused the ciphertext") {
			t.Fatalf("%v: want KMS's refusal named", err)
		}
	})
	t.Run("a ciphertext under another key", func(t *testing.T) {
		// Made by someone who may use key B, with the right context: the
		// Decrypt names key A, the recorded one, and KMS refuses it.
		st2 := mem.New()
		freshState(t)
		r := mustInit(t, st2, kmsMaterial(t, s.AliasA)).Keyring()
		rid, _ := parseRepoID(testRepoID)
		gen, _ := parseGenID(r.Current)
		out, err := s.Client().Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String(s.KeyB), Plaintext: make([]byte, KeySize), EncryptionContext: kmsContext(rid, gen)})
		if err != nil {
			t.Fatal(err)
		}
		swapCiphertext(t, st2, base64.StdEncoding.EncodeToString(out.CiphertextBlob))
		freshState(t)
		if err := openErr(t, st2, s.AliasA); !strings.Contains(err.Error(), "refused the ciphertext") {
			t.Fatalf("%v: want KMS's refusal named", err)
		}
	})
	t.Run("a failure is not retried at once", func(t *testing.T) {
		s.DisableKey(t, s.KeyA)
		m := kmsMaterial(t, s.AliasA)
		before := s.Calls("Decrypt")
		for range 3 {
			if _, err := Open(ctx, st, testRepoID, m); err == nil {
				t.Fatal("open succeeded")
			}
		}
		s.EnableKey(t, s.KeyA)
		if _, err := Open(ctx, st, testRepoID, m); err == nil {
			t.Fatal("open succeeded within kmsRetryAfter of the failure")
		}
		if n := s.Calls("Decrypt") - before; n != 1 {
			t.Fatalf("%d Decrypt calls for four opens, want 1", n)
		}
		if _, err := Open(ctx, st, testRepoID, kmsMaterial(t, s.AliasA)); err != nil {
			t.Fatalf("a new key Material asks again: %v", err)
		}
	})
}

func mustRing(t *testing.T, st store.Store) *Keyring {
	t.Helper()
	r, err := LoadKeyring(context.Background(), st)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// swapCiphertext puts ct in place of the KMS ciphertext in st's only
// keyring epoch (leaving its MAC as it was).
func swapCiphertext(t *testing.T, st store.Store, ct string) {
	t.Helper()
	ctx := context.Background()
	name := keyringName(1)
	b, err := st.Get(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	old := kmsRecord(t, st, mustRing(t, st).Current).Ciphertext
	q := func(s string) string { j, _ := json.Marshal(s); return string(j) }
	nb := bytes.Replace(b, []byte(q(old)), []byte(q(ct)), 1)
	if bytes.Equal(nb, b) {
		t.Fatal("ciphertext not found in the epoch")
	}
	if err := st.Delete(ctx, name); err != nil {
		t.Fatal(err)
	}
	if err := st.Create(ctx, name, nb); err != nil {
		t.Fatal(err)
	}
	if _, err := parseEpoch(nb); err != nil {
		t.Fatalf("the swapped epoch does not parse: %v", err)
	}
}

// TestAWSKMSOpenedSurvivesOutage: a Keychain reading many DEKs of a KMS
// generation makes one Decrypt (counted in the SDK's middleware stack,
// NewAWSKMSKey's options, not at a server); once the generation is open,
// KMS is not needed to read or write.
func TestAWSKMSOpenedSurvivesOutage(t *testing.T) {
	s := startKMS(t)
	ctx := context.Background()
	st := mem.New()
	deks := makeDEKs(t, mustInit(t, st, kmsMaterial(t, s.AliasB)), 200)
	var n atomic.Int64
	m, err := NewAWSKMSKey(ctx, s.AliasB, func(o *kms.Options) {
		o.APIOptions = append(o.APIOptions, countCalls("Decrypt", &n))
	})
	if err != nil {
		t.Fatal(err)
	}
	k1, err := Open(ctx, st, testRepoID, m)
	if err != nil {
		t.Fatal(err)
	}
	read := func() {
		t.Helper()
		for id, want := range deks {
			if got, err := k1.DEK(ctx, id); err != nil || !bytes.Equal(got, want) {
				t.Fatalf("DEK %x: %v", id, err)
			}
		}
	}
	read()
	if n.Load() != 1 {
		t.Fatalf("%d Decrypt calls, want 1", n.Load())
	}
	s.Down()
	read()
	makeDEKs(t, k1, 2)
	if err := k1.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if err := openErr(t, st, s.AliasB); !strings.Contains(err.Error(), "unreachable") {
		t.Fatalf("a new open with KMS down: %v", err)
	}
}

// countCalls is SDK middleware that counts the calls of operation op.
func countCalls(op string, n *atomic.Int64) func(*middleware.Stack) error {
	return func(st *middleware.Stack) error {
		return st.Initialize.Add(middleware.InitializeMiddlewareFunc("snapcrypt-count", func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
			if awsmiddleware.GetOperationName(ctx) == op {
				n.Add(1)
			}
			return next.HandleInitialize(ctx, in)
		}), middleware.Before)
	}
}

// TestAWSKMSSlot: a KMS key as a key slot of a generation made with a raw
// key. The slot's record is bound to repository and generation like a
// generation's own; a process holding only the KMS key opens the
// generation through the slot with one Decrypt, reads every DEK, and once
// the slot is removed the KMS key opens nothing.
func TestAWSKMSSlot(t *testing.T) {
	s := startKMS(t)
	ctx := context.Background()
	st := mem.New()
	k := mustInit(t, st, rawKey(t, 7))
	deks := makeDEKs(t, k, 20)
	slot, err := k.AddSlot(ctx, kmsMaterial(t, s.AliasA))
	if err != nil {
		t.Fatal(err)
	}
	if slot.KDF.Type != KDFAWSKMS || slot.KDF.Key != s.AliasA || slot.KDF.Kind() != "awskms" {
		t.Fatalf("slot %+v, want an awskms record naming %s", slot.KDF, s.AliasA)
	}
	if r := k.Keyring(); r.Version != keyringVersion3 {
		t.Fatalf("keyring version %d with a KMS slot, want 3", r.Version)
	}
	before := s.Calls("Decrypt")
	k2, err := Open(ctx, st, testRepoID, kmsMaterial(t, s.AliasA))
	if err != nil {
		t.Fatalf("open with the KMS slot alone: %v", err)
	}
	if got := s.Calls("Decrypt") - before; got != 1 {
		t.Fatalf("opening through a KMS slot made %d Decrypt calls, want 1", got)
	}
	for id, want := range deks {
		got, err := k2.DEK(ctx, id)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("DEK %x through the KMS slot: %v", id, err)
		}
	}
	if err := k.RemoveSlot(ctx, slot.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(ctx, st, testRepoID, kmsMaterial(t, s.AliasA)); !errors.Is(err, ErrNoKeyMatches) {
		t.Fatalf("open with a removed KMS slot's key: %v, want ErrNoKeyMatches", err)
	}
}
