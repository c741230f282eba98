package domain

import (
	"context"
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
	// The token's id is new: its owner has no events, which is the state
	// the command starts from (no load). Should that ever not hold, the
	// append conflicts and the decision, against the loaded token, refuses.
	none := &Snapshot[*Token]{}
	t, err := Execute(ctx, Tokens(s.Repo), ev.Owner, none, func(t *Token) ([]Event, error) {
		if t != nil {
			return nil, Errorf(ECONFLICT, "token %s already exists", ev.Owner.ID)
		}
		return []Event{ev}, nil
	})
	if err != nil {
		return "", nil, err
	}
	return secret, t, nil
}

// Revoke revokes token id.
func (s *TokenService) Revoke(ctx context.Context, id string, m Meta) (*Token, error) {
	return Execute(ctx, Tokens(s.Repo), TokenOwner(id), nil, func(t *Token) ([]Event, error) {
		if t == nil {
			return nil, Errorf(ENOTFOUND, "token %s does not exist", id)
		}
		return t.Revoke(m), nil
	})
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
	id, ok := ParseTokenID(token)
	if !ok {
		return nil, errBadToken()
	}
	t, err := s.Repo.LoadToken(ctx, id)
	if err != nil {
		return nil, err
	}
	return AuthenticateToken(t, token)
}

// errBadToken is the one answer to every token that does not authenticate,
// so a client cannot tell an unknown token from a revoked or wrong one.
func errBadToken() error { return Errorf(EUNAUTHENTICATED, "invalid or revoked token") }

// AuthenticateToken decides whether token authenticates as t, the state
// of the token its id names (nil if there is none): t if it is live and
// token is its secret, EUNAUTHENTICATED otherwise.
func AuthenticateToken(t *Token, token string) (*Token, error) {
	if id, ok := ParseTokenID(token); !ok || t == nil || t.ID != id || t.Revoked || !t.Matches(token) {
		return nil, errBadToken()
	}
	return t, nil
}
