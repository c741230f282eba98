package domain_test

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"math/big"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/infrakeys/infrakeys/domain"
)

// attestationNow is the time the test chains are verified at.
var attestationNow = time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)

var (
	oidYubicoSerial = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 41482, 3, 7}
	oidYubicoPolicy = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 41482, 3, 8}
)

// rsaTestKey is made once: RSA key generation is slow.
var rsaTestKey = sync.OnceValue(func() *rsa.PrivateKey {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return key
})

// authority is a certificate and the key that signs under it.
type authority struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

// testPKI is a set of authorities shaped like Yubico's: a root, device
// certificates with and without the CA flag, and an intermediate.
type testPKI struct {
	root             authority
	intermediate     authority // under root
	device           authority // under root, marked as a CA
	deviceNonCA      authority // under root, not a CA, as on YubiKey 4
	deviceUnderInter authority // under intermediate, not a CA
	otherRoot        authority // trusted by nobody
	deviceUnderOther authority // under otherRoot
	ecKey            *ecdsa.PrivateKey
}

func newTestPKI(tb testing.TB) *testPKI {
	tb.Helper()
	p := &testPKI{}
	p.root = MustAuthority(tb, caTemplate("Test PIV Root CA"), nil)
	p.intermediate = MustAuthority(tb, caTemplate("Test PIV Intermediate"), &p.root)
	p.device = MustAuthority(tb, caTemplate("Test PIV Attestation"), &p.root)
	p.deviceNonCA = MustAuthority(tb, deviceTemplate(), &p.root)
	p.deviceUnderInter = MustAuthority(tb, deviceTemplate(), &p.intermediate)
	p.otherRoot = MustAuthority(tb, caTemplate("Other Root CA"), nil)
	p.deviceUnderOther = MustAuthority(tb, deviceTemplate(), &p.otherRoot)
	p.ecKey = MustECKey(tb)
	return p
}

// MustECKey returns a new P-256 key.
func MustECKey(tb testing.TB) *ecdsa.PrivateKey {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	return key
}

// MustAuthority makes a new key and a certificate for it from tmpl, signed
// by parent, or by itself if parent is nil.
func MustAuthority(tb testing.TB, tmpl *x509.Certificate, parent *authority) authority {
	tb.Helper()
	key := MustECKey(tb)
	if parent == nil {
		return authority{cert: MustCertificate(tb, tmpl, &key.PublicKey, tmpl, key), key: key}
	}
	return authority{cert: MustCertificate(tb, tmpl, &key.PublicKey, parent.cert, parent.key), key: key}
}

// MustCertificate issues a certificate for pub from tmpl, signed by
// parentKey as parent. It fills in a serial number and, if tmpl has none, a
// validity period around attestationNow.
func MustCertificate(tb testing.TB, tmpl *x509.Certificate, pub crypto.PublicKey, parent *x509.Certificate, parentKey crypto.Signer) *x509.Certificate {
	tb.Helper()
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 64))
	if err != nil {
		tb.Fatal(err)
	}
	tmpl.SerialNumber = serial
	if tmpl.NotBefore.IsZero() {
		tmpl.NotBefore = attestationNow.Add(-time.Hour)
	}
	if tmpl.NotAfter.IsZero() {
		tmpl.NotAfter = attestationNow.Add(365 * 24 * time.Hour)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, parentKey)
	if err != nil {
		tb.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		tb.Fatal(err)
	}
	return cert
}

