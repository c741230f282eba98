package main

import (
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/oklog/ulid/v2"

	"github.com/infrakeys/infrakeys/domain"
)

// tokenJSON is a token as the operator API shows it.
type tokenJSON struct {
	ID        string   `json:"id"`
	Name      string   `json:"name"`
	Roles     []string `json:"roles"`
	CreatedBy string   `json:"createdBy"`
	Revoked   bool     `json:"revoked"`
	Token     string   `json:"token"`
}

// TestLMTokens runs what keysctl token create, list and revoke do, and
// checks that tokens authenticate until revoked.
func TestLMTokens(t *testing.T) {
	k := MustStartLM(t, nil)
	alice := MustAccount(t, k, "alice")

	var created tokenJSON
	t.Run("Create", func(t *testing.T) {
		r := k.Admin.Do(t, "POST", "/--admin/tokens", map[string]any{"name": "rm", "roles": []string{"keys:private", "keys:read", "keys:private"}})
		wantStatus(t, r, http.StatusCreated)
		r.JSON(t, &created)
		if _, ok := domain.ParseTokenID(created.Token); !ok || !strings.HasPrefix(created.Token, "ikt_"+created.ID+"_") {
			t.Errorf("token %q does not have the documented form", created.Token)
		}
		if created.Name != "rm" || !slices.Equal(created.Roles, []string{"keys:private", "keys:read"}) || created.CreatedBy != "admin" || created.Revoked {
			t.Errorf("created %+v", created)
		}
	})
	t.Run("Authenticates", func(t *testing.T) {
		wantStatus(t, k.Bearer(created.Token).Do(t, "GET", lmPrefix+"/shared", nil), http.StatusOK)
	})
	t.Run("SchemeCaseInsensitive", func(t *testing.T) {
		// RFC 7235: the scheme name is case-insensitive.
		for _, scheme := range []string{"bearer", "BEARER", "bEaReR"} {
			r := k.Bearer("").DoWith(t, "GET", lmPrefix+"/shared", nil, http.Header{"Authorization": {scheme + " " + created.Token}})
			if r.StatusCode != http.StatusOK {
				t.Errorf("%s: %d %s", scheme, r.StatusCode, r.Body)
			}
		}
	})
	t.Run("ListHasNoSecrets", func(t *testing.T) {
		r := k.Admin.Do(t, "GET", "/--admin/tokens", nil)
		wantStatus(t, r, http.StatusOK)
		var list []tokenJSON
		r.JSON(t, &list)
		if len(list) != 1 || list[0].ID != created.ID || list[0].Token != "" {
			t.Errorf("list %+v", list)
		}
		secret := strings.TrimPrefix(created.Token, "ikt_"+created.ID+"_")
		if strings.Contains(string(r.Body), secret) || strings.Contains(string(r.Body), "hash") {
			t.Errorf("list shows a secret or a hash: %s", r.Body)
		}
	})
	t.Run("EventsHoldOnlyTheHash", func(t *testing.T) {
		evs := eventsOf(MustEvents(t, k), domain.TypeTokenCreated)
		if len(evs) != 1 {
			t.Fatalf("%d TokenCreated events, want 1", len(evs))
		}
		if data := string(evs[0].Event.Data); strings.Contains(data, created.Token) || !strings.Contains(data, `"hash"`) {
			t.Errorf("TokenCreated %s", data)
		}
	})
	t.Run("Refusals", func(t *testing.T) {
		for _, tc := range []struct {
			name   string
			c      *client
			body   any
			status int
		}{
			{"ErrUnknownRole", k.Admin, map[string]any{"name": "x", "roles": []string{"keys:everything"}}, 409},
			{"ErrNoRole", k.Admin, map[string]any{"name": "x", "roles": []string{}}, 409},
			{"ErrNoName", k.Admin, map[string]any{"roles": []string{"keys:read"}}, 409},
			{"ErrNotOperator", alice, map[string]any{"name": "x", "roles": []string{"keys:read"}}, 403},
		} {
			t.Run(tc.name, func(t *testing.T) {
				wantStatus(t, tc.c.Do(t, "POST", "/--admin/tokens", tc.body), tc.status)
			})
		}
		t.Run("ErrTokenOnOperatorAPI", func(t *testing.T) {
			manager, _ := MustToken(t, k, "manager", "keys:manage")
			if r := k.Bearer(manager).Do(t, "POST", "/--admin/tokens", map[string]any{"name": "x", "roles": []string{"keys:read"}}); r.StatusCode < 400 || r.StatusCode >= 500 {
				t.Errorf("a token made a token: %d %s", r.StatusCode, r.Body)
			}
		})
	})
	t.Run("Revoke", func(t *testing.T) {
		wantStatus(t, alice.Do(t, "DELETE", "/--admin/tokens/"+created.ID, nil), http.StatusForbidden)
		wantStatus(t, k.Admin.Do(t, "DELETE", "/--admin/tokens/"+created.ID, nil), http.StatusNoContent)
		r := k.Bearer(created.Token).Do(t, "GET", lmPrefix+"/shared", nil)
		wantLMError(t, r, http.StatusUnauthorized, "application/json", "invalid or revoked token")
		var list []tokenJSON
		k.Admin.Do(t, "GET", "/--admin/tokens", nil).JSON(t, &list)
		if i := slices.IndexFunc(list, func(x tokenJSON) bool { return x.ID == created.ID }); i < 0 || !list[i].Revoked {
			t.Errorf("revoked token listed as %+v", list)
		}
		wantStatus(t, k.Admin.Do(t, "DELETE", "/--admin/tokens/"+created.ID, nil), http.StatusNoContent)
		wantStatus(t, k.Admin.Do(t, "DELETE", "/--admin/tokens/"+ulid.Make().String(), nil), http.StatusNotFound)
		if evs := eventsOf(MustEvents(t, k), domain.TypeTokenRevoked); len(evs) != 1 {
			t.Errorf("%d TokenRevoked events, want 1 (revoking twice records once)", len(evs))
		}
	})
}

