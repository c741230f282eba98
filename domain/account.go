package domain

import (
	"regexp"
	"strings"
	"time"
)

// Account is an account (a CloudAPI login) and its public keys: the
// aggregate that CloudAPI commands decide against. Version is the log
// position of the last event applied, which is what optimistic concurrency
// compares against when the next events are appended.
type Account struct {
	Login    string       `json:"login"`
	Operator bool         `json:"operator,omitempty"`
	Policy   Policy       `json:"policy"`
	Created  time.Time    `json:"created"`
	Keys     []AccountKey `json:"keys"`
	// Certificates are the certificates signed for the account's keys
	// that had not expired at its last certificate event.
	Certificates []Certificate `json:"certificates,omitempty"`
	Version      uint64        `json:"version"`
}

// AccountKey is one public key of an account.
type AccountKey struct {
	Name              string    `json:"name"`
	Fingerprint       string    `json:"fingerprint"`
	FingerprintSHA256 string    `json:"fingerprintSHA256"`
	Key               string    `json:"key"`
	Type              string    `json:"keyType"`
	Bits              int       `json:"bits"`
	Created           time.Time `json:"created"`
	// Attestation is set for keys proven to live in a hardware token.
	Attestation *Attestation `json:"attestation,omitempty"`
	// Expires is when the key expires by itself; nil: never.
	Expires *time.Time `json:"expires,omitempty"`
	// Expired is set by its KeyExpired. A key past Expires whose
	// KeyExpired is not recorded yet is expired all the same (see
	// AccountKey.ExpiredAt).
	Expired bool `json:"expired,omitempty"`
}

// ExpiredAt reports whether the key is expired at now: its KeyExpired is
// recorded, or its expiry has passed (the event follows shortly).
func (k *AccountKey) ExpiredAt(now time.Time) bool {
	return k.Expired || (k.Expires != nil && !now.Before(*k.Expires))
}

// Policy is what an operator requires of an account's keys, beyond
// CloudAPI. The zero Policy requires nothing.
type Policy struct {
	// RequireAttestedKeys refuses new keys without a hardware attestation.
	RequireAttestedKeys bool `json:"requireAttestedKeys"`
	// RequireAttestedSigning refuses requests signed with a key that is
	// not attested.
	RequireAttestedSigning bool `json:"requireAttestedSigning"`
	// RequireMultifactorSigning refuses requests signed with a key whose
	// use needs neither a PIN nor a touch (implies attested signing).
	RequireMultifactorSigning bool `json:"requireMultifactorSigning"`
	// RequireAttestedCertificates signs user certificates only for
	// hardware-attested keys. (This and the certificate limits below were
	// added without a version change: old readers ignore them.)
	RequireAttestedCertificates bool `json:"requireAttestedCertificates,omitempty"`
	// CertificatePrincipals are the principals user certificates may
	// name; none means the login alone.
	CertificatePrincipals []string `json:"certificatePrincipals,omitempty"`
	// CertificateMaxValidity is the longest validity of a user
	// certificate, in seconds; 0 means DefaultUserCertValidity.
	CertificateMaxValidity int64 `json:"certificateMaxValidity,omitempty"`
}

// loginRE is the CloudAPI login syntax (UFDS): a letter, then letters,
// digits and a few punctuation characters.
var loginRE = regexp.MustCompile(`^[a-zA-Z][a-zA-Z0-9_.@-]{1,63}$`)

// ValidateLogin reports whether login is a valid account login.
func ValidateLogin(login string) error {
	if login == "my" {
		return Errorf(EINVALID, "login %q is reserved", login)
	}
	if !loginRE.MatchString(login) {
		return Errorf(EINVALID, "login must be 2 to 64 characters: a letter, then letters, digits, '_', '.', '@' or '-'")
	}
	return nil
}

// AccountOwner is the owner of an account's events.
func AccountOwner(login string) Owner { return Owner{Kind: OwnerAccount, ID: login} }

