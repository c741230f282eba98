// Package attestationtest builds YubiKey-style PIV attestation chains for
// tests: a root, a device certificate (optionally not a CA, as on
// YubiKey 4), and key certificates with Yubico's policy and serial
// extensions.
package attestationtest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"math/big"
	"sync/atomic"
	"testing"
	"time"
)

// PKI is a root and one device (token) certificate under it.
type PKI struct {
	Root      *x509.Certificate
	rootKey   crypto.Signer
	Device    *x509.Certificate
	deviceKey crypto.Signer
}

// New returns a fresh PKI; deviceIsCA false makes the device certificate
// like a YubiKey 4's: no CA flag, yet it signs key certificates.
func New(tb testing.TB, deviceIsCA bool) *PKI {
	tb.Helper()
	p := &PKI{rootKey: mustKey(tb), deviceKey: mustKey(tb)}
	now := time.Now()
	p.Root = mustCert(tb, &x509.Certificate{
		Subject: pkix.Name{CommonName: "Test PIV Root CA"}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}, p.rootKey.Public(), nil, p.rootKey)
	device := &x509.Certificate{Subject: pkix.Name{CommonName: "Test PIV Attestation"}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour)}
	if deviceIsCA {
		device.IsCA, device.BasicConstraintsValid, device.KeyUsage = true, true, x509.KeyUsageCertSign
	}
	p.Device = mustCert(tb, device, p.deviceKey.Public(), p.Root, p.rootKey)
	return p
}

// RootPEM is the root certificate in PEM, as an operator configures it.
func (p *PKI) RootPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: p.Root.Raw})
}

// Chain attests pub with the given PIN and touch policies (1 never, 2
// once/always, 3 always/cached) and serial: the key's certificate, then the
// device's, as CreateKey's attestation wants them.
func (p *PKI) Chain(tb testing.TB, pub crypto.PublicKey, pin, touch byte, serial int) []string {
	tb.Helper()
	now := time.Now()
	key := mustCert(tb, keyTemplate(tb, pin, touch, serial, now.Add(-time.Hour), now.Add(24*time.Hour)), pub, p.Device, p.deviceKey)
	return pemChain(key, p.Device)
}

// ExpiredChain is Chain with a key certificate that expired an hour ago.
func (p *PKI) ExpiredChain(tb testing.TB, pub crypto.PublicKey) []string {
	tb.Helper()
	now := time.Now()
	key := mustCert(tb, keyTemplate(tb, 2, 2, 1, now.Add(-48*time.Hour), now.Add(-time.Hour)), pub, p.Device, p.deviceKey)
	return pemChain(key, p.Device)
}

// SlotSignedChain is the forgery a token's owner can make: a genuine
// certificate for a key in one of the token's slots, and under it, signed
// with that slot's key (a token signs any digest it is given), a
// certificate for pub with the policies the forger likes. It returns pub's
// certificate, the slot key's and the device's.
func (p *PKI) SlotSignedChain(tb testing.TB, pub crypto.PublicKey, pin, touch byte) []string {
	tb.Helper()
	now := time.Now()
	slotKey := mustKey(tb)
	slot := mustCert(tb, keyTemplate(tb, 1, 1, 1, now.Add(-time.Hour), now.Add(24*time.Hour)), slotKey.Public(), p.Device, p.deviceKey)
	forged := mustCert(tb, keyTemplate(tb, pin, touch, 1, now.Add(-time.Hour), now.Add(24*time.Hour)), pub, slot, slotKey)
	return pemChain(forged, slot, p.Device)
}

// keyTemplate is a key's certificate as a YubiKey makes it: with the PIN
// and touch policy and the serial number. Device certificates carry
// neither policy extension.
func keyTemplate(tb testing.TB, pin, touch byte, serial int, notBefore, notAfter time.Time) *x509.Certificate {
	tb.Helper()
	s, err := asn1.Marshal(serial)
	if err != nil {
		tb.Fatal(err)
	}
	return &x509.Certificate{
		Subject: pkix.Name{CommonName: "YubiKey PIV Attestation 9a"}, NotBefore: notBefore, NotAfter: notAfter,
		ExtraExtensions: []pkix.Extension{
			{Id: asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 41482, 3, 8}, Value: []byte{pin, touch}},
			{Id: asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 41482, 3, 7}, Value: s},
		},
	}
}

func pemChain(certs ...*x509.Certificate) []string {
	out := make([]string, len(certs))
	for i, cert := range certs {
		out[i] = string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}))
	}
	return out
}

func mustKey(tb testing.TB) crypto.Signer {
	tb.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

var serials atomic.Int64

func mustCert(tb testing.TB, tmpl *x509.Certificate, pub crypto.PublicKey, parent *x509.Certificate, parentKey crypto.Signer) *x509.Certificate {
	tb.Helper()
	tmpl.SerialNumber = big.NewInt(serials.Add(1))
	if parent == nil {
		parent = tmpl
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
