package http

import (
	"github.com/labstack/echo/v4"

	"github.com/infrakeys/infrakeys/domain"
)

// lmCaller is who calls the LM surface: a token with roles, or an operator
// account signing with HTTP Signature (which holds every role).
type lmCaller struct {
	actor string
	token *domain.Token
}

func (c *lmCaller) has(role string) bool { return c.token == nil || c.token.Has(role) }

// authenticateLM accepts "Authorization: Bearer <token>" (LM-style
// clients; the scheme in any case) or an HTTP Signature by an operator
// account.
func (s *Server) authenticateLM(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		authz := c.Request().Header.Get("Authorization")
		token, bearer := domain.BearerToken(authz)
		var caller *lmCaller
		switch {
		case authz == "":
			return domain.Errorf(domain.EUNAUTHENTICATED, "authorization required: send a bearer token")
		case bearer:
			t, err := s.cfg.Tokens.Authenticate(c.Request().Context(), token)
			if err != nil {
				return err
			}
			caller = &lmCaller{actor: "token:" + t.ID + " (" + t.Name + ")", token: t}
		default:
			p, err := s.verifySignature(c)
			if err != nil {
				return err
			}
			if !p.Account.Operator {
				return domain.Errorf(domain.EFORBIDDEN, "%s is not an operator; use a token with the right role", p.Account.Login)
			}
			c.Set("principal", p)
			caller = &lmCaller{actor: p.Account.Login}
		}
		c.Set("lmCaller", caller)
		return next(c)
	}
}

// requireRole refuses callers without role.
func requireRole(role string) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			if !lmCallerOf(c).has(role) {
				return domain.Errorf(domain.EFORBIDDEN, "this operation needs the %s role", role)
			}
			return next(c)
		}
	}
}

func lmCallerOf(c echo.Context) *lmCaller {
	caller, _ := c.Get("lmCaller").(*lmCaller)
	return caller
}
