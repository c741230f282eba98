package main

import (
	"context"
	"crypto"
	"encoding/pem"
	"fmt"
	"net/http"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/infrakeys/infrakeys/domain"
	"github.com/infrakeys/infrakeys/internal/testkit"
)

// certJSON is a certificate as the API shows it.
type certJSON struct {
	Serial               uint64            `json:"serial"`
	Type                 string            `json:"type"`
	State                string            `json:"state"`
	Certificate          string            `json:"certificate"`
	KeyID                string            `json:"keyId"`
	KeyFingerprintSHA256 string            `json:"keyFingerprintSHA256"`
	CAFingerprintSHA256  string            `json:"caFingerprintSHA256"`
	Principals           []string          `json:"principals"`
	ValidAfter           time.Time         `json:"validAfter"`
	ValidBefore          time.Time         `json:"validBefore"`
	CriticalOptions      map[string]string `json:"criticalOptions"`
	Extensions           []string          `json:"extensions"`
}

// caKeyJSON is a CA key as operators see it.
type caKeyJSON struct {
	ID                string `json:"id"`
	PublicKey         string `json:"publicKey"`
	FingerprintSHA256 string `json:"fingerprintSHA256"`
	Signing           bool   `json:"signing"`
}

// MustCAKey creates a key of the CA ca ("user", "host") as the operator.
func MustCAKey(tb testing.TB, k *keysd, ca string) caKeyJSON {
	tb.Helper()
	r := k.Admin.Do(tb, "POST", "/--admin/cas/"+ca, map[string]any{})
	if r.StatusCode != http.StatusCreated {
		tb.Fatalf("create %s CA key: %d %s", ca, r.StatusCode, r.Body)
	}
	var out caKeyJSON
	r.JSON(tb, &out)
	return out
}

// MustCAPublic fetches the CA's trusted keys as sshd or known_hosts reads
// them (format "" or "known_hosts").
func MustCAPublic(tb testing.TB, k *keysd, ca, format string) string {
	tb.Helper()
	path := "/--cas/" + ca
	if format != "" {
		path += "?format=" + format
	}
	r := k.Bearer("").Do(tb, "GET", path, nil)
	if r.StatusCode != http.StatusOK || !strings.HasPrefix(r.Header.Get("Content-Type"), "text/plain") {
		tb.Fatalf("GET %s: %d %s %s", path, r.StatusCode, r.Header.Get("Content-Type"), r.Body)
	}
	return string(r.Body)
}

// MustAccountNamedKey creates login with priv as its first key, named
// name, and returns a client signing as it.
func MustAccountNamedKey(tb testing.TB, k *keysd, login, name string, priv crypto.Signer) *client {
	tb.Helper()
	r := k.Admin.Do(tb, "POST", "/--admin/accounts", map[string]any{"login": login, "name": name, "key": AuthorizedKey(tb, priv, "")})
	if r.StatusCode != http.StatusCreated {
		tb.Fatalf("create account %s: %d %s", login, r.StatusCode, r.Body)
	}
	return k.Client(tb, login, priv)
}

// MustSign asks for a certificate (body nil: no body) and returns it.
func (c *client) MustSign(tb testing.TB, path string, body map[string]any) certJSON {
	tb.Helper()
	var b any
	if body != nil {
		b = body
	}
	r := c.Do(tb, "POST", path, b)
	if r.StatusCode != http.StatusCreated {
		tb.Fatalf("POST %s: %d %s", path, r.StatusCode, r.Body)
	}
	var out certJSON
	r.JSON(tb, &out)
	return out
}

// privateKeyFile writes priv as an OpenSSH private key file (mode 0600)
// into dir and returns its path.
func privateKeyFile(tb testing.TB, dir, name string, priv crypto.Signer) string {
	tb.Helper()
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		tb.Fatal(err)
	}
	return testkit.WriteFile(tb, dir, name, string(pem.EncodeToMemory(block)))
}

