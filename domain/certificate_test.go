package domain_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/infrakeys/infrakeys/domain"
)

var t0 = time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)

// mustAccount is the account alice, with the key "laptop" (attested when
// attested is set), as the log would make it.
func mustAccount(tb testing.TB, p domain.Policy, attested bool) *domain.Account {
	tb.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		tb.Fatal(err)
	}
	key, err := domain.ParsePublicKey(string(ssh.MarshalAuthorizedKey(sshPub)))
	if err != nil {
		tb.Fatal(err)
	}
	m := domain.Meta{Time: t0.Add(-time.Hour)}
	evs, err := domain.CreateAccount(nil, "alice", false, m)
	if err != nil {
		tb.Fatal(err)
	}
	a := mustApplyAccount(tb, nil, evs...)
	var att *domain.Attestation
	if attested {
		att = &domain.Attestation{}
	}
	ev, err := a.CreateKey("laptop", key, att, m)
	if err != nil {
		tb.Fatal(err)
	}
	a = mustApplyAccount(tb, a, ev)
	pol, err := a.SetPolicy(p, m)
	if err != nil {
		tb.Fatal(err)
	}
	return mustApplyAccount(tb, a, pol...)
}

func mustApplyAccount(tb testing.TB, a *domain.Account, evs ...domain.Event) *domain.Account {
	tb.Helper()
	for _, e := range evs {
		var seq uint64 = 1
		if a != nil {
			seq = a.Version + 1
		}
		var err error
		if a, err = domain.ApplyAccountEvent(a, e, seq); err != nil {
			tb.Fatal(err)
		}
	}
	return a
}

func TestPlanUserCertificate(t *testing.T) {
	for _, tc := range []struct {
		name     string
		policy   domain.Policy
		attested bool
		ref      string
		req      domain.CertRequest
		code     string // "" for success
		check    func(t *testing.T, c *ssh.Certificate)
	}{
		{name: "OKDefaults", ref: "laptop", check: func(t *testing.T, c *ssh.Certificate) {
			if got, want := c.ValidPrincipals, []string{"alice"}; !slices.Equal(got, want) {
				t.Errorf("principals = %v, want %v", got, want)
			}
			if got, want := time.Unix(int64(c.ValidBefore), 0).Sub(t0), domain.DefaultUserCertValidity; got != want {
				t.Errorf("validity = %s, want %s", got, want)
			}
			if got, want := time.Unix(int64(c.ValidAfter), 0), t0.Add(-domain.CertBackdate); !got.Equal(want) {
				t.Errorf("validAfter = %s, want %s", got, want)
			}
			if got := len(c.Extensions); got != len(domain.UserCertExtensions) {
				t.Errorf("extensions = %v, want all of %v", c.Extensions, domain.UserCertExtensions)
			}
			if c.CertType != ssh.UserCert || c.KeyId != "alice/laptop" {
				t.Errorf("type %d key id %q", c.CertType, c.KeyId)
			}
		}},
		{name: "OKOptions", ref: "laptop", policy: domain.Policy{CertificatePrincipals: []string{"alice", "deploy"}, CertificateMaxValidity: 8 * 3600},
			req: domain.CertRequest{Principals: []string{"deploy"}, Validity: 8 * time.Hour, ForceCommand: "/usr/bin/true",
				SourceAddress: "10.0.0.0/8, 192.168.1.1", Extensions: []string{"permit-pty"}},
			check: func(t *testing.T, c *ssh.Certificate) {
				if got, want := c.CriticalOptions["source-address"], "10.0.0.0/8,192.168.1.1"; got != want {
					t.Errorf("source-address = %q, want %q", got, want)
				}
				if got, want := c.CriticalOptions["force-command"], "/usr/bin/true"; got != want {
					t.Errorf("force-command = %q, want %q", got, want)
				}
				if _, ok := c.Extensions["permit-pty"]; !ok || len(c.Extensions) != 1 {
					t.Errorf("extensions = %v, want permit-pty only", c.Extensions)
				}
			}},
		{name: "OKNoExtensions", ref: "laptop", req: domain.CertRequest{Extensions: []string{}}, check: func(t *testing.T, c *ssh.Certificate) {
			if len(c.Extensions) != 0 {
				t.Errorf("extensions = %v, want none", c.Extensions)
			}
		}},
		{name: "OKAttestedRequired", ref: "laptop", attested: true, policy: domain.Policy{RequireAttestedCertificates: true}},
		{name: "ErrUnknownKey", ref: "desktop", code: domain.ENOTFOUND},
		{name: "ErrPrincipalNotAllowed", ref: "laptop", req: domain.CertRequest{Principals: []string{"root"}}, code: domain.EFORBIDDEN},
		{name: "ErrNoPrincipals", ref: "laptop", req: domain.CertRequest{Principals: []string{}}, code: domain.EMISSING},
		{name: "ErrBadPrincipal", ref: "laptop", req: domain.CertRequest{Principals: []string{"a,b"}}, code: domain.EINVALID},
		{name: "ErrTooLong", ref: "laptop", req: domain.CertRequest{Validity: 2 * time.Hour}, code: domain.EFORBIDDEN},
		{name: "ErrTooLongBefore", ref: "laptop", req: domain.CertRequest{ValidBefore: t0.Add(3 * time.Hour)}, code: domain.EFORBIDDEN},
		{name: "ErrExpired", ref: "laptop", req: domain.CertRequest{ValidBefore: t0.Add(-time.Second)}, code: domain.EINVALID},
		{name: "ErrBothValidities", ref: "laptop", req: domain.CertRequest{Validity: time.Minute, ValidBefore: t0.Add(time.Minute)}, code: domain.EINVALID},
		{name: "ErrValidAfterFarPast", ref: "laptop", req: domain.CertRequest{ValidAfter: t0.Add(-time.Hour)}, code: domain.EINVALID},
		{name: "ErrUnknownExtension", ref: "laptop", req: domain.CertRequest{Extensions: []string{"permit-everything"}}, code: domain.EINVALID},
		{name: "ErrSourceAddress", ref: "laptop", req: domain.CertRequest{SourceAddress: "10.0.0.0/8,example.com"}, code: domain.EINVALID},
		{name: "ErrForceCommandNewline", ref: "laptop", req: domain.CertRequest{ForceCommand: "true\nrm -rf /"}, code: domain.EINVALID},
		{name: "ErrNotAttested", ref: "laptop", policy: domain.Policy{RequireAttestedCertificates: true}, code: domain.EFORBIDDEN},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := mustAccount(t, tc.policy, tc.attested)
			cert, _, err := a.PlanUserCertificate(tc.ref, tc.req, t0)
			if got := domain.ErrorCode(err); got != tc.code {
				t.Fatalf("error %v (code %q), want code %q", err, got, tc.code)
			}
			if err == nil && tc.check != nil {
				tc.check(t, cert)
			}
		})
	}
}

func TestPolicyValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		p    domain.Policy
		ok   bool
	}{
		{"OKZero", domain.Policy{}, true},
		{"OKMax", domain.Policy{CertificateMaxValidity: int64(domain.MaxUserCertValidity / time.Second)}, true},
		{"ErrBeyondHardMax", domain.Policy{CertificateMaxValidity: int64(domain.MaxUserCertValidity/time.Second) + 1}, false},
		{"ErrNegative", domain.Policy{CertificateMaxValidity: -1}, false},
		{"ErrPrincipal", domain.Policy{CertificatePrincipals: []string{"with space"}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.p.Validate(); (err == nil) != tc.ok {
				t.Fatalf("Validate() = %v, want ok %v", err, tc.ok)
			}
		})
	}
}

// mustCA is a CA with one key, and that key's signer.
func mustCA(tb testing.TB, name string) (*domain.CA, ssh.Signer) {
	tb.Helper()
	pair, err := domain.GenerateKeyPair("ed25519", "ca")
	if err != nil {
		tb.Fatal(err)
	}
	signer, err := ssh.ParsePrivateKey(pair.PrivateKey)
	if err != nil {
		tb.Fatal(err)
	}
	ca := &domain.CA{Name: name}
	ev, err := ca.AddKey(domain.NewCAKey{ID: "k1", Pair: pair, Sealed: &domain.SealedSecret{SecretID: "s1"}}, domain.Meta{Time: t0})
	if err != nil {
		tb.Fatal(err)
	}
	if ca, err = domain.ApplyCAEvent(ca, ev, 1); err != nil {
		tb.Fatal(err)
	}
	return ca, signer
}

