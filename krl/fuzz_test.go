package krl_test

import (
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/binary"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/infrakeys/infrakeys/krl"
)

// fuzzing reports whether go test runs with -fuzz; otherwise fuzz targets
// run only their seed corpus, and can afford to ask ssh-keygen.
func fuzzing() bool {
	f := flag.Lookup("test.fuzz")
	return f != nil && f.Value.String() != ""
}

// keyPool holds the keys a fuzz input picks from: making keys is slow.
type keyPool struct {
	cas  []ssh.PublicKey
	keys []ssh.PublicKey
}

func newKeyPool(tb testing.TB) keyPool {
	var p keyPool
	for _, typ := range []string{"ed25519", "ed25519", "ecdsa-p256"} {
		key, _ := mustKey(tb, typ)
		p.cas = append(p.cas, key)
	}
	for _, typ := range keyTypes {
		key, _ := mustKey(tb, typ)
		p.keys = append(p.keys, key)
	}
	return p
}

// build turns fuzz bytes into KRL content: a little program of
// operations (pick a CA, revoke serials near the last one or anywhere,
// key IDs, keys, hashes), so that small inputs reach every encoding.
func (p keyPool) build(version uint64, comment string, data []byte) *krl.KRL {
	k := &krl.KRL{Version: version, Comment: strings.ReplaceAll(comment, "\x00", ""), Generated: time.Unix(int64(version%(1<<40)), 0)}
	next := func(n int) []byte {
		v := make([]byte, n)
		data = data[copy(v, data):]
		return v
	}
	certs := map[int]*krl.CertificateRevocations{}
	ca, serial := 0, uint64(0)
	cur := func() *krl.CertificateRevocations {
		if certs[ca] == nil {
			certs[ca] = &krl.CertificateRevocations{}
			if ca > 0 {
				certs[ca].CA = p.cas[ca-1]
			}
		}
		return certs[ca]
	}
	for len(data) > 0 {
		switch op := next(1)[0]; op % 8 {
		case 0:
			ca = int(next(1)[0]) % (len(p.cas) + 1)
		case 1, 2: // a serial or a short range shortly after the last
			serial += 1 + uint64(next(1)[0]%64)
			last := serial
			if op%8 == 2 {
				last += uint64(next(1)[0])
			}
			cur().Serials = append(cur().Serials, krl.SerialRange{First: serial, Last: last})
			serial = last
		case 3: // anywhere, possibly up to the last serial there is
			serial = max(1, binary.BigEndian.Uint64(next(8)))
			last := serial
			if op&0x80 != 0 {
				last = math.MaxUint64
			}
			cur().Serials = append(cur().Serials, krl.SerialRange{First: serial, Last: last})
		case 4: // printable, so ssh-keygen -Q -l shows it unescaped
			id := []byte(fmt.Sprintf("%x", next(int(next(1)[0]%6))))
			cur().KeyIDs = append(cur().KeyIDs, string(id))
		case 5:
			k.Keys = append(k.Keys, p.keys[int(next(1)[0])%len(p.keys)])
		case 6:
			k.SHA1 = append(k.SHA1, sha1.Sum(next(2)))
		case 7:
			k.SHA256 = append(k.SHA256, sha256.Sum256(next(2)))
		}
	}
	for i := range len(p.cas) + 1 {
		if cr := certs[i]; cr != nil {
			k.Certificates = append(k.Certificates, *cr)
		}
	}
	return k
}

