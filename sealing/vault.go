package sealing

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/oklog/ulid/v2"

	"github.com/infrakeys/infrakeys/domain"
)

// Store keeps wrapped data keys, one per sealed secret, apart from the
// event log (bus.DataKeys in keysd).
type Store interface {
	// Create stores the data key of a new secret.
	Create(ctx context.Context, id string, wrapped []byte) error
	// Replace stores a re-wrapped data key if the one at rev is still
	// there, and returns domain.ErrVersionConflict otherwise. It then
	// erases the replaced one for good, as Destroy does: a copy left on
	// disk would open with the retired master key.
	Replace(ctx context.Context, id string, wrapped []byte, rev uint64) error
	// EraseStale erases the replaced data keys that a Replace which failed
	// half-way left, and returns how many.
	EraseStale(ctx context.Context) (int, error)
	// Get returns a data key and its revision; nil if there is none.
	Get(ctx context.Context, id string) ([]byte, uint64, error)
	// Destroy removes a data key for good, every stored copy of it.
	Destroy(ctx context.Context, id string) error
	// IDs lists the secrets that have a data key.
	IDs(ctx context.Context) ([]string, error)
}

// Vault implements domain.Sealer: it seals private keys under fresh data
// keys wrapped by the current master key, and keeps the wrapped data keys
// in a Store.
//
// Its keyring is fixed for its life: switching master keys (docs/sealing.md)
// means restarting keysd with other key files.
type Vault struct {
	ring  *Keyring
	store Store
}

var _ domain.Sealer = (*Vault)(nil)

// NewVault returns a vault sealing with ring's current master key.
func NewVault(ring *Keyring, store Store) *Vault {
	return &Vault{ring: ring, store: store}
}

// Seal implements domain.Sealer.
func (v *Vault) Seal(ctx context.Context, k domain.KeyRef, plaintext []byte) (*domain.SealedSecret, error) {
	id := ulid.Make().String()
	sealed, wrapped, err := Seal(v.ring.Current(), Binding{Key: k, SecretID: id}, plaintext)
	if err != nil {
		return nil, err
	}
	data, err := json.Marshal(wrapped)
	if err != nil {
		return nil, err
	}
	if err := v.store.Create(ctx, id, data); err != nil {
		return nil, domain.Errorf(domain.EUNAVAILABLE, "data key store unavailable: %v", err)
	}
	return &domain.SealedSecret{SecretID: id, Alg: sealed.Alg, AAD: sealed.AAD, Nonce: sealed.Nonce, Ciphertext: sealed.Ciphertext}, nil
}

// Open implements domain.Sealer. A destroyed data key makes the secret
// unrecoverable (domain.ErrSecretDestroyed): its key was deleted, or its
// private half replaced, after the caller read it. k is the key the
// caller found s in: a secret sealed for another key does not open.
func (v *Vault) Open(ctx context.Context, k domain.KeyRef, s *domain.SealedSecret) ([]byte, error) {
	w, _, err := v.wrapped(ctx, s.SecretID)
	if err != nil {
		return nil, err
	}
	if w == nil {
		return nil, fmt.Errorf("sealing: secret %s: %w", s.SecretID, domain.ErrSecretDestroyed)
	}
	return Open(v.ring, Binding{Key: k, SecretID: s.SecretID}, Sealed{Alg: s.Alg, AAD: s.AAD, Nonce: s.Nonce, Ciphertext: s.Ciphertext}, *w)
}

// Destroy implements domain.Sealer.
func (v *Vault) Destroy(ctx context.Context, secretID string) error {
	return v.store.Destroy(ctx, secretID)
}

// wrapped returns the data key of secret id and its revision; nil if it
// was destroyed.
func (v *Vault) wrapped(ctx context.Context, id string) (*WrappedKey, uint64, error) {
	data, rev, err := v.store.Get(ctx, id)
	if err != nil {
		return nil, 0, domain.Errorf(domain.EUNAVAILABLE, "data key store unavailable: %v", err)
	}
	if data == nil {
		return nil, 0, nil
	}
	var w WrappedKey
	if err := json.Unmarshal(data, &w); err != nil {
		return nil, 0, fmt.Errorf("sealing: data key of %s: %w", id, err)
	}
	return &w, rev, nil
}

// RewrapResult counts what Rewrap did.
type RewrapResult struct {
	MasterKeyID string `json:"masterKeyId"`
	Rewrapped   int    `json:"rewrapped"`
	Current     int    `json:"alreadyCurrent"`
}

// Rewrap re-wraps every data key that is not under the current master key
// with it. Sealed private keys and the event log are not touched, and the
// vault keeps sealing and opening meanwhile: the keyring still holds the
// older master keys. Once it returns, no data key wrapped by an older
// master key is left in the store, and those master keys can be retired.
func (v *Vault) Rewrap(ctx context.Context) (RewrapResult, error) {
	ring := v.ring
	res := RewrapResult{MasterKeyID: ring.Current().ID()}
	ids, err := v.store.IDs(ctx)
	if err != nil {
		return res, err
	}
	for _, id := range ids {
		w, rev, err := v.wrapped(ctx, id)
		if err != nil {
			return res, err
		}
		if w == nil {
			continue // destroyed meanwhile
		}
		if w.MasterKeyID == ring.Current().ID() {
			res.Current++
			continue
		}
		nw, err := Rewrap(ring, id, *w, ring.Current())
		if err != nil {
			return res, fmt.Errorf("sealing: rewrap %s: %w", id, err)
		}
		data, err := json.Marshal(nw)
		if err != nil {
			return res, err
		}
		if err := v.store.Replace(ctx, id, data, rev); errors.Is(err, domain.ErrVersionConflict) {
			continue // destroyed meanwhile: it stays destroyed
		} else if err != nil {
			return res, err
		}
		res.Rewrapped++
	}
	// A replaced data key that an earlier, interrupted run left behind
	// still opens with the old master key: erase it before saying the old
	// master key can go.
	if _, err := v.store.EraseStale(ctx); err != nil {
		return res, fmt.Errorf("sealing: erase replaced data keys: %w", err)
	}
	return res, nil
}
