package main

import (
	"bytes"
	"crypto"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/infrakeys/infrakeys/domain"
	"github.com/infrakeys/infrakeys/internal/testkit"
)

// MustReplicas starts n keysd replicas on one external NATS server ns,
// sharing one master key, as a deployment runs them.
func MustReplicas(tb testing.TB, ns *server.Server, n int, env map[string]string) []*keysd {
	tb.Helper()
	full := externalEnv(tb, ns)
	for k, v := range env {
		full[k] = v
	}
	var out []*keysd
	for range n {
		out = append(out, MustStart(tb, full))
	}
	return out
}

// keyLine is the "type base64" of an OpenSSH public key line.
func keyLine(line string) string {
	f := strings.Fields(line)
	return f[0] + " " + f[1]
}

// GET /:login/authorized_keys serves an account's keys and the user CA's
// trusted keys, without authentication, as text/plain; it reads its own
// writes across replicas; unknown logins are a CloudAPI 404.
func TestAuthorizedKeysRoute(t *testing.T) {
	ks := MustReplicas(t, MustNATSServer(t), 2, nil)
	a, b := ks[0], ks[1]
	laptop, desk := MustKey(t), MustKey(t)
	alice := MustAccountNamedKey(t, a, "alice", "laptop", laptop)
	if r := alice.Do(t, "POST", "/my/keys", map[string]any{"name": "my desk #2", "key": AuthorizedKey(t, desk, "comment-not-name")}); r.StatusCode != http.StatusCreated {
		t.Fatalf("add key: %d %s", r.StatusCode, r.Body)
	}
	ca := MustCAKey(t, a, "user")
	anonymous := &client{k: b, base: b.URL}

	r := anonymous.Do(t, "GET", "/alice/authorized_keys", nil)
	if r.StatusCode != http.StatusOK {
		t.Fatalf("GET on the other replica: %d %s", r.StatusCode, r.Body)
	}
	want := keyLine(AuthorizedKey(t, laptop, "")) + " laptop\n" +
		keyLine(AuthorizedKey(t, desk, "")) + " my desk #2\n" +
		"cert-authority " + keyLine(ca.PublicKey) + " keysd user CA " + ca.ID + "\n"
	if got := string(r.Body); got != want {
		t.Errorf("body\n%s\nwant\n%s", got, want)
	}
	if got, want := r.Header.Get("Content-Type"), "text/plain; charset=utf-8"; got != want {
		t.Errorf("Content-Type %q, want %q", got, want)
	}
	if got := r.Header.Get("Cache-Control"); got != "no-store" {
		t.Errorf("Cache-Control %q, want no-store", got)
	}
	head := anonymous.Do(t, "HEAD", "/alice/authorized_keys", nil)
	if head.StatusCode != http.StatusOK || len(head.Body) != 0 || head.Header.Get("Content-Length") != r.Header.Get("Content-Length") {
		t.Errorf("HEAD: %d, %d bytes, Content-Length %q", head.StatusCode, len(head.Body), head.Header.Get("Content-Length"))
	}

	// Deleted on one replica, gone from the other's next answer.
	if r := alice.Do(t, "DELETE", "/my/keys/my%20desk%20%232", nil); r.StatusCode != http.StatusNoContent {
		t.Fatalf("delete: %d %s", r.StatusCode, r.Body)
	}
	if got := string(anonymous.Do(t, "GET", "/alice/authorized_keys", nil).Body); strings.Contains(got, "my desk") || !strings.Contains(got, " laptop\n") {
		t.Errorf("after deleting the key on the other replica:\n%s", got)
	}
	// A retired CA key is no longer trusted.
	if r := a.Admin.Do(t, "DELETE", "/--admin/cas/user/keys/"+ca.ID, nil); r.StatusCode != http.StatusOK {
		t.Fatalf("retire: %d %s", r.StatusCode, r.Body)
	}
	if got := string(anonymous.Do(t, "GET", "/alice/authorized_keys", nil).Body); strings.Contains(got, "cert-authority") {
		t.Errorf("after retiring the CA key:\n%s", got)
	}

	for _, tc := range []struct {
		name, path string
		status     int
		code, msg  string
	}{
		{"ErrUnknownLogin", "/nobody/authorized_keys", http.StatusNotFound, "ResourceNotFound", "nobody does not exist"},
		{"ErrMy", "/my/authorized_keys", http.StatusConflict, "InvalidArgument", "name the account's login"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := anonymous.Do(t, "GET", tc.path, nil)
			if code, msg := r.ErrorBody(t); r.StatusCode != tc.status || code != tc.code || !strings.Contains(msg, tc.msg) {
				t.Errorf("%d %s %q, want %d %s containing %q", r.StatusCode, code, msg, tc.status, tc.code, tc.msg)
			}
		})
	}
}

