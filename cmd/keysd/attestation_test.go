package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/infrakeys/infrakeys/bus"
	"github.com/infrakeys/infrakeys/domain"
	"github.com/infrakeys/infrakeys/domain/attestationtest"
)

// attestedKeyJSON is a key with the attestation fields.
type attestedKeyJSON struct {
	Name        string   `json:"name"`
	Attested    bool     `json:"attested"`
	Multifactor []string `json:"multifactor"`
}

func mustECDSA(tb testing.TB) *ecdsa.PrivateKey {
	tb.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

// MustStartWithRoot starts keysd trusting pki's root.
func MustStartWithRoot(tb testing.TB, pki *attestationtest.PKI) *keysd {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "roots.pem")
	if err := os.WriteFile(path, pki.RootPEM(), 0o644); err != nil {
		tb.Fatal(err)
	}
	return MustStart(tb, map[string]string{"KEYSD_ATTESTATION_ROOTS": path})
}

func TestAttestedKeys(t *testing.T) {
	pki := attestationtest.New(t, false) // YubiKey 4: the device certificate is no CA
	k := MustStartWithRoot(t, pki)
	alice := MustAccount(t, k, "alice")

	for _, tc := range []struct {
		name       string
		pin, touch byte
		want       []string
	}{
		{"OK_PinAndTouch", 2, 2, []string{"pin", "touch"}},
		{"OK_Pin", 3, 1, []string{"pin"}},
		{"OK_Touch", 1, 3, []string{"touch"}},
		{"OK_NoFactor", 1, 1, []string{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			key := mustECDSA(t)
			r := alice.Do(t, "POST", "/alice/keys", map[string]any{
				"name": tc.name, "key": AuthorizedKey(t, key, ""), "attestation": pki.Chain(t, &key.PublicKey, tc.pin, tc.touch, 12345678),
			})
			if r.StatusCode != http.StatusCreated {
				t.Fatalf("create: %d %s", r.StatusCode, r.Body)
			}
			for _, resp := range []*response{r, alice.Do(t, "GET", "/alice/keys/"+tc.name, nil)} {
				var got attestedKeyJSON
				resp.JSON(t, &got)
				if !got.Attested || !slices.Equal(got.Multifactor, tc.want) || !strings.Contains(string(resp.Body), `"multifactor":[`) {
					t.Errorf("key %s", resp.Body)
				}
			}
		})
	}
	t.Run("NotAttestedLeavesFieldsOut", func(t *testing.T) {
		r := alice.Do(t, "GET", "/alice/keys/alice@test", nil)
		if strings.Contains(string(r.Body), "attested") || strings.Contains(string(r.Body), "multifactor") {
			t.Errorf("plain key shows attestation fields: %s", r.Body)
		}
	})
	t.Run("ListShowsAttested", func(t *testing.T) {
		var list []attestedKeyJSON
		alice.Do(t, "GET", "/alice/keys", nil).JSON(t, &list)
		got := map[string]attestedKeyJSON{}
		for _, k := range list {
			got[k.Name] = k
		}
		if k := got["OK_PinAndTouch"]; !k.Attested || !slices.Equal(k.Multifactor, []string{"pin", "touch"}) {
			t.Errorf("attested key in the list: %+v", k)
		}
		if k := got["OK_NoFactor"]; !k.Attested || k.Multifactor == nil || len(k.Multifactor) != 0 {
			t.Errorf("attested key without factor in the list: %+v", k)
		}
		if k, ok := got["alice@test"]; !ok || k.Attested || k.Multifactor != nil {
			t.Errorf("plain key in the list: %+v (listed %v)", k, ok)
		}
	})
	// Each refusal names the check that failed.
	for _, tc := range []struct {
		name  string
		chain func(pub *ecdsa.PublicKey) []string
		check string
	}{
		{"ErrSlotKeySigns", func(pub *ecdsa.PublicKey) []string { return pki.SlotSignedChain(t, pub, 2, 2) },
			"certificate 2 is a key's certificate (it has the PIN and touch policy extension 1.3.6.1.4.1.41482.3.8), not a device certificate, so it cannot sign certificate 1"},
		{"ErrExpired", func(pub *ecdsa.PublicKey) []string { return pki.ExpiredChain(t, pub) },
			"certificate 1 has expired"},
		{"ErrBrokenSignature", func(pub *ecdsa.PublicKey) []string {
			chain := pki.Chain(t, pub, 2, 2, 1)
			chain[0] = mustBreakSignature(t, chain[0])
			return chain
		}, "certificate 1 is not signed by certificate 2"},
		{"ErrExtraCertificates", func(pub *ecdsa.PublicKey) []string {
			return append(pki.Chain(t, pub, 2, 2, 1), string(attestationtest.New(t, true).RootPEM()))
		}, "certificate 3 proves nothing: certificate 2 is already signed by a trusted root"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			key := mustECDSA(t)
			r := alice.Do(t, "POST", "/alice/keys", map[string]any{"name": tc.name, "key": AuthorizedKey(t, key, ""), "attestation": tc.chain(&key.PublicKey)})
			if code, msg := r.ErrorBody(t); r.StatusCode != 409 || code != "InvalidArgument" || msg != "attestation is invalid: "+tc.check {
				t.Errorf("got %d %s %q, want 409 InvalidArgument %q", r.StatusCode, code, msg, "attestation is invalid: "+tc.check)
			}
			if r := alice.Do(t, "GET", "/alice/keys/"+tc.name, nil); r.StatusCode != 404 {
				t.Errorf("refused key exists: %d %s", r.StatusCode, r.Body)
			}
		})
	}
	t.Run("ErrWrongKey", func(t *testing.T) {
		key, other := mustECDSA(t), mustECDSA(t)
		r := alice.Do(t, "POST", "/alice/keys", map[string]any{"key": AuthorizedKey(t, key, ""), "attestation": pki.Chain(t, &other.PublicKey, 2, 2, 1)})
		if code, msg := r.ErrorBody(t); r.StatusCode != 409 || code != "InvalidArgument" || !strings.HasPrefix(msg, "attestation is invalid") {
			t.Errorf("got %d %s %q", r.StatusCode, code, msg)
		}
	})
	t.Run("ErrUntrustedRoot", func(t *testing.T) {
		key := mustECDSA(t)
		r := alice.Do(t, "POST", "/alice/keys", map[string]any{"key": AuthorizedKey(t, key, ""), "attestation": attestationtest.New(t, true).Chain(t, &key.PublicKey, 2, 2, 1)})
		if code, msg := r.ErrorBody(t); r.StatusCode != 409 || code != "InvalidArgument" || !strings.Contains(msg, "trusted root") {
			t.Errorf("got %d %s %q", r.StatusCode, code, msg)
		}
	})
	t.Run("ErrMalformedPEM", func(t *testing.T) {
		key := mustECDSA(t)
		r := alice.Do(t, "POST", "/alice/keys", map[string]any{"key": AuthorizedKey(t, key, ""), "attestation": []string{"not pem"}})
		if code, _ := r.ErrorBody(t); r.StatusCode != 409 || code != "InvalidArgument" {
			t.Errorf("got %d %s", r.StatusCode, code)
		}
	})
	t.Run("AuditSeesAttestation", func(t *testing.T) {
		k.Stop(t)
		found := map[string]*domain.Attestation{}
		readEvents(t, k.DataDir, func(e domain.Event) {
			if e.Type != domain.TypeKeyCreated {
				return
			}
			var p domain.KeyCreated
			if err := json.Unmarshal(e.Data, &p); err != nil {
				t.Fatal(err)
			}
			found[p.Name] = p.Attestation
		})
		if a := found["OK_PinAndTouch"]; a == nil || a.Serial != 12345678 || a.PINPolicy != 2 || a.TouchPolicy != 2 || !slices.Equal(a.Multifactor, []string{"pin", "touch"}) {
			t.Errorf("KeyCreated attestation: %+v", a)
		}
		if a := found["alice@test"]; a != nil {
			t.Errorf("plain key has attestation %+v", a)
		}
	})
}

