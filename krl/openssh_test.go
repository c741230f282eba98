package krl_test

import (
	"bytes"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/infrakeys/infrakeys/krl"
)

// The tests check this package against OpenSSH's own reader and writer,
// ssh-keygen (Debian's openssh-client; .ci/run installs it). Outside CI a
// missing ssh-keygen skips them; in CI (CI set) it fails them.

// mustSSHKeygen returns the path of ssh-keygen.
func mustSSHKeygen(tb testing.TB) string {
	tb.Helper()
	p, err := exec.LookPath("ssh-keygen")
	if err != nil {
		if os.Getenv("CI") != "" {
			tb.Fatal("ssh-keygen is not installed; .ci/run installs it")
		}
		tb.Skip("ssh-keygen is not installed")
	}
	return p
}

// mustRun runs ssh-keygen with args and returns its output; it fails the
// test unless the exit status is want.
func mustRun(tb testing.TB, want int, args ...string) string {
	tb.Helper()
	out, err := exec.Command(mustSSHKeygen(tb), args...).CombinedOutput()
	code := 0
	if exit := (*exec.ExitError)(nil); errors.As(err, &exit) {
		code = exit.ExitCode()
	} else if err != nil {
		tb.Fatalf("ssh-keygen %s: %v", strings.Join(args, " "), err)
	}
	if code != want {
		tb.Fatalf("ssh-keygen %s: exit status %d, want %d\n%s", strings.Join(args, " "), code, want, out)
	}
	return string(out)
}

// keyTypes are the key types OpenSSH accepts, by a short name; sk-* keys
// are public halves only (a security key holds the private half), enough
// to revoke them.
var keyTypes = []string{"ed25519", "ecdsa-p256", "ecdsa-p384", "ecdsa-p521", "rsa", "sk-ed25519", "sk-ecdsa"}

// mustKey makes a new public key of the named type, and a signer for it
// where the type has one (not sk-*).
func mustKey(tb testing.TB, typ string) (ssh.PublicKey, ssh.Signer) {
	tb.Helper()
	var priv any
	switch typ {
	case "ed25519":
		_, priv, _ = ed25519.GenerateKey(rand.Reader)
	case "ecdsa-p256", "ecdsa-p384", "ecdsa-p521":
		curve := map[string]elliptic.Curve{"ecdsa-p256": elliptic.P256(), "ecdsa-p384": elliptic.P384(), "ecdsa-p521": elliptic.P521()}[typ]
		priv, _ = ecdsa.GenerateKey(curve, rand.Reader)
	case "rsa":
		priv, _ = rsa.GenerateKey(rand.Reader, 2048)
	case "sk-ed25519":
		pub, _, _ := ed25519.GenerateKey(rand.Reader)
		return mustParseKey(tb, ssh.Marshal(struct{ Type, Key, App string }{
			ssh.KeyAlgoSKED25519, string(pub), "ssh:"})), nil
	case "sk-ecdsa":
		k, _ := ecdh.P256().GenerateKey(rand.Reader)
		return mustParseKey(tb, ssh.Marshal(struct{ Type, Curve, Point, App string }{
			ssh.KeyAlgoSKECDSA256, "nistp256", string(k.PublicKey().Bytes()), "ssh:"})), nil
	default:
		tb.Fatalf("unknown key type %q", typ)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		tb.Fatal(err)
	}
	return signer.PublicKey(), signer
}

func mustParseKey(tb testing.TB, blob []byte) ssh.PublicKey {
	tb.Helper()
	key, err := ssh.ParsePublicKey(blob)
	if err != nil {
		tb.Fatal(err)
	}
	return key
}

// mustCert returns a user certificate for key signed by ca.
func mustCert(tb testing.TB, ca ssh.Signer, key ssh.PublicKey, serial uint64, keyID string) *ssh.Certificate {
	tb.Helper()
	cert := &ssh.Certificate{
		Key:             key,
		Serial:          serial,
		CertType:        ssh.UserCert,
		KeyId:           keyID,
		ValidPrincipals: []string{"user"},
		ValidBefore:     ssh.CertTimeInfinity,
	}
	if err := cert.SignCert(rand.Reader, ca); err != nil {
		tb.Fatal(err)
	}
	return cert
}

// mustWrite writes data to name in dir and returns the path.
func mustWrite(tb testing.TB, dir, name string, data []byte) string {
	tb.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		tb.Fatal(err)
	}
	return p
}

