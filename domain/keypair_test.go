package domain_test

import (
	"bytes"
	"crypto"
	"crypto/dsa" //nolint:staticcheck // DSA keys are built only to prove they are refused
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/infrakeys/infrakeys/domain"
	"golang.org/x/crypto/ssh"
)

// MustOpenSSHPrivateKey returns k as an OpenSSH private key file.
func MustOpenSSHPrivateKey(tb testing.TB, k crypto.PrivateKey, comment string) string {
	tb.Helper()
	block, err := ssh.MarshalPrivateKey(k, comment)
	if err != nil {
		tb.Fatal(err)
	}
	return string(pem.EncodeToMemory(block))
}

// MustEncryptedOpenSSHPrivateKey returns k as an OpenSSH private key file
// protected by passphrase.
func MustEncryptedOpenSSHPrivateKey(tb testing.TB, k crypto.PrivateKey, passphrase string) string {
	tb.Helper()
	block, err := ssh.MarshalPrivateKeyWithPassphrase(k, "", []byte(passphrase))
	if err != nil {
		tb.Fatal(err)
	}
	return string(pem.EncodeToMemory(block))
}

// MustDSAPrivateKeyPEM returns a fresh DSA key in OpenSSL's "DSA PRIVATE
// KEY" form, which ssh-keygen -m PEM also writes.
func MustDSAPrivateKeyPEM(tb testing.TB) string {
	tb.Helper()
	var k dsa.PrivateKey
	if err := dsa.GenerateParameters(&k.Parameters, rand.Reader, dsa.L1024N160); err != nil {
		tb.Fatal(err)
	}
	if err := dsa.GenerateKey(&k, rand.Reader); err != nil {
		tb.Fatal(err)
	}
	der, err := asn1.Marshal(struct {
		Version       int
		P, Q, G, Y, X *big.Int
	}{0, k.P, k.Q, k.G, k.Y, k.X})
	if err != nil {
		tb.Fatal(err)
	}
	return PEM("DSA PRIVATE KEY", der)
}

// OpenSSHEnvelope is the clear outside of an OpenSSH private key file.
type OpenSSHEnvelope struct {
	CipherName   string
	KdfName      string
	KdfOpts      string
	NumKeys      uint32
	PubKey       []byte
	PrivKeyBlock []byte
	Rest         []byte `ssh:"rest"`
}

// MustRewriteEnvelope returns the OpenSSH private key text with its
// envelope changed by edit, as a forger or a broken tool might.
func MustRewriteEnvelope(tb testing.TB, text string, edit func(*OpenSSHEnvelope)) string {
	tb.Helper()
	const magic = "openssh-key-v1\x00"
	block, _ := pem.Decode([]byte(text))
	if block == nil || !bytes.HasPrefix(block.Bytes, []byte(magic)) {
		tb.Fatal("not an OpenSSH private key")
	}
	var e OpenSSHEnvelope
	if err := ssh.Unmarshal(block.Bytes[len(magic):], &e); err != nil {
		tb.Fatal(err)
	}
	edit(&e)
	block.Bytes = append([]byte(magic), ssh.Marshal(e)...)
	return string(pem.EncodeToMemory(block))
}

// CheckNoEcho asserts that msg holds no 20-character run of secret.
func CheckNoEcho(tb testing.TB, secret, msg string) {
	tb.Helper()
	const n = 20
	for i := 0; i+n <= len(msg); i++ {
		if strings.Contains(secret, msg[i:i+n]) {
			tb.Errorf("message %q repeats %q from the private key", msg, msg[i:i+n])
			return
		}
	}
}

// CheckKeyPairRefused asserts that err has code and a message containing
// reason, and repeats nothing of secret.
func CheckKeyPairRefused(tb testing.TB, pair *domain.KeyPair, err error, code, reason, secret string) {
	tb.Helper()
	if err == nil {
		tb.Fatal("succeeded, want an error")
	}
	if pair != nil {
		tb.Error("returned a key pair along with an error")
	}
	if got, want := domain.ErrorCode(err), code; got != want {
		tb.Errorf("code = %q, want %q (%v)", got, want, err)
	}
	msg := domain.ErrorMessage(err)
	if !strings.Contains(msg, reason) {
		tb.Errorf("message %q does not contain %q", msg, reason)
	}
	CheckNoEcho(tb, secret, msg)
	CheckNoEcho(tb, secret, err.Error())
}