func caTemplate(name string) *x509.Certificate {
	return &x509.Certificate{
		Subject:               pkix.Name{CommonName: name},
		BasicConstraintsValid: true,
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
}

// deviceTemplate is a device certificate as on YubiKey 4: no basic
// constraints, no key usage.
func deviceTemplate() *x509.Certificate {
	return &x509.Certificate{Subject: pkix.Name{CommonName: "Test PIV Attestation"}}
}

// keyTemplate is the certificate of a key in a token, with the given
// extensions.
func keyTemplate(exts ...pkix.Extension) *x509.Certificate {
	return &x509.Certificate{Subject: pkix.Name{CommonName: "Test PIV Attestation 9a"}, ExtraExtensions: exts}
}

func policyExtension(pin, touch byte) pkix.Extension {
	return pkix.Extension{Id: oidYubicoPolicy, Value: []byte{pin, touch}}
}

func MustSerialExtension(tb testing.TB, serial int) pkix.Extension {
	tb.Helper()
	v, err := asn1.Marshal(serial)
	if err != nil {
		tb.Fatal(err)
	}
	return pkix.Extension{Id: oidYubicoSerial, Value: v}
}

// MustKeyCertificate issues tmpl for pub under issuer.
func MustKeyCertificate(tb testing.TB, tmpl *x509.Certificate, pub crypto.PublicKey, issuer authority) *x509.Certificate {
	tb.Helper()
	return MustCertificate(tb, tmpl, pub, issuer.cert, issuer.key)
}

// MustBrokenSignature returns cert with one bit of its signature flipped.
func MustBrokenSignature(tb testing.TB, cert *x509.Certificate) *x509.Certificate {
	tb.Helper()
	raw := bytes.Clone(cert.Raw)
	raw[len(raw)-1] ^= 1 // the signature is the last field
	broken, err := x509.ParseCertificate(raw)
	if err != nil {
		tb.Fatal(err)
	}
	return broken
}

func certPEM(cert *x509.Certificate) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}))
}

func pemChain(certs ...*x509.Certificate) []string {
	chain := make([]string, len(certs))
	for i, cert := range certs {
		chain[i] = certPEM(cert)
	}
	return chain
}

// MustRoots returns a set trusting exactly certs.
func MustRoots(tb testing.TB, certs ...*x509.Certificate) *domain.AttestationRoots {
	tb.Helper()
	r := &domain.AttestationRoots{}
	for _, cert := range certs {
		if err := r.AddPEM([]byte(certPEM(cert))); err != nil {
			tb.Fatal(err)
		}
	}
	return r
}

func fingerprint(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.Raw)
	return strings.ToUpper(hex.EncodeToString(sum[:]))
}

