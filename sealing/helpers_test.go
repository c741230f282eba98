package sealing_test

import (
	"encoding/base64"
	"strings"
	"testing"

	"github.com/infrakeys/infrakeys/domain"
	"github.com/infrakeys/infrakeys/sealing"
)

// Bindings as the service makes them: ULID strings for the key and the
// secret.
var (
	refA = domain.KeyRef{ID: "01JB2Z8Q7X5V4T3S2R1P0N9M8K", Scope: domain.ScopeShared, Name: "key-a"}
	refB = domain.KeyRef{ID: "01JB2Z8Q7X5V4T3S2R1P0N9M8M", Scope: domain.ScopeShared, Name: "key-b"}
	keyA = sealing.Binding{Key: refA, SecretID: "01JB2Z8Q7X5V4T3S2R1P0N9S8K"}
	keyB = sealing.Binding{Key: refB, SecretID: "01JB2Z8Q7X5V4T3S2R1P0N9S8M"}
)

// MustNewMasterKey returns a new master key or fails the test.
func MustNewMasterKey(tb testing.TB) *sealing.MasterKey {
	tb.Helper()
	m, err := sealing.NewMasterKey()
	if err != nil {
		tb.Fatal(err)
	}
	return m
}

// MustSeal seals plaintext for b under m or fails the test.
func MustSeal(tb testing.TB, m *sealing.MasterKey, b sealing.Binding, plaintext []byte) (sealing.Sealed, sealing.WrappedKey) {
	tb.Helper()
	s, w, err := sealing.Seal(m, b, plaintext)
	if err != nil {
		tb.Fatal(err)
	}
	return s, w
}

// secretForms returns the ways the secret of m could appear in output: its
// base64 text and its raw bytes.
func secretForms(tb testing.TB, m *sealing.MasterKey) []string {
	tb.Helper()
	b64 := strings.TrimPrefix(m.Encode(), "infrakeys-master-key-v1:")
	raw, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		tb.Fatal(err)
	}
	return []string{b64, string(raw), base64.RawURLEncoding.EncodeToString(raw), hexLower(raw)}
}

func hexLower(b []byte) string {
	const digits = "0123456789abcdef"
	var sb strings.Builder
	for _, c := range b {
		sb.WriteByte(digits[c>>4])
		sb.WriteByte(digits[c&0xf])
	}
	return sb.String()
}

// assertNoSecret fails the test if out contains the secret of m.
func assertNoSecret(tb testing.TB, m *sealing.MasterKey, what, out string) {
	tb.Helper()
	for _, secret := range secretForms(tb, m) {
		if strings.Contains(strings.ToLower(out), strings.ToLower(secret)) {
			tb.Errorf("%s leaks the master key: %q", what, out)
			return
		}
	}
}