// userLogin is the ssh options to log in with key and certificate cert,
// trusting any host key.
func userLogin(keyFile, certFile string) []string {
	return []string{"-i", keyFile, "-o", "CertificateFile=" + certFile,
		"-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"}
}

// A certificate keysd signed logs in to a real sshd that trusts the user
// CA; one with other principals, one already expired and one from a
// source address not allowed are refused; ssh-keygen -L shows what was
// asked; the certificate is listed and can be revoked.
func TestUserCertificateSSH(t *testing.T) {
	k := MustStartLM(t, nil)
	dir := t.TempDir()
	priv := MustKey(t)
	alice := MustAccountNamedKey(t, k, "alice", "laptop", priv)
	keyFile := privateKeyFile(t, dir, "id_alice", priv)

	// No CA key yet: nothing to sign with.
	r := alice.Do(t, "POST", "/my/keys/laptop/certificates", map[string]any{})
	if code, msg := r.ErrorBody(t); r.StatusCode != http.StatusNotFound || code != "ResourceNotFound" || !strings.Contains(msg, "certificate authority") {
		t.Fatalf("sign without a CA: %d %s %s", r.StatusCode, code, msg)
	}

	caKey := MustCAKey(t, k, "user")
	// sshd logs in as root: the operator allows alice that principal.
	r = k.Admin.Do(t, "PUT", "/--admin/accounts/alice/policy", map[string]any{"certificatePrincipals": []string{"alice", "root"}})
	if r.StatusCode != http.StatusOK {
		t.Fatalf("set policy: %d %s", r.StatusCode, r.Body)
	}
	trusted := MustCAPublic(t, k, "user", "")
	if !strings.Contains(trusted, strings.Fields(caKey.PublicKey)[1]) {
		t.Fatalf("/--cas/user = %q, want the new CA key", trusted)
	}
	sshd := testkit.StartSSHD(t, testkit.SSHDConfig{TrustedUserCAKeys: trusted})

	cert := alice.MustSign(t, "/my/keys/laptop/certificates", map[string]any{
		"principals": []string{"root"}, "validity": "10m",
		"forceCommand": "/bin/echo forced-by-certificate", "sourceAddress": "127.0.0.1/32,::1",
		"extensions": []string{"permit-pty"},
	})
	certFile := testkit.WriteFile(t, dir, "id_alice-cert.pub", cert.Certificate+"\n")
	out, err := sshd.SSH(t, "root", userLogin(keyFile, certFile), "true")
	if err != nil || !strings.Contains(out, "forced-by-certificate") {
		t.Fatalf("login with the certificate: %v\n%s\nsshd:\n%s", err, out, sshd.Log)
	}
	if cert.Serial == 0 || cert.CAFingerprintSHA256 != caKey.FingerprintSHA256 || cert.KeyID != "alice/laptop" {
		t.Errorf("certificate %+v: want a serial, the CA key %s and key id alice/laptop", cert, caKey.FingerprintSHA256)
	}

	// ssh-keygen -L shows what was asked.
	listing, err := exec.Command(testkit.NeedTool(t, "ssh-keygen"), "-L", "-f", certFile).CombinedOutput()
	if err != nil {
		t.Fatalf("ssh-keygen -L: %v\n%s", err, listing)
	}
	for _, want := range []string{
		"user certificate",
		fmt.Sprintf("Serial: %d", cert.Serial),
		`Key ID: "alice/laptop"`,
		"Signing CA: ED25519 " + caKey.FingerprintSHA256,
		"Valid: from " + cert.ValidAfter.Local().Format("2006-01-02T15:04:05") + " to " + cert.ValidBefore.Local().Format("2006-01-02T15:04:05"),
		"force-command /bin/echo forced-by-certificate",
		"source-address 127.0.0.1/32,::1",
		"permit-pty",
	} {
		if !strings.Contains(string(listing), want) {
			t.Errorf("ssh-keygen -L lacks %q:\n%s", want, listing)
		}
	}
	if strings.Contains(string(listing), "permit-agent-forwarding") {
		t.Errorf("ssh-keygen -L shows an extension not asked for:\n%s", listing)
	}
	if got := cert.ValidBefore.Sub(cert.ValidAfter); got != 11*time.Minute {
		t.Errorf("validity %s, want 10m plus the one-minute backdate", got)
	}

	refused := func(name string, cert certJSON) {
		t.Helper()
		f := testkit.WriteFile(t, dir, name+"-cert.pub", cert.Certificate+"\n")
		if out, err := sshd.SSH(t, "root", userLogin(keyFile, f), "true"); err == nil {
			t.Errorf("%s: login succeeded:\n%s", name, out)
		}
	}
	refused("other-principal", alice.MustSign(t, "/my/keys/laptop/certificates", map[string]any{"principals": []string{"alice"}}))
	refused("other-source", alice.MustSign(t, "/my/keys/laptop/certificates", map[string]any{"principals": []string{"root"}, "sourceAddress": "192.0.2.0/24"}))
	short := alice.MustSign(t, "/my/keys/laptop/certificates", map[string]any{"principals": []string{"root"}, "validity": "1s"})
	time.Sleep(time.Until(short.ValidBefore) + 1100*time.Millisecond)
	refused("expired", short)
	if !strings.Contains(sshd.Log.String(), "expired") && !strings.Contains(sshd.Log.String(), "Certificate invalid") {
		t.Errorf("sshd did not log why it refused the expired certificate:\n%s", sshd.Log)
	}

	// Listed (the expired one is gone), then revoked.
	var list []certJSON
	alice.Do(t, "GET", "/my/certificates", nil).JSON(t, &list)
	var serials []uint64
	for _, c := range list {
		serials = append(serials, c.Serial)
	}
	if len(list) != 3 || list[0].Serial != cert.Serial || slices.Contains(serials, short.Serial) {
		t.Fatalf("certificates = %v, want 3 not expired, starting with %d", serials, cert.Serial)
	}
	if list[0].Certificate != "" || list[0].State != "valid" {
		t.Errorf("listed certificate %+v: want no certificate text, state valid", list[0])
	}
	path := fmt.Sprintf("/my/certificates/%d", cert.Serial)
	for range 2 { // revoking again is no error
		if r := alice.Do(t, "DELETE", path, nil); r.StatusCode != http.StatusNoContent {
			t.Fatalf("revoke: %d %s", r.StatusCode, r.Body)
		}
	}
	alice.Do(t, "GET", "/my/keys/laptop/certificates", nil).JSON(t, &list)
	if len(list) == 0 || list[0].Serial != cert.Serial || list[0].State != "revoked" {
		t.Errorf("after revoking: %+v", list)
	}
	if r := alice.Do(t, "DELETE", fmt.Sprintf("/my/certificates/%d", short.Serial), nil); r.StatusCode != http.StatusNotFound {
		t.Errorf("revoke an expired certificate: %d %s", r.StatusCode, r.Body)
	}

	families := k.scrape(t)
	for _, m := range []struct {
		name string
		want float64
	}{{"keysd_certificates_issued_total", 4}, {"keysd_certificates_revoked_total", 1}} {
		if got, ok := metricValue(families, m.name, map[string]string{"type": "user"}); got != m.want {
			t.Errorf("%s{type=user} = %v (%v), want %v", m.name, got, ok, m.want)
		}
	}
	evs := MustEvents(t, k)
	issued, revoked := eventsOf(evs, domain.TypeCertificateIssued), eventsOf(evs, domain.TypeCertificateRevoked)
	if len(issued) != 4 || len(revoked) != 1 {
		t.Fatalf("%d CertificateIssued and %d CertificateRevoked, want 4 and 1", len(issued), len(revoked))
	}
	var p domain.CertificateIssued
	if err := issued[0].Event.Decode(&p); err != nil {
		t.Fatal(err)
	}
	if p.Serial != cert.Serial || issued[0].Event.Owner != domain.AccountOwner("alice") || issued[0].Event.Actor == "" || issued[0].Event.RequestID == "" ||
		p.CriticalOptions["force-command"] != "/bin/echo forced-by-certificate" || p.Certificate != cert.Certificate {
		t.Errorf("CertificateIssued %+v (envelope %+v) does not record the certificate", p, issued[0].Event)
	}
}

