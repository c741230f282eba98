package main

import (
	"context"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/infrakeys/infrakeys/bus"
	"github.com/infrakeys/infrakeys/domain"
)

// Every outcome of driver intake, over a real NATS connection with the
// driver's credentials.
func TestDriverIntake(t *testing.T) {
	k := MustStartLM(t, nil)
	nc, _ := MustConnectRole(t, k, bus.RoleDriver)
	d := newDriver(t, nc)
	inst := "vm-0001"
	subj := bus.IntakeKeySubject(inst)

	priv1, pub1 := genKey(t, "k1")
	priv2, pub2 := genKey(t, "k2")
	privShared, pubShared := genKey(t, "shared")
	_, pubOther := genKey(t, "other")
	var privates []string

	type want struct {
		outcome, reason string
		duplicate       bool
	}
	check := func(t *testing.T, o domain.IntakeOutcome, w want) {
		t.Helper()
		if o.Outcome != w.outcome || o.Reason != w.reason || o.Duplicate != w.duplicate {
			t.Fatalf("outcome %+v, want %+v", o, w)
		}
		if o.EventID == "" && !o.Duplicate {
			t.Fatalf("outcome %+v names no event", o)
		}
		if strings.Contains(o.Message, "PRIVATE KEY") {
			t.Fatalf("outcome message carries key material: %q", o.Message)
		}
	}

	t.Run("JSON, private half only: public half derived", func(t *testing.T) {
		_, ch := d.publish(t, subj, driverKey(t, map[string]any{"keyName": "k1", "description": "from the driver", "privateKey": priv1}), "")
		o := outcome(t, ch)
		check(t, o, want{outcome: domain.OutcomeCreated})
		privates = append(privates, priv1)
		keys := k.instanceKeys(t, inst)
		if len(keys) != 1 || keys[0]["name"] != "k1" || keys[0]["publicKey"] != strings.TrimSuffix(pub1, " k1") && !strings.HasPrefix(keys[0]["publicKey"].(string), strings.TrimSuffix(pub1, " k1")) {
			t.Fatalf("instance keys %+v", keys)
		}
		if _, ok := keys[0]["privateKey"]; ok {
			t.Fatal("the private half is listed without includePrivateKey")
		}
	})
	t.Run("LM string form", func(t *testing.T) {
		_, ch := d.publish(t, subj, []byte("k2#"+priv2+"#"+pub2), "")
		check(t, outcome(t, ch), want{outcome: domain.OutcomeCreated})
		privates = append(privates, priv2)
		r := k.Admin.Do(t, "GET", lmPrefix+"/instances/"+inst+"?includePrivateKey=true", nil)
		if r.StatusCode != 200 || !strings.Contains(string(r.Body), "k2") {
			t.Fatalf("instance keys: %d %s", r.StatusCode, r.Body)
		}
		var keys []map[string]any
		r.JSON(t, &keys)
		found := false
		for _, key := range keys {
			if key["name"] == "k2" {
				found = key["privateKey"] == priv2
			}
		}
		if !found {
			t.Fatalf("k2's private half does not come back byte for byte: %s", r.Body)
		}
	})
	t.Run("shared scope", func(t *testing.T) {
		_, ch := d.publish(t, subj, driverKey(t, map[string]any{"keyName": "from-driver", "scope": "shared", "privateKey": privShared, "publicKey": pubShared}), "")
		o := outcome(t, ch)
		check(t, o, want{outcome: domain.OutcomeCreated})
		if o.Scope != domain.ScopeShared {
			t.Fatalf("scope %q", o.Scope)
		}
		privates = append(privates, privShared)
		if r := k.Admin.Do(t, "GET", lmPrefix+"/shared/from-driver", nil); r.StatusCode != 200 {
			t.Fatalf("shared key: %d %s", r.StatusCode, r.Body)
		}
	})
	t.Run("same instance, name and key again: nothing twice", func(t *testing.T) {
		_, ch := d.publish(t, subj, driverKey(t, map[string]any{"keyName": "k1", "privateKey": priv1}), "")
		check(t, outcome(t, ch), want{outcome: domain.OutcomeCreated, duplicate: true})
		_, ch = d.publish(t, subj, driverKey(t, map[string]any{"keyName": "from-driver", "scope": "shared", "publicKey": pubShared}), "")
		check(t, outcome(t, ch), want{outcome: domain.OutcomeCreated, duplicate: true})
		if n := len(k.instanceKeys(t, inst)); n != 2 {
			t.Fatalf("instance has %d keys, want 2", n)
		}
	})
	t.Run("same Nats-Msg-Id twice: stored once", func(t *testing.T) {
		_, pub := genKey(t, "dedup")
		body := driverKey(t, map[string]any{"keyName": "dedup", "publicKey": pub})
		ack1, ch := d.publish(t, subj, body, "driver-msg-1")
		check(t, outcome(t, ch), want{outcome: domain.OutcomeCreated})
		ack2, _ := d.publish(t, subj, body, "driver-msg-1")
		if !ack2.Duplicate || ack2.Sequence != ack1.Sequence {
			t.Fatalf("second publish ack %+v, want a duplicate of %d", ack2, ack1.Sequence)
		}
		// The outcome can be asked for by message id.
		resp, err := nc.Request(bus.OutcomeSubject, driverKey(t, map[string]any{"instanceId": inst, "msgId": "driver-msg-1"}), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(resp.Data), `"outcome":"created"`) {
			t.Fatalf("outcome request answered %s", resp.Data)
		}
	})
	rejections := []struct {
		name    string
		subject string
		body    []byte
		reason  string
		message string
	}{
		{"not JSON nor the string form", subj, []byte("garbage"), domain.ReasonMalformed, "neither"},
		{"unknown JSON field", subj, []byte(`{"keyName":"x","publicKey":"` + pub1 + `","colour":"red"}`), domain.ReasonMalformed, "colour"},
		{"invalid public key", subj, driverKey(t, map[string]any{"keyName": "bad", "publicKey": "ssh-ed25519 AAAAnotakey"}), domain.ReasonInvalidKey, "publicKey is invalid"},
		{"no half at all", subj, driverKey(t, map[string]any{"keyName": "empty"}), domain.ReasonInvalidKey, "required"},
		{"halves that do not match", subj, driverKey(t, map[string]any{"keyName": "mismatch", "privateKey": priv1, "publicKey": pubOther}), domain.ReasonMismatch, "do not match"},
		{"duplicate name, another key", subj, driverKey(t, map[string]any{"keyName": "k1", "publicKey": pubOther}), domain.ReasonDuplicateName, "already has another key named k1"},
		{"duplicate shared name, another key", subj, driverKey(t, map[string]any{"keyName": "from-driver", "scope": "shared", "publicKey": pubOther}), domain.ReasonDuplicateName, "shared pool"},
		{"invalid instance id", bus.IntakeKeysPrefix + ".bad=ZZtoken", driverKey(t, map[string]any{"keyName": "x", "publicKey": pubOther}), domain.ReasonInvalidInstance, ""},
		{"scope neither instance nor shared", subj, driverKey(t, map[string]any{"keyName": "x", "publicKey": pubOther, "scope": "global"}), domain.ReasonInvalidKey, "scope"},
	}
	for _, tc := range rejections {
		t.Run("rejected: "+tc.name, func(t *testing.T) {
			_, ch := d.publish(t, tc.subject, tc.body, "")
			o := outcome(t, ch)
			check(t, o, want{outcome: domain.OutcomeRejected, reason: tc.reason})
			if !strings.Contains(o.Message, tc.message) {
				t.Fatalf("message %q does not say %q", o.Message, tc.message)
			}
		})
	}

	t.Run("a reply subject that is not an inbox is not answered", func(t *testing.T) {
		audit, _ := MustConnectRole(t, k, bus.RoleAudit)
		before := len(events(t, audit, instanceSubject(inst)))
		_, pub := genKey(t, "")
		msg := nats.NewMsg(subj)
		msg.Data = driverKey(t, map[string]any{"keyName": "sneaky", "publicKey": pub})
		msg.Header.Set(bus.HeaderReplyTo, instanceSubject(inst)) // the event log itself
		msg.Header.Set(jetstream.MsgIDHeader, "sneaky-1")
		if _, err := d.js.PublishMsg(context.Background(), msg); err != nil {
			t.Fatal(err)
		}
		eventually(t, 10*time.Second, "the key processed", func() bool {
			resp, err := nc.Request(bus.OutcomeSubject, driverKey(t, map[string]any{"instanceId": inst, "msgId": "sneaky-1"}), 5*time.Second)
			return err == nil && strings.Contains(string(resp.Data), `"outcome":"created"`)
		})
		after := events(t, audit, instanceSubject(inst))
		if len(after) != before+1 {
			t.Fatalf("the instance's subject gained %d messages, want 1 (the KeyCreated)", len(after)-before)
		}
		for _, r := range after {
			if r.Event.Type == "" || r.Event.ID == "" {
				t.Fatalf("a message that is no event on the event log: %+v", r)
			}
		}
	})
	t.Run("each message: exactly one outcome event", func(t *testing.T) {
		audit, _ := MustConnectRole(t, k, bus.RoleAudit)
		causes := map[string]int{}
		for _, r := range events(t, audit) {
			if id, ok := strings.CutPrefix(r.Event.CausationID, domain.IntakeCausePrefix); ok {
				causes[id]++
			}
		}
		// 4 created + 1 dedup created + 9 rejected; duplicates record nothing.
		if len(causes) != 14 {
			t.Errorf("%d intake messages have outcome events, want 14: %v", len(causes), causes)
		}
		for id, n := range causes {
			if n != 1 {
				t.Errorf("intake message %s has %d outcome events", id, n)
			}
		}
	})

	t.Run("the intake stream keeps no private half", func(t *testing.T) {
		k.Stop(t)
		assertNotInDir(t, k.DataDir, privates)
		logs := filepath.Join(t.TempDir(), "keysd.log")
		if err := os.WriteFile(logs, []byte(k.stderr.String()), 0o600); err != nil {
			t.Fatal(err)
		}
		assertNotInDir(t, filepath.Dir(logs), privates)
		// Open the stopped service's store: the intake stream is empty.
		c := openStore(t, k)
		s, err := c.JS.Stream(context.Background(), bus.IntakeStream)
		if err != nil {
			t.Fatal(err)
		}
		info, err := s.Info(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if info.State.Msgs != 0 {
			t.Fatalf("intake stream holds %d messages after processing", info.State.Msgs)
		}
	})
}

// openStore opens the JetStream store of a stopped keysd with an embedded
// server of its own, with full access.
func openStore(tb testing.TB, k *keysd) *bus.Conn {
	tb.Helper()
	c, err := bus.Connect(context.Background(), bus.Config{StoreDir: filepath.Join(k.DataDir, "jetstream")})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(c.Close)
	return c
}

// assertNotInDir fails if any body line of the PEM private keys appears
// anywhere under dir.
func assertNotInDir(tb testing.TB, dir string, privates []string) {
	tb.Helper()
	var needles []string
	for _, p := range privates {
		for _, line := range strings.Split(p, "\n") {
			if len(line) >= 40 && !strings.HasPrefix(line, "-----") {
				needles = append(needles, line)
			}
		}
	}
	if len(needles) == 0 {
		tb.Fatal("no needles to look for")
	}
	files := 0
	err := filepath.Walk(dir, func(path string, fi os.FileInfo, err error) error {
		if err != nil || fi.IsDir() {
			return err
		}
		files++
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, n := range needles {
			if strings.Contains(string(data), n) {
				tb.Errorf("%s holds private key material", path)
				return nil
			}
			raw, _ := base64.StdEncoding.DecodeString(n)
			if len(raw) > 16 && strings.Contains(string(data), string(raw)) {
				tb.Errorf("%s holds decoded private key material", path)
				return nil
			}
		}
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	if files == 0 {
		tb.Fatalf("no files under %s", dir)
	}
}
