package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

// The CA and certificate verbs, end to end against a keysd process: create
// and list CA keys, print the trusted keys, sign a certificate to a file,
// list and revoke it, retire a CA key.
func TestCertificates(t *testing.T) {
	dir := t.TempDir()
	_, ctl, must := MustAdminKeysd(t, dir)

	var caKey struct{ ID, PublicKey string }
	if err := json.Unmarshal([]byte(must("ca", "create", "user")), &caKey); err != nil || caKey.ID == "" {
		t.Fatalf("ca create: %v %+v", err, caKey)
	}
	must("ca", "create", "host", "--type", "ecdsa-p256")
	if got := must("ca", "public", "user"); got != caKey.PublicKey+"\n" {
		t.Errorf("ca public user = %q, want %q", got, caKey.PublicKey)
	}
	if got := must("ca", "public", "host", "--known-hosts"); !strings.HasPrefix(got, "@cert-authority * ecdsa-sha2-nistp256 ") {
		t.Errorf("ca public host --known-hosts = %q", got)
	}
	if got := must("ca", "list"); !strings.Contains(got, caKey.ID) || !strings.Contains(got, `"host"`) {
		t.Errorf("ca list = %s", got)
	}

	_, bobPub := MustKeyFiles(t, dir, "bob-laptop")
	must("account", "create", "bob", "--key", bobPub)
	must("account", "policy", "bob", "--certificate-principal", "bob", "--certificate-principal", "deploy", "--certificate-max-validity", "2h")
	certFile := filepath.Join(dir, "bob-laptop-cert.pub")
	out := must("cert", "sign", "bob", "bob-laptop", "--principal", "deploy", "--validity", "90m", "--force-command", "uptime", "--no-extensions", "--out", certFile)
	var details struct {
		Serial     uint64
		Principals []string
	}
	if err := json.Unmarshal([]byte(out), &details); err != nil || details.Serial == 0 {
		t.Fatalf("cert sign --out printed %s (%v)", out, err)
	}
	line, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatal(err)
	}
	pub, _, _, _, err := ssh.ParseAuthorizedKey(line)
	if err != nil {
		t.Fatalf("certificate file: %v", err)
	}
	cert := pub.(*ssh.Certificate)
	if cert.Serial != details.Serial || !slices.Equal(cert.ValidPrincipals, []string{"deploy"}) ||
		cert.CriticalOptions["force-command"] != "uptime" || len(cert.Extensions) != 0 {
		t.Errorf("certificate %+v, want serial %d for deploy, forced to uptime, no extensions", cert, details.Serial)
	}
	// Without --out the certificate line alone goes to stdout. The key may
	// be named by its SHA256 fingerprint, as the README does.
	pubLine, err := os.ReadFile(bobPub)
	if err != nil {
		t.Fatal(err)
	}
	bobKey, _, _, _, err := ssh.ParseAuthorizedKey(pubLine)
	if err != nil {
		t.Fatal(err)
	}
	if got := must("cert", "sign", "bob", ssh.FingerprintSHA256(bobKey)); !strings.HasPrefix(got, "ssh-ed25519-cert-v01@openssh.com ") || strings.Count(got, "\n") != 1 {
		t.Errorf("cert sign printed %q, want the certificate line", got)
	}
	if out, err := keysctl(t, ctl, "cert", "sign", "bob", "bob-laptop", "--validity", "3h"); err == nil || !strings.Contains(err.Error(), "NotAuthorized") {
		t.Errorf("cert sign beyond the policy: %v %s", err, out)
	}

	list := must("cert", "list", "bob", "--key", "bob-laptop")
	var certs []struct {
		Serial uint64
		State  string
	}
	if err := json.Unmarshal([]byte(list), &certs); err != nil || len(certs) != 2 {
		t.Fatalf("cert list = %s (%v)", list, err)
	}
	must("cert", "revoke", "bob", strconv.FormatUint(details.Serial, 10))
	if err := json.Unmarshal([]byte(must("cert", "list", "bob")), &certs); err != nil || certs[0].State != "revoked" {
		t.Errorf("after revoke: %+v (%v)", certs, err)
	}
	must("ca", "retire", "user", caKey.ID)
	if got := must("ca", "public", "user"); got != "" {
		t.Errorf("after retiring the only user CA key: %q", got)
	}
	if out, err := keysctl(t, ctl, "cert", "sign", "bob", "bob-laptop"); err == nil || !strings.Contains(err.Error(), "no key") {
		t.Errorf("cert sign without a CA key: %v %s", err, out)
	}
}
