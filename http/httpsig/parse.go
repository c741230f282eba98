package httpsig

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
)

// ErrMalformed reports an Authorization header, or a request, that cannot be
// turned into something to verify. It is kept apart from verification
// failures because CloudAPI answers it with 400 InvalidHeader rather than 401.
var ErrMalformed = errors.New("httpsig: malformed signature")

// Params are the parameters of a "Signature" Authorization header.
type Params struct {
	// KeyID names the key, for CloudAPI "/<login>/keys/<md5 fingerprint>".
	KeyID string
	// Algorithm is lowercased, for example "ed25519-sha512". It may be empty
	// when the client did not send one; Verify then rejects it.
	Algorithm string
	// Headers are the lowercased header names in signing order; "date" when
	// the client did not list any, as the draft prescribes.
	Headers []string
	// Signature is the decoded signature.
	Signature []byte
}

// ParseAuthorization parses the value of an Authorization header using the
// "Signature" scheme. Unknown parameters are ignored so that newer clients
// (which add "created" or "expires") still parse; repeated ones are rejected
// because it would be ambiguous which one was meant.
func ParseAuthorization(value string) (*Params, error) {
	scheme, rest, _ := strings.Cut(strings.TrimLeft(value, " \t"), " ")
	if !strings.EqualFold(scheme, "Signature") {
		return nil, fmt.Errorf("%w: scheme is not Signature", ErrMalformed)
	}
	raw, err := parseParams(rest)
	if err != nil {
		return nil, err
	}

	p := &Params{
		KeyID:     raw["keyid"],
		Algorithm: strings.ToLower(raw["algorithm"]),
		Headers:   []string{"date"},
	}
	if p.KeyID == "" {
		return nil, fmt.Errorf("%w: keyId is missing", ErrMalformed)
	}
	if h, ok := raw["headers"]; ok {
		p.Headers = strings.Fields(strings.ToLower(h))
		if len(p.Headers) == 0 {
			return nil, fmt.Errorf("%w: headers is empty", ErrMalformed)
		}
	}
	sig := raw["signature"]
	if sig == "" {
		return nil, fmt.Errorf("%w: signature is missing", ErrMalformed)
	}
	if p.Signature, err = base64.StdEncoding.DecodeString(sig); err != nil {
		return nil, fmt.Errorf("%w: signature is not base64: %v", ErrMalformed, err)
	}
	return p, nil
}

// parseParams reads `name="value"` pairs separated by commas with optional
// whitespace around them. Names are lowercased because auth-param names are
// case-insensitive (RFC 7235); values must be quoted, as the draft requires.
func parseParams(s string) (map[string]string, error) {
	params := make(map[string]string)
	s = strings.Trim(s, " \t")
	for s != "" {
		eq := strings.IndexByte(s, '=')
		if eq <= 0 {
			return nil, fmt.Errorf("%w: expected name=\"value\" at %q", ErrMalformed, s)
		}
		name := strings.ToLower(s[:eq])
		if !isToken(name) {
			return nil, fmt.Errorf("%w: bad parameter name %q", ErrMalformed, s[:eq])
		}
		value, rest, err := parseQuoted(s[eq+1:])
		if err != nil {
			return nil, fmt.Errorf("%w: parameter %s: %v", ErrMalformed, name, err)
		}
		if _, dup := params[name]; dup {
			return nil, fmt.Errorf("%w: parameter %s repeated", ErrMalformed, name)
		}
		params[name] = value

		rest = strings.TrimLeft(rest, " \t")
		if rest == "" {
			break
		}
		if rest[0] != ',' {
			return nil, fmt.Errorf("%w: expected ',' at %q", ErrMalformed, rest)
		}
		s = strings.TrimLeft(rest[1:], " \t")
		if s == "" {
			return nil, fmt.Errorf("%w: trailing ','", ErrMalformed)
		}
	}
	return params, nil
}

// parseQuoted reads an RFC 7230 quoted-string at the start of s and returns
// its unescaped content and what follows it.
func parseQuoted(s string) (value, rest string, err error) {
	if s == "" || s[0] != '"' {
		return "", "", errors.New("value is not quoted")
	}
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		switch c := s[i]; c {
		case '"':
			return b.String(), s[i+1:], nil
		case '\\':
			i++
			if i == len(s) {
				return "", "", errors.New("unterminated quote")
			}
			b.WriteByte(s[i])
		default:
			b.WriteByte(c)
		}
	}
	return "", "", errors.New("unterminated quote")
}

func isToken(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`"(),/:;<=>?@[\]{}`, c) >= 0 {
			return false
		}
	}
	return s != ""
}