// An issued certificate verifies against its CA, and the event records
// what was signed; the account keeps it until it expires, and revoking
// it twice decides one event.
func TestIssueAndRevokeCertificate(t *testing.T) {
	a := mustAccount(t, domain.Policy{}, false)
	ca, signer := mustCA(t, domain.CAUser)
	caKey, _ := ca.Signing()
	cert, k, err := a.PlanUserCertificate("laptop", domain.CertRequest{}, t0)
	if err != nil {
		t.Fatal(err)
	}
	ev, err := domain.IssueCertificate(domain.AccountOwner("alice"), cert, k.Name, 7, caKey, signer, domain.Meta{Time: t0})
	if err != nil {
		t.Fatal(err)
	}
	var p domain.CertificateIssued
	if err := ev.Decode(&p); err != nil {
		t.Fatal(err)
	}
	if p.Serial != 7 || p.CAFingerprintSHA256 != caKey.FingerprintSHA256 || p.KeyFingerprintSHA256 != k.FingerprintSHA256 || p.CertType != domain.CertTypeUser {
		t.Errorf("event payload %+v does not match the certificate", p)
	}
	parsed, _, _, _, err := ssh.ParseAuthorizedKey([]byte(p.Certificate))
	if err != nil {
		t.Fatal(err)
	}
	checker := ssh.CertChecker{
		IsUserAuthority: func(auth ssh.PublicKey) bool { return ssh.FingerprintSHA256(auth) == caKey.FingerprintSHA256 },
		Clock:           func() time.Time { return t0 },
	}
	if err := checker.CheckCert("alice", parsed.(*ssh.Certificate)); err != nil {
		t.Errorf("certificate does not verify: %v", err)
	}
	if _, err := domain.IssueCertificate(domain.AccountOwner("alice"), cert, k.Name, 0, caKey, signer, domain.Meta{}); err == nil {
		t.Error("serial 0 was issued")
	}

	a = mustApplyAccount(t, a, ev)
	if c := a.FindCertificate(7); c == nil || c.Certificate != "" {
		t.Fatalf("account state has certificate %+v, want it without its text", c)
	}
	revoke, err := a.RevokeCertificate(7, t0, domain.Meta{Time: t0})
	if err != nil || len(revoke) != 1 {
		t.Fatalf("revoke = %v, %v; want one event", revoke, err)
	}
	a = mustApplyAccount(t, a, revoke...)
	if again, err := a.RevokeCertificate(7, t0, domain.Meta{}); err != nil || len(again) != 0 {
		t.Errorf("revoking again = %v, %v; want nothing", again, err)
	}
	if _, err := a.RevokeCertificate(8, t0, domain.Meta{}); domain.ErrorCode(err) != domain.ENOTFOUND {
		t.Errorf("revoking an unknown serial: %v, want not found", err)
	}
	if _, err := a.RevokeCertificate(7, t0.Add(2*time.Hour), domain.Meta{}); domain.ErrorCode(err) != domain.ENOTFOUND {
		t.Errorf("revoking an expired certificate: %v, want not found", err)
	}

	// The next certificate, two hours later, drops the expired one.
	cert2, _, err := a.PlanUserCertificate("laptop", domain.CertRequest{}, t0.Add(2*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	ev2, err := domain.IssueCertificate(domain.AccountOwner("alice"), cert2, k.Name, 8, caKey, signer, domain.Meta{Time: t0.Add(2 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	a = mustApplyAccount(t, a, ev2)
	if len(a.Certificates) != 1 || a.Certificates[0].Serial != 8 {
		t.Errorf("certificates after expiry = %+v, want serial 8 only", a.Certificates)
	}
}

func TestPlanHostCertificate(t *testing.T) {
	pair, err := domain.GenerateKeyPair("ed25519", "host")
	if err != nil {
		t.Fatal(err)
	}
	in := &domain.Instance{ID: "vm-1"}
	ev, err := in.AddKey(domain.NewInfraKey{ID: "k", Name: "ssh-host", Pair: pair}, domain.Meta{Time: t0})
	if err != nil {
		t.Fatal(err)
	}
	if in, err = domain.ApplyInstanceEvent(in, ev, 1); err != nil {
		t.Fatal(err)
	}
	removed, _ := domain.ApplyInstanceEvent(&domain.Instance{ID: "vm-1", Keys: in.Keys, Version: 1}, in.Remove(domain.Meta{})[0], 2)
	for _, tc := range []struct {
		name string
		in   *domain.Instance
		key  string
		req  domain.CertRequest
		code string
	}{
		{"OK", in, "ssh-host", domain.CertRequest{Principals: []string{"vm-1.example.com", "10.1.2.3", "::1"}}, ""},
		{"OKValidity", in, "ssh-host", domain.CertRequest{Principals: []string{"h"}, Validity: domain.MaxHostCertValidity}, ""},
		{"ErrNoPrincipals", in, "ssh-host", domain.CertRequest{}, domain.EMISSING},
		{"ErrNotHostName", in, "ssh-host", domain.CertRequest{Principals: []string{"bad_name"}}, domain.EINVALID},
		{"ErrWildcard", in, "ssh-host", domain.CertRequest{Principals: []string{"*.example.com"}}, domain.EINVALID},
		{"ErrDuplicate", in, "ssh-host", domain.CertRequest{Principals: []string{"h", "h"}}, domain.EINVALID},
		{"ErrTooLong", in, "ssh-host", domain.CertRequest{Principals: []string{"h"}, Validity: domain.MaxHostCertValidity + time.Hour}, domain.EFORBIDDEN},
		{"ErrOptions", in, "ssh-host", domain.CertRequest{Principals: []string{"h"}, ForceCommand: "true"}, domain.EINVALID},
		{"ErrUnknownKey", in, "other", domain.CertRequest{Principals: []string{"h"}}, domain.ENOTFOUND},
		{"ErrRemoved", removed, "ssh-host", domain.CertRequest{Principals: []string{"h"}}, domain.ENOTFOUND},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cert, _, err := tc.in.PlanHostCertificate(tc.key, tc.req, t0)
			if got := domain.ErrorCode(err); got != tc.code {
				t.Fatalf("error %v (code %q), want code %q", err, got, tc.code)
			}
			if err == nil && (cert.CertType != ssh.HostCert || !strings.HasPrefix(cert.KeyId, "vm-1/")) {
				t.Errorf("certificate type %d key id %q", cert.CertType, cert.KeyId)
			}
		})
	}
}

func TestCAKeys(t *testing.T) {
	ca, _ := mustCA(t, domain.CAUser)
	first := ca.Keys[0]
	pair, err := domain.GenerateKeyPair("ecdsa-p256", "ca")
	if err != nil {
		t.Fatal(err)
	}
	ev, err := ca.AddKey(domain.NewCAKey{ID: "k2", Pair: pair, Sealed: &domain.SealedSecret{SecretID: "s2"}}, domain.Meta{Time: t0})
	if err != nil {
		t.Fatal(err)
	}
	ca, _ = domain.ApplyCAEvent(ca, ev, 2)
	if s, _ := ca.Signing(); s.ID != "k2" || len(ca.Trusted()) != 2 {
		t.Fatalf("after rotation: signing %s, %d trusted; want k2 signing, both trusted", s.ID, len(ca.Trusted()))
	}
	retire, err := ca.RetireKey(first.FingerprintSHA256, domain.Meta{Time: t0})
	if err != nil || len(retire) != 1 {
		t.Fatalf("retire = %v, %v", retire, err)
	}
	if got := domain.ShreddedSecret(retire[0]); got != "s1" {
		t.Errorf("retiring shreds %q, want s1", got)
	}
	ca, _ = domain.ApplyCAEvent(ca, retire[0], 3)
	if tr := ca.Trusted(); len(tr) != 1 || tr[0].ID != "k2" || ca.Keys[0].PrivateKey != nil {
		t.Errorf("after retiring k1: trusted %+v", tr)
	}
	if again, err := ca.RetireKey("k1", domain.Meta{}); err != nil || len(again) != 0 {
		t.Errorf("retiring again = %v, %v; want nothing", again, err)
	}
	if _, err := ca.RetireKey("k9", domain.Meta{}); domain.ErrorCode(err) != domain.ENOTFOUND {
		t.Errorf("retiring an unknown key: %v", err)
	}
	retire, _ = ca.RetireKey("k2", domain.Meta{})
	ca, _ = domain.ApplyCAEvent(ca, retire[0], 4)
	if _, err := ca.Signing(); domain.ErrorCode(err) != domain.ENOTFOUND {
		t.Errorf("a CA with every key retired signs: %v", err)
	}
	if err := domain.ValidateCAName("other"); domain.ErrorCode(err) != domain.ENOTFOUND {
		t.Errorf("CA other: %v", err)
	}
}

// Blocks follow each other without overlap, and serial 0 is never in one.
func TestSerialBlocks(t *testing.T) {
	c := &domain.SerialCounter{}
	var last uint64
	for i := range 3 {
		ev, err := c.Reserve(10, domain.Meta{})
		if err != nil {
			t.Fatal(err)
		}
		var b domain.SerialBlockReserved
		if err := ev.Decode(&b); err != nil {
			t.Fatal(err)
		}
		if b.First != last+1 || b.Last != b.First+9 || b.First == 0 {
			t.Fatalf("block %d = %+v after %d", i, b, last)
		}
		last = b.Last
		if c, err = domain.ApplySerialEvent(c, ev, uint64(i+1)); err != nil {
			t.Fatal(err)
		}
	}
}
