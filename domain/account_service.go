package domain

import (
	"context"
	"time"
)

// AccountRepository loads accounts and appends their events. Append is
// atomic (all events or none) and checks that nothing was appended for the
// account after version expected; on success it returns the state after the
// events, as every later Load will see it.
type AccountRepository interface {
	LoadAccount(ctx context.Context, login string) (*Account, error) // nil, nil when it does not exist
	AppendAccount(ctx context.Context, login string, expected uint64, events []Event) (*Account, error)
}

// AccountService runs the commands on accounts (Execute: load, decide,
// append, and decide again on a version conflict).
type AccountService struct {
	Repo AccountRepository
}

// CreateAccount creates an account with, optionally, its first key, in one
// atomic append.
func (s *AccountService) CreateAccount(ctx context.Context, login string, operator bool, keyName string, key *PublicKey, m Meta) (*Account, error) {
	return s.CreateAccountExpiring(ctx, login, operator, keyName, key, nil, m)
}

// CreateAccountExpiring creates an account as CreateAccount does, its
// first key expiring at expires (nil: never).
func (s *AccountService) CreateAccountExpiring(ctx context.Context, login string, operator bool, keyName string, key *PublicKey, expires *time.Time, m Meta) (*Account, error) {
	if key == nil && expires != nil {
		return nil, Errorf(EINVALID, "%s needs a key: it is the expiry of the account's first key", FieldExpires)
	}
	return s.run(ctx, login, nil, func(a *Account) ([]Event, error) {
		evs, err := CreateAccount(a, login, operator, m)
		if err != nil || key == nil {
			return evs, err
		}
		created, err := ApplyAccountEvent(nil, evs[0], 1)
		if err != nil {
			return nil, err
		}
		ev, err := created.CreateExpiringKey(keyName, key, nil, expires, m)
		if err != nil {
			return nil, err
		}
		return append(evs, ev), nil
	})
}

// EnsureOperator makes sure an operator account login with key exists,
// deciding only what is missing: running it twice changes nothing. A new
// key is named after its comment, or after its fingerprint when another
// key has that name: an operator who swaps the key file for a new key
// with the same comment must not lock keysd out of starting.
func (s *AccountService) EnsureOperator(ctx context.Context, login string, key *PublicKey, m Meta) (*Account, error) {
	return s.run(ctx, login, nil, func(a *Account) ([]Event, error) {
		var evs []Event
		if a == nil {
			created, err := CreateAccount(nil, login, true, m)
			if err != nil {
				return nil, err
			}
			evs = created
			if a, err = ApplyAccountEvent(nil, evs[0], 1); err != nil {
				return nil, err
			}
		} else {
			evs = a.GrantOperator(m)
		}
		if a.KeyByFingerprint(key.Fingerprint) == nil {
			ev, err := a.CreateKey(bootstrapKeyName(a, key), key, nil, m)
			if err != nil {
				return nil, err
			}
			evs = append(evs, ev)
		}
		return evs, nil
	})
}

// CreateKey adds key, with its verified attestation if any, to the account
// login. loaded, when not nil, is that account as the request already read
// it (see Execute); the command then starts from it instead of loading the
// account again.
func (s *AccountService) CreateKey(ctx context.Context, login string, loaded *Account, name string, key *PublicKey, att *Attestation, m Meta) (*AccountKey, error) {
	return s.CreateExpiringKey(ctx, login, loaded, name, key, att, nil, m)
}

// CreateExpiringKey adds key to the account login as CreateKey does,
// expiring at expires (nil: never).
func (s *AccountService) CreateExpiringKey(ctx context.Context, login string, loaded *Account, name string, key *PublicKey, att *Attestation, expires *time.Time, m Meta) (*AccountKey, error) {
	acct, err := s.run(ctx, login, loaded, func(a *Account) ([]Event, error) {
		if a == nil {
			return nil, Errorf(ENOTFOUND, "%s does not exist", login)
		}
		ev, err := a.CreateExpiringKey(name, key, att, expires, m)
		if err != nil {
			return nil, err
		}
		return []Event{ev}, nil
	})
	if err != nil {
		return nil, err
	}
	k := acct.KeyByFingerprint(key.Fingerprint)
	if k == nil {
		return nil, Errorf(EINTERNAL, "created key is missing from the account state")
	}
	return k, nil
}

// SetPolicy replaces the policy of the account login.
func (s *AccountService) SetPolicy(ctx context.Context, login string, p Policy, m Meta) (*Account, error) {
	return s.run(ctx, login, nil, func(a *Account) ([]Event, error) {
		if a == nil {
			return nil, Errorf(ENOTFOUND, "%s does not exist", login)
		}
		return a.SetPolicy(p, m)
	})
}

// DeleteKey removes the key that ref names from the account login. loaded,
// when not nil, is that account as the request already read it, as for
// CreateKey.
func (s *AccountService) DeleteKey(ctx context.Context, login string, loaded *Account, ref string, m Meta) error {
	_, err := s.run(ctx, login, loaded, func(a *Account) ([]Event, error) {
		if a == nil {
			return nil, Errorf(ENOTFOUND, "%s does not exist", login)
		}
		ev, err := a.DeleteKey(ref, m)
		if err != nil {
			return nil, err
		}
		return []Event{ev}, nil
	})
	return err
}

// run executes a command on the account login, starting from loaded when
// the request already read it. A state of another account would have the
// command decided against the wrong account: that is a bug, refused.
func (s *AccountService) run(ctx context.Context, login string, loaded *Account, decide Decision[*Account]) (*Account, error) {
	var start *Snapshot[*Account]
	if loaded != nil {
		if loaded.Login != login {
			return nil, Errorf(EINTERNAL, "a command on account %s cannot start from the state of account %s", login, loaded.Login)
		}
		start = &Snapshot[*Account]{State: loaded, Version: loaded.Version}
	}
	return Execute(ctx, Accounts(s.Repo), AccountOwner(login), start, decide)
}

// bootstrapKeyName is the name EnsureOperator gives key in a: its comment,
// unless that is no valid name or another key of a has it.
func bootstrapKeyName(a *Account, key *PublicKey) string {
	name := key.Comment
	if ValidateKeyName(name) != nil {
		return key.Fingerprint
	}
	for _, k := range a.Keys {
		if k.Name == name {
			return key.Fingerprint
		}
	}
	return name
}
