package httpsig

import (
	"fmt"
	"net/http"
	"strings"
)

// SigningString builds the text that is signed for r: each listed header as
// "name: value", joined by newlines. The pseudo-header "(request-target)" is
// the lowercased method and the request target exactly as sent on the wire;
// re-encoding the path would make a correct client's signature fail.
//
// A listed header that r lacks wraps ErrMalformed: CloudAPI treats it as a
// bad header rather than a bad signature.
func SigningString(r *http.Request, headers []string) (string, error) {
	lines := make([]string, 0, len(headers))
	for _, h := range headers {
		name := strings.ToLower(h)
		value, err := headerValue(r, name)
		if err != nil {
			return "", err
		}
		lines = append(lines, name+": "+value)
	}
	return strings.Join(lines, "\n"), nil
}

func headerValue(r *http.Request, name string) (string, error) {
	switch name {
	case "(request-target)":
		// A server sees the raw target in RequestURI; a client has not sent
		// one yet, and URL.RequestURI is what its Transport will write.
		target := r.RequestURI
		if target == "" {
			target = r.URL.RequestURI()
		}
		return strings.ToLower(r.Method) + " " + target, nil
	case "host":
		// net/http moves Host out of the header map on both sides.
		host := r.Host
		if host == "" && r.URL != nil {
			host = r.URL.Host
		}
		if host != "" {
			return host, nil
		}
	default:
		if values := r.Header.Values(name); len(values) > 0 {
			// The draft joins repeated fields as they appear on the wire.
			// Values aliases the request's own slice, hence the copy.
			trimmed := make([]string, len(values))
			for i, v := range values {
				trimmed[i] = strings.TrimSpace(v)
			}
			return strings.Join(trimmed, ", "), nil
		}
	}
	return "", fmt.Errorf("%w: signed header %q is missing from the request", ErrMalformed, name)
}
