package domain

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	_ "embed"
	"encoding/asn1"
	"encoding/hex"
	"encoding/pem"
	"math/big"
	"strings"
	"time"
)

// Attestation is what a verified hardware attestation proves about a key.
type Attestation struct {
	// Serial is the serial number of the token that holds the key, 0 if
	// the attestation does not say.
	Serial uint64 `json:"serial,omitempty"`
	// PINPolicy is the key's PIN policy as the token reports it: 1 never,
	// 2 once, 3 always; 0 if the attestation does not say.
	PINPolicy int `json:"pinPolicy,omitempty"`
	// TouchPolicy is the key's touch policy as the token reports it:
	// 1 never, 2 always, 3 cached; 0 if the attestation does not say.
	TouchPolicy int `json:"touchPolicy,omitempty"`
	// Multifactor lists what, besides holding the token, using the key
	// takes: "pin", "touch", in that order. It is empty, never nil, so that
	// clients see [] rather than null.
	Multifactor []string `json:"multifactor"`
	// RootFingerprint is the SHA-256 of the trusted certificate the chain
	// ended at, in uppercase hex without colons.
	RootFingerprint string `json:"root"`
}

// maxAttestationCertificates bounds the work a client can ask for. Real
// chains hold the key's certificate, the device certificate, and at most
// two intermediates and the root.
const maxAttestationCertificates = 8

// Yubico's extensions in PIV attestation certificates.
var (
	oidYubicoSerial = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 41482, 3, 7}
	oidYubicoPolicy = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 41482, 3, 8}
)

// VerifyAttestation checks that chain, PEM certificates from the key's own
// certificate up towards a root, proves that key was made in a hardware
// token trusted through roots, and returns what it proves. A nil roots
// trusts nothing. Every refusal is an EINVALID error that says which check
// failed, numbering certificates from 1.
//
// The chain is verified by hand rather than with x509.Certificate.Verify:
// the device certificate of YubiKey 4 tokens is not marked as a CA, yet it
// signs the key's certificate, and Verify would refuse it. That exception
// is allowed for the device certificate alone (see verifyAttestationPath).
func VerifyAttestation(key crypto.PublicKey, chain []string, roots *AttestationRoots, now time.Time) (*Attestation, error) {
	if len(chain) == 0 {
		return nil, attestationErrorf("no certificates")
	}
	if len(chain) > maxAttestationCertificates {
		return nil, attestationErrorf("more than %d certificates", maxAttestationCertificates)
	}
	certs := make([]*x509.Certificate, len(chain))
	for i, s := range chain {
		cert, rest, problem := parseCertificatePEM([]byte(s))
		if problem != "" {
			return nil, attestationErrorf("certificate %d %s", i+1, problem)
		}
		if len(bytes.TrimSpace(rest)) != 0 {
			return nil, attestationErrorf("certificate %d has data after its PEM block", i+1)
		}
		certs[i] = cert
	}

	certKey, ok := certs[0].PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !certKey.Equal(key) {
		return nil, attestationErrorf("certificate 1 does not certify the submitted key")
	}
	// A trusted root is signed by itself, so the path check alone would let
	// it stand for a key's certificate.
	if roots.contains(certs[0]) {
		return nil, attestationErrorf("certificate 1 is a trusted root, not a key's certificate")
	}
	for i, cert := range certs {
		if now.Before(cert.NotBefore) {
			return nil, attestationErrorf("certificate %d is not yet valid", i+1)
		}
		if now.After(cert.NotAfter) {
			return nil, attestationErrorf("certificate %d has expired", i+1)
		}
	}
	anchor, err := verifyAttestationPath(certs, roots, now)
	if err != nil {
		return nil, err
	}

	att := &Attestation{Multifactor: []string{}, RootFingerprint: certificateFingerprint(anchor)}
	if v, ok := extensionValue(certs[0], oidYubicoPolicy); ok {
		if len(v) != 2 {
			return nil, attestationErrorf("certificate 1 has a malformed PIN and touch policy")
		}
		att.PINPolicy, att.TouchPolicy = int(v[0]), int(v[1])
	}
	if att.PINPolicy > 1 {
		att.Multifactor = append(att.Multifactor, "pin")
	}
	if att.TouchPolicy > 1 {
		att.Multifactor = append(att.Multifactor, "touch")
	}
	// Depending on the firmware the serial is in the key's certificate or
	// in the device certificate.
	for i := 0; i < min(2, len(certs)); i++ {
		v, ok := extensionValue(certs[i], oidYubicoSerial)
		if !ok {
			continue
		}
		serial, ok := parseSerial(v)
		if !ok {
			return nil, attestationErrorf("certificate %d has a malformed serial number", i+1)
		}
		att.Serial = serial
		break
	}
	return att, nil
}

