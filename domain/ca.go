package domain

import (
	"strings"
	"time"
)

// OwnerCA is the owner kind of a certificate authority: one owner per CA
// ("user", "host"), holding all of its keys, so that creating and retiring
// keys of one CA are ordered and decided against each other.
const OwnerCA = "ca"

// The two certificate authorities keysd runs. Their names are the owner
// ids and the path segments of the API.
const (
	CAUser = "user" // signs user certificates (sshd's TrustedUserCAKeys)
	CAHost = "host" // signs host certificates (clients' @cert-authority)
)

// CANames lists the CAs.
var CANames = []string{CAUser, CAHost}

// ScopeCA is the KeyRef scope a CA key's private half is sealed under: the
// CA's name is the KeyRef's name, the CA key's id its id.
const ScopeCA = "ca"

// DefaultCAKeyAlgorithm is the algorithm of a CA key when the operator
// names none.
const DefaultCAKeyAlgorithm = "ed25519"

// maxCAKeys bounds the keys a CA trusts at once: every one of them is in
// every sshd's TrustedUserCAKeys and every known_hosts line set.
const maxCAKeys = 16

// CAKeyCreated records a new key of a CA: from now on it signs, and every
// older key that is not retired stays trusted. Schema version 1.
type CAKeyCreated struct {
	ID                string `json:"id"`
	CA                string `json:"ca"`
	PublicKey         string `json:"publicKey"`
	Type              string `json:"keyType"`
	Bits              int    `json:"bits"`
	FingerprintSHA256 string `json:"fingerprintSHA256"`
	// SealedPrivateKey is the private half, sealed for KeyRef{ID, ScopeCA,
	// Name: CA}: never plaintext.
	SealedPrivateKey *SealedSecret `json:"sealedPrivateKey"`
}

// CAKeyRetired records that a CA key is no longer trusted, nor used to
// sign; its private half's data key (SecretID) is destroyed with it.
// Certificates it signed stop being accepted once every sshd and
// known_hosts drops the key. Schema version 1.
type CAKeyRetired struct {
	ID                string `json:"id"`
	CA                string `json:"ca"`
	FingerprintSHA256 string `json:"fingerprintSHA256"`
	SecretID          string `json:"secretId,omitempty"`
}

// CA is a certificate authority: its keys, newest last, retired ones
// included (they are listed as such).
type CA struct {
	Name    string  `json:"name"`
	Keys    []CAKey `json:"keys"`
	Version uint64  `json:"version"`
}

// CAKey is one key of a CA.
type CAKey struct {
	ID                string        `json:"id"`
	PublicKey         string        `json:"publicKey"`
	Type              string        `json:"keyType"`
	Bits              int           `json:"bits"`
	FingerprintSHA256 string        `json:"fingerprintSHA256"`
	PrivateKey        *SealedSecret `json:"sealedPrivateKey,omitempty"`
	Created           time.Time     `json:"created"`
	Retired           time.Time     `json:"retired,omitzero"`
}

// Ref is the KeyRef k's private half is sealed for, in CA ca.
func (k *CAKey) Ref(ca string) KeyRef { return KeyRef{ID: k.ID, Scope: ScopeCA, Name: ca} }

// Trusted reports whether k is trusted (not retired).
func (k *CAKey) Trusted() bool { return k.Retired.IsZero() }

// CAOwner is the owner of a CA's events.
func CAOwner(name string) Owner { return Owner{Kind: OwnerCA, ID: name} }

// ValidateCAName reports whether name is one of the CAs.
func ValidateCAName(name string) error {
	for _, n := range CANames {
		if n == name {
			return nil
		}
	}
	return Errorf(ENOTFOUND, "certificate authority %s does not exist: it is %s", name, strings.Join(CANames, " or "))
}

// Trusted returns the keys of ca that are trusted, oldest first.
func (ca *CA) Trusted() []CAKey {
	var out []CAKey
	for _, k := range ca.Keys {
		if k.Trusted() {
			out = append(out, k)
		}
	}
	return out
}

