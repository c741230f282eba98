package krl_test

import (
	"bytes"
	"encoding/binary"
	"math"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/infrakeys/infrakeys/krl"
)

// Wire encodings for hand-made KRLs.
func u32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }
func u64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }
func str(parts ...[]byte) []byte {
	b := bytes.Join(parts, nil)
	return append(u32(uint32(len(b))), b...)
}
func sect(typ byte, parts ...[]byte) []byte { return append([]byte{typ}, str(parts...)...) }
func cat(parts ...[]byte) []byte            { return bytes.Join(parts, nil) }

// header is a KRL header with format version v and the given comment.
func header(v uint32, comment string) []byte {
	return cat([]byte("SSHKRL\n\x00"), u32(v), u64(3), u64(1764700000), u64(0), str(), str([]byte(comment)))
}

// anyCA wraps certificate subsections in a certificates section for any CA.
func anyCA(subs ...[]byte) []byte { return sect(1, str(), str(), cat(subs...)) }

// TestParse feeds Parse and ssh-keygen -Q -l the same hand-made KRLs:
// what OpenSSH refuses, Parse refuses; what it accepts, Parse accepts and
// returns in canonical form.
func TestParse(t *testing.T) {
	mustSSHKeygen(t)
	dir := t.TempDir()
	key, _ := mustKey(t, "ed25519")
	h := func(b byte, n int) []byte { return bytes.Repeat([]byte{b}, n) }
	wide := cat([]byte{0}, h(0xff, maxBitmapBits/8)) // exactly 16,384 bits

	for _, tc := range []struct {
		name string
		krl  []byte
		err  string // "" when it parses
		want string // describe(Parse) when it parses
		// skipOpenSSH says why ssh-keygen 9.2 is not the oracle.
		skipOpenSSH string
	}{
		{name: "OK/Empty", krl: header(1, "c"), want: "version 3\ngenerated 1764700000\ncomment \"c\"\n"},
		{name: "OK/Unsorted", krl: cat(header(1, ""),
			anyCA(sect(0x20, u64(9), u64(3), u64(4)), sect(0x21, u64(3), u64(7)), sect(0x23, str([]byte("b")), str([]byte("a")), str([]byte("b")))),
			sect(5, str(h(2, 32)), str(h(1, 32)), str(h(2, 32))), sect(2, str(key.Marshal())), sect(2, str(key.Marshal()))),
			want: "version 3\ngenerated 1764700000\ncomment \"\"\nCA any\n  serial 3-7\n  serial 9-9\n  id \"a\"\n  id \"b\"\n" +
				"key ssh-ed25519 " + ssh.FingerprintSHA256(key) + "\n" +
				"sha256 " + strings.Repeat("01", 32) + "\nsha256 " + strings.Repeat("02", 32) + "\n"},
		{name: "OK/WidestBitmap", krl: cat(header(1, ""), anyCA(sect(0x22, u64(1), str(wide)))),
			want: "version 3\ngenerated 1764700000\ncomment \"\"\nCA any\n  serial 1-16384\n"},
		{name: "OK/BitmapWithLeadingZeros", krl: cat(header(1, ""), anyCA(sect(0x22, u64(10), str([]byte{0, 0, 5})))),
			want: "version 3\ngenerated 1764700000\ncomment \"\"\nCA any\n  serial 10-10\n  serial 12-12\n"},
		{name: "OK/NonCriticalExtension", krl: cat(header(1, ""), sect(255, str([]byte("x@example.com")), []byte{0}, str())),
			want:        "version 3\ngenerated 1764700000\ncomment \"\"\n",
			skipOpenSSH: "OpenSSH reads extension sections since 9.4"},

		{name: "OK/TrailingNUL", krl: cat(header(1, "c\x00"), anyCA(sect(0x23, str([]byte("a\x00"))))),
			want: "version 3\ngenerated 1764700000\ncomment \"c\"\nCA any\n  id \"a\"\n"},

		{name: "ErrMagic", krl: []byte("SSHKRL\n\x01"), err: "bad magic"},
		{name: "ErrFormatVersion", krl: header(2, ""), err: "format version 2"},
		{name: "ErrTruncated", krl: header(1, "")[:40], err: "truncated"},
		{name: "ErrCommentNUL", krl: header(1, "a\x00b"), err: "NUL"},
		{name: "ErrSectionTruncated", krl: cat(header(1, ""), []byte{2}, u32(10), str()), err: "truncated"},
		{name: "ErrSerialZero", krl: cat(header(1, ""), anyCA(sect(0x20, u64(0)))), err: "serials start at 1"},
		{name: "ErrRangeBackwards", krl: cat(header(1, ""), anyCA(sect(0x21, u64(5), u64(4)))), err: "backwards"},
		{name: "ErrRangeTrailing", krl: cat(header(1, ""), anyCA(sect(0x21, u64(5), u64(6), u64(7)))), err: "trailing data"},
		{name: "ErrListTruncated", krl: cat(header(1, ""), anyCA(sect(0x20, u64(5), u32(6)))), err: "truncated"},
		{name: "ErrBitmapSerialZero", krl: cat(header(1, ""), anyCA(sect(0x22, u64(0), str([]byte{1})))), err: "serials start at 1"},
		{name: "ErrBitmapNegative", krl: cat(header(1, ""), anyCA(sect(0x22, u64(1), str([]byte{0x80})))), err: "negative"},
		{name: "ErrBitmapTooWide", krl: cat(header(1, ""), anyCA(sect(0x22, u64(1), str(append([]byte{1}, wide[1:]...))))), err: "wider than"},
		{name: "ErrBitmapWraps", krl: cat(header(1, ""), anyCA(sect(0x22, u64(math.MaxUint64), str([]byte{3})))), err: "past serial"},
		{name: "ErrKeyIDNUL", krl: cat(header(1, ""), anyCA(sect(0x23, str([]byte("a\x00b"))))), err: "NUL"},
		{name: "ErrCertSubsection", krl: cat(header(1, ""), anyCA(sect(0x30))), err: "unknown certificate subsection"},
		{name: "ErrCAKey", krl: cat(header(1, ""), sect(1, str([]byte("junk")), str())), err: "CA key"},
		{name: "ErrSection", krl: cat(header(1, ""), sect(9)), err: "unknown section type 9"},
		{name: "ErrHashLength", krl: cat(header(1, ""), sect(5, str(h(1, 31)))), err: "31 bytes"},
		{name: "ErrSHA1Length", krl: cat(header(1, ""), sect(3, str(h(1, 32)))), err: "32 bytes"},
		{name: "ErrKeyTrailing", krl: cat(header(1, ""), sect(2, str(key.Marshal()), []byte{0})), err: "truncated"},
		{name: "ErrSignature", krl: cat(header(1, ""), sect(4, str(key.Marshal())), str(h(0, 64))), err: "signed KRLs"},
		{name: "ErrCriticalExtension", krl: cat(header(1, ""), sect(255, str([]byte("x@example.com")), []byte{1}, str())), err: "critical extension"},
		{name: "ErrCriticalCertExtension", krl: cat(header(1, ""), anyCA(sect(0x39, str([]byte("x@example.com")), []byte{1}, str()))),
			err: "critical extension", skipOpenSSH: "OpenSSH 9.2 knows no certificate extensions; 9.4 and later refuse critical ones"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := krl.Parse(tc.krl)
			switch {
			case tc.err == "" && err != nil:
				t.Fatalf("Parse: %v", err)
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
				t.Fatalf("Parse: error %v, want one mentioning %q", err, tc.err)
			case tc.err == "":
				if d := describe(got); d != tc.want {
					t.Errorf("Parse:\n%s\nwant:\n%s", d, tc.want)
				}
				again, err := got.MarshalBinary()
				if err != nil {
					t.Fatal(err)
				}
				if again2, err := krl.Parse(again); err != nil || describe(again2) != tc.want {
					t.Errorf("Parse(MarshalBinary(Parse)) = %v, %v", again2, err)
				}
			}
			if tc.skipOpenSSH != "" {
				t.Log("not asking ssh-keygen:", tc.skipOpenSSH)
				return
			}
			status := 0
			if tc.err != "" {
				status = 255 // ssh-keygen's fatal()
			}
			mustRun(t, status, "-Q", "-l", "-f", mustWrite(t, dir, tc.name[strings.Index(tc.name, "/")+1:]+".krl", tc.krl))
		})
	}
}

