package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/infrakeys/infrakeys/bus"
	"github.com/infrakeys/infrakeys/domain"
	"github.com/infrakeys/infrakeys/projections"
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
	// Every intake message stored, by intake id: each must end as
	// exactly one outcome event.
	stored := map[string]bool{}
	check := func(t *testing.T, o domain.IntakeOutcome, w want) {
		t.Helper()
		stored[o.IntakeID] = true
		if o.Outcome != w.outcome || o.Reason != w.reason || o.Duplicate != w.duplicate {
			t.Fatalf("outcome %+v, want %+v", o, w)
		}
		if o.EventID == "" {
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
		keyID := k.instanceKeys(t, inst)[0]["id"]
		_, ch := d.publish(t, subj, driverKey(t, map[string]any{"keyName": "k1", "privateKey": priv1}), "dup-instance")
		o := outcome(t, ch)
		check(t, o, want{outcome: domain.OutcomeCreated, duplicate: true})
		if o.KeyID != keyID || o.Name != "k1" || o.Scope != domain.ScopeInstance {
			t.Fatalf("duplicate outcome %+v, want the key %v", o, keyID)
		}
		_, ch = d.publish(t, subj, driverKey(t, map[string]any{"keyName": "from-driver", "scope": "shared", "publicKey": pubShared}), "dup-shared")
		check(t, outcome(t, ch), want{outcome: domain.OutcomeCreated, duplicate: true})
		if n := len(k.instanceKeys(t, inst)); n != 2 {
			t.Fatalf("instance has %d keys, want 2", n)
		}
		// The outcome is an event of its own: asked for by message id
		// once the message is erased, it is the same.
		for _, id := range []string{"dup-instance", "dup-shared"} {
			r := askOutcome(t, nc, map[string]any{"instanceId": inst, "msgId": id})
			if r.Error != nil || r.Outcome != domain.OutcomeCreated || !r.Duplicate || r.EventID == "" || r.IntakeID != "msg:"+id {
				t.Fatalf("outcome of %s by request: %+v", id, r)
			}
		}
	})
	t.Run("same Nats-Msg-Id twice: stored once", func(t *testing.T) {
		_, pub := genKey(t, "dedup")
		body := driverKey(t, map[string]any{"keyName": "dedup", "publicKey": pub})
		ack1, ch := d.publish(t, subj, body, "driver-msg-1")
		first := outcome(t, ch)
		check(t, first, want{outcome: domain.OutcomeCreated})
		ack2, _ := d.publish(t, subj, body, "driver-msg-1")
		if !ack2.Duplicate || ack2.Sequence != ack1.Sequence {
			t.Fatalf("second publish ack %+v, want a duplicate of %d", ack2, ack1.Sequence)
		}
		// The outcome can be asked for by message id.
		if r := askOutcome(t, nc, map[string]any{"instanceId": inst, "msgId": "driver-msg-1"}); r.Outcome != domain.OutcomeCreated || r.EventID != first.EventID {
			t.Fatalf("outcome request answered %+v, want %+v", r, first)
		}
	})
	t.Run("outcome requests", func(t *testing.T) {
		_, pub := genKey(t, "by-seq")
		ack, ch := d.publish(t, subj, driverKey(t, map[string]any{"keyName": "by-seq", "publicKey": pub}), "")
		created := outcome(t, ch)
		check(t, created, want{outcome: domain.OutcomeCreated})
		_, ch = d.publish(t, subj, []byte("garbage"), "bad-msg-1")
		rejected := outcome(t, ch)
		check(t, rejected, want{outcome: domain.OutcomeRejected, reason: domain.ReasonMalformed})
		for _, tc := range []struct {
			name string
			req  map[string]any
			want domain.IntakeOutcome
		}{
			{"by seq", map[string]any{"instanceId": inst, "seq": ack.Sequence}, created},
			{"a rejection, by msgId", map[string]any{"instanceId": inst, "msgId": "bad-msg-1"}, rejected},
			{"unknown msgId", map[string]any{"instanceId": inst, "msgId": "never-sent"}, domain.IntakeOutcome{IntakeID: "msg:never-sent", Outcome: "unknown", InstanceID: inst}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				r := askOutcome(t, nc, tc.req)
				if r.Error != nil || r.IntakeID != tc.want.IntakeID || r.Outcome != tc.want.Outcome || r.EventID != tc.want.EventID || r.Reason != tc.want.Reason {
					t.Fatalf("answer %+v, want %+v", r, tc.want)
				}
			})
		}
		t.Run("neither msgId nor seq", func(t *testing.T) {
			if r := askOutcome(t, nc, map[string]any{"instanceId": inst}); r.Error == nil || r.Error.Code != domain.EMISSING {
				t.Fatalf("answer %+v, want a missing error", r)
			}
		})
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
			return askOutcome(t, nc, map[string]any{"instanceId": inst, "msgId": "sneaky-1"}).Outcome == domain.OutcomeCreated
		})
		stored["msg:sneaky-1"] = true
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
		for id := range stored {
			if causes[id] != 1 {
				t.Errorf("intake message %s has %d outcome events, want 1", id, causes[id])
			}
		}
		for id := range causes {
			if !stored[id] {
				t.Errorf("outcome events for %s, a message the test did not send", id)
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

// askOutcome asks keysd, by request-reply, what became of an intake
// message.
func askOutcome(tb testing.TB, nc *nats.Conn, req map[string]any) bus.OutcomeReply {
	tb.Helper()
	resp, err := nc.Request(bus.OutcomeSubject, driverKey(tb, req), 5*time.Second)
	if err != nil {
		tb.Fatalf("outcome request %v: %v", req, err)
	}
	var r bus.OutcomeReply
	if err := json.Unmarshal(resp.Data, &r); err != nil {
		tb.Fatalf("outcome reply %s: %v", resp.Data, err)
	}
	return r
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

// The intake stream is a work queue, not backed up: made again (deleted,
// or the event log restored into a new cluster), its sequences start at
// 1 again. A message without Nats-Msg-Id then has the sequence of an old
// one, whose outcome is recorded; it must still be a message of its own.
func TestIntakeStreamMadeAgain(t *testing.T) {
	k := MustStartLM(t, nil)
	inst := "vm-again"
	publish := func(name string) (*jetstream.PubAck, domain.IntakeOutcome) {
		t.Helper()
		nc, _ := MustConnectRole(t, k, bus.RoleDriver)
		_, pub := genKey(t, name)
		ack, ch := newDriver(t, nc).publish(t, bus.IntakeKeySubject(inst), driverKey(t, map[string]any{"keyName": name, "publicKey": pub}), "")
		o := outcome(t, ch)
		if o.Outcome != domain.OutcomeCreated || o.Duplicate || o.Name != name {
			t.Fatalf("outcome of %s: %+v", name, o)
		}
		return ack, o
	}
	ack1, first := publish("before")

	k.Stop(t)
	c := openStore(t, k)
	if err := c.JS.DeleteStream(context.Background(), bus.IntakeStream); err != nil {
		t.Fatal(err)
	}
	c.Close()
	k.Restart(t)

	ack2, second := publish("after")
	if ack2.Sequence != ack1.Sequence {
		t.Fatalf("the new stream's first sequence is %d, want %d (the case this test is about)", ack2.Sequence, ack1.Sequence)
	}
	if second.IntakeID == first.IntakeID {
		t.Fatalf("two messages share the intake id %s", first.IntakeID)
	}
	keys := k.instanceKeys(t, inst)
	if len(keys) != 2 {
		t.Fatalf("instance keys %+v, want before and after", keys)
	}
	// Asked for by sequence, the answer is the new stream's message.
	nc, _ := MustConnectRole(t, k, bus.RoleDriver)
	if r := askOutcome(t, nc, map[string]any{"instanceId": inst, "seq": ack2.Sequence}); r.EventID != second.EventID {
		t.Fatalf("outcome of seq %d: %+v, want %+v", ack2.Sequence, r, second)
	}
}

// The outcome request answers what Keysd-Reply-To said, field for field,
// for keys of either scope, asked for by message id or by sequence alone:
// a shared key's outcome is recorded under its name, which the request
// need not carry.
func TestOutcomeRequestAnswersAsReplyTo(t *testing.T) {
	k := MustStartLM(t, nil)
	nc, _ := MustConnectRole(t, k, bus.RoleDriver)
	d := newDriver(t, nc)
	inst := "vm-ask"
	toldByID := map[string]domain.IntakeOutcome{}
	for _, tc := range []struct{ name, scope string }{{"ask-root", domain.ScopeInstance}, {"ask-pool", domain.ScopeShared}} {
		t.Run(tc.scope, func(t *testing.T) {
			_, pub := genKey(t, tc.name)
			body := driverKey(t, map[string]any{"keyName": tc.name, "scope": tc.scope, "publicKey": pub})
			msgID := "ask/" + tc.name
			_, ch := d.publish(t, bus.IntakeKeySubject(inst), body, msgID)
			told := outcome(t, ch)
			if told.Outcome != domain.OutcomeCreated || told.Name != tc.name || told.Scope != tc.scope || told.Fingerprint == "" {
				t.Fatalf("Keysd-Reply-To outcome %+v", told)
			}
			if got := askOutcome(t, nc, map[string]any{"instanceId": inst, "msgId": msgID}); got.Error != nil || got.IntakeOutcome != told {
				t.Fatalf("asked by msgId: %+v, want %+v", got, told)
			}
			toldByID[msgID] = told
			// Without Nats-Msg-Id: asked by sequence alone.
			_, pub2 := genKey(t, tc.name+"-2")
			ack, ch := d.publish(t, bus.IntakeKeySubject(inst), driverKey(t, map[string]any{"keyName": tc.name + "-2", "scope": tc.scope, "publicKey": pub2}), "")
			told = outcome(t, ch)
			if got := askOutcome(t, nc, map[string]any{"instanceId": inst, "seq": ack.Sequence}); got.Error != nil || got.IntakeOutcome != told {
				t.Fatalf("asked by seq: %+v, want %+v", got, told)
			}
		})
	}
	t.Run("after the read model is rebuilt", func(t *testing.T) {
		k.Stop(t)
		c := openStore(t, k)
		if err := c.JS.DeleteKeyValue(context.Background(), projections.InfraKeysBucket); err != nil {
			t.Fatal(err)
		}
		c.Close()
		k.Restart(t)
		nc, _ := MustConnectRole(t, k, bus.RoleDriver)
		for msgID, told := range toldByID {
			if got := askOutcome(t, nc, map[string]any{"instanceId": inst, "msgId": msgID}); got.Error != nil || got.IntakeOutcome != told {
				t.Fatalf("asked by msgId after a rebuild: %+v, want %+v", got, told)
			}
		}
	})
	nc, _ = MustConnectRole(t, k, bus.RoleDriver)
	t.Run("unknown", func(t *testing.T) {
		got := askOutcome(t, nc, map[string]any{"instanceId": inst, "msgId": "never-sent"})
		want := domain.IntakeOutcome{IntakeID: "msg:never-sent", Outcome: bus.OutcomeUnknown, InstanceID: inst}
		if got.Error != nil || got.IntakeOutcome != want {
			t.Fatalf("outcome of a message never sent: %+v, want %+v", got, want)
		}
	})
	t.Run("an error is the whole answer", func(t *testing.T) {
		resp, err := nc.Request(bus.OutcomeSubject, driverKey(t, map[string]any{"instanceId": inst}), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		var got map[string]any
		if err := json.Unmarshal(resp.Data, &got); err != nil {
			t.Fatal(err)
		}
		if _, ok := got["error"]; !ok || len(got) != 1 {
			t.Fatalf("answer to a request with neither msgId nor seq: %s, want {\"error\":…} alone", resp.Data)
		}
	})
}
