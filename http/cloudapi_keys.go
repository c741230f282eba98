package http

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/labstack/echo/v4"
	"golang.org/x/crypto/ssh"

	"github.com/infrakeys/infrakeys/domain"
)

// maxBodyBytes is CloudAPI's request body limit (FACTS.md §1).
const maxBodyBytes = 100000

// keyView is a key as CloudAPI shows it. attested and multifactor appear
// only for attested keys.
type keyView struct {
	Name              string   `json:"name"`
	Fingerprint       string   `json:"fingerprint"`
	FingerprintSHA256 string   `json:"fingerprintSHA256"`
	Key               string   `json:"key"`
	Attested          bool     `json:"attested,omitempty"`
	Multifactor       []string `json:"multifactor,omitzero"`
}

func viewKey(k *domain.AccountKey) keyView {
	v := keyView{Name: k.Name, Fingerprint: k.Fingerprint, FingerprintSHA256: k.FingerprintSHA256, Key: k.Key}
	if k.Attestation != nil {
		v.Attested = true
		v.Multifactor = append([]string{}, k.Attestation.Multifactor...)
	}
	return v
}

// targetAccount resolves :login ("my" is the signer) and loads it. Another
// account is visible only to operators; to everyone else it looks exactly
// like one that does not exist.
func (s *Server) targetAccount(c echo.Context) (*domain.Account, error) {
	p := principalOf(c)
	login := pathParam(c, "login")
	if login == "my" || login == p.Account.Login {
		// The signer's account was loaded from the log's tail moments ago.
		return p.Account, nil
	}
	if !p.Account.Operator {
		return nil, domain.Errorf(domain.ENOTFOUND, "%s does not exist", login)
	}
	a, err := s.cfg.Repo.LoadAccount(c.Request().Context(), login)
	if err != nil {
		return nil, err
	}
	if a == nil {
		return nil, domain.Errorf(domain.ENOTFOUND, "%s does not exist", login)
	}
	return a, nil
}

// handleKeyList serves GET|HEAD /:login/keys (ListKeys).
func (s *Server) handleKeyList(c echo.Context) error {
	a, err := s.targetAccount(c)
	if err != nil {
		return err
	}
	out := make([]keyView, 0, len(a.Keys))
	for i := range a.Keys {
		out = append(out, viewKey(&a.Keys[i]))
	}
	return writeJSON(c, http.StatusOK, out)
}

// handleKeyGet serves GET|HEAD /:login/keys/:key (GetKey). :key is a name,
// an MD5 fingerprint (with or without "MD5:") or a SHA256 fingerprint.
func (s *Server) handleKeyGet(c echo.Context) error {
	ref := keyParam(c)
	a, err := s.targetAccount(c)
	if domain.ErrorCode(err) == domain.ENOTFOUND && pathParam(c, "login") != "my" {
		return domain.Errorf(domain.ENOTFOUND, "%s does not exist", ref)
	} else if err != nil {
		return err
	}
	k := a.FindKey(ref)
	if k == nil {
		return domain.Errorf(domain.ENOTFOUND, "%s does not exist", ref)
	}
	return writeJSON(c, http.StatusOK, viewKey(k))
}

// handleKeyCreate serves POST /:login/keys (CreateKey), validating in
// CloudAPI's order (FACTS.md §1).
func (s *Server) handleKeyCreate(c echo.Context) error {
	a, err := s.targetAccount(c)
	if err != nil {
		return err
	}
	body, err := readBody(c)
	if err != nil {
		return err
	}
	in, err := decodeParams(c, body)
	if err != nil {
		return err
	}
	rawKey, ok := in["key"]
	if !ok || rawKey == nil {
		return domain.Errorf(domain.EMISSING, "key is a required argument")
	}
	keyText, ok := rawKey.(string)
	if !ok {
		return domain.Errorf(domain.EINVALID, "key must be a String")
	}
	key, err := domain.ParsePublicKey(keyText)
	if err != nil {
		return err
	}
	var att *domain.Attestation
	if raw, ok := in["attestation"]; ok && raw != nil {
		chain, ok := stringArray(raw)
		if !ok {
			return domain.Errorf(domain.EINVALID, "attestation must be an array of Strings")
		}
		if att, err = s.verifyAttestation(key, chain); err != nil {
			return err
		}
	}
	var name string
	if raw, ok := in["name"]; ok && raw != nil {
		if name, ok = raw.(string); !ok {
			return domain.Errorf(domain.EINVALID, "name must be a String")
		}
	}
	k, err := s.cfg.Accounts.CreateKey(c.Request().Context(), a.Login, a, name, key, att, s.meta(c))
	if err != nil {
		return err
	}
	c.Response().Header().Set("Location", "/"+encodeURIComponent(a.Login)+"/keys/"+encodeURIComponent(k.Fingerprint))
	return writeJSON(c, http.StatusCreated, viewKey(k))
}

