package main

import (
	"fmt"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestStrictBodies sends, to every surface, bodies a lenient decoder would
// rewrite or pick from, and checks each is refused in the surface's own
// format, with a message naming the member, and changes nothing.
func TestStrictBodies(t *testing.T) {
	k := MustStartLM(t, nil)
	keyA, keyB := AuthorizedKey(t, MustKey(t), "a"), AuthorizedKey(t, MustKey(t), "b")

	t.Run("CloudAPI", func(t *testing.T) {
		for _, c := range []struct{ name, body, msg string }{
			{"ErrDuplicateKey", `{"key":"` + keyA + `","key":"` + keyB + `"}`, "key is given more than once"},
			{"ErrDuplicateName", `{"key":"` + keyA + `","name":"x","name":"y"}`, "name is given more than once"},
			{"ErrInvalidUTF8Name", "{\"key\":\"" + keyA + "\",\"name\":\"a\xffb\"}", "name is not valid UTF-8"},
			{"ErrLoneSurrogateName", `{"key":"` + keyA + `","name":"a\ud800b"}`, "name is not valid UTF-8"},
			{"ErrNameNotString", `{"key":"` + keyA + `","name":7}`, "name must be a String"},
		} {
			t.Run(c.name, func(t *testing.T) {
				r := k.Admin.Do(t, "POST", "/my/keys", c.body)
				if code, msg := r.ErrorBody(t); r.StatusCode != http.StatusConflict || code != "InvalidArgument" || !strings.Contains(msg, c.msg) {
					t.Errorf("%d %s, want 409 InvalidArgument saying %q", r.StatusCode, r.Body, c.msg)
				}
			})
		}
		var keys []map[string]any
		k.Admin.Do(t, "GET", "/my/keys", nil).JSON(t, &keys)
		if len(keys) != 1 {
			t.Errorf("refused bodies created keys: %v", keys)
		}
	})

	t.Run("Admin", func(t *testing.T) {
		for _, c := range []struct{ name, path, body, msg string }{
			{"ErrOperatorNotBoolean", "/--admin/accounts", `{"login":"bob","operator":"yes"}`, "operator must be a Boolean"},
			{"ErrUnknownMember", "/--admin/accounts", `{"login":"bob","operater":true}`, "unknown member operater"},
			{"ErrLoginNotString", "/--admin/accounts", `{"login":["bob"]}`, "login must be a String"},
			{"ErrDuplicateLogin", "/--admin/accounts", `{"login":"bob","login":"eve"}`, "login is given more than once"},
			{"ErrTokenNameNotString", "/--admin/tokens", `{"name":5,"roles":["keys:read"]}`, "name must be a String"},
			{"ErrRolesNotArray", "/--admin/tokens", `{"name":"t","roles":"keys:read"}`, "roles must be an array of Strings"},
		} {
			t.Run(c.name, func(t *testing.T) {
				r := k.Admin.Do(t, "POST", c.path, c.body)
				if code, msg := r.ErrorBody(t); r.StatusCode != http.StatusConflict || code != "InvalidArgument" || !strings.Contains(msg, c.msg) {
					t.Errorf("%d %s, want 409 InvalidArgument saying %q", r.StatusCode, r.Body, c.msg)
				}
			})
		}
		if r := k.Admin.Do(t, "GET", "/--admin/accounts/bob", nil); r.StatusCode != http.StatusNotFound {
			t.Errorf("a refused body created bob: %d %s", r.StatusCode, r.Body)
		}
	})

	secret, _ := MustToken(t, k, "manager", "keys:manage")
	c := k.Bearer(secret)
	t.Run("LMJSON", func(t *testing.T) {
		for _, tc := range []struct{ name, body, msg string }{
			{"ErrDuplicateName", `{"name":"a","name":"b","generate":"ed25519"}`, "name is given more than once"},
			{"ErrInvalidUTF8Name", "{\"name\":\"a\xffb\",\"generate\":\"ed25519\"}", "name is not valid UTF-8"},
			{"ErrDescriptionNotString", `{"name":"a","description":{"x":1},"generate":"ed25519"}`, "description must be a string"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				wantLMError(t, c.Do(t, "POST", lmPrefix+"/shared", tc.body), http.StatusBadRequest, "application/json", tc.msg)
			})
		}
	})
	t.Run("LMYAML", func(t *testing.T) {
		for _, tc := range []struct{ name, body, msg string }{
			{"ErrDuplicateName", "name: a\nname: b\ngenerate: ed25519\n", "name is given more than once"},
			{"ErrBinaryTag", "name: !!binary aGk=\ngenerate: ed25519\n", `name has the YAML tag "!!binary"`},
			{"ErrPythonTag", "name: !!python/object/apply:os.system [ls]\n", "YAML tag"},
			{"ErrCustomTag", "name: a\ndescription: !foo x\ngenerate: ed25519\n", `description has the YAML tag "!foo"`},
			{"ErrMergeKey", "d: &d {generate: ed25519}\nname: a\n<<: *d\n", "merge key"},
			{"ErrNameNotString", "name: [a]\ngenerate: ed25519\n", "name must be a string"},
			{"ErrInvalidUTF8", "generate: ed25519\nname: \"a\xffb\"\n", "line 2, is not valid UTF-8"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				wantLMError(t, c.YAML(t, "POST", lmPrefix+"/shared", tc.body), http.StatusBadRequest, "application/yaml", tc.msg)
			})
		}
		var keys []infraKeyJSON
		c.Do(t, "GET", lmPrefix+"/shared", nil).Decode(t, &keys)
		if len(keys) != 0 {
			t.Errorf("refused bodies created keys: %v", keys)
		}
	})
	t.Run("LMUpdateWithTheWholeObject", func(t *testing.T) {
		// LM's CLI sends back the whole key it read: members keysd does
		// not take from a PUT are tolerated, as LM does.
		r := c.Do(t, "POST", lmPrefix+"/shared", map[string]any{"name": "whole", "generate": "ed25519"})
		if r.StatusCode != http.StatusCreated {
			t.Fatalf("create: %d %s", r.StatusCode, r.Body)
		}
		var got map[string]any
		c.Do(t, "GET", keyPath("whole"), nil).Decode(t, &got)
		got["description"] = "updated"
		if r := c.Do(t, "PUT", keyPath("whole"), got); r.StatusCode != http.StatusNoContent {
			t.Errorf("PUT of the whole object: %d %s", r.StatusCode, r.Body)
		}
	})
}