// CreateAccount decides the creation of a new account. existing is the
// current state, nil when the account does not exist yet.
func CreateAccount(existing *Account, login string, operator bool, m Meta) ([]Event, error) {
	if err := ValidateLogin(login); err != nil {
		return nil, err
	}
	if existing != nil {
		return nil, Errorf(ECONFLICT, "account %s already exists", login)
	}
	return []Event{NewEvent(AccountOwner(login),
		AccountCreated{Login: login, Operator: operator}, m)}, nil
}

// GrantOperator decides making a an operator; it decides nothing when a is
// one already, so repeating it is harmless.
func (a *Account) GrantOperator(m Meta) []Event {
	if a.Operator {
		return nil
	}
	return []Event{NewEvent(AccountOwner(a.Login), OperatorGranted{Login: a.Login}, m)}
}

// CreateKey decides adding key to a. The name defaults to the key's comment,
// then to its fingerprint, as CloudAPI does. Within an account both names and
// fingerprints are unique.
func (a *Account) CreateKey(name string, key *PublicKey, att *Attestation, m Meta) (Event, error) {
	return a.CreateExpiringKey(name, key, att, nil, m)
}

// CreateExpiringKey decides adding key to a as CreateKey does, expiring
// at expires (nil: never), which must be after the command's time.
func (a *Account) CreateExpiringKey(name string, key *PublicKey, att *Attestation, expires *time.Time, m Meta) (Event, error) {
	if err := checkExpires(expires, m); err != nil {
		return Event{}, err
	}
	if a.Policy.RequireAttestedKeys && att == nil {
		return Event{}, Errorf(EFORBIDDEN, "account policy requireAttestedKeys: account %s accepts only hardware-attested keys", a.Login)
	}
	if name == "" {
		name = key.Comment
		if ValidateKeyName(name) != nil {
			name = key.Fingerprint
		}
	}
	if err := ValidateKeyName(name); err != nil {
		return Event{}, err
	}
	for _, k := range a.Keys {
		if k.Name == name || k.Fingerprint == key.Fingerprint {
			return Event{}, Errorf(ECONFLICT, "key already exists or is invalid")
		}
	}
	return NewEvent(AccountOwner(a.Login), KeyCreated{
		Name:              name,
		Fingerprint:       key.Fingerprint,
		FingerprintSHA256: key.FingerprintSHA256,
		Key:               key.Authorized,
		Type:              key.Type,
		Bits:              key.Bits,
		Attestation:       att,
		Expires:           expires,
	}, m), nil
}

// SetPolicy decides replacing a's policy; it decides nothing when the
// policy is unchanged.
func (a *Account) SetPolicy(p Policy, m Meta) ([]Event, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	if a.Policy.Equal(p) {
		return nil, nil
	}
	return []Event{NewEvent(AccountOwner(a.Login), AccountPolicySet{Login: a.Login, Policy: p}, m)}, nil
}

// CheckSigningKey enforces a's policy on a request signed with k, one of
// a's keys.
func (a *Account) CheckSigningKey(k *AccountKey) error {
	switch {
	case a.Policy.RequireMultifactorSigning && (k.Attestation == nil || len(k.Attestation.Multifactor) == 0):
		return Errorf(EFORBIDDEN, "account policy requireMultifactorSigning: sign with a hardware-attested key that needs a PIN or touch")
	case a.Policy.RequireAttestedSigning && k.Attestation == nil:
		return Errorf(EFORBIDDEN, "account policy requireAttestedSigning: sign with a hardware-attested key")
	}
	return nil
}

// DeleteKey decides removing the key that ref names. An account never loses
// its last key: it could not authenticate again.
func (a *Account) DeleteKey(ref string, m Meta) (Event, error) {
	k := a.FindKey(ref)
	if k == nil {
		return Event{}, Errorf(ENOTFOUND, "%s does not exist", ref)
	}
	if len(a.Keys) == 1 {
		return Event{}, Errorf(ECONFLICT, "%s is the last key of account %s; add another key before deleting it", ref, a.Login)
	}
	return NewEvent(AccountOwner(a.Login),
		KeyDeleted{Name: k.Name, Fingerprint: k.Fingerprint}, m), nil
}

