package projections

import (
	"maps"
	"slices"

	"github.com/infrakeys/infrakeys/domain"
)

// What the state cache needs of each domain state: a clone that the
// domain's Apply functions may change without touching the original (they
// change the state they are given: append to its key slice, write to its
// intake map, set fields), and an estimate of its size in memory.
//
// A clone copies the struct and clips its slices, so that an append
// reallocates instead of writing into an array the original shares, and
// copies its maps; what the Apply functions only ever replace (a shared
// key's *InfraKey, an attestation) is shared.

func cloneAccount(a *domain.Account) *domain.Account {
	c := *a
	c.Keys = slices.Clip(a.Keys)
	c.Certificates = slices.Clip(a.Certificates)
	return &c
}

func cloneSharedKey(s *domain.SharedKey) *domain.SharedKey {
	c := *s
	c.Intake = maps.Clone(s.Intake)
	return &c
}

func cloneInstance(in *domain.Instance) *domain.Instance {
	c := *in
	c.Keys = slices.Clip(in.Keys)
	c.Intake = maps.Clone(in.Intake)
	return &c
}

// extendInstance is cloneInstance keeping the keys' spare capacity, for
// the one next state allowed to append there (stateCache.claim): the
// keys of a large instance are not copied for every new one.
func extendInstance(in *domain.Instance) *domain.Instance {
	c := *in
	c.Intake = maps.Clone(in.Intake)
	return &c
}

func cloneToken(t *domain.Token) *domain.Token {
	c := *t
	c.Roles = slices.Clip(t.Roles)
	return &c
}

// Sizes are estimates in bytes: the structs plus the strings they point
// to, rounded up; good enough to bound the cache, not an accounting.
const (
	structBytes = 256 // a state's struct and the map or slice headers
	keyBytes    = 256 // one key's struct, beside its strings
	recordBytes = 160 // one intake record and its map entry
)

func accountSize(a *domain.Account) int {
	n := structBytes + len(a.Login)
	for i := range a.Keys {
		k := &a.Keys[i]
		n += keyBytes + len(k.Name) + len(k.Fingerprint) + len(k.FingerprintSHA256) + len(k.Key) + len(k.Type)
		if k.Attestation != nil {
			n += 1024
		}
	}
	return n + len(a.Certificates)*certificateBytes
}

// certificateBytes is about what one certificate an account keeps takes.
const certificateBytes = 512

func infraKeySize(k *domain.InfraKey) int {
	n := keyBytes + len(k.ID) + len(k.Name) + len(k.Description) + len(k.InstanceID) + len(k.PublicKey) + len(k.Fingerprint) + len(k.FingerprintSHA256)
	if k.PrivateKey != nil {
		n += 2048 // a sealed private half: a few hundred bytes to a few KB
	}
	return n
}

func sharedKeySize(s *domain.SharedKey) int {
	n := structBytes + len(s.Name) + recordBytes*len(s.Intake)
	if s.Key != nil {
		n += infraKeySize(s.Key)
	}
	return n
}

func instanceSize(in *domain.Instance) int {
	n := structBytes + len(in.ID) + recordBytes*len(in.Intake)
	for i := range in.Keys {
		n += infraKeySize(&in.Keys[i])
	}
	return n
}

func tokenSize(t *domain.Token) int {
	n := structBytes + len(t.ID) + len(t.Name) + len(t.Hash) + len(t.CreatedBy)
	for _, r := range t.Roles {
		n += 16 + len(r)
	}
	return n
}
