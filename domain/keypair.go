package domain

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/crypto/ssh"
)

// KeyPair is a validated infrastructure key: a public half, and maybe a
// private half.
type KeyPair struct {
	PublicKey         string // OpenSSH authorized-key line; derived from the private half when not given
	PrivateKey        []byte // PEM exactly as given (drivers get it back byte for byte) or as generated; nil if none
	Type              string // SSH key type, e.g. "ssh-ed25519"
	Bits              int
	Fingerprint       string // lowercase colon-separated MD5, as PublicKey.Fingerprint
	FingerprintSHA256 string // "SHA256:...", as ssh-keygen shows it
}

// KeyAlgorithms lists the algorithms GenerateKeyPair accepts.
var KeyAlgorithms = []string{"ed25519", "rsa-3072", "rsa-4096", "ecdsa-p256", "ecdsa-p384"}

// maxPrivateKeyLen bounds the private half: the largest key OpenSSH makes
// (RSA 16384) fits, and nothing larger is worth parsing.
const maxPrivateKeyLen = 16 << 10

// privateAcceptedList is told to users whose private key has another type.
// Security keys are not in it: their private half never leaves the token.
const privateAcceptedList = "use ed25519, ECDSA (P-256, P-384, P-521) or RSA of at least 2048 bits"

// pemFormats names the PEM block types ParseRawPrivateKey reads by their
// formats' names, so that messages never quote the caller's PEM armour.
var pemFormats = map[string]string{
	"OPENSSH PRIVATE KEY": "OpenSSH",
	"RSA PRIVATE KEY":     "PKCS#1",
	"PRIVATE KEY":         "PKCS#8",
	"EC PRIVATE KEY":      "SEC1",
}

// ParseKeyPair validates the halves given: either may be empty, not both.
// The public half is held to ParsePublicKey's rules; the private half must
// be one unencrypted PEM key (OpenSSH, PKCS#1, PKCS#8 or SEC1) of an
// accepted type, and must belong to the public half when both are given.
// Error messages never repeat any of the private half.
func ParseKeyPair(publicKey, privateKey string) (*KeyPair, error) {
	hasPublic := strings.TrimSpace(publicKey) != ""
	hasPrivate := strings.TrimSpace(privateKey) != ""
	if !hasPublic && !hasPrivate {
		return nil, Errorf(EMISSING, "publicKey or privateKey is required")
	}

	var pub *PublicKey
	if hasPublic {
		var err error
		if pub, err = ParsePublicKey(publicKey); err != nil {
			if block, _ := pem.Decode([]byte(strings.TrimSpace(publicKey))); block != nil && strings.HasSuffix(block.Type, "PRIVATE KEY") {
				return nil, Errorf(EINVALID, "publicKey is invalid: this is a private key; send it as privateKey")
			}
			return nil, Errorf(EINVALID, "publicKey is invalid: %s", strings.TrimPrefix(ErrorMessage(err), "key is invalid: "))
		}
	}
	if !hasPrivate {
		return newKeyPair(pub, nil), nil
	}

	derived, err := parsePrivateKey(privateKey)
	if err != nil {
		return nil, err
	}
	if pub == nil {
		// The derived line has no comment: the private half may carry one,
		// but a caller who sends only that half has not chosen to publish it.
		if pub, err = ParsePublicKey(derived.Type() + " " + base64.StdEncoding.EncodeToString(derived.Marshal())); err != nil {
			return nil, invalidPrivateKey("%s", strings.TrimPrefix(ErrorMessage(err), "key is invalid: "))
		}
		return newKeyPair(pub, []byte(privateKey)), nil
	}
	if isSecurityKey(pub.Type) {
		return nil, Errorf(EINVALID, "publicKey is a security key (%s), whose private half never leaves its hardware token; "+
			"it cannot be paired with a privateKey", pub.Type)
	}
	if !bytes.Equal(pub.Key.Marshal(), derived.Marshal()) {
		return nil, Errorf(ECONFLICT, "publicKey and privateKey do not match")
	}
	return newKeyPair(pub, []byte(privateKey)), nil
}

// newKeyPair describes pub, with private as its private half (nil if none).
func newKeyPair(pub *PublicKey, private []byte) *KeyPair {
	return &KeyPair{
		PublicKey:         pub.Authorized,
		PrivateKey:        private,
		Type:              pub.Type,
		Bits:              pub.Bits,
		Fingerprint:       pub.Fingerprint,
		FingerprintSHA256: pub.FingerprintSHA256,
	}
}