// TestSubstituteAmplification sends substitution bodies that expand
// through YAML aliases: one that would grow past the documented multiple
// is refused with 413 before keysd builds it, having made the server
// allocate little; an accepted one is answered with no more than the
// documented multiple of the request plus the key entries substituted.
func TestSubstituteAmplification(t *testing.T) {
	k := MustStartLM(t, nil)
	secret, _ := MustToken(t, k, "rm", "keys:manage", "keys:private")
	c := k.Bearer(secret)
	if r := c.Do(t, "POST", lmPrefix+"/shared", map[string]any{"name": "k1", "generate": "ed25519"}); r.StatusCode != http.StatusCreated {
		t.Fatalf("create: %d %s", r.StatusCode, r.Body)
	}

	// Five levels of ten aliases: 100,000 strings from 400 bytes.
	laughs := "properties:\n  l0: &l0 \"lol\"\n"
	for i := 1; i <= 5; i++ {
		laughs += fmt.Sprintf("  l%d: &l%d [%s]\n", i, i, strings.TrimSuffix(strings.Repeat(fmt.Sprintf("*l%d,", i-1), 10), ","))
	}
	// One 4,000-byte string used 2,000 times: 8 MB from 10 kB, in few
	// enough nodes that yaml.v3's own alias limit lets it through.
	long := "properties:\n  s: &s \"" + strings.Repeat("x", 4000) + "\"\n  l: [" + strings.TrimSuffix(strings.Repeat("*s,", 2000), ",") + "]\n"
	for _, tc := range []struct{ name, body string }{{"ErrBillionLaughs", laughs}, {"ErrLongStringAliased", long}} {
		t.Run(tc.name, func(t *testing.T) {
			var r *response
			allocated := measureAlloc(func() { r = c.YAML(t, "POST", lmPrefix+"/substitute", tc.body) })
			wantLMError(t, r, http.StatusRequestEntityTooLarge, "application/yaml", "too large once decoded")
			// The whole process (server, NATS, this client) allocated
			// meanwhile; the decode's own share is measured in http's
			// TestDecodeBodyBound.
			if limit := uint64(300*len(tc.body) + 4<<20); allocated > limit {
				t.Errorf("a %d-byte request made the process allocate %d bytes, over %d", len(tc.body), allocated, limit)
			}
			if len(r.Body) > len(tc.body) {
				t.Errorf("a %d-byte request got a %d-byte answer", len(tc.body), len(r.Body))
			}
		})
	}

	// Accepted: aliases within the multiple, and key properties, each of
	// which adds a key entry to the answer. docs/api.md allows the answer
	// 8 times the request, plus twice each substituted key's private PEM,
	// public key and name (member names, quotes, YAML's indentation of
	// the PEM).
	// Each body uses a string once more than the one before, until one
	// is refused: the last ones accepted are the largest answers.
	body := func(uses int) string {
		return "properties:\n  a: &a {type: key, value: k1}\n  b: *a\n  s: &s \"" + strings.Repeat("x", 60) + "\"\n  l: [" + strings.TrimSuffix(strings.Repeat("*s,", uses), ",") + "]\n"
	}
	for _, accept := range []string{"application/json", "application/yaml"} {
		t.Run("OK"+accept[len("application/"):], func(t *testing.T) {
			accepted := 0
			for uses := 1; ; uses++ {
				req := body(uses)
				r := c.DoWith(t, "POST", lmPrefix+"/substitute", req, http.Header{"Content-Type": {"application/yaml"}, "Accept": {accept}})
				if r.StatusCode == http.StatusRequestEntityTooLarge {
					break
				}
				if r.StatusCode != http.StatusOK {
					t.Fatalf("%d %s", r.StatusCode, r.Body)
				}
				accepted = uses
				var out struct {
					Properties map[string]any `json:"properties" yaml:"properties"`
				}
				r.Decode(t, &out)
				keys := 0
				for _, p := range []string{"a", "b"} {
					e, _ := out.Properties[p].(map[string]any)
					pem, _ := e["privateKey"].(string)
					pub, _ := e["publicKey"].(string)
					if pem == "" {
						t.Fatalf("%s not substituted: %s", p, r.Body)
					}
					keys += len(pem) + len(pub) + len("k1")
				}
				t.Logf("%d uses: request %d bytes, keys %d bytes, answer %d bytes", uses, len(req), keys, len(r.Body))
				if limit := 8*len(req) + 2*keys; len(r.Body) > limit {
					t.Errorf("%d uses: answer of %d bytes exceeds 8 × %d + 2 × %d (the keys substituted)", uses, len(r.Body), len(req), keys)
				}
			}
			if accepted < 3 {
				t.Errorf("only %d uses of an alias accepted", accepted)
			}
		})
	}
}

