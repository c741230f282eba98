package domain

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/oklog/ulid/v2"
)

// Sealer keeps private keys sealed: each under its own data key, wrapped by
// the master key and stored apart from the event log.
type Sealer interface {
	// Seal encrypts plaintext, the private half of key k, under a new data
	// key and stores the wrapped data key. All of k is bound into the
	// ciphertext.
	Seal(ctx context.Context, k KeyRef, plaintext []byte) (*SealedSecret, error)
	// Open decrypts a sealed secret found in key k; it fails if s was
	// sealed for another key (another id, name, scope or instance), and
	// returns ErrSecretDestroyed if its data key was destroyed.
	Open(ctx context.Context, k KeyRef, s *SealedSecret) ([]byte, error)
	// Destroy deletes the secret's data key for good: every copy of the
	// ciphertext, in the log included, becomes noise. Destroying a secret
	// that is already gone is not an error.
	Destroy(ctx context.Context, secretID string) error
}

// ErrSecretDestroyed is returned by Sealer.Open for a secret whose data key
// was destroyed: it can never be opened again.
var ErrSecretDestroyed = errors.New("the data key of the secret was destroyed")

// InfraKeyRepository loads and appends the events of shared keys and
// instances, like AccountRepository does for accounts.
type InfraKeyRepository interface {
	LoadShared(ctx context.Context, name string) (*SharedKey, error) // never nil
	AppendShared(ctx context.Context, name string, expected uint64, events []Event) (*SharedKey, error)
	ListShared(ctx context.Context) ([]InfraKey, error)
	LoadInstance(ctx context.Context, id string) (*Instance, error) // never nil
	AppendInstance(ctx context.Context, id string, expected uint64, events []Event) (*Instance, error)
}

// InfraKeyService runs the commands on infrastructure keys.
type InfraKeyService struct {
	Repo   InfraKeyRepository
	Sealer Sealer
	// CascadeBatch bounds the KeyDeleted events of one append of the
	// cascade, 1 to MaxCascadeBatch; 0 means MaxCascadeBatch.
	CascadeBatch int
	// Uses learns of every release of a private half (RevealPrivate);
	// nil records none.
	Uses KeyUses
}

// KeyMaterial is what a client sends for a key's halves: either or both
// halves, or the name of an algorithm to generate a pair with.
type KeyMaterial struct {
	PublicKey  string
	PrivateKey string
	Generate   string
}

// pair validates or generates the halves.
func (km KeyMaterial) pair(comment string) (*KeyPair, error) {
	if km.Generate != "" {
		if km.PublicKey != "" || km.PrivateKey != "" {
			return nil, Errorf(EINVALID, "generate cannot be combined with publicKey or privateKey")
		}
		return GenerateKeyPair(km.Generate, comment)
	}
	return ParseKeyPair(km.PublicKey, km.PrivateKey)
}

// sealPair seals the private half of pair, if it has one, for key k.
func sealPair(ctx context.Context, sealer Sealer, k KeyRef, pair *KeyPair) (*SealedSecret, error) {
	if len(pair.PrivateKey) == 0 {
		return nil, nil
	}
	return sealer.Seal(ctx, k, pair.PrivateKey)
}

// discard destroys a secret sealed for a command that did not happen, so
// a failed request leaves nothing behind.
func discard(ctx context.Context, sealer Sealer, sealed *SealedSecret) {
	if sealed != nil {
		_ = sealer.Destroy(context.WithoutCancel(ctx), sealed.SecretID)
	}
}

// discardFailed discards a secret sealed for a command that failed with
// err, unless the command may have been recorded after all
// (ErrOutcomeUnknown): a data key left over is harmless, one destroyed
// under a live key loses its private half for good.
func discardFailed(ctx context.Context, sealer Sealer, sealed *SealedSecret, err error) {
	if !errors.Is(err, ErrOutcomeUnknown) {
		discard(ctx, sealer, sealed)
	}
}