// verifyAttestationPath checks that each certificate is signed by the next
// until one is signed by a trusted root, and returns the trusted
// certificate the chain ends at. After that certificate only trusted
// certificates may follow, each signing the one before: anything else
// would prove nothing, and accepting it would let a client dress up a chain
// with certificates that are not part of it.
//
// Who may sign matters as much as the signatures: a token signs whatever
// digest it is given with a slot's key, so the owner of a genuine key
// certificate could issue a "key certificate" for a software key under it.
// Only certificate 2, the device certificate, may sign without being a CA
// (YubiKey 4 device certificates are not), and it must not be a key's
// certificate itself; every later untrusted signer must be a CA.
func verifyAttestationPath(certs []*x509.Certificate, roots *AttestationRoots, now time.Time) (*x509.Certificate, error) {
	for i, cert := range certs {
		root := roots.signerOf(cert)
		if root == nil {
			if i == len(certs)-1 {
				return nil, attestationErrorf("certificate %d is not signed by a trusted root", i+1)
			}
			if err := checkSigner(certs[i+1], i+2); err != nil {
				return nil, err
			}
			if !signedBy(cert, certs[i+1]) {
				return nil, attestationErrorf("certificate %d is not signed by certificate %d", i+1, i+2)
			}
			continue
		}
		if now.Before(root.NotBefore) || now.After(root.NotAfter) {
			return nil, attestationErrorf("the trusted root that signed certificate %d is not valid now", i+1)
		}
		anchor := root
		for j := i + 1; j < len(certs); j++ {
			if !roots.contains(certs[j]) {
				return nil, attestationErrorf("certificate %d proves nothing: certificate %d is already signed by a trusted root", j+1, i+1)
			}
			if !signedBy(certs[j-1], certs[j]) {
				return nil, attestationErrorf("certificate %d is not signed by certificate %d", j, j+1)
			}
			anchor = certs[j]
		}
		return anchor, nil
	}
	return nil, attestationErrorf("no certificates")
}

// checkSigner refuses cert, certificate n of the chain, as the signer of
// certificate n-1 if its place does not allow it to sign.
func checkSigner(cert *x509.Certificate, n int) error {
	if n == 2 {
		// Key certificates carry the key's PIN and touch policy; device
		// certificates do not.
		if _, ok := extensionValue(cert, oidYubicoPolicy); ok {
			return attestationErrorf("certificate 2 is a key's certificate (it has the PIN and touch policy extension %s), not a device certificate, so it cannot sign certificate 1", oidYubicoPolicy)
		}
		return nil
	}
	if !cert.BasicConstraintsValid || !cert.IsCA {
		return attestationErrorf("certificate %d is not a CA, so it cannot sign certificate %d", n, n-1)
	}
	return nil
}

// signedBy reports whether parent's key made child's signature. Unlike
// child.CheckSignatureFrom it does not require parent to be a CA, which
// YubiKey 4 device certificates are not. SHA-1 signatures never count:
// collisions make them forgeable, and x509.Certificate.Verify refuses them
// too.
func signedBy(child, parent *x509.Certificate) bool {
	switch child.SignatureAlgorithm {
	case x509.SHA1WithRSA, x509.DSAWithSHA1, x509.ECDSAWithSHA1:
		return false
	}
	return parent.CheckSignature(child.SignatureAlgorithm, child.RawTBSCertificate, child.Signature) == nil
}

// AttestationRoots is a set of trusted roots: the certificates a hardware
// attestation chain must end at. Operators may trust intermediates too, so
// that chains need not carry them. Add roots before verifying with the set;
// it is not safe to add while verifying.
type AttestationRoots struct {
	certs []*x509.Certificate
}

//go:embed roots/yubico-piv-root-ca-serial-263751.pem
var yubicoPIVRootPEM []byte