// rootOwnedDir makes a directory sshd accepts an AuthorizedKeysCommand
// in: it and every directory above it owned by root and writable by no
// one else (a test's temporary directory is under the world-writable
// /tmp).
func rootOwnedDir(tb testing.TB) string {
	tb.Helper()
	dir, err := os.MkdirTemp("/run", "keysd-test-")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// MustKeysctl builds keysctl into dir.
func MustKeysctl(tb testing.TB, dir string) string {
	tb.Helper()
	bin, err := testkit.Build(dir, "github.com/infrakeys/infrakeys/cmd/keysctl")
	if err != nil {
		tb.Fatal(err)
	}
	return bin
}

// keysctl authorized-keys, run the way sshd runs it: the keys on stdout;
// on any error nothing on stdout and a non-zero status.
func TestKeysctlAuthorizedKeys(t *testing.T) {
	k := MustStart(t, nil)
	priv := MustKey(t)
	MustAccountNamedKey(t, k, "alice", "laptop", priv)
	bin := MustKeysctl(t, t.TempDir())
	run := func(args ...string) (stdout, stderr string, err error) {
		cmd := exec.Command(bin, args...)
		cmd.Env = []string{"PATH=/usr/bin:/bin"} // sshd's: no KEYSCTL_* at hand
		var o, e bytes.Buffer
		cmd.Stdout, cmd.Stderr = &o, &e
		err = cmd.Run()
		return o.String(), e.String(), err
	}
	out, errOut, err := run("--url", k.URL, "authorized-keys", "alice")
	if want := keyLine(AuthorizedKey(t, priv, "")) + " laptop\n"; err != nil || out != want {
		t.Fatalf("authorized-keys alice: %v, stdout %q, want %q\n%s", err, out, want, errOut)
	}
	for _, tc := range []struct {
		name string
		args []string
		msg  string
	}{
		{"ErrUnknownLogin", []string{"--url", k.URL, "authorized-keys", "nobody"}, "ResourceNotFound (404): nobody does not exist"},
		{"ErrNotKeysd", []string{"--url", k.URL + "/openapi.yaml?", "authorized-keys", "alice"}, "not text/plain"},
		{"ErrUnreachable", []string{"--url", "http://" + freeAddr(t), "authorized-keys", "alice"}, "connection refused"},
		{"ErrNoLogin", []string{"--url", k.URL, "authorized-keys"}, "want 1 argument"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, errOut, err := run(tc.args...)
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() == 0 {
				t.Errorf("exit: %v, want a non-zero status", err)
			}
			if out != "" {
				t.Errorf("stdout %q, want nothing", out)
			}
			if !strings.Contains(errOut, tc.msg) {
				t.Errorf("stderr %q, want %q", errOut, tc.msg)
			}
		})
	}
}

