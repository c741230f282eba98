package domain

import (
	"crypto/rand"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
)

// Certificate types, as CertificateIssued records them.
const (
	CertTypeUser = "user"
	CertTypeHost = "host"
)

// Limits of certificate validity. A user certificate lives at most as
// long as the account's policy allows (certificateMaxValidity, by default
// DefaultUserCertValidity, never more than MaxUserCertValidity); a host
// certificate at most MaxHostCertValidity.
const (
	DefaultUserCertValidity = time.Hour
	MaxUserCertValidity     = 7 * 24 * time.Hour
	DefaultHostCertValidity = 30 * 24 * time.Hour
	MaxHostCertValidity     = 90 * 24 * time.Hour
	// CertBackdate is how far before now validAfter is by default, so
	// that a server whose clock is a little behind accepts a new
	// certificate at once.
	CertBackdate = time.Minute
	// maxCertPast is how far in the past a requested validAfter may be.
	maxCertPast = 5 * time.Minute
	// minCertValidity is the shortest validity a certificate may have.
	minCertValidity = time.Second
)

// Critical options of user certificates (OpenSSH PROTOCOL.certkeys).
const (
	OptionForceCommand  = "force-command"
	OptionSourceAddress = "source-address"
)

// UserCertExtensions are the extensions a user certificate may carry, and
// by default carries all of (as ssh-keygen does).
var UserCertExtensions = []string{
	"permit-X11-forwarding", "permit-agent-forwarding", "permit-port-forwarding", "permit-pty", "permit-user-rc",
}

// Bounds of a certificate request.
const (
	maxPrincipals      = 64
	maxPrincipalLen    = 255
	maxForceCommandLen = 4096
	maxSourceAddresses = 64
)

// CertificateIssued records a certificate keysd signed: everything in it
// but the signature, and the certificate itself. Schema version 1.
type CertificateIssued struct {
	Serial               uint64            `json:"serial"`
	CertType             string            `json:"certType"`
	KeyID                string            `json:"keyId"`
	KeyName              string            `json:"keyName"`
	KeyFingerprintSHA256 string            `json:"keyFingerprintSHA256"`
	CAKeyID              string            `json:"caKeyId"`
	CAFingerprintSHA256  string            `json:"caFingerprintSHA256"`
	Principals           []string          `json:"principals"`
	ValidAfter           time.Time         `json:"validAfter"`
	ValidBefore          time.Time         `json:"validBefore"`
	CriticalOptions      map[string]string `json:"criticalOptions,omitempty"`
	Extensions           []string          `json:"extensions,omitempty"`
	// Certificate is the signed certificate in OpenSSH authorized-key
	// format (public, as every certificate is). Read models leave it out.
	Certificate string `json:"certificate,omitempty"`
}

// CertificateRevoked records that a certificate must no longer be
// accepted, although it has not expired: its serial goes into the
// revocation list of the CA key that signed it. Schema version 1.
type CertificateRevoked struct {
	Serial               uint64    `json:"serial"`
	CertType             string    `json:"certType"`
	KeyFingerprintSHA256 string    `json:"keyFingerprintSHA256"`
	CAKeyID              string    `json:"caKeyId"`
	CAFingerprintSHA256  string    `json:"caFingerprintSHA256"`
	ValidBefore          time.Time `json:"validBefore"`
}

// Certificate is a certificate as its owner's state keeps it: until it
// expires (then it is dropped from the state; the log keeps it).
type Certificate struct {
	CertificateIssued
	Issued  time.Time `json:"issued"`
	Revoked time.Time `json:"revoked,omitzero"`
}

// Expired reports whether c is no longer valid at t.
func (c *Certificate) Expired(t time.Time) bool { return !t.Before(c.ValidBefore) }

// Equal reports whether p and q require the same.
func (p Policy) Equal(q Policy) bool {
	return p.RequireAttestedKeys == q.RequireAttestedKeys &&
		p.RequireAttestedSigning == q.RequireAttestedSigning &&
		p.RequireMultifactorSigning == q.RequireMultifactorSigning &&
		p.RequireAttestedCertificates == q.RequireAttestedCertificates &&
		p.CertificateMaxValidity == q.CertificateMaxValidity &&
		slices.Equal(p.CertificatePrincipals, q.CertificatePrincipals)
}

