package http

import (
	"bytes"
	"context"
	_ "embed"
	"net/http"
	"time"

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

// readyTimeout bounds all the checks of one GET /readyz.
const readyTimeout = 3 * time.Second

// handleReadyz serves GET /readyz: 200 when every readiness check passes,
// else 503; the body says how each check went.
func (s *Server) handleReadyz(c echo.Context) error {
	ctx, cancel := context.WithTimeout(c.Request().Context(), readyTimeout)
	defer cancel()
	status, code := "ready", http.StatusOK
	checks := make(map[string]string, len(s.cfg.ReadyChecks))
	for _, rc := range s.cfg.ReadyChecks {
		if err := rc.Check(ctx); err != nil {
			status, code = "unavailable", http.StatusServiceUnavailable
			checks[rc.Name] = err.Error()
			s.log.Warn("not ready", "requestId", requestID(c), "check", rc.Name, "err", err)
			continue
		}
		checks[rc.Name] = "ok"
	}
	return writeJSON(c, code, map[string]any{"status": status, "checks": checks})
}

// handleOpenAPI serves GET|HEAD /openapi.yaml: the OpenAPI 3 document of the
// service.
func (s *Server) handleOpenAPI(c echo.Context) error {
	return writeBody(c, http.StatusOK, "application/yaml", openAPISpec)
}

// handleMetrics serves GET /metrics: the metrics in the Prometheus text
// format, unauthenticated like /healthz (bind keysd's HTTP address
// accordingly). Their meaning is in docs/operations.md. The exposition is
// buffered so the response carries Content-Length and Content-MD5, as
// every response of keysd does.
func (s *Server) handleMetrics(c echo.Context) error {
	r := c.Request().Clone(c.Request().Context())
	r.Header.Del("Accept-Encoding") // small enough; and Content-MD5 is of the plain body
	rec := &bufferedResponse{header: http.Header{}, status: http.StatusOK}
	s.cfg.Metrics.ServeHTTP(rec, r)
	return writeBody(c, rec.status, rec.header.Get("Content-Type"), rec.body.Bytes())
}

// bufferedResponse is an http.ResponseWriter that keeps what is written.
type bufferedResponse struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (b *bufferedResponse) Header() http.Header         { return b.header }
func (b *bufferedResponse) Write(p []byte) (int, error) { return b.body.Write(p) }
func (b *bufferedResponse) WriteHeader(status int)      { b.status = status }
