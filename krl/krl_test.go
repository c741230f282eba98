package krl_test

import (
	"bytes"
	"cmp"
	"crypto/sha1"
	"crypto/sha256"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
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

// TestSSHKeygenWrites has ssh-keygen -k build a KRL from a spec file and
// checks that Parse reads back what the spec says, and that MarshalBinary
// writes the very same bytes for that content: ssh-keygen's serial
// encoding choices and orderings are this package's.
func TestSSHKeygenWrites(t *testing.T) {
	mustSSHKeygen(t)
	dir := t.TempDir()
	caA, _ := mustKey(t, "ed25519")
	caB, _ := mustKey(t, "ecdsa-p256")

	// Serials of every encoding, and a random mix of gaps for the cost
	// model, all within one bitmap's reach of each other (ssh-keygen
	// writes wider bitmaps than it reads; see the package comment).
	serials := []krl.SerialRange{{5, 5}, {100, 200}, {1000, 1000}, {1002, 1003}, {1010, 1010}, {0x20000, 0x20000},
		{math.MaxUint64 - 1, math.MaxUint64}}
	rng := rand.New(rand.NewPCG(1, 2))
	for s := uint64(1 << 20); s < 1<<20+16000; {
		n := 1 + rng.Uint64N(4)
		if rng.IntN(10) == 0 {
			n = 20 + rng.Uint64N(300)
		}
		serials = append(serials, krl.SerialRange{First: s, Last: s + n - 1})
		s += n + 1 + [...]uint64{0, 1, 2, 5, 40, 90, 300}[rng.IntN(7)]
	}
	var spec strings.Builder
	for _, s := range serials {
		if s.First == s.Last {
			fmt.Fprintf(&spec, "serial: %d\n", s.First)
		} else {
			fmt.Fprintf(&spec, "serial: %d-%d\n", s.First, s.Last)
		}
	}
	spec.WriteString("id: alice@example.com\nid: bob # a comment\n")
	caSpec := mustWrite(t, dir, "ca.spec", []byte(spec.String()))

	want := &krl.KRL{Version: 17}
	var keySpec strings.Builder
	for _, typ := range keyTypes {
		key, _ := mustKey(t, typ)
		byHash, _ := mustKey(t, typ)
		bySHA1, _ := mustKey(t, typ)
		authorized := func(k ssh.PublicKey) string { return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k))) }
		fmt.Fprintf(&keySpec, "key: %s\n%s\nsha256: %s\nsha1: %s\n",
			authorized(key), authorized(byHash), authorized(byHash), authorized(bySHA1))
		hashed, _ := mustKey(t, typ)
		fmt.Fprintf(&keySpec, "hash: %s\n", ssh.FingerprintSHA256(hashed))
		want.Keys = append(want.Keys, key, byHash)
		want.SHA256 = append(want.SHA256, sha256.Sum256(byHash.Marshal()), sha256.Sum256(hashed.Marshal()))
		want.SHA1 = append(want.SHA1, sha1.Sum(bySHA1.Marshal()))
	}
	keysSpec := mustWrite(t, dir, "keys.spec", []byte(keySpec.String()))
	anySpec := mustWrite(t, dir, "any.spec", []byte("id: mallory\nserial: 777\n"))

	// ssh-keygen keeps CA sections in the order CAs are first named: name
	// them in the order MarshalBinary sorts them, any CA first.
	out := dir + "/keygen.krl"
	mustRun(t, 0, "-k", "-f", out, "-z", "17", "-s", "none", anySpec, keysSpec)
	want.Certificates = append(want.Certificates, krl.CertificateRevocations{
		Serials: []krl.SerialRange{{777, 777}}, KeyIDs: []string{"mallory"}})
	for _, ca := range byWireForm([]ssh.PublicKey{caA, caB}) {
		caPath := mustWriteKey(t, dir, "ca-"+ca.Type(), ca)
		mustRun(t, 0, "-k", "-u", "-f", out, "-s", caPath, caSpec)
		want.Certificates = append(want.Certificates, krl.CertificateRevocations{
			CA: ca, Serials: serials, KeyIDs: []string{"alice@example.com", "bob"}})
	}
	keygen, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}

	got, err := krl.Parse(keygen)
	if err != nil {
		t.Fatalf("Parse(ssh-keygen's KRL): %v", err)
	}
	want.Generated = got.Generated
	if time.Since(got.Generated) > time.Hour || time.Since(got.Generated) < -time.Minute {
		t.Errorf("generated %s, want about now", got.Generated)
	}
	canonical, err := want.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if g, w := describe(got), describe(sortedLike(want)); g != w {
		t.Errorf("Parse(ssh-keygen's KRL):\n%s\nwant:\n%s", g, w)
	}
	if again, err := got.MarshalBinary(); err != nil || !bytes.Equal(again, keygen) {
		t.Errorf("MarshalBinary(Parse(ssh-keygen's KRL)) differs from it (err %v)", err)
	}
	if !bytes.Equal(canonical, keygen) {
		t.Errorf("MarshalBinary of the spec's content (%d bytes) differs from ssh-keygen's KRL (%d bytes)", len(canonical), len(keygen))
	}

	var types []byte
	for _, s := range slices.Concat(subsections(t, keygen)...) {
		types = append(types, s.Type)
	}
	for _, typ := range []byte{0x20, 0x21, 0x22, 0x23} {
		if !slices.Contains(types, typ) {
			t.Errorf("ssh-keygen wrote no subsection of type %#x: the comparison does not cover it", typ)
		}
	}
}

