package main

import (
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/crypto/ssh"
)

// TestBootstrapKeyReplaced swaps the bootstrap key file for a new key with
// the same comment, as an operator rotating the key does: keysd must still
// start, naming the new key by its fingerprint since the comment is taken.
func TestBootstrapKeyReplaced(t *testing.T) {
	pubFile := filepath.Join(t.TempDir(), "ops.pub")
	writeKey := func(t *testing.T, line string) {
		t.Helper()
		if err := os.WriteFile(pubFile, []byte(line+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	oldKey, newKey := MustKey(t), MustKey(t)
	writeKey(t, AuthorizedKey(t, oldKey, "ops@host"))
	k := MustStart(t, map[string]string{"KEYSD_BOOTSTRAP_ACCOUNT": "ops", "KEYSD_BOOTSTRAP_KEY": pubFile})

	writeKey(t, AuthorizedKey(t, newKey, "ops@host"))
	k.Restart(t)

	var keys []keyJSON
	r := k.Client(t, "ops", newKey).Do(t, "GET", "/ops/keys", nil)
	if r.StatusCode != http.StatusOK {
		t.Fatalf("signed with the new key: %d %s", r.StatusCode, r.Body)
	}
	r.JSON(t, &keys)
	names := map[string]string{}
	for _, key := range keys {
		names[key.Fingerprint] = key.Name
	}
	oldFP, newFP := ssh.FingerprintLegacyMD5(MustSSHPublic(t, oldKey)), ssh.FingerprintLegacyMD5(MustSSHPublic(t, newKey))
	if got, want := len(keys), 2; got != want {
		t.Errorf("ops has %d keys, want %d: %+v", got, want, keys)
	}
	if got, want := names[oldFP], "ops@host"; got != want {
		t.Errorf("old key named %q, want %q", got, want)
	}
	if got, want := names[newFP], newFP; got != want {
		t.Errorf("new key named %q, want its fingerprint %q", got, want)
	}

	t.Run("RestartChangesNothing", func(t *testing.T) {
		k.Restart(t)
		var again []keyJSON
		k.Client(t, "ops", newKey).Do(t, "GET", "/ops/keys", nil).JSON(t, &again)
		if got, want := len(again), 2; got != want {
			t.Errorf("ops has %d keys after another restart, want %d", got, want)
		}
	})
}