func TestVerifyAttestation(t *testing.T) {
	p := newTestPKI(t)
	pub := &p.ecKey.PublicKey
	serial := MustSerialExtension(t, 12345678)
	keyCert := MustKeyCertificate(t, keyTemplate(policyExtension(2, 1), serial), pub, p.device)
	keyCertNonCA := MustKeyCertificate(t, keyTemplate(policyExtension(2, 1), serial), pub, p.deviceNonCA)
	keyCertUnderInter := MustKeyCertificate(t, keyTemplate(policyExtension(2, 1), serial), pub, p.deviceUnderInter)
	unrelated := MustAuthority(t, caTemplate("Unrelated"), nil).cert
	trusted := MustRoots(t, p.root.cert)
	want := &domain.Attestation{
		Serial:          12345678,
		PINPolicy:       2,
		TouchPolicy:     1,
		Multifactor:     []string{"pin"},
		RootFingerprint: fingerprint(p.root.cert),
	}

	// Serial numbers in the device certificate, as some firmware puts them.
	deviceWithSerial := MustAuthority(t, &x509.Certificate{
		Subject:         pkix.Name{CommonName: "Test PIV Attestation"},
		ExtraExtensions: []pkix.Extension{MustSerialExtension(t, 7654321)},
	}, &p.root)

	expiredRoot := MustAuthority(t, &x509.Certificate{
		Subject:               pkix.Name{CommonName: "Expired Root"},
		BasicConstraintsValid: true,
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign,
		NotBefore:             attestationNow.Add(-2 * 365 * 24 * time.Hour),
		NotAfter:              attestationNow.Add(-time.Minute),
	}, nil)
	deviceUnderExpired := MustAuthority(t, deviceTemplate(), &expiredRoot)

	// An impostor root has the trusted root's name but not its key.
	impostor := MustAuthority(t, caTemplate("Test PIV Root CA"), nil)
	deviceUnderImpostor := MustAuthority(t, deviceTemplate(), &impostor)

	rsaKeyCert := MustKeyCertificate(t, keyTemplate(policyExtension(1, 3)), &rsaTestKey().PublicKey, p.deviceNonCA)

	// A token signs any digest with a slot's key, so the owner of a genuine
	// key certificate can issue certificates under it: slot keys standing in
	// for device certificates, for a software key with the policy they like.
	slotUnderNonCA := MustAuthority(t, keyTemplate(policyExtension(1, 1), serial), &p.deviceNonCA)
	slotUnderCA := MustAuthority(t, keyTemplate(policyExtension(1, 1), serial), &p.device)
	forgedDevice := MustAuthority(t, deviceTemplate(), &slotUnderNonCA) // no policy extension
	interNonCA := MustAuthority(t, &x509.Certificate{Subject: pkix.Name{CommonName: "Test PIV Intermediate"}}, &p.root)
	deviceUnderInterNonCA := MustAuthority(t, deviceTemplate(), &interNonCA)

	validCertPEM := certPEM(keyCert)
	brokenBlock := "-----BEGIN CERTIFICATE-----\n!!!\n"

	for _, tc := range []struct {
		name    string
		key     crypto.PublicKey
		chain   []string
		roots   *domain.AttestationRoots
		want    *domain.Attestation
		wantErr string
	}{
		{name: "OK", key: pub, chain: pemChain(keyCert, p.device.cert), roots: trusted, want: want},
		{name: "OKNonCADevice", key: pub, chain: pemChain(keyCertNonCA, p.deviceNonCA.cert), roots: trusted, want: want},
		{name: "OKIntermediate", key: pub, chain: pemChain(keyCertUnderInter, p.deviceUnderInter.cert, p.intermediate.cert), roots: trusted, want: want},
		{name: "OKRootIncluded", key: pub, chain: pemChain(keyCertNonCA, p.deviceNonCA.cert, p.root.cert), roots: trusted, want: want},
		{name: "OKIntermediateAndRootIncluded", key: pub, chain: pemChain(keyCertUnderInter, p.deviceUnderInter.cert, p.intermediate.cert, p.root.cert), roots: trusted, want: want},
		{
			name: "OKTrustedIntermediate", key: pub, chain: pemChain(keyCertUnderInter, p.deviceUnderInter.cert),
			roots: MustRoots(t, p.root.cert, p.intermediate.cert),
			want:  &domain.Attestation{Serial: 12345678, PINPolicy: 2, TouchPolicy: 1, Multifactor: []string{"pin"}, RootFingerprint: fingerprint(p.intermediate.cert)},
		},
		{
			name: "OKTrustedIntermediateIncluded", key: pub, chain: pemChain(keyCertUnderInter, p.deviceUnderInter.cert, p.intermediate.cert, p.root.cert),
			roots: MustRoots(t, p.root.cert, p.intermediate.cert), want: want,
		},
		{name: "OKKeySignedByRoot", key: pub, chain: pemChain(MustKeyCertificate(t, keyTemplate(policyExtension(2, 1), serial), pub, p.root)), roots: trusted, want: want},
		{
			name: "OKRSAKey", key: &rsaTestKey().PublicKey, chain: pemChain(rsaKeyCert, p.deviceNonCA.cert), roots: trusted,
			want: &domain.Attestation{PINPolicy: 1, TouchPolicy: 3, Multifactor: []string{"touch"}, RootFingerprint: fingerprint(p.root.cert)},
		},
		{
			name: "OKNoExtensions", key: pub, chain: pemChain(MustKeyCertificate(t, keyTemplate(), pub, p.device), p.device.cert), roots: trusted,
			want: &domain.Attestation{Multifactor: []string{}, RootFingerprint: fingerprint(p.root.cert)},
		},
		{
			name: "OKSerialInDeviceCertificate", key: pub, chain: pemChain(MustKeyCertificate(t, keyTemplate(), pub, deviceWithSerial), deviceWithSerial.cert), roots: trusted,
			want: &domain.Attestation{Serial: 7654321, Multifactor: []string{}, RootFingerprint: fingerprint(p.root.cert)},
		},
		{
			name: "OKSerialInKeyCertificateFirst", key: pub, chain: pemChain(MustKeyCertificate(t, keyTemplate(serial), pub, deviceWithSerial), deviceWithSerial.cert), roots: trusted,
			want: &domain.Attestation{Serial: 12345678, Multifactor: []string{}, RootFingerprint: fingerprint(p.root.cert)},
		},

		{name: "ErrWrongKey", key: &MustECKey(t).PublicKey, chain: pemChain(keyCert, p.device.cert), roots: trusted, wantErr: "certificate 1 does not certify the submitted key"},
		{name: "ErrWrongKeyType", key: &rsaTestKey().PublicKey, chain: pemChain(keyCert, p.device.cert), roots: trusted, wantErr: "certificate 1 does not certify the submitted key"},
		{name: "ErrNoKey", key: nil, chain: pemChain(keyCert, p.device.cert), roots: trusted, wantErr: "certificate 1 does not certify the submitted key"},
		{name: "ErrBrokenKeyCertificateSignature", key: pub, chain: pemChain(MustBrokenSignature(t, keyCertNonCA), p.deviceNonCA.cert), roots: trusted, wantErr: "certificate 1 is not signed by certificate 2"},
		{name: "ErrBrokenDeviceSignature", key: pub, chain: pemChain(keyCertNonCA, MustBrokenSignature(t, p.deviceNonCA.cert)), roots: trusted, wantErr: "certificate 2 is not signed by a trusted root"},
		{name: "ErrBrokenDeviceSignatureRootIncluded", key: pub, chain: pemChain(keyCertNonCA, MustBrokenSignature(t, p.deviceNonCA.cert), p.root.cert), roots: trusted, wantErr: "certificate 2 is not signed by certificate 3"},
		{name: "ErrBrokenIntermediateSignature", key: pub, chain: pemChain(keyCertUnderInter, p.deviceUnderInter.cert, MustBrokenSignature(t, p.intermediate.cert)), roots: trusted, wantErr: "certificate 3 is not signed by a trusted root"},
		{
			name: "ErrExpiredKeyCertificate", key: pub, roots: trusted, wantErr: "certificate 1 has expired",
			chain: pemChain(MustKeyCertificate(t, &x509.Certificate{NotBefore: attestationNow.Add(-48 * time.Hour), NotAfter: attestationNow.Add(-time.Minute)}, pub, p.device), p.device.cert),
		},
		{
			name: "ErrKeyCertificateNotYetValid", key: pub, roots: trusted, wantErr: "certificate 1 is not yet valid",
			chain: pemChain(MustKeyCertificate(t, &x509.Certificate{NotBefore: attestationNow.Add(time.Minute)}, pub, p.device), p.device.cert),
		},
		{
			name: "ErrExpiredDeviceCertificate", key: pub, roots: trusted, wantErr: "certificate 2 has expired",
			chain: func() []string {
				device := MustAuthority(t, &x509.Certificate{NotBefore: attestationNow.Add(-48 * time.Hour), NotAfter: attestationNow.Add(-time.Minute)}, &p.root)
				return pemChain(MustKeyCertificate(t, keyTemplate(), pub, device), device.cert)
			}(),
		},
		{
			name: "ErrExpiredRoot", key: pub, roots: MustRoots(t, expiredRoot.cert), wantErr: "the trusted root that signed certificate 2 is not valid now",
			chain: pemChain(MustKeyCertificate(t, keyTemplate(), pub, deviceUnderExpired), deviceUnderExpired.cert),
		},
		{
			name: "ErrExpiredRootIncluded", key: pub, roots: MustRoots(t, expiredRoot.cert), wantErr: "certificate 3 has expired",
			chain: pemChain(MustKeyCertificate(t, keyTemplate(), pub, deviceUnderExpired), deviceUnderExpired.cert, expiredRoot.cert),
		},
		{
			name: "ErrUntrustedRoot", key: pub, roots: trusted, wantErr: "certificate 2 is not signed by a trusted root",
			chain: pemChain(MustKeyCertificate(t, keyTemplate(), pub, p.deviceUnderOther), p.deviceUnderOther.cert),
		},
		{
			name: "ErrUntrustedRootIncluded", key: pub, roots: trusted, wantErr: "certificate 3 is not signed by a trusted root",
			chain: pemChain(MustKeyCertificate(t, keyTemplate(), pub, p.deviceUnderOther), p.deviceUnderOther.cert, p.otherRoot.cert),
		},
		{
			name: "ErrDefaultRootsOnly", key: pub, roots: domain.DefaultAttestationRoots(), wantErr: "certificate 2 is not signed by a trusted root",
			chain: pemChain(keyCert, p.device.cert),
		},
		{name: "ErrNoRoots", key: pub, roots: nil, chain: pemChain(keyCert, p.device.cert), wantErr: "certificate 2 is not signed by a trusted root"},
		{
			name: "ErrImpostorRoot", key: pub, roots: trusted, wantErr: "certificate 2 is not signed by a trusted root",
			chain: pemChain(MustKeyCertificate(t, keyTemplate(), pub, deviceUnderImpostor), deviceUnderImpostor.cert),
		},
		{
			name: "ErrImpostorRootIncluded", key: pub, roots: trusted, wantErr: "certificate 3 is not signed by a trusted root",
			chain: pemChain(MustKeyCertificate(t, keyTemplate(), pub, deviceUnderImpostor), deviceUnderImpostor.cert, impostor.cert),
		},
		{
			name: "ErrUnrelatedCertificateAppended", key: pub, roots: trusted, wantErr: "certificate 3 proves nothing: certificate 2 is already signed by a trusted root",
			chain: pemChain(keyCert, p.device.cert, unrelated),
		},
		{
			name: "ErrCertificateAfterRoot", key: pub, roots: trusted, wantErr: "certificate 4 proves nothing: certificate 2 is already signed by a trusted root",
			chain: pemChain(keyCert, p.device.cert, p.root.cert, unrelated),
		},
		{
			name: "ErrUntrustedIntermediateAfterTrustedPath", key: pub, roots: trusted, wantErr: "certificate 3 proves nothing: certificate 2 is already signed by a trusted root",
			chain: pemChain(keyCert, p.device.cert, p.intermediate.cert),
		},
		{
			name: "ErrUnrelatedCertificateInserted", key: pub, roots: trusted, wantErr: "certificate 1 is not signed by certificate 2",
			chain: pemChain(keyCert, unrelated, p.device.cert),
		},
		{
			name: "ErrOutOfOrder", key: pub, roots: trusted, wantErr: "certificate 1 is not signed by certificate 2",
			chain: pemChain(keyCertUnderInter, p.intermediate.cert, p.deviceUnderInter.cert),
		},
		{
			name: "ErrKeyCertificateSignsNonCADevice", key: pub, roots: trusted,
			wantErr: "certificate 2 is a key's certificate (it has the PIN and touch policy extension 1.3.6.1.4.1.41482.3.8), not a device certificate, so it cannot sign certificate 1",
			chain:   pemChain(MustKeyCertificate(t, keyTemplate(policyExtension(3, 2), serial), pub, slotUnderNonCA), slotUnderNonCA.cert, p.deviceNonCA.cert),
		},
		{
			name: "ErrKeyCertificateSignsCADevice", key: pub, roots: trusted,
			wantErr: "certificate 2 is a key's certificate (it has the PIN and touch policy extension 1.3.6.1.4.1.41482.3.8), not a device certificate, so it cannot sign certificate 1",
			chain:   pemChain(MustKeyCertificate(t, keyTemplate(policyExtension(3, 2), serial), pub, slotUnderCA), slotUnderCA.cert, p.device.cert, p.root.cert),
		},
		{
			name: "ErrKeyCertificateSignsDevice", key: pub, roots: trusted, wantErr: "certificate 3 is not a CA, so it cannot sign certificate 2",
			chain: pemChain(MustKeyCertificate(t, keyTemplate(policyExtension(3, 2), serial), pub, forgedDevice), forgedDevice.cert, slotUnderNonCA.cert, p.deviceNonCA.cert),
		},
		{
			name: "ErrDeviceSignsDevice", key: pub, roots: trusted, wantErr: "certificate 3 is not a CA, so it cannot sign certificate 2",
			chain: func() []string {
				device := MustAuthority(t, deviceTemplate(), &p.deviceNonCA)
				return pemChain(MustKeyCertificate(t, keyTemplate(), pub, device), device.cert, p.deviceNonCA.cert)
			}(),
		},
		{
			name: "ErrIntermediateNotCA", key: pub, roots: trusted, wantErr: "certificate 3 is not a CA, so it cannot sign certificate 2",
			chain: pemChain(MustKeyCertificate(t, keyTemplate(policyExtension(2, 1), serial), pub, deviceUnderInterNonCA), deviceUnderInterNonCA.cert, interNonCA.cert),
		},
		{name: "ErrRootAsKeyCertificate", key: &p.root.key.PublicKey, roots: trusted, chain: pemChain(p.root.cert), wantErr: "certificate 1 is a trusted root, not a key's certificate"},
		{
			name: "ErrMalformedPolicy", key: pub, roots: trusted, wantErr: "certificate 1 has a malformed PIN and touch policy",
			chain: pemChain(MustKeyCertificate(t, keyTemplate(pkix.Extension{Id: oidYubicoPolicy, Value: []byte{2, 2, 2}}), pub, p.device), p.device.cert),
		},
		{
			name: "ErrMalformedSerial", key: pub, roots: trusted, wantErr: "certificate 1 has a malformed serial number",
			chain: pemChain(MustKeyCertificate(t, keyTemplate(pkix.Extension{Id: oidYubicoSerial, Value: []byte{4, 1, 0}}), pub, p.device), p.device.cert),
		},
		{
			name: "ErrSHA1Signature", key: &rsaTestKey().PublicKey, roots: trusted, wantErr: "certificate 1 is not signed by certificate 2",
			chain: pemChain(MustKeyCertificate(t, &x509.Certificate{SignatureAlgorithm: x509.ECDSAWithSHA1}, &rsaTestKey().PublicKey, p.device), p.device.cert),
		},

		{name: "ErrNilChain", key: pub, roots: trusted, chain: nil, wantErr: "no certificates"},
		{name: "ErrEmptyChain", key: pub, roots: trusted, chain: []string{}, wantErr: "no certificates"},
		{name: "ErrTooManyCertificates", key: pub, roots: trusted, chain: pemChain(keyCert, p.device.cert, p.root.cert, p.root.cert, p.root.cert, p.root.cert, p.root.cert, p.root.cert, p.root.cert), wantErr: "more than 8 certificates"},
		{name: "ErrEmptyString", key: pub, roots: trusted, chain: []string{""}, wantErr: "certificate 1 is not PEM"},
		{name: "ErrNotPEM", key: pub, roots: trusted, chain: []string{"not a certificate"}, wantErr: "certificate 1 is not PEM"},
		{name: "ErrBase64WithoutArmor", key: pub, roots: trusted, chain: []string{validCertPEM[len("-----BEGIN CERTIFICATE-----\n"):]}, wantErr: "certificate 1 is not PEM"},
		{name: "ErrGarbageBeforePEM", key: pub, roots: trusted, chain: []string{"garbage\n" + validCertPEM, certPEM(p.device.cert)}, wantErr: "certificate 1 is not PEM"},
		{name: "ErrBrokenBlockBeforePEM", key: pub, roots: trusted, chain: []string{brokenBlock + validCertPEM, certPEM(p.device.cert)}, wantErr: "certificate 1 is not PEM"},
		{name: "ErrTruncatedPEM", key: pub, roots: trusted, chain: []string{validCertPEM[:len(validCertPEM)-10], certPEM(p.device.cert)}, wantErr: "certificate 1 is not PEM"},
		{
			name: "ErrNotCertificate", key: pub, roots: trusted, wantErr: "certificate 1 is not a PEM CERTIFICATE block",
			chain: []string{string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: keyCert.RawSubjectPublicKeyInfo})), certPEM(p.device.cert)},
		},
		{
			name: "ErrNotDER", key: pub, roots: trusted, wantErr: "certificate 2 is not a valid X.509 certificate",
			chain: []string{validCertPEM, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("not DER")}))},
		},
		{name: "ErrTrailingGarbage", key: pub, roots: trusted, chain: []string{validCertPEM, certPEM(p.device.cert) + "garbage"}, wantErr: "certificate 2 has data after its PEM block"},
		{name: "ErrTwoCertificatesInOneElement", key: pub, roots: trusted, chain: []string{validCertPEM + certPEM(p.device.cert)}, wantErr: "certificate 1 has data after its PEM block"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := domain.VerifyAttestation(tc.key, tc.chain, tc.roots, attestationNow)
			if tc.wantErr != "" {
				if got, want := domain.ErrorCode(err), domain.EINVALID; got != want {
					t.Fatalf("code = %q (%v), want %q", got, err, want)
				}
				if got, want := domain.ErrorMessage(err), "attestation is invalid: "+tc.wantErr; got != want {
					t.Fatalf("message = %q, want %q", got, want)
				}
				if got != nil {
					t.Fatalf("attestation = %+v, want nil", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("attestation = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestVerifyAttestation_Multifactor(t *testing.T) {
	p := newTestPKI(t)
	roots := MustRoots(t, p.root.cert)
	keys := []struct {
		name string
		pub  crypto.PublicKey
	}{
		{"EC", &p.ecKey.PublicKey},
		{"RSA", &rsaTestKey().PublicKey},
	}
	for _, key := range keys {
		for pin := byte(1); pin <= 3; pin++ {
			for touch := byte(1); touch <= 3; touch++ {
				t.Run(fmt.Sprintf("%s/PIN%dTouch%d", key.name, pin, touch), func(t *testing.T) {
					cert := MustKeyCertificate(t, keyTemplate(policyExtension(pin, touch), MustSerialExtension(t, 42)), key.pub, p.deviceNonCA)
					got, err := domain.VerifyAttestation(key.pub, pemChain(cert, p.deviceNonCA.cert), roots, attestationNow)
					if err != nil {
						t.Fatal(err)
					}
					want := []string{}
					if pin > 1 {
						want = append(want, "pin")
					}
					if touch > 1 {
						want = append(want, "touch")
					}
					if !reflect.DeepEqual(got.Multifactor, want) {
						t.Errorf("multifactor = %#v, want %#v", got.Multifactor, want)
					}
					if got, want := got.PINPolicy, int(pin); got != want {
						t.Errorf("PIN policy = %d, want %d", got, want)
					}
					if got, want := got.TouchPolicy, int(touch); got != want {
						t.Errorf("touch policy = %d, want %d", got, want)
					}
					if got, want := got.Serial, uint64(42); got != want {
						t.Errorf("serial = %d, want %d", got, want)
					}
				})
			}
		}
	}
}

func TestAttestationRoots_AddPEM(t *testing.T) {
	p := newTestPKI(t)
	pub := &p.ecKey.PublicKey
	chain := pemChain(MustKeyCertificate(t, keyTemplate(), pub, p.deviceNonCA), p.deviceNonCA.cert)

	t.Run("OK", func(t *testing.T) {
		roots := domain.DefaultAttestationRoots()
		if _, err := domain.VerifyAttestation(pub, chain, roots, attestationNow); domain.ErrorCode(err) != domain.EINVALID {
			t.Fatalf("before AddPEM: err = %v, want %s", err, domain.EINVALID)
		}
		if err := roots.AddPEM([]byte(certPEM(p.root.cert))); err != nil {
			t.Fatal(err)
		}
		got, err := domain.VerifyAttestation(pub, chain, roots, attestationNow)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := got.RootFingerprint, fingerprint(p.root.cert); got != want {
			t.Errorf("root = %s, want %s", got, want)
		}
		if got, want := len(roots.Fingerprints()), 2; got != want {
			t.Errorf("len(Fingerprints()) = %d, want %d", got, want)
		}
	})

	t.Run("OKBundle", func(t *testing.T) {
		var roots domain.AttestationRoots
		bundle := "\n" + certPEM(p.otherRoot.cert) + "\n" + certPEM(p.root.cert) + certPEM(p.root.cert)
		if err := roots.AddPEM([]byte(bundle)); err != nil {
			t.Fatal(err)
		}
		if got, want := roots.Fingerprints(), []string{fingerprint(p.otherRoot.cert), fingerprint(p.root.cert)}; !reflect.DeepEqual(got, want) {
			t.Fatalf("Fingerprints() = %v, want %v", got, want)
		}
		if _, err := domain.VerifyAttestation(pub, chain, &roots, attestationNow); err != nil {
			t.Fatal(err)
		}
	})

	for _, tc := range []struct {
		name    string
		pem     string
		wantErr string
	}{
		{"ErrEmpty", "", "no certificates"},
		{"ErrWhitespace", " \n", "no certificates"},
		{"ErrNotPEM", "not a certificate", "certificate 1 is not PEM"},
		{"ErrNotCertificate", string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: p.root.cert.RawSubjectPublicKeyInfo})), "certificate 1 is not a PEM CERTIFICATE block"},
		{"ErrNotDER", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("not DER")})), "certificate 1 is not a valid X.509 certificate"},
		{"ErrTrailingGarbage", certPEM(p.root.cert) + "garbage", "certificate 2 is not PEM"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var roots domain.AttestationRoots
			err := roots.AddPEM([]byte(tc.pem))
			if got, want := domain.ErrorCode(err), domain.EINVALID; got != want {
				t.Fatalf("code = %q (%v), want %q", got, err, want)
			}
			if got, want := domain.ErrorMessage(err), "attestation roots are invalid: "+tc.wantErr; got != want {
				t.Fatalf("message = %q, want %q", got, want)
			}
			// A bad file adds nothing, not even its good certificates.
			if got := roots.Fingerprints(); len(got) != 0 {
				t.Fatalf("Fingerprints() = %v, want none", got)
			}
		})
	}
}

func TestDefaultAttestationRoots(t *testing.T) {
	got := domain.DefaultAttestationRoots().Fingerprints()
	want := []string{"63ECE914E54DD87915F34033C85AF4C0696BA1512F8ADD66CED738331207B546"} // Yubico PIV Root CA Serial 263751
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Fingerprints() = %v, want %v", got, want)
	}
}
