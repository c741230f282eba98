package http

import (
	"context"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/infrakeys/infrakeys/domain"
)

// tokenView is a token as operators see it: never its secret or hash.
type tokenView struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	Roles     []string  `json:"roles"`
	Created   time.Time `json:"created"`
	CreatedBy string    `json:"createdBy"`
	Revoked   bool      `json:"revoked"`
	Token     string    `json:"token,omitempty"`
}

func viewToken(t *domain.Token) tokenView {
	return tokenView{ID: t.ID, Name: t.Name, Roles: t.Roles, Created: t.Created, CreatedBy: t.CreatedBy, Revoked: t.Revoked}
}

// handleTokenCreate serves POST /--admin/tokens: body {name, roles}. The
// answer holds the token: the only time it is ever shown.
func (s *Server) handleTokenCreate(c echo.Context) error {
	in, err := cloudAPIBody(c)
	if err != nil {
		return err
	}
	if err := in.only("name", "roles"); err != nil {
		return err
	}
	name, _, err := in.str("name")
	if err != nil {
		return err
	}
	roles, _, err := in.strs("roles")
	if err != nil {
		return err
	}
	secret, t, err := s.cfg.Tokens.Create(c.Request().Context(), name, roles, s.meta(c))
	if err != nil {
		return err
	}
	v := viewToken(t)
	v.Token = secret
	return writeJSON(c, http.StatusCreated, v)
}

// handleTokenList serves GET /--admin/tokens.
func (s *Server) handleTokenList(c echo.Context) error {
	ts, err := s.cfg.Tokens.List(c.Request().Context())
	if err != nil {
		return err
	}
	out := make([]tokenView, 0, len(ts))
	for i := range ts {
		out = append(out, viewToken(&ts[i]))
	}
	return writeJSON(c, http.StatusOK, out)
}

// handleTokenRevoke serves DELETE /--admin/tokens/:id.
func (s *Server) handleTokenRevoke(c echo.Context) error {
	if _, err := s.cfg.Tokens.Revoke(c.Request().Context(), c.Param("id"), s.meta(c)); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

// handleMasterKeyRewrap serves POST /--admin/master-key/rewrap: every data
// key is re-wrapped under the current master key, while the service keeps
// serving.
func (s *Server) handleMasterKeyRewrap(c echo.Context) error {
	if s.cfg.Rewrap == nil {
		return domain.Errorf(domain.ENOTFOUND, "no sealing configured")
	}
	res, err := s.cfg.Rewrap(c.Request().Context())
	if err != nil {
		return err
	}
	return writeJSON(c, http.StatusOK, res)
}

// RewrapFunc re-wraps every data key under the current master key.
type RewrapFunc func(ctx context.Context) (any, error)
