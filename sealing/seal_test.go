package sealing_test

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"errors"
	mrand "math/rand/v2"
	"testing"

	"github.com/infrakeys/infrakeys/domain"
	"github.com/infrakeys/infrakeys/sealing"
)

var privateKey = []byte("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n-----END OPENSSH PRIVATE KEY-----\n")

func TestSealOpen(t *testing.T) {
	m := MustNewMasterKey(t)
	r := sealing.NewKeyring(m)

	t.Run("RoundTrip", func(t *testing.T) {
		s, w := MustSeal(t, m, keyA, privateKey)
		if got, want := s.Alg, sealing.AlgXChaCha20Poly1305; got != want {
			t.Errorf("Sealed.Alg = %q, want %q", got, want)
		}
		if got, want := w.MasterKeyID, m.ID(); got != want {
			t.Errorf("WrappedKey.MasterKeyID = %q, want %q", got, want)
		}
		got, err := sealing.Open(r, keyA, s, w)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, privateKey) {
			t.Errorf("Open = %q, want %q", got, privateKey)
		}
	})

	t.Run("RoundTripThroughJSON", func(t *testing.T) {
		// Sealed travels in events and WrappedKey sits in a KV bucket, both
		// as JSON.
		s, w := MustSeal(t, m, keyA, privateKey)
		var s2 sealing.Sealed
		var w2 sealing.WrappedKey
		jsonRoundTrip(t, s, &s2)
		jsonRoundTrip(t, w, &w2)
		got, err := sealing.Open(r, keyA, s2, w2)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, privateKey) {
			t.Errorf("Open = %q, want %q", got, privateKey)
		}
	})

	t.Run("EmptyPlaintext", func(t *testing.T) {
		s, w := MustSeal(t, m, keyA, nil)
		got, err := sealing.Open(r, keyA, s, w)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 0 {
			t.Errorf("Open = %q, want empty", got)
		}
	})

	t.Run("CiphertextHidesPlaintext", func(t *testing.T) {
		s, w := MustSeal(t, m, keyA, privateKey)
		for _, part := range [][]byte{privateKey, privateKey[:16], privateKey[len(privateKey)-16:]} {
			if bytes.Contains(s.Ciphertext, part) || bytes.Contains(w.Ciphertext, part) {
				t.Errorf("ciphertext contains plaintext %q", part)
			}
		}
		out, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(out, privateKey[:16]) {
			t.Error("JSON of Sealed contains the plaintext")
		}
	})

	t.Run("FreshDataKeyEachSeal", func(t *testing.T) {
		s1, w1 := MustSeal(t, m, keyA, privateKey)
		s2, w2 := MustSeal(t, m, keyA, privateKey)
		if bytes.Equal(s1.Nonce, s2.Nonce) || bytes.Equal(s1.Ciphertext, s2.Ciphertext) {
			t.Error("two seals of the same plaintext share a nonce or ciphertext")
		}
		if bytes.Equal(w1.Ciphertext, w2.Ciphertext) {
			t.Error("two seals share a wrapped data key")
		}
		// Each seal's data key opens only its own ciphertext, so deleting
		// one wrapped key shreds exactly one sealed key.
		if _, err := sealing.Open(r, keyA, s1, w2); !errors.Is(err, sealing.ErrCannotOpen) {
			t.Errorf("Open with another seal's data key: err = %v, want ErrCannotOpen", err)
		}
	})

	t.Run("ErrSealNilMasterKey", func(t *testing.T) {
		if _, _, err := sealing.Seal(nil, keyA, privateKey); err == nil {
			t.Error("Seal accepted a nil master key")
		}
	})

	t.Run("ErrSealEmptyKeyID", func(t *testing.T) {
		if _, _, err := sealing.Seal(m, sealing.Binding{SecretID: keyA.SecretID}, privateKey); err == nil {
			t.Error("Seal accepted an empty key id")
		}
	})

	t.Run("ErrSealEmptySecretID", func(t *testing.T) {
		if _, _, err := sealing.Seal(m, sealing.Binding{Key: refA}, privateKey); err == nil {
			t.Error("Seal accepted an empty secret id")
		}
	})

	t.Run("StatesItsAAD", func(t *testing.T) {
		s, _ := MustSeal(t, m, keyA, privateKey)
		if got, want := s.AAD, sealing.AADKeyAndSecret; got != want {
			t.Errorf("Sealed.AAD = %q, want %q", got, want)
		}
	})
}

