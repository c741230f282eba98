package http

import "github.com/labstack/echo/v4"

// Echo returns the server's router, so a test can add a route production
// has no use for (one that panics).
func (s *Server) Echo() *echo.Echo { return s.echo }

// DecodeBody runs the strict body decoder on body in format ("json",
// "yaml" or "form").
func DecodeBody(body []byte, format string) (map[string]any, error) {
	return decodeBody(body, map[string]bodyFormat{"json": formatJSON, "yaml": formatYAML, "form": formatForm}[format])
}

// DecodeMultiple is how many times its size a body may grow when decoded.
const DecodeMultiple = decodeMultiple
