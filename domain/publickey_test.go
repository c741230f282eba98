package domain_test

import (
	"crypto"
	"crypto/dsa"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/infrakeys/infrakeys/domain"
	"golang.org/x/crypto/ssh"
)

// MustSSHPublicKey converts a crypto public key to an ssh.PublicKey.
func MustSSHPublicKey(tb testing.TB, pub crypto.PublicKey) ssh.PublicKey {
	tb.Helper()
	k, err := ssh.NewPublicKey(pub)
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

// KeyLine returns the authorized_keys line for k, with comment if not empty.
func KeyLine(k ssh.PublicKey, comment string) string {
	line := strings.TrimSuffix(string(ssh.MarshalAuthorizedKey(k)), "\n")
	if comment != "" {
		line += " " + comment
	}
	return line
}

// BlobLine returns the line "typ base64(blob) comment" for a hand-built blob.
func BlobLine(typ string, blob []byte, comment string) string {
	return strings.TrimSpace(typ + " " + base64.StdEncoding.EncodeToString(blob) + " " + comment)
}

// MustEd25519Key returns a fresh ed25519 key pair.
func MustEd25519Key(tb testing.TB) (ed25519.PublicKey, ed25519.PrivateKey) {
	tb.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	return pub, priv
}

// MustECDSAKey returns a fresh ECDSA key on curve c.
func MustECDSAKey(tb testing.TB, c elliptic.Curve) *ecdsa.PrivateKey {
	tb.Helper()
	k, err := ecdsa.GenerateKey(c, rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

// MustRSAKey returns a fresh RSA key of the given size.
func MustRSAKey(tb testing.TB, bits int) *rsa.PrivateKey {
	tb.Helper()
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

// MustDSAKey returns a fresh 1024-bit DSA public key, the only size SSH has.
func MustDSAKey(tb testing.TB) *dsa.PublicKey {
	tb.Helper()
	var k dsa.PrivateKey
	if err := dsa.GenerateParameters(&k.Parameters, rand.Reader, dsa.L1024N160); err != nil {
		tb.Fatal(err)
	}
	if err := dsa.GenerateKey(&k, rand.Reader); err != nil {
		tb.Fatal(err)
	}
	return &k.PublicKey
}

// SKEd25519Blob builds the wire form of a FIDO sk-ssh-ed25519 public key.
func SKEd25519Blob(pub ed25519.PublicKey) []byte {
	return ssh.Marshal(struct {
		Type        string
		Key         []byte
		Application string
	}{ssh.KeyAlgoSKED25519, pub, "ssh:"})
}

// MustSKECDSABlob builds the wire form of a FIDO sk-ecdsa-sha2-nistp256 public key.
func MustSKECDSABlob(tb testing.TB, k *ecdsa.PrivateKey) []byte {
	tb.Helper()
	pub, err := k.PublicKey.ECDH()
	if err != nil {
		tb.Fatal(err)
	}
	return ssh.Marshal(struct {
		Type        string
		Curve       string
		Point       []byte
		Application string
	}{ssh.KeyAlgoSKECDSA256, "nistp256", pub.Bytes(), "ssh:"})
}

// MustCertificateLine returns an OpenSSH user certificate for pub, signed by
// a fresh CA.
func MustCertificateLine(tb testing.TB, pub ssh.PublicKey) string {
	tb.Helper()
	_, caKey := MustEd25519Key(tb)
	ca, err := ssh.NewSignerFromKey(caKey)
	if err != nil {
		tb.Fatal(err)
	}
	cert := &ssh.Certificate{
		Key:             pub,
		CertType:        ssh.UserCert,
		KeyId:           "alice",
		ValidPrincipals: []string{"alice"},
		ValidBefore:     ssh.CertTimeInfinity,
	}
	if err := cert.SignCert(rand.Reader, ca); err != nil {
		tb.Fatal(err)
	}
	return KeyLine(cert, "alice@example")
}

// PEM encodes a DER value as a PEM block of the given type.
func PEM(typ string, der []byte) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}))
}

