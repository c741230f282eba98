package http

// Reading a request's body: the wire limit, the format its surface and
// Content-Type pick, the strict decoder (decode.go), and typed access to
// the members.

import (
	"encoding/json"
	"io"
	"mime"
	"slices"
	"sort"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/infrakeys/infrakeys/domain"
)

// maxBodyBytes is CloudAPI's request body limit, applied to every
// surface: the wire half of the bound decodeMultiple completes.
const maxBodyBytes = 100000

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

// fields is a decoded request body. Its getters take a member that is
// absent or null as not given, and refuse one of the wrong type with a
// message naming it: never is a wrong type dropped or converted.
type fields struct {
	m map[string]any
	// restify names types as CloudAPI's messages do ("key must be a
	// String"); LM's are lower case.
	restify bool
}

// cloudAPIBody reads and decodes the body of a CloudAPI or operator
// request: a form, or else JSON whatever the Content-Type says, as
// restify reads it.
func cloudAPIBody(c echo.Context) (fields, error) {
	body, err := readBody(c)
	if err != nil {
		return fields{}, err
	}
	format := formatJSON
	if mt, _, _ := mime.ParseMediaType(c.Request().Header.Get("Content-Type")); mt == "application/x-www-form-urlencoded" {
		format = formatForm
	}
	m, err := decodeBody(body, format)
	return fields{m: m, restify: true}, err
}

// lmBody reads and decodes the body of an LM request, JSON or YAML as its
// Content-Type says. The message for another type does not echo it.
func lmBody(c echo.Context) (fields, error) {
	body, err := readBody(c)
	if err != nil {
		return fields{}, err
	}
	format := formatJSON
	mt, _, _ := mime.ParseMediaType(c.Request().Header.Get("Content-Type"))
	switch mt {
	case "application/json", "":
	case "application/yaml", "application/x-yaml", "text/yaml":
		format = formatYAML
	default:
		if len(strings.TrimSpace(string(body))) == 0 {
			break
		}
		return fields{}, domain.Errorf(domain.EUNSUPPORTED, "the Content-Type is not supported; use application/json or application/yaml")
	}
	m, err := decodeBody(body, format)
	return fields{m: m}, err
}

func (f fields) typeName(lm, restify string) string {
	if f.restify {
		return restify
	}
	return lm
}

func (f fields) wrongType(name, lm, restify string) error {
	return domain.Errorf(domain.EINVALID, "%s must be %s", name, f.typeName(lm, restify))
}

// given reports whether name is present and not null.
func (f fields) given(name string) bool { return f.m[name] != nil }

// str returns the string member name.
func (f fields) str(name string) (string, bool, error) {
	raw := f.m[name]
	if raw == nil {
		return "", false, nil
	}
	s, ok := raw.(string)
	if !ok {
		return "", false, f.wrongType(name, "a string", "a String")
	}
	return s, true, nil
}

// boolean returns the boolean member name.
func (f fields) boolean(name string) (bool, error) {
	raw := f.m[name]
	if raw == nil {
		return false, nil
	}
	b, ok := raw.(bool)
	if !ok {
		return false, f.wrongType(name, "a boolean", "a Boolean")
	}
	return b, nil
}

// strs returns the member name, an array of strings.
func (f fields) strs(name string) ([]string, bool, error) {
	raw := f.m[name]
	if raw == nil {
		return nil, false, nil
	}
	arr, ok := raw.([]any)
	if !ok {
		return nil, false, f.wrongType(name, "an array of strings", "an array of Strings")
	}
	out := make([]string, len(arr))
	for i, e := range arr {
		if out[i], ok = e.(string); !ok {
			return nil, false, f.wrongType(name, "an array of strings", "an array of Strings")
		}
	}
	return out, true, nil
}

// integer returns the member name, a whole number.
func (f fields) integer(name string) (int64, bool, error) {
	raw := f.m[name]
	if raw == nil {
		return 0, false, nil
	}
	if n, ok := raw.(json.Number); ok {
		if v, err := n.Int64(); err == nil {
			return v, true, nil
		}
	}
	return 0, false, f.wrongType(name, "a whole number", "a whole Number")
}

// object returns the object member name.
func (f fields) object(name string) (map[string]any, bool, error) {
	raw := f.m[name]
	if raw == nil {
		return nil, false, nil
	}
	m, ok := raw.(map[string]any)
	if !ok {
		return nil, false, f.wrongType(name, "an object", "an Object")
	}
	return m, true, nil
}

// only refuses members other than known: on the operator endpoints, whose
// one client is keysctl, a misspelt member would otherwise be ignored
// ("operater": true making an ordinary account).
func (f fields) only(known ...string) error {
	var unknown []string
	for name := range f.m {
		if !slices.Contains(known, name) {
			unknown = append(unknown, path("", name))
		}
	}
	if len(unknown) == 0 {
		return nil
	}
	sort.Strings(unknown)
	return domain.Errorf(domain.EINVALID, "unknown member %s; the members are %s", strings.Join(unknown, ", "), strings.Join(known, ", "))
}