// invalidPrivateKey returns the EINVALID error for a refused private half.
// Callers pass only our own words, never text from the key: the messages
// are logged and shown to clients, and the key is a secret.
func invalidPrivateKey(format string, args ...any) *Error {
	return Errorf(EINVALID, "privateKey is invalid: "+format, args...)
}

// errPassphrase refuses encrypted private halves: we could not check them,
// and drivers could not use them without a passphrase we do not have.
func errPassphrase() *Error {
	return Errorf(EINVALID, "privateKey is protected by a passphrase; provide it unencrypted (it is sealed at rest)")
}

// parsePrivateKey validates text as one private key and returns its public
// half. The parser's own errors are never passed on, because some quote
// parts of the input.
func parsePrivateKey(text string) (ssh.PublicKey, error) {
	if len(text) > maxPrivateKeyLen {
		return nil, invalidPrivateKey("it is longer than %d bytes, more than any supported key needs", maxPrivateKeyLen)
	}
	data := []byte(strings.TrimSpace(text))
	block, rest := pem.Decode(data)
	switch {
	case block == nil && lineHoldsKey(string(data)):
		return nil, invalidPrivateKey("this is an OpenSSH public key; send it as publicKey")
	case block == nil:
		return nil, invalidPrivateKey("it is not a PEM private key, such as the contents of ~/.ssh/id_ed25519")
	case !bytes.HasPrefix(data, []byte("-----BEGIN ")) || len(bytes.TrimSpace(rest)) > 0:
		// Drivers get the text as it is; anything around the key could
		// break them, and a second key would be silently ignored here.
		return nil, invalidPrivateKey("it must hold exactly one PEM private key and nothing else")
	case block.Type == "ENCRYPTED PRIVATE KEY" || strings.Contains(block.Headers["Proc-Type"], "ENCRYPTED"):
		return nil, errPassphrase()
	case block.Type == "DSA PRIVATE KEY":
		return nil, invalidPrivateKey("DSA keys are insecure and not accepted; %s", privateAcceptedList)
	case strings.HasSuffix(block.Type, "PUBLIC KEY"):
		return nil, invalidPrivateKey("this is a PEM public key, not a private key")
	}
	format, ok := pemFormats[block.Type]
	if !ok {
		return nil, invalidPrivateKey("this kind of PEM block is not supported; use OpenSSH, PKCS#1, PKCS#8 or SEC1 private keys")
	}

	var envelope *openSSHEnvelope
	if block.Type == "OPENSSH PRIVATE KEY" {
		var err error
		if envelope, err = parseOpenSSHEnvelope(block.Bytes); err != nil {
			return nil, err
		}
	}

	raw, err := ssh.ParseRawPrivateKey(data)
	if _, ok := errors.AsType[*ssh.PassphraseMissingError](err); ok {
		return nil, errPassphrase()
	} else if err != nil {
		return nil, invalidPrivateKey("the %s private key is malformed or holds an unsupported kind of key", format)
	}

	var signer crypto.Signer
	switch k := raw.(type) {
	case *rsa.PrivateKey:
		signer = k
	case *ecdsa.PrivateKey:
		if c := k.Curve; c != elliptic.P256() && c != elliptic.P384() && c != elliptic.P521() {
			return nil, invalidPrivateKey("ECDSA keys must be on curve P-256, P-384 or P-521")
		}
		signer = k
	case ed25519.PrivateKey:
		signer = k
	case *ed25519.PrivateKey:
		signer = *k
	default:
		return nil, invalidPrivateKey("this kind of key is not supported; %s", privateAcceptedList)
	}
	if k, ok := signer.(ed25519.PrivateKey); ok && !bytes.Equal(k.Public().(ed25519.PublicKey), ed25519.NewKeyFromSeed(k.Seed()).Public().(ed25519.PublicKey)) {
		// The OpenSSH format stores the public half beside the seed and
		// nothing checks that they agree; signatures follow the seed.
		return nil, invalidPrivateKey("the %s private key is inconsistent: its public half does not belong to it", format)
	}
	pub, err := ssh.NewPublicKey(signer.Public())
	if err != nil {
		return nil, invalidPrivateKey("this kind of key is not supported; %s", privateAcceptedList)
	}
	if envelope != nil && !bytes.Equal(envelope.PubKey, pub.Marshal()) {
		// OpenSSH refuses such a file too.
		return nil, invalidPrivateKey("the %s private key is inconsistent: its public half does not belong to it", format)
	}
	return pub, nil
}

