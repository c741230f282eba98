package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/infrakeys/infrakeys/bus"
	"github.com/infrakeys/infrakeys/domain"
)

// liveKey is a key as examples/livekeys prints it, and as the test builds
// it from the APIs.
type liveKey struct {
	ID                string `json:"id,omitempty"`
	Name              string `json:"name"`
	Fingerprint       string `json:"fingerprint"`
	FingerprintSHA256 string `json:"fingerprintSHA256"`
	PublicKey         string `json:"key"`
}

// MustBuildLivekeys builds the example audit consumer into a temporary
// directory.
func MustBuildLivekeys(tb testing.TB) string {
	tb.Helper()
	bin := filepath.Join(tb.TempDir(), "livekeys")
	if out, err := exec.Command("go", "build", "-o", bin, "../../examples/livekeys").CombinedOutput(); err != nil {
		tb.Fatalf("build examples/livekeys: %v\n%s", err, out)
	}
	return bin
}

// MustOK sends a signed request and requires status.
func (c *client) MustOK(tb testing.TB, status int, method, path string, body any) *response {
	tb.Helper()
	r := c.Do(tb, method, path, body)
	if r.StatusCode != status {
		tb.Fatalf("%s %s: %d %s, want %d", method, path, r.StatusCode, r.Body, status)
	}
	return r
}

