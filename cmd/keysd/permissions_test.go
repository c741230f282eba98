package main

import (
	"context"
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
)

// The embedded server's listener: who may do what on the bus.
func TestNATSPermissions(t *testing.T) {
	k := MustStartLM(t, nil)
	ctx := context.Background()

	t.Run("seeds: mode 0600, in a directory of mode 0700", func(t *testing.T) {
		dir := filepath.Join(k.DataDir, "nats")
		fi, err := os.Stat(dir)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != 0o700 {
			t.Errorf("%s has mode %o, want 700", dir, got)
		}
		seeds, err := filepath.Glob(filepath.Join(dir, "*.nk"))
		if err != nil {
			t.Fatal(err)
		}
		if len(seeds) != len(bus.Roles) {
			t.Fatalf("seed files %v, want one for each of %v", seeds, bus.Roles)
		}
		for _, f := range seeds {
			fi, err := os.Stat(f)
			if err != nil {
				t.Fatal(err)
			}
			if got := fi.Mode().Perm(); got != 0o600 {
				t.Errorf("%s has mode %o, want 600", f, got)
			}
		}
	})

	t.Run("no credentials, wrong credentials: refused", func(t *testing.T) {
		if nc, err := nats.Connect(k.natsURL()); err == nil {
			nc.Close()
			t.Fatal("an anonymous connection was accepted")
		}
		// The driver's seed with the audit role's name: the server knows
		// the key, so this is the driver; a made-up seed is refused.
		if nc, err := bus.ConnectRole(k.natsURL(), bus.RoleDriver, "/nonexistent.nk"); err == nil {
			nc.Close()
			t.Fatal("connected without a seed")
		}
	})

	t.Run("driver", func(t *testing.T) {
		nc, v := MustConnectRole(t, k, bus.RoleDriver)
		d := newDriver(t, nc)
		_, pub := genKey(t, "")
		_, ch := d.publish(t, bus.IntakeKeySubject("vm-perm"), driverKey(t, map[string]any{"keyName": "ok", "publicKey": pub}), "")
		if o := outcome(t, ch); o.Outcome != domain.OutcomeCreated {
			t.Fatalf("driver publish: %+v", o)
		}
		// Writing events directly.
		forged := domain.NewEvent(domain.InstanceOwner("vm-perm"), domain.KeyDeleted{Name: "ok"}, domain.Meta{Actor: "driver"})
		data, _ := json.Marshal(forged)
		if err := nc.Publish(bus.OwnerSubject(forged.Owner), data); err != nil {
			t.Fatal(err)
		}
		v.MustBeRefused(t, "Publish", bus.OwnerSubject(forged.Owner))
		// Reading events, the intake stream, other inboxes.
		if _, err := nc.Subscribe("keysd.events.>", func(*nats.Msg) {}); err != nil {
			t.Fatal(err)
		}
		v.MustBeRefused(t, "Subscription", "keysd.events.>")
		if _, err := nc.Subscribe("_INBOX.>", func(*nats.Msg) {}); err != nil {
			t.Fatal(err)
		}
		v.MustBeRefused(t, "Subscription", "_INBOX.>")
		js, _ := jetstream.New(nc)
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		if _, err := js.Stream(cctx, bus.IntakeStream); err == nil {
			t.Fatal("driver read the intake stream's info")
		}
		v.MustBeRefused(t, "Publish", "$JS.API.STREAM.INFO."+bus.IntakeStream)
		// Substitution is the resource manager's.
		if _, err := nc.Request(bus.SubstituteSubject, []byte(`{}`), time.Second); err == nil {
			t.Fatal("driver got a substitution answer")
		}
		v.MustBeRefused(t, "Publish", bus.SubstituteSubject)
		if keys := k.instanceKeys(t, "vm-perm"); len(keys) != 1 {
			t.Fatalf("the forged event had an effect: %+v", keys)
		}
	})

	t.Run("manager", func(t *testing.T) {
		nc, v := MustConnectRole(t, k, bus.RoleManager)
		d := newDriver(t, nc)
		_, ch := d.publish(t, bus.IntakeRemovedSubject("vm-perm"), nil, "")
		if o := outcome(t, ch); o.Outcome != domain.OutcomeRemoved {
			t.Fatalf("manager removal: %+v", o)
		}
		resp, err := nc.Request(bus.SubstituteSubject, []byte(`{"properties":{}}`), 5*time.Second)
		if err != nil {
			t.Fatalf("manager substitution request: %v", err)
		}
		if !strings.Contains(string(resp.Data), domain.EUNAUTHENTICATED) {
			t.Fatalf("substitution without a token answered %s", resp.Data)
		}
		// Publishing keys is the drivers'.
		if err := nc.Publish(bus.IntakeKeySubject("vm-perm"), []byte("x#y#z")); err != nil {
			t.Fatal(err)
		}
		v.MustBeRefused(t, "Publish", bus.IntakeKeySubject("vm-perm"))
		// Writing events directly.
		forged := domain.NewEvent(domain.InstanceOwner("vm-kept"), domain.InstanceRemoved{InstanceID: "vm-kept"}, domain.Meta{Actor: "manager"})
		data, _ := json.Marshal(forged)
		if err := nc.Publish(bus.OwnerSubject(forged.Owner), data); err != nil {
			t.Fatal(err)
		}
		v.MustBeRefused(t, "Publish", bus.OwnerSubject(forged.Owner))
		// Reading events, the intake stream, other inboxes.
		for _, subject := range []string{"keysd.events.>", "_INBOX.>"} {
			if _, err := nc.Subscribe(subject, func(*nats.Msg) {}); err != nil {
				t.Fatal(err)
			}
			v.MustBeRefused(t, "Subscription", subject)
		}
		js, _ := jetstream.New(nc)
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		if _, err := js.Stream(cctx, bus.IntakeStream); err == nil {
			t.Fatal("manager read the intake stream's info")
		}
		v.MustBeRefused(t, "Publish", "$JS.API.STREAM.INFO."+bus.IntakeStream)
		audit, _ := MustConnectRole(t, k, bus.RoleAudit)
		if evs := events(t, audit, instanceSubject("vm-kept")); len(evs) != 0 {
			t.Fatalf("the forged event is in the log: %+v", evs)
		}
	})

	t.Run("audit", func(t *testing.T) {
		nc, v := MustConnectRole(t, k, bus.RoleAudit)
		if evs := events(t, nc); len(evs) == 0 {
			t.Fatal("audit replayed no event")
		}
		if err := nc.Publish(bus.IntakeRemovedSubject("vm-x"), nil); err != nil {
			t.Fatal(err)
		}
		v.MustBeRefused(t, "Publish", bus.IntakeRemovedSubject("vm-x"))
	})
}