// Signing returns the key ca signs with, the newest trusted one, or an
// ENOTFOUND error when an operator has created none (or retired all).
func (ca *CA) Signing() (*CAKey, error) {
	for i := len(ca.Keys) - 1; i >= 0; i-- {
		if ca.Keys[i].Trusted() {
			return &ca.Keys[i], nil
		}
	}
	return nil, Errorf(ENOTFOUND, "the %s certificate authority has no key: an operator must create one first (POST /--admin/cas/%s)", ca.Name, ca.Name)
}

// FindKey returns ca's key that ref names (its id or its SHA256
// fingerprint), or nil.
func (ca *CA) FindKey(ref string) *CAKey {
	for i := range ca.Keys {
		if ca.Keys[i].ID == ref || ca.Keys[i].FingerprintSHA256 == ref {
			return &ca.Keys[i]
		}
	}
	return nil
}

// NewCAKey describes a CA key about to be created: its id, validated
// halves and sealed private half.
type NewCAKey struct {
	ID     string
	Pair   *KeyPair
	Sealed *SealedSecret
}

// AddKey decides adding a key to ca: it signs from now on.
func (ca *CA) AddKey(n NewCAKey, m Meta) (Event, error) {
	if err := ValidateCAName(ca.Name); err != nil {
		return Event{}, err
	}
	if n.Sealed == nil {
		return Event{}, Errorf(EINTERNAL, "CA key %s has no sealed private half", n.ID)
	}
	if len(ca.Trusted()) >= maxCAKeys {
		return Event{}, Errorf(ECONFLICT, "the %s certificate authority trusts %d keys already; retire one first", ca.Name, maxCAKeys)
	}
	return NewEvent(CAOwner(ca.Name), CAKeyCreated{
		ID: n.ID, CA: ca.Name, PublicKey: n.Pair.PublicKey, Type: n.Pair.Type, Bits: n.Pair.Bits,
		FingerprintSHA256: n.Pair.FingerprintSHA256, SealedPrivateKey: n.Sealed,
	}, m), nil
}

// RetireKey decides retiring ca's key that ref names; retiring it again
// decides nothing.
func (ca *CA) RetireKey(ref string, m Meta) ([]Event, error) {
	k := ca.FindKey(ref)
	if k == nil {
		return nil, Errorf(ENOTFOUND, "the %s certificate authority has no key %s", ca.Name, ref)
	}
	if !k.Trusted() {
		return nil, nil
	}
	p := CAKeyRetired{ID: k.ID, CA: ca.Name, FingerprintSHA256: k.FingerprintSHA256}
	if k.PrivateKey != nil {
		p.SecretID = k.PrivateKey.SecretID
	}
	return []Event{NewEvent(CAOwner(ca.Name), p, m)}, nil
}

// ApplyCAEvent returns the CA after e, stored at seq. Events at or below
// the version are ignored.
func ApplyCAEvent(ca *CA, e Event, seq uint64) (*CA, error) {
	if ca == nil {
		ca = &CA{Name: e.Owner.ID, Keys: []CAKey{}}
	}
	if seq <= ca.Version {
		return ca, nil
	}
	switch e.Type {
	case TypeCAKeyCreated:
		var p CAKeyCreated
		if err := e.Decode(&p); err != nil {
			return nil, err
		}
		ca.Keys = append(ca.Keys, CAKey{
			ID: p.ID, PublicKey: p.PublicKey, Type: p.Type, Bits: p.Bits,
			FingerprintSHA256: p.FingerprintSHA256, PrivateKey: p.SealedPrivateKey, Created: e.Time,
		})
	case TypeCAKeyRetired:
		var p CAKeyRetired
		if err := e.Decode(&p); err != nil {
			return nil, err
		}
		for i := range ca.Keys {
			if ca.Keys[i].ID == p.ID {
				ca.Keys[i].Retired = e.Time
				// The data key is destroyed: what is left is noise.
				ca.Keys[i].PrivateKey = nil
			}
		}
	}
	ca.Version = seq
	return ca, nil
}
