package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
)

// lmCall sends a request to the infrastructure keys API with a bearer
// token and returns the status and body.
func lmCall(tb testing.TB, base, token, method, path string, body any) (int, []byte) {
	tb.Helper()
	var rd io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			tb.Fatal(err)
		}
		rd = strings.NewReader(string(data))
	}
	req, err := http.NewRequest(method, base+"/api/resource-manager/infrastructure-keys"+path, rd)
	if err != nil {
		tb.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatal(err)
	}
	return resp.StatusCode, data
}

// MustTokenFromKeysctl creates a token with keysctl and returns its secret.
func MustTokenFromKeysctl(tb testing.TB, ctl map[string]string, name, roles string) string {
	tb.Helper()
	out, err := keysctl(tb, ctl, "token", "create", name, "--roles", roles)
	if err != nil {
		tb.Fatalf("token create: %v %s", err, out)
	}
	for _, f := range strings.Fields(out) {
		if strings.HasPrefix(f, "ikt_") {
			return f
		}
	}
	tb.Fatalf("no token in %q", out)
	return ""
}

// TestMasterKeyRotation rotates the master key of a real keysd process from
// the one the embedded default made (A) to a new one (B), following the
// steps of docs/sealing.md with keysctl, and checks that every private half
// reads back the same afterwards with B alone, and that A alone opens
// nothing any more.
func TestMasterKeyRotation(t *testing.T) {
	dir := t.TempDir()
	adminPriv, adminPub := MustKeyFiles(t, dir, "admin")
	dataDir := filepath.Join(dir, "data")
	base := []string{"KEYSD_DATA_DIR=" + dataDir, "KEYSD_BOOTSTRAP_ACCOUNT=admin", "KEYSD_BOOTSTRAP_KEY=" + adminPub}
	oldKey, newKey := filepath.Join(dataDir, "master.key"), filepath.Join(dir, "new.key")
	d := MustRunKeysd(t, base)
	ctl := map[string]string{"KEYSCTL_URL": d.url, "KEYSCTL_ACCOUNT": "admin", "KEYSCTL_KEY_FILE": adminPriv}
	token := MustTokenFromKeysctl(t, ctl, "rotator", "keys:manage,keys:private")

	read := func(t *testing.T, d *daemon, name string) (int, string) {
		t.Helper()
		status, body := lmCall(t, d.url, token, "GET", "/shared/"+url.PathEscape(name)+"?includePrivateKey=true", nil)
		var k struct{ PrivateKey string }
		if status == http.StatusOK {
			if err := json.Unmarshal(body, &k); err != nil {
				t.Fatal(err)
			}
		}
		return status, k.PrivateKey
	}
	pems := map[string]string{}
	for _, alg := range []string{"ed25519", "rsa-3072", "ecdsa-p256"} {
		name := "key-" + alg
		if status, body := lmCall(t, d.url, token, "POST", "/shared", map[string]any{"name": name, "generate": alg}); status != http.StatusCreated {
			t.Fatalf("create %s: %d %s", name, status, body)
		}
		status, pem := read(t, d, name)
		if status != http.StatusOK || !strings.Contains(pem, "PRIVATE KEY") {
			t.Fatalf("read %s: %d", name, status)
		}
		pems[name] = pem
	}
	checkAll := func(t *testing.T, d *daemon) {
		t.Helper()
		for name, want := range pems {
			if status, got := read(t, d, name); status != http.StatusOK || got != want {
				t.Errorf("%s: status %d, private half changed: %v", name, status, got != want)
			}
		}
	}

	// Step 1: a new master key.
	if out, err := keysctl(t, nil, "master-key", "generate", newKey); err != nil {
		t.Fatalf("generate: %v %s", err, out)
	}
	// Step 2: restart with the new key, the old one kept to open.
	d.Stop(t)
	d = MustRunKeysd(t, append(base[:len(base):len(base)], "KEYSD_MASTER_KEY_FILE="+newKey, "KEYSD_PREVIOUS_MASTER_KEY_FILES="+oldKey))
	ctl["KEYSCTL_URL"] = d.url
	t.Run("OpensBeforeRewrap", func(t *testing.T) { checkAll(t, d) })
	// Step 3: rewrap.
	out, err := keysctl(t, ctl, "master-key", "rewrap")
	if err != nil {
		t.Fatalf("rewrap: %v %s", err, out)
	}
	var res struct {
		Rewrapped int `json:"rewrapped"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil || res.Rewrapped != len(pems) {
		t.Errorf("rewrap output %s: want %d rewrapped (%v)", out, len(pems), err)
	}
	// Step 4: restart with the new key alone.
	d.Stop(t)
	d = MustRunKeysd(t, append(base[:len(base):len(base)], "KEYSD_MASTER_KEY_FILE="+newKey))
	t.Run("OpensWithNewKeyAlone", func(t *testing.T) { checkAll(t, d) })

	// The old master key alone opens nothing any more.
	d.Stop(t)
	d = MustRunKeysd(t, append(base[:len(base):len(base)], "KEYSD_MASTER_KEY_FILE="+oldKey))
	t.Run("ErrOldKeyAlone", func(t *testing.T) {
		for name, want := range pems {
			status, got := read(t, d, name)
			if status == http.StatusOK || got == want {
				t.Errorf("%s: status %d with the retired master key", name, status)
			}
		}
	})
	d.Stop(t)
}