// TestLivekeysAgreesWithTheAPI populates keysd through every surface that
// makes keys (CloudAPI, the LM API, drivers on the bus, an instance
// removal and its cascade), then runs the example audit consumer and
// checks it rebuilds, from the log alone, the keys the APIs show.
func TestLivekeysAgreesWithTheAPI(t *testing.T) {
	bin := MustBuildLivekeys(t)
	k := MustStartLM(t, nil)
	url := k.natsURL()
	admin := k.Admin
	ctx := context.Background()

	// Accounts: keys added and deleted; carol has none.
	for _, login := range []string{"alice", "bob"} {
		admin.MustOK(t, http.StatusCreated, "POST", "/--admin/accounts", map[string]any{"login": login, "name": login + "-first", "key": AuthorizedKey(t, MustKey(t), login)})
	}
	admin.MustOK(t, http.StatusCreated, "POST", "/--admin/accounts", map[string]any{"login": "carol"})
	for i := range 4 {
		admin.MustOK(t, http.StatusCreated, "POST", "/alice/keys", map[string]any{"name": fmt.Sprint("alice-", i), "key": AuthorizedKey(t, MustKey(t), "")})
	}
	admin.MustOK(t, http.StatusNoContent, "DELETE", "/alice/keys/alice-1", nil)
	admin.MustOK(t, http.StatusNoContent, "DELETE", "/alice/keys/alice-first", nil)
	admin.MustOK(t, http.StatusCreated, "POST", "/bob/keys", map[string]any{"name": "bob-2", "key": AuthorizedKey(t, MustKey(t), "bob@desk")})

	// Shared keys: created, updated with new halves or a new description,
	// deleted, and created again under a deleted name.
	for _, name := range []string{"web", "backup", "old"} {
		admin.MustOK(t, http.StatusCreated, "POST", lmPrefix+"/shared", map[string]any{"name": name, "description": name, "generate": "ed25519"})
	}
	_, pub := genKey(t, "db")
	admin.MustOK(t, http.StatusCreated, "POST", lmPrefix+"/shared", map[string]any{"name": "db", "publicKey": pub})
	_, pub = genKey(t, "db-new")
	admin.MustOK(t, http.StatusNoContent, "PUT", lmPrefix+"/shared/db", map[string]any{"publicKey": pub})
	admin.MustOK(t, http.StatusNoContent, "PUT", lmPrefix+"/shared/web", map[string]any{"description": "front end"})
	admin.MustOK(t, http.StatusNoContent, "PUT", lmPrefix+"/shared/backup", map[string]any{"generate": "ecdsa-p256"})
	admin.MustOK(t, http.StatusNoContent, "DELETE", lmPrefix+"/shared/old", nil)
	admin.MustOK(t, http.StatusCreated, "POST", lmPrefix+"/shared", map[string]any{"name": "old", "generate": "rsa-3072"})

	// Instance keys, from a driver on the bus: JSON and '#' forms, a key
	// for the shared pool, a rejection; each outcome comes back on an
	// inbox named in Keysd-Reply-To.
	nc, _ := MustConnectRole(t, k, bus.RoleDriver)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	outcomes, err := nc.SubscribeSync(nc.NewInbox())
	if err != nil {
		t.Fatal(err)
	}
	publish := func(subject string, body []byte) {
		t.Helper()
		m := nats.NewMsg(subject)
		m.Data = body
		m.Header.Set(bus.HeaderReplyTo, outcomes.Subject)
		if _, err := js.PublishMsg(ctx, m); err != nil {
			t.Fatalf("driver publish: %v", err)
		}
	}
	jsonKey := func(name, scope string) []byte {
		priv, pub := genKey(t, name)
		data, _ := json.Marshal(map[string]any{"keyName": name, "description": "from a driver", "publicKey": pub, "privateKey": priv, "scope": scope})
		return data
	}
	published := 0
	for _, in := range []string{"i-1", "i-2", "i-3"} {
		for _, name := range []string{"root", "deploy"} {
			publish(bus.IntakeKeySubject(in), jsonKey(name, ""))
			published++
		}
		priv, pub := genKey(t, "ops")
		publish(bus.IntakeKeySubject(in), []byte("ops#"+priv+"#"+pub))
		published++
	}
	publish(bus.IntakeKeySubject("i-1"), jsonKey("from-driver", domain.ScopeShared))
	publish(bus.IntakeKeySubject("i-1"), []byte(`{"keyName":"broken","publicKey":"ssh-ed25519 nonsense"}`))
	// The same key twice: the second is an IntakeDuplicate, an event type
	// the example does not fold and must skip.
	again := jsonKey("again", "")
	publish(bus.IntakeKeySubject("i-3"), again)
	publish(bus.IntakeKeySubject("i-3"), again)
	published += 4
	want := map[string]int{domain.OutcomeCreated: published - 1, domain.OutcomeRejected: 1}
	got := map[string]int{}
	for range published {
		m, err := outcomes.NextMsg(30 * time.Second)
		if err != nil {
			t.Fatalf("outcomes so far %v: %v", got, err)
		}
		var o domain.IntakeOutcome
		if err := json.Unmarshal(m.Data, &o); err != nil {
			t.Fatal(err)
		}
		got[o.Outcome]++
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("outcomes %v, want %v", got, want)
	}

	// The resource manager removes i-2 over HTTP; the cascade deletes its
	// keys. Settled when the API shows none.
	admin.MustOK(t, http.StatusAccepted, "DELETE", lmPrefix+"/instances/i-2", nil)
	deadline := time.Now().Add(30 * time.Second)
	for {
		var keys []liveKey
		admin.MustOK(t, http.StatusOK, "GET", lmPrefix+"/instances/i-2", nil).JSON(t, &keys)
		if len(keys) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("i-2 still has %d keys after its removal", len(keys))
		}
		time.Sleep(20 * time.Millisecond)
	}

	// Removed again, on the bus: another IntakeDuplicate.
	publish(bus.IntakeRemovedSubject("i-2"), nil)
	if m, err := outcomes.NextMsg(30 * time.Second); err != nil || !strings.Contains(string(m.Data), `"duplicate":true`) {
		t.Fatalf("second removal of i-2: %v %v", m, err)
	}

	// The APIs' view, in the example's shape: owners without keys left out.
	api := map[string]map[string][]liveKey{}
	add := func(kind, id string, keys []liveKey) {
		if len(keys) == 0 {
			return
		}
		for i := range keys {
			if kind == domain.OwnerAccount {
				keys[i].ID = "" // CloudAPI keys have no id
			}
		}
		sort.Slice(keys, func(i, j int) bool { return keys[i].Name < keys[j].Name })
		if api[kind] == nil {
			api[kind] = map[string][]liveKey{}
		}
		api[kind][id] = keys
	}
	for _, login := range []string{"admin", "alice", "bob", "carol"} {
		var keys []liveKey
		admin.MustOK(t, http.StatusOK, "GET", "/"+login+"/keys", nil).JSON(t, &keys)
		add(domain.OwnerAccount, login, keys)
	}
	var shared []struct {
		liveKey
		PublicKey string `json:"publicKey"`
	}
	admin.MustOK(t, http.StatusOK, "GET", lmPrefix+"/shared", nil).JSON(t, &shared)
	for _, s := range shared {
		s.liveKey.PublicKey = s.PublicKey
		add(domain.OwnerShared, s.Name, []liveKey{s.liveKey})
	}
	for _, in := range []string{"i-1", "i-2", "i-3"} {
		var keys []struct {
			liveKey
			PublicKey string `json:"publicKey"`
		}
		admin.MustOK(t, http.StatusOK, "GET", lmPrefix+"/instances/"+in, nil).JSON(t, &keys)
		var lk []liveKey
		for _, k := range keys {
			k.liveKey.PublicKey = k.PublicKey
			lk = append(lk, k.liveKey)
		}
		add(domain.OwnerInstance, in, lk)
	}
	if n := len(api[domain.OwnerAccount]); n != 3 {
		t.Errorf("the API shows keys for %d accounts, want 3 (carol has none)", n)
	}
	if n := len(api[domain.OwnerShared]); n != 5 {
		t.Errorf("the API shows %d shared keys, want 5", n)
	}
	if n := len(api[domain.OwnerInstance]); n != 2 || len(api[domain.OwnerInstance]["i-1"]) != 3 {
		t.Errorf("instance keys %v, want i-1 and i-3 with 3 keys each", api[domain.OwnerInstance])
	}

	cmd := exec.Command(bin, "--nats-url", url, "--nkey", k.SeedFile(bus.RoleAudit))
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("livekeys: %v\n%s", err, stderr.String())
	}
	if stderr.Len() > 0 {
		t.Errorf("livekeys wrote to stderr: %s", stderr.String())
	}
	var live map[string]map[string][]liveKey
	if err := json.Unmarshal(out, &live); err != nil {
		t.Fatalf("livekeys output %s: %v", out, err)
	}
	if !reflect.DeepEqual(live, api) {
		a, _ := json.MarshalIndent(api, "", "  ")
		t.Errorf("livekeys disagrees with the API\nlivekeys: %s\napi: %s", out, a)
	}

	t.Run("ErrNotAudit", func(t *testing.T) {
		cmd := exec.Command(bin, "--nats-url", url, "--nkey", k.SeedFile(bus.RoleDriver))
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), "Permissions Violation") {
			t.Errorf("livekeys with the driver's seed: %v %s", err, out)
		}
	})
}