// CheckKeyPair asserts that pair describes key, with the given public line
// and private half.
func CheckKeyPair(tb testing.TB, pair *domain.KeyPair, key ssh.PublicKey, public, private, typ string, bits int) {
	tb.Helper()
	if got, want := pair.PublicKey, public; got != want {
		tb.Errorf("PublicKey = %q, want %q", got, want)
	}
	if private == "" {
		if pair.PrivateKey != nil {
			tb.Errorf("PrivateKey = %q, want nil", pair.PrivateKey)
		}
	} else if got, want := string(pair.PrivateKey), private; got != want {
		tb.Errorf("PrivateKey is not the text given:\n got %q\nwant %q", got, want)
	}
	if got, want := pair.Type, typ; got != want {
		tb.Errorf("Type = %q, want %q", got, want)
	}
	if got, want := pair.Bits, bits; got != want {
		tb.Errorf("Bits = %d, want %d", got, want)
	}
	if got, want := pair.Fingerprint, ssh.FingerprintLegacyMD5(key); got != want {
		tb.Errorf("Fingerprint = %q, want %q", got, want)
	}
	if got, want := pair.FingerprintSHA256, ssh.FingerprintSHA256(key); got != want {
		tb.Errorf("FingerprintSHA256 = %q, want %q", got, want)
	}
}

