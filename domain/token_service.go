package domain

import (
	"context"
	"errors"
	"sort"
)

// TokenRepository loads and appends token events.
type TokenRepository interface {
	LoadToken(ctx context.Context, id string) (*Token, error) // nil, nil if none
	AppendToken(ctx context.Context, id string, expected uint64, events []Event) (*Token, error)
	ListTokens(ctx context.Context) ([]Token, error)
}

// TokenService issues, lists, revokes and checks API tokens.
type TokenService struct {
	Repo TokenRepository
}

// Create issues a token; the returned string is the only time the secret
// exists outside the caller.
func (s *TokenService) Create(ctx context.Context, name string, roles []string, m Meta) (string, *Token, error) {
	secret, ev, err := IssueToken(name, roles, m)
	if err != nil {
		return "", nil, err
	}
	t, err := s.Repo.AppendToken(ctx, ev.Owner.ID, 0, []Event{ev})
	if err != nil {
		return "", nil, err
	}
	return secret, t, nil
}

// Revoke revokes token id.
func (s *TokenService) Revoke(ctx context.Context, id string, m Meta) (*Token, error) {
	for attempt := 0; attempt < maxAttempts; attempt++ {
		t, err := s.Repo.LoadToken(ctx, id)
		if err != nil {
			return nil, err
		}
		if t == nil {
			return nil, Errorf(ENOTFOUND, "token %s does not exist", id)
		}
		evs := t.Revoke(m)
		if len(evs) == 0 {
			return t, nil
		}
		after, err := s.Repo.AppendToken(ctx, id, t.Version, evs)
		if errors.Is(err, ErrVersionConflict) {
			if err := ConflictBackoff(ctx, attempt); err != nil {
				return nil, err
			}
			continue
		}
		return after, err
	}
	return nil, Errorf(EUNAVAILABLE, "too many concurrent changes to token %s; retry", id)
}

// List returns every token, oldest first (hashes included: they are not
// secrets, but the HTTP layer leaves them out).
func (s *TokenService) List(ctx context.Context) ([]Token, error) {
	ts, err := s.Repo.ListTokens(ctx)
	if err != nil {
		return nil, err
	}
	sort.Slice(ts, func(i, j int) bool { return ts[i].ID < ts[j].ID })
	return ts, nil
}

// Authenticate returns the live token whose secret is token. Every failure
// is the same EUNAUTHENTICATED error.
func (s *TokenService) Authenticate(ctx context.Context, token string) (*Token, error) {
	fail := Errorf(EUNAUTHENTICATED, "invalid or revoked token")
	id, ok := ParseTokenID(token)
	if !ok {
		return nil, fail
	}
	t, err := s.Repo.LoadToken(ctx, id)
	if err != nil {
		return nil, err
	}
	if t == nil || t.Revoked || !t.Matches(token) {
		return nil, fail
	}
	return t, nil
}
