package sealing

import (
	"crypto/rand"
	"errors"
	"fmt"
	"strconv"

	"golang.org/x/crypto/chacha20poly1305"

	"github.com/infrakeys/infrakeys/domain"
)

// AlgXChaCha20Poly1305 names the algorithm of Sealed and WrappedKey. It is
// stored with the data so that a later algorithm can be told apart.
const AlgXChaCha20Poly1305 = "xchacha20poly1305"

// dataKeySize is the size of a data key in bytes.
const dataKeySize = chacha20poly1305.KeySize

// ErrCannotOpen is wrapped by every error from Open and Rewrap about the
// data: wrong master key, wrong key id, tampered or truncated ciphertext,
// unknown algorithm. The messages never include key material.
var ErrCannotOpen = errors.New("cannot open sealed key")

// AADKeyAndSecret is the only associated data format Open accepts: the
// ciphertext is bound to the key whose private half it is (its id, scope,
// instance and name) and to the id of its data key. Sealed.AAD states it,
// so that a reader of an event knows what the ciphertext is bound to, and
// so that a later format can be told apart. Ciphertexts that state another
// format, or none, are refused: see docs/sealing.md for why there is no
// older format to accept.
const AADKeyAndSecret = "key+secretId"

// Binding names what a sealed secret belongs to. All of it is bound into
// the ciphertext of the private key, so that a sealed private key copied
// into another key's event opens as nothing, even if the forged event also
// copies the key id; the data key is bound to the secret id alone, because
// it is stored, listed and rewrapped by that id.
type Binding struct {
	// Key is the infrastructure key the secret is the private half of.
	Key domain.KeyRef
	// SecretID is the id of the secret and of its data key: one data key
	// per secret.
	SecretID string
}

// Sealed is a private key encrypted with its data key; it may travel in
// events, since it is useless without the wrapped data key.
type Sealed struct {
	Alg string `json:"alg"`
	// AAD names the associated data format, AADKeyAndSecret.
	AAD        string `json:"aad"`
	Nonce      []byte `json:"nonce"`
	Ciphertext []byte `json:"ct"`
}

// WrappedKey is a data key encrypted by a master key; it is kept apart from
// the log, so that deleting it destroys the private key (crypto-shredding).
type WrappedKey struct {
	// MasterKeyID names the master key that wraps the data key; it is also
	// bound into the ciphertext, so changing it makes opening fail.
	MasterKeyID string `json:"kek"`
	Alg         string `json:"alg"`
	Nonce       []byte `json:"nonce"`
	Ciphertext  []byte `json:"ct"`
}

// Seal encrypts plaintext for b under a fresh data key, returning the
// sealed text and the data key wrapped by m. The binding ties both to this
// secret of this key, so neither can be replayed as another's.
func Seal(m *MasterKey, b Binding, plaintext []byte) (Sealed, WrappedKey, error) {
	if m == nil {
		return Sealed{}, WrappedKey{}, errors.New("sealing: seal: nil master key")
	}
	if b.Key.ID == "" || b.Key.Scope == "" || b.Key.Name == "" {
		return Sealed{}, WrappedKey{}, errors.New("sealing: seal: key id, scope or name empty")
	}
	if b.SecretID == "" {
		return Sealed{}, WrappedKey{}, errors.New("sealing: seal: empty secret id")
	}
	dek := make([]byte, dataKeySize)
	defer clear(dek)
	if _, err := rand.Read(dek); err != nil {
		return Sealed{}, WrappedKey{}, fmt.Errorf("sealing: generate data key: %w", err)
	}
	nonce, ciphertext, err := encrypt(dek, plaintext, sealAAD(b))
	if err != nil {
		return Sealed{}, WrappedKey{}, err
	}
	w, err := wrap(m, b.SecretID, dek)
	if err != nil {
		return Sealed{}, WrappedKey{}, err
	}
	return Sealed{Alg: AlgXChaCha20Poly1305, AAD: AADKeyAndSecret, Nonce: nonce, Ciphertext: ciphertext}, w, nil
}

// Open decrypts a sealed private key: it unwraps the data key with the
// master key in r whose id w names, then decrypts s. b is what the caller
// expects s to belong to, never something read from s: a ciphertext sealed
// for another key or secret does not open. The caller owns the returned
// plaintext and should clear it once done.
func Open(r *Keyring, b Binding, s Sealed, w WrappedKey) ([]byte, error) {
	if s.Alg != AlgXChaCha20Poly1305 {
		return nil, fmt.Errorf("sealing: %w: private key: unsupported algorithm %q", ErrCannotOpen, s.Alg)
	}
	if s.AAD != AADKeyAndSecret {
		return nil, fmt.Errorf("sealing: %w: private key: associated data format %q, want %q (bound to its key id)", ErrCannotOpen, s.AAD, AADKeyAndSecret)
	}
	if b.Key.ID == "" || b.Key.Scope == "" || b.Key.Name == "" || b.SecretID == "" {
		return nil, fmt.Errorf("sealing: %w: private key: key id, scope, name or secret id empty", ErrCannotOpen)
	}
	dek, err := unwrap(r, b.SecretID, w)
	if err != nil {
		return nil, err
	}
	defer clear(dek)
	plaintext, err := decrypt(dek, s.Nonce, s.Ciphertext, sealAAD(b))
	if err != nil {
		return nil, fmt.Errorf("sealing: %w: private key: %v", ErrCannotOpen, err)
	}
	return plaintext, nil
}

