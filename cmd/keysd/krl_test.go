package main

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/infrakeys/infrakeys/krl"
)

// MustKRL fetches GET /--krl without credentials, with If-None-Match
// etag unless it is empty.
func MustKRL(tb testing.TB, k *keysd, etag string) *response {
	tb.Helper()
	h := http.Header{}
	if etag != "" {
		h.Set("If-None-Match", etag)
	}
	r := k.Bearer("").DoWith(tb, "GET", "/--krl", nil, h)
	if r.StatusCode != http.StatusOK && r.StatusCode != http.StatusNotModified {
		tb.Fatalf("GET /--krl on %s: %d %s", k.URL, r.StatusCode, r.Body)
	}
	if got := r.Header.Get("Cache-Control"); got != "no-cache" {
		tb.Errorf("Cache-Control = %q, want no-cache", got)
	}
	if r.StatusCode == http.StatusOK {
		if got := r.Header.Get("Content-Type"); got != "application/octet-stream" {
			tb.Errorf("Content-Type = %q, want application/octet-stream", got)
		}
	}
	return r
}

// MustParseKRL parses a fetched list.
func MustParseKRL(tb testing.TB, r *response) *krl.KRL {
	tb.Helper()
	k, err := krl.Parse(r.Body)
	if err != nil {
		tb.Fatalf("the list does not parse: %v", err)
	}
	return k
}

// revokedSerials returns the serials k revokes under the CA key ca.
func revokedSerials(k *krl.KRL, ca ssh.PublicKey) []uint64 {
	var out []uint64
	for _, cr := range k.Certificates {
		if cr.CA != nil && bytes.Equal(cr.CA.Marshal(), ca.Marshal()) {
			for _, s := range cr.Serials {
				for n := s.First; n <= s.Last; n++ {
					out = append(out, n)
				}
			}
		}
	}
	return out
}

// Two replicas on one event log serve the same list: a revocation
// through one is in the next list the other serves, at once, and so is a
// key deleted through the other; the ETag is the list's version, and a
// client that has the current list gets a 304.
func TestKRLAcrossReplicas(t *testing.T) {
	ns := MustNATSServer(t)
	env := externalEnv(t, ns)
	k1 := MustStart(t, env)
	k2 := MustStart(t, map[string]string{"KEYSD_NATS_URL": env["KEYSD_NATS_URL"], "KEYSD_NATS_CREDS": env["KEYSD_NATS_CREDS"], "KEYSD_MASTER_KEY_FILE": env["KEYSD_MASTER_KEY_FILE"]})

	// same requires both replicas to serve r's bytes under r's ETag.
	same := func(what string, r *response) {
		t.Helper()
		for _, k := range []*keysd{k1, k2} {
			o := MustKRL(t, k, "")
			if !bytes.Equal(o.Body, r.Body) || o.Header.Get("ETag") != r.Header.Get("ETag") {
				t.Errorf("%s: %s serves %d bytes with ETag %s, want %d bytes with %s", what, k.URL, len(o.Body), o.Header.Get("ETag"), len(r.Body), r.Header.Get("ETag"))
			}
		}
	}

	first := MustKRL(t, k2, "")
	if k := MustParseKRL(t, first); len(k.Certificates) != 0 || len(k.SHA256) != 0 {
		t.Fatalf("a new keysd revokes something: %+v", k)
	}
	same("Empty", first)
	if r := MustKRL(t, k1, first.Header.Get("ETag")); r.StatusCode != http.StatusNotModified || len(r.Body) != 0 {
		t.Errorf("If-None-Match with the current ETag: %d, %d bytes, want 304 and none", r.StatusCode, len(r.Body))
	}

	caKey := MustCAKey(t, k1, "user")
	caPub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(caKey.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	priv := MustKey(t)
	alice := MustAccountNamedKey(t, k1, "alice", "laptop", priv)
	cert := alice.MustSign(t, "/my/keys/laptop/certificates", nil)
	if r := MustKRL(t, k2, first.Header.Get("ETag")); r.StatusCode != http.StatusNotModified {
		t.Errorf("a certificate signed, none revoked: %d, want 304", r.StatusCode)
	}

	// Revoked through k1, listed by k2 in its next answer.
	if r := alice.Do(t, "DELETE", fmt.Sprintf("/my/certificates/%d", cert.Serial), nil); r.StatusCode != http.StatusNoContent {
		t.Fatalf("revoke: %d %s", r.StatusCode, r.Body)
	}
	revoked := MustKRL(t, k2, first.Header.Get("ETag"))
	if revoked.StatusCode != http.StatusOK {
		t.Fatalf("after a revocation, the old ETag: %d, want 200", revoked.StatusCode)
	}
	list := MustParseKRL(t, revoked)
	if got := revokedSerials(list, caPub); !slices.Equal(got, []uint64{cert.Serial}) {
		t.Errorf("k2's list revokes %v under the CA key, want [%d]", got, cert.Serial)
	}
	if got, want := revoked.Header.Get("ETag"), fmt.Sprintf(`"%d"`, list.Version); got != want || list.Version == 0 {
		t.Errorf("ETag %s, list version %d: want the version, quoted", got, list.Version)
	}
	same("Revoked", revoked)

	// A key deleted through k2, listed by k1 at once.
	other := MustKey(t)
	if r := alice.Do(t, "POST", "/my/keys", map[string]any{"name": "old", "key": AuthorizedKey(t, other, "")}); r.StatusCode != http.StatusCreated {
		t.Fatalf("add key: %d %s", r.StatusCode, r.Body)
	}
	if r := k2.Client(t, "alice", priv).Do(t, "DELETE", "/my/keys/old", nil); r.StatusCode != http.StatusNoContent {
		t.Fatalf("delete key on k2: %d %s", r.StatusCode, r.Body)
	}
	deleted := MustKRL(t, k1, revoked.Header.Get("ETag"))
	list = MustParseKRL(t, deleted)
	if want := sha256.Sum256(MustSSHPublic(t, other).Marshal()); !slices.Contains(list.SHA256, want) || len(list.SHA256) != 1 {
		t.Errorf("k1's list revokes %d fingerprints, want the deleted key's alone", len(list.SHA256))
	}
	same("Deleted", deleted)
	if r := MustKRL(t, k2, `W/"1", `+deleted.Header.Get("ETag")); r.StatusCode != http.StatusNotModified {
		t.Errorf("If-None-Match listing the current ETag among others: %d, want 304", r.StatusCode)
	}

	families := k1.scrape(t)
	if got, _ := metricValue(families, "keysd_krl_entries", nil); got != 2 {
		t.Errorf("keysd_krl_entries = %v, want 2", got)
	}
	if got, _ := metricValue(families, "keysd_krl_bytes", nil); got != float64(len(deleted.Body)) {
		t.Errorf("keysd_krl_bytes = %v, want %d", got, len(deleted.Body))
	}
	if strings.Contains(string(deleted.Body), "alice") {
		t.Errorf("the list names an account")
	}
}
