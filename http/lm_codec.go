package http

import (
	"encoding/json"
	"mime"
	"strings"

	"github.com/labstack/echo/v4"
	"go.yaml.in/yaml/v3"

	"github.com/infrakeys/infrakeys/domain"
)

// The LM surface speaks JSON and YAML: its docs recommend YAML because PEM
// keys hold newlines. Both directions keep PEM blocks byte for byte (YAML
// literal blocks on the way out).

// lmDecode reads a JSON or YAML object body into a map.
func lmDecode(c echo.Context) (map[string]any, error) {
	body, err := readBody(c)
	if err != nil {
		return nil, err
	}
	in := map[string]any{}
	if len(strings.TrimSpace(string(body))) == 0 {
		return in, nil
	}
	ct := c.Request().Header.Get("Content-Type")
	mt, _, _ := mime.ParseMediaType(ct)
	switch mt {
	case "application/json", "":
		if err := json.Unmarshal(body, &in); err != nil {
			return nil, domain.Errorf(domain.EMALFORMED, "request body is not a JSON object")
		}
	case "application/yaml", "application/x-yaml", "text/yaml":
		if err := yaml.Unmarshal(body, &in); err != nil {
			return nil, domain.Errorf(domain.EMALFORMED, "request body is not a YAML mapping")
		}
	default:
		return nil, domain.Errorf(domain.EUNSUPPORTED, "content type %q is not supported; use application/json or application/yaml", ct)
	}
	return in, nil
}

// wantsYAML reports whether the client prefers YAML answers.
func wantsYAML(c echo.Context) bool {
	for _, part := range strings.Split(c.Request().Header.Get("Accept"), ",") {
		mt, _, _ := mime.ParseMediaType(strings.TrimSpace(part))
		switch mt {
		case "application/yaml", "application/x-yaml", "text/yaml":
			return true
		case "application/json":
			return false
		}
	}
	return false
}

// lmWrite answers v as YAML or JSON, as the client asked.
func lmWrite(c echo.Context, status int, v any) error {
	if !wantsYAML(c) {
		return writeJSON(c, status, v)
	}
	// Through JSON first, so struct tags and omitempty rules are the same
	// in both formats.
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	var generic any
	if err := json.Unmarshal(data, &generic); err != nil {
		return err
	}
	out, err := yaml.Marshal(generic)
	if err != nil {
		return err
	}
	return writeBody(c, status, "application/yaml", out)
}

// lmString returns the string field name of in; absent or null is "", any
// other type an error.
func lmString(in map[string]any, name string) (string, bool, error) {
	raw, ok := in[name]
	if !ok || raw == nil {
		return "", false, nil
	}
	s, ok := raw.(string)
	if !ok {
		return "", false, domain.Errorf(domain.EINVALID, "%s must be a string", name)
	}
	return s, true, nil
}