// FuzzMarshalBinary checks that whatever MarshalBinary writes, Parse reads
// back as the same content, and that writing it again gives the same
// bytes; for the seed corpus, also that ssh-keygen reads it and lists the
// same serials and key IDs.
func FuzzMarshalBinary(f *testing.F) {
	pool := newKeyPool(f)
	f.Add(uint64(1), "", []byte{})
	f.Add(uint64(2), "serials", []byte{1, 0, 1, 1, 1, 2, 2, 100, 1, 40, 3, 0, 0, 0, 0, 0, 0, 0, 9, 0x83, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0})
	f.Add(uint64(3), "everything", []byte{0, 2, 1, 5, 4, 3, 1, 2, 3, 5, 0, 5, 6, 6, 1, 7, 7, 2, 0, 0, 4, 0, 1, 9})
	rng := rand.New(rand.NewPCG(14, 14))
	for i := range 6 {
		data := make([]byte, 50+rng.IntN(400))
		for j := range data {
			data[j] = byte(rng.Uint32())
		}
		f.Add(rng.Uint64(), fmt.Sprintf("random %d", i), data)
	}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, version uint64, comment string, data []byte) {
		in := pool.build(version, comment, data)
		b, err := in.MarshalBinary()
		if err != nil {
			t.Fatalf("MarshalBinary: %v", err)
		}
		got, err := krl.Parse(b)
		if err != nil {
			t.Fatalf("Parse(MarshalBinary): %v", err)
		}
		checkSameContent(t, in, got)
		if again, err := got.MarshalBinary(); err != nil || !bytes.Equal(again, b) {
			t.Fatalf("MarshalBinary(Parse(b)) != b (err %v)", err)
		}
		if fuzzing() {
			return
		}
		dump := mustRun(t, 0, "-Q", "-l", "-f", mustWrite(t, dir, "fuzz.krl", b))
		for _, cr := range got.Certificates {
			var block strings.Builder
			if cr.CA == nil {
				block.WriteString("\n# Wildcard CA\n")
			} else {
				fmt.Fprintf(&block, "\n# CA key %s %s\n", cr.CA.Type(), ssh.FingerprintSHA256(cr.CA))
			}
			for _, s := range cr.Serials {
				if s.First == s.Last {
					fmt.Fprintf(&block, "serial: %d\n", s.First)
				} else {
					fmt.Fprintf(&block, "serial: %d-%d\n", s.First, s.Last)
				}
			}
			for _, id := range cr.KeyIDs {
				fmt.Fprintf(&block, "id: %s\n", id)
			}
			if !strings.Contains(dump, block.String()) {
				t.Errorf("ssh-keygen -Q -l does not list\n%s\nin\n%s", block.String(), dump)
			}
		}
		if got, want := strings.Count(dump, "\nhash: "), len(got.Keys)+len(got.SHA256); got != want {
			t.Errorf("ssh-keygen -Q -l lists %d hashes, want %d:\n%s", got, want, dump)
		}
	})
}

