package main

import (
	"encoding/json"
	"errors"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/infrakeys/infrakeys/bus"
	"github.com/infrakeys/infrakeys/domain"
)

// MustDriverKey publishes a key as a resource driver does for instance,
// and waits for keysd to create it.
func MustDriverKey(tb testing.TB, k *keysd, instance, name, privatePEM string) {
	tb.Helper()
	nc := MustNATS(tb, k, bus.RoleDriver)
	inbox := nc.NewInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		tb.Fatal(err)
	}
	m := nats.NewMsg(bus.IntakeKeySubject(instance))
	m.Data = mustJSON(tb, map[string]any{"keyName": name, "privateKey": privatePEM})
	m.Header.Set(bus.HeaderReplyTo, inbox)
	if _, err := nc.RequestMsg(m, 10*time.Second); err != nil {
		tb.Fatalf("publish driver key: %v", err)
	}
	reply, err := sub.NextMsg(30 * time.Second)
	if err != nil {
		tb.Fatalf("no intake outcome: %v", err)
	}
	var out domain.IntakeOutcome
	if err := json.Unmarshal(reply.Data, &out); err != nil || out.Outcome != domain.OutcomeCreated {
		tb.Fatalf("intake outcome %s (%v)", reply.Data, err)
	}
}

// askSubstitute asks for a substitution on the bus, as the resource
// manager does, with token (none if empty).
func askSubstitute(tb testing.TB, nc *nats.Conn, token string, body []byte) bus.SubstituteReply {
	tb.Helper()
	m := nats.NewMsg(bus.SubstituteSubject)
	m.Data = body
	if token != "" {
		m.Header.Set("Authorization", "Bearer "+token)
	}
	var resp *nats.Msg
	var err error
	for deadline := time.Now().Add(10 * time.Second); ; {
		resp, err = nc.RequestMsg(m, 10*time.Second)
		// The responder subscribes while keysd starts up.
		if !errors.Is(err, nats.ErrNoResponders) || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		tb.Fatalf("substitute on %s: %v", bus.SubstituteSubject, err)
	}
	var out bus.SubstituteReply
	if err := json.Unmarshal(resp.Data, &out); err != nil {
		tb.Fatalf("reply %s: %v", resp.Data, err)
	}
	return out
}

