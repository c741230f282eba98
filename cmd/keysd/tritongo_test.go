package main

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	triton "github.com/joyent/triton-go"
	"github.com/joyent/triton-go/account"
	"github.com/joyent/triton-go/authentication"
	tritonerrors "github.com/joyent/triton-go/errors"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

// The official Go client, github.com/joyent/triton-go (what Terraform's and
// Packer's Triton plugins use), manages keys against keysd. It signs only
// the Date header (rsa-sha1 with a private key file, ecdsa-sha256 through
// an SSH agent), so it needs --allow-legacy-signatures, and writes that
// Date as time.RFC1123 of a UTC time, ending in "UTC" rather than "GMT".

// tritonGoSigner is one way triton-go signs: a signer for login's key.
type tritonGoSigner struct {
	name   string
	key    crypto.Signer
	signer func(t *testing.T, login string) authentication.Signer
	// refusal is why keysd refuses its signatures without the switch, as
	// keysd logs it.
	refusal string
}

// tritonGoSigners are both of triton-go's signers: a PKCS#1 PEM RSA key
// file, and an ECDSA P-256 key in an SSH agent. The agent is served in this
// process; triton-go finds it, as it does in real use, through
// SSH_AUTH_SOCK, so tests using these cannot run in parallel.
func tritonGoSigners(t *testing.T) []tritonGoSigner {
	t.Helper()
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return []tritonGoSigner{
		{"PrivateKeySigner", rsaKey, func(t *testing.T, login string) authentication.Signer {
			s, err := authentication.NewPrivateKeySigner(authentication.PrivateKeySignerInput{
				KeyID:              ssh.FingerprintLegacyMD5(MustSSHPublic(t, rsaKey)),
				PrivateKeyMaterial: pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rsaKey)}),
				AccountName:        login,
			})
			if err != nil {
				t.Fatal(err)
			}
			return s
		}, "algorithm not accepted"},
		{"SSHAgentSigner", ecKey, func(t *testing.T, login string) authentication.Signer {
			t.Setenv("SSH_AUTH_SOCK", serveAgent(t, ecKey))
			s, err := authentication.NewSSHAgentSigner(authentication.SSHAgentSignerInput{
				KeyID:       ssh.FingerprintSHA256(MustSSHPublic(t, ecKey)),
				AccountName: login,
			})
			if err != nil {
				t.Fatal(err)
			}
			return s
		}, "(request-target) is not signed"},
	}
}

// serveAgent serves an SSH agent holding key on a Unix socket and returns
// the socket's path.
func serveAgent(t *testing.T, key crypto.Signer) string {
	t.Helper()
	keyring := agent.NewKeyring()
	if err := keyring.Add(agent.AddedKey{PrivateKey: key}); err != nil {
		t.Fatal(err)
	}
	// Not t.TempDir: a Unix socket path must stay under about 100 bytes.
	dir, err := os.MkdirTemp("", "agent")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				_ = agent.ServeAgent(keyring, conn)
			}()
		}
	}()
	return sock
}

// tritonGoKeys is triton-go's account keys client for login.
func tritonGoKeys(t *testing.T, k *keysd, login string, signer authentication.Signer) *account.KeysClient {
	t.Helper()
	c, err := account.NewClient(&triton.ClientConfig{TritonURL: k.URL, AccountName: login, Signers: []authentication.Signer{signer}})
	if err != nil {
		t.Fatal(err)
	}
	return c.Keys()
}

// keyWithSlash returns a fresh ed25519 key whose SHA256 fingerprint has a
// '/' in it (see loneSlash).
func keyWithSlash(t *testing.T) crypto.Signer {
	t.Helper()
	for {
		key := MustKey(t)
		if loneSlash(ssh.FingerprintSHA256(MustSSHPublic(t, key))) {
			return key
		}
	}
}

