package domain

import (
	"net/netip"
	"strings"
	"time"
	"unicode"
)

// CertRequest is what a caller asks to be certified. Zero fields take
// the defaults of the certificate type.
type CertRequest struct {
	// Principals: for a user certificate, nil means every principal the
	// policy allows; a host certificate needs at least one host name.
	Principals []string
	// Validity is how long from now the certificate is valid; exclusive
	// with ValidBefore.
	Validity    time.Duration
	ValidBefore time.Time
	// ValidAfter defaults to now minus CertBackdate.
	ValidAfter time.Time
	// ForceCommand and SourceAddress become critical options (user
	// certificates only).
	ForceCommand  string
	SourceAddress string
	// Extensions of a user certificate: nil means UserCertExtensions,
	// empty means none.
	Extensions []string
}

// certValidity returns the validity of a certificate requested at now:
// def when the request names none, never longer than max from now.
func certValidity(req CertRequest, now time.Time, def, max time.Duration, policy string) (after, before time.Time, err error) {
	now = now.Truncate(time.Second)
	after = now.Add(-CertBackdate)
	if !req.ValidAfter.IsZero() {
		if req.ValidAfter.Before(now.Add(-maxCertPast)) {
			return after, before, Errorf(EINVALID, "validAfter may be at most %s in the past", maxCertPast)
		}
		after = req.ValidAfter
	}
	switch {
	case req.Validity != 0 && !req.ValidBefore.IsZero():
		return after, before, Errorf(EINVALID, "give validity or validBefore, not both")
	case req.Validity != 0:
		if req.Validity < minCertValidity {
			return after, before, Errorf(EINVALID, "validity must be at least %s", minCertValidity)
		}
		before = now.Add(req.Validity)
	case !req.ValidBefore.IsZero():
		before = req.ValidBefore
	default:
		before = now.Add(def)
	}
	if !before.After(now) {
		return after, before, Errorf(EINVALID, "validBefore must be in the future")
	}
	if before.Sub(now) > max {
		return after, before, Errorf(EFORBIDDEN, "validity of %s is longer than %s allows (%s)", before.Sub(now).Round(time.Second), policy, max)
	}
	if !after.Before(before) {
		return after, before, Errorf(EINVALID, "validAfter must be before validBefore")
	}
	return after.UTC(), before.UTC(), nil
}

func validatePrincipals(ps []string) error {
	if len(ps) == 0 {
		return Errorf(EMISSING, "principals must name at least one principal")
	}
	if len(ps) > maxPrincipals {
		return Errorf(EINVALID, "principals must have at most %d entries", maxPrincipals)
	}
	seen := map[string]bool{}
	for _, p := range ps {
		if err := validatePrincipal("principals", p); err != nil {
			return err
		}
		if seen[p] {
			return Errorf(EINVALID, "principal %s is given twice", p)
		}
		seen[p] = true
	}
	return nil
}

// validatePrincipal holds a user principal to what sshd can match: a
// non-empty word without spaces or commas (its principal lists are
// comma-separated).
func validatePrincipal(field, p string) error {
	if p == "" || len(p) > maxPrincipalLen || strings.ContainsRune(p, ',') ||
		strings.IndexFunc(p, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0 {
		return Errorf(EINVALID, "%s: %q is not a principal: 1 to %d bytes, no spaces, commas or control characters", field, p, maxPrincipalLen)
	}
	return nil
}

// validateHostName accepts an IP address or a DNS name.
func validateHostName(h string) error {
	if _, err := netip.ParseAddr(h); err == nil {
		return nil
	}
	bad := Errorf(EINVALID, "principal %q is not a host name: give a DNS name or an IP address", h)
	if h == "" || len(h) > 253 {
		return bad
	}
	for _, label := range strings.Split(h, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return bad
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
				return bad
			}
		}
	}
	return nil
}

// validateSourceAddress checks a source-address option: addresses and
// CIDR prefixes, comma-separated. It returns the list without spaces.
func validateSourceAddress(s string) (string, error) {
	parts := strings.Split(s, ",")
	if len(parts) > maxSourceAddresses {
		return "", Errorf(EINVALID, "sourceAddress must have at most %d entries", maxSourceAddresses)
	}
	for i, p := range parts {
		p = strings.TrimSpace(p)
		if _, err := netip.ParsePrefix(p); err != nil {
			if _, err := netip.ParseAddr(p); err != nil {
				return "", Errorf(EINVALID, "sourceAddress: %q is neither an IP address nor a CIDR prefix", p)
			}
		}
		parts[i] = p
	}
	return strings.Join(parts, ","), nil
}
