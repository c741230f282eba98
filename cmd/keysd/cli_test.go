package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

// What the tests of real command-line clients (triton, smartdc) share: a
// HOME whose ~/.ssh holds keys made by ssh-keygen, and a way to run a
// client in it.

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

// sshKey is a key pair ssh-keygen wrote.
type sshKey struct {
	Path    string // private key file; the public key is Path + ".pub"
	Comment string
	Pub     ssh.PublicKey
	MD5     string // colon hex, as CloudAPI's fingerprint field
	SHA256  string // "SHA256:..."
}

// Line is the public key as an OpenSSH line, comment included.
func (k sshKey) Line(t *testing.T) string {
	t.Helper()
	line, err := os.ReadFile(k.Path + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	return string(line)
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

// loneSlash reports whether a SHA256 fingerprint has a '/' (about half
// do), but never two in a row. triton-go and smartdc put a fingerprint into
// the path without escaping its '/', so keysd must read the rest of the
// path as the key; and both collapse "//" to "/", losing the fingerprint,
// so no server could find such a key by it through them.
func loneSlash(fp string) bool {
	return strings.Contains(fp, "/") && !strings.Contains(fp, "//")
}

// cliHome is the HOME of a real client: the client finds its private keys
// in ~/.ssh, and nothing of the developer's own configuration or ssh-agent
// leaks in.
type cliHome struct {
	keygen string
	dir    string
	// spare holds keys only added and deleted, never used to sign: kept
	// out of ~/.ssh so that a client never picks one.
	spare string
}

func newCLIHome(t *testing.T) *cliHome {
	t.Helper()
	h := &cliHome{keygen: findTool(t, "ssh-keygen", "KEYSD_SSH_KEYGEN"), dir: t.TempDir(), spare: t.TempDir()}
	if err := os.Mkdir(filepath.Join(h.dir, ".ssh"), 0o700); err != nil {
		t.Fatal(err)
	}
	return h
}

// SigningKey makes a key in ~/.ssh, where clients look for theirs.
func (h *cliHome) SigningKey(t *testing.T, file, comment string, args ...string) sshKey {
	t.Helper()
	return sshKeygen(t, h.keygen, filepath.Join(h.dir, ".ssh"), file, comment, args...)
}

// SpareKey makes a key outside ~/.ssh.
func (h *cliHome) SpareKey(t *testing.T, file, comment string, args ...string) sshKey {
	t.Helper()
	return sshKeygen(t, h.keygen, h.spare, file, comment, args...)
}

// Tool is bin run in this HOME with the variables vars ("NAME=value") and
// PATH; SSH_AUTH_SOCK is left unset, so there is no agent.
func (h *cliHome) Tool(bin string, vars ...string) cliTool {
	return cliTool{bin: bin, env: append([]string{"HOME=" + h.dir, "PATH=" + os.Getenv("PATH")}, vars...)}
}

// mustAccountWithKeyFile creates login with key as its first key.
func mustAccountWithKeyFile(t *testing.T, k *keysd, login string, key sshKey) {
	t.Helper()
	if r := k.Admin.Do(t, "POST", "/--admin/accounts", map[string]any{"login": login, "key": key.Line(t)}); r.StatusCode != http.StatusCreated {
		t.Fatalf("create account %s: %d %s", login, r.StatusCode, r.Body)
	}
}

// cliTool runs one client program with one environment.
type cliTool struct {
	bin string
	env []string
}

// With returns the tool with more environment variables ("NAME=value").
func (c cliTool) With(vars ...string) cliTool {
	return cliTool{bin: c.bin, env: append(append([]string(nil), c.env...), vars...)}
}

// Run returns the tool's stdout; it fails the test when the tool fails.
func (c cliTool) Run(t *testing.T, args ...string) string {
	t.Helper()
	out, errOut, err := c.Try(args...)
	if err != nil {
		t.Fatalf("%s %s: %v\nstdout: %s\nstderr: %s", filepath.Base(c.bin), strings.Join(args, " "), err, out, errOut)
	}
	return out
}

// Try runs the tool and returns what it printed.
func (c cliTool) Try(args ...string) (stdout, stderr string, err error) {
	cmd := exec.Command(c.bin, args...)
	cmd.Env = c.env
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return o.String(), e.String(), err
}

// cliKey is a key as the clients print it in JSON.
type cliKey struct {
	Name        string `json:"name"`
	Fingerprint string `json:"fingerprint"`
	Key         string `json:"key"`
}

// decodeKeys reads JSON output: one array, or one object per line, or one
// object over several lines.
func decodeKeys(t *testing.T, out string) []cliKey {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(out))
	var keys []cliKey
	for dec.More() {
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			t.Fatalf("decode %q: %v", out, err)
		}
		if bytes.HasPrefix(raw, []byte("[")) {
			var arr []cliKey
			if err := json.Unmarshal(raw, &arr); err != nil {
				t.Fatalf("decode %q: %v", raw, err)
			}
			keys = append(keys, arr...)
			continue
		}
		var k cliKey
		if err := json.Unmarshal(raw, &k); err != nil {
			t.Fatalf("decode %q: %v", raw, err)
		}
		keys = append(keys, k)
	}
	return keys
}
