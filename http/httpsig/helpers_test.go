package httpsig_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"net/http"
	"testing"

	"github.com/infrakeys/infrakeys/http/httpsig"
	"golang.org/x/crypto/ssh"
)

// MustKey generates a private key of the named kind: "ed25519", "p256",
// "p384", "p521" or "rsa" (2048 bits).
func MustKey(tb testing.TB, kind string) crypto.Signer {
	tb.Helper()
	var (
		key crypto.Signer
		err error
	)
	switch kind {
	case "ed25519":
		_, key, err = ed25519.GenerateKey(rand.Reader)
	case "p256":
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "p384":
		key, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case "p521":
		key, err = ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	case "rsa":
		key, err = rsa.GenerateKey(rand.Reader, 2048)
	default:
		tb.Fatalf("unknown key kind %q", kind)
	}
	if err != nil {
		tb.Fatal(err)
	}
	return key
}

// MustPublicKey returns the SSH form of key's public half.
func MustPublicKey(tb testing.TB, key crypto.Signer) ssh.PublicKey {
	tb.Helper()
	pub, err := ssh.NewPublicKey(key.Public())
	if err != nil {
		tb.Fatal(err)
	}
	return pub
}

// MustRequest returns a client request for method and url.
func MustRequest(tb testing.TB, method, url string) *http.Request {
	tb.Helper()
	r, err := http.NewRequest(method, url, nil)
	if err != nil {
		tb.Fatal(err)
	}
	return r
}

// VerifyRequest does what a server does with a signed request: parse the
// Authorization header, rebuild the signing string and check it with pub.
func VerifyRequest(tb testing.TB, r *http.Request, pub ssh.PublicKey) error {
	tb.Helper()
	p, err := httpsig.ParseAuthorization(r.Header.Get("Authorization"))
	if err != nil {
		tb.Fatalf("ParseAuthorization: %v", err)
	}
	s, err := httpsig.SigningString(r, p.Headers)
	if err != nil {
		tb.Fatalf("SigningString: %v", err)
	}
	return httpsig.Verify(pub, p.Algorithm, s, p.Signature)
}