// TestLMRoles is the table of who may do what on the LM surface: each
// caller against each operation, with the status it gets.
func TestLMRoles(t *testing.T) {
	k := MustStart(t, nil)
	alice := MustAccount(t, k, "alice")
	read, _ := MustToken(t, k, "read", "keys:read")
	manage, _ := MustToken(t, k, "manage", "keys:manage")
	private, _ := MustToken(t, k, "private", "keys:private")
	revoked, revokedID := MustToken(t, k, "revoked", "keys:manage", "keys:private")
	wantStatus(t, k.Admin.Do(t, "DELETE", "/--admin/tokens/"+revokedID, nil), http.StatusNoContent)
	unknownID := ulid.Make().String()

	callers := []struct {
		name string
		c    *client
	}{
		{"NoCredentials", k.Bearer("")},
		{"MalformedToken", k.Bearer("not-a-token")},
		{"UnknownToken", k.Bearer("ikt_" + unknownID + "_c2VjcmV0")},
		{"RevokedToken", k.Bearer(revoked)},
		{"Read", k.Bearer(read)},
		{"Manage", k.Bearer(manage)},
		{"Private", k.Bearer(private)},
		{"Operator", k.Admin},
		{"NotOperator", alice},
	}
	fixture := func(t *testing.T, name string) {
		t.Helper()
		wantStatus(t, k.Admin.Do(t, "POST", lmPrefix+"/shared", map[string]any{"name": name, "generate": "ed25519"}), http.StatusCreated)
	}
	fixture(t, "fixture")

	// send is a request in one codec: JSON, or YAML both ways (the error
	// body too must then be YAML).
	type send func(t *testing.T, method, path string, body any) *response
	type op struct {
		name string
		do   func(t *testing.T, s send, caller string) *response
		role string // the role it needs
		ok   int
	}
	ops := []op{
		{"List", func(t *testing.T, s send, _ string) *response { return s(t, "GET", lmPrefix+"/shared", nil) }, "keys:read", 200},
		{"Get", func(t *testing.T, s send, _ string) *response { return s(t, "GET", keyPath("fixture"), nil) }, "keys:read", 200},
		{"GetByName", func(t *testing.T, s send, _ string) *response { return s(t, "GET", lmPrefix+"/fixture", nil) }, "keys:read", 200},
		{"ListInstance", func(t *testing.T, s send, _ string) *response {
			return s(t, "GET", lmPrefix+"/instances/vm-1", nil)
		}, "keys:read", 200},
		{"ListIncludePrivate", func(t *testing.T, s send, _ string) *response {
			return s(t, "GET", lmPrefix+"/shared?includePrivateKey=true", nil)
		}, "keys:private", 200},
		{"GetIncludePrivate", func(t *testing.T, s send, _ string) *response {
			return s(t, "GET", keyPath("fixture")+"?includePrivateKey=true", nil)
		}, "keys:private", 200},
		{"GetByNameIncludePrivate", func(t *testing.T, s send, _ string) *response {
			return s(t, "GET", lmPrefix+"/fixture?includePrivateKey=true", nil)
		}, "keys:private", 200},
		{"ListInstanceIncludePrivate", func(t *testing.T, s send, _ string) *response {
			return s(t, "GET", lmPrefix+"/instances/vm-1?includePrivateKey=true", nil)
		}, "keys:private", 200},
		{"Substitute", func(t *testing.T, s send, _ string) *response {
			return s(t, "POST", lmPrefix+"/substitute", map[string]any{"properties": map[string]any{"k": map[string]any{"type": "key", "value": "fixture"}}})
		}, "keys:private", 200},
		{"Create", func(t *testing.T, s send, caller string) *response {
			return s(t, "POST", lmPrefix+"/shared", map[string]any{"name": "created-by-" + caller, "generate": "ed25519"})
		}, "keys:manage", 201},
		{"Update", func(t *testing.T, s send, caller string) *response {
			return s(t, "PUT", keyPath("fixture"), map[string]any{"description": "updated by " + caller})
		}, "keys:manage", 204},
		{"Delete", func(t *testing.T, s send, caller string) *response {
			fixture(t, "delete-"+caller)
			return s(t, "DELETE", keyPath("delete-"+caller), nil)
		}, "keys:manage", 204},
		{"RemoveInstance", func(t *testing.T, s send, caller string) *response {
			return s(t, "DELETE", lmPrefix+"/instances/vm-of-"+caller, nil)
		}, "keys:manage", 202},
	}
	holds := map[string][]string{
		"Read":     {"keys:read"},
		"Manage":   {"keys:read", "keys:manage"},
		"Private":  {"keys:read", "keys:private"},
		"Operator": {"keys:read", "keys:manage", "keys:private"},
	}
	codecs := []struct {
		name, suffix, contentType string
		send                      func(c *client) send
	}{
		{"JSON", "", "application/json", func(c *client) send {
			return func(t *testing.T, method, path string, body any) *response { return c.Do(t, method, path, body) }
		}},
		{"YAML", "-yaml", "application/yaml", func(c *client) send {
			return func(t *testing.T, method, path string, body any) *response { return c.YAML(t, method, path, body) }
		}},
	}
	for _, codec := range codecs {
		t.Run(codec.name, func(t *testing.T) {
			for _, caller := range callers {
				t.Run(caller.name, func(t *testing.T) {
					for _, o := range ops {
						t.Run(o.name, func(t *testing.T) {
							want, says := o.ok, ""
							switch {
							case caller.name == "NotOperator":
								want, says = http.StatusForbidden, "not an operator"
							case holds[caller.name] == nil:
								want = http.StatusUnauthorized
							case !slices.Contains(holds[caller.name], o.role):
								want, says = http.StatusForbidden, o.role
							}
							r := o.do(t, codec.send(caller.c), caller.name+codec.suffix)
							if r.StatusCode != want {
								t.Fatalf("%s: %d, want %d: %s", o.name, r.StatusCode, want, r.Body)
							}
							if want >= 400 {
								wantLMError(t, r, want, codec.contentType, says)
							}
						})
					}
				})
			}
		})
	}
	t.Run("RefusedCallersChangedNothing", func(t *testing.T) {
		var list []infraKeyJSON
		k.Admin.Do(t, "GET", lmPrefix+"/shared", nil).JSON(t, &list)
		var names []string
		for _, key := range list {
			names = append(names, key.Name)
			if key.Name == "fixture" && key.Description != "updated by Operator-yaml" {
				t.Errorf("fixture description %q: updated after the operator", key.Description)
			}
		}
		want := []string{"fixture"}
		for _, codec := range codecs {
			want = append(want, "created-by-Manage"+codec.suffix, "created-by-Operator"+codec.suffix)
			for _, refused := range []string{"NoCredentials", "MalformedToken", "UnknownToken", "RevokedToken", "Read", "Private", "NotOperator"} {
				want = append(want, "delete-"+refused+codec.suffix)
			}
		}
		slices.Sort(want)
		if !slices.Equal(names, want) {
			t.Errorf("pool %q, want %q", names, want)
		}
	})
}