// Validate checks the certificate limits of p.
func (p Policy) Validate() error {
	if p.CertificateMaxValidity < 0 || time.Duration(p.CertificateMaxValidity)*time.Second > MaxUserCertValidity {
		return Errorf(EINVALID, "certificateMaxValidity must be between 1 and %d seconds (0: the default, %d)",
			int64(MaxUserCertValidity/time.Second), int64(DefaultUserCertValidity/time.Second))
	}
	if len(p.CertificatePrincipals) > maxPrincipals {
		return Errorf(EINVALID, "certificatePrincipals must have at most %d entries", maxPrincipals)
	}
	for _, pr := range p.CertificatePrincipals {
		if err := validatePrincipal("certificatePrincipals", pr); err != nil {
			return err
		}
	}
	return nil
}

// AllowedPrincipals are the principals a's user certificates may name:
// the policy's, or else the login alone.
func (a *Account) AllowedPrincipals() []string {
	if len(a.Policy.CertificatePrincipals) > 0 {
		return a.Policy.CertificatePrincipals
	}
	return []string{a.Login}
}

// MaxCertValidity is the longest validity of a's user certificates.
func (a *Account) MaxCertValidity() time.Duration {
	if a.Policy.CertificateMaxValidity > 0 {
		return time.Duration(a.Policy.CertificateMaxValidity) * time.Second
	}
	return DefaultUserCertValidity
}

// PlanUserCertificate decides what user certificate a may get for its key
// that ref names, at time now: the certificate to sign (no serial, no
// signature yet) and the key. Every limit of a's policy is checked here.
func (a *Account) PlanUserCertificate(ref string, req CertRequest, now time.Time) (*ssh.Certificate, *AccountKey, error) {
	k := a.FindKey(ref)
	if k == nil {
		return nil, nil, Errorf(ENOTFOUND, "%s does not exist", ref)
	}
	if k.ExpiredAt(now) {
		return nil, nil, expiredError("key "+k.Name, k.Expires)
	}
	if a.Policy.RequireAttestedCertificates && k.Attestation == nil {
		return nil, nil, Errorf(EFORBIDDEN, "account policy requireAttestedCertificates: only hardware-attested keys get certificates, and %s is not attested", k.Name)
	}
	pub, err := ParsePublicKey(k.Key)
	if err != nil {
		return nil, nil, Errorf(EINTERNAL, "stored key %s does not parse: %v", k.Name, err)
	}
	allowed := a.AllowedPrincipals()
	principals := req.Principals
	if principals == nil {
		principals = allowed
	}
	if err := validatePrincipals(principals); err != nil {
		return nil, nil, err
	}
	var refused []string
	for _, p := range principals {
		if !slices.Contains(allowed, p) {
			refused = append(refused, p)
		}
	}
	if len(refused) > 0 {
		return nil, nil, Errorf(EFORBIDDEN, "principals %s are not allowed for account %s: its policy allows %s",
			strings.Join(refused, ", "), a.Login, strings.Join(allowed, ", "))
	}
	after, before, err := certValidity(req, now, min(DefaultUserCertValidity, a.MaxCertValidity()), a.MaxCertValidity(),
		"account "+a.Login+"'s policy (certificateMaxValidity)")
	if err != nil {
		return nil, nil, err
	}
	if before, err = capAtExpiry(after, before, k.Expires); err != nil {
		return nil, nil, err
	}
	opts := map[string]string{}
	if req.ForceCommand != "" {
		if len(req.ForceCommand) > maxForceCommandLen || strings.ContainsAny(req.ForceCommand, "\x00\r\n") {
			return nil, nil, Errorf(EINVALID, "forceCommand must be one line of at most %d bytes", maxForceCommandLen)
		}
		opts[OptionForceCommand] = req.ForceCommand
	}
	if req.SourceAddress != "" {
		sa, err := validateSourceAddress(req.SourceAddress)
		if err != nil {
			return nil, nil, err
		}
		opts[OptionSourceAddress] = sa
	}
	exts := req.Extensions
	if exts == nil {
		exts = UserCertExtensions
	}
	extensions := map[string]string{}
	for _, e := range exts {
		if !slices.Contains(UserCertExtensions, e) {
			return nil, nil, Errorf(EINVALID, "extension %q is not one of %s", e, strings.Join(UserCertExtensions, ", "))
		}
		if _, dup := extensions[e]; dup {
			return nil, nil, Errorf(EINVALID, "extension %s is given twice", e)
		}
		extensions[e] = ""
	}
	return &ssh.Certificate{
		Key:             pub.Key,
		CertType:        ssh.UserCert,
		KeyId:           a.Login + "/" + k.Name,
		ValidPrincipals: slices.Clone(principals),
		ValidAfter:      uint64(after.Unix()),
		ValidBefore:     uint64(before.Unix()),
		Permissions:     ssh.Permissions{CriticalOptions: opts, Extensions: extensions},
	}, k, nil
}

