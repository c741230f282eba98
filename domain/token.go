package domain

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"slices"
	"strings"
	"time"

	"github.com/oklog/ulid/v2"
)

// OwnerToken owns an API token's events.
const OwnerToken = "token"

// Roles an API token can hold, for the infrastructure keys API.
const (
	// RoleKeysRead reads key metadata (never private halves).
	RoleKeysRead = "keys:read"
	// RoleKeysManage creates, updates and deletes shared keys (and reads
	// metadata).
	RoleKeysManage = "keys:manage"
	// RolePrivateRead reads private halves: includePrivateKey and key
	// substitution for drivers (and reads metadata).
	RolePrivateRead = "keys:private"
	// RoleHostsSign gets host certificates for instances' keys, signed
	// by the host CA (and nothing else: not even key metadata).
	RoleHostsSign = "hosts:sign"
)

// Roles lists every role.
var Roles = []string{RoleKeysRead, RoleKeysManage, RolePrivateRead, RoleHostsSign}

// tokenPrefix starts every token, so a leaked token is recognisable (secret
// scanners) and cannot be confused with another credential.
const tokenPrefix = "ikt_"

// Token is an API token: only a hash of its secret is ever stored.
type Token struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	Roles     []string  `json:"roles"`
	Hash      string    `json:"hash"`
	Created   time.Time `json:"created"`
	CreatedBy string    `json:"createdBy"`
	Revoked   bool      `json:"revoked,omitempty"`
	RevokedAt time.Time `json:"revokedAt,omitzero"`
	Version   uint64    `json:"version"`
}

// TokenCreated records a new token: its hash, never its secret.
type TokenCreated struct {
	ID    string   `json:"id"`
	Name  string   `json:"name"`
	Roles []string `json:"roles"`
	Hash  string   `json:"hash"`
}

// TokenRevoked records that a token no longer authenticates.
type TokenRevoked struct {
	ID string `json:"id"`
}

// TokenOwner is the owner of a token's events.
func TokenOwner(id string) Owner { return Owner{Kind: OwnerToken, ID: id} }

// Has reports whether t grants role; manage and private imply read.
func (t *Token) Has(role string) bool {
	if slices.Contains(t.Roles, role) {
		return true
	}
	return role == RoleKeysRead && (slices.Contains(t.Roles, RoleKeysManage) || slices.Contains(t.Roles, RolePrivateRead))
}

// hashSecret returns the stored form of a token.
func hashSecret(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// IssueToken decides a new token with roles. It returns the token, to be
// shown once, and the event, which holds only its hash.
func IssueToken(name string, roles []string, m Meta) (string, Event, error) {
	if name == "" {
		return "", Event{}, Errorf(EMISSING, "token name is required")
	}
	if err := ValidateKeyName(name); err != nil {
		return "", Event{}, Errorf(EINVALID, "token %s", ErrorMessage(err))
	}
	if len(roles) == 0 {
		return "", Event{}, Errorf(EMISSING, "a token needs at least one role: %s", strings.Join(Roles, ", "))
	}
	for _, r := range roles {
		if !slices.Contains(Roles, r) {
			return "", Event{}, Errorf(EINVALID, "unknown role %q; roles are %s", r, strings.Join(Roles, ", "))
		}
	}
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		return "", Event{}, err
	}
	id := ulid.Make().String()
	token := tokenPrefix + id + "_" + base64.RawURLEncoding.EncodeToString(secret)
	roles = slices.Compact(slices.Sorted(slices.Values(roles)))
	ev := NewEvent(TokenOwner(id), TokenCreated{ID: id, Name: name, Roles: roles, Hash: hashSecret(token)}, m)
	return token, ev, nil
}

// BearerToken returns the token of an Authorization value that uses the
// Bearer scheme, whose name is case-insensitive (RFC 7235 section 2.1):
// "Bearer", "bearer" and "BEARER" are the same scheme.
func BearerToken(authorization string) (string, bool) {
	scheme, token, ok := strings.Cut(strings.TrimSpace(authorization), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	return strings.TrimSpace(token), true
}

// ParseTokenID returns the id part of a token, for lookup.
func ParseTokenID(token string) (string, bool) {
	rest, ok := strings.CutPrefix(token, tokenPrefix)
	if !ok {
		return "", false
	}
	id, secret, ok := strings.Cut(rest, "_")
	return id, ok && len(id) == 26 && secret != ""
}

// Matches reports, in constant time, whether token is t's secret.
func (t *Token) Matches(token string) bool {
	return subtle.ConstantTimeCompare([]byte(hashSecret(token)), []byte(t.Hash)) == 1
}

// Revoke decides revoking t; revoking it again decides nothing.
func (t *Token) Revoke(m Meta) []Event {
	if t.Revoked {
		return nil
	}
	return []Event{NewEvent(TokenOwner(t.ID), TokenRevoked{ID: t.ID}, m)}
}

// ApplyTokenEvent returns the token after e, stored at seq.
func ApplyTokenEvent(t *Token, e Event, seq uint64) (*Token, error) {
	if t != nil && seq <= t.Version {
		return t, nil
	}
	switch e.Type {
	case TypeTokenCreated:
		var p TokenCreated
		if err := e.Decode(&p); err != nil {
			return nil, err
		}
		t = &Token{ID: p.ID, Name: p.Name, Roles: p.Roles, Hash: p.Hash, Created: e.Time, CreatedBy: e.Actor}
	case TypeTokenRevoked:
		if t == nil {
			return nil, Errorf(EINTERNAL, "event %s for a missing token", e.ID)
		}
		t.Revoked, t.RevokedAt = true, e.Time
	}
	if t != nil {
		t.Version = seq
	}
	return t, nil
}
