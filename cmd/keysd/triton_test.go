package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

// The real triton CLI (npm package triton, version 7) manages keys against
// keysd, signing its requests with ed25519, ECDSA and RSA keys made by
// ssh-keygen. .ci/run installs it under .ci/node_modules; elsewhere set
// KEYSD_TRITON or put triton on PATH. Outside CI a missing triton skips the
// test; in CI (CI set) it fails it.

// findTool returns the path of a tool the test drives, or skips (fails in
// CI) when it is missing.
func findTool(t *testing.T, name, envVar string, also ...string) string {
	t.Helper()
	if p := os.Getenv(envVar); p != "" {
		return p
	}
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, p := range also {
		if abs, err := filepath.Abs(p); err == nil {
			if _, err := os.Stat(abs); err == nil {
				return abs
			}
		}
	}
	msg := name + " not found (set " + envVar + ", or run .ci/run which installs it)"
	if os.Getenv("CI") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// sshKey is a key pair ssh-keygen wrote into a test HOME's ~/.ssh.
type sshKey struct {
	Path    string // private key file; the public key is Path + ".pub"
	Comment string
	Pub     ssh.PublicKey
	MD5     string // colon hex, as CloudAPI's fingerprint field
	SHA256  string // "SHA256:..."
}

func sshKeygen(t *testing.T, keygen, dir, file, comment string, args ...string) sshKey {
	t.Helper()
	path := filepath.Join(dir, file)
	cmd := exec.Command(keygen, append(args, "-q", "-N", "", "-C", comment, "-f", path)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen %v: %v\n%s", args, err, out)
	}
	line, err := os.ReadFile(path + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	pub, _, _, _, err := ssh.ParseAuthorizedKey(line)
	if err != nil {
		t.Fatal(err)
	}
	return sshKey{Path: path, Comment: comment, Pub: pub, MD5: ssh.FingerprintLegacyMD5(pub), SHA256: ssh.FingerprintSHA256(pub)}
}

// tritonCLI runs triton as one account, signing with one key.
type tritonCLI struct {
	bin string
	env []string
}

func (c tritonCLI) as(keyID string) tritonCLI {
	env := append([]string(nil), c.env...)
	return tritonCLI{bin: c.bin, env: append(env, "TRITON_KEY_ID="+keyID)}
}

// run returns triton's stdout; it fails the test when triton fails.
func (c tritonCLI) run(t *testing.T, args ...string) string {
	t.Helper()
	out, errOut, err := c.try(args...)
	if err != nil {
		t.Fatalf("triton %s: %v\nstdout: %s\nstderr: %s", strings.Join(args, " "), err, out, errOut)
	}
	return out
}

func (c tritonCLI) try(args ...string) (stdout, stderr string, err error) {
	cmd := exec.Command(c.bin, args...)
	cmd.Env = c.env
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return o.String(), e.String(), err
}

// tritonKey is a key as `triton key list -j` and `key get -j` print it.
type tritonKey struct {
	Name        string `json:"name"`
	Fingerprint string `json:"fingerprint"`
	Key         string `json:"key"`
}

// decodeKeys reads JSON output: one array, or one object per line.
func decodeKeys(t *testing.T, out string) []tritonKey {
	t.Helper()
	out = strings.TrimSpace(out)
	var keys []tritonKey
	if strings.HasPrefix(out, "[") {
		if err := json.Unmarshal([]byte(out), &keys); err != nil {
			t.Fatalf("decode %q: %v", out, err)
		}
		return keys
	}
	for _, line := range strings.Split(out, "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		var k tritonKey
		if err := json.Unmarshal([]byte(line), &k); err != nil {
			t.Fatalf("decode %q: %v", line, err)
		}
		keys = append(keys, k)
	}
	return keys
}

func TestTritonCLI(t *testing.T) {
	triton := findTool(t, "triton", "KEYSD_TRITON", "../../.ci/node_modules/.bin/triton")
	keygen := findTool(t, "ssh-keygen", "KEYSD_SSH_KEYGEN")

	home := t.TempDir()
	sshDir := filepath.Join(home, ".ssh")
	if err := os.Mkdir(sshDir, 0o700); err != nil {
		t.Fatal(err)
	}
	signers := []struct {
		name string
		key  sshKey
	}{
		{"ed25519", sshKeygen(t, keygen, sshDir, "id_ed25519", "tri-ed25519", "-t", "ed25519")},
		{"ecdsa", sshKeygen(t, keygen, sshDir, "id_ecdsa", "tri-ecdsa", "-t", "ecdsa", "-b", "256")},
		{"rsa", sshKeygen(t, keygen, sshDir, "id_rsa", "tri-rsa", "-t", "rsa", "-b", "3072")},
	}
	// Keys only added and deleted, never used to sign: kept out of ~/.ssh.
	spare := t.TempDir()

	k := MustStart(t, nil)
	first, err := os.ReadFile(signers[0].key.Path + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	if r := k.Admin.Do(t, "POST", "/--admin/accounts", map[string]any{"login": "tri", "key": string(first)}); r.StatusCode != 201 {
		t.Fatalf("create account: %d %s", r.StatusCode, r.Body)
	}

	// A clean environment: nothing from the developer's own triton or
	// ssh-agent set-up may leak in.
	cli := tritonCLI{bin: triton, env: []string{
		"HOME=" + home,
		"PATH=" + os.Getenv("PATH"), // SSH_AUTH_SOCK left unset: no agent
		"TRITON_URL=" + k.URL,
		"TRITON_ACCOUNT=tri",
		"TRITON_PROFILE=env",
	}}

	// The ed25519 key (the account's first) adds the other two signing keys.
	ed := cli.as(signers[0].key.MD5)
	for _, s := range signers[1:] {
		out := ed.run(t, "key", "add", s.key.Path+".pub")
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
			c := cli.as(keyID)

			listed := decodeKeys(t, c.run(t, "key", "list", "-j"))
			byName := map[string]tritonKey{}
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
			extra := sshKeygen(t, keygen, spare, "extra-"+s.name, "comment-"+s.name, "-t", "ed25519")
			name := "extra-" + s.name
			out := c.run(t, "key", "add", "-n", name, extra.Path+".pub")
			if !strings.Contains(out, name) {
				t.Errorf("key add -n %s: output %q", name, out)
			}
			wantLine := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(extra.Pub)))
			for _, ref := range []string{name, extra.MD5, extra.SHA256} {
				got := decodeKeys(t, c.run(t, "key", "get", "-j", ref))
				if len(got) != 1 || got[0].Name != name || got[0].Fingerprint != extra.MD5 {
					t.Errorf("key get %s = %+v, want %s %s", ref, got, name, extra.MD5)
					continue
				}
				if !strings.HasPrefix(got[0].Key, wantLine) {
					t.Errorf("key get %s: key %q, want %q", ref, got[0].Key, wantLine)
				}
				// Without -j triton prints the public key itself.
				if plain := c.run(t, "key", "get", ref); !strings.HasPrefix(strings.TrimSpace(plain), wantLine) {
					t.Errorf("key get %s printed %q, want %q", ref, plain, wantLine)
				}
			}
			c.run(t, "key", "delete", "-y", extra.SHA256)
			if out, errOut, err := c.try("key", "get", name); err == nil {
				t.Errorf("key get %s after delete succeeded: %s", name, out)
			} else if !strings.Contains(errOut, "ResourceNotFound") && !strings.Contains(strings.ToLower(errOut), "not found") {
				t.Errorf("key get %s after delete: %q, want a not-found error", name, errOut)
			}
			for _, lk := range decodeKeys(t, c.run(t, "key", "list", "-j")) {
				if lk.Name == name {
					t.Errorf("key list still shows %s after delete", name)
				}
			}
		})
	}

	// A key triton signs with but the account does not have: refused.
	stranger := sshKeygen(t, keygen, sshDir, "id_stranger", "stranger", "-t", "ed25519")
	if out, errOut, err := cli.as(stranger.MD5).try("key", "list", "-j"); err == nil {
		t.Errorf("key list signed by an unknown key succeeded: %s", out)
	} else if !strings.Contains(errOut, "InvalidCredentials") && !strings.Contains(errOut, "401") {
		t.Errorf("key list signed by an unknown key: %q, want InvalidCredentials", errOut)
	}

	// Deleting a signing key with triton itself, signing with another.
	rsa := signers[2].key
	cli.as(signers[0].key.SHA256).run(t, "key", "delete", "-y", rsa.Comment)
	if out, _, err := cli.as(rsa.MD5).try("key", "list"); err == nil {
		t.Errorf("the deleted RSA key still signs: %s", out)
	}
}
