package domain

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Key expiry: a key may be created with an expiry (KeyCreated.Expires).
// From that instant it no longer authenticates, gets no certificate and
// releases no private half (ExpiredAt), and the expirer of some replica
// records its KeyExpired, decided against the owner's state like any
// other event, so it is recorded once whichever replica comes first.

// FieldExpires is the name of the expiry in every surface's input.
const FieldExpires = "expires"

// ParseExpires reads an expiry as clients send it: an RFC 3339 time. It
// is kept in UTC, in whole seconds (a fraction is dropped), as
// KeyCreated records it. Whether it is in the future is the decision's
// to check (checkExpires), against the time of the command.
func ParseExpires(text string) (*time.Time, error) {
	t, err := time.Parse(time.RFC3339, text)
	if err != nil {
		return nil, Errorf(EINVALID, "%s must be a time in RFC 3339 form, such as 2030-01-02T15:04:05Z", FieldExpires)
	}
	t = t.UTC().Truncate(time.Second)
	return &t, nil
}

// checkExpires refuses an expiry that is not after the time of the
// command m describes: a key created already expired could never be used.
func checkExpires(expires *time.Time, m Meta) error {
	if expires == nil {
		return nil
	}
	if !expires.After(eventTime(m)) {
		// The time is not repeated: LM's errors never echo what was sent.
		return Errorf(EINVALID, "%s must be in the future", FieldExpires)
	}
	return nil
}

// eventTime is the time of the events a command with m records, which
// NewEvent takes to be now when m has none.
func eventTime(m Meta) time.Time {
	if m.Time.IsZero() {
		return time.Now()
	}
	return m.Time
}

// due reports whether a key with expiry expires, not yet recorded as
// expired, is to be recorded as expired at now.
func due(expires *time.Time, expired bool, now time.Time) bool {
	return !expired && expires != nil && !now.Before(*expires)
}

// ExpireKeys decides the KeyExpired of every key of a whose expiry has
// come at now and is not recorded yet: none when there is nothing to do,
// so that a replica deciding again what another replica recorded first
// records nothing.
func (a *Account) ExpireKeys(now time.Time, m Meta) []Event {
	if a == nil {
		return nil
	}
	var evs []Event
	for _, k := range a.Keys {
		if due(k.Expires, k.Expired, now) {
			evs = append(evs, NewEvent(AccountOwner(a.Login), KeyExpired{
				Name: k.Name, Fingerprint: k.Fingerprint, FingerprintSHA256: k.FingerprintSHA256, Expires: *k.Expires,
			}, m))
		}
	}
	return evs
}

// ExpireKey decides the KeyExpired of the shared key, if its expiry has
// come at now and is not recorded yet.
func (s *SharedKey) ExpireKey(now time.Time, m Meta) []Event {
	if s.Key == nil || !due(s.Key.Expires, s.Key.Expired, now) {
		return nil
	}
	return []Event{NewEvent(SharedOwner(s.Name), infraKeyExpired(s.Key), m)}
}

// ExpireKeys decides the KeyExpired of every key of the instance whose
// expiry has come at now and is not recorded yet. A removed instance's
// keys are being deleted by the cascade: they expire no more.
func (in *Instance) ExpireKeys(now time.Time, m Meta) []Event {
	if in.Removed {
		return nil
	}
	var evs []Event
	for i := range in.Keys {
		if k := &in.Keys[i]; due(k.Expires, k.Expired, now) {
			evs = append(evs, NewEvent(InstanceOwner(in.ID), infraKeyExpired(k), m))
		}
	}
	return evs
}

func infraKeyExpired(k *InfraKey) KeyExpired {
	return KeyExpired{ID: k.ID, Name: k.Name, Fingerprint: k.Fingerprint, FingerprintSHA256: k.FingerprintSHA256, Expires: *k.Expires}
}

// ErrKeyExpired marks the refusal of using a key that has expired (it
// wraps an ECONFLICT *Error that says so to clients).
var ErrKeyExpired = errors.New("the key has expired")

// expiredError is the refusal of using a key that has expired.
func expiredError(what string, expires *time.Time) error {
	e := Errorf(ECONFLICT, "%s has expired", what)
	if expires != nil {
		e = Errorf(ECONFLICT, "%s expired at %s", what, expires.UTC().Format(time.RFC3339))
	}
	return fmt.Errorf("%w: %w", ErrKeyExpired, e)
}

// ExpiryService records the expiry of keys.
type ExpiryService struct {
	// Accounts holds the account keys, InfraKeys the shared and
	// instance keys, as the other services' repositories do.
	Accounts  AccountRepository
	InfraKeys InfraKeyRepository
}

// ExpireDue records the KeyExpired of every key of owner whose expiry
// has come at now, and returns how many it recorded: none if another
// replica recorded them first (its append made this one's fail the
// optimistic check, and the decision taken again found them expired).
func (s *ExpiryService) ExpireDue(ctx context.Context, owner Owner, now time.Time) (int, error) {
	m := Meta{Actor: "keysd-expirer", Time: now}
	var n int
	var err error
	switch owner.Kind {
	case OwnerAccount:
		_, err = Execute(ctx, Accounts(s.Accounts), owner, nil, func(a *Account) ([]Event, error) {
			evs := a.ExpireKeys(now, m)
			n = len(evs)
			return evs, nil
		})
	case OwnerShared:
		_, err = Execute(ctx, SharedKeys(s.InfraKeys), owner, nil, func(st *SharedKey) ([]Event, error) {
			evs := st.ExpireKey(now, m)
			n = len(evs)
			return evs, nil
		})
	case OwnerInstance:
		_, err = Execute(ctx, Instances(s.InfraKeys), owner, nil, func(in *Instance) ([]Event, error) {
			evs := in.ExpireKeys(now, m)
			n = len(evs)
			return evs, nil
		})
	default:
		return 0, Errorf(EINTERNAL, "owner %s has no keys that expire", owner)
	}
	if err != nil {
		return 0, err
	}
	return n, nil
}
