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
	s, err := asn1.Marshal(serial)
	if err != nil {
		tb.Fatal(err)
	}
	now := time.Now()
	key := mustCert(tb, &x509.Certificate{
		Subject: pkix.Name{CommonName: "YubiKey PIV Attestation 9a"}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		ExtraExtensions: []pkix.Extension{
			{Id: asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 41482, 3, 8}, Value: []byte{pin, touch}},
			{Id: asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 41482, 3, 7}, Value: s},
		},
	}, pub, p.Device, p.deviceKey)
	return []string{
		string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: key.Raw})),
		string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: p.Device.Raw})),
	}
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