// CheckRefused asserts that err refuses input as EINVALID, for a reason the
// message names, without repeating any of the input.
func CheckRefused(tb testing.TB, input string, err error, reason string) {
	tb.Helper()
	if err == nil {
		tb.Fatal("ParsePublicKey succeeded, want an error")
	}
	if got, want := domain.ErrorCode(err), domain.EINVALID; got != want {
		tb.Errorf("code = %q, want %q (%v)", got, want, err)
	}
	msg := domain.ErrorMessage(err)
	if !strings.HasPrefix(msg, "key is invalid: ") {
		tb.Errorf("message %q does not start with %q", msg, "key is invalid: ")
	}
	if !strings.Contains(msg, reason) {
		tb.Errorf("message %q does not contain %q", msg, reason)
	}
	// Key material, comments and PEM bodies are long; type names we accept
	// may be listed in advice, so they do not count as echoes.
	for _, f := range strings.Fields(input) {
		if len(f) >= 16 && !strings.HasSuffix(f, "@openssh.com") && strings.Contains(msg, f) {
			tb.Errorf("message %q repeats input %q", msg, f)
		}
	}
}

func TestParsePublicKey(t *testing.T) {
	edPub, edPriv := MustEd25519Key(t)
	ed := MustSSHPublicKey(t, edPub)
	p256 := MustECDSAKey(t, elliptic.P256())
	p384 := MustECDSAKey(t, elliptic.P384())
	p521 := MustECDSAKey(t, elliptic.P521())
	rsa2048 := MustRSAKey(t, 2048)
	rsa1024 := MustRSAKey(t, 1024)
	rsa2048Pub := MustSSHPublicKey(t, &rsa2048.PublicKey)
	edLine := KeyLine(ed, "alice@example")
	rsaLine := KeyLine(rsa2048Pub, "bob@example")
	edPrivPEM, err := ssh.MarshalPrivateKey(edPriv, "alice@example")
	if err != nil {
		t.Fatal(err)
	}
	edData := strings.Fields(edLine)[1]

	t.Run("OK", func(t *testing.T) {
		tests := []struct {
			name     string
			input    string
			key      ssh.PublicKey // the key ParsePublicKey must find
			wantType string
			wantBits int
			comment  string
		}{
			{"OK_Ed25519", edLine, ed, "ssh-ed25519", 256, "alice@example"},
			{"OK_ECDSAP256", KeyLine(MustSSHPublicKey(t, &p256.PublicKey), "p256"), MustSSHPublicKey(t, &p256.PublicKey), "ecdsa-sha2-nistp256", 256, "p256"},
			{"OK_ECDSAP384", KeyLine(MustSSHPublicKey(t, &p384.PublicKey), "p384"), MustSSHPublicKey(t, &p384.PublicKey), "ecdsa-sha2-nistp384", 384, "p384"},
			{"OK_ECDSAP521", KeyLine(MustSSHPublicKey(t, &p521.PublicKey), "p521"), MustSSHPublicKey(t, &p521.PublicKey), "ecdsa-sha2-nistp521", 521, "p521"},
			{"OK_RSA2048", rsaLine, rsa2048Pub, "ssh-rsa", 2048, "bob@example"},
			{"OK_SKEd25519", BlobLine(ssh.KeyAlgoSKED25519, SKEd25519Blob(edPub), "yubikey"), nil, "sk-ssh-ed25519@openssh.com", 256, "yubikey"},
			{"OK_SKECDSA", BlobLine(ssh.KeyAlgoSKECDSA256, MustSKECDSABlob(t, p256), "yubikey"), nil, "sk-ecdsa-sha2-nistp256@openssh.com", 256, "yubikey"},
			{"OK_NoComment", KeyLine(ed, ""), ed, "ssh-ed25519", 256, ""},
			{"OK_CommentWithSpaces", KeyLine(ed, "Alice's  laptop (work)"), ed, "ssh-ed25519", 256, "Alice's  laptop (work)"},
			{"OK_SurroundingWhitespace", "\r\n \t" + KeyLine(ed, "alice@example") + " \r\n\n", ed, "ssh-ed25519", 256, "alice@example"},
			{"OK_TabSeparated", "ssh-ed25519\t" + edData + "\talice@example", ed, "ssh-ed25519", 256, "alice@example"},
			{"OK_UnpaddedBase64", "ssh-ed25519 " + strings.TrimRight(edData, "=") + " alice@example", ed, "ssh-ed25519", 256, "alice@example"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				k, err := domain.ParsePublicKey(tt.input)
				if err != nil {
					t.Fatalf("ParsePublicKey: %v", err)
				}
				if got, want := k.Type, tt.wantType; got != want {
					t.Errorf("Type = %q, want %q", got, want)
				}
				if got, want := k.Key.Type(), tt.wantType; got != want {
					t.Errorf("Key.Type() = %q, want %q", got, want)
				}
				if got, want := k.Bits, tt.wantBits; got != want {
					t.Errorf("Bits = %d, want %d", got, want)
				}
				if got, want := k.Comment, tt.comment; got != want {
					t.Errorf("Comment = %q, want %q", got, want)
				}
				want := tt.key
				if want == nil {
					want = k.Key
				}
				if got, want := string(k.Key.Marshal()), string(want.Marshal()); got != want {
					t.Errorf("Key differs from the submitted key")
				}
				if got, want := k.Authorized, KeyLine(want, tt.comment); got != want {
					t.Errorf("Authorized = %q, want %q", got, want)
				}
				if got, want := k.Fingerprint, ssh.FingerprintLegacyMD5(want); got != want {
					t.Errorf("Fingerprint = %q, want %q", got, want)
				}
				if got, want := k.FingerprintSHA256, ssh.FingerprintSHA256(want); got != want {
					t.Errorf("FingerprintSHA256 = %q, want %q", got, want)
				}
				// The canonical form must parse back to itself.
				again, err := domain.ParsePublicKey(k.Authorized)
				if err != nil {
					t.Fatalf("ParsePublicKey(Authorized): %v", err)
				}
				if got, want := again.Authorized, k.Authorized; got != want {
					t.Errorf("Authorized after reparse = %q, want %q", got, want)
				}
			})
		}
	})

	t.Run("Err", func(t *testing.T) {
		edBlob := ed.Marshal()
		tests := []struct {
			name   string
			input  string
			reason string
		}{
			{"ErrEmpty", " \r\n\t ", "empty"},
			{"ErrGarbage", "hello world, this is not a key", "not an OpenSSH public key"},
			{"ErrTypeOnly", "ssh-ed25519", "missing"},
			{"ErrBadBase64", "ssh-ed25519 !!!!notbase64!!!! alice@example", "base64"},
			{"ErrTruncatedType", "ssh-ed25519 " + edData[:8] + " alice@example", "truncated"},
			{"ErrTruncatedKey", "ssh-ed25519 " + edData[:40] + " alice@example", "malformed"},
			{"ErrTypeMismatch", "ssh-rsa " + edData + " alice@example", "does not match"},
			{"ErrUnknownTypeMismatch", "ssh-foo " + edData, "does not match"},
			{"ErrUnknownType", BlobLine("ssh-foo@example.com", ssh.Marshal(struct{ Type, Data string }{"ssh-foo@example.com", "data"}), ""), "not supported"},
			{"ErrMLDSA", BlobLine(ssh.KeyAlgoMLDSA44, ssh.Marshal(struct{ Type, Data string }{ssh.KeyAlgoMLDSA44, "data"}), ""), "ssh-mldsa-44 keys are not accepted"},
			{"ErrDSA", KeyLine(MustSSHPublicKey(t, MustDSAKey(t)), "old@example"), "DSA"},
			{"ErrShortRSA", KeyLine(MustSSHPublicKey(t, &rsa1024.PublicKey), "old@example"), "RSA keys must have at least 2048 bits, this one has 1024"},
			{"ErrCertificate", MustCertificateLine(t, ed), "certificate"},
			{"ErrRSACertificate", MustCertificateLine(t, rsa2048Pub), "certificate"},
			{"ErrMalformedEd25519", BlobLine(ssh.KeyAlgoED25519, ssh.Marshal(struct {
				Type string
				Key  []byte
			}{ssh.KeyAlgoED25519, edPub[:31]}), ""), "malformed"},
			{"ErrTrailingJunk", BlobLine(ssh.KeyAlgoED25519, append(edBlob[:len(edBlob):len(edBlob)], 0, 0, 0, 0), ""), "malformed"},
			{"ErrTwoKeys", edLine + "\n" + rsaLine + "\n", "2 keys"},
			{"ErrTwoKeysCRLF", edLine + "\r\n\r\n" + rsaLine, "2 keys"},
			{"ErrTwoKeysOneLine", edLine + " " + rsaLine, "2 keys"},
			{"ErrTwoKeysNoComment", KeyLine(ed, "") + " " + KeyLine(rsa2048Pub, ""), "2 keys"},
			{"ErrWrappedKey", edLine[:50] + "\n" + edLine[50:], "single line"},
			{"ErrCommentLine", "# laptop\n" + edLine, "single line"},
			{"ErrOptions", "no-pty " + edLine, "options"},
			{"ErrOptionsQuoted", `command="echo hello world",from="10.0.0.1" ` + rsaLine, "options"},
			{"ErrPrivateKey", string(pem.EncodeToMemory(edPrivPEM)), "private key"},
			{"ErrPrivateKeyPKCS1", PEM("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rsa2048)), "private key"},
			{"ErrPrivateKeyPKCS8", PEM("PRIVATE KEY", MustPKCS8(t, p256)), "only the public half"},
			{"ErrPrivateKeyNoHeader", strings.Join(strings.Split(string(pem.EncodeToMemory(edPrivPEM)), "\n")[1:3], "\n"), "private key"},
			{"ErrPrivateKeyAfterPublic", edLine + "\n" + string(pem.EncodeToMemory(edPrivPEM)), "private key"},
			{"ErrPEMPublicKey", PEM("PUBLIC KEY", MustPKIX(t, edPub)), "PEM public key"},
			{"ErrRFC4716", "---- BEGIN SSH2 PUBLIC KEY ----\nComment: \"alice\"\n" + edData + "\n---- END SSH2 PUBLIC KEY ----\n", "RFC 4716"},
			{"ErrControlInComment", KeyLine(ed, "alice\x00\x1b[31m"), "printable"},
			{"ErrBadUTF8InComment", KeyLine(ed, "alice\xff"), "UTF-8"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				k, err := domain.ParsePublicKey(tt.input)
				if k != nil {
					t.Errorf("ParsePublicKey returned a key for a refused input")
				}
				CheckRefused(t, tt.input, err, tt.reason)
			})
		}
	})
}