// TestLMSubstitute replaces key properties over HTTP and over NATS
// request-reply, and refuses to substitute anything when a name is
// unknown.
func TestLMSubstitute(t *testing.T) {
	k := MustStartLM(t, nil)
	private, privateID := MustToken(t, k, "resource-manager", "keys:private")
	reader, _ := MustToken(t, k, "reader", "keys:read")
	manager, _ := MustToken(t, k, "manager", "keys:manage")
	revoked, revokedID := MustToken(t, k, "revoked", "keys:private")
	wantStatus(t, k.Admin.Do(t, "DELETE", "/--admin/tokens/"+revokedID, nil), http.StatusNoContent)

	db, web, shadow := MustKey(t), MustECDSA(t), MustKey(t)
	dbPEM, webPEM, shadowPEM := MustOpenSSHPEM(t, db), MustOpenSSHPEM(t, web), MustOpenSSHPEM(t, shadow)
	for name, pem := range map[string]string{"db": dbPEM, "web": webPEM, "ssh": shadowPEM} {
		wantStatus(t, k.Bearer(manager).Do(t, "POST", lmPrefix+"/shared", map[string]any{"name": name, "privateKey": pem}), http.StatusCreated)
	}
	wantStatus(t, k.Bearer(manager).Do(t, "POST", lmPrefix+"/shared", map[string]any{"name": "public-only", "publicKey": AuthorizedKey(t, MustKey(t), "")}), http.StatusCreated)
	// The instance's own "ssh" key shadows the shared one of that name.
	vmKey := MustKey(t)
	vmPEM := MustOpenSSHPEM(t, vmKey)
	MustDriverKey(t, k, "vm-7", "ssh", vmPEM)

	keyProp := func(name string) map[string]any { return map[string]any{"type": "key", "value": name} }
	substituted := func(name, pem, pub string) map[string]any {
		return map[string]any{"type": "key", "keyName": name, "privateKey": pem, "publicKey": pub, "value": name}
	}
	publicOfKey := func(name string) string {
		var got infraKeyJSON
		k.Admin.Do(t, "GET", keyPath(name), nil).JSON(t, &got)
		return got.PublicKey
	}
	untouched := map[string]any{
		"host":    "10.0.0.7",
		"port":    float64(22),
		"tags":    []any{"a", map[string]any{"type": "key", "value": "nested is not a property"}},
		"notAKey": map[string]any{"type": "string", "value": "db"},
	}
	request := map[string]any{
		"properties":        merge(untouched, map[string]any{"dbKey": keyProp("db"), "again": keyProp("db")}),
		"privateProperties": map[string]any{"webKey": keyProp("web"), "password": "s3cret"},
	}
	want := map[string]any{
		"properties":        merge(untouched, map[string]any{"dbKey": substituted("db", dbPEM, publicOfKey("db")), "again": substituted("db", dbPEM, publicOfKey("db"))}),
		"privateProperties": map[string]any{"webKey": substituted("web", webPEM, publicOfKey("web")), "password": "s3cret"},
	}
	missing := map[string]any{
		"properties":        map[string]any{"a": keyProp("nope-1"), "b": keyProp("db"), "c": "plain"},
		"privateProperties": map[string]any{"d": keyProp("nope-2"), "e": keyProp("web")},
	}

	t.Run("HTTP", func(t *testing.T) {
		c := k.Bearer(private)
		t.Run("OK", func(t *testing.T) {
			before := len(eventsOf(MustEvents(t, k), domain.TypePrivateKeyRead))
			r := c.Do(t, "POST", lmPrefix+"/substitute", request)
			wantStatus(t, r, http.StatusOK)
			var got map[string]any
			r.JSON(t, &got)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("substituted\n%s\nwant\n%s", mustJSON(t, got), mustJSON(t, want))
			}
			reads := eventsOf(MustEvents(t, k), domain.TypePrivateKeyRead)[before:]
			if len(reads) != 2 {
				t.Fatalf("%d PrivateKeyRead events, want 2 (db once, web once)", len(reads))
			}
			for _, e := range reads {
				var p domain.PrivateKeyRead
				if err := e.Event.Decode(&p); err != nil {
					t.Fatal(err)
				}
				if p.Purpose != domain.PurposeSubstitute || e.Event.Actor != "token:"+privateID+" (resource-manager)" || e.Event.RequestID != r.Header.Get("Request-Id") {
					t.Errorf("audit event %+v %+v", e.Event, p)
				}
			}
		})
		t.Run("YAML", func(t *testing.T) {
			r := c.YAML(t, "POST", lmPrefix+"/substitute", request)
			wantStatus(t, r, http.StatusOK)
			var got struct {
				Properties struct {
					DBKey struct {
						PrivateKey string `yaml:"privateKey"`
					} `yaml:"dbKey"`
				} `yaml:"properties"`
			}
			r.Decode(t, &got)
			if pem := got.Properties.DBKey.PrivateKey; pem != dbPEM {
				t.Errorf("privateKey through YAML %q, want %q", pem, dbPEM)
			}
		})
		t.Run("InstanceKeysFirst", func(t *testing.T) {
			r := c.Do(t, "POST", lmPrefix+"/substitute", map[string]any{"instanceId": "vm-7", "properties": map[string]any{"k": keyProp("ssh"), "d": keyProp("db")}})
			wantStatus(t, r, http.StatusOK)
			var got struct{ Properties map[string]map[string]any }
			r.JSON(t, &got)
			if got.Properties["k"]["privateKey"] != vmPEM || got.Properties["d"]["privateKey"] != dbPEM {
				t.Errorf("with instanceId: %s", r.Body)
			}
			r = c.Do(t, "POST", lmPrefix+"/substitute", map[string]any{"properties": map[string]any{"k": keyProp("ssh")}})
			r.JSON(t, &got)
			if got.Properties["k"]["privateKey"] != shadowPEM {
				t.Errorf("without instanceId the shared key should answer: %s", r.Body)
			}
		})
		t.Run("ErrMissingNames", func(t *testing.T) {
			before := MustLastSeq(t, k)
			r := c.Do(t, "POST", lmPrefix+"/substitute", missing)
			e := wantLMError(t, r, http.StatusNotFound, "application/json", "nope-1", "nope-2")
			for _, leaked := range []string{"db", "web", "BEGIN"} {
				if strings.Contains(e.LocalizedMessage, leaked) {
					t.Errorf("message names %q: %q", leaked, e.LocalizedMessage)
				}
			}
			if strings.Contains(string(r.Body), "PRIVATE KEY") {
				t.Errorf("a refused substitution released a key: %s", r.Body)
			}
			if after := MustLastSeq(t, k); after != before {
				t.Errorf("a refused substitution recorded %d events", after-before)
			}
		})
		t.Run("ErrNoPrivateHalf", func(t *testing.T) {
			r := c.Do(t, "POST", lmPrefix+"/substitute", map[string]any{"properties": map[string]any{"a": keyProp("public-only"), "b": keyProp("db")}})
			wantLMError(t, r, http.StatusBadRequest, "application/json", "no private half in public-only")
			r = c.Do(t, "POST", lmPrefix+"/substitute", map[string]any{"properties": map[string]any{"a": keyProp("public-only"), "b": keyProp("nope-3")}})
			wantLMError(t, r, http.StatusNotFound, "application/json", "nope-3", "public-only")
		})
		t.Run("ErrKeyPropertyWithoutName", func(t *testing.T) {
			// A key property that names no key would reach a driver
			// without its key: refused, naming every such property.
			before := MustLastSeq(t, k)
			r := c.Do(t, "POST", lmPrefix+"/substitute", map[string]any{
				"properties": map[string]any{
					"empty":   map[string]any{"type": "key", "value": ""},
					"number":  map[string]any{"type": "key", "value": 42},
					"absent":  map[string]any{"type": "key"},
					"fine":    keyProp("db"),
					"another": "plain",
				},
				"privateProperties": map[string]any{"object": map[string]any{"type": "key", "value": map[string]any{"name": "db"}}},
			})
			wantLMError(t, r, http.StatusBadRequest, "application/json", "privateProperties.object, properties.absent, properties.empty, properties.number")
			if strings.Contains(string(r.Body), "PRIVATE KEY") {
				t.Errorf("a refused substitution released a key: %s", r.Body)
			}
			// An unquoted numeric name in YAML is a number, not a name.
			r = c.YAML(t, "POST", lmPrefix+"/substitute", "properties:\n  sshKey:\n    type: key\n    value: 1234\n")
			wantLMError(t, r, http.StatusBadRequest, "application/yaml", "properties.sshKey")
			if after := MustLastSeq(t, k); after != before {
				t.Errorf("a refused substitution recorded %d events", after-before)
			}
		})
		t.Run("ErrPropertiesNotObject", func(t *testing.T) {
			wantLMError(t, c.Do(t, "POST", lmPrefix+"/substitute", map[string]any{"properties": []any{1}}), http.StatusBadRequest, "application/json", "properties must be an object")
		})
		t.Run("ErrRoles", func(t *testing.T) {
			for _, tc := range []struct {
				name   string
				c      *client
				status int
			}{
				{"Read", k.Bearer(reader), 403},
				{"Manage", k.Bearer(manager), 403},
				{"Revoked", k.Bearer(revoked), 401},
				{"None", k.Bearer(""), 401},
			} {
				t.Run(tc.name, func(t *testing.T) {
					wantLMError(t, tc.c.Do(t, "POST", lmPrefix+"/substitute", request), tc.status, "application/json")
				})
			}
		})
	})

	t.Run("NATS", func(t *testing.T) {
		nc := MustNATS(t, k, bus.RoleManager)
		t.Run("OK", func(t *testing.T) {
			out := askSubstitute(t, nc, private, mustJSON(t, request))
			if out.Error != nil {
				t.Fatalf("error %+v", out.Error)
			}
			got := map[string]any{"properties": out.Properties, "privateProperties": out.PrivateProperties}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("substituted\n%s\nwant\n%s", mustJSON(t, got), mustJSON(t, want))
			}
		})
		t.Run("InstanceKeysFirst", func(t *testing.T) {
			out := askSubstitute(t, nc, private, mustJSON(t, map[string]any{"instanceId": "vm-7", "properties": map[string]any{"k": keyProp("ssh")}}))
			if out.Error != nil || out.Properties["k"].(map[string]any)["privateKey"] != vmPEM {
				t.Errorf("reply %+v", out)
			}
		})
		t.Run("ErrMissingNames", func(t *testing.T) {
			before := MustLastSeq(t, k)
			out := askSubstitute(t, nc, private, mustJSON(t, missing))
			if out.Error == nil || out.Error.Code != domain.ENOTFOUND || !strings.Contains(out.Error.Message, "nope-1") || !strings.Contains(out.Error.Message, "nope-2") {
				t.Errorf("reply %+v", out)
			}
			if out.Properties != nil || out.PrivateProperties != nil {
				t.Errorf("a refused substitution answered properties: %+v", out)
			}
			if after := MustLastSeq(t, k); after != before {
				t.Errorf("a refused substitution recorded %d events", after-before)
			}
		})
		t.Run("ErrRoles", func(t *testing.T) {
			for _, tc := range []struct {
				name, token, code string
			}{
				{"None", "", domain.EUNAUTHENTICATED},
				{"Unknown", "ikt_01ARZ3NDEKTSV4RRFFQ69G5FAV_c2VjcmV0", domain.EUNAUTHENTICATED},
				{"Revoked", revoked, domain.EUNAUTHENTICATED},
				{"Read", reader, domain.EFORBIDDEN},
				{"Manage", manager, domain.EFORBIDDEN},
			} {
				t.Run(tc.name, func(t *testing.T) {
					out := askSubstitute(t, nc, tc.token, mustJSON(t, request))
					if out.Error == nil || out.Error.Code != tc.code || out.Properties != nil {
						t.Errorf("reply %+v, want error %s", out, tc.code)
					}
				})
			}
		})
		t.Run("ErrMalformed", func(t *testing.T) {
			if out := askSubstitute(t, nc, private, []byte("{not json")); out.Error == nil || out.Error.Code != domain.EMALFORMED {
				t.Errorf("reply %+v", out)
			}
		})
		t.Run("ErrDriversMayNotAsk", func(t *testing.T) {
			drv := MustNATS(t, k, bus.RoleDriver)
			m := nats.NewMsg(bus.SubstituteSubject)
			m.Data = mustJSON(t, request)
			m.Header.Set("Authorization", "Bearer "+private)
			if resp, err := drv.RequestMsg(m, 2*time.Second); err == nil {
				t.Errorf("a driver got a substitution: %s", resp.Data)
			}
		})
	})
}

