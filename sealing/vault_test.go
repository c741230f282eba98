package sealing_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
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

// MustVaultSeal seals plaintext as the private half of key k.
func MustVaultSeal(tb testing.TB, v *sealing.Vault, k domain.KeyRef, plaintext []byte) *domain.SealedSecret {
	tb.Helper()
	s, err := v.Seal(context.Background(), k, plaintext)
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
	idA, idB := refA, refB
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
	t.Run("ErrMovedToAnotherNameWithTheSameID", func(t *testing.T) {
		// A forged event for key B that also claims key A's id.
		forged := idB
		forged.ID = idA.ID
		if got, err := v.Open(ctx, forged, sealedA); !errors.Is(err, sealing.ErrCannotOpen) {
			t.Errorf("Open = %q, %v; want ErrCannotOpen", got, err)
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
		if !bytes.Contains(data, []byte(`"aad":"key+secretId"`)) {
			t.Errorf("sealed JSON %s does not state its associated data", data)
		}
	})
}

// wrappedCiphertext returns the ciphertext of secret id's stored data key,
// nil if there is none.
func wrappedCiphertext(tb testing.TB, dk *bus.DataKeys, id string) []byte {
	tb.Helper()
	data, _, err := dk.Get(context.Background(), id)
	if err != nil {
		tb.Fatal(err)
	}
	if data == nil {
		return nil
	}
	var w sealing.WrappedKey
	if err := json.Unmarshal(data, &w); err != nil {
		tb.Fatal(err)
	}
	return w.Ciphertext
}

// filesHolding returns the files under dir that hold ct, raw or in
// base64 (the stored data key is JSON).
func filesHolding(tb testing.TB, dir string, ct []byte) []string {
	tb.Helper()
	var found []string
	files := 0
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		files++
		if bytes.Contains(data, ct) || bytes.Contains(data, []byte(base64.StdEncoding.EncodeToString(ct))) {
			found = append(found, path)
		}
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	if files == 0 {
		tb.Fatalf("no file under %s", dir)
	}
	return found
}

// TestVaultRewrapErasesOldDataKeys rotates the master key and then
// searches the stream's files: a data key wrapped by the old master key
// must be gone from them, not just from the stream, or whoever holds the
// old master key and a copy of the files could still open it, even after
// the key is deleted. A destroyed data key must be gone in both wrappings.
func TestVaultRewrapErasesOldDataKeys(t *testing.T) {
	dir := t.TempDir()
	conn, dk := MustDataKeys(t, dir)
	ctx := context.Background()
	oldKey, newKey := MustNewMasterKey(t), MustNewMasterKey(t)
	kept, doomed := refA, refB
	sealedKept := MustVaultSeal(t, sealing.NewVault(sealing.NewKeyring(oldKey), dk), kept, privateKey)
	sealedDoomed := MustVaultSeal(t, sealing.NewVault(sealing.NewKeyring(oldKey), dk), doomed, []byte("doomed"))
	old := map[domain.KeyRef][]byte{kept: wrappedCiphertext(t, dk, sealedKept.SecretID), doomed: wrappedCiphertext(t, dk, sealedDoomed.SecretID)}

	rotating := sealing.NewVault(sealing.NewKeyring(newKey, oldKey), dk)
	res, err := rotating.Rewrap(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if res.Rewrapped != 2 {
		t.Fatalf("rewrap %+v, want 2 rewrapped", res)
	}
	latest := map[domain.KeyRef][]byte{kept: wrappedCiphertext(t, dk, sealedKept.SecretID), doomed: wrappedCiphertext(t, dk, sealedDoomed.SecretID)}
	if err := rotating.Destroy(ctx, sealedDoomed.SecretID); err != nil {
		t.Fatal(err)
	}
	if got, err := sealing.NewVault(sealing.NewKeyring(newKey), dk).Open(ctx, kept, sealedKept); err != nil || !bytes.Equal(got, privateKey) {
		t.Fatalf("open with the new master key alone: %q, %v", got, err)
	}
	conn.Close() // flush and release the files

	for _, tc := range []struct {
		name string
		ct   []byte
		want bool
	}{
		{"KeptUnderNewMasterKey", latest[kept], true}, // the search finds what is there
		{"KeptUnderOldMasterKey", old[kept], false},
		{"DestroyedUnderOldMasterKey", old[doomed], false},
		{"DestroyedUnderNewMasterKey", latest[doomed], false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			found := filesHolding(t, dir, tc.ct)
			if tc.want && len(found) == 0 {
				t.Error("the search does not find a stored data key")
			}
			if !tc.want && len(found) > 0 {
				t.Errorf("still in the files: %v", found)
			}
		})
	}
}

// TestDataKeysEraseStale checks that a replaced data key a Replace did not
// erase (as after a crash in between) is erased by EraseStale, leaving the
// latest one.
func TestDataKeysEraseStale(t *testing.T) {
	conn, dk := MustDataKeys(t, t.TempDir())
	ctx := context.Background()
	const id = "01JB2Z8Q7X5V4T3S2R1P0N9S8K"
	if err := dk.Create(ctx, id, []byte(`"first"`)); err != nil {
		t.Fatal(err)
	}
	// A second data key on the subject without erasing the first, as a
	// Replace interrupted after its publish leaves it.
	if _, err := conn.JS.Publish(ctx, "keysd.datakeys."+bus.Token(id), []byte(`"second"`)); err != nil {
		t.Fatal(err)
	}
	n, err := dk.EraseStale(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Errorf("EraseStale erased %d, want 1", n)
	}
	if data, _, err := dk.Get(ctx, id); err != nil || string(data) != `"second"` {
		t.Errorf("Get = %s, %v; want the latest", data, err)
	}
	if n, err := dk.EraseStale(ctx); err != nil || n != 0 {
		t.Errorf("EraseStale again = %d, %v; want 0", n, err)
	}
}
