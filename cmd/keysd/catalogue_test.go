package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/crypto/ssh"

	"github.com/infrakeys/infrakeys/bus"
	"github.com/infrakeys/infrakeys/domain"
)

// documentedTypes are the event types keysd writes, as domain's catalogue
// declares them: docs/events.md must show each with an example, and the
// exercise below must write each.
func documentedTypes() []string {
	var types []string
	for _, et := range domain.EventTypes() {
		types = append(types, et.Name)
	}
	return types
}

// MustExerciseEveryType drives keysd through every kind of change, and
// returns the log as an audit consumer replays it.
func MustExerciseEveryType(t *testing.T) []bus.Recorded {
	t.Helper()
	k := MustStartLM(t, nil)
	admin := k.Admin
	ctx := context.Background()

	// Accounts and their keys, a policy, an operator granted at start-up.
	opsKey := MustKey(t)
	admin.MustOK(t, http.StatusCreated, "POST", "/--admin/accounts", map[string]any{"login": "alice", "name": "laptop", "key": AuthorizedKey(t, MustKey(t), "alice@laptop")})
	admin.MustOK(t, http.StatusCreated, "POST", "/--admin/accounts", map[string]any{"login": "ops", "name": "ops", "key": AuthorizedKey(t, opsKey, "ops")})
	admin.MustOK(t, http.StatusCreated, "POST", "/alice/keys", map[string]any{"name": "desk", "key": AuthorizedKey(t, MustKey(t), "alice@desk")})
	admin.MustOK(t, http.StatusNoContent, "DELETE", "/alice/keys/desk", nil)
	// A key that expires in a few seconds: its KeyExpired is awaited
	// before the log is read.
	expires := time.Now().Add(4 * time.Second).UTC().Format(time.RFC3339)
	admin.MustOK(t, http.StatusCreated, "POST", "/alice/keys", map[string]any{"name": "contractor", "key": AuthorizedKey(t, MustKey(t), "contractor"), "expires": expires})
	admin.MustOK(t, http.StatusOK, "PUT", "/--admin/accounts/alice/policy", map[string]any{"requireAttestedKeys": true})

	// CA keys: created, rotated, retired; a user certificate signed and
	// revoked.
	var oldCA struct{ ID string }
	admin.MustOK(t, http.StatusCreated, "POST", "/--admin/cas/user", map[string]any{}).JSON(t, &oldCA)
	admin.MustOK(t, http.StatusCreated, "POST", "/--admin/cas/user", map[string]any{"keyType": "ecdsa-p256"})
	admin.MustOK(t, http.StatusOK, "DELETE", "/--admin/cas/user/keys/"+oldCA.ID, nil)
	admin.MustOK(t, http.StatusCreated, "POST", "/--admin/cas/host", map[string]any{})
	var cert struct{ Serial uint64 }
	admin.MustOK(t, http.StatusCreated, "POST", "/alice/keys/laptop/certificates", map[string]any{"validity": "30m", "forceCommand": "/usr/bin/rsync --server", "extensions": []string{"permit-pty"}}).JSON(t, &cert)
	admin.MustOK(t, http.StatusNoContent, "DELETE", fmt.Sprintf("/alice/certificates/%d", cert.Serial), nil)

	// Tokens.
	var tok struct{ ID string }
	admin.MustOK(t, http.StatusCreated, "POST", "/--admin/tokens", map[string]any{"name": "ci", "roles": []string{"keys:read"}}).JSON(t, &tok)
	admin.MustOK(t, http.StatusNoContent, "DELETE", "/--admin/tokens/"+tok.ID, nil)

	// Shared keys: created, updated, read, deleted.
	admin.MustOK(t, http.StatusCreated, "POST", lmPrefix+"/shared", map[string]any{"name": "web", "description": "front end", "generate": "ed25519"})
	admin.MustOK(t, http.StatusNoContent, "PUT", lmPrefix+"/shared/web", map[string]any{"description": "web front end"})
	admin.MustOK(t, http.StatusOK, "GET", lmPrefix+"/shared/web?includePrivateKey=true", nil)
	admin.MustOK(t, http.StatusNoContent, "DELETE", lmPrefix+"/shared/web", nil)

	// Driver keys, a rejection, an instance removed on the bus and one over
	// HTTP, with their cascades.
	driver, _ := MustConnectRole(t, k, bus.RoleDriver)
	js, err := jetstream.New(driver)
	if err != nil {
		t.Fatal(err)
	}
	outcomes, err := driver.SubscribeSync(driver.NewInbox())
	if err != nil {
		t.Fatal(err)
	}
	publish := func(subject string, body []byte) {
		t.Helper()
		m := nats.NewMsg(subject)
		m.Data = body
		m.Header.Set(bus.HeaderReplyTo, outcomes.Subject)
		if _, err := js.PublishMsg(ctx, m); err != nil {
			t.Fatal(err)
		}
		if _, err := outcomes.NextMsg(30 * time.Second); err != nil {
			t.Fatalf("outcome of %s: %v", subject, err)
		}
	}
	var root []byte
	for _, in := range []string{"i-7", "i-8"} {
		priv, pub := genKey(t, "root@"+in)
		root, _ = json.Marshal(map[string]any{"keyName": "root", "description": "generated at provisioning", "publicKey": pub, "privateKey": priv})
		publish(bus.IntakeKeySubject(in), root)
	}
	publish(bus.IntakeKeySubject("i-8"), root) // the same key again: a duplicate
	publish(bus.IntakeKeySubject("i-7"), []byte(`{"keyName":"broken","publicKey":"ssh-ed25519 AAAA"}`))
	publish(bus.IntakeKeySubject("a/b"), []byte(`{"keyName":"root"}`)) // no valid instance id
	// A host certificate for an instance's key.
	admin.MustOK(t, http.StatusCreated, "POST", lmPrefix+"/instances/i-8/keys/root/certificate", map[string]any{"principals": []string{"i-8.example.com"}})
	publish(bus.IntakeRemovedSubject("i-7"), nil)
	publish(bus.IntakeRemovedSubject("i-7"), nil) // removed again: a duplicate
	admin.MustOK(t, http.StatusAccepted, "DELETE", lmPrefix+"/instances/i-8", nil)
	for _, in := range []string{"i-7", "i-8"} {
		deadline := time.Now().Add(30 * time.Second)
		for {
			var keys []liveKey
			admin.MustOK(t, http.StatusOK, "GET", lmPrefix+"/instances/"+in, nil).JSON(t, &keys)
			if len(keys) == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s keeps its keys", in)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	deadline := time.Now().Add(30 * time.Second)
	for {
		var key struct{ Expired bool }
		admin.MustOK(t, http.StatusOK, "GET", "/alice/keys/contractor", nil).JSON(t, &key)
		if key.Expired && len(eventsOf(MustEvents(t, k), domain.TypeKeyExpired)) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no KeyExpired for alice's key contractor")
		}
		time.Sleep(50 * time.Millisecond)
	}

	// ops becomes an operator: keysd starts with it as the bootstrap account.
	pubFile := filepath.Join(t.TempDir(), "ops.pub")
	if err := os.WriteFile(pubFile, ssh.MarshalAuthorizedKey(MustSSHPublic(t, opsKey)), 0o600); err != nil {
		t.Fatal(err)
	}
	k.Env["KEYSD_BOOTSTRAP_ACCOUNT"], k.Env["KEYSD_BOOTSTRAP_KEY"] = "ops", pubFile
	k.Restart(t)

	nc, _ := MustConnectRole(t, k, bus.RoleAudit)
	l, err := bus.AttachEventLog(ctx, nc)
	if err != nil {
		t.Fatal(err)
	}
	var log []bus.Recorded
	if _, err := l.Replay(ctx, bus.ReplayOptions{}, func(r bus.Recorded) error {
		log = append(log, r)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return log
}

// docExample is an event as docs/events.md shows it.
type docExample struct {
	line  int
	event map[string]any
}

// docExamples reads every JSON block of docs/events.md that is a whole
// event (it has a type and a version).
func docExamples(t *testing.T) []docExample {
	t.Helper()
	f, err := os.Open("../../docs/events.md")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var (
		out   []docExample
		block *strings.Builder
		start int
	)
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		switch {
		case block == nil && line == "```json":
			block, start = &strings.Builder{}, n
		case block != nil && line == "```":
			var e map[string]any
			if json.Unmarshal([]byte(block.String()), &e) == nil && e["type"] != nil && e["version"] != nil {
				out = append(out, docExample{line: start, event: e})
			}
			block = nil
		case block != nil:
			block.WriteString(line + "\n")
		}
	}
	return out
}

// shape is the sorted field names of an object, and of its objects, one
// level down: "data.name".
func shape(v map[string]any) string {
	var fields []string
	for k, x := range v {
		fields = append(fields, k)
		if m, ok := x.(map[string]any); ok && k == "data" {
			for kk := range m {
				fields = append(fields, k+"."+kk)
			}
		}
	}
	sort.Strings(fields)
	return strings.Join(fields, " ")
}

// TestEventCatalogue checks docs/events.md against real events: every type
// keysd writes has an example there, and each example has exactly the
// fields of a real event of its type, version and owner kind.
func TestEventCatalogue(t *testing.T) {
	log := MustExerciseEveryType(t)
	real := map[string][]string{} // type/version/owner kind -> shapes seen
	seen := map[string]bool{}
	for _, r := range log {
		var e map[string]any
		data, _ := json.Marshal(r.Event)
		if err := json.Unmarshal(data, &e); err != nil {
			t.Fatal(err)
		}
		key := fmt.Sprintf("%s/%d/%s", r.Event.Type, r.Event.Version, r.Event.Owner.Kind)
		real[key] = append(real[key], shape(e))
		seen[r.Event.Type] = true
	}
	for _, typ := range documentedTypes() {
		if !seen[typ] {
			t.Errorf("the exercise wrote no %s", typ)
		}
	}
	documented := map[string]bool{}
	for _, ex := range docExamples(t) {
		typ, _ := ex.event["type"].(string)
		version, _ := ex.event["version"].(float64)
		owner, _ := ex.event["owner"].(map[string]any)
		kind, _ := owner["kind"].(string)
		documented[typ] = true
		key := fmt.Sprintf("%s/%v/%s", typ, version, kind)
		if shapes := real[key]; !slices.Contains(shapes, shape(ex.event)) {
			t.Errorf("docs/events.md:%d: %s v%v of a %s has fields\n  %s\nreal ones have\n  %s", ex.line, typ, version, kind, shape(ex.event), strings.Join(shapes, "\n  "))
		}
	}
	for _, typ := range documentedTypes() {
		if !documented[typ] {
			t.Errorf("docs/events.md has no example of %s", typ)
		}
	}
	// A type keysd writes but nobody declared in the catalogue must not
	// slip through, nor one Event.Decode does not know the version of.
	for typ := range seen {
		if !documented[typ] {
			t.Errorf("keysd wrote %s, which docs/events.md has no example of", typ)
		}
		if _, ok := domain.SchemaVersions[typ]; !ok {
			t.Errorf("keysd wrote %s, which domain.SchemaVersions does not list", typ)
		}
	}
	for _, r := range log {
		if newest := domain.SchemaVersions[r.Event.Type]; r.Event.Version > newest {
			t.Errorf("keysd wrote %s v%d, newer than domain.SchemaVersions says it reads (%d)", r.Event.Type, r.Event.Version, newest)
		}
	}
}