// TestLMInstanceKeys lists a driver's keys for its instance, and removes
// the instance through the LM API.
func TestLMInstanceKeys(t *testing.T) {
	k := MustStartLM(t, nil)
	manager, _ := MustToken(t, k, "manager", "keys:manage")
	reader, _ := MustToken(t, k, "reader", "keys:read")
	keyPEM := MustOpenSSHPEM(t, MustKey(t))
	MustDriverKey(t, k, "vm-9", "b-key", keyPEM)
	MustDriverKey(t, k, "vm-9", "a-key", MustOpenSSHPEM(t, MustECDSA(t)))
	list := func(t *testing.T, c *client, query string) []infraKeyJSON {
		t.Helper()
		r := c.YAML(t, "GET", lmPrefix+"/instances/vm-9"+query, nil)
		wantStatus(t, r, http.StatusOK)
		var keys []infraKeyJSON
		r.Decode(t, &keys)
		return keys
	}
	t.Run("List", func(t *testing.T) {
		keys := list(t, k.Bearer(reader), "")
		if len(keys) != 2 || keys[0].Name != "a-key" || keys[1].Name != "b-key" || keys[1].Scope != "instance" || keys[1].InstanceID != "vm-9" || keys[1].PrivateKey != "" {
			t.Errorf("instance keys %+v", keys)
		}
		if keys := list(t, k.Admin, "?includePrivateKey=true"); len(keys) != 2 || keys[1].PrivateKey != keyPEM {
			t.Errorf("with includePrivateKey: %+v", keys)
		}
	})
	t.Run("Remove", func(t *testing.T) {
		wantLMError(t, k.Bearer(reader).Do(t, "DELETE", lmPrefix+"/instances/vm-9", nil), http.StatusForbidden, "application/json", "keys:manage")
		var first, again struct {
			InstanceID string `json:"instanceId"`
			Removed    bool   `json:"removed"`
			EventID    string `json:"eventId"`
		}
		r := k.Bearer(manager).Do(t, "DELETE", lmPrefix+"/instances/vm-9", nil)
		wantStatus(t, r, http.StatusAccepted)
		r.JSON(t, &first)
		r = k.Bearer(manager).Do(t, "DELETE", lmPrefix+"/instances/vm-9", nil)
		wantStatus(t, r, http.StatusAccepted)
		r.JSON(t, &again)
		if first.InstanceID != "vm-9" || !first.Removed || first.EventID == "" || again != first {
			t.Errorf("removed %+v, then %+v", first, again)
		}
		for deadline := time.Now().Add(10 * time.Second); len(list(t, k.Admin, "")) > 0; {
			if time.Now().After(deadline) {
				t.Fatalf("the removed instance still has keys")
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
}

// merge returns the union of maps, later ones winning.
func merge(ms ...map[string]any) map[string]any {
	out := map[string]any{}
	for _, m := range ms {
		for k, v := range m {
			out[k] = v
		}
	}
	return out
}