// mustBreakSignature returns the PEM certificate certPEM with one bit of
// its signature flipped.
func mustBreakSignature(tb testing.TB, certPEM string) string {
	tb.Helper()
	block, _ := pem.Decode([]byte(certPEM))
	if block == nil {
		tb.Fatal("not PEM")
	}
	raw := bytes.Clone(block.Bytes)
	raw[len(raw)-1] ^= 1 // the signature is the last field
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: raw}))
}

// readEvents replays the event log of a stopped keysd's data directory.
func readEvents(tb testing.TB, dataDir string, f func(domain.Event)) {
	tb.Helper()
	ctx := context.Background()
	c, err := bus.Connect(ctx, bus.Config{StoreDir: filepath.Join(dataDir, "jetstream")})
	if err != nil {
		tb.Fatal(err)
	}
	defer c.Close()
	l, err := bus.OpenEventLog(ctx, c)
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := l.Replay(ctx, bus.ReplayOptions{}, func(r bus.Recorded) error { f(r.Event); return nil }); err != nil {
		tb.Fatal(err)
	}
}

func TestAttestationPolicies(t *testing.T) {
	pki := attestationtest.New(t, true)
	k := MustStartWithRoot(t, pki)
	alice := MustAccount(t, k, "alice") // signs with a plain key

	attested := mustECDSA(t)
	if r := alice.Do(t, "POST", "/alice/keys", map[string]any{"name": "yubi", "key": AuthorizedKey(t, attested, ""), "attestation": pki.Chain(t, &attested.PublicKey, 2, 1, 7)}); r.StatusCode != 201 {
		t.Fatalf("attested key: %d %s", r.StatusCode, r.Body)
	}
	noFactor := mustECDSA(t)
	if r := alice.Do(t, "POST", "/alice/keys", map[string]any{"name": "nofactor", "key": AuthorizedKey(t, noFactor, ""), "attestation": pki.Chain(t, &noFactor.PublicKey, 1, 1, 8)}); r.StatusCode != 201 {
		t.Fatalf("attested key without factor: %d %s", r.StatusCode, r.Body)
	}
	yubi := k.Client(t, "alice", attested)
	plainPolicyless := MustAccount(t, k, "bob")

	setPolicy := func(t *testing.T, p map[string]any) {
		t.Helper()
		r := k.Admin.Do(t, "PUT", "/--admin/accounts/alice/policy", p)
		if r.StatusCode != 200 {
			t.Fatalf("set policy: %d %s", r.StatusCode, r.Body)
		}
	}
	refused := func(t *testing.T, r *response, policy string) {
		t.Helper()
		if code, msg := r.ErrorBody(t); r.StatusCode != 403 || code != "NotAuthorized" || !strings.Contains(msg, policy) {
			t.Errorf("got %d %s %q, want 403 NotAuthorized naming %s", r.StatusCode, code, msg, policy)
		}
	}

	t.Run("RequireAttestedKeys", func(t *testing.T) {
		setPolicy(t, map[string]any{"requireAttestedKeys": true})
		refused(t, alice.Do(t, "POST", "/alice/keys", map[string]any{"key": AuthorizedKey(t, MustKey(t), "")}), "requireAttestedKeys")
		key := mustECDSA(t)
		if r := alice.Do(t, "POST", "/alice/keys", map[string]any{"key": AuthorizedKey(t, key, ""), "attestation": pki.Chain(t, &key.PublicKey, 2, 2, 9)}); r.StatusCode != 201 {
			t.Errorf("attested key under policy: %d %s", r.StatusCode, r.Body)
		}
		if r := plainPolicyless.Do(t, "POST", "/bob/keys", map[string]any{"key": AuthorizedKey(t, MustKey(t), "")}); r.StatusCode != 201 {
			t.Errorf("another account is not under alice's policy: %d", r.StatusCode)
		}
	})
	t.Run("RequireAttestedSigning", func(t *testing.T) {
		setPolicy(t, map[string]any{"requireAttestedSigning": true})
		refused(t, alice.Do(t, "GET", "/alice/keys", nil), "requireAttestedSigning")
		if r := yubi.Do(t, "GET", "/alice/keys", nil); r.StatusCode != 200 {
			t.Errorf("signed with the attested key: %d %s", r.StatusCode, r.Body)
		}
	})
	t.Run("RequireMultifactorSigning", func(t *testing.T) {
		setPolicy(t, map[string]any{"requireMultifactorSigning": true})
		refused(t, k.Client(t, "alice", noFactor).Do(t, "GET", "/alice/keys", nil), "requireMultifactorSigning")
		refused(t, alice.Do(t, "GET", "/alice/keys", nil), "requireMultifactorSigning")
		if r := yubi.Do(t, "GET", "/alice/keys", nil); r.StatusCode != 200 {
			t.Errorf("signed with the PIN key: %d %s", r.StatusCode, r.Body)
		}
	})
	t.Run("PolicyShownAndCleared", func(t *testing.T) {
		var got struct {
			Policy domain.Policy `json:"policy"`
		}
		k.Admin.Do(t, "GET", "/--admin/accounts/alice", nil).JSON(t, &got)
		if !got.Policy.RequireMultifactorSigning || got.Policy.RequireAttestedKeys {
			t.Errorf("policy %+v", got.Policy)
		}
		setPolicy(t, map[string]any{})
		if r := alice.Do(t, "GET", "/alice/keys", nil); r.StatusCode != 200 {
			t.Errorf("after clearing: %d", r.StatusCode)
		}
	})
	t.Run("ErrBadPolicy", func(t *testing.T) {
		for _, body := range []map[string]any{{"requireAttestedKeys": "yes"}, {"requireEverything": true}} {
			r := k.Admin.Do(t, "PUT", "/--admin/accounts/alice/policy", body)
			if code, _ := r.ErrorBody(t); r.StatusCode != 409 || code != "InvalidArgument" {
				t.Errorf("%v: %d %s", body, r.StatusCode, code)
			}
		}
		if r := alice.Do(t, "PUT", "/--admin/accounts/alice/policy", map[string]any{}); r.StatusCode != 403 {
			t.Errorf("non-operator sets policy: %d", r.StatusCode)
		}
	})
}