// Every refusal of a certificate request is a clear CloudAPI error and
// records nothing.
func TestUserCertificateRefusals(t *testing.T) {
	k := MustStartLM(t, nil)
	alice := MustAccountNamedKey(t, k, "alice", "laptop", MustKey(t))
	bob := MustAccountNamedKey(t, k, "bob", "desk", MustKey(t))
	MustCAKey(t, k, "user")
	if r := alice.Do(t, "POST", "/my/keys", map[string]any{"name": "old", "key": AuthorizedKey(t, MustKey(t), "")}); r.StatusCode != http.StatusCreated {
		t.Fatal(r.StatusCode, string(r.Body))
	}
	if r := alice.Do(t, "DELETE", "/my/keys/old", nil); r.StatusCode != http.StatusNoContent {
		t.Fatal(r.StatusCode, string(r.Body))
	}
	before := len(eventsOf(MustEvents(t, k), domain.TypeCertificateIssued))
	for _, tc := range []struct {
		name   string
		c      *client
		path   string
		body   map[string]any
		policy map[string]any
		status int
		code   string
		msg    string
	}{
		{"ErrAnotherAccountsKey", bob, "/alice/keys/laptop/certificates", nil, nil, 404, "ResourceNotFound", "laptop does not exist"},
		{"ErrUnknownKeyOfOwnAccount", bob, "/my/keys/laptop/certificates", nil, nil, 404, "ResourceNotFound", "laptop does not exist"},
		{"ErrDeletedKey", alice, "/my/keys/old/certificates", nil, nil, 404, "ResourceNotFound", "old does not exist"},
		{"ErrPrincipalBeyondPolicy", alice, "/my/keys/laptop/certificates", map[string]any{"principals": []string{"root"}}, nil, 403, "NotAuthorized", "principals root are not allowed for account alice: its policy allows alice"},
		{"ErrValidityBeyondPolicy", alice, "/my/keys/laptop/certificates", map[string]any{"validity": "2h"}, nil, 403, "NotAuthorized", "longer than account alice's policy"},
		{"ErrValidityBeyondRaisedPolicy", alice, "/my/keys/laptop/certificates", map[string]any{"validity": "9h"}, map[string]any{"certificateMaxValidity": 8 * 3600}, 403, "NotAuthorized", "(8h0m0s)"},
		{"ErrNotAttested", alice, "/my/keys/laptop/certificates", nil, map[string]any{"requireAttestedCertificates": true}, 403, "NotAuthorized", "requireAttestedCertificates"},
		{"ErrBadValidity", alice, "/my/keys/laptop/certificates", map[string]any{"validity": "forever"}, nil, 409, "InvalidArgument", "validity must be a duration"},
		{"ErrPast", alice, "/my/keys/laptop/certificates", map[string]any{"validBefore": "2001-01-01T00:00:00Z"}, nil, 409, "InvalidArgument", "validBefore must be in the future"},
		{"ErrUnknownField", alice, "/my/keys/laptop/certificates", map[string]any{"permitPty": true}, nil, 409, "InvalidArgument", "unknown member permitPty"},
		{"ErrUnknownExtension", alice, "/my/keys/laptop/certificates", map[string]any{"extensions": []string{"permit-root"}}, nil, 409, "InvalidArgument", `extension "permit-root"`},
		{"ErrSourceAddress", alice, "/my/keys/laptop/certificates", map[string]any{"sourceAddress": "localhost"}, nil, 409, "InvalidArgument", "sourceAddress"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			policy := tc.policy
			if policy == nil {
				policy = map[string]any{}
			}
			if r := k.Admin.Do(t, "PUT", "/--admin/accounts/alice/policy", policy); r.StatusCode != http.StatusOK {
				t.Fatalf("policy: %d %s", r.StatusCode, r.Body)
			}
			var body any // no body at all when the case has none
			if tc.body != nil {
				body = tc.body
			}
			r := tc.c.Do(t, "POST", tc.path, body)
			code, msg := r.ErrorBody(t)
			if r.StatusCode != tc.status || code != tc.code || !strings.Contains(msg, tc.msg) {
				t.Errorf("%d %s %q, want %d %s containing %q", r.StatusCode, code, msg, tc.status, tc.code, tc.msg)
			}
		})
	}
	if after := len(eventsOf(MustEvents(t, k), domain.TypeCertificateIssued)); after != before {
		t.Errorf("refused requests recorded %d certificates", after-before)
	}
	// Revocation: of another account's certificate looks like a missing
	// one; a serial that is not a positive integer is refused.
	issued := alice.MustSign(t, "/my/keys/laptop/certificates", nil)
	for _, tc := range []struct {
		c      *client
		path   string
		status int
	}{
		{bob, fmt.Sprintf("/alice/certificates/%d", issued.Serial), http.StatusNotFound},
		{bob, fmt.Sprintf("/my/certificates/%d", issued.Serial), http.StatusNotFound},
		{alice, "/my/certificates/0", http.StatusConflict},
		{alice, "/my/certificates/x", http.StatusConflict},
	} {
		if r := tc.c.Do(t, "DELETE", tc.path, nil); r.StatusCode != tc.status {
			t.Errorf("DELETE %s: %d %s, want %d", tc.path, r.StatusCode, r.Body, tc.status)
		}
	}
	var list []certJSON
	alice.Do(t, "GET", "/my/certificates", nil).JSON(t, &list)
	if len(list) != 1 || list[0].State != "valid" {
		t.Errorf("alice's certificates after refused revocations: %+v", list)
	}
	// Policies beyond the hard limits are refused too.
	r := k.Admin.Do(t, "PUT", "/--admin/accounts/alice/policy", map[string]any{"certificateMaxValidity": 8 * 24 * 3600})
	if code, _ := r.ErrorBody(t); r.StatusCode != 409 || code != "InvalidArgument" {
		t.Errorf("policy beyond the hard maximum: %d %s", r.StatusCode, r.Body)
	}
}

