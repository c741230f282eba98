package main

import (
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

// The real triton CLI (npm package triton, version 7) manages keys against
// keysd, signing its requests with ed25519, ECDSA and RSA keys made by
// ssh-keygen. .ci/run installs it under .ci/node_modules; elsewhere set
// KEYSD_TRITON or put triton on PATH. Outside CI a missing triton skips the
// test; in CI (CI set) it fails it.

func TestTritonCLI(t *testing.T) {
	triton := findTool(t, "triton", "KEYSD_TRITON", "../../.ci/node_modules/.bin/triton")
	home := newCLIHome(t)
	signers := []struct {
		name string
		key  sshKey
	}{
		{"ed25519", home.SigningKey(t, "id_ed25519", "tri-ed25519", "-t", "ed25519")},
		{"ecdsa", home.SigningKey(t, "id_ecdsa", "tri-ecdsa", "-t", "ecdsa", "-b", "256")},
		{"rsa", home.SigningKey(t, "id_rsa", "tri-rsa", "-t", "rsa", "-b", "3072")},
	}

	k := MustStart(t, nil)
	mustAccountWithKeyFile(t, k, "tri", signers[0].key)
	cli := home.Tool(triton, "TRITON_URL="+k.URL, "TRITON_ACCOUNT=tri", "TRITON_PROFILE=env")
	as := func(keyID string) cliTool { return cli.With("TRITON_KEY_ID=" + keyID) }

	// The ed25519 key (the account's first) adds the other two signing keys.
	ed := as(signers[0].key.MD5)
	for _, s := range signers[1:] {
		out := ed.Run(t, "key", "add", s.key.Path+".pub")
		if !strings.Contains(out, s.key.Comment) || !strings.Contains(out, s.key.MD5) {
			t.Errorf("key add %s: output %q names neither %q nor %q", s.name, out, s.key.Comment, s.key.MD5)
		}
	}

	for i, s := range signers {
		t.Run(s.name, func(t *testing.T) {
			// Alternate the two forms of TRITON_KEY_ID triton accepts.
			keyID := s.key.MD5
			if i%2 == 1 {
				keyID = s.key.SHA256
			}
			c := as(keyID)

			listed := decodeKeys(t, c.Run(t, "key", "list", "-j"))
			byName := map[string]cliKey{}
			for _, lk := range listed {
				byName[lk.Name] = lk
			}
			for _, want := range signers {
				got, ok := byName[want.key.Comment]
				if !ok {
					t.Errorf("key list lacks %q: %+v", want.key.Comment, listed)
					continue
				}
				if got.Fingerprint != want.key.MD5 {
					t.Errorf("key %q fingerprint = %q, want %q", want.key.Comment, got.Fingerprint, want.key.MD5)
				}
			}
			if len(listed) != len(signers) {
				t.Errorf("key list has %d keys, want %d: %+v", len(listed), len(signers), listed)
			}

			// A new key, added under an explicit name, found by name, by
			// MD5 and by SHA256 fingerprint, then deleted.
			extra := home.SpareKey(t, "extra-"+s.name, "comment-"+s.name, "-t", "ed25519")
			name := "extra-" + s.name
			out := c.Run(t, "key", "add", "-n", name, extra.Path+".pub")
			if !strings.Contains(out, name) {
				t.Errorf("key add -n %s: output %q", name, out)
			}
			wantLine := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(extra.Pub)))
			for _, ref := range []string{name, extra.MD5, extra.SHA256} {
				got := decodeKeys(t, c.Run(t, "key", "get", "-j", ref))
				if len(got) != 1 || got[0].Name != name || got[0].Fingerprint != extra.MD5 {
					t.Errorf("key get %s = %+v, want %s %s", ref, got, name, extra.MD5)
					continue
				}
				if !strings.HasPrefix(got[0].Key, wantLine) {
					t.Errorf("key get %s: key %q, want %q", ref, got[0].Key, wantLine)
				}
				// Without -j triton prints the public key itself.
				if plain := c.Run(t, "key", "get", ref); !strings.HasPrefix(strings.TrimSpace(plain), wantLine) {
					t.Errorf("key get %s printed %q, want %q", ref, plain, wantLine)
				}
			}
			c.Run(t, "key", "delete", "-y", extra.SHA256)
			if out, errOut, err := c.Try("key", "get", name); err == nil {
				t.Errorf("key get %s after delete succeeded: %s", name, out)
			} else if !strings.Contains(errOut, "ResourceNotFound") && !strings.Contains(strings.ToLower(errOut), "not found") {
				t.Errorf("key get %s after delete: %q, want a not-found error", name, errOut)
			}
			for _, lk := range decodeKeys(t, c.Run(t, "key", "list", "-j")) {
				if lk.Name == name {
					t.Errorf("key list still shows %s after delete", name)
				}
			}
		})
	}

	// A key triton signs with but the account does not have: refused.
	stranger := home.SigningKey(t, "id_stranger", "stranger", "-t", "ed25519")
	if out, errOut, err := as(stranger.MD5).Try("key", "list", "-j"); err == nil {
		t.Errorf("key list signed by an unknown key succeeded: %s", out)
	} else if !strings.Contains(errOut, "InvalidCredentials") && !strings.Contains(errOut, "401") {
		t.Errorf("key list signed by an unknown key: %q, want InvalidCredentials", errOut)
	}

	// Deleting a signing key with triton itself, signing with another.
	rsa := signers[2].key
	as(signers[0].key.SHA256).Run(t, "key", "delete", "-y", rsa.Comment)
	if out, _, err := as(rsa.MD5).Try("key", "list"); err == nil {
		t.Errorf("the deleted RSA key still signs: %s", out)
	}
}
