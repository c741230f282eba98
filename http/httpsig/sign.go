package httpsig

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
)

// Signer signs outgoing requests; keysctl and the tests use it to talk to
// the CloudAPI surface the same way the triton CLI does.
type Signer struct {
	// KeyID is sent as keyId, usually from KeyIDFor.
	KeyID string
	// Key is the private key, RSA, ECDSA or Ed25519.
	Key crypto.Signer
	// Algorithm is optional; when empty it is derived from Key: ed25519 ->
	// ed25519-sha512, ECDSA P-256/384/521 -> ecdsa-sha256/384/512, RSA ->
	// rsa-sha256.
	Algorithm string
	// Headers are the headers to sign; when empty, "(request-target)" and
	// "date", which is what the triton CLI signs and what keeps a captured
	// signature from being replayed against another path.
	Headers []string
}

// NewSignerFromFile loads an unencrypted private key in OpenSSH or PEM form,
// such as ssh-keygen writes, and returns a Signer with the default
// algorithm and headers.
func NewSignerFromFile(keyID, privateKeyPath string) (*Signer, error) {
	data, err := os.ReadFile(privateKeyPath)
	if err != nil {
		return nil, fmt.Errorf("httpsig: %w", err)
	}
	raw, err := ssh.ParseRawPrivateKey(data)
	if err != nil {
		var missing *ssh.PassphraseMissingError
		if errors.As(err, &missing) {
			return nil, fmt.Errorf("httpsig: %s is encrypted; only unencrypted keys are supported", privateKeyPath)
		}
		return nil, fmt.Errorf("httpsig: %s: %w", privateKeyPath, err)
	}
	var key crypto.Signer
	switch k := raw.(type) {
	case *rsa.PrivateKey:
		key = k
	case *ecdsa.PrivateKey:
		key = k
	case *ed25519.PrivateKey:
		// OpenSSH-format ed25519 keys come back as a pointer.
		key = *k
	case ed25519.PrivateKey:
		key = k
	default:
		return nil, fmt.Errorf("httpsig: %s: unsupported key type %T", privateKeyPath, raw)
	}
	return &Signer{KeyID: keyID, Key: key}, nil
}

// Sign adds an Authorization header to r, first setting Date to now if r
// has none, since the default headers (and any server) require it.
func (s *Signer) Sign(r *http.Request) error {
	if s.KeyID == "" || s.Key == nil {
		return errors.New("httpsig: signer needs a KeyID and a Key")
	}
	name := s.Algorithm
	if name == "" {
		var err error
		if name, err = defaultAlgorithm(s.Key.Public()); err != nil {
			return err
		}
	}
	alg, err := parseAlgorithm(name)
	if err != nil {
		return err
	}
	if family := keyFamily(s.Key.Public()); family != alg.family {
		return fmt.Errorf("httpsig: algorithm %s does not fit a %T key", name, s.Key.Public())
	}
	headers := []string{"(request-target)", "date"}
	if len(s.Headers) > 0 {
		headers = make([]string, len(s.Headers))
		for i, h := range s.Headers {
			headers[i] = strings.ToLower(h)
		}
	}

	if r.Header == nil {
		r.Header = make(http.Header)
	}
	if r.Header.Get("Date") == "" {
		r.Header.Set("Date", time.Now().UTC().Format(http.TimeFormat))
	}
	signingString, err := SigningString(r, headers)
	if err != nil {
		return err
	}
	sig, err := s.sign(alg, signingString)
	if err != nil {
		return err
	}

	quote := strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace
	r.Header.Set("Authorization", fmt.Sprintf(
		`Signature keyId="%s",algorithm="%s",headers="%s",signature="%s"`,
		quote(s.KeyID), strings.ToLower(name), strings.Join(headers, " "),
		base64.StdEncoding.EncodeToString(sig)))
	return nil
}

func (s *Signer) sign(alg algorithm, signingString string) ([]byte, error) {
	var (
		sig []byte
		err error
	)
	if alg.family == "ed25519" {
		// Ed25519 signs the message itself; a zero hash says so.
		sig, err = s.Key.Sign(rand.Reader, []byte(signingString), crypto.Hash(0))
	} else {
		// With a plain crypto.Hash as options, RSA keys sign PKCS#1 v1.5 and
		// ECDSA keys return ASN.1 DER, which is what the draft expects.
		sig, err = s.Key.Sign(rand.Reader, alg.digest(signingString), alg.hash)
	}
	if err != nil {
		return nil, fmt.Errorf("httpsig: %w", err)
	}
	return sig, nil
}

// keyFamily names the algorithm family that signs with pub, or "".
func keyFamily(pub crypto.PublicKey) string {
	switch pub.(type) {
	case *rsa.PublicKey:
		return "rsa"
	case *ecdsa.PublicKey:
		return "ecdsa"
	case ed25519.PublicKey:
		return "ed25519"
	}
	return ""
}

func defaultAlgorithm(pub crypto.PublicKey) (string, error) {
	switch k := pub.(type) {
	case ed25519.PublicKey:
		return "ed25519-sha512", nil
	case *rsa.PublicKey:
		return "rsa-sha256", nil
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return "ecdsa-sha256", nil
		case elliptic.P384():
			return "ecdsa-sha384", nil
		case elliptic.P521():
			return "ecdsa-sha512", nil
		}
	}
	return "", fmt.Errorf("httpsig: no algorithm for a %T key", pub)
}
