package sealing

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
)

// masterKeyPrefix starts the text form of a master key. The version lets a
// later format coexist with files already written in this one.
const masterKeyPrefix = "infrakeys-master-key-v1:"

// masterKeySize is the size of a master key in bytes, the key size of
// XChaCha20-Poly1305.
const masterKeySize = 32

// ErrInvalidMasterKey is wrapped by every error about the text of a master
// key. Those errors never quote the text, since it may be a secret that is
// only slightly malformed.
var ErrInvalidMasterKey = errors.New("invalid master key")

// MasterKey is a key-encrypting key: it wraps data keys and never encrypts a
// private key directly. Its formatting and marshaling methods print only its
// id, so that a master key which ends up in a log or an error message does
// not leak; Encode is the one deliberate way to get the secret out.
type MasterKey struct {
	id string
	// key is behind a pointer so that even a dereferenced MasterKey, whose
	// value has none of the pointer methods below, prints as an address when
	// fmt walks its fields, never as the key bytes.
	key *[masterKeySize]byte
}

// NewMasterKey returns a new random master key.
func NewMasterKey() (*MasterKey, error) {
	var key [masterKeySize]byte
	if _, err := rand.Read(key[:]); err != nil {
		return nil, fmt.Errorf("sealing: generate master key: %w", err)
	}
	return newMasterKey(&key), nil
}

// newMasterKey takes ownership of key.
func newMasterKey(key *[masterKeySize]byte) *MasterKey {
	return &MasterKey{id: masterKeyID(key), key: key}
}

// masterKeyID derives the id of a master key with a keyed hash, so that the
// id, which is stored next to every wrapped data key and printed in logs,
// reveals nothing about the key, unlike a plain hash, which would let anyone
// confirm a guessed key.
func masterKeyID(key *[masterKeySize]byte) string {
	mac := hmac.New(sha256.New, key[:])
	mac.Write([]byte("infrakeys master key id"))
	return hex.EncodeToString(mac.Sum(nil)[:8])
}

// ParseMasterKey parses the text form written by Encode,
// "infrakeys-master-key-v1:" followed by the standard base64 encoding of 32
// bytes. Surrounding whitespace, such as the newline at the end of a file,
// is ignored.
func ParseMasterKey(text string) (*MasterKey, error) {
	m, err := parseMasterKey(text)
	if err != nil {
		return nil, fmt.Errorf("sealing: %w", err)
	}
	return m, nil
}

// parseMasterKey is ParseMasterKey without the package prefix on errors, for
// callers that add their own context.
func parseMasterKey(text string) (*MasterKey, error) {
	text = strings.TrimSpace(text)
	if text == "" {
		return nil, fmt.Errorf("%w: empty", ErrInvalidMasterKey)
	}
	encoded, ok := strings.CutPrefix(text, masterKeyPrefix)
	if !ok {
		return nil, fmt.Errorf("%w: does not start with %q", ErrInvalidMasterKey, masterKeyPrefix)
	}
	raw, err := base64.StdEncoding.Strict().DecodeString(encoded)
	defer clear(raw)
	if err != nil {
		// The decoder's error is not wrapped: it is harmless today, but
		// nothing promises it will never quote the input.
		return nil, fmt.Errorf("%w: not valid standard base64 after the prefix", ErrInvalidMasterKey)
	}
	if len(raw) != masterKeySize {
		return nil, fmt.Errorf("%w: %d bytes, want %d", ErrInvalidMasterKey, len(raw), masterKeySize)
	}
	var key [masterKeySize]byte
	copy(key[:], raw)
	if key == ([masterKeySize]byte{}) {
		// All zeros is what a broken generator or a truncated copy produces,
		// never what crypto/rand does.
		return nil, fmt.Errorf("%w: all bytes are zero", ErrInvalidMasterKey)
	}
	return newMasterKey(&key), nil
}

// ID returns the public id of m, which names it in wrapped data keys, in a
// Keyring and in logs.
func (m *MasterKey) ID() string { return m.id }

// Encode returns the secret text form of m, the content of a master key
// file. It is the only method that reveals the key.
func (m *MasterKey) Encode() string {
	return masterKeyPrefix + base64.StdEncoding.EncodeToString(m.key[:])
}

// String returns "infrakeys-master-key(<id>)", so that printing a master key
// with %v, %s or %+v is safe.
func (m *MasterKey) String() string { return "infrakeys-master-key(" + m.id + ")" }

// GoString makes %#v print the id too, instead of the struct fields.
func (m *MasterKey) GoString() string { return "sealing.MasterKey(" + m.id + ")" }

// MarshalText refuses to marshal a master key, which also makes
// encoding/json and encoding/xml refuse: a redacted value would be silently
// lost when read back, and the secret must only be written on purpose, with
// Encode.
func (m *MasterKey) MarshalText() ([]byte, error) {
	return nil, fmt.Errorf("sealing: refusing to marshal %s; use Encode to write the secret deliberately", m)
}

// LogValue makes log/slog print the id; without it slog would call
// MarshalText and log an error instead.
func (m *MasterKey) LogValue() slog.Value { return slog.StringValue(m.String()) }
