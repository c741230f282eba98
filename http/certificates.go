package http

import (
	"net/http"
	"sort"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/infrakeys/infrakeys/domain"
)

// certificateView is a certificate as both surfaces show it. certificate
// (the signed certificate itself) is in the answer to the signing request
// only: listings show what was signed.
type certificateView struct {
	Serial               uint64            `json:"serial"`
	Type                 string            `json:"type"`
	State                string            `json:"state"`
	Certificate          string            `json:"certificate,omitempty"`
	KeyID                string            `json:"keyId"`
	KeyName              string            `json:"keyName"`
	KeyFingerprintSHA256 string            `json:"keyFingerprintSHA256"`
	CAKeyID              string            `json:"caKeyId"`
	CAFingerprintSHA256  string            `json:"caFingerprintSHA256"`
	Principals           []string          `json:"principals"`
	ValidAfter           time.Time         `json:"validAfter"`
	ValidBefore          time.Time         `json:"validBefore"`
	CriticalOptions      map[string]string `json:"criticalOptions"`
	Extensions           []string          `json:"extensions"`
	Revoked              *time.Time        `json:"revoked,omitempty"`
}

// Certificate states.
const (
	certValid   = "valid"
	certRevoked = "revoked"
	certExpired = "expired"
)

func viewCertificate(p *domain.CertificateIssued, revoked time.Time, now time.Time) certificateView {
	v := certificateView{
		Serial: p.Serial, Type: p.CertType, State: certValid, Certificate: p.Certificate,
		KeyID: p.KeyID, KeyName: p.KeyName, KeyFingerprintSHA256: p.KeyFingerprintSHA256,
		CAKeyID: p.CAKeyID, CAFingerprintSHA256: p.CAFingerprintSHA256,
		Principals: p.Principals, ValidAfter: p.ValidAfter, ValidBefore: p.ValidBefore,
		CriticalOptions: p.CriticalOptions, Extensions: p.Extensions,
	}
	if v.CriticalOptions == nil {
		v.CriticalOptions = map[string]string{}
	}
	if v.Extensions == nil {
		v.Extensions = []string{}
	}
	switch {
	case !revoked.IsZero():
		v.State, v.Revoked = certRevoked, &revoked
	case !now.Before(p.ValidBefore):
		v.State = certExpired
	}
	return v
}

// certFields are the members of a certificate request.
var certFields = []string{"principals", "validity", "validBefore", "validAfter", "forceCommand", "sourceAddress", "extensions"}

// certRequest reads a certificate request body: {principals?, validity?
// (a duration such as "15m"), validBefore?, validAfter? (RFC 3339),
// forceCommand?, sourceAddress?, extensions?}. Unknown members are
// refused: a misspelt option must not be silently left out of a
// certificate.
func certRequest(in fields) (domain.CertRequest, error) {
	var req domain.CertRequest
	if err := in.only(certFields...); err != nil {
		return req, err
	}
	var err error
	if req.Principals, _, err = in.strs("principals"); err != nil {
		return req, err
	}
	// An empty array (no extensions) stays distinct from none given (the
	// default extensions): strs returns a non-nil empty slice for it.
	if req.Extensions, _, err = in.strs("extensions"); err != nil {
		return req, err
	}
	if text, ok, err := in.str("validity"); err != nil {
		return req, err
	} else if ok {
		if req.Validity, err = time.ParseDuration(text); err != nil {
			return req, domain.Errorf(domain.EINVALID, "validity must be a duration such as \"15m\" or \"8h\"")
		}
	}
	for name, dst := range map[string]*time.Time{"validBefore": &req.ValidBefore, "validAfter": &req.ValidAfter} {
		text, ok, err := in.str(name)
		if err != nil {
			return req, err
		}
		if ok {
			if *dst, err = time.Parse(time.RFC3339, text); err != nil {
				return req, domain.Errorf(domain.EINVALID, "%s must be a time in RFC 3339 format, such as \"2026-01-02T15:04:05Z\"", name)
			}
		}
	}
	for name, dst := range map[string]*string{"forceCommand": &req.ForceCommand, "sourceAddress": &req.SourceAddress} {
		text, ok, err := in.str(name)
		if err != nil {
			return req, err
		}
		if ok && text == "" {
			return req, domain.Errorf(domain.EINVALID, "%s must not be empty", name)
		}
		*dst = text
	}
	return req, nil
}