// Rewrap re-encrypts a wrapped data key under another master key, for
// master key rotation: the sealed private key and the event log are
// untouched, and once every data key is rewrapped the old master key can be
// retired.
func Rewrap(r *Keyring, secretID string, w WrappedKey, to *MasterKey) (WrappedKey, error) {
	if to == nil {
		return WrappedKey{}, errors.New("sealing: rewrap: nil master key")
	}
	dek, err := unwrap(r, secretID, w)
	if err != nil {
		return WrappedKey{}, err
	}
	defer clear(dek)
	return wrap(to, secretID, dek)
}

// sealAAD binds a sealed private key to its key and its secret. Each part
// is length-prefixed, so the encoding is unambiguous whatever the parts
// contain, and the format name starts it, so that it can never equal a
// wrapAAD, nor the associated data of a later format.
func sealAAD(b Binding) []byte {
	aad := []byte("sealed:" + AADKeyAndSecret)
	for _, part := range []string{b.Key.Scope, b.Key.InstanceID, b.Key.Name, b.Key.ID, b.SecretID} {
		aad = append(aad, ':')
		aad = strconv.AppendInt(aad, int64(len(part)), 10)
		aad = append(aad, ':')
		aad = append(aad, part...)
	}
	return aad
}

// wrapAAD binds a wrapped data key to its secret id and to the id of the
// master key that wraps it. The master key id is fixed-length hex, so the
// encoding is unambiguous whatever the secret id contains.
func wrapAAD(secretID, masterKeyID string) []byte {
	return []byte("dek:" + secretID + ":" + masterKeyID)
}

func wrap(m *MasterKey, secretID string, dek []byte) (WrappedKey, error) {
	nonce, ciphertext, err := encrypt(m.key[:], dek, wrapAAD(secretID, m.id))
	if err != nil {
		return WrappedKey{}, err
	}
	return WrappedKey{MasterKeyID: m.id, Alg: AlgXChaCha20Poly1305, Nonce: nonce, Ciphertext: ciphertext}, nil
}

// unwrap returns the data key in w; the caller clears it.
func unwrap(r *Keyring, secretID string, w WrappedKey) ([]byte, error) {
	if r == nil {
		return nil, errors.New("sealing: nil keyring")
	}
	if w.Alg != AlgXChaCha20Poly1305 {
		return nil, fmt.Errorf("sealing: %w: data key: unsupported algorithm %q", ErrCannotOpen, w.Alg)
	}
	m, ok := r.Get(w.MasterKeyID)
	if !ok {
		return nil, fmt.Errorf("sealing: %w: data key: master key %q is not in the keyring", ErrCannotOpen, w.MasterKeyID)
	}
	dek, err := decrypt(m.key[:], w.Nonce, w.Ciphertext, wrapAAD(secretID, m.id))
	if err != nil {
		return nil, fmt.Errorf("sealing: %w: data key: %v", ErrCannotOpen, err)
	}
	if len(dek) != dataKeySize {
		clear(dek)
		return nil, fmt.Errorf("sealing: %w: data key: %d bytes, want %d", ErrCannotOpen, len(dek), dataKeySize)
	}
	return dek, nil
}

// encrypt seals plaintext under key with a random nonce.
func encrypt(key, plaintext, aad []byte) (nonce, ciphertext []byte, err error) {
	aead, err := chacha20poly1305.NewX(key)
	if err != nil {
		return nil, nil, fmt.Errorf("sealing: %w", err)
	}
	nonce = make([]byte, aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, nil, fmt.Errorf("sealing: generate nonce: %w", err)
	}
	return nonce, aead.Seal(nil, nonce, plaintext, aad), nil
}

// errAuth hides the cause of an authentication failure, which the AEAD
// cannot tell apart: wrong key, wrong associated data or tampering.
var errAuth = errors.New("authentication failed (wrong master key, wrong key id, or modified data)")

// decrypt opens ciphertext. Its errors say what is wrong with the data, never
// what the key is.
func decrypt(key, nonce, ciphertext, aad []byte) ([]byte, error) {
	aead, err := chacha20poly1305.NewX(key)
	if err != nil {
		return nil, err
	}
	// The AEAD panics on a nonce of the wrong size; data read from storage
	// must not be able to crash the service.
	if len(nonce) != aead.NonceSize() {
		return nil, fmt.Errorf("nonce is %d bytes, want %d", len(nonce), aead.NonceSize())
	}
	if len(ciphertext) < aead.Overhead() {
		return nil, fmt.Errorf("ciphertext is %d bytes, shorter than the %d-byte tag", len(ciphertext), aead.Overhead())
	}
	plaintext, err := aead.Open(nil, nonce, ciphertext, aad)
	if err != nil {
		return nil, errAuth
	}
	return plaintext, nil
}
