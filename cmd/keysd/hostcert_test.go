package main

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"golang.org/x/crypto/ssh"

	"github.com/infrakeys/infrakeys/bus"
	"github.com/infrakeys/infrakeys/domain"
	"github.com/infrakeys/infrakeys/internal/testkit"
)

// A host certificate for an instance's key, which a driver generated,
// lets ssh reach the instance's sshd with only @cert-authority in
// known_hosts and strict host key checking.
func TestHostCertificateSSH(t *testing.T) {
	k := MustStartLM(t, nil)
	dir := t.TempDir()
	d := newDriver(t, MustNATS(t, k, "driver"))
	publishKeys(t, d, "vm-1", 1, 1)
	eventually(t, 20*time.Second, "the instance key", func() bool { return len(k.instanceKeys(t, "vm-1")) == 1 })
	MustCAKey(t, k, "user")
	MustCAKey(t, k, "host")

	signer, _ := MustToken(t, k, "signer", domain.RoleHostsSign)
	reader, _ := MustToken(t, k, "reader", domain.RoleKeysRead)
	path := lmPrefix + "/instances/vm-1/keys/key-0000/certificate"
	if r := k.Bearer(reader).Do(t, "POST", path, map[string]any{"principals": []string{"127.0.0.1"}}); r.StatusCode != http.StatusForbidden {
		t.Fatalf("keys:read signs a host certificate: %d %s", r.StatusCode, r.Body)
	}
	for _, tc := range []struct {
		name, path string
		body       map[string]any
		status     int
		msg        string
	}{
		{"ErrNoPrincipals", path, map[string]any{}, 400, "principals is required"},
		{"ErrBadHostName", path, map[string]any{"principals": []string{"not a host"}}, 400, "is not a host name"},
		{"ErrTooLong", path, map[string]any{"principals": []string{"h"}, "validity": "2400h"}, 403, "host certificate policy"},
		{"ErrUnknownKey", lmPrefix + "/instances/vm-1/keys/nope/certificate", map[string]any{"principals": []string{"h"}}, 404, "has no key nope"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := k.Bearer(signer).Do(t, "POST", tc.path, tc.body)
			if e := r.LMError(t); r.StatusCode != tc.status || !strings.Contains(e.LocalizedMessage, tc.msg) {
				t.Errorf("%d %+v, want %d containing %q", r.StatusCode, e, tc.status, tc.msg)
			}
		})
	}
	cert := k.Bearer(signer).MustSign(t, path, map[string]any{"principals": []string{"127.0.0.1", "vm-1.example.com"}, "validity": "1h"})
	if cert.Type != "host" || cert.KeyID != "vm-1/key-0000" {
		t.Errorf("host certificate %+v", cert)
	}

	// The instance's sshd runs with the instance key as host key, its
	// private half as an LM caller with keys:private fetches it.
	private, _ := MustToken(t, k, "private", domain.RolePrivateRead)
	var keys []map[string]any
	k.Bearer(private).Do(t, "GET", lmPrefix+"/instances/vm-1?includePrivateKey=true", nil).JSON(t, &keys)
	hostKey, _ := keys[0]["privateKey"].(string)
	userCAs := MustCAPublic(t, k, "user", "")
	sshd := testkit.StartSSHD(t, testkit.SSHDConfig{HostKey: []byte(hostKey), HostCertificate: cert.Certificate, TrustedUserCAKeys: userCAs})

	priv := MustKey(t)
	MustAccountNamedKey(t, k, "ops", "laptop", priv)
	if r := k.Admin.Do(t, "PUT", "/--admin/accounts/ops/policy", map[string]any{"certificatePrincipals": []string{"root"}}); r.StatusCode != 200 {
		t.Fatal(r.StatusCode, string(r.Body))
	}
	userCert := k.Client(t, "ops", priv).MustSign(t, "/my/keys/laptop/certificates", map[string]any{"principals": []string{"root"}})
	keyFile := privateKeyFile(t, dir, "id_ops", priv)
	certFile := testkit.WriteFile(t, dir, "id_ops-cert.pub", userCert.Certificate+"\n")
	knownHosts := testkit.WriteFile(t, dir, "known_hosts", MustCAPublic(t, k, "host", "known_hosts"))
	strict := []string{"-i", keyFile, "-o", "CertificateFile=" + certFile, "-o", "StrictHostKeyChecking=yes", "-o", "UserKnownHostsFile=" + knownHosts}
	if out, err := sshd.SSH(t, "root", strict, "true"); err != nil {
		t.Fatalf("ssh with only @cert-authority in known_hosts: %v\n%s\nsshd:\n%s", err, out, sshd.Log)
	}
	// Without the host CA, the same host is unknown and refused.
	empty := testkit.WriteFile(t, dir, "known_hosts_empty", "")
	strict[len(strict)-1] = "UserKnownHostsFile=" + empty
	if out, err := sshd.SSH(t, "root", strict, "true"); err == nil {
		t.Errorf("ssh accepted a host it has no trust for:\n%s", out)
	}
	var p domain.CertificateIssued
	issued := eventsOf(MustEvents(t, k), domain.TypeCertificateIssued)
	for _, r := range issued {
		if r.Event.Owner == domain.InstanceOwner("vm-1") {
			if err := r.Event.Decode(&p); err != nil {
				t.Fatal(err)
			}
		}
	}
	if p.Serial != cert.Serial || p.CertType != "host" || !slices.Equal(p.Principals, []string{"127.0.0.1", "vm-1.example.com"}) {
		t.Errorf("the instance's CertificateIssued = %+v", p)
	}
	if got, _ := metricValue(k.scrape(t), "keysd_certificates_issued_total", map[string]string{"type": "host"}); got != 1 {
		t.Errorf("keysd_certificates_issued_total{type=host} = %v, want 1", got)
	}
}

