package sealing_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"testing"

	"github.com/infrakeys/infrakeys/bus"
	"github.com/infrakeys/infrakeys/domain"
	"github.com/infrakeys/infrakeys/sealing"
)

// MustDataKeys opens the data keys stream on an embedded NATS server
// storing under dir; the server stops when the test ends.
func MustDataKeys(tb testing.TB, dir string) (*bus.Conn, *bus.DataKeys) {
	tb.Helper()
	ctx := context.Background()
	c, err := bus.Connect(ctx, bus.Config{StoreDir: dir})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(c.Close)
	dk, err := bus.OpenDataKeys(ctx, c)
	if err != nil {
		tb.Fatal(err)
	}
	return c, dk
}

// MustVaultSeal seals plaintext as the private half of key keyID.
func MustVaultSeal(tb testing.TB, v *sealing.Vault, keyID string, plaintext []byte) *domain.SealedSecret {
	tb.Helper()
	s, err := v.Seal(context.Background(), keyID, plaintext)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// TestVaultBindsKeyID checks that a sealed private half opens only as the
// private half of the key it was sealed for: an attacker who can write
// events or the read model cannot hand one key's private half to a driver
// under another key's name by copying the sealed object across.
func TestVaultBindsKeyID(t *testing.T) {
	_, dk := MustDataKeys(t, t.TempDir())
	v := sealing.NewVault(sealing.NewKeyring(MustNewMasterKey(t)), dk)
	ctx := context.Background()
	const idA, idB = "01JB2Z8Q7X5V4T3S2R1P0N9M8K", "01JB2Z8Q7X5V4T3S2R1P0N9M8M"
	sealedA := MustVaultSeal(t, v, idA, privateKey)
	MustVaultSeal(t, v, idB, []byte("key B"))

	t.Run("OK", func(t *testing.T) {
		got, err := v.Open(ctx, idA, sealedA)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, privateKey) {
			t.Errorf("Open = %q", got)
		}
	})
	t.Run("ErrMovedToAnotherKey", func(t *testing.T) {
		// The whole sealedPrivateKey object, as an event or the read model
		// carries it, copied into key B's.
		var moved domain.SealedSecret
		jsonRoundTrip(t, sealedA, &moved)
		got, err := v.Open(ctx, idB, &moved)
		if err == nil {
			t.Fatalf("key A's private half opened as key B's: %q", got)
		}
		if !errors.Is(err, sealing.ErrCannotOpen) {
			t.Errorf("err = %v, want ErrCannotOpen", err)
		}
	})
	t.Run("ErrAADFormatStripped", func(t *testing.T) {
		stripped := *sealedA
		stripped.AAD = ""
		if got, err := v.Open(ctx, idA, &stripped); !errors.Is(err, sealing.ErrCannotOpen) {
			t.Errorf("Open = %q, %v; want ErrCannotOpen", got, err)
		}
	})
	t.Run("AADInJSON", func(t *testing.T) {
		data, err := json.Marshal(sealedA)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(data, []byte(`"aad":"keyId+secretId"`)) {
			t.Errorf("sealed JSON %s does not state its associated data", data)
		}
	})
}
