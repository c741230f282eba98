package http

import (
	_ "embed"
	"net/http"

	"github.com/labstack/echo/v4"
)

//go:embed openapi.yaml
var openAPISpec []byte

// handlePing serves GET /--ping: no authentication, as CloudAPI.
func (s *Server) handlePing(c echo.Context) error {
	return writeJSON(c, http.StatusOK, map[string]any{
		"ping":     "pong",
		"cloudapi": map[string]any{"versions": []string{APIVersion}},
	})
}

// handleHealthz serves GET /healthz: the process is alive.
func (s *Server) handleHealthz(c echo.Context) error {
	return writeJSON(c, http.StatusOK, map[string]string{"status": "ok"})
}

// handleReadyz serves GET /readyz: the service can serve requests.
func (s *Server) handleReadyz(c echo.Context) error {
	if s.cfg.Ready != nil {
		if err := s.cfg.Ready(c.Request().Context()); err != nil {
			s.log.Warn("not ready", "requestId", requestID(c), "err", err)
			return writeJSON(c, http.StatusServiceUnavailable, map[string]string{"status": "unavailable"})
		}
	}
	return writeJSON(c, http.StatusOK, map[string]string{"status": "ready"})
}

// handleOpenAPI serves GET /openapi.yaml: the OpenAPI 3 document of the
// service.
func (s *Server) handleOpenAPI(c echo.Context) error {
	return writeBody(c, http.StatusOK, "application/yaml", openAPISpec)
}