func TestParseKeyPair(t *testing.T) {
	edPub, edPriv := MustEd25519Key(t)
	ed := MustSSHPublicKey(t, edPub)
	otherPub, otherPriv := MustEd25519Key(t)
	p256 := MustECDSAKey(t, elliptic.P256())
	p384 := MustECDSAKey(t, elliptic.P384())
	p521 := MustECDSAKey(t, elliptic.P521())
	rsa2048 := MustRSAKey(t, 2048)
	rsa1024 := MustRSAKey(t, 1024)
	rsaPub := MustSSHPublicKey(t, &rsa2048.PublicKey)
	p256Pub := MustSSHPublicKey(t, &p256.PublicKey)
	p384Pub := MustSSHPublicKey(t, &p384.PublicKey)
	p521Pub := MustSSHPublicKey(t, &p521.PublicKey)

	edPEM := MustOpenSSHPrivateKey(t, edPriv, "alice@example")
	edLine := KeyLine(ed, "alice@example")

	t.Run("OK", func(t *testing.T) {
		tests := []struct {
			name       string
			public     string
			private    string
			key        ssh.PublicKey
			wantPublic string
			wantType   string
			wantBits   int
		}{
			{"OK_PublicOnly", edLine, "", ed, edLine, "ssh-ed25519", 256},
			{"OK_PublicOnlyBlankPrivate", edLine, " \n\t", ed, edLine, "ssh-ed25519", 256},
			{"OK_PublicOnlySecurityKey", BlobLine(ssh.KeyAlgoSKED25519, SKEd25519Blob(edPub), "yubikey"), "", nil,
				BlobLine(ssh.KeyAlgoSKED25519, SKEd25519Blob(edPub), "yubikey"), ssh.KeyAlgoSKED25519, 256},
			{"OK_PrivateOnlyOpenSSHEd25519", "", edPEM, ed, KeyLine(ed, ""), "ssh-ed25519", 256},
			{"OK_PrivateOnlyOpenSSHRSA", "", MustOpenSSHPrivateKey(t, rsa2048, "bob"), rsaPub, KeyLine(rsaPub, ""), "ssh-rsa", 2048},
			{"OK_PrivateOnlyOpenSSHECDSAP256", "", MustOpenSSHPrivateKey(t, p256, ""), p256Pub, KeyLine(p256Pub, ""), "ecdsa-sha2-nistp256", 256},
			{"OK_PrivateOnlyPKCS1RSA", "", PEM("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rsa2048)), rsaPub, KeyLine(rsaPub, ""), "ssh-rsa", 2048},
			{"OK_PrivateOnlyPKCS8RSA", "", PEM("PRIVATE KEY", MustPKCS8(t, rsa2048)), rsaPub, KeyLine(rsaPub, ""), "ssh-rsa", 2048},
			{"OK_PrivateOnlyPKCS8Ed25519", "", PEM("PRIVATE KEY", MustPKCS8(t, edPriv)), ed, KeyLine(ed, ""), "ssh-ed25519", 256},
			{"OK_PrivateOnlyPKCS8ECDSAP384", "", PEM("PRIVATE KEY", MustPKCS8(t, p384)), p384Pub, KeyLine(p384Pub, ""), "ecdsa-sha2-nistp384", 384},
			{"OK_PrivateOnlySEC1P256", "", PEM("EC PRIVATE KEY", MustSEC1(t, p256)), p256Pub, KeyLine(p256Pub, ""), "ecdsa-sha2-nistp256", 256},
			{"OK_PrivateOnlySEC1P521", "", PEM("EC PRIVATE KEY", MustSEC1(t, p521)), p521Pub, KeyLine(p521Pub, ""), "ecdsa-sha2-nistp521", 521},
			{"OK_BothEd25519", edLine, edPEM, ed, edLine, "ssh-ed25519", 256},
			{"OK_BothRSAPKCS1", KeyLine(rsaPub, "bob"), PEM("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rsa2048)), rsaPub, KeyLine(rsaPub, "bob"), "ssh-rsa", 2048},
			{"OK_BothPublicTrimmed", "\n  " + edLine + "  \n", edPEM, ed, edLine, "ssh-ed25519", 256},
			{"OK_PrivateKeptAsGiven", "", "\n\n  " + edPEM + "\n \t", ed, KeyLine(ed, ""), "ssh-ed25519", 256},
			{"OK_PrivateCRLF", "", strings.ReplaceAll(edPEM, "\n", "\r\n"), ed, KeyLine(ed, ""), "ssh-ed25519", 256},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				pair, err := domain.ParseKeyPair(tt.public, tt.private)
				if err != nil {
					t.Fatalf("ParseKeyPair: %v", err)
				}
				key := tt.key
				if key == nil {
					key = MustParsedKey(t, tt.wantPublic)
				}
				private := tt.private
				if strings.TrimSpace(private) == "" {
					private = ""
				}
				CheckKeyPair(t, pair, key, tt.wantPublic, private, tt.wantType, tt.wantBits)
			})
		}
	})

	t.Run("Err", func(t *testing.T) {
		p224 := MustECDSAKey(t, elliptic.P224())
		x25519, err := ecdh.X25519().GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		inconsistent := slices.Clone(edPriv)
		copy(inconsistent[32:], otherPub)
		encryptedPEM, err := x509.EncryptPEMBlock(rand.Reader, "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rsa2048), []byte("secret"), x509.PEMCipherAES256) //nolint:staticcheck // legacy encryption, only to be refused
		if err != nil {
			t.Fatal(err)
		}
		rsaPKCS1 := PEM("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rsa2048))
		truncated := strings.Split(edPEM, "\n")
		truncated = append(truncated[:2], truncated[3:]...)
		random := make([]byte, 300)
		rand.Read(random)

		tests := []struct {
			name    string
			public  string
			private string
			code    string
			reason  string
		}{
			{"ErrMissing", "", "", domain.EMISSING, "publicKey or privateKey is required"},
			{"ErrMissingBlank", " \n", "\t\r\n", domain.EMISSING, "publicKey or privateKey is required"},
			{"ErrPublicInvalid", "ssh-ed25519 not-base64", "", domain.EINVALID, "publicKey is invalid: the key data is not valid"},
			{"ErrPublicShortRSA", KeyLine(MustSSHPublicKey(t, &rsa1024.PublicKey), ""), "", domain.EINVALID, "publicKey is invalid: RSA keys must have at least 2048 bits, this one has 1024"},
			{"ErrPublicInvalidWithPrivate", "garbage", edPEM, domain.EINVALID, "publicKey is invalid: "},
			{"ErrPrivateInPublic", edPEM, "", domain.EINVALID, "publicKey is invalid: this is a private key; send it as privateKey"},
			{"ErrGarbage", "", "this is not a key at all", domain.EINVALID, "privateKey is invalid: it is not a PEM private key"},
			{"ErrGarbageWithPublic", edLine, "garbage", domain.EINVALID, "privateKey is invalid: it is not a PEM private key"},
			{"ErrRandomOpenSSH", "", PEM("OPENSSH PRIVATE KEY", random), domain.EINVALID, "privateKey is invalid: the OpenSSH private key is malformed"},
			{"ErrRandomPKCS1", "", PEM("RSA PRIVATE KEY", random), domain.EINVALID, "privateKey is invalid: the PKCS#1 private key is malformed"},
			{"ErrRandomPKCS8", "", PEM("PRIVATE KEY", random), domain.EINVALID, "privateKey is invalid: the PKCS#8 private key is malformed"},
			{"ErrRandomSEC1", "", PEM("EC PRIVATE KEY", random), domain.EINVALID, "privateKey is invalid: the SEC1 private key is malformed"},
			{"ErrTruncated", "", strings.Join(truncated, "\n"), domain.EINVALID, "privateKey is invalid: the OpenSSH private key is malformed"},
			{"ErrNoEndLine", "", strings.Split(edPEM, "-----END")[0], domain.EINVALID, "privateKey is invalid: it is not a PEM private key"},
			{"ErrTwoKeys", "", edPEM + MustOpenSSHPrivateKey(t, otherPriv, ""), domain.EINVALID, "exactly one PEM private key and nothing else"},
			{"ErrTextBefore", "", "my key:\n" + edPEM, domain.EINVALID, "exactly one PEM private key and nothing else"},
			{"ErrTextAfter", "", edPEM + "thanks\n", domain.EINVALID, "exactly one PEM private key and nothing else"},
			{"ErrTooLong", "", edPEM + strings.Repeat(" ", 16<<10), domain.EINVALID, "longer than 16384 bytes"},
			{"ErrOpenSSHPublicKeyAsPrivate", "", edLine, domain.EINVALID, "this is an OpenSSH public key; send it as publicKey"},
			{"ErrPEMPublicKey", "", PEM("PUBLIC KEY", MustPKIX(t, edPub)), domain.EINVALID, "this is a PEM public key, not a private key"},
			{"ErrCertificate", "", PEM("CERTIFICATE", random), domain.EINVALID, "this kind of PEM block is not supported"},
			{"ErrPassphraseOpenSSH", "", MustEncryptedOpenSSHPrivateKey(t, edPriv, "secret"), domain.EINVALID, "privateKey is protected by a passphrase; provide it unencrypted (it is sealed at rest)"},
			{"ErrPassphraseProcType", "", string(pem.EncodeToMemory(encryptedPEM)), domain.EINVALID, "privateKey is protected by a passphrase"},
			{"ErrPassphrasePKCS8", "", PEM("ENCRYPTED PRIVATE KEY", random), domain.EINVALID, "privateKey is protected by a passphrase"},
			{"ErrDSA", "", MustDSAPrivateKeyPEM(t), domain.EINVALID, "privateKey is invalid: DSA keys are insecure and not accepted"},
			{"ErrShortRSAPKCS1", "", PEM("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rsa1024)), domain.EINVALID, "privateKey is invalid: RSA keys must have at least 2048 bits, this one has 1024"},
			{"ErrShortRSAOpenSSH", "", MustOpenSSHPrivateKey(t, rsa1024, ""), domain.EINVALID, "privateKey is invalid: RSA keys must have at least 2048 bits, this one has 1024"},
			{"ErrShortRSABoth", KeyLine(MustSSHPublicKey(t, &rsa1024.PublicKey), ""), MustOpenSSHPrivateKey(t, rsa1024, ""), domain.EINVALID, "RSA keys must have at least 2048 bits"},
			{"ErrP224", "", PEM("EC PRIVATE KEY", MustSEC1(t, p224)), domain.EINVALID, "ECDSA keys must be on curve P-256, P-384 or P-521"},
			{"ErrX25519", "", PEM("PRIVATE KEY", MustPKCS8(t, x25519)), domain.EINVALID, "this kind of key is not supported"},
			{"ErrSecurityKeyPrivate", "", MustRewriteEnvelope(t, edPEM, func(e *OpenSSHEnvelope) { e.PubKey = SKEd25519Blob(edPub) }),
				domain.EINVALID, "privateKey is invalid: security keys (sk-ssh-ed25519@openssh.com) cannot be infrastructure keys"},
			{"ErrSecurityKeyPublicWithPrivate", BlobLine(ssh.KeyAlgoSKED25519, SKEd25519Blob(edPub), ""), edPEM,
				domain.EINVALID, "publicKey is a security key (sk-ssh-ed25519@openssh.com)"},
			{"ErrEnvelopeMismatch", "", MustRewriteEnvelope(t, edPEM, func(e *OpenSSHEnvelope) { e.PubKey = MustSSHPublicKey(t, otherPub).Marshal() }),
				domain.EINVALID, "the OpenSSH private key is inconsistent"},
			{"ErrEnvelopeTwoKeys", "", MustRewriteEnvelope(t, edPEM, func(e *OpenSSHEnvelope) { e.NumKeys = 2 }),
				domain.EINVALID, "exactly one PEM private key"},
			{"ErrEd25519Inconsistent", "", MustOpenSSHPrivateKey(t, inconsistent, ""), domain.EINVALID, "the OpenSSH private key is inconsistent"},
			{"ErrMismatch", edLine, MustOpenSSHPrivateKey(t, otherPriv, ""), domain.ECONFLICT, "publicKey and privateKey do not match"},
			{"ErrMismatchType", KeyLine(rsaPub, ""), edPEM, domain.ECONFLICT, "publicKey and privateKey do not match"},
			{"ErrMismatchPKCS8", KeyLine(p256Pub, ""), PEM("PRIVATE KEY", MustPKCS8(t, p384)), domain.ECONFLICT, "publicKey and privateKey do not match"},
			{"ErrMismatchPKCS1", KeyLine(MustSSHPublicKey(t, &MustRSAKey(t, 2048).PublicKey), ""), rsaPKCS1, domain.ECONFLICT, "publicKey and privateKey do not match"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				pair, err := domain.ParseKeyPair(tt.public, tt.private)
				// Without a private half, the public one may be a private
				// key sent in the wrong field: it must not be echoed either.
				secret := tt.private
				if strings.TrimSpace(secret) == "" {
					secret = tt.public
				}
				CheckKeyPairRefused(t, pair, err, tt.code, tt.reason, secret)
			})
		}
	})
}

// MustSEC1 returns the SEC1 DER form of an ECDSA private key.
func MustSEC1(tb testing.TB, k *ecdsa.PrivateKey) []byte {
	tb.Helper()
	der, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		tb.Fatal(err)
	}
	return der
}

// MustParsedKey parses an authorized-key line known to be valid.
func MustParsedKey(tb testing.TB, line string) ssh.PublicKey {
	tb.Helper()
	k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(line))
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

// MustSSHKeygenKey has ssh-keygen write a key with args and passphrase and
// returns the private key file and the .pub file as written.
func MustSSHKeygenKey(tb testing.TB, passphrase string, args ...string) (private, public string) {
	tb.Helper()
	file := filepath.Join(tb.TempDir(), "id")
	MustRunSSHKeygen(tb, append(args, "-q", "-N", passphrase, "-C", "alice@example", "-f", file)...)
	return MustReadFile(tb, file), MustReadFile(tb, file+".pub")
}

// TestParseKeyPair_SSHKeygen proves that every format ssh-keygen writes is
// accepted as it is, with the public half it derives, and that its
// passphrase-protected and outdated keys are refused.
func TestParseKeyPair_SSHKeygen(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		header   string
		wantType string
		wantBits int
	}{
		{"OK_Ed25519", []string{"-t", "ed25519"}, "OPENSSH PRIVATE KEY", "ssh-ed25519", 256},
		{"OK_ECDSAP256", []string{"-t", "ecdsa", "-b", "256"}, "OPENSSH PRIVATE KEY", "ecdsa-sha2-nistp256", 256},
		{"OK_ECDSAP384SEC1", []string{"-t", "ecdsa", "-b", "384", "-m", "PEM"}, "EC PRIVATE KEY", "ecdsa-sha2-nistp384", 384},
		{"OK_ECDSAP521PKCS8", []string{"-t", "ecdsa", "-b", "521", "-m", "PKCS8"}, "PRIVATE KEY", "ecdsa-sha2-nistp521", 521},
		{"OK_RSA3072", []string{"-t", "rsa", "-b", "3072"}, "OPENSSH PRIVATE KEY", "ssh-rsa", 3072},
		{"OK_RSA2048PKCS1", []string{"-t", "rsa", "-b", "2048", "-m", "PEM"}, "RSA PRIVATE KEY", "ssh-rsa", 2048},
		{"OK_RSA2048PKCS8", []string{"-t", "rsa", "-b", "2048", "-m", "PKCS8"}, "PRIVATE KEY", "ssh-rsa", 2048},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			private, public := MustSSHKeygenKey(t, "", tt.args...)
			if got, want := strings.SplitN(private, "\n", 2)[0], "-----BEGIN "+tt.header+"-----"; got != want {
				t.Fatalf("ssh-keygen wrote %q, want %q", got, want)
			}
			key := MustParsedKey(t, public)
			fields := strings.Fields(public)

			t.Run("OK_PrivateOnly", func(t *testing.T) {
				pair, err := domain.ParseKeyPair("", private)
				if err != nil {
					t.Fatalf("ParseKeyPair: %v", err)
				}
				CheckKeyPair(t, pair, key, fields[0]+" "+fields[1], private, tt.wantType, tt.wantBits)
			})
			t.Run("OK_Both", func(t *testing.T) {
				pair, err := domain.ParseKeyPair(public, private)
				if err != nil {
					t.Fatalf("ParseKeyPair: %v", err)
				}
				CheckKeyPair(t, pair, key, strings.TrimSpace(public), private, tt.wantType, tt.wantBits)
			})
			t.Run("OK_PublicOnly", func(t *testing.T) {
				pair, err := domain.ParseKeyPair(public, "")
				if err != nil {
					t.Fatalf("ParseKeyPair: %v", err)
				}
				CheckKeyPair(t, pair, key, strings.TrimSpace(public), "", tt.wantType, tt.wantBits)
			})
			t.Run("ErrMismatch", func(t *testing.T) {
				_, otherPublic := MustSSHKeygenKey(t, "", tt.args...)
				pair, err := domain.ParseKeyPair(otherPublic, private)
				CheckKeyPairRefused(t, pair, err, domain.ECONFLICT, "publicKey and privateKey do not match", private)
			})
			t.Run("ErrPassphrase", func(t *testing.T) {
				encrypted, public := MustSSHKeygenKey(t, "secret", tt.args...)
				for _, pub := range []string{"", public} {
					pair, err := domain.ParseKeyPair(pub, encrypted)
					CheckKeyPairRefused(t, pair, err, domain.EINVALID,
						"privateKey is protected by a passphrase; provide it unencrypted (it is sealed at rest)", encrypted)
				}
			})
		})
	}

	refused := []struct {
		name   string
		args   []string
		reason string
	}{
		{"ErrShortRSA", []string{"-t", "rsa", "-b", "1024"}, "RSA keys must have at least 2048 bits, this one has 1024"},
		{"ErrShortRSAPKCS1", []string{"-t", "rsa", "-b", "1024", "-m", "PEM"}, "RSA keys must have at least 2048 bits, this one has 1024"},
		{"ErrDSA", []string{"-t", "dsa"}, "DSA keys are insecure and not accepted"},
		{"ErrDSAPEM", []string{"-t", "dsa", "-m", "PEM"}, "DSA keys are insecure and not accepted"},
	}
	for _, tt := range refused {
		t.Run(tt.name, func(t *testing.T) {
			path, err := exec.LookPath("ssh-keygen")
			if err != nil {
				t.Skip("ssh-keygen not installed")
			}
			file := filepath.Join(t.TempDir(), "id")
			// OpenSSH 9.8 and later no longer generate DSA keys.
			if out, err := exec.Command(path, append(tt.args, "-q", "-N", "", "-f", file)...).CombinedOutput(); err != nil {
				t.Skipf("ssh-keygen %s: %v\n%s", strings.Join(tt.args, " "), err, out)
			}
			private := MustReadFile(t, file)
			pair, err := domain.ParseKeyPair("", private)
			CheckKeyPairRefused(t, pair, err, domain.EINVALID, "privateKey is invalid: "+tt.reason, private)
		})
	}
}

func TestGenerateKeyPair(t *testing.T) {
	tests := []struct {
		algorithm string
		wantType  string
		wantBits  int
	}{
		{"ed25519", "ssh-ed25519", 256},
		{"rsa-3072", "ssh-rsa", 3072},
		{"rsa-4096", "ssh-rsa", 4096},
		{"ecdsa-p256", "ecdsa-sha2-nistp256", 256},
		{"ecdsa-p384", "ecdsa-sha2-nistp384", 384},
	}
	var covered []string
	for _, tt := range tests {
		covered = append(covered, tt.algorithm)
	}
	if got, want := strings.Join(covered, ","), strings.Join(domain.KeyAlgorithms, ","); got != want {
		t.Fatalf("tested algorithms %s, want every one of KeyAlgorithms %s", got, want)
	}

	for _, tt := range tests {
		t.Run("OK_"+tt.algorithm, func(t *testing.T) {
			t.Parallel()
			pair, err := domain.GenerateKeyPair(tt.algorithm, "web-key")
			if err != nil {
				t.Fatalf("GenerateKeyPair: %v", err)
			}
			if got, want := string(pair.PrivateKey), "-----BEGIN OPENSSH PRIVATE KEY-----\n"; !strings.HasPrefix(got, want) {
				t.Errorf("PrivateKey starts %q, want %q", strings.SplitN(got, "\n", 2)[0], want)
			}
			if !strings.HasSuffix(pair.PublicKey, " web-key") {
				t.Errorf("PublicKey = %q, want the comment web-key at its end", pair.PublicKey)
			}

			signer, err := ssh.ParsePrivateKey(pair.PrivateKey)
			if err != nil {
				t.Fatalf("ssh.ParsePrivateKey: %v", err)
			}
			CheckKeyPair(t, pair, signer.PublicKey(), pair.PublicKey, string(pair.PrivateKey), tt.wantType, tt.wantBits)
			if got, want := pair.PublicKey, KeyLine(signer.PublicKey(), "web-key"); got != want {
				t.Errorf("PublicKey = %q, want %q", got, want)
			}

			again, err := domain.ParseKeyPair(pair.PublicKey, string(pair.PrivateKey))
			if err != nil {
				t.Fatalf("ParseKeyPair of the generated pair: %v", err)
			}
			CheckKeyPair(t, again, signer.PublicKey(), pair.PublicKey, string(pair.PrivateKey), tt.wantType, tt.wantBits)

			other, err := domain.GenerateKeyPair(tt.algorithm, "web-key")
			if err != nil {
				t.Fatalf("GenerateKeyPair: %v", err)
			}
			if other.FingerprintSHA256 == pair.FingerprintSHA256 {
				t.Error("two generated keys are the same")
			}

			t.Run("OK_SSHKeygenReadsIt", func(t *testing.T) {
				file := filepath.Join(t.TempDir(), "id")
				if err := os.WriteFile(file, pair.PrivateKey, 0o600); err != nil {
					t.Fatal(err)
				}
				out := MustRunSSHKeygen(t, "-y", "-f", file)
				if got, want := strings.TrimSpace(out), pair.PublicKey; got != want {
					t.Errorf("ssh-keygen -y = %q, want %q", got, want)
				}
			})
		})
	}

	t.Run("ErrUnknownAlgorithm", func(t *testing.T) {
		for _, alg := range []string{"", "dsa", "RSA-3072", "rsa-1024", "ecdsa-p521", "ed25519 "} {
			pair, err := domain.GenerateKeyPair(alg, "web-key")
			CheckKeyPairRefused(t, pair, err, domain.EINVALID, "algorithm must be one of ed25519, rsa-3072, rsa-4096, ecdsa-p256, ecdsa-p384", "")
		}
	})
	t.Run("ErrComment", func(t *testing.T) {
		for _, comment := range []string{"two\nlines", "bell\a", "\xff"} {
			pair, err := domain.GenerateKeyPair("ed25519", comment)
			CheckKeyPairRefused(t, pair, err, domain.EINVALID, "the key comment must be printable UTF-8 text on one line", "")
		}
	})
}