// sortedLike returns k's content in the order Parse returns it, sorted
// here independently of the package: keys by wire form, hashes
// numerically, serial ranges by first serial (given disjoint).
func sortedLike(k *krl.KRL) *krl.KRL {
	c := *k
	c.Keys = byWireForm(k.Keys)
	c.SHA1 = slices.Clone(k.SHA1)
	slices.SortFunc(c.SHA1, func(a, b [sha1.Size]byte) int { return bytes.Compare(a[:], b[:]) })
	c.SHA256 = slices.Clone(k.SHA256)
	slices.SortFunc(c.SHA256, func(a, b [sha256.Size]byte) int { return bytes.Compare(a[:], b[:]) })
	c.Certificates = nil
	for _, cr := range k.Certificates {
		cr.Serials = slices.Clone(cr.Serials)
		slices.SortFunc(cr.Serials, func(a, b krl.SerialRange) int { return cmp.Compare(a.First, b.First) })
		cr.KeyIDs = slices.Sorted(slices.Values(cr.KeyIDs))
		c.Certificates = append(c.Certificates, cr)
	}
	return &c
}

// TestMarshalBinaryCanonical checks that the order and repetition of the
// input do not change the bytes.
func TestMarshalBinaryCanonical(t *testing.T) {
	ca1, _ := mustKey(t, "ed25519")
	ca2, _ := mustKey(t, "ecdsa-p256")
	k1, _ := mustKey(t, "ed25519")
	k2, _ := mustKey(t, "sk-ed25519")
	h1, h2 := sha256.Sum256([]byte("1")), sha256.Sum256([]byte("2"))
	a := &krl.KRL{Version: 9, Certificates: []krl.CertificateRevocations{
		{CA: ca1, Serials: []krl.SerialRange{{1, 3}, {10, 10}, {5, 6}}, KeyIDs: []string{"b", "a"}},
		{CA: nil, KeyIDs: []string{"x"}},
		{CA: ca2, Serials: []krl.SerialRange{{7, 7}}},
		{CA: ca1, Serials: []krl.SerialRange{{4, 4}, {2, 2}}, KeyIDs: []string{"a"}},
	}, Keys: []ssh.PublicKey{k1, k2, k1}, SHA256: [][32]byte{h2, h1, h2}}
	b := &krl.KRL{Version: 9, Certificates: []krl.CertificateRevocations{
		{CA: ca2, Serials: []krl.SerialRange{{7, 7}, {7, 7}}},
		{CA: ca1, Serials: []krl.SerialRange{{10, 10}, {1, 6}}, KeyIDs: []string{"a", "b"}},
		{CA: ca1}, // empty: no section
		{CA: nil, KeyIDs: []string{"x", "x"}},
	}, Keys: []ssh.PublicKey{k2, k1}, SHA256: [][32]byte{h1, h2}}
	ab, err := a.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	bb, err := b.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ab, bb) {
		t.Errorf("the same content in another order gives other bytes:\n%x\n%x", ab, bb)
	}
	got, err := krl.Parse(ab)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(got.Certificates); n != 3 {
		t.Errorf("%d certificate sections, want 3 (one per CA)", n)
	}
	isCA1 := func(c krl.CertificateRevocations) bool {
		return c.CA != nil && bytes.Equal(c.CA.Marshal(), ca1.Marshal())
	}
	if i := slices.IndexFunc(got.Certificates, isCA1); i < 0 {
		t.Error("no section for ca1")
	} else if got, want := got.Certificates[i].Serials, []krl.SerialRange{{1, 6}, {10, 10}}; !slices.Equal(got, want) {
		t.Errorf("ca1 serials %v, want %v", got, want)
	}
}