// PlanHostCertificate decides what host certificate the instance's key
// name may get at time now: principals are host names (DNS names or IP
// addresses) and at least one is required.
func (in *Instance) PlanHostCertificate(name string, req CertRequest, now time.Time) (*ssh.Certificate, *InfraKey, error) {
	if in.Removed {
		return nil, nil, Errorf(ENOTFOUND, "instance %s was removed", in.ID)
	}
	k := in.FindKey(name)
	if k == nil {
		return nil, nil, Errorf(ENOTFOUND, "instance %s has no key %s", in.ID, name)
	}
	if k.ExpiredAt(now) {
		return nil, nil, expiredError("infrastructure key "+k.Name, k.Expires)
	}
	if req.ForceCommand != "" || req.SourceAddress != "" || len(req.Extensions) > 0 {
		return nil, nil, Errorf(EINVALID, "host certificates carry no options or extensions")
	}
	if len(req.Principals) == 0 {
		return nil, nil, Errorf(EMISSING, "principals is required: the host names clients reach the instance by")
	}
	if len(req.Principals) > maxPrincipals {
		return nil, nil, Errorf(EINVALID, "principals must have at most %d entries", maxPrincipals)
	}
	seen := map[string]bool{}
	for _, h := range req.Principals {
		if err := validateHostName(h); err != nil {
			return nil, nil, err
		}
		if seen[h] {
			return nil, nil, Errorf(EINVALID, "principal %s is given twice", h)
		}
		seen[h] = true
	}
	pub, err := ParsePublicKey(k.PublicKey)
	if err != nil {
		return nil, nil, Errorf(EINTERNAL, "stored key %s does not parse: %v", k.Name, err)
	}
	after, before, err := certValidity(req, now, DefaultHostCertValidity, MaxHostCertValidity, "the host certificate policy")
	if err != nil {
		return nil, nil, err
	}
	if before, err = capAtExpiry(after, before, k.Expires); err != nil {
		return nil, nil, err
	}
	return &ssh.Certificate{
		Key:             pub.Key,
		CertType:        ssh.HostCert,
		KeyId:           in.ID + "/" + k.Name,
		ValidPrincipals: slices.Clone(req.Principals),
		ValidAfter:      uint64(after.Unix()),
		ValidBefore:     uint64(before.Unix()),
	}, k, nil
}

