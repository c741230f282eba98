package http

import (
	"net/http"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/infrakeys/infrakeys/domain"
)

// caKeyView is a CA key as operators see it (never its private half).
type caKeyView struct {
	ID                string     `json:"id"`
	CA                string     `json:"ca"`
	PublicKey         string     `json:"publicKey"`
	Type              string     `json:"keyType"`
	Bits              int        `json:"bits"`
	FingerprintSHA256 string     `json:"fingerprintSHA256"`
	Signing           bool       `json:"signing"`
	Created           time.Time  `json:"created"`
	Retired           *time.Time `json:"retired,omitempty"`
}

func viewCA(ca *domain.CA) []caKeyView {
	out := []caKeyView{}
	signing, _ := ca.Signing()
	for i := range ca.Keys {
		k := &ca.Keys[i]
		v := caKeyView{ID: k.ID, CA: ca.Name, PublicKey: k.PublicKey, Type: k.Type, Bits: k.Bits,
			FingerprintSHA256: k.FingerprintSHA256, Created: k.Created, Signing: signing != nil && signing.ID == k.ID}
		if !k.Trusted() {
			v.Retired = &k.Retired
		}
		out = append(out, v)
	}
	return out
}

// handleCACreateKey serves POST /--admin/cas/:ca: a new key for the user
// or host CA, which signs from now on; older keys stay trusted until
// retired. Body: {"keyType"?} (default ed25519).
func (s *Server) handleCACreateKey(c echo.Context) error {
	in, err := cloudAPIBody(c)
	if err != nil {
		return err
	}
	if err := in.only("keyType"); err != nil {
		return err
	}
	alg, _, err := in.str("keyType")
	if err != nil {
		return err
	}
	k, err := s.cfg.Certificates.CreateCAKey(c.Request().Context(), pathParam(c, "ca"), alg, s.meta(c))
	if err != nil {
		return err
	}
	ca, err := s.cfg.Certificates.GetCA(c.Request().Context(), pathParam(c, "ca"))
	if err != nil {
		return err
	}
	for _, v := range viewCA(ca) {
		if v.ID == k.ID {
			return writeJSON(c, http.StatusCreated, v)
		}
	}
	return domain.Errorf(domain.EINTERNAL, "created CA key is missing")
}

// handleCAList serves GET /--admin/cas: every key of both CAs, retired
// ones included.
func (s *Server) handleCAList(c echo.Context) error {
	out := map[string][]caKeyView{}
	for _, name := range domain.CANames {
		ca, err := s.cfg.Certificates.GetCA(c.Request().Context(), name)
		if err != nil {
			return err
		}
		out[name] = viewCA(ca)
	}
	return writeJSON(c, http.StatusOK, out)
}

// handleCARetireKey serves DELETE /--admin/cas/:ca/keys/:id: the key (id
// or SHA256 fingerprint) is no longer trusted nor used, and its private
// half is destroyed.
func (s *Server) handleCARetireKey(c echo.Context) error {
	ref := pathParam(c, "id")
	name := pathParam(c, "ca")
	if _, err := s.cfg.Certificates.RetireCAKey(c.Request().Context(), name, ref, s.meta(c)); err != nil {
		return err
	}
	ca, err := s.cfg.Certificates.GetCA(c.Request().Context(), name)
	if err != nil {
		return err
	}
	for _, v := range viewCA(ca) {
		if v.ID == ref || v.FingerprintSHA256 == ref {
			return writeJSON(c, http.StatusOK, v)
		}
	}
	return domain.Errorf(domain.EINTERNAL, "retired CA key is missing")
}

// handleCAPublic serves GET /cas/:ca, unauthenticated: the CA's trusted
// public keys, one OpenSSH line each, as text/plain. The user CA's lines
// are a TrustedUserCAKeys file for sshd; ?format=known_hosts gives the
// host CA's as "@cert-authority * <key>" lines for clients' known_hosts.
func (s *Server) handleCAPublic(c echo.Context) error {
	ca, err := s.cfg.Certificates.GetCA(c.Request().Context(), pathParam(c, "ca"))
	if err != nil {
		return err
	}
	prefix := ""
	switch f := c.QueryParam("format"); f {
	case "", "keys":
	case "known_hosts":
		prefix = "@cert-authority * "
	default:
		return domain.Errorf(domain.EINVALID, "format must be keys or known_hosts, not %q", f)
	}
	var b strings.Builder
	for _, k := range ca.Trusted() {
		b.WriteString(prefix + k.PublicKey + "\n")
	}
	return writeBody(c, http.StatusOK, "text/plain; charset=utf-8", []byte(b.String()))
}
