package http

import (
	"net/http"
	"net/url"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/infrakeys/infrakeys/domain"
)

// accountView is an account as operators see it.
type accountView struct {
	Login    string        `json:"login"`
	Operator bool          `json:"operator"`
	Policy   domain.Policy `json:"policy"`
	Keys     []keyView     `json:"keys"`
}

// viewAccount shows a as it is at now (keys expired by then show so).
func (s *Server) viewAccount(a *domain.Account, now time.Time) accountView {
	out := accountView{Login: a.Login, Operator: a.Operator, Policy: a.Policy, Keys: []keyView{}}
	for i := range a.Keys {
		out.Keys = append(out.Keys, s.viewKey(a.Login, &a.Keys[i], now))
	}
	return out
}

// handleAccountCreate serves POST /--admin/accounts: an operator creates an
// account and, optionally, its first key, in one atomic step.
// Body: {"login", "operator"?, "key"?, "name"?, "expires"?}.
func (s *Server) handleAccountCreate(c echo.Context) error {
	in, err := cloudAPIBody(c)
	if err != nil {
		return err
	}
	if err := in.only("login", "operator", "key", "name", domain.FieldExpires); err != nil {
		return err
	}
	login, _, err := in.str("login")
	if err != nil {
		return err
	}
	if login == "" {
		return domain.Errorf(domain.EMISSING, "login is a required argument")
	}
	operator, err := in.boolean("operator")
	if err != nil {
		return err
	}
	var key *domain.PublicKey
	text, hasKey, err := in.str("key")
	if err != nil {
		return err
	}
	if hasKey {
		if key, err = domain.ParsePublicKey(text); err != nil {
			return err
		}
	}
	name, _, err := in.str("name")
	if err != nil {
		return err
	}
	expires, err := expiresOf(in)
	if err != nil {
		return err
	}
	a, err := s.cfg.Accounts.CreateAccountExpiring(c.Request().Context(), login, operator, name, key, expires, s.meta(c))
	if err != nil {
		return err
	}
	c.Response().Header().Set("Location", "/--admin/accounts/"+url.PathEscape(a.Login))
	return writeJSON(c, http.StatusCreated, s.viewAccount(a, s.cfg.Now()))
}

// handleAccountGet serves GET /--admin/accounts/:login.
func (s *Server) handleAccountGet(c echo.Context) error {
	login := pathParam(c, "login")
	a, err := s.cfg.Repo.LoadAccount(c.Request().Context(), login)
	if err != nil {
		return err
	}
	if a == nil {
		return domain.Errorf(domain.ENOTFOUND, "%s does not exist", login)
	}
	return writeJSON(c, http.StatusOK, s.viewAccount(a, s.cfg.Now()))
}

// handleAccountPolicy serves PUT /--admin/accounts/:login/policy: the whole
// policy, fields left out are false, empty or 0 (the defaults).
// Body: {"requireAttestedKeys"?, "requireAttestedSigning"?,
// "requireMultifactorSigning"?, "requireAttestedCertificates"?,
// "certificatePrincipals"?, "certificateMaxValidity"? (seconds)}.
func (s *Server) handleAccountPolicy(c echo.Context) error {
	in, err := cloudAPIBody(c)
	if err != nil {
		return err
	}
	names := []string{"requireAttestedKeys", "requireAttestedSigning", "requireMultifactorSigning",
		"requireAttestedCertificates", "certificatePrincipals", "certificateMaxValidity"}
	if err := in.only(names...); err != nil {
		return err
	}
	var p domain.Policy
	bools := []*bool{&p.RequireAttestedKeys, &p.RequireAttestedSigning, &p.RequireMultifactorSigning, &p.RequireAttestedCertificates}
	for i, dst := range bools {
		if *dst, err = in.boolean(names[i]); err != nil {
			return err
		}
	}
	if p.CertificatePrincipals, _, err = in.strs("certificatePrincipals"); err != nil {
		return err
	}
	if p.CertificateMaxValidity, _, err = in.integer("certificateMaxValidity"); err != nil {
		return err
	}
	a, err := s.cfg.Accounts.SetPolicy(c.Request().Context(), pathParam(c, "login"), p, s.meta(c))
	if err != nil {
		return err
	}
	return writeJSON(c, http.StatusOK, s.viewAccount(a, s.cfg.Now()))
}

// handleProjectionList serves GET /--admin/projections: the names of the
// projections that can be rebuilt.
func (s *Server) handleProjectionList(c echo.Context) error {
	names := make([]string, 0, len(s.cfg.Projections))
	for _, p := range s.cfg.Projections {
		names = append(names, p.Name())
	}
	return writeJSON(c, http.StatusOK, names)
}

// handleProjectionRebuild serves POST /--admin/projections/:name/rebuild.
func (s *Server) handleProjectionRebuild(c echo.Context) error {
	name := pathParam(c, "name")
	for _, p := range s.cfg.Projections {
		if p.Name() != name {
			continue
		}
		if err := p.Rebuild(c.Request().Context()); err != nil {
			return err
		}
		return writeJSON(c, http.StatusOK, map[string]string{"projection": name, "status": "rebuilt"})
	}
	return domain.Errorf(domain.ENOTFOUND, "projection %s does not exist", name)
}
