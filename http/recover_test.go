package http_test

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"

	khttp "github.com/infrakeys/infrakeys/http"
	"github.com/infrakeys/infrakeys/internal/testkit"
)

// TestHandlerPanic checks that a handler's panic is answered, not dropped:
// 500 InternalError in the format of the surface it happened on, a generic
// message, and the panic logged with the request id.
func TestHandlerPanic(t *testing.T) {
	var logs testkit.LockedBuffer
	srv := khttp.NewServer(khttp.Config{Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
	panics := func(echo.Context) error { panic("handler bug") }
	srv.Echo().GET("/panic", panics)
	srv.Echo().GET("/api/resource-manager/infrastructure-keys/panic", panics)
	ts := httptest.NewServer(srv.Handler())
	defer ts.Close()

	for _, tc := range []struct {
		name, path string
		want       map[string]any
	}{
		{"CloudAPI", "/panic", map[string]any{"code": "InternalError", "message": "internal error"}},
		{"LM", "/api/resource-manager/infrastructure-keys/panic", map[string]any{
			"localizedMessage": "internal error", "url": "/api/resource-manager/infrastructure-keys/panic"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(http.MethodGet, ts.URL+tc.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Accept", "application/json")
			resp, err := ts.Client().Do(req)
			if err != nil {
				t.Fatalf("request: %v", err)
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			if got, want := resp.StatusCode, http.StatusInternalServerError; got != want {
				t.Errorf("status = %d, want %d", got, want)
			}
			var got map[string]any
			if err := json.Unmarshal(body, &got); err != nil {
				t.Fatalf("body %s: %v", body, err)
			}
			for k, want := range tc.want {
				if got[k] != want {
					t.Errorf("%s = %v, want %v (body %s)", k, got[k], want, body)
				}
			}
			if strings.Contains(string(body), "handler bug") {
				t.Errorf("body leaks the panic: %s", body)
			}
			id := resp.Header.Get("Request-Id")
			if id == "" {
				t.Fatal("no Request-Id")
			}
			var logged bool
			for _, line := range bytes.Split([]byte(logs.String()), []byte("\n")) {
				if bytes.Contains(line, []byte(id)) && bytes.Contains(line, []byte("panic: handler bug")) {
					logged = true
				}
			}
			if !logged {
				t.Errorf("no log line with request id %s and the panic:\n%s", id, logs.String())
			}
		})
	}
}