// A real sshd with no authorized_keys file and keysctl authorized-keys as
// its AuthorizedKeysCommand: an account's key logs in, and no longer
// once deleted; a certificate keysd signed logs in through the
// cert-authority line, without TrustedUserCAKeys.
func TestAuthorizedKeysCommandSSH(t *testing.T) {
	k := MustStart(t, nil)
	dir := t.TempDir()
	bin := MustKeysctl(t, rootOwnedDir(t))
	// sshd logs in as root: the account is root.
	laptop, desk := MustKey(t), MustKey(t)
	MustAccountNamedKey(t, k, "root", "laptop", laptop)
	if r := k.Admin.Do(t, "POST", "/root/keys", map[string]any{"name": "desk", "key": AuthorizedKey(t, desk, "")}); r.StatusCode != http.StatusCreated {
		t.Fatalf("add key: %d %s", r.StatusCode, r.Body)
	}
	sshd := testkit.StartSSHD(t, testkit.SSHDConfig{Extra: []string{
		"AuthorizedKeysCommand " + bin + " --url " + k.URL + " authorized-keys %u",
		"AuthorizedKeysCommandUser root",
	}})
	login := func(keyFile string, opts ...string) (string, error) {
		return sshd.SSH(t, "root", append([]string{"-i", keyFile, "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"}, opts...), "echo", "logged-in")
	}
	deskFile := privateKeyFile(t, dir, "id_desk", desk)
	if out, err := login(deskFile); err != nil || !strings.Contains(out, "logged-in") {
		t.Fatalf("login with an account key: %v\n%s\nsshd:\n%s", err, out, sshd.Log)
	}
	if r := k.Admin.Do(t, "DELETE", "/root/keys/desk", nil); r.StatusCode != http.StatusNoContent {
		t.Fatalf("delete: %d %s", r.StatusCode, r.Body)
	}
	if out, err := login(deskFile); err == nil {
		t.Fatalf("login with a deleted key succeeded:\n%s", out)
	}

	// alice's key is not root's: only the cert-authority line can let
	// her certificate for principal root in.
	MustCAKey(t, k, "user")
	alicePriv := MustKey(t)
	alice := MustAccountNamedKey(t, k, "alice", "laptop", alicePriv)
	if r := k.Admin.Do(t, "PUT", "/--admin/accounts/alice/policy", map[string]any{"certificatePrincipals": []string{"root"}}); r.StatusCode != http.StatusOK {
		t.Fatalf("policy: %d %s", r.StatusCode, r.Body)
	}
	aliceFile := privateKeyFile(t, dir, "id_alice", alicePriv)
	if out, err := login(aliceFile); err == nil {
		t.Fatalf("alice's key without a certificate logged in as root:\n%s", out)
	}
	cert := alice.MustSign(t, "/my/keys/laptop/certificates", map[string]any{"principals": []string{"root"}, "validity": "10m"})
	certFile := testkit.WriteFile(t, dir, "id_alice-cert.pub", cert.Certificate+"\n")
	if out, err := login(aliceFile, "-o", "CertificateFile="+certFile); err != nil || !strings.Contains(out, "logged-in") {
		t.Fatalf("login with a certificate: %v\n%s\nsshd:\n%s", err, out, sshd.Log)
	}
	if !strings.Contains(sshd.Log.String(), "ED25519-CERT") {
		t.Errorf("sshd did not log a certificate login:\n%s", sshd.Log)
	}
}

// sshd reads expiry-time as AuthorizedKeys writes it: a copy of the
// lines (a cache, a file someone kept) stops admitting a key once it
// has expired.
func TestAuthorizedKeysExpiryTimeSSH(t *testing.T) {
	dir, keysDir := t.TempDir(), rootOwnedDir(t)
	expired, valid := MustKey(t), MustKey(t)
	now := time.Now()
	ago, ahead := now.Add(-time.Minute), now.Add(time.Hour)
	acct := &domain.Account{Login: "root", Keys: []domain.AccountKey{
		{Name: "expired", Key: AuthorizedKey(t, expired, ""), Expires: &ago},
		{Name: "valid", Key: AuthorizedKey(t, valid, ""), Expires: &ahead},
	}}
	// Rendered an hour ago, when neither key had expired.
	lines := domain.AuthorizedKeys(acct, nil, now.Add(-time.Hour))
	if strings.Count(lines, "expiry-time=") != 2 {
		t.Fatalf("want both keys with expiry-time:\n%s", lines)
	}
	file := filepath.Join(keysDir, "authorized_keys")
	if err := os.WriteFile(file, []byte(lines), 0o644); err != nil {
		t.Fatal(err)
	}
	sshd := testkit.StartSSHD(t, testkit.SSHDConfig{Extra: []string{
		"AuthorizedKeysCommand " + testkit.NeedTool(t, "cat") + " " + file,
		"AuthorizedKeysCommandUser root",
	}})
	login := func(name string, priv crypto.Signer) (string, error) {
		return sshd.SSH(t, "root", []string{"-i", privateKeyFile(t, dir, name, priv),
			"-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"}, "true")
	}
	if out, err := login("id_valid", valid); err != nil {
		t.Fatalf("login with the key that expires in an hour: %v\n%s\nsshd:\n%s", err, out, sshd.Log)
	}
	if out, err := login("id_expired", expired); err == nil {
		t.Fatalf("login with the key that expired a minute ago succeeded:\n%s", out)
	}
	if !strings.Contains(sshd.Log.String(), "Refused by key options") { // expiry-time, its only option
		t.Errorf("sshd did not refuse the key for its options:\n%s", sshd.Log)
	}
}