// IssueCertificate signs cert, as planned for owner's key keyName, with
// serial and the CA key caKey (whose private half is signer), and decides
// the CertificateIssued that records it.
func IssueCertificate(owner Owner, cert *ssh.Certificate, keyName string, serial uint64, caKey *CAKey, signer ssh.Signer, m Meta) (Event, error) {
	if serial == 0 {
		return Event{}, Errorf(EINTERNAL, "certificate serial 0 is reserved")
	}
	cert.Serial = serial
	if err := cert.SignCert(rand.Reader, signer); err != nil {
		return Event{}, fmt.Errorf("sign certificate: %w", err)
	}
	typ := CertTypeUser
	if cert.CertType == ssh.HostCert {
		typ = CertTypeHost
	}
	exts := make([]string, 0, len(cert.Extensions))
	for e := range cert.Extensions {
		exts = append(exts, e)
	}
	sort.Strings(exts)
	var opts map[string]string
	if len(cert.CriticalOptions) > 0 {
		opts = cert.CriticalOptions
	}
	return NewEvent(owner, CertificateIssued{
		Serial:               serial,
		CertType:             typ,
		KeyID:                cert.KeyId,
		KeyName:              keyName,
		KeyFingerprintSHA256: ssh.FingerprintSHA256(cert.Key),
		CAKeyID:              caKey.ID,
		CAFingerprintSHA256:  caKey.FingerprintSHA256,
		Principals:           cert.ValidPrincipals,
		ValidAfter:           time.Unix(int64(cert.ValidAfter), 0).UTC(),
		ValidBefore:          time.Unix(int64(cert.ValidBefore), 0).UTC(),
		CriticalOptions:      opts,
		Extensions:           exts,
		Certificate:          strings.TrimSpace(string(ssh.MarshalAuthorizedKey(cert))),
	}, m), nil
}

// FindCertificate returns a's certificate serial, or nil when a has none
// (or it expired and was dropped).
func (a *Account) FindCertificate(serial uint64) *Certificate {
	for i := range a.Certificates {
		if a.Certificates[i].Serial == serial {
			return &a.Certificates[i]
		}
	}
	return nil
}

// RevokeCertificate decides revoking a's certificate serial at now;
// revoking it again decides nothing.
func (a *Account) RevokeCertificate(serial uint64, now time.Time, m Meta) ([]Event, error) {
	c := a.FindCertificate(serial)
	if c == nil || c.Expired(now) {
		return nil, Errorf(ENOTFOUND, "certificate %d does not exist or has expired", serial)
	}
	if !c.Revoked.IsZero() {
		return nil, nil
	}
	return []Event{NewEvent(AccountOwner(a.Login), CertificateRevoked{
		Serial: c.Serial, CertType: c.CertType, KeyFingerprintSHA256: c.KeyFingerprintSHA256,
		CAKeyID: c.CAKeyID, CAFingerprintSHA256: c.CAFingerprintSHA256, ValidBefore: c.ValidBefore,
	}, m)}, nil
}

// applyCertificateEvent applies the certificate events of an account. An
// account keeps its certificates until they expire: each new one drops
// those expired by then, so the state grows with the certificates valid
// at once, not with every certificate ever signed.
func applyCertificateEvent(acct *Account, e Event) error {
	switch e.Type {
	case TypeCertificateIssued:
		var p CertificateIssued
		if err := e.Decode(&p); err != nil {
			return err
		}
		p.Certificate = ""
		// A new slice, never the old one's array: a state read by others
		// (a cached account) must not change under them.
		kept := make([]Certificate, 0, len(acct.Certificates)+1)
		for _, c := range acct.Certificates {
			if !c.Expired(e.Time) {
				kept = append(kept, c)
			}
		}
		acct.Certificates = append(kept, Certificate{CertificateIssued: p, Issued: e.Time})
	case TypeCertificateRevoked:
		var p CertificateRevoked
		if err := e.Decode(&p); err != nil {
			return err
		}
		if i := slices.IndexFunc(acct.Certificates, func(c Certificate) bool { return c.Serial == p.Serial }); i >= 0 {
			certs := slices.Clone(acct.Certificates)
			certs[i].Revoked = e.Time
			acct.Certificates = certs
		}
	}
	return nil
}

// capAtExpiry returns before, the end of a certificate's validity, or the
// expiry of its key if that comes first: a certificate must not let a key
// in after the key itself expired. after is the start of its validity.
func capAtExpiry(after, before time.Time, expires *time.Time) (time.Time, error) {
	if expires == nil || before.Before(*expires) {
		return before, nil
	}
	if !after.Before(*expires) {
		return before, Errorf(EINVALID, "validAfter must be before the key expires (%s)", expires.UTC().Format(time.RFC3339))
	}
	return expires.UTC(), nil
}
