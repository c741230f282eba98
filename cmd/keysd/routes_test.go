package main

import (
	"net/http"
	"slices"
	"strings"
	"testing"
)

// TestMethodNotAllowed checks that a method a route does not have answers
// 405 with Allow, in the error format of the surface the path belongs to,
// before authentication: with credentials or without, the answer is the same.
func TestMethodNotAllowed(t *testing.T) {
	k := MustStart(t, nil)
	alice := MustAccount(t, k, "alice")
	manager, _ := MustToken(t, k, "manager", "keys:manage")
	anonymous := &client{k: k, base: k.URL}
	for _, tc := range []struct {
		name, method, path string
		allow              []string
		lm                 bool
	}{
		{"CloudAPIKeys", "PUT", "/alice/keys", []string{"GET", "HEAD", "POST"}, false},
		{"CloudAPIKey", "POST", "/alice/keys/x", []string{"DELETE", "GET", "HEAD"}, false},
		{"Admin", "DELETE", "/--admin/accounts/alice", []string{"GET"}, false},
		{"OpenAPI", "POST", "/openapi.yaml", []string{"GET", "HEAD"}, false},
		{"AuthorizedKeys", "POST", "/alice/authorized_keys", []string{"GET", "HEAD"}, false},
		{"LMShared", "DELETE", lmPrefix + "/shared", []string{"GET", "POST"}, true},
		{"LMSharedKey", "PATCH", keyPath("web"), []string{"DELETE", "GET", "PUT"}, true},
		{"LMInstance", "POST", lmPrefix + "/instances/vm-1", []string{"DELETE", "GET"}, true},
		{"LMSubstitute", "PUT", lmPrefix + "/substitute", []string{"POST"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for who, c := range map[string]*client{"Anonymous": anonymous, "Signed": alice, "Bearer": k.Bearer(manager)} {
				r := c.Do(t, tc.method, tc.path, nil)
				if r.StatusCode != http.StatusMethodNotAllowed {
					t.Fatalf("%s %s %s: %d, want 405: %s", who, tc.method, tc.path, r.StatusCode, r.Body)
				}
				allow := strings.Split(r.Header.Get("Allow"), ", ")
				slices.Sort(allow)
				if want := append([]string{"OPTIONS"}, tc.allow...); !slices.Equal(allow, sorted(want)) {
					t.Errorf("%s: Allow %q, want %q", who, r.Header.Get("Allow"), strings.Join(sorted(want), ", "))
				}
				if tc.lm {
					e := r.LMError(t)
					if want := tc.method + " is not allowed"; !strings.Contains(e.LocalizedMessage, want) {
						t.Errorf("%s: localizedMessage %q, want %q", who, e.LocalizedMessage, want)
					}
					continue
				}
				if code, msg := r.ErrorBody(t); code != "MethodNotAllowed" || !strings.Contains(msg, tc.method+" is not allowed") {
					t.Errorf("%s: %s %q, want MethodNotAllowed", who, code, msg)
				}
			}
		})
	}
	t.Run("Options", func(t *testing.T) {
		// Not an operation of the OpenAPI document: sent without its check.
		r, err := http.DefaultClient.Do(newRequest(t, "OPTIONS", k.URL+"/alice/keys/x", nil))
		if err != nil {
			t.Fatal(err)
		}
		r.Body.Close()
		if r.StatusCode != http.StatusNoContent || r.Header.Get("Allow") != "OPTIONS, DELETE, GET, HEAD" {
			t.Errorf("OPTIONS /alice/keys/x: %d, Allow %q", r.StatusCode, r.Header.Get("Allow"))
		}
	})
	t.Run("AllowedMethodsStillAuthenticate", func(t *testing.T) {
		if r := anonymous.Do(t, "GET", "/alice/keys", nil); r.StatusCode != http.StatusUnauthorized {
			t.Errorf("GET /alice/keys unsigned: %d", r.StatusCode)
		}
		if r := anonymous.Do(t, "HEAD", "/alice/keys", nil); r.StatusCode != http.StatusUnauthorized {
			t.Errorf("HEAD /alice/keys unsigned: %d", r.StatusCode)
		}
		if r := anonymous.Do(t, "GET", lmPrefix+"/shared", nil); r.StatusCode != http.StatusUnauthorized {
			t.Errorf("GET shared without token: %d", r.StatusCode)
		}
		if r := alice.Do(t, "HEAD", "/alice/keys", nil); r.StatusCode != http.StatusOK {
			t.Errorf("HEAD /alice/keys: %d", r.StatusCode)
		}
	})
	t.Run("UnknownPath", func(t *testing.T) {
		for _, c := range []*client{anonymous, alice} {
			if r := c.Do(t, "GET", "/alice/nothing", nil); r.StatusCode != http.StatusNotFound {
				t.Errorf("GET /alice/nothing: %d %s", r.StatusCode, r.Body)
			} else if code, _ := r.ErrorBody(t); code != "ResourceNotFound" {
				t.Errorf("GET /alice/nothing: code %s", code)
			}
			// Every GET deeper under the prefix is the alias GET /:name.
			wantLMError(t, c.Do(t, "GET", lmPrefix, nil), http.StatusNotFound, "application/json", "does not exist")
		}
	})
}

// sorted returns a sorted copy of s.
func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

// TestRouteLabels checks the route label of requests that match no route
// (unmatched) and of methods a route lacks (the route's template): never
// a raw path, never Echo's catch-all "/*".
func TestRouteLabels(t *testing.T) {
	k := MustStart(t, nil)
	anonymous := &client{k: k, base: k.URL}
	anonymous.Do(t, "GET", "/no-such-login-xyz/elsewhere", nil)
	anonymous.Do(t, "GET", lmPrefix+"xyz", nil)
	anonymous.Do(t, "PATCH", lmPrefix+"/shared/some-key-xyz", nil)
	anonymous.Do(t, "PUT", "/no-such-login-xyz/keys", nil)
	families := k.scrape(t)
	for _, labels := range []map[string]string{
		{"method": "GET", "route": "unmatched", "code": "404"},
		{"method": "PATCH", "route": lmPrefix + "/shared/:name", "code": "405"},
		{"method": "PUT", "route": "/:login/keys", "code": "405"},
	} {
		if got, ok := metricValue(families, "keysd_http_requests_total", labels); !ok || got < 1 {
			t.Errorf("keysd_http_requests_total%v = %v (present %v), want >= 1", labels, got, ok)
		}
	}
	if got, _ := metricValue(families, "keysd_http_requests_total", map[string]string{"method": "GET", "route": "unmatched", "code": "404"}); got != 2 {
		t.Errorf("unmatched GETs counted %v, want 2", got)
	}
	for name, f := range families {
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if v := l.GetValue(); l.GetName() == "route" && (strings.Contains(v, "*") || strings.Contains(v, "xyz")) {
					t.Errorf("%s has route=%q: a catch-all or a raw path", name, v)
				}
			}
		}
	}
}