func TestTritonGo(t *testing.T) {
	k := MustStart(t, map[string]string{"KEYSD_ALLOW_LEGACY_SIGNATURES": "true"})
	ctx := context.Background()
	for _, s := range tritonGoSigners(t) {
		t.Run(s.name, func(t *testing.T) {
			login := "go-" + strings.ToLower(s.name)
			MustAccountWithKey(t, k, login, s.key)
			keys := tritonGoKeys(t, k, login, s.signer(t, login))

			listed, err := keys.List(ctx, &account.ListKeysInput{})
			if err != nil {
				t.Fatalf("List: %v", err)
			}
			if own := ssh.FingerprintLegacyMD5(MustSSHPublic(t, s.key)); len(listed) != 1 || listed[0].Fingerprint != own {
				t.Fatalf("List = %+v, want the one key %s", listed, own)
			}

			// A name that needs escaping in a path: triton-go hands it to
			// net/url unescaped, which escapes it.
			extra := keyWithSlash(t)
			name := "extra key+%41 " + s.name
			line := AuthorizedKey(t, extra, "")
			md5 := ssh.FingerprintLegacyMD5(MustSSHPublic(t, extra))
			sha := ssh.FingerprintSHA256(MustSSHPublic(t, extra))
			created, err := keys.Create(ctx, &account.CreateKeyInput{Name: name, Key: line})
			if err != nil {
				t.Fatalf("Create: %v", err)
			}
			if created.Name != name || created.Fingerprint != md5 || created.Key != line {
				t.Errorf("Create = %+v, want %s %s %s", created, name, md5, line)
			}

			for _, ref := range []string{name, md5, sha} {
				got, err := keys.Get(ctx, &account.GetKeyInput{KeyName: ref})
				if err != nil {
					t.Errorf("Get %s: %v", ref, err)
					continue
				}
				if got.Name != name || got.Fingerprint != md5 || got.Key != line {
					t.Errorf("Get %s = %+v, want %s %s", ref, got, name, md5)
				}
			}

			// The same key again, under another name: CloudAPI's 409
			// InvalidArgument, which triton-go decodes.
			_, err = keys.Create(ctx, &account.CreateKeyInput{Name: "again", Key: line})
			if !tritonerrors.IsSpecificError(err, "InvalidArgument") || !tritonerrors.IsSpecificStatusCode(err, http.StatusConflict) {
				t.Errorf("duplicate Create: %v, want 409 InvalidArgument", err)
			}

			if err := keys.Delete(ctx, &account.DeleteKeyInput{KeyName: sha}); err != nil {
				t.Fatalf("Delete %s: %v", sha, err)
			}
			if _, err := keys.Get(ctx, &account.GetKeyInput{KeyName: name}); !tritonerrors.IsResourceNotFound(err) {
				t.Errorf("Get after Delete: %v, want ResourceNotFound", err)
			}
			if listed, err := keys.List(ctx, &account.ListKeysInput{}); err != nil || len(listed) != 1 {
				t.Errorf("List after Delete = %+v, %v, want the signing key alone", listed, err)
			}
		})
	}
}

// Without the switch every triton-go request is refused: it signs no
// (request-target), and with the key file signs rsa-sha1.
func TestTritonGoWithoutLegacySwitch(t *testing.T) {
	k := MustStart(t, nil)
	ctx := context.Background()
	for _, s := range tritonGoSigners(t) {
		t.Run(s.name, func(t *testing.T) {
			login := "go-" + strings.ToLower(s.name)
			MustAccountWithKey(t, k, login, s.key)
			keys := tritonGoKeys(t, k, login, s.signer(t, login))
			own := ssh.FingerprintLegacyMD5(MustSSHPublic(t, s.key))

			calls := []struct {
				name string
				call func() error
			}{
				{"List", func() error { _, err := keys.List(ctx, &account.ListKeysInput{}); return err }},
				{"Create", func() error {
					_, err := keys.Create(ctx, &account.CreateKeyInput{Name: "new", Key: AuthorizedKey(t, MustKey(t), "")})
					return err
				}},
				{"Get", func() error { _, err := keys.Get(ctx, &account.GetKeyInput{KeyName: own}); return err }},
				{"Delete", func() error { return keys.Delete(ctx, &account.DeleteKeyInput{KeyName: own}) }},
			}
			for _, c := range calls {
				err := c.call()
				var apiErr *tritonerrors.APIError
				if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusUnauthorized || apiErr.Code != "InvalidCredentials" {
					t.Errorf("%s: %v, want 401 InvalidCredentials", c.name, err)
				}
			}
			// Refused for what it signs, not for how it writes the date.
			if log := k.stderr.String(); !strings.Contains(log, `"reason":"`+s.refusal+`"`) || strings.Contains(log, "date header") {
				t.Errorf("keysd did not refuse for %q:\n%s", s.refusal, log)
			}
			// Nothing was created or deleted.
			r := k.Admin.Do(t, "GET", "/"+login+"/keys", nil)
			var got []map[string]any
			r.JSON(t, &got)
			if len(got) != 1 || got[0]["fingerprint"] != own {
				t.Errorf("keys after refused calls: %s", r.Body)
			}
		})
	}
}
