package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/infrakeys/infrakeys/bus"
	"github.com/infrakeys/infrakeys/domain"
)

// violations collects the permission violations the server reports to one
// connection: the server answers a refused publish or subscription with an
// asynchronous -ERR, not an error from the call.
type violations struct {
	mu   sync.Mutex
	errs []string
	more chan struct{}
}

func newViolations() *violations { return &violations{more: make(chan struct{}, 1)} }

// handler is the connection's nats.ErrorHandler.
func (v *violations) handler(_ *nats.Conn, _ *nats.Subscription, err error) {
	if !errors.Is(err, nats.ErrPermissionViolation) {
		return
	}
	v.mu.Lock()
	v.errs = append(v.errs, err.Error())
	v.mu.Unlock()
	select {
	case v.more <- struct{}{}:
	default:
	}
}

// has reports whether a violation mentions text.
func (v *violations) has(text string) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	for _, e := range v.errs {
		if strings.Contains(e, text) {
			return true
		}
	}
	return false
}

// all returns the violations seen so far.
func (v *violations) all() []string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return append([]string(nil), v.errs...)
}

// MustBeRefused waits until the server has refused op ("Publish" or
// "Subscription") on subject.
func (v *violations) MustBeRefused(tb testing.TB, op, subject string) {
	tb.Helper()
	text := fmt.Sprintf("Permissions Violation for %s to %q", op, subject)
	deadline := time.After(10 * time.Second)
	for !v.has(text) {
		select {
		case <-v.more:
		case <-deadline:
			tb.Fatalf("no permission violation for %s to %s; violations: %q", op, subject, v.all())
		}
	}
}

// MustConnectRole connects to keysd's NATS listener as role, with the
// seed keysd wrote, collecting permission violations.
func MustConnectRole(tb testing.TB, k *keysd, role string) (*nats.Conn, *violations) {
	tb.Helper()
	v := newViolations()
	nc, err := bus.ConnectRole(k.natsURL(), role, k.SeedFile(role), nats.ErrorHandler(v.handler))
	if err != nil {
		tb.Fatalf("connect as %s: %v", role, err)
	}
	tb.Cleanup(nc.Close)
	return nc, v
}

