package domain

import (
	"strings"
	"time"
)

// Owner kinds of infrastructure keys. A shared key is its own owner (one
// subject per name, so a name is unique in the pool by construction); an
// instance owns all of its keys and its removal.
const (
	OwnerShared   = "shared"
	OwnerInstance = "instance"
)

// Scopes of infrastructure keys.
const (
	ScopeShared   = "shared"
	ScopeInstance = "instance"
)

// SealedSecret is a private key encrypted with its own data key. Only this
// ever travels in events and read models; the data key is kept apart,
// wrapped by the master key, and destroyed with the key.
type SealedSecret struct {
	SecretID string `json:"secretId"`
	Alg      string `json:"alg"`
	// AAD names what the ciphertext is bound to as associated data:
	// "key+secretId", the key it belongs to (KeyRef: id, scope, instance,
	// name) and its own id.
	AAD        string `json:"aad"`
	Nonce      []byte `json:"nonce"`
	Ciphertext []byte `json:"ciphertext"`
}

// InfraKey is an infrastructure key (IBM Lifecycle Manager's): a named key
// pair for provisioning and reaching infrastructure.
type InfraKey struct {
	ID                string        `json:"id"`
	Name              string        `json:"name"`
	Description       string        `json:"description,omitempty"`
	Scope             string        `json:"scope"`
	InstanceID        string        `json:"instanceId,omitempty"`
	PublicKey         string        `json:"publicKey"`
	Type              string        `json:"keyType"`
	Bits              int           `json:"bits"`
	Fingerprint       string        `json:"fingerprint"`
	FingerprintSHA256 string        `json:"fingerprintSHA256"`
	PrivateKey        *SealedSecret `json:"sealedPrivateKey,omitempty"`
	Created           time.Time     `json:"created"`
	Updated           time.Time     `json:"updated"`
	// Expires is when the key expires by itself; nil: never.
	Expires *time.Time `json:"expires,omitempty"`
	// Expired is set by its KeyExpired (see ExpiredAt).
	Expired bool `json:"expired,omitempty"`
}

// ExpiredAt reports whether the key is expired at now: its KeyExpired is
// recorded, or its expiry has passed (the event follows shortly).
func (k *InfraKey) ExpiredAt(now time.Time) bool {
	return k.Expired || (k.Expires != nil && !now.Before(*k.Expires))
}

// KeyRef is what identifies an infrastructure key: its id, and where it is
// by name. A sealed private half is bound to all of it, so that it opens
// only as the private half of the key it was sealed for, even if a forged
// event gave another key (another name) the same id.
type KeyRef struct {
	ID         string
	Scope      string
	InstanceID string // for ScopeInstance
	Name       string
}

// Ref returns the reference of k.
func (k *InfraKey) Ref() KeyRef {
	return KeyRef{ID: k.ID, Scope: k.Scope, InstanceID: k.InstanceID, Name: k.Name}
}

// SharedKey is the history of one name in the shared pool: the key, or nil
// when there is none (never created, or deleted).
type SharedKey struct {
	Name string    `json:"name"`
	Key  *InfraKey `json:"key,omitempty"`
	// Intake is the outcome of every driver message that created this
	// name's key, by intake id.
	Intake  map[string]IntakeRecord `json:"intake,omitempty"`
	Version uint64                  `json:"version"`
}

// SharedOwner is the owner of a shared key's events.
func SharedOwner(name string) Owner { return Owner{Kind: OwnerShared, ID: name} }

// InstanceOwner is the owner of a resource instance's keys.
func InstanceOwner(id string) Owner { return Owner{Kind: OwnerInstance, ID: id} }

// NewInfraKey describes a key about to be created: validated halves, the
// sealed private half (nil if none), and the new key's id.
type NewInfraKey struct {
	ID          string
	Name        string
	Description string
	Pair        *KeyPair
	Sealed      *SealedSecret
	// Expires is when the key expires by itself; nil: never.
	Expires *time.Time
}

func (n NewInfraKey) payload() KeyCreated {
	return KeyCreated{
		ID:                n.ID,
		Name:              n.Name,
		Description:       n.Description,
		Fingerprint:       n.Pair.Fingerprint,
		FingerprintSHA256: n.Pair.FingerprintSHA256,
		Key:               n.Pair.PublicKey,
		Type:              n.Pair.Type,
		Bits:              n.Pair.Bits,
		SealedPrivateKey:  n.Sealed,
		Expires:           n.Expires,
	}
}

// maxDescriptionLen bounds descriptions.
const maxDescriptionLen = 4096