// CreateShared creates a key in the shared pool.
func (s *InfraKeyService) CreateShared(ctx context.Context, name, description string, km KeyMaterial, m Meta) (*InfraKey, error) {
	return s.CreateExpiringShared(ctx, name, description, km, nil, m)
}

// CreateExpiringShared creates a key in the shared pool, as CreateShared
// does, that expires at expires (nil: never).
func (s *InfraKeyService) CreateExpiringShared(ctx context.Context, name, description string, km KeyMaterial, expires *time.Time, m Meta) (*InfraKey, error) {
	n := NewInfraKey{ID: ulid.Make().String(), Name: name, Description: description, Expires: expires}
	if err := validateNewInfraKey(n); err != nil {
		return nil, err
	}
	// Refused before anything is generated or sealed for it.
	if err := checkExpires(expires, m); err != nil {
		return nil, err
	}
	pair, err := km.pair(name)
	if err != nil {
		return nil, err
	}
	n.Pair = pair
	if n.Sealed, err = sealPair(ctx, s.Sealer, KeyRef{ID: n.ID, Scope: ScopeShared, Name: n.Name}, pair); err != nil {
		return nil, err
	}
	st, err := s.runShared(ctx, name, func(st *SharedKey) ([]Event, error) {
		ev, err := st.CreateShared(n, m)
		return []Event{ev}, err
	})
	if err != nil {
		discardFailed(ctx, s.Sealer, n.Sealed, err)
		return nil, err
	}
	return st.Key, nil
}

// UpdateShared replaces a shared key's description (when not nil), its
// expiry (when expires is not nil) and, when km has a half, its halves.
// id and newName, when not empty, must be the key's own: LM's CLI sends
// the whole object back.
func (s *InfraKeyService) UpdateShared(ctx context.Context, name, id, newName string, description *string, expires *time.Time, km KeyMaterial, m Meta) (*InfraKey, error) {
	change := SharedKeyChange{ID: id, Name: newName, Description: description, PublicKey: km.PublicKey, Expires: expires}
	if err := change.checkName(name); err != nil {
		return nil, err
	}
	var (
		newPair   *KeyPair
		newSealed *SealedSecret
		sealedFor string // the key id newSealed is bound to
		err       error
	)
	if km.PrivateKey != "" || km.Generate != "" {
		if newPair, err = km.pair(name); err != nil {
			return nil, err
		}
	}
	st, err := s.runShared(ctx, name, func(st *SharedKey) ([]Event, error) {
		if err := change.check(st); err != nil {
			return nil, err // before sealing anything for it
		}
		// The new private half is sealed for the key it goes to, which is
		// known only now; once sealed it is reused by a retried decision,
		// unless the name meanwhile belongs to another key (deleted and
		// created again).
		if newPair != nil && sealedFor != st.Key.ID {
			discard(ctx, s.Sealer, newSealed)
			sealed, err := sealPair(ctx, s.Sealer, st.Key.Ref(), newPair)
			if err != nil {
				newSealed, sealedFor = nil, ""
				return nil, err
			}
			newSealed, sealedFor = sealed, st.Key.ID
		}
		// The private half it replaces is shredded from the KeyUpdated,
		// which names it: see Shred.
		ev, _, err := st.Change(change, newPair, newSealed, m)
		if err != nil {
			return nil, err
		}
		return []Event{ev}, nil
	})
	if err != nil {
		discardFailed(ctx, s.Sealer, newSealed, err)
		return nil, err
	}
	// The replaced private half is shredded from the KeyUpdated, which
	// names it (ReplacedSecretID): see Shred.
	return st.Key, nil
}

// DeleteShared deletes a shared key. Its private half is shredded from
// the KeyDeleted: see Shred.
func (s *InfraKeyService) DeleteShared(ctx context.Context, name string, m Meta) error {
	_, err := s.runShared(ctx, name, func(st *SharedKey) ([]Event, error) {
		ev, err := st.Delete(m)
		if err != nil {
			return nil, err
		}
		return []Event{ev}, nil
	})
	return err
}

