package main

import (
	"crypto/dsa"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"math/big"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"

	"golang.org/x/crypto/ssh"
)

// keyJSON is a key as the API returns it.
type keyJSON struct {
	Name              string `json:"name"`
	Fingerprint       string `json:"fingerprint"`
	FingerprintSHA256 string `json:"fingerprintSHA256"`
	Key               string `json:"key"`
}

// MustAccount creates an account with one ed25519 key through the operator
// API and returns a client signing as it.
func MustAccount(tb testing.TB, k *keysd, login string) *client {
	tb.Helper()
	priv := MustKey(tb)
	r := k.Admin.Do(tb, "POST", "/--admin/accounts", map[string]any{"login": login, "key": AuthorizedKey(tb, priv, login+"@test")})
	if r.StatusCode != http.StatusCreated {
		tb.Fatalf("create account %s: %d %s", login, r.StatusCode, r.Body)
	}
	return k.Client(tb, login, priv)
}

func TestCreateKey(t *testing.T) {
	k := MustStart(t, nil)
	alice := MustAccount(t, k, "alice")

	rsa1024, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	certKey := MustKey(t)
	cert := &ssh.Certificate{Key: MustSSHPublic(t, certKey), CertType: ssh.UserCert, ValidBefore: ssh.CertTimeInfinity}
	if err := cert.SignCert(rand.Reader, mustSSHSigner(t, MustKey(t))); err != nil {
		t.Fatal(err)
	}
	two := AuthorizedKey(t, MustKey(t), "one") + "\n" + AuthorizedKey(t, MustKey(t), "two")
	dsaLine := mustDSALine(t)

	refusals := []struct {
		name       string
		body       any
		status     int
		code, want string
	}{
		{"ErrMissingKey", map[string]any{"name": "x"}, 409, "MissingParameter", "key is a required argument"},
		{"ErrKeyNotString", map[string]any{"key": 42}, 409, "InvalidArgument", "key must be a String"},
		{"ErrKeyUnparseable", map[string]any{"key": "not a key"}, 409, "InvalidArgument", "key is invalid"},
		{"ErrShortRSA", map[string]any{"key": AuthorizedKey(t, rsa1024, "")}, 409, "InvalidArgument", "2048"},
		{"ErrCertificate", map[string]any{"key": strings.TrimSpace(string(ssh.MarshalAuthorizedKey(cert)))}, 409, "InvalidArgument", "certificate"},
		{"ErrTwoKeys", map[string]any{"key": two}, 409, "InvalidArgument", "one key"},
		{"ErrOptions", map[string]any{"key": "no-pty " + AuthorizedKey(t, MustKey(t), "")}, 409, "InvalidArgument", "option"},
		{"ErrAttestationNotArray", map[string]any{"key": AuthorizedKey(t, MustKey(t), ""), "attestation": "pem"}, 409, "InvalidArgument", "attestation"},
		{"ErrAttestationNotStrings", map[string]any{"key": AuthorizedKey(t, MustKey(t), ""), "attestation": []any{1}}, 409, "InvalidArgument", "attestation"},
		{"ErrNameNotString", map[string]any{"key": AuthorizedKey(t, MustKey(t), ""), "name": 7}, 409, "InvalidArgument", "name"},
		{"ErrNameSlash", map[string]any{"key": AuthorizedKey(t, MustKey(t), ""), "name": "a/b"}, 409, "InvalidArgument", "name"},
		{"ErrDSA", map[string]any{"key": dsaLine}, 409, "InvalidArgument", "DSA (ssh-dss) keys are insecure and not accepted"},
		{"ErrBadJSON", "{not json", 400, "BadRequest", "JSON"},
		// The order of the checks (CloudAPI's, docs/api.md): each request fails two of
		// them and must get the first one's answer.
		{"ErrOrderMissingKeyBeforeAttestation", map[string]any{"attestation": "pem"}, 409, "MissingParameter", "key is a required argument"},
		{"ErrOrderInvalidKeyBeforeAttestation", map[string]any{"key": "not a key", "attestation": "pem"}, 409, "InvalidArgument", "key is invalid"},
		{"ErrOrderAttestationTypeBeforeDuplicate", map[string]any{"key": AuthorizedKey(t, MustKey(t), ""), "name": "alice@test", "attestation": "pem"}, 409, "InvalidArgument", "attestation must be an array of Strings"},
		{"ErrOrderAttestationBeforeDuplicate", map[string]any{"key": AuthorizedKey(t, MustKey(t), ""), "name": "alice@test", "attestation": []string{"not pem"}}, 409, "InvalidArgument", "attestation is invalid: certificate 1 is not PEM"},
		{"ErrTooLarge", map[string]any{"key": strings.Repeat("A", 100001)}, 413, "RequestTooLarge", "100000"},
	}
	for _, tc := range refusals {
		t.Run(tc.name, func(t *testing.T) {
			r := alice.Do(t, "POST", "/alice/keys", tc.body)
			code, msg := r.ErrorBody(t)
			if r.StatusCode != tc.status || code != tc.code || !strings.Contains(msg, tc.want) {
				t.Errorf("got %d %s %q, want %d %s containing %q", r.StatusCode, code, msg, tc.status, tc.code, tc.want)
			}
		})
	}
	t.Run("ErrUnparseableMessageExact", func(t *testing.T) {
		r := alice.Do(t, "POST", "/alice/keys", map[string]any{"key": "ssh-ed25519 !!!!"})
		if _, msg := r.ErrorBody(t); !strings.HasPrefix(msg, "key is invalid") {
			t.Errorf("message %q", msg)
		}
	})

	t.Run("OK", func(t *testing.T) {
		priv := MustKey(t)
		line := AuthorizedKey(t, priv, "laptop")
		r := alice.Do(t, "POST", "/alice/keys", map[string]any{"name": "work", "key": line})
		if r.StatusCode != http.StatusCreated {
			t.Fatalf("status %d: %s", r.StatusCode, r.Body)
		}
		var got keyJSON
		r.JSON(t, &got)
		pub := MustSSHPublic(t, priv)
		if got.Name != "work" || got.Fingerprint != ssh.FingerprintLegacyMD5(pub) || got.FingerprintSHA256 != ssh.FingerprintSHA256(pub) || got.Key != line {
			t.Errorf("created %+v", got)
		}
		// CloudAPI encodes with encodeURIComponent: the colons of the
		// fingerprint are %3A.
		if loc, want := r.Header.Get("Location"), "/alice/keys/"+strings.ReplaceAll(got.Fingerprint, ":", "%3A"); loc != want {
			t.Errorf("Location = %q, want %q", loc, want)
		}
	})
	t.Run("OK_Form", func(t *testing.T) {
		// CloudAPI (restify) takes a form body too.
		line := AuthorizedKey(t, MustKey(t), "form")
		req := newRequest(t, "POST", alice.base+"/alice/keys", url.Values{"name": {"from-a-form"}, "key": {line}}.Encode())
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		r := alice.send(t, req)
		var got keyJSON
		r.JSON(t, &got)
		if r.StatusCode != http.StatusCreated || got.Name != "from-a-form" || got.Key != line {
			t.Errorf("got %d %+v", r.StatusCode, got)
		}
	})
	t.Run("OK_NameFromComment", func(t *testing.T) {
		r := alice.Do(t, "POST", "/my/keys", map[string]any{"key": AuthorizedKey(t, MustKey(t), "bob@host")})
		var got keyJSON
		r.JSON(t, &got)
		if r.StatusCode != http.StatusCreated || got.Name != "bob@host" {
			t.Errorf("got %d %+v", r.StatusCode, got)
		}
	})
	t.Run("OK_NameFromFingerprint", func(t *testing.T) {
		r := alice.Do(t, "POST", "/alice/keys", map[string]any{"key": AuthorizedKey(t, MustKey(t), "")})
		var got keyJSON
		r.JSON(t, &got)
		if r.StatusCode != http.StatusCreated || got.Name != got.Fingerprint {
			t.Errorf("got %d %+v", r.StatusCode, got)
		}
	})
	t.Run("OK_ECDSAAndRSA", func(t *testing.T) {
		ec, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
		rs, _ := rsa.GenerateKey(rand.Reader, 2048)
		for _, line := range []string{AuthorizedKey(t, ec, "ec"), AuthorizedKey(t, rs, "rsa")} {
			if r := alice.Do(t, "POST", "/alice/keys", map[string]any{"key": line}); r.StatusCode != http.StatusCreated {
				t.Errorf("%s: %d %s", line[:20], r.StatusCode, r.Body)
			}
		}
	})
	t.Run("OK_FIDO", func(t *testing.T) {
		edPub, _, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		ecPoint, err := ec.PublicKey.ECDH()
		if err != nil {
			t.Fatal(err)
		}
		for _, blob := range [][]byte{
			ssh.Marshal(struct {
				Type        string
				Key         []byte
				Application string
			}{ssh.KeyAlgoSKED25519, edPub, "ssh:"}),
			ssh.Marshal(struct {
				Type        string
				Curve       string
				Point       []byte
				Application string
			}{ssh.KeyAlgoSKECDSA256, "nistp256", ecPoint.Bytes(), "ssh:"}),
		} {
			pub, err := ssh.ParsePublicKey(blob)
			if err != nil {
				t.Fatal(err)
			}
			line := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pub))) + " yubikey"
			r := alice.Do(t, "POST", "/alice/keys", map[string]any{"name": pub.Type(), "key": line})
			var got keyJSON
			r.JSON(t, &got)
			if r.StatusCode != http.StatusCreated || got.Name != pub.Type() || got.Fingerprint != ssh.FingerprintLegacyMD5(pub) || got.Key != line {
				t.Errorf("%s: %d %s", pub.Type(), r.StatusCode, r.Body)
			}
		}
	})
	t.Run("ErrDuplicateName", func(t *testing.T) {
		r := alice.Do(t, "POST", "/alice/keys", map[string]any{"name": "work", "key": AuthorizedKey(t, MustKey(t), "")})
		if code, msg := r.ErrorBody(t); r.StatusCode != 409 || code != "InvalidArgument" || msg != "key already exists or is invalid" {
			t.Errorf("got %d %s %q", r.StatusCode, code, msg)
		}
	})
	t.Run("ErrDuplicateFingerprint", func(t *testing.T) {
		priv := MustKey(t)
		if r := alice.Do(t, "POST", "/alice/keys", map[string]any{"name": "first", "key": AuthorizedKey(t, priv, "")}); r.StatusCode != 201 {
			t.Fatalf("first: %d", r.StatusCode)
		}
		r := alice.Do(t, "POST", "/alice/keys", map[string]any{"name": "second", "key": AuthorizedKey(t, priv, "")})
		if code, msg := r.ErrorBody(t); r.StatusCode != 409 || code != "InvalidArgument" || msg != "key already exists or is invalid" {
			t.Errorf("got %d %s %q", r.StatusCode, code, msg)
		}
	})
	t.Run("FailedRequestsLeftNothing", func(t *testing.T) {
		var keys []keyJSON
		alice.Do(t, "GET", "/alice/keys", nil).JSON(t, &keys)
		// alice@test, work, from-a-form, bob@host, fingerprint-named, ec,
		// rsa, the two FIDO keys, first.
		if got, want := len(keys), 10; got != want {
			t.Errorf("alice has %d keys, want %d", got, want)
		}
	})
}