// mustWriteKey writes key (or certificate) as an OpenSSH .pub file.
func mustWriteKey(tb testing.TB, dir, name string, key ssh.PublicKey) string {
	tb.Helper()
	return mustWrite(tb, dir, name+".pub", ssh.MarshalAuthorizedKey(key))
}

// mustMarshal encodes k and writes it to a file in dir.
func mustMarshal(tb testing.TB, dir string, k *krl.KRL) (string, []byte) {
	tb.Helper()
	b, err := k.MarshalBinary()
	if err != nil {
		tb.Fatal(err)
	}
	return mustWrite(tb, dir, "revoked.krl", b), b
}

// checkRevoked asks ssh-keygen -Q whether the KRL at krlPath revokes the
// key or certificate in the .pub file pub: exit 1 and REVOKED if so, exit
// 0 and ok if not.
func checkRevoked(t *testing.T, krlPath, pub string, revoked bool) {
	t.Helper()
	want, verdict := 0, ": ok\n"
	if revoked {
		want, verdict = 1, ": REVOKED\n"
	}
	// ssh-keygen prints "<file> (<comment>): <verdict>"; the comment of a
	// .pub file without one is its path.
	if out := mustRun(t, want, "-Q", "-f", krlPath, pub); !strings.HasPrefix(out, pub+" (") || !strings.HasSuffix(out, verdict) || strings.Count(out, "\n") != 1 {
		t.Errorf("ssh-keygen -Q %s: %q, want %q", filepath.Base(pub), out, "..."+verdict)
	}
}

// subsection is a certificate subsection as written: its type and, for a
// bitmap, its first serial.
type subsection struct {
	Type   byte
	Offset uint64
}

// subsections walks the raw bytes of a KRL and returns, per certificates
// section in order, the subsections it holds: how the serials were
// encoded, which Parse does not say.
func subsections(tb testing.TB, b []byte) [][]subsection {
	tb.Helper()
	var out [][]subsection
	r := bytes.NewReader(b[8+4+8+8+8:])
	str := func() []byte {
		var n uint32
		if err := binary.Read(r, binary.BigEndian, &n); err != nil {
			tb.Fatal(err)
		}
		v := make([]byte, n)
		if _, err := r.Read(v); err != nil && n > 0 {
			tb.Fatal(err)
		}
		return v
	}
	str() // reserved
	str() // comment
	for r.Len() > 0 {
		typ, _ := r.ReadByte()
		body := str()
		if typ != 1 {
			continue
		}
		sr := bytes.NewReader(body)
		outer := r
		r = sr
		str() // CA
		str() // reserved
		var subs []subsection
		for r.Len() > 0 {
			st, _ := r.ReadByte()
			data := str()
			s := subsection{Type: st}
			if st == 0x22 {
				s.Offset = binary.BigEndian.Uint64(data)
			}
			subs = append(subs, s)
		}
		out = append(out, subs)
		r = outer
	}
	return out
}

// describe renders k's content one fact a line, for comparisons with a
// readable diff.
func describe(k *krl.KRL) string {
	var b strings.Builder
	fmt.Fprintf(&b, "version %d\ngenerated %d\ncomment %q\n", k.Version, k.Generated.Unix(), k.Comment)
	for _, cr := range k.Certificates {
		if cr.CA == nil {
			b.WriteString("CA any\n")
		} else {
			fmt.Fprintf(&b, "CA %s\n", ssh.FingerprintSHA256(cr.CA))
		}
		for _, s := range cr.Serials {
			fmt.Fprintf(&b, "  serial %d-%d\n", s.First, s.Last)
		}
		for _, id := range cr.KeyIDs {
			fmt.Fprintf(&b, "  id %q\n", id)
		}
	}
	for _, key := range k.Keys {
		fmt.Fprintf(&b, "key %s %s\n", key.Type(), ssh.FingerprintSHA256(key))
	}
	for _, h := range k.SHA1 {
		fmt.Fprintf(&b, "sha1 %x\n", h)
	}
	for _, h := range k.SHA256 {
		fmt.Fprintf(&b, "sha256 %x\n", h)
	}
	return b.String()
}

// byWireForm orders CA keys as MarshalBinary orders their sections.
func byWireForm(keys []ssh.PublicKey) []ssh.PublicKey {
	keys = slices.Clone(keys)
	slices.SortFunc(keys, func(a, b ssh.PublicKey) int { return bytes.Compare(a.Marshal(), b.Marshal()) })
	return keys
}
