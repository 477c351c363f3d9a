package keys

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/smithy-go"
)

// Keys held by AWS KMS (the awskms:KEY spec, docs/format.md "Keys"). The
// KMS key never leaves KMS: a generation made for it draws 32 random bytes,
// has KMS encrypt them under the key with the repository id and the
// generation id as encryption context, and records only the ciphertext
// (KDF type awskms). Opening the generation asks KMS to decrypt that
// ciphertext, naming the recorded key and the same context, once per
// Material; the 32 bytes are then the input of the KEK's HKDF, as a raw
// key's are.

// Bounds of an awskms KDF record, checked by decoders.
const (
	maxKMSKey        = 2048    // bytes of the key as given
	maxKMSCiphertext = 4 << 10 // decoded bytes of the ciphertext
	kmsCallTimeout   = 2 * time.Minute
	// kmsRetryAfter is how long a Material does not ask KMS again about a
	// ciphertext it failed to decrypt: a keyring refresh every few seconds
	// must not become a Decrypt every few seconds.
	kmsRetryAfter = time.Minute
)

// Encryption context keys. Changing one changes the format.
const (
	kmsContextRepository = "snapcrypt:repository"
	kmsContextGeneration = "snapcrypt:generation"
)

// kmsAPI is the part of the KMS client a KMS-held key uses.
type kmsAPI interface {
	Encrypt(ctx context.Context, in *kms.EncryptInput, optFns ...func(*kms.Options)) (*kms.EncryptOutput, error)
	Decrypt(ctx context.Context, in *kms.DecryptInput, optFns ...func(*kms.Options)) (*kms.DecryptOutput, error)
}

// kmsKey is the KMS part of a Material: the key as the operator gave it, a
// client, and what KMS decrypted (or failed to) so far, by ciphertext.
type kmsKey struct {
	key      string
	client   kmsAPI
	endpoint string // where the client sends requests, for messages

	mu     sync.Mutex // held across a Decrypt: one request per ciphertext
	plain  map[string][KeySize]byte
	failed map[string]kmsFailure
	last   error // the newest failure, for Open's and AddKey's errors
}

type kmsFailure struct {
	err error
	at  time.Time
}

// validKMSKey reports why key cannot be a KMS key id, ARN or alias as a
// spec or a record holds it, or nil.
func validKMSKey(key string) error {
	if key == "" {
		return errors.New("empty KMS key")
	}
	if len(key) > maxKMSKey {
		return fmt.Errorf("KMS key of %d bytes, at most %d", len(key), maxKMSKey)
	}
	for _, c := range []byte(key) {
		if c <= 0x20 || c >= 0x7f {
			return errors.New("KMS key with a character that is not printable ASCII")
		}
	}
	return nil
}

// validateKMSRecord checks an awskms KDF record's key and ciphertext.
func validateKMSRecord(key, ct string) error {
	if err := validKMSKey(key); err != nil {
		return fmt.Errorf("awskms kdf: %v", err)
	}
	b, err := base64.StdEncoding.DecodeString(ct)
	if err != nil || len(b) == 0 || base64.StdEncoding.EncodeToString(b) != ct {
		return errors.New("awskms kdf: ciphertext is not base64 (standard, padded)")
	}
	if len(b) > maxKMSCiphertext {
		return fmt.Errorf("awskms kdf: ciphertext of %d bytes, at most %d", len(b), maxKMSCiphertext)
	}
	return nil
}

// NewAWSKMSKey returns Material for the AWS KMS key key (key id, ARN or
// alias). The client is configured as the AWS SDK's defaults are: region
// and credentials from the environment, the shared config files or an
// instance role, the endpoint from AWS_ENDPOINT_URL_KMS (or
// AWS_ENDPOINT_URL) when set; optFns then change its options (tests add
// middleware). If no region is configured, the one of an ARN is used.
// Nothing is sent to KMS until a generation is made or opened.
func NewAWSKMSKey(ctx context.Context, key string, optFns ...func(*kms.Options)) (*Material, error) {
	if err := validKMSKey(key); err != nil {
		return nil, badKey(nil, "key spec awskms:KEY: %v", err)
	}
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		return nil, badKey(err, "awskms:%s: loading the AWS configuration: %v", key, err)
	}
	if cfg.Region == "" {
		if a, ok := strings.CutPrefix(key, "arn:"); ok {
			if f := strings.Split(a, ":"); len(f) > 3 && f[2] != "" {
				cfg.Region = f[2]
			}
		}
	}
	if cfg.Region == "" {
		return nil, badKey(nil, "awskms:%s: no AWS region: set AWS_REGION, a profile's region, or give the key as an ARN", key)
	}
	c := kms.NewFromConfig(cfg, optFns...)
	endpoint := "AWS KMS in " + c.Options().Region
	if e := c.Options().BaseEndpoint; e != nil {
		endpoint = "KMS endpoint " + aws.ToString(e)
	}
	return &Material{kms: &kmsKey{key: key, client: c, endpoint: endpoint}, source: "awskms:" + key}, nil
}