// TestMarshalBinaryErrors checks that content OpenSSH could not read is
// refused, all problems at once.
func TestMarshalBinaryErrors(t *testing.T) {
	_, ca := mustKey(t, "ed25519")
	key, _ := mustKey(t, "ed25519")
	cert := mustCert(t, ca, key, 1, "")
	k := &krl.KRL{
		Generated: time.Unix(-1, 0),
		Comment:   "a\x00",
		Certificates: []krl.CertificateRevocations{
			{Serials: []krl.SerialRange{{0, 0}, {5, 4}}, KeyIDs: []string{"ok", "\x00"}},
			{CA: cert, Serials: []krl.SerialRange{{1, 1}}},
		},
		Keys: []ssh.PublicKey{nil},
	}
	_, err := k.MarshalBinary()
	if err == nil {
		t.Fatal("MarshalBinary: no error")
	}
	for _, want := range []string{
		"before 1970",
		"comment contains a NUL",
		"serial range 0-0",
		"serial range 5-4",
		`key ID "\x00"`,
		"certificates[1]: the CA key is a certificate",
		"keys[0] is nil",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}

	// Each alone is refused too, and what is left is written.
	k = &krl.KRL{Certificates: []krl.CertificateRevocations{{Serials: []krl.SerialRange{{0, 0}}}}}
	if _, err := k.MarshalBinary(); err == nil {
		t.Error("serial 0: no error")
	}
	k = &krl.KRL{Certificates: []krl.CertificateRevocations{{KeyIDs: []string{""}}}}
	if _, err := k.MarshalBinary(); err != nil {
		t.Errorf("empty key ID: %v", err)
	}
}