// A request whose reply subject is not an inbox is not answered: keysd
// answers with its own permissions, and the event log is a subject too.
func TestRPCRepliesOnlyToInboxes(t *testing.T) {
	k := MustStartLM(t, nil)
	mgr, _ := MustConnectRole(t, k, bus.RoleManager)
	audit, _ := MustConnectRole(t, k, bus.RoleAudit)
	target := instanceSubject("vm-rpc")
	for _, subject := range []string{bus.SubstituteSubject, bus.OutcomeSubject, bus.HostCertificateSubject} {
		m := nats.NewMsg(subject)
		m.Reply = target
		m.Data = []byte(`{"instanceId":"vm-rpc","msgId":"x","properties":{}}`)
		if err := mgr.PublishMsg(m); err != nil {
			t.Fatal(err)
		}
	}
	// The same requests from an inbox are answered: so the two above have
	// been handled once these come back.
	for _, subject := range []string{bus.SubstituteSubject, bus.OutcomeSubject, bus.HostCertificateSubject} {
		if _, err := mgr.Request(subject, []byte(`{"instanceId":"vm-rpc","msgId":"x","properties":{}}`), 5*time.Second); err != nil {
			t.Fatalf("%s from an inbox: %v", subject, err)
		}
	}
	if evs := events(t, audit, target); len(evs) != 0 {
		t.Fatalf("replies landed on the event log: %+v", evs)
	}
}