// TestLMErrorsDoNotEcho sends a marker in every header and query value
// that LM's errors could repeat, and checks no error body holds it.
func TestLMErrorsDoNotEcho(t *testing.T) {
	k := MustStartLM(t, nil)
	secret, _ := MustToken(t, k, "reader", "keys:private")
	c := k.Bearer(secret)
	const marker = "MARKER-3f1c"
	check := func(t *testing.T, r *response, status int) {
		t.Helper()
		if r.StatusCode != status {
			t.Errorf("%d %s, want %d", r.StatusCode, r.Body, status)
		}
		r.LMError(t)
		if strings.Contains(string(r.Body), marker) {
			t.Errorf("error echoes the request: %s", r.Body)
		}
	}
	t.Run("ContentType", func(t *testing.T) {
		check(t, c.DoWith(t, "POST", lmPrefix+"/substitute", "x", http.Header{"Content-Type": {"text/" + marker}}), http.StatusUnsupportedMediaType)
	})
	t.Run("Accept", func(t *testing.T) {
		check(t, c.DoWith(t, "POST", lmPrefix+"/substitute", "x", http.Header{"Content-Type": {"text/plain"}, "Accept": {"application/" + marker}}), http.StatusUnsupportedMediaType)
	})
	t.Run("IncludePrivateKey", func(t *testing.T) {
		check(t, c.Do(t, "GET", lmPrefix+"/shared?includePrivateKey="+marker, nil), http.StatusBadRequest)
	})
	t.Run("SignedHeaderName", func(t *testing.T) {
		// A signature listing a header the request lacks: CloudAPI names
		// it, LM does not.
		req := newRequest(t, "GET", k.URL+lmPrefix+"/shared", nil)
		req.Header.Set("Date", time.Now().UTC().Format(http.TimeFormat))
		req.Header.Set("Authorization", `Signature keyId="`+k.Admin.signer.KeyID+`",algorithm="ed25519-sha512",headers="(request-target) date x-`+strings.ToLower(marker)+`",signature="AAAA"`)
		r := send(t, req)
		if r.StatusCode != http.StatusUnauthorized || strings.Contains(strings.ToLower(string(r.Body)), strings.ToLower(marker)) {
			t.Errorf("%d %s: want 401 without the header name", r.StatusCode, r.Body)
		}
	})
}

func measureAlloc(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}
