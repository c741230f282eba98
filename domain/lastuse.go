package domain

import (
	"strconv"
	"time"
)

// KeyUses records when keys were last used: an account key to
// authenticate a request (HTTP Signature), an infrastructure key when
// its private half was released (read with includePrivateKey, or
// substituted). It is coarse by design (docs/operations.md, "Last use of
// keys"): a use is not an event, and a key used a thousand times an hour
// costs at most one write an hour, so LastUsed is exact only to within
// the implementation's precision.
type KeyUses interface {
	// Used notes that the key id (UseID) was used at t. It runs on the
	// request path and never waits for a write.
	Used(id string, t time.Time)
	// LastUsed returns when the key id was last used, to within the
	// precision; false when it never was, as far as is recorded.
	LastUsed(id string) (time.Time, bool)
}

// UseID names k, a key of account login, for KeyUses. The fingerprint
// and creation time are part of it: a key deleted and added again is
// another key, whose uses start afresh.
func (k *AccountKey) UseID(login string) string {
	return "account/" + login + "/" + k.FingerprintSHA256 + "/" + strconv.FormatInt(k.Created.UnixNano(), 10)
}

// UseID names k for KeyUses. The fingerprint is part of it: new halves
// for a shared key (KeyUpdated) make another credential, not yet used.
func (k *InfraKey) UseID() string {
	return "infra/" + k.ID + "/" + k.FingerprintSHA256
}

// LastUsed returns when the key id was last used according to uses,
// nil when never or when uses is nil (not recorded): ready for a view's
// optional lastUsed, to the second.
func LastUsed(uses KeyUses, id string) *time.Time {
	if uses == nil {
		return nil
	}
	t, ok := uses.LastUsed(id)
	if !ok {
		return nil
	}
	t = t.UTC().Truncate(time.Second)
	return &t
}