func validateNewInfraKey(n NewInfraKey) error {
	if n.Name == "" {
		return Errorf(EMISSING, "name is required")
	}
	if err := ValidateKeyName(n.Name); err != nil {
		return err
	}
	if len(n.Description) > maxDescriptionLen {
		return Errorf(EINVALID, "description must be at most %d bytes", maxDescriptionLen)
	}
	return nil
}

// CreateShared decides creating a shared key; the name must be free.
func (s *SharedKey) CreateShared(n NewInfraKey, m Meta) (Event, error) {
	if err := validateNewInfraKey(n); err != nil {
		return Event{}, err
	}
	if s.Key != nil {
		return Event{}, Errorf(ECONFLICT, "infrastructure key %s already exists", n.Name)
	}
	if err := checkExpires(n.Expires, m); err != nil {
		return Event{}, err
	}
	return NewEvent(SharedOwner(n.Name), n.payload(), m), nil
}

// Update decides replacing a shared key's description and, when pair is
// not nil, its halves (sealed is the new private half, nil if none), and,
// when expires is not nil, its expiry. An expired key is not updated: its
// KeyExpired is final (the revocation list holds it), so it is deleted and
// created again instead.
func (s *SharedKey) Update(description string, pair *KeyPair, sealed *SealedSecret, expires *time.Time, m Meta) (Event, error) {
	if s.Key == nil {
		return Event{}, Errorf(ENOTFOUND, "infrastructure key %s does not exist", s.Name)
	}
	if len(description) > maxDescriptionLen {
		return Event{}, Errorf(EINVALID, "description must be at most %d bytes", maxDescriptionLen)
	}
	k := s.Key
	if k.ExpiredAt(eventTime(m)) {
		return Event{}, expiredError("infrastructure key "+k.Name, k.Expires)
	}
	if err := checkExpires(expires, m); err != nil {
		return Event{}, err
	}
	if expires == nil {
		expires = k.Expires
	}
	p := KeyCreated{
		ID: k.ID, Name: k.Name, Description: description,
		Fingerprint: k.Fingerprint, FingerprintSHA256: k.FingerprintSHA256,
		Key: k.PublicKey, Type: k.Type, Bits: k.Bits, SealedPrivateKey: k.PrivateKey,
		Expires: expires,
	}
	if pair != nil {
		p.Fingerprint, p.FingerprintSHA256 = pair.Fingerprint, pair.FingerprintSHA256
		p.Key, p.Type, p.Bits, p.SealedPrivateKey = pair.PublicKey, pair.Type, pair.Bits, sealed
		if k.PrivateKey != nil && (sealed == nil || sealed.SecretID != k.PrivateKey.SecretID) {
			p.ReplacedSecretID = k.PrivateKey.SecretID
		}
	}
	return NewEvent(SharedOwner(s.Name), KeyUpdated(p), m), nil
}

// SharedKeyChange is an update of a shared key as a client sends it: LM's
// CLI sends the whole object back, so id and name may be there, unchanged.
type SharedKeyChange struct {
	ID          string  // if not empty, must be the key's id
	Name        string  // if not empty, must be the key's name: names never change
	Description *string // the new description, if any
	// PublicKey is a new public half sent alone (without a private half
	// or a pair to generate): it must be the stored private half's.
	PublicKey string
	// Expires is the key's new expiry, if any; nil keeps the one it has.
	Expires *time.Time
}

// checkName refuses renaming the key name.
func (c SharedKeyChange) checkName(name string) error {
	if c.Name != "" && c.Name != name {
		return Errorf(EINVALID, "name cannot be changed (from %s to %s); create a new key instead", name, c.Name)
	}
	return nil
}

// check refuses c against s before anything is prepared for it: a key that
// does not exist, another name, another id.
func (c SharedKeyChange) check(s *SharedKey) error {
	if err := c.checkName(s.Name); err != nil {
		return err
	}
	if s.Key == nil {
		return Errorf(ENOTFOUND, "infrastructure key %s does not exist", s.Name)
	}
	if c.ID != "" && c.ID != s.Key.ID {
		return Errorf(EINVALID, "id %s is not the id of infrastructure key %s", c.ID, s.Name)
	}
	return nil
}