// openSSHEnvelope is the unencrypted outside of an OpenSSH private key
// file (PROTOCOL.key in OpenSSH): it names the cipher and carries the
// public half in clear.
type openSSHEnvelope struct {
	CipherName   string
	KdfName      string
	KdfOpts      string
	NumKeys      uint32
	PubKey       []byte
	PrivKeyBlock []byte
	Rest         []byte `ssh:"rest"`
}

// openSSHMagic starts every OpenSSH private key.
const openSSHMagic = "openssh-key-v1\x00"

// parseOpenSSHEnvelope reads the outside of an OpenSSH private key, so that
// keys the ssh package cannot read (security keys, DSA) are refused for
// what they are, not as malformed.
func parseOpenSSHEnvelope(der []byte) (*openSSHEnvelope, error) {
	const malformed = "the OpenSSH private key is malformed"
	rest, ok := bytes.CutPrefix(der, []byte(openSSHMagic))
	if !ok {
		return nil, invalidPrivateKey(malformed)
	}
	var e openSSHEnvelope
	if err := ssh.Unmarshal(rest, &e); err != nil {
		return nil, invalidPrivateKey(malformed)
	}
	if e.NumKeys != 1 {
		return nil, invalidPrivateKey("it must hold exactly one PEM private key and nothing else")
	}
	var typ string
	if k, err := ssh.ParsePublicKey(e.PubKey); err == nil {
		typ = k.Type()
	}
	switch {
	case isSecurityKey(typ):
		return nil, invalidPrivateKey("security keys (%s) cannot be infrastructure keys: their private half never leaves "+
			"the hardware token, so this file is only a handle to it; %s", typ, privateAcceptedList)
	case typ == ssh.InsecureKeyAlgoDSA:
		return nil, invalidPrivateKey("DSA keys are insecure and not accepted; %s", privateAcceptedList)
	case e.CipherName != "none":
		return nil, errPassphrase()
	}
	return &e, nil
}

// isSecurityKey reports whether typ is a FIDO security key type.
func isSecurityKey(typ string) bool {
	return typ == ssh.KeyAlgoSKED25519 || typ == ssh.KeyAlgoSKECDSA256
}

// GenerateKeyPair makes a new key pair of the given algorithm, one of
// KeyAlgorithms. The private half is an OpenSSH private key and, like the
// public line, carries comment.
func GenerateKeyPair(algorithm string, comment string) (*KeyPair, error) {
	if !validComment(comment) {
		return nil, Errorf(EINVALID, "the key comment must be printable UTF-8 text on one line")
	}
	var (
		key crypto.Signer
		err error
	)
	switch algorithm {
	case "ed25519":
		_, key, err = ed25519.GenerateKey(rand.Reader)
	case "rsa-3072":
		key, err = rsa.GenerateKey(rand.Reader, 3072)
	case "rsa-4096":
		key, err = rsa.GenerateKey(rand.Reader, 4096)
	case "ecdsa-p256":
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "ecdsa-p384":
		key, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	default:
		return nil, Errorf(EINVALID, "algorithm must be one of %s", strings.Join(KeyAlgorithms, ", "))
	}
	if err != nil {
		return nil, fmt.Errorf("generate %s key: %w", algorithm, err)
	}
	block, err := ssh.MarshalPrivateKey(key, comment)
	if err != nil {
		return nil, fmt.Errorf("marshal %s key: %w", algorithm, err)
	}
	sshPub, err := ssh.NewPublicKey(key.Public())
	if err != nil {
		return nil, fmt.Errorf("marshal %s public key: %w", algorithm, err)
	}
	line := strings.TrimSpace(sshPub.Type() + " " + base64.StdEncoding.EncodeToString(sshPub.Marshal()) + " " + comment)
	pub, err := ParsePublicKey(line)
	if err != nil {
		return nil, fmt.Errorf("describe generated %s key: %w", algorithm, err)
	}
	return newKeyPair(pub, pem.EncodeToMemory(block)), nil
}