// CA keys rotate: a new key signs, the old one stays trusted until it is
// retired; the public lists follow, and the retired key's private half
// is destroyed (its data key gone), the other's kept.
func TestCAKeyRotation(t *testing.T) {
	k := MustStartLM(t, nil)
	first := MustCAKey(t, k, "host")
	r := k.Admin.Do(t, "POST", "/--admin/cas/host", map[string]any{"keyType": "ecdsa-p256"})
	if r.StatusCode != http.StatusCreated {
		t.Fatalf("second key: %d %s", r.StatusCode, r.Body)
	}
	var second caKeyJSON
	r.JSON(t, &second)
	if !strings.HasPrefix(second.PublicKey, "ecdsa-sha2-nistp256 ") || !second.Signing {
		t.Errorf("second key %+v: want an ECDSA key that signs", second)
	}
	known := MustCAPublic(t, k, "host", "known_hosts")
	if lines := strings.Split(strings.TrimSpace(known), "\n"); len(lines) != 2 || !strings.HasPrefix(lines[0], "@cert-authority * "+first.PublicKey) {
		t.Errorf("known_hosts lines = %q, want both keys", known)
	}
	r = k.Admin.Do(t, "DELETE", "/--admin/cas/host/keys/"+first.ID, nil)
	if r.StatusCode != http.StatusOK {
		t.Fatalf("retire: %d %s", r.StatusCode, r.Body)
	}
	if got := MustCAPublic(t, k, "host", ""); got != second.PublicKey+"\n" {
		t.Errorf("after retiring the first key: %q", got)
	}
	var all map[string][]map[string]any
	k.Admin.Do(t, "GET", "/--admin/cas", nil).JSON(t, &all)
	if len(all["host"]) != 2 || all["host"][0]["retired"] == nil || len(all["user"]) != 0 {
		t.Errorf("GET /--admin/cas = %v", all)
	}
	for _, tc := range []struct{ method, path, code string }{
		{"POST", "/--admin/cas/other", "ResourceNotFound"},
		{"GET", "/--cas/other", "ResourceNotFound"},
		{"GET", "/--cas/host?format=pem", "InvalidArgument"},
		{"DELETE", "/--admin/cas/host/keys/nope", "ResourceNotFound"},
	} {
		r := k.Admin.Do(t, tc.method, tc.path, map[string]any{})
		if code, _ := r.ErrorBody(t); code != tc.code {
			t.Errorf("%s %s: %d %s", tc.method, tc.path, r.StatusCode, r.Body)
		}
	}
	if r := k.Admin.Do(t, "POST", "/--admin/cas/user", map[string]any{"keyType": "dsa"}); r.StatusCode != 409 {
		t.Errorf("unknown key type: %d %s", r.StatusCode, r.Body)
	}

	secrets := map[string]string{} // CA key id -> data key id
	for _, r := range eventsOf(MustEvents(t, k), domain.TypeCAKeyCreated) {
		var p domain.CAKeyCreated
		if err := r.Event.Decode(&p); err != nil {
			t.Fatal(err)
		}
		secrets[p.ID] = p.SealedPrivateKey.SecretID
	}
	k.WaitShredded(t)
	k.Stop(t)
	o := MustOpenOffline(t, k)
	defer o.Close()
	for id, want := range map[string]bool{first.ID: false, second.ID: true} {
		wrapped, _, err := o.Keys.Get(context.Background(), secrets[id])
		if err != nil {
			t.Fatal(err)
		}
		if got := wrapped != nil; got != want {
			t.Errorf("data key of CA key %s present: %v, want %v", id, got, want)
		}
	}
}

