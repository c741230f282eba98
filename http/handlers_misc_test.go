package http_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	khttp "github.com/infrakeys/infrakeys/http"
)

func TestReadyz(t *testing.T) {
	ok := func(context.Context) error { return nil }
	behind := func(context.Context) error { return errors.New("5000 events behind the log") }
	cases := []struct {
		name   string
		checks []khttp.ReadyCheck
		status int
		want   map[string]string
	}{
		{"OK", []khttp.ReadyCheck{{"eventLog", ok}, {"projection:accounts", ok}}, http.StatusOK,
			map[string]string{"eventLog": "ok", "projection:accounts": "ok"}},
		{"ErrProjectionBehind", []khttp.ReadyCheck{{"eventLog", ok}, {"projection:accounts", behind}}, http.StatusServiceUnavailable,
			map[string]string{"eventLog": "ok", "projection:accounts": "5000 events behind the log"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			srv := khttp.NewServer(khttp.Config{ReadyChecks: c.checks})
			rec := httptest.NewRecorder()
			srv.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
			if got, want := rec.Code, c.status; got != want {
				t.Errorf("status = %d, want %d", got, want)
			}
			var body struct {
				Status string            `json:"status"`
				Checks map[string]string `json:"checks"`
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
				t.Fatal(err)
			}
			for name, want := range c.want {
				if got := body.Checks[name]; got != want {
					t.Errorf("check %s = %q, want %q", name, got, want)
				}
			}
			if wantStatus := map[int]string{200: "ready", 503: "unavailable"}[c.status]; body.Status != wantStatus {
				t.Errorf("status field = %q, want %q", body.Status, wantStatus)
			}
		})
	}
}

// TestMetricsRoute checks that /metrics exists only when there are
// metrics to serve, and answers with the body headers of every response.
func TestMetricsRoute(t *testing.T) {
	t.Run("None", func(t *testing.T) {
		rec := httptest.NewRecorder()
		khttp.NewServer(khttp.Config{}).Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
		if rec.Code == http.StatusOK {
			t.Errorf("status = %d, want no /metrics route", rec.Code)
		}
	})
	t.Run("OK", func(t *testing.T) {
		h := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/plain; version=0.0.4")
			_, _ = w.Write([]byte("up 1\n"))
		})
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
		req.Header.Set("Accept-Encoding", "gzip")
		khttp.NewServer(khttp.Config{Metrics: h}).Handler().ServeHTTP(rec, req)
		if got, want := rec.Body.String(), "up 1\n"; got != want {
			t.Errorf("body = %q, want %q", got, want)
		}
		for _, h := range []string{"Content-Type", "Content-Length", "Content-MD5", "Request-Id"} {
			if rec.Header().Get(h) == "" {
				t.Errorf("no %s", h)
			}
		}
	})
}