// askHostCertificate asks for a host certificate on the bus with token
// (none if empty).
func askHostCertificate(tb testing.TB, nc *nats.Conn, token string, req bus.HostCertificateRequest) bus.HostCertificateReply {
	tb.Helper()
	m := nats.NewMsg(bus.HostCertificateSubject)
	m.Data = mustJSON(tb, req)
	if token != "" {
		m.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := nc.RequestMsg(m, 10*time.Second)
	if err != nil {
		tb.Fatalf("request on %s: %v", bus.HostCertificateSubject, err)
	}
	var out bus.HostCertificateReply
	if err := json.Unmarshal(resp.Data, &out); err != nil {
		tb.Fatalf("reply %s: %v", resp.Data, err)
	}
	return out
}

// A driver asks for a host certificate over the bus, with a hosts:sign
// token: it gets one signed by the host CA, recorded on the instance;
// without the token or the role it gets an error and nothing is recorded.
func TestHostCertificateOverBus(t *testing.T) {
	k := MustStartLM(t, nil)
	drv := MustNATS(t, k, bus.RoleDriver)
	priv, _ := genKey(t, "")
	MustDriverKey(t, k, "vm-2", "ssh-host", priv)
	host := MustCAKey(t, k, "host")
	signer, _ := MustToken(t, k, "driver-signer", domain.RoleHostsSign)
	reader, _ := MustToken(t, k, "reader", domain.RoleKeysRead)
	req := bus.HostCertificateRequest{InstanceID: "vm-2", KeyName: "ssh-host", Principals: []string{"vm-2.example.com"}, Validity: "24h"}

	for _, tc := range []struct {
		name, token string
		req         bus.HostCertificateRequest
		code        string
	}{
		{"ErrNoToken", "", req, domain.EUNAUTHENTICATED},
		{"ErrWrongRole", reader, req, domain.EFORBIDDEN},
		{"ErrUnknownKey", signer, bus.HostCertificateRequest{InstanceID: "vm-2", KeyName: "nope", Principals: []string{"h"}}, domain.ENOTFOUND},
		{"ErrNoPrincipals", signer, bus.HostCertificateRequest{InstanceID: "vm-2", KeyName: "ssh-host"}, domain.EMISSING},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := askHostCertificate(t, drv, tc.token, tc.req)
			if out.Error == nil || out.Error.Code != tc.code || out.Certificate != "" {
				t.Errorf("reply %+v, want error %s", out, tc.code)
			}
		})
	}
	out := askHostCertificate(t, drv, signer, req)
	if out.Error != nil {
		t.Fatalf("host certificate over the bus: %+v", out.Error)
	}
	pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(out.Certificate))
	if err != nil {
		t.Fatal(err)
	}
	cert := pub.(*ssh.Certificate)
	if cert.CertType != ssh.HostCert || ssh.FingerprintSHA256(cert.SignatureKey) != host.FingerprintSHA256 ||
		!slices.Equal(cert.ValidPrincipals, req.Principals) || cert.Serial != out.Serial || cert.ValidBefore-cert.ValidAfter != uint64((24*time.Hour+time.Minute)/time.Second) {
		t.Errorf("certificate %+v", cert)
	}
	var issued []bus.Recorded
	for _, r := range eventsOf(MustEvents(t, k), domain.TypeCertificateIssued) {
		if r.Event.Owner == domain.InstanceOwner("vm-2") {
			issued = append(issued, r)
		}
	}
	if len(issued) != 1 || !strings.HasPrefix(issued[0].Event.Actor, "token:") {
		t.Errorf("%d CertificateIssued on vm-2 (%+v), want 1 by the token", len(issued), issued)
	}
}