// Change decides applying c to the shared key. pair, when not nil, is a
// new key pair (given or generated) whose private half, if any, was sealed
// as sealed. It returns the KeyUpdated and the private half the change
// replaces (nil if none), whose data key is to be destroyed once the
// change is recorded.
func (s *SharedKey) Change(c SharedKeyChange, pair *KeyPair, sealed *SealedSecret, m Meta) (Event, *SealedSecret, error) {
	if err := c.check(s); err != nil {
		return Event{}, nil, err
	}
	k := s.Key
	desc := k.Description
	if c.Description != nil {
		desc = *c.Description
	}
	if pair == nil && c.PublicKey != "" {
		// A new public half alone must still match the private half.
		pub, err := ParsePublicKey(c.PublicKey)
		if err != nil {
			return Event{}, nil, Errorf(EINVALID, "publicKey is invalid: %s", strings.TrimPrefix(ErrorMessage(err), "key is invalid: "))
		}
		if k.PrivateKey != nil && pub.Fingerprint != k.Fingerprint {
			return Event{}, nil, Errorf(ECONFLICT, "publicKey and privateKey do not match: the new public half does not belong to the stored private half")
		}
		pair = &KeyPair{PublicKey: pub.Authorized, Type: pub.Type, Bits: pub.Bits, Fingerprint: pub.Fingerprint, FingerprintSHA256: pub.FingerprintSHA256}
		sealed = k.PrivateKey
	}
	var replaced *SealedSecret
	if pair != nil && k.PrivateKey != nil && (sealed == nil || sealed.SecretID != k.PrivateKey.SecretID) {
		replaced = k.PrivateKey
	}
	ev, err := s.Update(desc, pair, sealed, c.Expires, m)
	if err != nil {
		return Event{}, nil, err
	}
	return ev, replaced, nil
}

// Delete decides deleting a shared key.
func (s *SharedKey) Delete(m Meta) (Event, error) {
	if s.Key == nil {
		return Event{}, Errorf(ENOTFOUND, "infrastructure key %s does not exist", s.Name)
	}
	return NewEvent(SharedOwner(s.Name), keyDeleted(s.Key), m), nil
}

// ShreddedSecret returns the data key an event makes garbage: the private
// half of a deleted key, the one an update replaced, or a retired CA
// key's; "" for none.
func ShreddedSecret(e Event) string {
	switch e.Type {
	case TypeKeyDeleted:
		var p KeyDeleted
		if e.Decode(&p) == nil {
			return p.SecretID
		}
	case TypeKeyUpdated:
		var p KeyCreated
		if e.Decode(&p) == nil {
			return p.ReplacedSecretID
		}
	case TypeCAKeyRetired:
		var p CAKeyRetired
		if e.Decode(&p) == nil {
			return p.SecretID
		}
	}
	return ""
}

// PrivateKeyRead records that private material was released. It never
// contains the material.
type PrivateKeyRead struct {
	ID      string `json:"id"`
	Name    string `json:"name"`
	Purpose string `json:"purpose"`
}

// Purposes of a private key read.
const (
	PurposeInclude    = "includePrivateKey"
	PurposeSubstitute = "substitution"
)

// RecordPrivateRead decides the audit fact of releasing k's private half.
func RecordPrivateRead(owner Owner, k *InfraKey, purpose string, m Meta) Event {
	return NewEvent(owner, PrivateKeyRead{ID: k.ID, Name: k.Name, Purpose: purpose}, m)
}

// ApplySharedKeyEvent returns the state of a shared key name after e,
// stored at seq. Events at or below the version are ignored.
func ApplySharedKeyEvent(s *SharedKey, e Event, seq uint64) (*SharedKey, error) {
	if s == nil {
		s = &SharedKey{Name: e.Owner.ID}
	}
	if seq <= s.Version {
		return s, nil
	}
	switch e.Type {
	case TypeKeyCreated, TypeKeyUpdated:
		var p KeyCreated
		if err := e.Decode(&p); err != nil {
			return nil, err
		}
		k := infraKeyFrom(p, ScopeShared, "", e.Time)
		if e.Type == TypeKeyUpdated && s.Key != nil {
			k.Created = s.Key.Created
		}
		s.Key = k
		if id, r, ok := intakeRecordOf(e, &p, ScopeShared); ok {
			if s.Intake == nil {
				s.Intake = map[string]IntakeRecord{}
			}
			s.Intake[id] = r
		}
	case TypeKeyDeleted:
		s.Key = nil
	case TypeKeyExpired:
		if s.Key != nil {
			s.Key.Expired = true
		}
	}
	s.Version = seq
	return s, nil
}

func infraKeyFrom(p KeyCreated, scope, instance string, t time.Time) *InfraKey {
	return &InfraKey{
		ID: p.ID, Name: p.Name, Description: p.Description, Scope: scope, InstanceID: instance,
		PublicKey: p.Key, Type: p.Type, Bits: p.Bits,
		Fingerprint: p.Fingerprint, FingerprintSHA256: p.FingerprintSHA256,
		PrivateKey: p.SealedPrivateKey, Created: t, Updated: t, Expires: p.Expires,
	}
}