// mustDSALine returns an ssh-dss public key line. Its numbers are random,
// not a DSA group: keysd refuses the type before looking at them, and
// generating real parameters is slow.
func mustDSALine(tb testing.TB) string {
	tb.Helper()
	n := func(bits int) *big.Int {
		v, err := rand.Prime(rand.Reader, bits)
		if err != nil {
			tb.Fatal(err)
		}
		return v
	}
	pub, err := ssh.NewPublicKey(&dsa.PublicKey{Parameters: dsa.Parameters{P: n(1024), Q: n(160), G: n(1000)}, Y: n(1000)})
	if err != nil {
		tb.Fatal(err)
	}
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pub)))
}

func mustSSHSigner(tb testing.TB, priv any) ssh.Signer {
	tb.Helper()
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

func TestGetListDeleteKey(t *testing.T) {
	k := MustStart(t, nil)
	alice := MustAccount(t, k, "alice")
	priv := MustKey(t)
	pub := MustSSHPublic(t, priv)
	r := alice.Do(t, "POST", "/alice/keys", map[string]any{"name": "second", "key": AuthorizedKey(t, priv, "")})
	if r.StatusCode != 201 {
		t.Fatalf("create: %d %s", r.StatusCode, r.Body)
	}
	md5 := ssh.FingerprintLegacyMD5(pub)
	for name, ref := range map[string]string{
		"ByName": "second", "ByMD5": md5, "ByMD5Prefix": "MD5:" + md5, "BySHA256": ssh.FingerprintSHA256(pub),
	} {
		t.Run("Get"+name, func(t *testing.T) {
			r := alice.Do(t, "GET", "/alice/keys/"+url.PathEscape(ref), nil)
			var got keyJSON
			r.JSON(t, &got)
			if r.StatusCode != 200 || got.Name != "second" || got.Fingerprint != md5 {
				t.Errorf("got %d %+v", r.StatusCode, got)
			}
		})
	}
	t.Run("Head", func(t *testing.T) {
		get := alice.Do(t, "GET", "/alice/keys/second", nil)
		head := alice.Do(t, "HEAD", "/alice/keys/second", nil)
		if head.StatusCode != 200 || len(head.Body) != 0 || head.Header.Get("Content-MD5") != get.Header.Get("Content-MD5") {
			t.Errorf("HEAD: %d, body %d bytes, md5 %q vs %q", head.StatusCode, len(head.Body), head.Header.Get("Content-MD5"), get.Header.Get("Content-MD5"))
		}
		if head := alice.Do(t, "HEAD", "/alice/keys", nil); head.StatusCode != 200 {
			t.Errorf("HEAD list: %d", head.StatusCode)
		}
	})
	t.Run("List", func(t *testing.T) {
		var keys []keyJSON
		r := alice.Do(t, "GET", "/my/keys", nil)
		r.JSON(t, &keys)
		if r.StatusCode != 200 || len(keys) != 2 || keys[0].Name != "alice@test" || keys[1].Name != "second" {
			t.Errorf("got %d %+v", r.StatusCode, keys)
		}
	})
	t.Run("ErrGetMissing", func(t *testing.T) {
		r := alice.Do(t, "GET", "/alice/keys/nope", nil)
		if code, msg := r.ErrorBody(t); r.StatusCode != 404 || code != "ResourceNotFound" || msg != "nope does not exist" {
			t.Errorf("got %d %s %q", r.StatusCode, code, msg)
		}
	})
	t.Run("DeleteSigningKey", func(t *testing.T) {
		// alice signs with "alice@test" and deletes it: allowed.
		if r := alice.Do(t, "DELETE", "/alice/keys/alice@test", nil); r.StatusCode != 204 || len(r.Body) != 0 {
			t.Fatalf("delete: %d %s", r.StatusCode, r.Body)
		}
		if r := alice.Do(t, "GET", "/alice/keys", nil); r.StatusCode != 401 {
			t.Errorf("request signed with the deleted key: %d, want 401", r.StatusCode)
		}
	})
	t.Run("ErrDeleteLastKey", func(t *testing.T) {
		second := k.Client(t, "alice", priv)
		r := second.Do(t, "DELETE", "/alice/keys/second", nil)
		if code, msg := r.ErrorBody(t); r.StatusCode != 409 || code != "InvalidArgument" || !strings.Contains(msg, "last key") {
			t.Errorf("got %d %s %q", r.StatusCode, code, msg)
		}
		if r := second.Do(t, "GET", "/alice/keys/second", nil); r.StatusCode != 200 {
			t.Errorf("last key gone: %d", r.StatusCode)
		}
	})
	t.Run("ErrDeleteMissing", func(t *testing.T) {
		second := k.Client(t, "alice", priv)
		r := second.Do(t, "DELETE", "/alice/keys/nope", nil)
		if code, _ := r.ErrorBody(t); r.StatusCode != 404 || code != "ResourceNotFound" {
			t.Errorf("got %d %s", r.StatusCode, code)
		}
	})
}

// TestKeyNamesInPaths checks that :key is decoded exactly once, however
// the client encoded it: only what must be (Go's url.PathEscape) or
// everything but letters and digits (encodeURIComponent, as the triton CLI).
func TestKeyNamesInPaths(t *testing.T) {
	k := MustStart(t, nil)
	alice := MustAccount(t, k, "alice")
	// "aA" is what "a%41" decodes to when decoded twice.
	names := []string{"aA", "a%41", "x y:z%", "100%", "a+b", "ключ"}
	for _, name := range names {
		if r := alice.Do(t, "POST", "/alice/keys", map[string]any{"name": name, "key": AuthorizedKey(t, MustKey(t), "")}); r.StatusCode != http.StatusCreated {
			t.Fatalf("create %q: %d %s", name, r.StatusCode, r.Body)
		}
	}
	encodings := map[string]func(string) string{"PathEscape": url.PathEscape, "EncodeURIComponent": encodeURIComponent}
	for _, name := range names {
		for enc, escape := range encodings {
			t.Run(enc+"/"+name, func(t *testing.T) {
				for _, login := range []string{"alice", "my"} {
					r := alice.Do(t, "GET", "/"+login+"/keys/"+escape(name), nil)
					var got keyJSON
					r.JSON(t, &got)
					if r.StatusCode != http.StatusOK || got.Name != name {
						t.Errorf("GET /%s/keys/%s: %d, name %q, want %q", login, escape(name), r.StatusCode, got.Name, name)
					}
					if head := alice.Do(t, "HEAD", "/"+login+"/keys/"+escape(name), nil); head.StatusCode != http.StatusOK || head.Header.Get("Content-MD5") != r.Header.Get("Content-MD5") {
						t.Errorf("HEAD /%s/keys/%s: %d", login, escape(name), head.StatusCode)
					}
				}
			})
		}
	}
	t.Run("DeleteOnceDecoded", func(t *testing.T) {
		if r := alice.Do(t, "DELETE", "/my/keys/"+url.PathEscape("a%41"), nil); r.StatusCode != http.StatusNoContent {
			t.Fatalf("delete: %d %s", r.StatusCode, r.Body)
		}
		if r := alice.Do(t, "GET", "/alice/keys/aA", nil); r.StatusCode != http.StatusOK {
			t.Errorf("aA after deleting a%%41: %d", r.StatusCode)
		}
		r := alice.Do(t, "GET", "/my/keys/"+encodeURIComponent("a%41"), nil)
		if code, msg := r.ErrorBody(t); r.StatusCode != http.StatusNotFound || code != "ResourceNotFound" || msg != "a%41 does not exist" {
			t.Errorf("deleted key: %d %s %q", r.StatusCode, code, msg)
		}
		if r := alice.Do(t, "DELETE", "/my/keys/"+encodeURIComponent("x y:z%"), nil); r.StatusCode != http.StatusNoContent {
			t.Fatalf("delete: %d %s", r.StatusCode, r.Body)
		}
		if r := alice.Do(t, "GET", "/my/keys/"+encodeURIComponent("x y:z%"), nil); r.StatusCode != http.StatusNotFound {
			t.Errorf("deleted key: %d", r.StatusCode)
		}
	})
}

// TestLoginsInPaths checks that :login is decoded when the client encoded
// more than it must, as encodeURIComponent encodes '@'.
func TestLoginsInPaths(t *testing.T) {
	k := MustStart(t, nil)
	const login = "bob.smith@corp"
	MustAccount(t, k, login)
	for _, path := range []string{
		"/--admin/accounts/" + encodeURIComponent(login),
		"/" + encodeURIComponent(login) + "/keys",
		"/" + encodeURIComponent(login) + "/keys/" + encodeURIComponent(login+"@test"),
	} {
		if r := k.Admin.Do(t, "GET", path, nil); r.StatusCode != http.StatusOK {
			t.Errorf("GET %s: %d %s", path, r.StatusCode, r.Body)
		}
	}
	r := k.Admin.Do(t, "PUT", "/--admin/accounts/"+encodeURIComponent(login)+"/policy", map[string]any{"requireAttestedKeys": true})
	if r.StatusCode != http.StatusOK {
		t.Errorf("PUT policy: %d %s", r.StatusCode, r.Body)
	}
}

// encodeURIComponent escapes s for a path segment as a client would.
// url.QueryEscape escapes a few more characters than JavaScript's
// encodeURIComponent (which the triton CLI uses), ! * ' ( ) among them;
// a server must decode both the same way.
func encodeURIComponent(s string) string {
	return strings.ReplaceAll(url.QueryEscape(s), "+", "%20")
}

func TestAccountIsolation(t *testing.T) {
	k := MustStart(t, nil)
	alice := MustAccount(t, k, "alice")
	bob := MustAccount(t, k, "bob")
	var bobKeys []keyJSON
	bob.Do(t, "GET", "/bob/keys", nil).JSON(t, &bobKeys)
	fp := bobKeys[0].Fingerprint

	t.Run("ErrList", func(t *testing.T) {
		r := alice.Do(t, "GET", "/bob/keys", nil)
		missing := alice.Do(t, "GET", "/nobody/keys", nil)
		if r.StatusCode != 404 || missing.StatusCode != 404 {
			t.Fatalf("got %d and %d, want 404", r.StatusCode, missing.StatusCode)
		}
		_, m1 := r.ErrorBody(t)
		_, m2 := missing.ErrorBody(t)
		if m1 != "bob does not exist" || m2 != "nobody does not exist" {
			t.Errorf("messages %q %q", m1, m2)
		}
	})
	t.Run("ErrGetLooksMissing", func(t *testing.T) {
		other := alice.Do(t, "GET", "/bob/keys/"+url.PathEscape(fp), nil)
		var aliceKeys []keyJSON
		alice.Do(t, "GET", "/alice/keys", nil).JSON(t, &aliceKeys)
		// The same reference, missing in alice's own account.
		own := alice.Do(t, "GET", "/alice/keys/"+url.PathEscape(fp), nil)
		if other.StatusCode != 404 || own.StatusCode != 404 || string(other.Body) != string(own.Body) {
			t.Errorf("other account: %d %s; missing: %d %s", other.StatusCode, other.Body, own.StatusCode, own.Body)
		}
	})
	t.Run("ErrDelete", func(t *testing.T) {
		if r := alice.Do(t, "DELETE", "/bob/keys/"+url.PathEscape(fp), nil); r.StatusCode != 404 {
			t.Errorf("delete: %d", r.StatusCode)
		}
		if r := bob.Do(t, "GET", "/bob/keys/"+url.PathEscape(fp), nil); r.StatusCode != 200 {
			t.Errorf("bob's key after alice's delete: %d", r.StatusCode)
		}
	})
	t.Run("ErrCreate", func(t *testing.T) {
		r := alice.Do(t, "POST", "/bob/keys", map[string]any{"key": AuthorizedKey(t, MustKey(t), "")})
		if r.StatusCode != 404 {
			t.Errorf("create: %d", r.StatusCode)
		}
		var keys []keyJSON
		bob.Do(t, "GET", "/bob/keys", nil).JSON(t, &keys)
		if len(keys) != 1 {
			t.Errorf("bob has %d keys", len(keys))
		}
	})
	t.Run("ErrNotOperator", func(t *testing.T) {
		r := alice.Do(t, "POST", "/--admin/accounts", map[string]any{"login": "carol"})
		if code, _ := r.ErrorBody(t); r.StatusCode != 403 || code != "NotAuthorized" {
			t.Errorf("got %d %s", r.StatusCode, code)
		}
	})
	t.Run("OperatorSeesAll", func(t *testing.T) {
		if r := k.Admin.Do(t, "GET", "/bob/keys/"+url.PathEscape(fp), nil); r.StatusCode != 200 {
			t.Errorf("operator get: %d", r.StatusCode)
		}
	})
}

func TestConcurrentCreateSameName(t *testing.T) {
	k := MustStart(t, nil)
	alice := MustAccount(t, k, "alice")
	const n = 50
	statuses := make([]int, n)
	var wg sync.WaitGroup
	for i := range n {
		line := AuthorizedKey(t, MustKey(t), "")
		wg.Go(func() {
			statuses[i] = alice.Do(t, "POST", "/alice/keys", map[string]any{"name": "shared-name", "key": line}).StatusCode
		})
	}
	wg.Wait()
	counts := map[int]int{}
	for _, s := range statuses {
		counts[s]++
	}
	if counts[201] != 1 || counts[409] != n-1 {
		t.Errorf("statuses %v, want one 201 and %d 409", counts, n-1)
	}
	var keys []keyJSON
	alice.Do(t, "GET", "/alice/keys", nil).JSON(t, &keys)
	if len(keys) != 2 {
		t.Errorf("alice has %d keys, want 2", len(keys))
	}
}

func TestRestartBetweenWriteAndRead(t *testing.T) {
	k := MustStart(t, nil)
	alice := MustAccount(t, k, "alice")
	line := AuthorizedKey(t, MustKey(t), "")
	if r := alice.Do(t, "POST", "/alice/keys", map[string]any{"name": "kept", "key": line}); r.StatusCode != 201 {
		t.Fatalf("create: %d", r.StatusCode)
	}
	k.Restart(t)
	alice.base = k.URL
	r := alice.Do(t, "GET", "/alice/keys/kept", nil)
	var got keyJSON
	r.JSON(t, &got)
	if r.StatusCode != 200 || got.Key != line {
		t.Errorf("after restart: %d %+v", r.StatusCode, got)
	}
}

func TestPing(t *testing.T) {
	k := MustStart(t, nil)
	r := send(t, newRequest(t, "GET", k.URL+"/--ping", nil))
	var got struct {
		Ping     string `json:"ping"`
		CloudAPI struct {
			Versions []string `json:"versions"`
		} `json:"cloudapi"`
	}
	r.JSON(t, &got)
	if r.StatusCode != 200 || got.Ping != "pong" || len(got.CloudAPI.Versions) == 0 {
		t.Errorf("got %d %s", r.StatusCode, r.Body)
	}
}