// GetShared returns the shared key name.
func (s *InfraKeyService) GetShared(ctx context.Context, name string) (*InfraKey, error) {
	st, err := s.Repo.LoadShared(ctx, name)
	if err != nil {
		return nil, err
	}
	if st.Key == nil {
		return nil, Errorf(ENOTFOUND, "infrastructure key %s does not exist", name)
	}
	return st.Key, nil
}

// ListShared returns the shared pool sorted by name.
func (s *InfraKeyService) ListShared(ctx context.Context) ([]InfraKey, error) {
	keys, err := s.Repo.ListShared(ctx)
	if err != nil {
		return nil, err
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].Name < keys[j].Name })
	return keys, nil
}

// ListInstance returns the keys of an instance, sorted by name.
func (s *InfraKeyService) ListInstance(ctx context.Context, id string) ([]InfraKey, error) {
	in, err := s.Repo.LoadInstance(ctx, id)
	if err != nil {
		return nil, err
	}
	keys := append([]InfraKey(nil), in.Keys...)
	sort.Slice(keys, func(i, j int) bool { return keys[i].Name < keys[j].Name })
	return keys, nil
}

// RemoveInstance records that the resource manager removed an instance;
// the cascade then deletes its keys. Removing it again changes nothing.
func (s *InfraKeyService) RemoveInstance(ctx context.Context, id string, m Meta) (*Instance, error) {
	if err := removable(ctx, s.Repo, id); err != nil {
		return nil, err
	}
	return s.runInstance(ctx, id, func(in *Instance) ([]Event, error) { return in.Remove(m), nil })
}

// removable reports whether the instance id can be removed: a valid id,
// or an id refused since that names an instance with keys, made by a
// keysd from before the rule. Only the cascade of its removal destroys
// their private halves, so such an instance must stay removable.
func removable(ctx context.Context, repo InfraKeyRepository, id string) error {
	err := ValidateInstanceID(id)
	if err == nil || id == "" {
		return err
	}
	in, lerr := repo.LoadInstance(ctx, id)
	if lerr != nil {
		return lerr
	}
	if len(in.Keys) == 0 {
		return err
	}
	return nil
}

// MaxCascadeBatch is the most KeyDeleted events the cascade appends at
// once, and its default: one atomic batch (JetStream takes up to 1,000
// messages in one), one fsync.
const MaxCascadeBatch = 1000

func (s *InfraKeyService) cascadeBatch() int {
	if s.CascadeBatch <= 0 || s.CascadeBatch > MaxCascadeBatch {
		return MaxCascadeBatch
	}
	return s.CascadeBatch
}

// Cascade deletes every key of a removed instance: one KeyDeleted each,
// caused by the InstanceRemoved, appended in atomic batches. Their private
// halves are shredded from those events (see Shred). It returns how many
// keys it deleted; running it again after a crash finishes the work and
// deletes nothing twice.
func (s *InfraKeyService) Cascade(ctx context.Context, id string, m Meta) (int, error) {
	deleted := 0
	for {
		var evs []Event
		in, err := s.runInstance(ctx, id, func(in *Instance) ([]Event, error) {
			evs = in.Cascade(s.cascadeBatch(), m)
			return evs, nil
		})
		if err != nil {
			return deleted, err
		}
		deleted += len(evs)
		if len(evs) == 0 || len(in.Keys) == 0 {
			return deleted, nil
		}
	}
}