// DefaultAttestationRoots returns a new set holding the bundled root,
// Yubico PIV Root CA Serial 263751, which YubiKeys before firmware 5.7.4
// attest under.
func DefaultAttestationRoots() *AttestationRoots {
	r := &AttestationRoots{}
	if err := r.AddPEM(yubicoPIVRootPEM); err != nil {
		panic("domain: bundled attestation root: " + err.Error())
	}
	return r
}

// AddPEM adds the certificates in pemBytes, one or more PEM CERTIFICATE
// blocks, to the set. It adds nothing if any part of pemBytes is something
// else, so that a mistaken file fails loudly instead of trusting less (or
// more) than the operator meant.
func (r *AttestationRoots) AddPEM(pemBytes []byte) error {
	var add []*x509.Certificate
	rest := bytes.TrimSpace(pemBytes)
	for n := 1; len(rest) > 0; n++ {
		cert, next, problem := parseCertificatePEM(rest)
		if problem != "" {
			return Errorf(EINVALID, "attestation roots are invalid: certificate %d %s", n, problem)
		}
		add = append(add, cert)
		rest = bytes.TrimSpace(next)
	}
	if len(add) == 0 {
		return Errorf(EINVALID, "attestation roots are invalid: no certificates")
	}
	for _, cert := range add {
		if !r.contains(cert) {
			r.certs = append(r.certs, cert)
		}
	}
	return nil
}

// Fingerprints returns the SHA-256 of each root, in uppercase hex without
// colons, in the order they were added.
func (r *AttestationRoots) Fingerprints() []string {
	if r == nil {
		return nil
	}
	fps := make([]string, len(r.certs))
	for i, cert := range r.certs {
		fps[i] = certificateFingerprint(cert)
	}
	return fps
}

// contains reports whether cert is one of the roots, byte for byte.
func (r *AttestationRoots) contains(cert *x509.Certificate) bool {
	if r == nil {
		return false
	}
	for _, root := range r.certs {
		if bytes.Equal(root.Raw, cert.Raw) {
			return true
		}
	}
	return false
}

// signerOf returns the root that signed cert, or nil. Several roots may
// share a name (a root renewed with a new key), so each one named as
// cert's issuer is tried.
func (r *AttestationRoots) signerOf(cert *x509.Certificate) *x509.Certificate {
	if r == nil {
		return nil
	}
	for _, root := range r.certs {
		if bytes.Equal(root.RawSubject, cert.RawIssuer) && signedBy(cert, root) {
			return root
		}
	}
	return nil
}

// parseCertificatePEM parses the PEM CERTIFICATE block that data starts
// with (after whitespace) and returns it with what follows it. If it
// cannot, problem says why, worded to follow "certificate N".
func parseCertificatePEM(data []byte) (cert *x509.Certificate, rest []byte, problem string) {
	data = bytes.TrimLeft(data, " \t\r\n")
	if !bytes.HasPrefix(data, []byte("-----BEGIN ")) {
		return nil, nil, "is not PEM"
	}
	block, rest := pem.Decode(data)
	// pem.Decode skips what it cannot parse, a broken block included, and
	// returns the next good one.
	if block == nil || bytes.Count(data[:len(data)-len(rest)], []byte("-----BEGIN ")) != 1 {
		return nil, nil, "is not PEM"
	}
	if block.Type != "CERTIFICATE" {
		return nil, nil, "is not a PEM CERTIFICATE block"
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, nil, "is not a valid X.509 certificate"
	}
	return cert, rest, ""
}

// extensionValue returns the value of cert's extension with the given id.
func extensionValue(cert *x509.Certificate, id asn1.ObjectIdentifier) ([]byte, bool) {
	for _, ext := range cert.Extensions {
		if ext.Id.Equal(id) {
			return ext.Value, true
		}
	}
	return nil, false
}

// parseSerial parses a Yubico serial number extension: a DER INTEGER.
func parseSerial(v []byte) (uint64, bool) {
	n := new(big.Int)
	rest, err := asn1.Unmarshal(v, &n)
	if err != nil || len(rest) != 0 || n.Sign() < 0 || !n.IsUint64() {
		return 0, false
	}
	return n.Uint64(), true
}

// certificateFingerprint returns the SHA-256 of cert in uppercase hex
// without colons.
func certificateFingerprint(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.Raw)
	return strings.ToUpper(hex.EncodeToString(sum[:]))
}

// attestationErrorf returns the EINVALID error for a refused attestation.
func attestationErrorf(format string, args ...any) *Error {
	return Errorf(EINVALID, "attestation is invalid: "+format, args...)
}
