package domain_test

import (
	"strings"
	"testing"

	"github.com/infrakeys/infrakeys/domain"
)

// MustToken issues a token and returns its secret and its state.
func MustToken(tb testing.TB, roles ...string) (string, *domain.Token) {
	tb.Helper()
	secret, ev, err := domain.IssueToken("ci", roles, testMeta)
	if err != nil {
		tb.Fatal(err)
	}
	return secret, MustApply(tb, domain.ApplyTokenEvent, nil, 0, ev)
}

func TestIssueToken(t *testing.T) {
	for _, tc := range []struct {
		name      string
		tokenName string
		roles     []string
		wantCode  string
		wantRoles string
	}{
		{"OK", "ci", []string{domain.RoleKeysRead}, "", "keys:read"},
		{"OKRolesSortedOnce", "ci", []string{domain.RolePrivateRead, domain.RoleKeysRead, domain.RolePrivateRead}, "", "keys:private keys:read"},
		{"ErrMissingName", "", []string{domain.RoleKeysRead}, domain.EMISSING, ""},
		{"ErrInvalidName", "a/b", []string{domain.RoleKeysRead}, domain.EINVALID, ""},
		{"ErrNoRole", "ci", nil, domain.EMISSING, ""},
		{"ErrUnknownRole", "ci", []string{"keys:all"}, domain.EINVALID, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			secret, ev, err := domain.IssueToken(tc.tokenName, tc.roles, testMeta)
			CheckCode(t, err, tc.wantCode)
			if err != nil {
				return
			}
			p := MustDecode[domain.TokenCreated](t, ev, domain.TypeTokenCreated)
			if got, want := strings.Join(p.Roles, " "), tc.wantRoles; got != want {
				t.Errorf("roles = %q, want %q", got, want)
			}
			if got, want := ev.Owner, domain.TokenOwner(p.ID); got != want {
				t.Errorf("owner = %v, want %v", got, want)
			}
			// The id is public; the random part after it never is stored.
			CheckNoEcho(t, secret[strings.LastIndex(secret, "_")+1:], string(ev.Data))
			if id, ok := domain.ParseTokenID(secret); !ok || id != p.ID {
				t.Errorf("ParseTokenID = %q, %v; want %q", id, ok, p.ID)
			}
		})
	}
}

func TestTokenRevoke(t *testing.T) {
	_, tok := MustToken(t, domain.RoleKeysRead)
	t.Run("OK", func(t *testing.T) {
		evs := tok.Revoke(testMeta)
		if got, want := len(evs), 1; got != want {
			t.Fatalf("events = %d, want %d", got, want)
		}
		if got, want := MustDecode[domain.TokenRevoked](t, evs[0], domain.TypeTokenRevoked).ID, tok.ID; got != want {
			t.Errorf("id = %q, want %q", got, want)
		}
		if after := MustApply(t, domain.ApplyTokenEvent, tok, tok.Version, evs...); !after.Revoked {
			t.Error("not revoked after TokenRevoked")
		}
	})
	t.Run("AlreadyRevoked", func(t *testing.T) {
		revoked := MustApply(t, domain.ApplyTokenEvent, tok, tok.Version, tok.Revoke(testMeta)...)
		if got := revoked.Revoke(testMeta); len(got) != 0 {
			t.Errorf("decided %d events for a revoked token", len(got))
		}
	})
}

func TestAuthenticateToken(t *testing.T) {
	secret, tok := MustToken(t, domain.RoleKeysManage)
	otherSecret, other := MustToken(t, domain.RoleKeysRead)
	revoked := MustApply(t, domain.ApplyTokenEvent, tok, tok.Version, tok.Revoke(testMeta)...)
	// The state of one token under another's id: a token authenticates
	// only as the token its id names.
	misfiled := *tok
	misfiled.Hash = other.Hash
	for _, tc := range []struct {
		name     string
		state    *domain.Token
		token    string
		wantCode string
	}{
		{"OK", tok, secret, ""},
		{"ErrUnknown", nil, secret, domain.EUNAUTHENTICATED},
		{"ErrRevoked", revoked, secret, domain.EUNAUTHENTICATED},
		{"ErrWrongSecret", tok, otherSecret, domain.EUNAUTHENTICATED},
		{"ErrOtherTokensID", &misfiled, otherSecret, domain.EUNAUTHENTICATED},
		{"ErrNotAToken", tok, "nonsense", domain.EUNAUTHENTICATED},
		{"ErrTampered", tok, secret[:len(secret)-1] + "x", domain.EUNAUTHENTICATED},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := domain.AuthenticateToken(tc.state, tc.token)
			CheckCode(t, err, tc.wantCode)
			if err != nil {
				if got != nil {
					t.Errorf("refused, yet returned %+v", got)
				}
				if got, want := domain.ErrorMessage(err), "invalid or revoked token"; got != want {
					t.Errorf("message = %q, want %q (the same for every failure)", got, want)
				}
				return
			}
			if !got.Has(domain.RoleKeysRead) || !got.Has(domain.RoleKeysManage) || got.Has(domain.RolePrivateRead) {
				t.Errorf("roles of the token = %v", got.Roles)
			}
		})
	}
}
