package domain

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/oklog/ulid/v2"
)

// Owner kinds: every event belongs to exactly one owner, and the owner is
// the unit of consistency (one ordered history, one optimistic lock).
const (
	OwnerAccount = "account"
)

// Owner identifies the aggregate an event belongs to.
type Owner struct {
	Kind string `json:"kind"`
	ID   string `json:"id"`
}

// String returns "kind/id", the form used in logs and filters.
func (o Owner) String() string { return o.Kind + "/" + o.ID }

// Event is the envelope of every fact in the log.
type Event struct {
	ID            string          `json:"id"`
	Type          string          `json:"type"`
	Version       int             `json:"version"`
	Time          time.Time       `json:"time"`
	Owner         Owner           `json:"owner"`
	Actor         string          `json:"actor"`
	RequestID     string          `json:"requestId,omitempty"`
	CorrelationID string          `json:"correlationId,omitempty"`
	CausationID   string          `json:"causationId,omitempty"`
	Data          json.RawMessage `json:"data"`
}

// Meta is what a command knows about who asked for it and why; it becomes
// the envelope fields of the events the command produces.
type Meta struct {
	Actor         string
	RequestID     string
	CorrelationID string
	CausationID   string
	Time          time.Time
}

// NewEvent builds an event of payload's type (its EventType: name and
// schema version) with a fresh ULID. The payload must marshal; the payload
// types of this package always do.
func NewEvent(owner Owner, payload Payload, m Meta) Event {
	typ := payload.EventType()
	data, err := json.Marshal(payload)
	if err != nil {
		panic(fmt.Sprintf("domain: marshal %s payload: %v", typ.Name, err))
	}
	t := m.Time
	if t.IsZero() {
		t = time.Now()
	}
	corr := m.CorrelationID
	if corr == "" {
		corr = m.RequestID
	}
	return Event{
		ID:            ulid.Make().String(),
		Type:          typ.Name,
		Version:       typ.Version,
		Time:          t.UTC(),
		Owner:         owner,
		Actor:         m.Actor,
		RequestID:     m.RequestID,
		CorrelationID: corr,
		CausationID:   m.CausationID,
		Data:          data,
	}
}

// Decode unmarshals the payload of e into v. It refuses a version of e's
// type newer than this build reads (docs/events.md, compatibility
// promise): during a rolling upgrade an older replica must stop at such an
// event, not read it as the version it knows.
func (e Event) Decode(v any) error {
	if newest, ok := SchemaVersions[e.Type]; ok && e.Version > newest {
		return fmt.Errorf("decode %s %s: version %d is newer than this keysd reads (%d): upgrade it", e.Type, e.ID, e.Version, newest)
	}
	if err := json.Unmarshal(e.Data, v); err != nil {
		return fmt.Errorf("decode %s %s payload: %w", e.Type, e.ID, err)
	}
	return nil
}

// AccountCreated records a new account.
type AccountCreated struct {
	Login    string `json:"login"`
	Operator bool   `json:"operator"`
}

// OperatorGranted records that an existing account became an operator.
type OperatorGranted struct {
	Login string `json:"login"`
}

// KeyCreated records a key added to its owner: a public key to an account,
// or an infrastructure key to the shared pool or an instance (then with
// id, description and the sealed private half). KeyUpdated carries the
// same payload: the key's whole new state.
type KeyCreated struct {
	ID                string `json:"id,omitempty"`
	Name              string `json:"name"`
	Fingerprint       string `json:"fingerprint"`
	FingerprintSHA256 string `json:"fingerprintSHA256"`
	Key               string `json:"key"`
	Type              string `json:"keyType"`
	Bits              int    `json:"bits"`
	// Attestation is present for hardware-attested keys (added without a
	// version change: old readers ignore it).
	Attestation *Attestation `json:"attestation,omitempty"`
	// Description of an infrastructure key.
	Description string `json:"description,omitempty"`
	// SealedPrivateKey is the private half, encrypted: never plaintext.
	SealedPrivateKey *SealedSecret `json:"sealedPrivateKey,omitempty"`
	// ReplacedSecretID, in a KeyUpdated, names the data key of the private
	// half the update replaced, destroyed with it (added without a version
	// change: old readers ignore it).
	ReplacedSecretID string `json:"replacedSecretId,omitempty"`
	// Expires is when the key expires by itself (a KeyExpired then
	// records it); nil for a key that does not expire. UTC, whole
	// seconds. Added without a version change: old readers ignore it.
	Expires *time.Time `json:"expires,omitempty"`
}

// KeyUpdated records a shared key's whole new state. Its payload is
// KeyCreated's, field for field (readers decode either into KeyCreated);
// it is a type of its own only to declare its event type.
type KeyUpdated KeyCreated

// AccountPolicySet records the account's key policy as a whole (not a
// change to it).
type AccountPolicySet struct {
	Login  string `json:"login"`
	Policy Policy `json:"policy"`
}

// KeyExpired records that a key reached the expiry it was created with.
// It is decided against the owner's state like any other event, so it is
// recorded once whichever replica notices first. The key stays (shown as
// expired) until it is deleted, but no longer authenticates, is no longer
// in authorized_keys and is in the revocation list.
type KeyExpired struct {
	ID                string    `json:"id,omitempty"`
	Name              string    `json:"name"`
	Fingerprint       string    `json:"fingerprint"`
	FingerprintSHA256 string    `json:"fingerprintSHA256"`
	Expires           time.Time `json:"expires"`
}

// KeyDeleted records a key removed from its owner.
type KeyDeleted struct {
	ID          string `json:"id,omitempty"`
	Name        string `json:"name"`
	Fingerprint string `json:"fingerprint"`
	// SecretID names the data key of the private half, destroyed with the
	// key (added without a version change: old readers ignore it).
	SecretID string `json:"secretId,omitempty"`
}