// Two replicas sign concurrently on one event log: no two certificates
// share a serial.
func TestCertificateSerialsAcrossReplicas(t *testing.T) {
	ns := MustNATSServer(t)
	env := externalEnv(t, ns)
	k1 := MustStart(t, env)
	k2 := MustStart(t, map[string]string{"KEYSD_NATS_URL": env["KEYSD_NATS_URL"], "KEYSD_NATS_CREDS": env["KEYSD_NATS_CREDS"], "KEYSD_MASTER_KEY_FILE": env["KEYSD_MASTER_KEY_FILE"]})
	MustCAKey(t, k1, "user")
	const accounts, perAccount = 4, 10
	var (
		mu      sync.Mutex
		serials = map[uint64]int{}
		wg      sync.WaitGroup
	)
	for i := range accounts {
		priv := MustKey(t)
		login := fmt.Sprintf("user%d", i)
		MustAccountNamedKey(t, k1, login, "k", priv)
		for _, k := range []*keysd{k1, k2} {
			c := k.Client(t, login, priv)
			wg.Go(func() {
				for range perAccount {
					r := c.Do(t, "POST", "/my/keys/k/certificates", map[string]any{})
					if r.StatusCode != http.StatusCreated {
						t.Errorf("sign on %s: %d %s", k.URL, r.StatusCode, r.Body)
						return
					}
					var cert certJSON
					r.JSON(t, &cert)
					mu.Lock()
					serials[cert.Serial]++
					mu.Unlock()
				}
			})
		}
	}
	wg.Wait()
	if got, want := len(serials), accounts*perAccount*2; got != want {
		t.Errorf("%d distinct serials for %d certificates", got, want)
	}
	for s, n := range serials {
		if s == 0 || n > 1 {
			t.Errorf("serial %d used %d times", s, n)
		}
	}
}
