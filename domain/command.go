package domain

import (
	"context"
	"errors"
)

// ErrVersionConflict is returned by a repository's Append when the owner's
// history moved on since the state the events were decided against. The
// command is then decided again against the new state.
var ErrVersionConflict = errors.New("version conflict")

// Snapshot is the state of one owner as of Version, the log position of
// the last event applied to it (0 for an owner without events).
type Snapshot[S any] struct {
	State   S
	Version uint64
}

// Repository loads the state of one kind of owner and appends its events:
// the port every command runs against.
type Repository[S any] interface {
	// Load returns the current state of owner id.
	Load(ctx context.Context, id string) (Snapshot[S], error)
	// Append appends events for owner id, atomically (all or none), if
	// nothing was appended for it after version expected, and otherwise
	// fails with ErrVersionConflict. It returns the state after the
	// events, as every later Load will see it.
	Append(ctx context.Context, id string, expected uint64, events []Event) (Snapshot[S], error)
}

// Decision turns a command into the events it comes to against the
// owner's state: none if there is nothing to do, an error if the command
// is refused. It is called again, against the new state, after a version
// conflict; whatever it captures must be reset at its start.
type Decision[S any] func(S) ([]Event, error)

// maxAttempts bounds how often a command is decided again after a
// concurrent write; each conflict means another writer made progress.
const maxAttempts = 20

// Execute runs one command on owner: decide against the owner's state,
// append what it decided expecting that state's version, and, when another
// write came first (ErrVersionConflict), back off, load the state again
// and decide again, up to maxAttempts times before giving up with
// EUNAVAILABLE. No check-then-act race is possible: the append fails if
// anything happened since the state decided against.
//
// loaded, when not nil, is owner's state as the request already read it
// (for example the account that authenticated it): the first decision
// is taken against it instead of loading the owner again. It must be the
// state of owner, read within this request: a decision against it is a
// decision against the owner as it was at a moment of the request, and a
// write in between makes the append fail and the command decided again
// against a fresh load.
//
// Execute returns the state after the events, or the state decided
// against when the decision came to no events.
func Execute[S any](ctx context.Context, repo Repository[S], owner Owner, loaded *Snapshot[S], decide Decision[S]) (S, error) {
	var zero S
	for attempt := 0; attempt < maxAttempts; attempt++ {
		var cur Snapshot[S]
		if attempt == 0 && loaded != nil {
			cur = *loaded
		} else {
			var err error
			if cur, err = repo.Load(ctx, owner.ID); err != nil {
				return zero, err
			}
		}
		evs, err := decide(cur.State)
		if err != nil {
			return zero, err
		}
		if len(evs) == 0 {
			return cur.State, nil
		}
		after, err := repo.Append(ctx, owner.ID, cur.Version, evs)
		if errors.Is(err, ErrVersionConflict) {
			if err := ConflictBackoff(ctx, attempt); err != nil {
				return zero, err
			}
			continue
		}
		if err != nil {
			return zero, err
		}
		return after.State, nil
	}
	return zero, Errorf(EUNAVAILABLE, "too many concurrent changes to %s; retry", describeOwner(owner))
}

// describeOwner names owner in messages to clients.
func describeOwner(o Owner) string {
	switch o.Kind {
	case OwnerShared:
		return "infrastructure key " + o.ID
	case OwnerIntake:
		return "intake message " + o.ID
	}
	return o.Kind + " " + o.ID
}

// repository makes a Repository of a port's load and append methods, whose
// states carry their own version (version must accept the zero state).
func repository[S any](
	load func(ctx context.Context, id string) (S, error),
	appendFn func(ctx context.Context, id string, expected uint64, events []Event) (S, error),
	version func(S) uint64,
) Repository[S] {
	return funcRepository[S]{load, appendFn, version}
}

type funcRepository[S any] struct {
	load     func(ctx context.Context, id string) (S, error)
	appendFn func(ctx context.Context, id string, expected uint64, events []Event) (S, error)
	version  func(S) uint64
}

func (r funcRepository[S]) Load(ctx context.Context, id string) (Snapshot[S], error) {
	s, err := r.load(ctx, id)
	if err != nil {
		return Snapshot[S]{}, err
	}
	return Snapshot[S]{State: s, Version: r.version(s)}, nil
}

func (r funcRepository[S]) Append(ctx context.Context, id string, expected uint64, events []Event) (Snapshot[S], error) {
	s, err := r.appendFn(ctx, id, expected, events)
	if err != nil {
		return Snapshot[S]{}, err
	}
	return Snapshot[S]{State: s, Version: r.version(s)}, nil
}

// Accounts is the Repository of accounts that repo provides. The state of
// an account that does not exist is nil.
func Accounts(repo AccountRepository) Repository[*Account] {
	return repository(repo.LoadAccount, repo.AppendAccount, func(a *Account) uint64 {
		if a == nil {
			return 0
		}
		return a.Version
	})
}

// SharedKeys is the Repository of shared key names that repo provides.
func SharedKeys(repo InfraKeyRepository) Repository[*SharedKey] {
	return repository(repo.LoadShared, repo.AppendShared, func(s *SharedKey) uint64 { return s.Version })
}

// Instances is the Repository of instances that repo provides.
func Instances(repo InfraKeyRepository) Repository[*Instance] {
	return repository(repo.LoadInstance, repo.AppendInstance, func(in *Instance) uint64 { return in.Version })
}

// Tokens is the Repository of tokens that repo provides. The state of a
// token that does not exist is nil.
func Tokens(repo TokenRepository) Repository[*Token] {
	return repository(repo.LoadToken, repo.AppendToken, func(t *Token) uint64 {
		if t == nil {
			return 0
		}
		return t.Version
	})
}