// kmsContext is the encryption context of generation gen of repository rid.
func kmsContext(rid [16]byte, gen [8]byte) map[string]string {
	return map[string]string{
		kmsContextRepository: hex.EncodeToString(rid[:]),
		kmsContextGeneration: hex.EncodeToString(gen[:]),
	}
}

// newRecord draws 32 random bytes, has KMS encrypt them under the key for
// generation gen of repository rid, keeps them as the plaintext of the
// ciphertext (this process needs no Decrypt for the generation it made)
// and returns the ciphertext as base64.
func (k *kmsKey) newRecord(ctx context.Context, rid [16]byte, gen [8]byte) (string, error) {
	var p [KeySize]byte
	if _, err := rand.Read(p[:]); err != nil {
		return "", err
	}
	defer clear(p[:])
	ctx, cancel := context.WithTimeout(ctx, kmsCallTimeout)
	defer cancel()
	out, err := k.client.Encrypt(ctx, &kms.EncryptInput{
		KeyId:             aws.String(k.key),
		Plaintext:         p[:],
		EncryptionContext: kmsContext(rid, gen),
	})
	if err != nil {
		return "", k.explain("Encrypt", gen, err)
	}
	if err := validateKMSRecord(k.key, base64.StdEncoding.EncodeToString(out.CiphertextBlob)); err != nil {
		return "", badKey(nil, "awskms:%s: KMS Encrypt for generation %x: %v", k.key, gen, err)
	}
	ct := base64.StdEncoding.EncodeToString(out.CiphertextBlob)
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.plain == nil {
		k.plain = map[string][KeySize]byte{}
	}
	k.plain[ct] = p
	return ct, nil
}

// plaintext returns what KMS decrypts ct to, for generation gen of
// repository rid: from the cache, else by one Decrypt naming the recorded
// key and the context. A failure is kept (failure, KMSFailure) and, before
// kmsRetryAfter, answered from there. With keep false a new plaintext is
// not cached.
func (k *kmsKey) plaintext(ctx context.Context, ct string, rid [16]byte, gen [8]byte, keep bool) (p [KeySize]byte, ok bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if p, ok := k.plain[ct]; ok {
		return p, true
	}
	if f, ok := k.failed[ct]; ok && time.Since(f.at) < kmsRetryAfter {
		return p, false
	}
	blob, err := base64.StdEncoding.DecodeString(ct)
	if err != nil { // validated: not reached
		k.failLocked(ct, badKey(nil, "awskms:%s: generation %x: ciphertext is not base64", k.key, gen))
		return p, false
	}
	cctx, cancel := context.WithTimeout(ctx, kmsCallTimeout)
	defer cancel()
	out, err := k.client.Decrypt(cctx, &kms.DecryptInput{
		KeyId:             aws.String(k.key),
		CiphertextBlob:    blob,
		EncryptionContext: kmsContext(rid, gen),
	})
	if err != nil {
		k.failLocked(ct, k.explain("Decrypt", gen, err))
		return p, false
	}
	defer clear(out.Plaintext)
	if len(out.Plaintext) != KeySize {
		k.failLocked(ct, badKey(nil, "awskms:%s: KMS decrypted generation %x's ciphertext to %d bytes, want %d", k.key, gen, len(out.Plaintext), KeySize))
		return p, false
	}
	copy(p[:], out.Plaintext)
	delete(k.failed, ct)
	if keep {
		if k.plain == nil {
			k.plain = map[string][KeySize]byte{}
		}
		k.plain[ct] = p
	}
	return p, true
}

