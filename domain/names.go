package domain

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// The names keysd accepts end up as one segment of a URL path: a key's
// name in /:login/keys/:key and in the Location of an LM key
// (.../shared/:name), an instance id in .../instances/:instanceId. Every
// name must therefore survive the trip through a path encoder, the
// clients and proxies in between, and the decoder, unchanged: what keysd
// answers in Location must lead back to the same resource. Logins have a
// stricter syntax of their own (ValidateLogin).

// maxNameLen bounds key names and instance ids. Instance ids are also
// NATS subject tokens, where each byte outside [A-Za-z0-9_-] takes three.
const maxNameLen = 255

// ValidateKeyName reports whether name can name a key: an account key, a
// shared key or a key of an instance. Token names follow it too.
func ValidateKeyName(name string) error {
	if name == "" {
		return Errorf(EINVALID, "name must not be empty")
	}
	return validateSegment("name", name)
}

// ValidateInstanceID reports whether id can identify an instance.
func ValidateInstanceID(id string) error {
	if id == "" {
		return Errorf(EMISSING, "instanceId is required")
	}
	return validateSegment("instanceId", id)
}

// validateSegment reports whether s (not empty), called field in the
// message, is a name that round-trips as one URL path segment.
func validateSegment(field, s string) error {
	switch {
	case len(s) > maxNameLen:
		return Errorf(EINVALID, "%s must be at most %d bytes", field, maxNameLen)
	case !utf8.ValidString(s):
		// An encoder would send the bytes, a decoder give back U+FFFD.
		return Errorf(EINVALID, "%s must be valid UTF-8", field)
	case s == "." || s == "..":
		// RFC 3986 dot segments: Go's and curl's URL resolution, browsers
		// and proxies remove them (even percent-encoded), so the URL of
		// the key would name its parent.
		return Errorf(EINVALID, "%s must not be %q: clients and proxies remove that path segment from a URL", field, s)
	case strings.ContainsRune(s, '/'):
		return Errorf(EINVALID, "%s must not contain '/'", field)
	case strings.IndexFunc(s, invisible) >= 0:
		return Errorf(EINVALID, "%s must not contain control, format or line separator characters", field)
	case startsOrEndsWithSpace(s):
		// Invisible in listings, and trimmed by shells, YAML tools and
		// the intake's '#' form: such a name could not be asked for as
		// it is shown.
		return Errorf(EINVALID, "%s must not begin or end with white space", field)
	}
	return nil
}

// invisible reports control characters (C0, DEL, C1), format characters
// (zero-width spaces and joiners, direction overrides, the byte order
// mark) and the line and paragraph separators: characters a name could
// hold without anyone seeing or typing them.
func invisible(r rune) bool {
	return unicode.IsControl(r) || unicode.In(r, unicode.Cf, unicode.Zl, unicode.Zp)
}

// startsOrEndsWithSpace reports white space at either end of s.
func startsOrEndsWithSpace(s string) bool {
	first, _ := utf8.DecodeRuneInString(s)
	last, _ := utf8.DecodeLastRuneInString(s)
	return unicode.IsSpace(first) || unicode.IsSpace(last)
}
