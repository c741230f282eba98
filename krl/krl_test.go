package krl_test

import (
	"crypto/sha1"
	"crypto/sha256"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/infrakeys/infrakeys/krl"
)

// wideFirst, wideStep and wideCount make a set of serials whose bitmap is
// wider than OpenSSH reads (27,000 bits against 16,384), so the encoder
// must split it.
const wideFirst, wideStep, wideCount = 100000, 3, 9000

// TestSSHKeygenQuery writes a KRL with every kind of section and serial
// encoding and asks ssh-keygen -Q, for keys and certificates on both sides
// of every boundary, whether they are revoked.
func TestSSHKeygenQuery(t *testing.T) {
	mustSSHKeygen(t)
	dir := t.TempDir()
	_, ca1 := mustKey(t, "ed25519")
	_, ca2 := mustKey(t, "ecdsa-p256")
	ca3Pub, ca3 := mustKey(t, "ed25519") // revoked as an explicit key
	user, _ := mustKey(t, "ed25519")

	var wide []krl.SerialRange
	for i := range uint64(wideCount) {
		s := wideFirst + i*wideStep
		wide = append(wide, krl.SerialRange{First: s, Last: s})
	}
	k := &krl.KRL{
		Version:   7,
		Generated: time.Unix(1764700000, 0),
		Comment:   "test list",
		Certificates: []krl.CertificateRevocations{
			{CA: ca1.PublicKey(), Serials: []krl.SerialRange{
				{5, 5}, {100, 200}, {1000, 1000}, {1002, 1003}, {1010, 1010}, {1020, 1020},
				{math.MaxUint64 - 1000, math.MaxUint64},
			}, KeyIDs: []string{"alice@example.com"}},
			{CA: ca1.PublicKey(), Serials: wide},
			{CA: ca2.PublicKey(), Serials: []krl.SerialRange{{42, 42}}},
			{CA: nil, Serials: []krl.SerialRange{{777, 777}}, KeyIDs: []string{"mallory"}},
		},
	}

	type check struct {
		name    string
		key     ssh.PublicKey
		revoked bool
	}
	var checks []check
	cert := func(ca ssh.Signer, serial uint64, id string, revoked bool) {
		name := fmt.Sprintf("cert-%s-%d-%s", ssh.FingerprintSHA256(ca.PublicKey())[7:13], serial, id)
		checks = append(checks, check{strings.NewReplacer("/", "_", "+", "-").Replace(name), mustCert(t, ca, user, serial, id), revoked})
	}
	for _, s := range []uint64{5, 100, 150, 200, 1000, 1002, 1003, 1010, 1020, math.MaxUint64 - 1000, math.MaxUint64} {
		cert(ca1, s, "", true)
	}
	for _, s := range []uint64{0, 1, 4, 6, 99, 201, 999, 1001, 1004, 1009, 1011, 1019, 1021, math.MaxUint64 - 1001} {
		cert(ca1, s, "", false)
	}
	// Around the start, the split and the end of the wide bitmap.
	split := uint64(wideFirst + (maxBitmapBits+wideStep-1)/wideStep*wideStep)
	for _, s := range []uint64{wideFirst - 1, wideFirst, wideFirst + 1, split - 4, split - 3, split - 2, split - 1, split, split + 1, split + 3,
		wideFirst + (wideCount-1)*wideStep, wideFirst + (wideCount-1)*wideStep + 1} {
		cert(ca1, s, "", s >= wideFirst && (s-wideFirst)%wideStep == 0 && s <= wideFirst+(wideCount-1)*wideStep)
	}
	cert(ca1, 0, "alice@example.com", true) // by key ID, with no serial
	cert(ca1, 300, "alice@example.com", true)
	cert(ca1, 300, "alice@example.co", false) // key IDs match exactly
	cert(ca2, 42, "", true)
	cert(ca2, 5, "", false) // serial 5 is revoked for ca1 only
	cert(ca2, 777, "", true)
	cert(ca1, 777, "", true)
	cert(ca2, 300, "mallory", true)
	cert(ca3, 300, "", true) // its CA is a revoked key
	cert(ca3, 0, "", true)

	for _, typ := range keyTypes {
		revoked, _ := mustKey(t, typ)
		kept, _ := mustKey(t, typ)
		k.Keys = append(k.Keys, revoked)
		checks = append(checks, check{"key-" + typ + "-revoked", revoked, true}, check{"key-" + typ + "-kept", kept, false})
	}
	k.Keys = append(k.Keys, ca3Pub)
	certOfKey := mustCert(t, ca1, k.Keys[0], 31337, "")
	checks = append(checks, check{"cert-of-revoked-key", certOfKey, true})
	viaCert, _ := mustKey(t, "ed25519")
	k.Keys = append(k.Keys, mustCert(t, ca2, viaCert, 9, "")) // revokes viaCert
	checks = append(checks, check{"key-revoked-as-cert", viaCert, true})

	bySHA1, _ := mustKey(t, "ecdsa-p384")
	bySHA256, _ := mustKey(t, "ed25519")
	k.SHA1 = [][sha1.Size]byte{sha1.Sum(bySHA1.Marshal())}
	k.SHA256 = [][sha256.Size]byte{sha256.Sum256(bySHA256.Marshal())}
	checks = append(checks,
		check{"key-sha1", bySHA1, true},
		check{"key-sha256", bySHA256, true},
		check{"cert-of-key-sha256", mustCert(t, ca2, bySHA256, 8, ""), true},
		check{"key-sha-kept", user, false})

	krlPath, b := mustMarshal(t, dir, k)

	// Every serial encoding is in the file, and the wide set is split
	// where OpenSSH's limit says.
	subs := subsections(t, b)
	var types []byte
	var offsets []uint64
	for _, s := range slices.Concat(subs...) {
		types = append(types, s.Type)
		if s.Type == 0x22 {
			offsets = append(offsets, s.Offset)
		}
	}
	for _, typ := range []byte{0x20, 0x21, 0x22, 0x23} {
		if !slices.Contains(types, typ) {
			t.Errorf("no subsection of type %#x in %x", typ, types)
		}
	}
	if !slices.Contains(offsets, wideFirst) || !slices.Contains(offsets, split) {
		t.Errorf("bitmaps start at %d, want %d and %d among them", offsets, wideFirst, split)
	}

	for _, c := range checks {
		t.Run(c.name, func(t *testing.T) {
			checkRevoked(t, krlPath, mustWriteKey(t, dir, c.name, c.key), c.revoked)
		})
	}

	// ssh-keygen -Q -l lists what it read.
	dump := mustRun(t, 0, "-Q", "-l", "-f", krlPath)
	for _, line := range []string{
		"# KRL version 7\n",
		"# Comment: test list\n",
		"# Wildcard CA\n",
		"serial: 5\n",
		"serial: 100-200\n",
		"serial: 1002-1003\n",
		fmt.Sprintf("serial: %d-%d\n", uint64(math.MaxUint64-1000), uint64(math.MaxUint64)),
		fmt.Sprintf("serial: %d\n", split),
		"id: alice@example.com\n",
		"id: mallory\n",
		"hash: " + ssh.FingerprintSHA256(ca3Pub) + " # ssh-ed25519\n",
		fmt.Sprintf("hash: SHA256:%x\n", k.SHA256[0]),
		fmt.Sprintf("# hash SHA1:%x\n", k.SHA1[0]),
	} {
		if !strings.Contains(dump, line) {
			t.Errorf("ssh-keygen -Q -l does not list %q:\n%s", line, dump)
		}
	}
	if got, want := strings.Count(dump, "\nserial: "), 7+wideCount+2; got != want {
		t.Errorf("ssh-keygen -Q -l lists %d serial lines, want %d", got, want)
	}
}

// maxBitmapBits is the widest bitmap OpenSSH reads (its mpint limit).
const maxBitmapBits = 16384