func (k *kmsKey) failLocked(ct string, err error) {
	if k.failed == nil {
		k.failed = map[string]kmsFailure{}
	}
	k.failed[ct] = kmsFailure{err: err, at: time.Now()}
	k.last = err
}

// explain turns an error of a KMS call about generation gen into a key
// error (ErrBadKey) that names the failure and wraps err. KMS errors carry
// no plaintext; neither does this.
func (k *kmsKey) explain(op string, gen [8]byte, err error) error {
	what := fmt.Sprintf("awskms:%s: KMS %s for generation %x", k.key, op, gen)
	var (
		disabled   *types.DisabledException
		state      *types.KMSInvalidStateException
		notFound   *types.NotFoundException
		badCT      *types.InvalidCiphertextException
		otherKey   *types.IncorrectKeyException
		usage      *types.InvalidKeyUsageException
		unavail    *types.KeyUnavailableException
		dependency *types.DependencyTimeoutException
		internal   *types.KMSInternalException
		api        smithy.APIError
		attempts   *retry.MaxAttemptsError
		op2        *net.OpError
		uerr       *url.Error
	)
	switch {
	case errors.As(err, &disabled):
		return badKey(err, "%s: the KMS key is disabled", what)
	case errors.As(err, &state):
		return badKey(err, "%s: the KMS key cannot be used in its state (pending deletion or import): %s", what, state.ErrorMessage())
	case errors.As(err, &notFound):
		return badKey(err, "%s: the KMS key was not found (check the key id or alias and the region)", what)
	case errors.As(err, &badCT), errors.As(err, &otherKey):
		return badKey(err, "%s: KMS refused the ciphertext: it was not made by this KMS key for this repository and generation (wrong encryption context, a ciphertext for another key or another repository, or damage)", what)
	case errors.As(err, &usage):
		return badKey(err, "%s: the KMS key is not a symmetric encryption key", what)
	case errors.As(err, &unavail), errors.As(err, &dependency), errors.As(err, &internal):
		return badKey(err, "%s: KMS is unavailable: %v", what, err)
	case errors.As(err, &api) && api.ErrorCode() == "AccessDeniedException":
		return badKey(err, "%s: access denied by KMS (the credentials may not use this key): %s", what, api.ErrorMessage())
	case errors.As(err, &api) && retry.IsErrorThrottles(retry.DefaultThrottles).IsErrorThrottle(err).Bool():
		n := ""
		if errors.As(err, &attempts) {
			n = fmt.Sprintf(" (given up after %d attempts)", attempts.Attempt)
		}
		return badKey(err, "%s: KMS is throttling requests%s: %s", what, n, api.ErrorCode())
	case errors.As(err, &op2) && op2.Op == "dial":
		where := k.endpoint
		if errors.As(err, &uerr) {
			where = "KMS endpoint " + strings.TrimSuffix(uerr.URL, "/")
		}
		return badKey(err, "%s: %s is unreachable: %v", what, where, op2.Err)
	case errors.As(err, &api):
		return badKey(err, "%s: %s: %s", what, api.ErrorCode(), api.ErrorMessage())
	}
	return badKey(err, "%s: %v", what, err)
}

// KMSFailure returns the newest error of a KMS call made for m (a key held
// by KMS), or nil: why a generation that names m's key was not opened.
func (m *Material) KMSFailure() error {
	if m == nil || m.kms == nil {
		return nil
	}
	m.kms.mu.Lock()
	defer m.kms.mu.Unlock()
	return m.kms.last
}

// noteMismatch records, for a KMS key, that KMS decrypted generation g's
// ciphertext but the result is not g's key (its check value differs): a
// keyring altered by someone who can encrypt with the key.
func (m *Material) noteMismatch(g *Generation) {
	if m.kms == nil {
		return
	}
	m.kms.mu.Lock()
	defer m.kms.mu.Unlock()
	m.kms.last = badKey(nil, "awskms:%s: KMS decrypted generation %s's ciphertext, but it is not that generation's key (its check value differs: the keyring was altered)", m.kms.key, g.ID)
}

// kmsFailures returns the KMS failure of each material that has one.
func kmsFailures(ms []*Material) error {
	var errs []error
	for _, m := range ms {
		if err := m.KMSFailure(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
