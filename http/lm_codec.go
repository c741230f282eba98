package http

import (
	"bytes"
	"encoding/json"
	"mime"
	"strings"

	"github.com/labstack/echo/v4"
	"go.yaml.in/yaml/v3"
)

// The LM surface speaks JSON and YAML: its docs recommend YAML because PEM
// keys hold newlines. Both directions keep PEM blocks byte for byte (YAML
// literal blocks on the way out).

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
	// Numbers stay as they were written (json.Number), not float64.
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var generic any
	if err := dec.Decode(&generic); err != nil {
		return err
	}
	// Two spaces a level, as the decoder charges for values echoed back.
	var out bytes.Buffer
	enc := yaml.NewEncoder(&out)
	enc.SetIndent(2)
	if err := enc.Encode(generic); err != nil {
		return err
	}
	if err := enc.Close(); err != nil {
		return err
	}
	return writeBody(c, status, "application/yaml", out.Bytes())
}