// handleCertificateSign serves POST /:login/keys/:key/certificates: a
// short-lived user certificate for one of the account's own keys, within
// the account's policy.
func (s *Server) handleCertificateSign(c echo.Context) error {
	a, ref, err := s.targetKey(c)
	if err != nil {
		return err
	}
	in, err := cloudAPIBody(c)
	if err != nil {
		return err
	}
	req, err := certRequest(in)
	if err != nil {
		return err
	}
	issued, err := s.cfg.Certificates.SignUserCertificate(c.Request().Context(), a.Login, a, ref, req, s.meta(c))
	if err != nil {
		return err
	}
	c.Response().Header().Set("Location", "/"+encodeURIComponent(a.Login)+"/certificates/"+strconv.FormatUint(issued.Serial, 10))
	return writeJSON(c, http.StatusCreated, viewCertificate(issued, time.Time{}, s.cfg.Now()))
}

// handleCertificateList serves GET /:login/certificates and GET
// /:login/keys/:key/certificates: the account's certificates that have not
// expired (revoked ones included), by serial.
func (s *Server) handleCertificateList(c echo.Context) error {
	a, err := s.targetAccount(c)
	if err != nil {
		return err
	}
	fp := ""
	if c.Param("key") != "" {
		k := a.FindKey(keyParam(c))
		if k == nil {
			return domain.Errorf(domain.ENOTFOUND, "%s does not exist", keyParam(c))
		}
		fp = k.FingerprintSHA256
	}
	now := s.cfg.Now()
	out := []certificateView{}
	for i := range a.Certificates {
		cert := &a.Certificates[i]
		if cert.Expired(now) || (fp != "" && cert.KeyFingerprintSHA256 != fp) {
			continue
		}
		out = append(out, viewCertificate(&cert.CertificateIssued, cert.Revoked, now))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Serial < out[j].Serial })
	return writeJSON(c, http.StatusOK, out)
}

// handleCertificateRevoke serves DELETE /:login/certificates/:serial: the
// account or an operator revokes a certificate. Revoking it again is no
// error.
func (s *Server) handleCertificateRevoke(c echo.Context) error {
	a, err := s.targetAccount(c)
	if err != nil {
		return err
	}
	serial, err := strconv.ParseUint(pathParam(c, "serial"), 10, 64)
	if err != nil || serial == 0 {
		return domain.Errorf(domain.EINVALID, "serial must be a certificate serial number (a positive integer)")
	}
	if err := s.cfg.Certificates.RevokeCertificate(c.Request().Context(), a.Login, a, serial, s.meta(c)); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

// handleHostCertificateSign serves POST
// /api/resource-manager/infrastructure-keys/instances/:instanceId/keys/:name/certificate:
// a host certificate for an instance's key, for the host names in
// principals. Body: {principals, validity?, validBefore?, validAfter?}.
func (s *Server) handleHostCertificateSign(c echo.Context) error {
	in, err := lmBody(c)
	if err != nil {
		return err
	}
	req, err := certRequest(in)
	if err != nil {
		return err
	}
	issued, err := s.cfg.Certificates.SignHostCertificate(c.Request().Context(), pathParam(c, "instanceId"), pathParam(c, "name"), req, s.meta(c))
	if err != nil {
		return err
	}
	return lmWrite(c, http.StatusCreated, viewCertificate(issued, time.Time{}, s.cfg.Now()))
}
