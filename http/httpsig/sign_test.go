package httpsig_test

import (
	"crypto"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/infrakeys/infrakeys/http/httpsig"
)

func TestSignVerify(t *testing.T) {
	tests := []struct {
		name, kind, algorithm, wantAlgorithm string
	}{
		{"Ed25519", "ed25519", "", "ed25519-sha512"},
		{"ECDSAP256", "p256", "", "ecdsa-sha256"},
		{"ECDSAP384", "p384", "", "ecdsa-sha384"},
		{"ECDSAP521", "p521", "", "ecdsa-sha512"},
		{"RSADefault", "rsa", "", "rsa-sha256"},
		{"RSASHA1", "rsa", "rsa-sha1", "rsa-sha1"},
		{"RSASHA256", "rsa", "rsa-sha256", "rsa-sha256"},
		{"RSASHA384", "rsa", "rsa-sha384", "rsa-sha384"},
		{"RSASHA512", "rsa", "rsa-sha512", "rsa-sha512"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key := MustKey(t, tt.kind)
			pub := MustPublicKey(t, key)
			s := &httpsig.Signer{KeyID: httpsig.KeyIDFor("alice", pub), Key: key, Algorithm: tt.algorithm}

			r := MustRequest(t, "GET", "https://cloudapi.example/alice/keys?limit=5")
			if err := s.Sign(r); err != nil {
				t.Fatalf("Sign: %v", err)
			}
			if _, err := time.Parse(http.TimeFormat, r.Header.Get("Date")); err != nil {
				t.Errorf("Date %q: %v", r.Header.Get("Date"), err)
			}
			p, err := httpsig.ParseAuthorization(r.Header.Get("Authorization"))
			if err != nil {
				t.Fatalf("ParseAuthorization: %v", err)
			}
			if got, want := p.Algorithm, tt.wantAlgorithm; got != want {
				t.Errorf("algorithm = %q, want %q", got, want)
			}
			if got, want := p.KeyID, httpsig.KeyIDFor("alice", pub); got != want {
				t.Errorf("keyId = %q, want %q", got, want)
			}
			if got, want := strings.Join(p.Headers, " "), "(request-target) date"; got != want {
				t.Errorf("headers = %q, want %q", got, want)
			}
			if err := VerifyRequest(t, r, pub); err != nil {
				t.Errorf("Verify: %v", err)
			}

			t.Run("TamperedSigningString", func(t *testing.T) {
				s, err := httpsig.SigningString(r, p.Headers)
				if err != nil {
					t.Fatal(err)
				}
				s = strings.Replace(s, "limit=5", "limit=6", 1)
				if err := httpsig.Verify(pub, p.Algorithm, s, p.Signature); err == nil {
					t.Error("Verify accepted a tampered signing string")
				}
			})
			t.Run("WrongKey", func(t *testing.T) {
				other := MustPublicKey(t, MustKey(t, tt.kind))
				if err := VerifyRequest(t, r, other); err == nil {
					t.Error("Verify accepted another key")
				}
			})
		})
	}
}

// TestSignVerifyOverHTTP checks that what a Go client signs is what a Go
// server rebuilds, including an escaped path that must not be re-encoded.
func TestSignVerifyOverHTTP(t *testing.T) {
	key := MustKey(t, "ed25519")
	pub := MustPublicKey(t, key)
	verified := make(chan error, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, err := httpsig.ParseAuthorization(r.Header.Get("Authorization"))
		if err == nil {
			var s string
			if s, err = httpsig.SigningString(r, p.Headers); err == nil {
				err = httpsig.Verify(pub, p.Algorithm, s, p.Signature)
			}
		}
		verified <- err
	}))
	defer srv.Close()

	r := MustRequest(t, "DELETE", srv.URL+"/alice/keys/my%20key%3Aone?x=a%2Fb&y=%7E")
	s := &httpsig.Signer{KeyID: "/alice/keys/x", Key: key, Headers: []string{"(request-target)", "host", "date"}}
	if err := s.Sign(r); err != nil {
		t.Fatal(err)
	}
	resp, err := srv.Client().Do(r)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err := <-verified; err != nil {
		t.Errorf("server: %v", err)
	}
}

func TestSignKeepsDate(t *testing.T) {
	const date = "Tue, 07 Jun 2014 20:51:35 GMT"
	r := MustRequest(t, "GET", "https://cloudapi.example/alice/keys")
	r.Header.Set("Date", date)
	s := &httpsig.Signer{KeyID: "/alice/keys/x", Key: MustKey(t, "ed25519")}
	if err := s.Sign(r); err != nil {
		t.Fatal(err)
	}
	if got, want := r.Header.Get("Date"), date; got != want {
		t.Errorf("Date = %q, want %q", got, want)
	}
}

func TestAlgorithmKeyMismatch(t *testing.T) {
	tests := []struct {
		name, kind, algorithm string
	}{
		{"RSAAlgorithmEd25519Key", "ed25519", "rsa-sha256"},
		{"ECDSAAlgorithmRSAKey", "rsa", "ecdsa-sha256"},
		{"Ed25519AlgorithmECDSAKey", "p256", "ed25519-sha512"},
		{"RSAAlgorithmECDSAKey", "p384", "rsa-sha384"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key := MustKey(t, tt.kind)
			pub := MustPublicKey(t, key)

			// Sign with the algorithm that fits, then claim another.
			s := &httpsig.Signer{KeyID: "/alice/keys/x", Key: key}
			r := MustRequest(t, "GET", "https://cloudapi.example/alice/keys")
			if err := s.Sign(r); err != nil {
				t.Fatal(err)
			}
			p, err := httpsig.ParseAuthorization(r.Header.Get("Authorization"))
			if err != nil {
				t.Fatal(err)
			}
			ss, err := httpsig.SigningString(r, p.Headers)
			if err != nil {
				t.Fatal(err)
			}
			if err := httpsig.Verify(pub, tt.algorithm, ss, p.Signature); err == nil {
				t.Errorf("Verify accepted %s with a %s key", tt.algorithm, pub.Type())
			}

			s.Algorithm = tt.algorithm
			if err := s.Sign(MustRequest(t, "GET", "https://cloudapi.example/")); err == nil {
				t.Errorf("Sign accepted %s with a %s key", tt.algorithm, pub.Type())
			}
		})
	}
}

func TestVerifyUnsupportedAlgorithm(t *testing.T) {
	key := MustKey(t, "ed25519")
	pub := MustPublicKey(t, key)
	sig, err := key.Sign(nil, []byte("date: x"), crypto.Hash(0))
	if err != nil {
		t.Fatal(err)
	}
	if err := httpsig.Verify(pub, "ed25519-sha512", "date: x", sig); err != nil {
		t.Fatalf("control: %v", err)
	}
	tests := []struct{ name, algorithm string }{
		{"Empty", ""},
		{"HMAC", "hmac-sha256"},
		{"Ed25519WrongHash", "ed25519-sha256"},
		{"ECDSASHA1", "ecdsa-sha1"},
		{"DSA", "dsa-sha1"},
		{"NoHash", "rsa"},
		{"HS2019", "hs2019"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := httpsig.Verify(pub, tt.algorithm, "date: x", sig); err == nil {
				t.Errorf("Verify accepted algorithm %q", tt.algorithm)
			}
		})
	}
}
