package http

import (
	"slices"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/infrakeys/infrakeys/domain"
	"github.com/infrakeys/infrakeys/http/httpsig"
	"golang.org/x/crypto/ssh"
)

// principal is who signed a request.
type principal struct {
	Account *domain.Account
	Key     *domain.AccountKey
}

// vagueAuthMessage is the one message of every verification failure, so a
// client cannot probe which check failed, as CloudAPI does. The reason is
// logged with the request id.
const vagueAuthMessage = "Invalid HTTP signature credentials"

// modernAlgorithms are accepted by default; rsa-sha1 only with the
// legacy-signatures switch.
var modernAlgorithms = []string{
	"rsa-sha256", "rsa-sha384", "rsa-sha512",
	"ecdsa-sha256", "ecdsa-sha384", "ecdsa-sha512",
	"ed25519-sha512",
}

// authenticate verifies the request's HTTP Signature (CloudAPI Appendix B)
// and records the signer.
func (s *Server) authenticate(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		p, err := s.verifySignature(c)
		if err != nil {
			return err
		}
		c.Set("principal", p)
		return next(c)
	}
}

func (s *Server) verifySignature(c echo.Context) (*principal, error) {
	r := c.Request()
	authz := r.Header.Get("Authorization")
	if authz == "" {
		return nil, domain.Errorf(domain.EUNAUTHENTICATED, "authorization required: sign the request with an HTTP Signature")
	}
	params, err := httpsig.ParseAuthorization(authz)
	if err != nil {
		return nil, &headerError{msg: "Authorization header is malformed: expected Signature keyId=\"/<login>/keys/<fingerprint>\",algorithm=\"...\",headers=\"...\",signature=\"...\""}
	}
	fail := func(reason string, args ...any) (*principal, error) {
		s.log.Info("authentication refused", append([]any{"requestId", requestID(c), "reason", reason, "keyId", params.KeyID}, args...)...)
		return nil, domain.Errorf(domain.EUNAUTHENTICATED, vagueAuthMessage)
	}
	alg := strings.ToLower(params.Algorithm)
	switch {
	case slices.Contains(modernAlgorithms, alg):
	case alg == "rsa-sha1" && s.cfg.AllowLegacySignatures:
	default:
		return fail("algorithm not accepted", "algorithm", params.Algorithm)
	}
	headers := params.Headers
	if !slices.Contains(headers, "date") && !slices.Contains(headers, "x-date") {
		return fail("date is not signed")
	}
	if !slices.Contains(headers, "(request-target)") && !s.cfg.AllowLegacySignatures {
		return fail("(request-target) is not signed")
	}
	dateHeader := r.Header.Get("Date")
	if slices.Contains(headers, "x-date") {
		dateHeader = r.Header.Get("X-Date")
	}
	// Not http.ParseTime: it reads only "GMT", and triton-go sends "UTC".
	date, err := httpsig.ParseDate(dateHeader)
	if err != nil {
		return fail("date header missing or unparseable")
	}
	if skew := s.cfg.Now().Sub(date); skew > s.cfg.ClockSkew || skew < -s.cfg.ClockSkew {
		return fail("date outside the allowed clock skew", "skew", skew.Round(time.Second).String())
	}
	login, fp, ok := parseKeyID(params.KeyID)
	if !ok {
		return fail("keyId is not /<login>/keys/<md5 fingerprint>")
	}
	acct, err := s.cfg.Repo.LoadAccount(r.Context(), login)
	if err != nil {
		return nil, err
	}
	if acct == nil {
		return fail("no such account")
	}
	key := acct.KeyByFingerprint(fp)
	if key == nil {
		return fail("no such key")
	}
	signing, err := httpsig.SigningString(r, headers)
	if err != nil {
		// CloudAPI's error names the header, as CloudAPI does; LM's does
		// not repeat it.
		return nil, &headerError{
			msg:   "Authorization header is malformed: " + strings.TrimPrefix(err.Error(), httpsig.ErrMalformed.Error()+": "),
			quiet: "Authorization header is malformed: a header it lists as signed is missing from the request",
		}
	}
	if id := signatureID(key.Key, alg, signing, string(params.Signature)); !s.verified.verified(id, s.cfg.Now()) {
		pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(key.Key))
		if err != nil {
			return nil, err
		}
		if err := httpsig.Verify(pub, alg, signing, params.Signature); err != nil {
			return fail("signature does not verify", "err", err.Error())
		}
		s.verified.add(id, date.Add(s.cfg.ClockSkew), s.cfg.Now())
	}
	// Said plainly, not vaguely: only the holder of the key, who just
	// proved it with the signature, learns that it expired.
	if key.ExpiredAt(s.cfg.Now()) {
		s.log.Info("authentication refused", "requestId", requestID(c), "reason", "key expired", "keyId", params.KeyID)
		return nil, domain.Errorf(domain.EUNAUTHENTICATED, "key %s has expired; sign with another key", key.Name)
	}
	if err := acct.CheckSigningKey(key); err != nil {
		return nil, err
	}
	if s.cfg.Uses != nil {
		s.cfg.Uses.Used(key.UseID(acct.Login), s.cfg.Now())
	}
	return &principal{Account: acct, Key: key}, nil
}

// parseKeyID splits "/<login>/keys/<md5 fingerprint>". "my" is not a login
// here: a keyId names its account.
func parseKeyID(id string) (login, fingerprint string, ok bool) {
	parts := strings.Split(id, "/")
	if len(parts) != 4 || parts[0] != "" || parts[2] != "keys" || parts[1] == "" || parts[1] == "my" {
		return "", "", false
	}
	fp := strings.ToLower(strings.TrimPrefix(parts[3], "MD5:"))
	if len(fp) != 47 {
		return "", "", false
	}
	return parts[1], fp, true
}

// principalOf returns the signer of the request in c.
func principalOf(c echo.Context) *principal {
	p, _ := c.Get("principal").(*principal)
	return p
}

// actorOf names the signer for logs and events.
func actorOf(c echo.Context) string {
	if caller := lmCallerOf(c); caller != nil {
		return caller.actor
	}
	if p := principalOf(c); p != nil {
		return p.Account.Login
	}
	return ""
}

// requireOperator refuses requests not signed by an operator.
func (s *Server) requireOperator(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if p := principalOf(c); p == nil || !p.Account.Operator {
			return domain.Errorf(domain.EFORBIDDEN, "%s is not an operator", actorOf(c))
		}
		return next(c)
	}
}
