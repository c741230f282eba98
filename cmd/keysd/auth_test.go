package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"net/http"
	"testing"
	"time"

	"github.com/infrakeys/infrakeys/http/httpsig"
)

// signedGet sends GET path signed by s, with date (if not zero) as Date.
func signedGet(tb testing.TB, k *keysd, s *httpsig.Signer, path string, date time.Time) *response {
	tb.Helper()
	req := newRequest(tb, "GET", k.URL+path, nil)
	if !date.IsZero() {
		req.Header.Set("Date", date.UTC().Format(http.TimeFormat))
	}
	if err := s.Sign(req); err != nil {
		tb.Fatal(err)
	}
	return send(tb, req)
}

// MustAccountWithKey creates login with priv as its first key.
func MustAccountWithKey(tb testing.TB, k *keysd, login string, priv crypto.Signer) {
	tb.Helper()
	r := k.Admin.Do(tb, "POST", "/--admin/accounts", map[string]any{"login": login, "key": AuthorizedKey(tb, priv, "")})
	if r.StatusCode != http.StatusCreated {
		tb.Fatalf("create account %s: %d %s", login, r.StatusCode, r.Body)
	}
}

func TestAuthAlgorithms(t *testing.T) {
	k := MustStart(t, nil)
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	p521, _ := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	cases := []struct {
		name string
		key  crypto.Signer
		alg  string
	}{
		{"OK_RSA_SHA256", rsaKey, "rsa-sha256"},
		{"OK_RSA_SHA384", rsaKey, "rsa-sha384"},
		{"OK_RSA_SHA512", rsaKey, "rsa-sha512"},
		{"OK_ECDSA_SHA256", p256, "ecdsa-sha256"},
		{"OK_ECDSA_SHA384", p384, "ecdsa-sha384"},
		{"OK_ECDSA_SHA512", p521, "ecdsa-sha512"},
		{"OK_Ed25519", MustKey(t), "ed25519-sha512"},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			login := "user" + string(rune('a'+i))
			MustAccountWithKey(t, k, login, tc.key)
			s := &httpsig.Signer{KeyID: httpsig.KeyIDFor(login, MustSSHPublic(t, tc.key)), Key: tc.key, Algorithm: tc.alg}
			if r := signedGet(t, k, s, "/"+login+"/keys", time.Time{}); r.StatusCode != 200 {
				t.Errorf("%s: %d %s", tc.alg, r.StatusCode, r.Body)
			}
		})
	}
}