func TestOpenRefuses(t *testing.T) {
	m := MustNewMasterKey(t)
	other := MustNewMasterKey(t)
	r := sealing.NewKeyring(m)
	s, w := MustSeal(t, m, keyA, privateKey)
	sB, wB := MustSeal(t, m, keyB, []byte("key B"))

	flip := func(b []byte, i int) []byte {
		b = bytes.Clone(b)
		b[i] ^= 0x01
		return b
	}

	for _, tt := range []struct {
		name  string
		r     *sealing.Keyring
		keyID sealing.Binding
		s     sealing.Sealed
		w     sealing.WrappedKey
	}{
		{"WrongKeyID", r, keyB, s, w},
		// The same secret (and so the same data key) claimed by another
		// key: what copying sealedPrivateKey into another key's event does.
		{"SecretMovedToAnotherKey", r, sealing.Binding{Key: refB, SecretID: keyA.SecretID}, s, w},
		// A forged event can give another name key A's id too: the name
		// (and scope, and instance) are bound as well.
		{"SecretMovedToAnotherNameWithTheSameID", r, sealing.Binding{Key: domain.KeyRef{ID: refA.ID, Scope: refA.Scope, Name: "key-b"}, SecretID: keyA.SecretID}, s, w},
		{"SecretMovedToAnInstance", r, sealing.Binding{Key: domain.KeyRef{ID: refA.ID, Scope: domain.ScopeInstance, InstanceID: "vm-1", Name: refA.Name}, SecretID: keyA.SecretID}, s, w},
		{"WrongSecretID", r, sealing.Binding{Key: refA, SecretID: keyB.SecretID}, s, w},
		{"EmptyKeyID", r, sealing.Binding{Key: domain.KeyRef{Scope: refA.Scope, Name: refA.Name}, SecretID: keyA.SecretID}, s, w},
		{"AADFormatMissing", r, keyA, sealing.Sealed{Alg: s.Alg, Nonce: s.Nonce, Ciphertext: s.Ciphertext}, w},
		{"AADFormatUnknown", r, keyA, sealing.Sealed{Alg: s.Alg, AAD: "secretId", Nonce: s.Nonce, Ciphertext: s.Ciphertext}, w},
		{"SealedOfAnotherKey", r, keyA, sB, w},
		{"WrappedKeyOfAnotherKey", r, keyA, s, wB},
		{"BothMovedToAnotherKey", r, keyB, s, w},
		{"TamperedCiphertext", r, keyA, sealing.Sealed{Alg: s.Alg, AAD: s.AAD, Nonce: s.Nonce, Ciphertext: flip(s.Ciphertext, 0)}, w},
		{"TamperedTag", r, keyA, sealing.Sealed{Alg: s.Alg, AAD: s.AAD, Nonce: s.Nonce, Ciphertext: flip(s.Ciphertext, len(s.Ciphertext)-1)}, w},
		{"TamperedNonce", r, keyA, sealing.Sealed{Alg: s.Alg, AAD: s.AAD, Nonce: flip(s.Nonce, 3), Ciphertext: s.Ciphertext}, w},
		{"TruncatedNonce", r, keyA, sealing.Sealed{Alg: s.Alg, AAD: s.AAD, Nonce: s.Nonce[:12], Ciphertext: s.Ciphertext}, w},
		{"MissingNonce", r, keyA, sealing.Sealed{Alg: s.Alg, AAD: s.AAD, Ciphertext: s.Ciphertext}, w},
		{"TruncatedCiphertext", r, keyA, sealing.Sealed{Alg: s.Alg, AAD: s.AAD, Nonce: s.Nonce, Ciphertext: s.Ciphertext[:10]}, w},
		{"UnknownSealedAlg", r, keyA, sealing.Sealed{Alg: "aes256gcm", AAD: s.AAD, Nonce: s.Nonce, Ciphertext: s.Ciphertext}, w},
		{"TamperedWrappedKey", r, keyA, s, sealing.WrappedKey{MasterKeyID: w.MasterKeyID, Alg: w.Alg, Nonce: w.Nonce, Ciphertext: flip(w.Ciphertext, 5)}},
		{"TamperedWrappedNonce", r, keyA, s, sealing.WrappedKey{MasterKeyID: w.MasterKeyID, Alg: w.Alg, Nonce: flip(w.Nonce, 0), Ciphertext: w.Ciphertext}},
		{"TruncatedWrappedNonce", r, keyA, s, sealing.WrappedKey{MasterKeyID: w.MasterKeyID, Alg: w.Alg, Nonce: w.Nonce[:1], Ciphertext: w.Ciphertext}},
		{"UnknownWrappedAlg", r, keyA, s, sealing.WrappedKey{MasterKeyID: w.MasterKeyID, Alg: "none", Nonce: w.Nonce, Ciphertext: w.Ciphertext}},
		{"WrappedByAnotherMasterKey", sealing.NewKeyring(other), keyA, s, w},
		{"MasterKeyIDRelabeled", sealing.NewKeyring(m, other), keyA, s, sealing.WrappedKey{MasterKeyID: other.ID(), Alg: w.Alg, Nonce: w.Nonce, Ciphertext: w.Ciphertext}},
		{"WrappedKeyFromAnotherMasterKey", r, keyA, s, func() sealing.WrappedKey { _, w := MustSeal(t, other, keyA, privateKey); return w }()},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := sealing.Open(tt.r, tt.keyID, tt.s, tt.w)
			if err == nil {
				t.Fatalf("Open succeeded: %q", got)
			}
			if !errors.Is(err, sealing.ErrCannotOpen) {
				t.Errorf("err = %v, want ErrCannotOpen", err)
			}
			assertNoSecret(t, m, "error", err.Error())
			assertNoSecret(t, other, "error", err.Error())
			if bytes.Contains([]byte(err.Error()), privateKey[:16]) {
				t.Errorf("error contains the plaintext: %v", err)
			}
		})
	}

	t.Run("ErrNilKeyring", func(t *testing.T) {
		if _, err := sealing.Open(nil, keyA, s, w); err == nil {
			t.Error("Open accepted a nil keyring")
		}
	})
}

