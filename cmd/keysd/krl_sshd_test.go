package main

import (
	"errors"
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/infrakeys/infrakeys/domain"
	"github.com/infrakeys/infrakeys/internal/testkit"
)

// buildKeysctl builds the keysctl binary once per test run.
func buildKeysctl(tb testing.TB) string {
	return buildOnce(tb, "github.com/infrakeys/infrakeys/cmd/keysctl")
}

// fetchKRL runs keysctl krl fetch file against k, as a timer on the host
// would (no account, no key), and returns its exit status.
func fetchKRL(tb testing.TB, k *keysd, file string) int {
	tb.Helper()
	cmd := exec.Command(buildKeysctl(tb), "--url", k.URL, "krl", "fetch", file)
	cmd.Env = []string{"HOME=" + tb.TempDir()}
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &exit) && exit.ExitCode() == 3 && len(out) == 0:
		return 3
	}
	tb.Fatalf("keysctl krl fetch: %v\n%s", err, out)
	return -1
}

// revokedByKeygen asks ssh-keygen -Q whether the KRL file revokes the key
// or certificate in keyFile.
func revokedByKeygen(tb testing.TB, krlFile, keyFile string) bool {
	tb.Helper()
	out, err := exec.Command(testkit.NeedTool(tb, "ssh-keygen"), "-Q", "-f", krlFile, keyFile).CombinedOutput()
	s := string(out)
	switch {
	case err == nil && strings.Contains(s, ": ok"):
		return false
	case err != nil && strings.Contains(s, ": REVOKED"):
		return true
	}
	tb.Fatalf("ssh-keygen -Q -f %s %s: %v\n%s", krlFile, keyFile, err, out)
	return false
}

// The "done when": sshd trusts the user CA and reads keysd's
// revocation list, fetched by keysctl, as RevokedKeys. A certificate
// keysd signed logs in; once revoked (by serial) it is refused, and so is
// a certificate of a key deleted afterwards, while another certificate
// still logs in; ssh-keygen -Q agrees. A host key of a removed instance
// is revoked too.
func TestKRLWithSSHD(t *testing.T) {
	k := MustStartLM(t, nil)
	dir := t.TempDir()
	MustCAKey(t, k, "user")
	laptop, desk := MustKey(t), MustKey(t)
	alice := MustAccountNamedKey(t, k, "alice", "laptop", laptop)
	if r := alice.Do(t, "POST", "/my/keys", map[string]any{"name": "desk", "key": AuthorizedKey(t, desk, "")}); r.StatusCode != http.StatusCreated {
		t.Fatalf("add key: %d %s", r.StatusCode, r.Body)
	}
	if r := k.Admin.Do(t, "PUT", "/--admin/accounts/alice/policy", map[string]any{"certificatePrincipals": []string{"root"}}); r.StatusCode != http.StatusOK {
		t.Fatalf("policy: %d %s", r.StatusCode, r.Body)
	}
	krlFile := filepath.Join(dir, "revoked.krl")
	if got := fetchKRL(t, k, krlFile); got != 0 {
		t.Fatalf("first fetch: exit status %d", got)
	}
	sshd := testkit.StartSSHD(t, testkit.SSHDConfig{
		TrustedUserCAKeys: MustCAPublic(t, k, "user", ""),
		Extra:             []string{"RevokedKeys " + krlFile},
	})
	laptopFile, deskFile := privateKeyFile(t, dir, "id_laptop", laptop), privateKeyFile(t, dir, "id_desk", desk)
	deskPub := testkit.WriteFile(t, dir, "id_desk.pub", AuthorizedKey(t, desk, "")+"\n")

	// sign returns a new certificate of the key name, written to a file.
	n := 0
	sign := func(name string) (certJSON, string) {
		t.Helper()
		n++
		c := alice.MustSign(t, "/my/keys/"+name+"/certificates", map[string]any{"principals": []string{"root"}})
		return c, testkit.WriteFile(t, dir, fmt.Sprintf("cert-%d.pub", n), c.Certificate+"\n")
	}
	login := func(what, keyFile, certFile string, want bool) {
		t.Helper()
		out, err := sshd.SSH(t, "root", userLogin(keyFile, certFile), "true")
		if got := err == nil; got != want {
			t.Errorf("%s: logged in %v, want %v\n%s", what, got, want, out)
		}
	}
	revoked, revokedFile := sign("laptop")
	kept, keptFile := sign("laptop")
	_, deskCertFile := sign("desk")
	login("Revoked-to-be, before", laptopFile, revokedFile, true)
	login("Desk, before", deskFile, deskCertFile, true)
	if got := fetchKRL(t, k, krlFile); got != 3 {
		t.Errorf("fetch with nothing revoked since: exit status %d, want 3", got)
	}

	if r := alice.Do(t, "DELETE", fmt.Sprintf("/my/certificates/%d", revoked.Serial), nil); r.StatusCode != http.StatusNoContent {
		t.Fatalf("revoke: %d %s", r.StatusCode, r.Body)
	}
	if got := fetchKRL(t, k, krlFile); got != 0 {
		t.Fatalf("fetch after a revocation: exit status %d, want 0", got)
	}
	login("Revoked", laptopFile, revokedFile, false)
	if !strings.Contains(sshd.Log.String(), "revoked") {
		t.Errorf("sshd did not log the certificate as revoked:\n%s", sshd.Log)
	}
	login("Kept", laptopFile, keptFile, true)
	if !revokedByKeygen(t, krlFile, revokedFile) || revokedByKeygen(t, krlFile, keptFile) {
		t.Errorf("ssh-keygen -Q: certificate %d should be revoked, %d not", revoked.Serial, kept.Serial)
	}

	if r := alice.Do(t, "DELETE", "/my/keys/desk", nil); r.StatusCode != http.StatusNoContent {
		t.Fatalf("delete key: %d %s", r.StatusCode, r.Body)
	}
	if got := fetchKRL(t, k, krlFile); got != 0 {
		t.Fatalf("fetch after a deletion: exit status %d, want 0", got)
	}
	login("Deleted key's certificate", deskFile, deskCertFile, false)
	login("Kept, after", laptopFile, keptFile, true)
	if !revokedByKeygen(t, krlFile, deskPub) || !revokedByKeygen(t, krlFile, deskCertFile) {
		t.Errorf("ssh-keygen -Q: the deleted key and its certificate should be revoked")
	}

	// Host keys: an instance removed revokes its keys, another's stay.
	gonePriv, gonePub := genKey(t, "")
	livePriv, livePub := genKey(t, "")
	MustDriverKey(t, k, "vm-gone", "ssh-host", gonePriv)
	MustDriverKey(t, k, "vm-live", "ssh-host", livePriv)
	manager, _ := MustToken(t, k, "manager", domain.RoleKeysManage)
	if r := k.Bearer(manager).Do(t, "DELETE", lmPrefix+"/instances/vm-gone", nil); r.StatusCode/100 != 2 {
		t.Fatalf("remove instance: %d %s", r.StatusCode, r.Body)
	}
	if got := fetchKRL(t, k, krlFile); got != 0 {
		t.Fatalf("fetch after an instance removal: exit status %d, want 0", got)
	}
	goneFile := testkit.WriteFile(t, dir, "gone.pub", gonePub+"\n")
	liveFile := testkit.WriteFile(t, dir, "live.pub", livePub+"\n")
	if !revokedByKeygen(t, krlFile, goneFile) || revokedByKeygen(t, krlFile, liveFile) {
		t.Errorf("ssh-keygen -Q: the removed instance's host key should be revoked, the live one's not")
	}
}