// checkSameContent checks, without the package's own canonical form, that
// got (from Parse) revokes exactly what in says, in canonical order.
func checkSameContent(t *testing.T, in, got *krl.KRL) {
	t.Helper()
	// The zero Time and 1970-01-01 are both written as 0 and read as zero.
	unix := func(t time.Time) int64 {
		if t.IsZero() {
			return 0
		}
		return t.Unix()
	}
	if got.Version != in.Version || got.Comment != in.Comment || unix(got.Generated) != unix(in.Generated) {
		t.Errorf("header: got %d %q %s, want %d %q %s", got.Version, got.Comment, got.Generated, in.Version, in.Comment, in.Generated)
	}
	type revoked struct {
		serials []krl.SerialRange
		ids     []string
	}
	byCA := func(k *krl.KRL) map[string]*revoked {
		m := map[string]*revoked{}
		for _, cr := range k.Certificates {
			var ca string
			if cr.CA != nil {
				ca = string(cr.CA.Marshal())
			}
			if m[ca] == nil {
				m[ca] = &revoked{}
			}
			m[ca].serials = append(m[ca].serials, cr.Serials...)
			m[ca].ids = append(m[ca].ids, cr.KeyIDs...)
		}
		return m
	}
	want, have := byCA(in), byCA(got)
	if len(want) != len(have) {
		t.Errorf("%d CAs, want %d", len(have), len(want))
	}
	var cas []string
	for _, cr := range got.Certificates {
		var ca string
		if cr.CA != nil {
			ca = string(cr.CA.Marshal())
		}
		cas = append(cas, ca)
	}
	if !slices.IsSorted(cas) {
		t.Error("CA sections are not in order")
	}
	for ca, w := range want {
		h := have[ca]
		if h == nil {
			t.Errorf("CA %x missing", ca)
			continue
		}
		if got, want := h.ids, slices.Compact(slices.Sorted(slices.Values(w.ids))); !slices.Equal(got, want) {
			t.Errorf("key IDs %q, want %q", got, want)
		}
		in := func(rs []krl.SerialRange, s uint64) bool {
			return slices.ContainsFunc(rs, func(r krl.SerialRange) bool { return r.First <= s && s <= r.Last })
		}
		for i, r := range h.serials {
			if i > 0 && r.First <= h.serials[i-1].Last+1 {
				t.Errorf("ranges %v and %v are out of order, overlap or touch", h.serials[i-1], r)
			}
			if !in(w.serials, r.First) || !in(w.serials, r.Last) ||
				(r.First > 1 && in(w.serials, r.First-1)) || (r.Last < math.MaxUint64 && in(w.serials, r.Last+1)) {
				t.Errorf("range %v is not one of the revoked runs %v", r, w.serials)
			}
		}
		for _, r := range w.serials {
			if !in(h.serials, r.First) || !in(h.serials, r.Last) {
				t.Errorf("revoked range %v is lost", r)
			}
		}
	}
	blobs := func(keys []ssh.PublicKey) [][]byte {
		var out [][]byte
		for _, k := range keys {
			out = append(out, k.Marshal())
		}
		return out
	}
	wantKeys := blobs(in.Keys)
	slices.SortFunc(wantKeys, bytes.Compare)
	wantKeys = slices.CompactFunc(wantKeys, bytes.Equal)
	if !slices.EqualFunc(blobs(got.Keys), wantKeys, bytes.Equal) {
		t.Errorf("keys differ: %d, want %d", len(got.Keys), len(wantKeys))
	}
	sortHashes := func(hs [][]byte) [][]byte {
		slices.SortFunc(hs, bytes.Compare)
		return slices.CompactFunc(hs, bytes.Equal)
	}
	var w1, g1, w256, g256 [][]byte
	for _, h := range in.SHA1 {
		w1 = append(w1, h[:])
	}
	for _, h := range got.SHA1 {
		g1 = append(g1, h[:])
	}
	for _, h := range in.SHA256 {
		w256 = append(w256, h[:])
	}
	for _, h := range got.SHA256 {
		g256 = append(g256, h[:])
	}
	if !slices.EqualFunc(g1, sortHashes(w1), bytes.Equal) || !slices.EqualFunc(g256, sortHashes(w256), bytes.Equal) {
		t.Error("hashes differ")
	}
}

// FuzzParse checks that Parse never panics, and that what it accepts
// survives being written and read again unchanged.
func FuzzParse(f *testing.F) {
	pool := newKeyPool(f)
	for _, seed := range [][]byte{{}, {1, 2, 5, 0, 4}, {0, 1, 4, 3, 1, 2, 1, 2, 1, 1, 5, 1, 6, 0, 7, 0}} {
		b, err := pool.build(1, "seed", seed).MarshalBinary()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add(cat(header(1, ""), anyCA(sect(0x22, u64(1), str([]byte{0x7f, 0, 1})))))
	f.Fuzz(func(t *testing.T, b []byte) {
		k, err := krl.Parse(b)
		if err != nil {
			return
		}
		m, err := k.MarshalBinary()
		if err != nil {
			t.Fatalf("MarshalBinary(Parse(b)): %v", err)
		}
		k2, err := krl.Parse(m)
		if err != nil {
			t.Fatalf("Parse(MarshalBinary(Parse(b))): %v", err)
		}
		if m2, err := k2.MarshalBinary(); err != nil || !bytes.Equal(m, m2) {
			t.Fatalf("writing what was read changed it (err %v)", err)
		}
	})
}
