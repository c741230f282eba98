package httpsig

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/crypto/ssh"
)

// Verify reports whether sig is a valid signature of signingString by pub
// under algorithm, returning nil only if it is. The algorithm family must
// match the SSH key type, so that a client cannot steer an RSA key into an
// ECDSA check or the like; the hash is the client's choice, as in CloudAPI.
func Verify(pub ssh.PublicKey, algorithm string, signingString string, sig []byte) error {
	alg, err := parseAlgorithm(algorithm)
	if err != nil {
		return err
	}
	// Decide by the SSH key type rather than the Go type: security-key
	// types (sk-ecdsa-..., sk-ssh-ed25519@...) unwrap to the same Go keys
	// but sign a FIDO envelope, never the plain signing string.
	if want := keyTypeFamily(pub.Type()); want != alg.family {
		return fmt.Errorf("httpsig: algorithm %s does not fit a %s key", algorithm, pub.Type())
	}
	cpk, ok := pub.(ssh.CryptoPublicKey)
	if !ok {
		return fmt.Errorf("httpsig: %s key has no plain public key", pub.Type())
	}

	switch key := cpk.CryptoPublicKey().(type) {
	case *rsa.PublicKey:
		if err := rsa.VerifyPKCS1v15(key, alg.hash, alg.digest(signingString), sig); err != nil {
			return fmt.Errorf("httpsig: %w", err)
		}
		return nil
	case *ecdsa.PublicKey:
		if !ecdsa.VerifyASN1(key, alg.digest(signingString), sig) {
			return errors.New("httpsig: ecdsa verification error")
		}
		return nil
	case ed25519.PublicKey:
		if !ed25519.Verify(key, []byte(signingString), sig) {
			return errors.New("httpsig: ed25519 verification error")
		}
		return nil
	}
	return fmt.Errorf("httpsig: unsupported %s key", pub.Type())
}

// keyTypeFamily names the algorithm family that can sign with an SSH key
// type, or "" when none can.
func keyTypeFamily(keyType string) string {
	switch {
	case keyType == ssh.KeyAlgoRSA:
		return "rsa"
	case strings.HasPrefix(keyType, "ecdsa-sha2-"):
		return "ecdsa"
	case keyType == ssh.KeyAlgoED25519:
		return "ed25519"
	}
	return ""
}