func TestAuthFailures(t *testing.T) {
	k := MustStart(t, nil)
	key := MustKey(t)
	MustAccountWithKey(t, k, "alice", key)
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	MustAccountWithKey(t, k, "rsauser", rsaKey)
	keyID := httpsig.KeyIDFor("alice", MustSSHPublic(t, key))
	good := func() *httpsig.Signer { return &httpsig.Signer{KeyID: keyID, Key: key} }
	other := MustKey(t)

	unauthorized := []struct {
		name   string
		signer *httpsig.Signer
		date   time.Time
	}{
		{"ErrUnknownAccount", &httpsig.Signer{KeyID: httpsig.KeyIDFor("nobody", MustSSHPublic(t, key)), Key: key}, time.Time{}},
		{"ErrUnknownKey", &httpsig.Signer{KeyID: httpsig.KeyIDFor("alice", MustSSHPublic(t, other)), Key: other}, time.Time{}},
		{"ErrWrongSignature", &httpsig.Signer{KeyID: keyID, Key: other}, time.Time{}},
		{"ErrMyInKeyID", &httpsig.Signer{KeyID: httpsig.KeyIDFor("my", MustSSHPublic(t, key)), Key: key}, time.Time{}},
		{"ErrKeyIDShape", &httpsig.Signer{KeyID: "alice", Key: key}, time.Time{}},
		{"ErrDateTooOld", good(), time.Now().Add(-301 * time.Second)},
		{"ErrDateInFuture", good(), time.Now().Add(301 * time.Second)},
		{"ErrDateOnly", &httpsig.Signer{KeyID: keyID, Key: key, Headers: []string{"date"}}, time.Time{}},
		{"ErrDateNotSigned", &httpsig.Signer{KeyID: keyID, Key: key, Headers: []string{"(request-target)"}}, time.Time{}},
		{"ErrRSASHA1", &httpsig.Signer{KeyID: httpsig.KeyIDFor("rsauser", MustSSHPublic(t, rsaKey)), Key: rsaKey, Algorithm: "rsa-sha1"}, time.Time{}},
	}
	var first string
	for _, tc := range unauthorized {
		t.Run(tc.name, func(t *testing.T) {
			r := signedGet(t, k, tc.signer, "/alice/keys", tc.date)
			code, msg := r.ErrorBody(t)
			if r.StatusCode != 401 || code != "InvalidCredentials" {
				t.Errorf("got %d %s %q, want 401 InvalidCredentials", r.StatusCode, code, msg)
			}
			if first == "" {
				first = msg
			} else if msg != first {
				t.Errorf("message %q differs from %q: failures must be indistinguishable", msg, first)
			}
		})
	}
	t.Run("OK_DateWithinSkew", func(t *testing.T) {
		if r := signedGet(t, k, good(), "/alice/keys", time.Now().Add(-290*time.Second)); r.StatusCode != 200 {
			t.Errorf("got %d", r.StatusCode)
		}
	})
	t.Run("ErrReplayedOnAnotherPath", func(t *testing.T) {
		req := newRequest(t, "GET", k.URL+"/alice/keys", nil)
		if err := good().Sign(req); err != nil {
			t.Fatal(err)
		}
		replay := newRequest(t, "GET", k.URL+"/alice/keys/x", nil)
		replay.Header = req.Header.Clone()
		if r := send(t, replay); r.StatusCode != 401 {
			t.Errorf("replayed signature: %d", r.StatusCode)
		}
	})
	t.Run("ErrNoCredentials", func(t *testing.T) {
		r := send(t, newRequest(t, "GET", k.URL+"/alice/keys", nil))
		if code, _ := r.ErrorBody(t); r.StatusCode != 401 || code != "InvalidCredentials" {
			t.Errorf("got %d %s", r.StatusCode, code)
		}
	})
	t.Run("ErrSignedHeaderMissing", func(t *testing.T) {
		// Signed with x-custom, which is then left out of the request.
		req := newRequest(t, "GET", k.URL+"/alice/keys", nil)
		req.Header.Set("X-Custom", "v")
		s := &httpsig.Signer{KeyID: keyID, Key: key, Headers: []string{"(request-target)", "date", "x-custom"}}
		if err := s.Sign(req); err != nil {
			t.Fatal(err)
		}
		req.Header.Del("X-Custom")
		r := send(t, req)
		if code, msg := r.ErrorBody(t); r.StatusCode != 400 || code != "InvalidHeader" || msg != `Authorization header is malformed: signed header "x-custom" is missing from the request` {
			t.Errorf("got %d %s %q, want 400 InvalidHeader naming x-custom", r.StatusCode, code, msg)
		}
	})
	for name, header := range map[string]string{
		"ErrMalformedScheme":    "Basic YWxpY2U6cHc=",
		"ErrMalformedNoKeyID":   `Signature algorithm="ed25519-sha512",signature="AAAA"`,
		"ErrMalformedBase64":    `Signature keyId="/alice/keys/x",algorithm="ed25519-sha512",signature="%%%"`,
		"ErrMalformedUnquoted":  `Signature keyId=/alice/keys/x,signature="AAAA"`,
		"ErrMalformedTruncated": `Signature keyId="/alice/keys/x`,
	} {
		t.Run(name, func(t *testing.T) {
			req := newRequest(t, "GET", k.URL+"/alice/keys", nil)
			req.Header.Set("Date", time.Now().UTC().Format(http.TimeFormat))
			req.Header.Set("Authorization", header)
			r := send(t, req)
			if code, _ := r.ErrorBody(t); r.StatusCode != 400 || code != "InvalidHeader" {
				t.Errorf("got %d %s", r.StatusCode, code)
			}
		})
	}
}

func TestAuthLegacySwitch(t *testing.T) {
	k := MustStart(t, map[string]string{"KEYSD_ALLOW_LEGACY_SIGNATURES": "true"})
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	MustAccountWithKey(t, k, "old", rsaKey)
	keyID := httpsig.KeyIDFor("old", MustSSHPublic(t, rsaKey))
	// What triton-go sends: rsa-sha1 over date only.
	s := &httpsig.Signer{KeyID: keyID, Key: rsaKey, Algorithm: "rsa-sha1", Headers: []string{"date"}}
	if r := signedGet(t, k, s, "/old/keys", time.Time{}); r.StatusCode != 200 {
		t.Errorf("legacy signature with the switch on: %d %s", r.StatusCode, r.Body)
	}
}