// Shred destroys the data keys that events make garbage (ShreddedSecret),
// concurrently. It is the one place that destroys the private half of a
// key that was: the shredder (ServeShredder in bus) calls it for every
// KeyDeleted and KeyUpdated in the log, so a private half is destroyed
// once its key's deletion is recorded, whichever replica or path recorded
// it, and after a crash at any point. Writers destroy only what they
// sealed for a command that was never recorded (discard). Destroying a
// data key twice (an event delivered again) is harmless.
func (s *InfraKeyService) Shred(ctx context.Context, evs []Event) error {
	var ids []string
	for _, e := range evs {
		if id := ShreddedSecret(e); id != "" {
			ids = append(ids, id)
		}
	}
	const workers = 16
	errs := make(chan error, len(ids))
	sem := make(chan struct{}, workers)
	for _, id := range ids {
		sem <- struct{}{}
		go func() {
			defer func() { <-sem }()
			errs <- s.Sealer.Destroy(ctx, id)
		}()
	}
	var first error
	for range ids {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return first
}

// RevealPrivate returns the private half of the key k names, after
// recording who asked for it and why: no audit event, no release. The key
// may have changed since k was read: its private half is then replaced,
// and the old one's data key destroyed, right after the change is
// recorded. So the audit event is decided against the key as it is now,
// that key's private half is the one opened, and the key is returned with
// it, for the caller to show the halves that belong together. A key
// deleted meanwhile is ENOTFOUND.
func (s *InfraKeyService) RevealPrivate(ctx context.Context, k *InfraKey, purpose string, m Meta) (*InfraKey, []byte, error) {
	if k.PrivateKey == nil {
		return k, nil, nil
	}
	gone := Errorf(ENOTFOUND, "infrastructure key %s does not exist", k.Name)
	for attempt := 0; attempt < maxAttempts; attempt++ {
		var cur *InfraKey
		decide := func(owner Owner, now *InfraKey) ([]Event, error) {
			if now == nil {
				return nil, gone
			}
			// An expired key's private half is not released: whoever
			// holds it could still reach what trusts the key until the
			// revocation list arrives there.
			if now.ExpiredAt(eventTime(m)) {
				return nil, expiredError("infrastructure key "+now.Name, now.Expires)
			}
			cur = now
			if now.PrivateKey == nil {
				return nil, nil
			}
			return []Event{RecordPrivateRead(owner, now, purpose, m)}, nil
		}
		var err error
		if k.Scope == ScopeInstance {
			_, err = s.runInstance(ctx, k.InstanceID, func(in *Instance) ([]Event, error) {
				return decide(InstanceOwner(k.InstanceID), in.FindKey(k.Name))
			})
		} else {
			_, err = s.runShared(ctx, k.Name, func(st *SharedKey) ([]Event, error) {
				return decide(SharedOwner(k.Name), st.Key)
			})
		}
		if err != nil {
			return nil, nil, err
		}
		if cur.PrivateKey == nil {
			return cur, nil, nil
		}
		pem, err := s.Sealer.Open(ctx, cur.Ref(), cur.PrivateKey)
		if errors.Is(err, ErrSecretDestroyed) {
			continue // replaced or deleted after the read was recorded
		}
		if err != nil {
			return nil, nil, err
		}
		if s.Uses != nil {
			at := m.Time
			if at.IsZero() {
				at = time.Now()
			}
			s.Uses.Used(cur.UseID(), at)
		}
		return cur, pem, nil
	}
	return nil, nil, Errorf(EUNAVAILABLE, "infrastructure key %s keeps changing; retry", k.Name)
}

// Substitute replaces every key property ({"type": "key", "value": name})
// in each section of props ("properties", "privateProperties", ...) with
// the key itself, as the resource manager does before a request goes to a
// driver (docs/api.md, "Key substitution"). Other properties pass through. Names resolve to
// the instance's keys first (when instanceID is set), then to the shared
// pool. Every name must resolve to a key with a private half, or nothing is
// substituted and the error names every problem.
func (s *InfraKeyService) Substitute(ctx context.Context, props map[string]map[string]any, instanceID string, m Meta) (map[string]map[string]any, error) {
	var inst *Instance
	if instanceID != "" {
		var err error
		if inst, err = s.Repo.LoadInstance(ctx, instanceID); err != nil {
			return nil, err
		}
	}
	found := map[string]*InfraKey{}
	seen := map[string]bool{}
	var missing, public, expired, unnamed []string
	for sec, section := range props {
		for p, v := range section {
			name, ok := keyProperty(v)
			if ok && name == "" {
				unnamed = append(unnamed, sec+"."+p)
				continue
			}
			if !ok || seen[name] {
				continue
			}
			seen[name] = true
			var k *InfraKey
			if inst != nil {
				k = inst.FindKey(name)
			}
			if k == nil {
				st, err := s.Repo.LoadShared(ctx, name)
				if err != nil {
					return nil, err
				}
				k = st.Key
			}
			switch {
			case k == nil:
				missing = append(missing, name)
			case k.PrivateKey == nil:
				public = append(public, name)
			case k.ExpiredAt(eventTime(m)):
				expired = append(expired, name)
			default:
				found[name] = k
			}
		}
	}
	if len(unnamed) > 0 {
		// A driver would get a key property without its key: refuse, as
		// for a name that does not resolve.
		sort.Strings(unnamed)
		return nil, Errorf(EINVALID, "cannot substitute key properties: %s must name a key in value, as a non-empty string (quote a numeric name in YAML)", strings.Join(unnamed, ", "))
	}
	if len(missing) > 0 || len(public) > 0 || len(expired) > 0 {
		sort.Strings(missing)
		sort.Strings(public)
		sort.Strings(expired)
		var parts []string
		if len(missing) > 0 {
			parts = append(parts, "no infrastructure key named "+strings.Join(missing, ", "))
		}
		if len(public) > 0 {
			parts = append(parts, "no private half in "+strings.Join(public, ", "))
		}
		if len(expired) > 0 {
			parts = append(parts, "expired: "+strings.Join(expired, ", ")+" (an expired key's private half is not released)")
		}
		code := ENOTFOUND
		switch {
		case len(missing) > 0:
		case len(public) > 0:
			code = EINVALID
		default:
			code = ECONFLICT
		}
		return nil, Errorf(code, "cannot substitute key properties: %s", strings.Join(parts, "; "))
	}
	private := map[string][]byte{}
	for name, k := range found {
		revealed, pem, err := s.RevealPrivate(ctx, k, PurposeSubstitute, m)
		if err != nil {
			return nil, fmt.Errorf("reveal %s: %w", name, err)
		}
		if pem == nil {
			return nil, Errorf(EINVALID, "cannot substitute key properties: no private half in %s", name)
		}
		found[name], private[name] = revealed, pem
	}
	out := make(map[string]map[string]any, len(props))
	for sec, section := range props {
		o := make(map[string]any, len(section))
		for p, v := range section {
			name, ok := keyProperty(v)
			if !ok {
				o[p] = v
				continue
			}
			o[p] = map[string]any{
				"type":       "key",
				"keyName":    name,
				"privateKey": string(private[name]),
				"publicKey":  found[name].PublicKey,
				"value":      name,
			}
		}
		out[sec] = o
	}
	return out, nil
}

// keyProperty reports whether v is a key property ({"type": "key"}) and
// returns the key name in its value; "" if the value is missing, empty or
// not a string (an unquoted numeric name in YAML), which names no key.
func keyProperty(v any) (string, bool) {
	m, ok := v.(map[string]any)
	if !ok || m["type"] != "key" {
		return "", false
	}
	name, _ := m["value"].(string)
	return name, true
}

// runShared executes a command on the shared key name.
func (s *InfraKeyService) runShared(ctx context.Context, name string, decide Decision[*SharedKey]) (*SharedKey, error) {
	return Execute(ctx, SharedKeys(s.Repo), SharedOwner(name), nil, decide)
}

// runInstance executes a command on the instance id.
func (s *InfraKeyService) runInstance(ctx context.Context, id string, decide Decision[*Instance]) (*Instance, error) {
	return Execute(ctx, Instances(s.Repo), InstanceOwner(id), nil, decide)
}
