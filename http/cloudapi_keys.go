package http

import (
	"net/http"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"golang.org/x/crypto/ssh"

	"github.com/infrakeys/infrakeys/domain"
)

// keyView is a key as CloudAPI shows it. attested and multifactor appear
// only for attested keys; expires and expired only for keys that expire.
type keyView struct {
	Name              string     `json:"name"`
	Fingerprint       string     `json:"fingerprint"`
	FingerprintSHA256 string     `json:"fingerprintSHA256"`
	Key               string     `json:"key"`
	Attested          bool       `json:"attested,omitempty"`
	Multifactor       []string   `json:"multifactor,omitzero"`
	Expires           *time.Time `json:"expires,omitempty"`
	Expired           *bool      `json:"expired,omitempty"`
	// LastUsed is when the key last authenticated a request, to within
	// the last-use precision; absent when never.
	LastUsed *time.Time `json:"lastUsed,omitempty"`
}

// viewKey shows k, a key of account login, as it is at now: expired from
// its expiry on, even before its KeyExpired is recorded.
func (s *Server) viewKey(login string, k *domain.AccountKey, now time.Time) keyView {
	v := keyView{Name: k.Name, Fingerprint: k.Fingerprint, FingerprintSHA256: k.FingerprintSHA256, Key: k.Key,
		LastUsed: domain.LastUsed(s.cfg.Uses, k.UseID(login))}
	if k.Attestation != nil {
		v.Attested = true
		v.Multifactor = append([]string{}, k.Attestation.Multifactor...)
	}
	v.Expires, v.Expired = expiryView(k.Expires, k.ExpiredAt(now))
	return v
}

// expiryView is how every surface shows a key's expiry: nothing for a key
// that never expires.
func expiryView(expires *time.Time, expired bool) (*time.Time, *bool) {
	if expires == nil && !expired {
		return nil, nil
	}
	return expires, &expired
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
		out = append(out, s.viewKey(a.Login, &a.Keys[i], s.cfg.Now()))
	}
	return writeJSON(c, http.StatusOK, out)
}

// handleKeyGet serves GET|HEAD /:login/keys/:key (GetKey). :key is a name,
// an MD5 fingerprint (with or without "MD5:") or a SHA256 fingerprint.
func (s *Server) handleKeyGet(c echo.Context) error {
	a, ref, err := s.targetKey(c)
	if err != nil {
		return err
	}
	k := a.FindKey(ref)
	if k == nil {
		return domain.Errorf(domain.ENOTFOUND, "%s does not exist", ref)
	}
	return writeJSON(c, http.StatusOK, s.viewKey(a.Login, k, s.cfg.Now()))
}

// handleKeyCreate serves POST /:login/keys (CreateKey), validating in
// CloudAPI's order (the table in docs/api.md).
func (s *Server) handleKeyCreate(c echo.Context) error {
	a, err := s.targetAccount(c)
	if err != nil {
		return err
	}
	in, err := cloudAPIBody(c)
	if err != nil {
		return err
	}
	if !in.given("key") {
		return domain.Errorf(domain.EMISSING, "key is a required argument")
	}
	keyText, _, err := in.str("key")
	if err != nil {
		return err
	}
	key, err := domain.ParsePublicKey(keyText)
	if err != nil {
		return err
	}
	var att *domain.Attestation
	chain, hasChain, err := in.strs("attestation")
	if err != nil {
		return err
	}
	if hasChain {
		if att, err = s.verifyAttestation(key, chain); err != nil {
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
	k, err := s.cfg.Accounts.CreateExpiringKey(c.Request().Context(), a.Login, a, name, key, att, expires, s.meta(c))
	if err != nil {
		return err
	}
	c.Response().Header().Set("Location", "/"+encodeURIComponent(a.Login)+"/keys/"+encodeURIComponent(k.Fingerprint))
	return writeJSON(c, http.StatusCreated, s.viewKey(a.Login, k, s.cfg.Now()))
}

// handleKeyDelete serves DELETE /:login/keys/:key (DeleteKey). Deleting the
// key the request is signed with is allowed; deleting the last key is not.
func (s *Server) handleKeyDelete(c echo.Context) error {
	a, ref, err := s.targetKey(c)
	if err != nil {
		return err
	}
	if err := s.cfg.Accounts.DeleteKey(c.Request().Context(), a.Login, a, ref, s.meta(c)); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

// expiresOf reads the optional expiry of a new key: an RFC 3339 time
// (the decision refuses one that has passed).
func expiresOf(in fields) (*time.Time, error) {
	text, ok, err := in.str(domain.FieldExpires)
	if err != nil || !ok {
		return nil, err
	}
	return domain.ParseExpires(text)
}

// targetKey resolves the account of a key path (:login) and its :key.
// An account the caller may not see, or that does not exist, is answered
// as CloudAPI does for a key path: the key does not exist.
func (s *Server) targetKey(c echo.Context) (*domain.Account, string, error) {
	ref := keyParam(c)
	a, err := s.targetAccount(c)
	if domain.ErrorCode(err) == domain.ENOTFOUND && pathParam(c, "login") != "my" {
		return nil, ref, domain.Errorf(domain.ENOTFOUND, "%s does not exist", ref)
	}
	return a, ref, err
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

// verifyAttestation checks a hardware attestation chain for key against
// the configured roots.
func (s *Server) verifyAttestation(key *domain.PublicKey, chain []string) (*domain.Attestation, error) {
	cpk, ok := key.Key.(ssh.CryptoPublicKey)
	if !ok || strings.HasPrefix(key.Type, "sk-") {
		return nil, domain.Errorf(domain.EINVALID, "attestation is invalid: %s keys cannot carry a PIV attestation", key.Type)
	}
	return domain.VerifyAttestation(cpk.CryptoPublicKey(), chain, s.cfg.AttestationRoots, s.cfg.Now())
}