// FindKey returns the key that ref names, or nil. ref is a name, an MD5
// fingerprint with or without "MD5:", or a "SHA256:" fingerprint.
func (a *Account) FindKey(ref string) *AccountKey {
	for i := range a.Keys {
		if a.Keys[i].Name == ref {
			return &a.Keys[i]
		}
	}
	md5 := strings.ToLower(strings.TrimPrefix(ref, "MD5:"))
	for i := range a.Keys {
		k := &a.Keys[i]
		if k.Fingerprint == md5 || k.FingerprintSHA256 == ref {
			return k
		}
	}
	return nil
}

// KeyByFingerprint returns the key with the MD5 fingerprint fp, or nil.
func (a *Account) KeyByFingerprint(fp string) *AccountKey {
	for i := range a.Keys {
		if a.Keys[i].Fingerprint == fp {
			return &a.Keys[i]
		}
	}
	return nil
}

// ApplyAccountEvent returns the state after e, which was stored at log
// position seq. It is the one definition of what account events mean, shared
// by command decisions and the read model. acct is nil before the account
// exists. Events at or below acct.Version are ignored, so applying an event
// twice changes nothing.
func ApplyAccountEvent(acct *Account, e Event, seq uint64) (*Account, error) {
	if acct != nil && seq <= acct.Version {
		return acct, nil
	}
	switch e.Type {
	case TypeAccountCreated:
		var p AccountCreated
		if err := e.Decode(&p); err != nil {
			return nil, err
		}
		acct = &Account{Login: p.Login, Operator: p.Operator, Created: e.Time, Keys: []AccountKey{}}
	case TypeOperatorGranted:
		if acct == nil {
			return nil, Errorf(EINTERNAL, "event %s for a missing account", e.ID)
		}
		acct.Operator = true
	case TypeKeyCreated:
		if acct == nil {
			return nil, Errorf(EINTERNAL, "event %s for a missing account", e.ID)
		}
		var p KeyCreated
		if err := e.Decode(&p); err != nil {
			return nil, err
		}
		acct.Keys = append(acct.Keys, AccountKey{
			Name: p.Name, Fingerprint: p.Fingerprint, FingerprintSHA256: p.FingerprintSHA256,
			Key: p.Key, Type: p.Type, Bits: p.Bits, Created: e.Time, Attestation: p.Attestation,
			Expires: p.Expires,
		})
	case TypeKeyExpired:
		if acct == nil {
			return nil, Errorf(EINTERNAL, "event %s for a missing account", e.ID)
		}
		var p KeyExpired
		if err := e.Decode(&p); err != nil {
			return nil, err
		}
		for i := range acct.Keys {
			if acct.Keys[i].Fingerprint == p.Fingerprint {
				acct.Keys[i].Expired = true
			}
		}
	case TypePolicySet:
		if acct == nil {
			return nil, Errorf(EINTERNAL, "event %s for a missing account", e.ID)
		}
		var p AccountPolicySet
		if err := e.Decode(&p); err != nil {
			return nil, err
		}
		acct.Policy = p.Policy
	case TypeKeyDeleted:
		if acct == nil {
			return nil, Errorf(EINTERNAL, "event %s for a missing account", e.ID)
		}
		var p KeyDeleted
		if err := e.Decode(&p); err != nil {
			return nil, err
		}
		keys := make([]AccountKey, 0, len(acct.Keys))
		for _, k := range acct.Keys {
			if k.Fingerprint != p.Fingerprint {
				keys = append(keys, k)
			}
		}
		acct.Keys = keys
	case TypeCertificateIssued, TypeCertificateRevoked:
		if acct == nil {
			return nil, Errorf(EINTERNAL, "event %s for a missing account", e.ID)
		}
		if err := applyCertificateEvent(acct, e); err != nil {
			return nil, err
		}
	default:
		// Unknown types come from newer writers; readers skip them (see
		// the compatibility promise in docs/events.md).
	}
	if acct != nil {
		acct.Version = seq
	}
	return acct, nil
}
