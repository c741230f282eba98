package httpsig_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/infrakeys/infrakeys/http/httpsig"
	"golang.org/x/crypto/ssh"
)

// MustSSHKeygen runs ssh-keygen with args, skipping the test when it is not
// installed, and returns its output.
func MustSSHKeygen(tb testing.TB, args ...string) string {
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

// TestNewSignerFromFile proves that key files written by OpenSSH load and
// sign, and that MD5Fingerprint agrees with ssh-keygen.
func TestNewSignerFromFile(t *testing.T) {
	tests := []struct {
		name          string
		args          []string
		wantAlgorithm string
	}{
		{"Ed25519", []string{"-t", "ed25519"}, "ed25519-sha512"},
		{"ECDSAP256", []string{"-t", "ecdsa", "-b", "256"}, "ecdsa-sha256"},
		{"ECDSAP384", []string{"-t", "ecdsa", "-b", "384"}, "ecdsa-sha384"},
		{"ECDSAP521", []string{"-t", "ecdsa", "-b", "521"}, "ecdsa-sha512"},
		{"RSA", []string{"-t", "rsa", "-b", "2048"}, "rsa-sha256"},
		{"RSAPEM", []string{"-t", "rsa", "-b", "2048", "-m", "PEM"}, "rsa-sha256"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "id")
			MustSSHKeygen(t, append(tt.args, "-q", "-N", "", "-C", "test", "-f", file)...)

			data, err := os.ReadFile(file + ".pub")
			if err != nil {
				t.Fatal(err)
			}
			pub, _, _, _, err := ssh.ParseAuthorizedKey(data)
			if err != nil {
				t.Fatal(err)
			}
			// ssh-keygen -l prints "<bits> MD5:<fingerprint> <comment> (<type>)".
			fields := strings.Fields(MustSSHKeygen(t, "-l", "-E", "md5", "-f", file+".pub"))
			if len(fields) < 2 {
				t.Fatalf("unexpected ssh-keygen -l output %q", fields)
			}
			if got, want := httpsig.MD5Fingerprint(pub), strings.TrimPrefix(fields[1], "MD5:"); got != want {
				t.Errorf("MD5Fingerprint = %q, want %q", got, want)
			}

			s, err := httpsig.NewSignerFromFile(httpsig.KeyIDFor("alice", pub), file)
			if err != nil {
				t.Fatalf("NewSignerFromFile: %v", err)
			}
			r := MustRequest(t, "GET", "https://cloudapi.example/alice/keys")
			if err := s.Sign(r); err != nil {
				t.Fatalf("Sign: %v", err)
			}
			p, err := httpsig.ParseAuthorization(r.Header.Get("Authorization"))
			if err != nil {
				t.Fatal(err)
			}
			if got, want := p.Algorithm, tt.wantAlgorithm; got != want {
				t.Errorf("algorithm = %q, want %q", got, want)
			}
			if err := VerifyRequest(t, r, pub); err != nil {
				t.Errorf("Verify: %v", err)
			}
		})
	}

	t.Run("ErrEncrypted", func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "id")
		MustSSHKeygen(t, "-t", "ed25519", "-q", "-N", "secret", "-f", file)
		if _, err := httpsig.NewSignerFromFile("/alice/keys/x", file); err == nil {
			t.Error("NewSignerFromFile loaded an encrypted key")
		}
	})

	t.Run("ErrNotAKey", func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "id")
		if err := os.WriteFile(file, []byte("not a key\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := httpsig.NewSignerFromFile("/alice/keys/x", file); err == nil {
			t.Error("NewSignerFromFile loaded garbage")
		}
	})
}

func TestKeyIDFor(t *testing.T) {
	pub := MustPublicKey(t, MustKey(t, "ed25519"))
	fp := httpsig.MD5Fingerprint(pub)
	if got, want := httpsig.KeyIDFor("alice", pub), "/alice/keys/"+fp; got != want {
		t.Errorf("KeyIDFor = %q, want %q", got, want)
	}
	if got, want := len(fp), 16*3-1; got != want {
		t.Errorf("len(%q) = %d, want %d", fp, got, want)
	}
	if got := strings.ToLower(fp); got != fp {
		t.Errorf("fingerprint %q is not lowercase", fp)
	}
}
