package http

import (
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/infrakeys/infrakeys/domain"
)

// handleAuthorizedKeys serves GET|HEAD /:login/authorized_keys,
// unauthenticated: the account's keys that may log in, and the user CA's
// trusted keys as cert-authority lines, in OpenSSH's authorized_keys
// format (domain.AuthorizedKeys), for sshd's AuthorizedKeysCommand
// (keysctl authorized-keys). Public keys are public, as GitHub serves
// https://github.com/<user>.keys to anyone: a machine asking for them
// holds no credential, and needs none. The account and the CA are read
// as every read is, up to the log's last event, so a key deleted a
// moment ago on another replica is already gone.
func (s *Server) handleAuthorizedKeys(c echo.Context) error {
	login := pathParam(c, "login")
	if login == "my" {
		// There is no signer for "my" to stand for.
		return domain.Errorf(domain.EINVALID, "authorized_keys is served without authentication: name the account's login, not my")
	}
	ctx := c.Request().Context()
	a, err := s.cfg.Repo.LoadAccount(ctx, login)
	if err != nil {
		return err
	}
	if a == nil {
		return domain.Errorf(domain.ENOTFOUND, "%s does not exist", login)
	}
	var userCA *domain.CA
	if s.cfg.Certificates != nil {
		if userCA, err = s.cfg.Certificates.GetCA(ctx, domain.CAUser); err != nil {
			return err
		}
	}
	// A cache between keysd and sshd would keep a deleted key working.
	c.Response().Header().Set("Cache-Control", "no-store")
	return writeBody(c, http.StatusOK, "text/plain; charset=utf-8", []byte(domain.AuthorizedKeys(a, userCA, s.cfg.Now())))
}
