package krl_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/infrakeys/infrakeys/krl"
)

// bench100k is the content of a KRL of 100,000 entries as keysd would
// revoke them: 80,000 certificate serials revoked at random among the
// first 1,000,000 a CA issued (8% of them); 10,000 deleted keys listed
// explicitly; 10,000 SHA-256 fingerprints. One CA, because ssh-keygen -k,
// which the comparison runs, takes one CA per run (and cannot update its
// own output here; see BenchmarkSSHKeygen100k). It is made from a fixed
// seed, so every run measures the same list.
func bench100k(tb testing.TB) (*krl.KRL, ssh.PublicKey) {
	tb.Helper()
	rng := rand.New(rand.NewPCG(100, 0))
	seed := func() []byte {
		s := make([]byte, ed25519.SeedSize)
		for i := range s {
			s[i] = byte(rng.Uint32())
		}
		return s
	}
	key := func() ssh.PublicKey {
		pub, err := ssh.NewPublicKey(ed25519.NewKeyFromSeed(seed()).Public())
		if err != nil {
			tb.Fatal(err)
		}
		return pub
	}
	k := &krl.KRL{Version: 100000, Generated: time.Unix(1764700000, 0), Comment: "benchmark"}
	ca := key()
	picked := map[uint64]bool{}
	for len(picked) < 80000 {
		picked[1+rng.Uint64N(1000000)] = true
	}
	cr := krl.CertificateRevocations{CA: ca}
	for s := range picked {
		cr.Serials = append(cr.Serials, krl.SerialRange{First: s, Last: s})
	}
	k.Certificates = append(k.Certificates, cr)
	for range 10000 {
		k.Keys = append(k.Keys, key())
		k.SHA256 = append(k.SHA256, sha256.Sum256(seed()))
	}
	return k, ca
}

// BenchmarkMarshalBinary100k measures building the 100,000-entry KRL from
// its content (sorting, merging, choosing encodings, writing).
func BenchmarkMarshalBinary100k(b *testing.B) {
	k, _ := bench100k(b)
	var size int
	for b.Loop() {
		out, err := k.MarshalBinary()
		if err != nil {
			b.Fatal(err)
		}
		size = len(out)
	}
	b.ReportMetric(float64(size), "bytes")
}

// BenchmarkParse100k measures reading the 100,000-entry KRL back.
func BenchmarkParse100k(b *testing.B) {
	k, _ := bench100k(b)
	data, err := k.MarshalBinary()
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := krl.Parse(data); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSSHKeygen100k measures ssh-keygen -k building the same KRL
// from a spec file written before timing, for comparison. Its time
// includes starting a process and parsing the spec's text, which
// MarshalBinary does not do. The KRL it writes for this content cannot be
// read by OpenSSH (its serial bitmap is wider than OpenSSH reads; see the
// package comment); the benchmark logs that.
func BenchmarkSSHKeygen100k(b *testing.B) {
	mustSSHKeygen(b)
	k, ca := bench100k(b)
	dir := b.TempDir()
	var spec strings.Builder
	for _, s := range k.Certificates[0].Serials {
		fmt.Fprintf(&spec, "serial: %d\n", s.First)
	}
	for _, key := range k.Keys {
		fmt.Fprintf(&spec, "key: %s", ssh.MarshalAuthorizedKey(key))
	}
	for _, h := range k.SHA256 {
		fmt.Fprintf(&spec, "hash: SHA256:%s\n", base64.RawStdEncoding.EncodeToString(h[:]))
	}
	specPath := mustWrite(b, dir, "spec", []byte(spec.String()))
	caPath := mustWriteKey(b, dir, "ca", ca)
	out := filepath.Join(dir, "keygen.krl")
	for b.Loop() {
		mustRun(b, 0, "-q", "-k", "-f", out, "-z", "100000", "-s", caPath, specPath)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(len(data)), "bytes")
	if _, err := krl.Parse(data); err != nil {
		check, _ := exec.Command("ssh-keygen", "-Q", "-l", "-f", out).CombinedOutput()
		b.Logf("Parse refuses ssh-keygen's KRL of this content (%v), and so does ssh-keygen -Q: %s", err, bytes.TrimSpace(check))
	}
}