// handleKeyDelete serves DELETE /:login/keys/:key (DeleteKey). Deleting the
// key the request is signed with is allowed; deleting the last key is not.
func (s *Server) handleKeyDelete(c echo.Context) error {
	ref := keyParam(c)
	a, err := s.targetAccount(c)
	if domain.ErrorCode(err) == domain.ENOTFOUND && pathParam(c, "login") != "my" {
		return domain.Errorf(domain.ENOTFOUND, "%s does not exist", ref)
	} else if err != nil {
		return err
	}
	if err := s.cfg.Accounts.DeleteKey(c.Request().Context(), a.Login, a, ref, s.meta(c)); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

// keyParam returns :key decoded: names and fingerprints arrive
// percent-encoded (the triton CLI encodes ':' and '/').
func keyParam(c echo.Context) string { return pathParam(c, "key") }

// encodeURIComponent escapes s as JavaScript's encodeURIComponent does,
// which is how CloudAPI builds Location: only A-Z a-z 0-9 - _ . ! ~ * ' ( )
// stay as they are. url.PathEscape would leave the ':' of a fingerprint.
func encodeURIComponent(s string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		ch := s[i]
		switch {
		case 'a' <= ch && ch <= 'z', 'A' <= ch && ch <= 'Z', '0' <= ch && ch <= '9',
			strings.IndexByte("-_.!~*'()", ch) >= 0:
			b.WriteByte(ch)
		default:
			b.WriteByte('%')
			b.WriteByte(hex[ch>>4])
			b.WriteByte(hex[ch&15])
		}
	}
	return b.String()
}

// meta describes the request for the events it causes.
func (s *Server) meta(c echo.Context) domain.Meta {
	return domain.Meta{Actor: actorOf(c), RequestID: requestID(c), Time: s.cfg.Now()}
}

// readBody reads at most maxBodyBytes; more is 413.
func readBody(c echo.Context) ([]byte, error) {
	r := c.Request()
	if r.ContentLength > maxBodyBytes {
		return nil, domain.Errorf(domain.ETOOLARGE, "request body is larger than %d bytes", maxBodyBytes)
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBodyBytes+1))
	if err != nil {
		return nil, domain.Errorf(domain.EMALFORMED, "cannot read the request body")
	}
	if len(body) > maxBodyBytes {
		return nil, domain.Errorf(domain.ETOOLARGE, "request body is larger than %d bytes", maxBodyBytes)
	}
	return body, nil
}

// decodeParams reads the parameters of a CloudAPI request body: a JSON
// object or, as restify accepts, a form. An empty body has none.
func decodeParams(c echo.Context, body []byte) (map[string]any, error) {
	in := map[string]any{}
	if len(strings.TrimSpace(string(body))) == 0 {
		return in, nil
	}
	ct := c.Request().Header.Get("Content-Type")
	if strings.HasPrefix(ct, "application/x-www-form-urlencoded") {
		form, err := url.ParseQuery(string(body))
		if err != nil {
			return nil, domain.Errorf(domain.EMALFORMED, "request body is not a valid form")
		}
		for k, v := range form {
			if len(v) > 0 {
				in[k] = v[0]
			}
		}
		return in, nil
	}
	if err := json.Unmarshal(body, &in); err != nil {
		return nil, domain.Errorf(domain.EMALFORMED, "request body is not a JSON object")
	}
	return in, nil
}

// stringArray returns v as a []string if it is a JSON array of strings.
func stringArray(v any) ([]string, bool) {
	arr, ok := v.([]any)
	if !ok {
		return nil, false
	}
	out := make([]string, len(arr))
	for i, e := range arr {
		if out[i], ok = e.(string); !ok {
			return nil, false
		}
	}
	return out, true
}

// verifyAttestation checks a hardware attestation chain for key against
// the configured roots.
func (s *Server) verifyAttestation(key *domain.PublicKey, chain []string) (*domain.Attestation, error) {
	cpk, ok := key.Key.(ssh.CryptoPublicKey)
	if !ok || strings.HasPrefix(key.Type, "sk-") {
		return nil, domain.Errorf(domain.EINVALID, "attestation is invalid: %s keys cannot carry a PIV attestation", key.Type)
	}
	return domain.VerifyAttestation(cpk.CryptoPublicKey(), chain, s.cfg.AttestationRoots, s.cfg.Now())
}
