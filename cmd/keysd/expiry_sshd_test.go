package main

import (
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/infrakeys/infrakeys/internal/testkit"
)

// The "done when", for expiry: a host that keeps a static copy of
// an account's keys (an authorized_keys file, no expiry-time options in
// it) and reads keysd's revocation list as RevokedKeys refuses a key once
// it has expired, as soon as the list it fetched has the KeyExpired; a key
// without expiry still logs in. The expired key's certificate, capped at
// the key's expiry, is refused by its own validity too.
func TestExpiredKeyWithSSHD(t *testing.T) {
	// Mostly waiting (timeouts, expiries, AckWait): it runs beside the
	// other waiting tests once the rest of the package is done.
	t.Parallel()
	k := MustStartLM(t, nil)
	dir := t.TempDir()
	MustCAKey(t, k, "user")
	laptop, temp := MustKey(t), MustKey(t)
	alice := MustAccountNamedKey(t, k, "alice", "laptop", laptop)
	if r := k.Admin.Do(t, "PUT", "/--admin/accounts/alice/policy", map[string]any{"certificatePrincipals": []string{"root"}}); r.StatusCode != http.StatusOK {
		t.Fatalf("policy: %d %s", r.StatusCode, r.Body)
	}
	buildKeysctl(t) // before the clock starts: a cold build takes seconds
	// Room for the logins below before it expires, on a loaded machine.
	expires := time.Now().Add(10 * time.Second).UTC().Truncate(time.Second)
	if r := alice.Do(t, "POST", "/my/keys", map[string]any{"name": "temp", "key": AuthorizedKey(t, temp, ""), "expires": expires.Format(time.RFC3339)}); r.StatusCode != http.StatusCreated {
		t.Fatalf("add expiring key: %d %s", r.StatusCode, r.Body)
	}
	cert := alice.MustSign(t, "/my/keys/temp/certificates", map[string]any{"principals": []string{"root"}, "validity": "1h"})
	if !cert.ValidBefore.Equal(expires) {
		t.Errorf("certificate of the expiring key valid before %s, want its key's expiry %s", cert.ValidBefore, expires)
	}

	krlFile := filepath.Join(dir, "revoked.krl")
	if got := fetchKRL(t, k, krlFile); got != 0 {
		t.Fatalf("first fetch: exit status %d", got)
	}
	sshd := testkit.StartSSHD(t, testkit.SSHDConfig{
		TrustedUserCAKeys: MustCAPublic(t, k, "user", ""),
		AuthorizedKeys:    AuthorizedKey(t, laptop, "laptop") + "\n" + AuthorizedKey(t, temp, "temp") + "\n",
		Extra:             []string{"RevokedKeys " + krlFile},
	})
	laptopFile, tempFile := privateKeyFile(t, dir, "id_laptop", laptop), privateKeyFile(t, dir, "id_temp", temp)
	tempPub := testkit.WriteFile(t, dir, "id_temp.pub", AuthorizedKey(t, temp, "")+"\n")
	certFile := testkit.WriteFile(t, dir, "id_temp-cert.pub", cert.Certificate+"\n")
	login := func(what string, opts []string, want bool) {
		t.Helper()
		out, err := sshd.SSH(t, "root", append(opts, "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"), "true")
		if got := err == nil; got != want {
			t.Errorf("%s: logged in %v, want %v\n%s", what, got, want, out)
		}
	}
	login("Expiring key, before its expiry", []string{"-i", tempFile}, true)
	login("Its certificate, before", userLogin(tempFile, certFile), true)

	// The list changes when the KeyExpired lands (keysctl exits 0 then).
	eventually(t, 30*time.Second, "the revocation list has the expired key", func() bool { return fetchKRL(t, k, krlFile) == 0 })
	if time.Now().Before(expires) {
		t.Fatalf("the revocation list changed at %s, before the expiry %s", time.Now(), expires)
	}
	login("Expired key from the static file", []string{"-i", tempFile}, false)
	if !strings.Contains(sshd.Log.String(), "revoked") {
		t.Errorf("sshd did not refuse the expired key as revoked:\n%s", sshd.Log)
	}
	login("Expired key's certificate", userLogin(tempFile, certFile), false)
	login("Key without expiry", []string{"-i", laptopFile}, true)
	if !revokedByKeygen(t, krlFile, tempPub) || !revokedByKeygen(t, krlFile, certFile) {
		t.Errorf("ssh-keygen -Q: the expired key and its certificate should be revoked")
	}
}