// The Date forms of httpsig.ParseDate pass end to end, and the clock skew
// is measured on the instant they name, zone included: read without its
// +01:00, "now" would be an hour off. An hour-old date is refused in every
// form.
func TestAuthDateForms(t *testing.T) {
	k := MustStart(t, nil)
	key := MustKey(t)
	MustAccountWithKey(t, k, "alice", key)
	s := &httpsig.Signer{KeyID: httpsig.KeyIDFor("alice", MustSSHPublic(t, key)), Key: key}
	plusOne := time.FixedZone("", 3600)
	forms := []struct {
		name   string
		format func(time.Time) string
	}{
		{"RFC1123UTC", func(d time.Time) string { return d.UTC().Format(time.RFC1123) }},
		{"RFC1123Z", func(d time.Time) string { return d.In(plusOne).Format(time.RFC1123Z) }},
		{"RFC3339", func(d time.Time) string { return d.In(plusOne).Format(time.RFC3339) }},
		{"ANSIC", func(d time.Time) string { return d.UTC().Format(time.ANSIC) }},
	}
	for _, f := range forms {
		t.Run(f.name, func(t *testing.T) {
			for _, tc := range []struct {
				date time.Time
				want int
			}{
				{time.Now(), http.StatusOK},
				{time.Now().Add(-time.Hour), http.StatusUnauthorized},
			} {
				req := newRequest(t, "GET", k.URL+"/alice/keys", nil)
				req.Header.Set("Date", f.format(tc.date))
				if err := s.Sign(req); err != nil {
					t.Fatal(err)
				}
				if r := send(t, req); r.StatusCode != tc.want {
					t.Errorf("Date %q: %d %s, want %d", req.Header.Get("Date"), r.StatusCode, r.Body, tc.want)
				}
			}
		})
	}
}

// keysd verifies a signature once and remembers it (http/verified.go):
// what it remembers must be that exact signature, by that key, over that
// signing string, and nothing else about the request.
func TestAuthRemembersOnlyWhatVerified(t *testing.T) {
	k := MustStart(t, nil)
	key, second, other := MustKey(t), MustKey(t), MustKey(t)
	MustAccountWithKey(t, k, "alice", key)
	alice := k.Client(t, "alice", key)
	if r := alice.Do(t, "POST", "/alice/keys", map[string]any{"name": "second", "key": AuthorizedKey(t, second, "")}); r.StatusCode != http.StatusCreated {
		t.Fatalf("add second key: %d %s", r.StatusCode, r.Body)
	}
	date := time.Now()
	signed := func(signer crypto.Signer, keyOf crypto.Signer) *http.Request {
		req := newRequest(t, "GET", k.URL+"/alice/keys", nil)
		req.Header.Set("Date", date.UTC().Format(http.TimeFormat))
		s := &httpsig.Signer{KeyID: httpsig.KeyIDFor("alice", MustSSHPublic(t, keyOf)), Key: signer}
		if err := s.Sign(req); err != nil {
			t.Fatal(err)
		}
		return req
	}
	resend := func(req *http.Request) *response {
		again := newRequest(t, req.Method, req.URL.String(), nil)
		again.Header = req.Header.Clone()
		return send(t, again)
	}
	good := signed(second, second)
	for i := range 2 {
		if r := resend(good); r.StatusCode != 200 {
			t.Fatalf("signed request, time %d: %d %s", i+1, r.StatusCode, r.Body)
		}
	}
	// The same signing string (same key id, date and request line) with a
	// signature made by another key: not the signature that verified.
	if r := resend(signed(other, second)); r.StatusCode != 401 {
		t.Errorf("another signature over a remembered signing string: %d, want 401", r.StatusCode)
	}
	// The key that made a remembered signature is deleted: the exact
	// request is refused.
	if r := alice.Do(t, "DELETE", "/alice/keys/second", nil); r.StatusCode != http.StatusNoContent {
		t.Fatalf("delete second key: %d %s", r.StatusCode, r.Body)
	}
	if r := resend(good); r.StatusCode != 401 {
		t.Errorf("a remembered signature by a deleted key: %d, want 401", r.StatusCode)
	}
}