func TestRewrap(t *testing.T) {
	oldKey := MustNewMasterKey(t)
	newKey := MustNewMasterKey(t)
	s, w := MustSeal(t, oldKey, keyA, privateKey)

	t.Run("OpensWithOnlyNewMasterKey", func(t *testing.T) {
		rotating := sealing.NewKeyring(newKey, oldKey)
		w2, err := sealing.Rewrap(rotating, keyA.SecretID, w, newKey)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := w2.MasterKeyID, newKey.ID(); got != want {
			t.Errorf("MasterKeyID = %q, want %q", got, want)
		}

		retired := sealing.NewKeyring(newKey)
		got, err := sealing.Open(retired, keyA, s, w2)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, privateKey) {
			t.Errorf("Open = %q, want %q", got, privateKey)
		}
		// The old wrapped key is no longer needed, and without the old
		// master key it is no longer usable either.
		if _, err := sealing.Open(retired, keyA, s, w); !errors.Is(err, sealing.ErrCannotOpen) {
			t.Errorf("Open of the old wrapped key after retiring its master key: err = %v, want ErrCannotOpen", err)
		}
	})

	t.Run("ErrWrongKeyID", func(t *testing.T) {
		_, err := sealing.Rewrap(sealing.NewKeyring(newKey, oldKey), keyB.SecretID, w, newKey)
		if !errors.Is(err, sealing.ErrCannotOpen) {
			t.Errorf("err = %v, want ErrCannotOpen", err)
		}
	})

	t.Run("ErrOldMasterKeyMissing", func(t *testing.T) {
		_, err := sealing.Rewrap(sealing.NewKeyring(newKey), keyA.SecretID, w, newKey)
		if !errors.Is(err, sealing.ErrCannotOpen) {
			t.Errorf("err = %v, want ErrCannotOpen", err)
		}
	})

	t.Run("ErrNilTarget", func(t *testing.T) {
		if _, err := sealing.Rewrap(sealing.NewKeyring(oldKey), keyA.SecretID, w, nil); err == nil {
			t.Error("Rewrap accepted a nil master key")
		}
	})
}

// TestRoundTripProperty seals random plaintexts of random sizes under random
// key ids and checks that each opens to itself.
func TestRoundTripProperty(t *testing.T) {
	seed := mrand.Uint64()
	t.Logf("seed %d", seed)
	rng := mrand.New(mrand.NewPCG(seed, seed))
	r := sealing.NewKeyring(MustNewMasterKey(t))

	for i := range 100 {
		plaintext := make([]byte, rng.IntN(8192))
		rand.Read(plaintext)
		keyID := sealing.Binding{
			Key:      domain.KeyRef{ID: rand.Text(), Scope: domain.ScopeInstance, InstanceID: rand.Text()[:rng.IntN(26)], Name: rand.Text()[:rng.IntN(26)+1]},
			SecretID: rand.Text(),
		}
		s, w := MustSeal(t, r.Current(), keyID, plaintext)
		if got, want := len(s.Ciphertext), len(plaintext)+16; got != want {
			t.Fatalf("case %d: ciphertext is %d bytes, want %d", i, got, want)
		}
		got, err := sealing.Open(r, keyID, s, w)
		if err != nil {
			t.Fatalf("case %d (%d bytes): %v", i, len(plaintext), err)
		}
		if !bytes.Equal(got, plaintext) {
			t.Fatalf("case %d (%d bytes): round trip differs", i, len(plaintext))
		}
	}
}

func jsonRoundTrip(t *testing.T, in, out any) {
	t.Helper()
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, out); err != nil {
		t.Fatal(err)
	}
}