// TestAuditRole: an audit consumer replays the event log and can do
// nothing else: no writes, no service consumers, no other stream, nobody
// else's replies.
func TestAuditRole(t *testing.T) {
	k := MustStartLM(t, nil)
	nc, v := MustConnectRole(t, k, bus.RoleAudit)
	ctx := context.Background()

	t.Run("Replay", func(t *testing.T) {
		l, err := bus.AttachEventLog(ctx, nc)
		if err != nil {
			t.Fatal(err)
		}
		var types []string
		if _, err := l.Replay(ctx, bus.ReplayOptions{}, func(r bus.Recorded) error {
			types = append(types, r.Event.Type)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if got, want := strings.Join(types, ","), "AccountCreated,KeyCreated"; got != want {
			t.Errorf("replayed %s, want %s (the bootstrap)", got, want)
		}
		// A filter puts the subject in the create subject: the other form.
		n := 0
		if _, err := l.Replay(ctx, bus.ReplayOptions{Subjects: []string{bus.OwnerSubject(domain.Owner{Kind: domain.OwnerAccount, ID: "admin"})}}, func(bus.Recorded) error {
			n++
			return nil
		}); err != nil || n != 2 {
			t.Errorf("filtered replay: %d events, %v", n, err)
		}
		if _, err := l.Stream().Info(ctx); err != nil {
			t.Errorf("stream info: %v", err)
		}
	})
	t.Run("OrderedConsumerReset", func(t *testing.T) {
		// An ordered consumer read with Next makes a new server consumer
		// for every message and deletes the previous one.
		js, _ := jetstream.New(nc)
		s, err := js.Stream(ctx, bus.StreamName)
		if err != nil {
			t.Fatal(err)
		}
		c, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
		if err != nil {
			t.Fatal(err)
		}
		for range 2 {
			if _, err := c.Next(jetstream.FetchMaxWait(5 * time.Second)); err != nil {
				t.Fatal(err)
			}
		}
		name := c.CachedInfo().Name
		if err := js.DeleteConsumer(ctx, bus.StreamName, name); err != nil {
			t.Errorf("delete its own consumer %s: %v", name, err)
		}
		if err := nc.Flush(); err != nil {
			t.Fatal(err)
		}
		if got := v.all(); len(got) > 0 {
			t.Errorf("violations while replaying: %q", got)
		}
	})

	// Each refusal is a bare publish, flushed: the server refuses it and
	// reports the violation, so no test waits for a request to time out.
	refusePublish := func(t *testing.T, subject string, body []byte) {
		t.Helper()
		if err := nc.PublishRequest(subject, nats.NewInbox(), body); err != nil {
			t.Fatal(err)
		}
		if err := nc.Flush(); err != nil {
			t.Fatal(err)
		}
		v.MustBeRefused(t, "Publish", subject)
	}
	t.Run("ErrWriteEvent", func(t *testing.T) {
		ev := domain.NewEvent(domain.AccountOwner("mallory"), domain.AccountCreated{Login: "mallory", Operator: true}, domain.Meta{Actor: "mallory"})
		data, _ := json.Marshal(ev)
		refusePublish(t, bus.OwnerSubject(ev.Owner), data)
		refusePublish(t, bus.OwnerSubject(domain.Owner{Kind: domain.OwnerAccount, ID: "admin"}), data)
	})
	t.Run("ErrIntake", func(t *testing.T) {
		refusePublish(t, bus.IntakeKeySubject("i-1"), []byte(`{"keyName":"k"}`))
		refusePublish(t, bus.IntakeRemovedSubject("i-1"), nil)
		refusePublish(t, bus.OutcomeSubject, []byte(`{"instanceId":"i-1","seq":1}`))
		refusePublish(t, bus.SubstituteSubject, []byte(`{}`))
	})
	t.Run("ErrServiceConsumers", func(t *testing.T) {
		api := "$JS.API."
		for _, name := range bus.ServiceConsumers {
			body, _ := json.Marshal(map[string]any{"stream_name": bus.StreamName, "config": map[string]any{
				"name": name, "durable_name": name, "filter_subject": "keysd.events.nothing.*",
				"deliver_policy": "all", "ack_policy": "explicit",
			}})
			refusePublish(t, api+"CONSUMER.CREATE."+bus.StreamName+"."+name, body)
			refusePublish(t, api+"CONSUMER.CREATE."+bus.StreamName+"."+name+".keysd.events.nothing.*", body)
			refusePublish(t, api+"CONSUMER.DURABLE.CREATE."+bus.StreamName+"."+name, body)
			refusePublish(t, api+"CONSUMER.MSG.NEXT."+bus.StreamName+"."+name, []byte(`{"batch":1}`))
			refusePublish(t, api+"CONSUMER.DELETE."+bus.StreamName+"."+name, nil)
		}
		// The legacy create names the consumer in the body only.
		body, _ := json.Marshal(map[string]any{"stream_name": bus.StreamName, "config": map[string]any{"name": bus.CascadeConsumer, "deliver_policy": "all", "ack_policy": "none"}})
		refusePublish(t, api+"CONSUMER.CREATE."+bus.StreamName, body)

		// The service's consumers are as they were.
		js, _ := jetstream.New(nc)
		for _, name := range bus.ServiceConsumers {
			c, err := js.Consumer(ctx, bus.StreamName, name)
			if name == bus.LegacyCascadeConsumer && errors.Is(err, jetstream.ErrConsumerNotFound) {
				continue // only a log an older keysd wrote has it
			}
			if err != nil {
				t.Errorf("consumer %s: %v", name, err)
				continue
			}
			if cfg := c.CachedInfo().Config; cfg.AckPolicy != jetstream.AckExplicitPolicy || strings.Contains(cfg.FilterSubject, "nothing") {
				t.Errorf("consumer %s changed: %+v", name, cfg)
			}
		}
	})
	t.Run("ErrOtherStreams", func(t *testing.T) {
		api := "$JS.API."
		for _, stream := range []string{bus.DataKeysStream, bus.IntakeStream} {
			refusePublish(t, api+"STREAM.INFO."+stream, nil)
			refusePublish(t, api+"STREAM.MSG.GET."+stream, []byte(`{"seq":1}`))
			refusePublish(t, api+"DIRECT.GET."+stream, []byte(`{"seq":1}`))
			refusePublish(t, api+"CONSUMER.CREATE."+stream+".peek", []byte(`{}`))
			refusePublish(t, api+"STREAM.PURGE."+stream, nil)
		}
		refusePublish(t, api+"STREAM.MSG.GET."+bus.StreamName, []byte(`{"seq":1}`))
		refusePublish(t, api+"STREAM.DELETE."+bus.StreamName, nil)
		refusePublish(t, api+"STREAM.UPDATE."+bus.StreamName, []byte(`{}`))
		refusePublish(t, api+"STREAM.CREATE.AUDIT_COPY", []byte(`{}`))
	})
	t.Run("ErrSubscribe", func(t *testing.T) {
		for _, subject := range []string{"_INBOX.>", "_INBOX.driver.>", "_INBOX.manager.>", "keysd.>", "keysd.datakeys.*", "keysd.intake.>", "keysd.events.>", "$KV.>", ">"} {
			sub, err := nc.SubscribeSync(subject)
			if err != nil {
				t.Fatal(err)
			}
			if err := nc.Flush(); err != nil {
				t.Fatal(err)
			}
			v.MustBeRefused(t, "Subscription", subject)
			_ = sub.Unsubscribe()
		}
	})
}