// MustPKCS8 returns the PKCS#8 DER form of a private key.
func MustPKCS8(tb testing.TB, k crypto.PrivateKey) []byte {
	tb.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		tb.Fatal(err)
	}
	return der
}

// MustPKIX returns the PKIX DER form of a public key.
func MustPKIX(tb testing.TB, k crypto.PublicKey) []byte {
	tb.Helper()
	der, err := x509.MarshalPKIXPublicKey(k)
	if err != nil {
		tb.Fatal(err)
	}
	return der
}

// MustRunSSHKeygen runs ssh-keygen with args, skipping the test when it is
// not installed, and returns its output.
func MustRunSSHKeygen(tb testing.TB, args ...string) string {
	tb.Helper()
	path, err := exec.LookPath("ssh-keygen")
	if err != nil {
		tb.Skip("ssh-keygen not installed")
	}
	out, err := exec.Command(path, args...).CombinedOutput()
	if err != nil {
		tb.Fatalf("ssh-keygen %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// MustReadFile returns the contents of name.
func MustReadFile(tb testing.TB, name string) string {
	tb.Helper()
	data, err := os.ReadFile(name)
	if err != nil {
		tb.Fatal(err)
	}
	return string(data)
}

// TestParsePublicKey_SSHKeygen proves that keys written by OpenSSH are
// accepted as they are, with the bits and fingerprints ssh-keygen reports,
// and that OpenSSH's other outputs are refused.
func TestParsePublicKey_SSHKeygen(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		wantType string
	}{
		{"OK_Ed25519", []string{"-t", "ed25519"}, "ssh-ed25519"},
		{"OK_ECDSAP256", []string{"-t", "ecdsa", "-b", "256"}, "ecdsa-sha2-nistp256"},
		{"OK_ECDSAP384", []string{"-t", "ecdsa", "-b", "384"}, "ecdsa-sha2-nistp384"},
		{"OK_ECDSAP521", []string{"-t", "ecdsa", "-b", "521"}, "ecdsa-sha2-nistp521"},
		{"OK_RSA2048", []string{"-t", "rsa", "-b", "2048"}, "ssh-rsa"},
		{"OK_RSA3072", []string{"-t", "rsa", "-b", "3072"}, "ssh-rsa"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "id")
			MustRunSSHKeygen(t, append(tt.args, "-q", "-N", "", "-C", "alice@example", "-f", file)...)
			pubText := MustReadFile(t, file+".pub")

			k, err := domain.ParsePublicKey(pubText)
			if err != nil {
				t.Fatalf("ParsePublicKey: %v", err)
			}
			if got, want := k.Type, tt.wantType; got != want {
				t.Errorf("Type = %q, want %q", got, want)
			}
			if got, want := k.Comment, "alice@example"; got != want {
				t.Errorf("Comment = %q, want %q", got, want)
			}
			if got, want := k.Authorized, strings.TrimSpace(pubText); got != want {
				t.Errorf("Authorized = %q, want %q", got, want)
			}

			// ssh-keygen -l prints "<bits> <fingerprint> <comment> (<type>)".
			md5 := strings.Fields(MustRunSSHKeygen(t, "-l", "-E", "md5", "-f", file+".pub"))
			sha := strings.Fields(MustRunSSHKeygen(t, "-l", "-E", "sha256", "-f", file+".pub"))
			if len(md5) < 2 || len(sha) < 2 {
				t.Fatalf("unexpected ssh-keygen -l output %q, %q", md5, sha)
			}
			if got, want := strconv.Itoa(k.Bits), md5[0]; got != want {
				t.Errorf("Bits = %s, want %s", got, want)
			}
			if got, want := k.Fingerprint, strings.TrimPrefix(md5[1], "MD5:"); got != want {
				t.Errorf("Fingerprint = %q, want %q", got, want)
			}
			if got, want := k.FingerprintSHA256, sha[1]; got != want {
				t.Errorf("FingerprintSHA256 = %q, want %q", got, want)
			}

			t.Run("ErrPrivateKey", func(t *testing.T) {
				text := MustReadFile(t, file)
				_, err := domain.ParsePublicKey(text)
				CheckRefused(t, text, err, "private key")
			})
			t.Run("ErrRFC4716", func(t *testing.T) {
				text := MustRunSSHKeygen(t, "-e", "-f", file+".pub")
				_, err := domain.ParsePublicKey(text)
				CheckRefused(t, text, err, "RFC 4716")
			})
			t.Run("ErrCertificate", func(t *testing.T) {
				ca := filepath.Join(t.TempDir(), "ca")
				MustRunSSHKeygen(t, "-q", "-t", "ed25519", "-N", "", "-C", "ca", "-f", ca)
				MustRunSSHKeygen(t, "-q", "-s", ca, "-I", "alice", "-n", "alice", file+".pub")
				text := MustReadFile(t, file+"-cert.pub")
				_, err := domain.ParsePublicKey(text)
				CheckRefused(t, text, err, "certificate")
			})
		})
	}

	t.Run("ErrShortRSA", func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "id")
		MustRunSSHKeygen(t, "-q", "-t", "rsa", "-b", "1024", "-N", "", "-C", "old@example", "-f", file)
		text := MustReadFile(t, file+".pub")
		_, err := domain.ParsePublicKey(text)
		CheckRefused(t, text, err, "RSA keys must have at least 2048 bits, this one has 1024")
	})
	t.Run("ErrDSA", func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "id")
		path, err := exec.LookPath("ssh-keygen")
		if err != nil {
			t.Skip("ssh-keygen not installed")
		}
		// OpenSSH 9.8 and later no longer generate DSA keys.
		if out, err := exec.Command(path, "-q", "-t", "dsa", "-N", "", "-f", file).CombinedOutput(); err != nil {
			t.Skipf("ssh-keygen cannot generate DSA keys: %v\n%s", err, out)
		}
		text := MustReadFile(t, file+".pub")
		_, err = domain.ParsePublicKey(text)
		CheckRefused(t, text, err, "DSA")
	})
}
