package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/infrakeys/infrakeys/bus"
	"github.com/infrakeys/infrakeys/domain"
	"github.com/infrakeys/infrakeys/internal/testkit"
)

// publishKeys publishes n driver keys for instance, the first private of
// them with their private halves, the rest public halves only, and waits
// for every intake ack.
func publishKeys(tb testing.TB, d *driver, instance string, n, private int) {
	tb.Helper()
	var futures []jetstream.PubAckFuture
	for i := 0; i < n; i++ {
		priv, pub := genKey(tb, "")
		body := map[string]any{"keyName": fmt.Sprintf("key-%04d", i), "privateKey": priv}
		if i >= private {
			body = map[string]any{"keyName": fmt.Sprintf("key-%04d", i), "publicKey": pub}
		}
		m := nats.NewMsg(bus.IntakeKeySubject(instance))
		m.Data = driverKey(tb, body)
		f, err := d.js.PublishMsgAsync(m)
		if err != nil {
			tb.Fatal(err)
		}
		futures = append(futures, f)
	}
	for _, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			tb.Fatalf("intake publish: %v", err)
		case <-time.After(30 * time.Second):
			tb.Fatal("intake publish not acknowledged")
		}
	}
}

// cascadeFacts checks what the log says of instance's removal: exactly one
// InstanceRemoved, and one KeyDeleted caused by it for every key ever
// created for the instance, none twice; it returns the secret ids of the
// deleted keys. nc reads the log (the audit role).
func cascadeFacts(tb testing.TB, nc *nats.Conn, instance string, keys int) (removedID string, secrets []string) {
	tb.Helper()
	created := map[string]string{} // name -> secret id
	deleted := map[string]int{}
	for _, r := range events(tb, nc, instanceSubject(instance)) {
		switch r.Event.Type {
		case domain.TypeInstanceRemoved:
			if removedID != "" {
				tb.Errorf("a second InstanceRemoved: %s", r.Event.ID)
			}
			removedID = r.Event.ID
		case domain.TypeKeyCreated:
			var p domain.KeyCreated
			_ = r.Event.Decode(&p)
			created[p.Name] = ""
			if p.SealedPrivateKey != nil {
				created[p.Name] = p.SealedPrivateKey.SecretID
			}
		case domain.TypeKeyDeleted:
			var p domain.KeyDeleted
			_ = r.Event.Decode(&p)
			deleted[p.Name]++
			if r.Event.CausationID != removedID || removedID == "" {
				tb.Errorf("KeyDeleted %s has cause %q, want the InstanceRemoved %q", p.Name, r.Event.CausationID, removedID)
			}
			if p.SecretID != created[p.Name] {
				tb.Errorf("KeyDeleted %s names secret %q, want %q", p.Name, p.SecretID, created[p.Name])
			}
		}
	}
	if len(created) != keys {
		tb.Errorf("%d keys created, want %d", len(created), keys)
	}
	for name, secret := range created {
		if deleted[name] != 1 {
			tb.Errorf("key %s deleted %d times", name, deleted[name])
		}
		if secret != "" {
			secrets = append(secrets, secret)
		}
	}
	if len(deleted) != len(created) {
		tb.Errorf("%d keys deleted, %d created", len(deleted), len(created))
	}
	return removedID, secrets
}

// assertShredded checks that no data key of secrets remains on the
// external server ns, once the cascade (or the shredder) has had time to
// destroy them.
func assertShredded(tb testing.TB, ns *server.Server, secrets []string) {
	tb.Helper()
	deadline := time.Now().Add(30 * time.Second)
	ctx := context.Background()
	c, err := bus.Connect(ctx, bus.Config{URL: ns.ClientURL(), CredsFile: deployCreds(tb, "keysd")})
	if err != nil {
		tb.Fatal(err)
	}
	defer c.Close()
	dk, err := bus.OpenDataKeys(ctx, c)
	if err != nil {
		tb.Fatal(err)
	}
	for _, id := range secrets {
		for {
			wrapped, _, err := dk.Get(ctx, id)
			if err != nil {
				tb.Fatal(err)
			}
			if wrapped == nil {
				break
			}
			if time.Now().After(deadline) {
				tb.Fatalf("data key %s survived its key's deletion", id)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// subjectCount returns how many events the log holds on subject; nc is
// the audit role's.
func subjectCount(tb testing.TB, nc *nats.Conn, subject string) uint64 {
	tb.Helper()
	return mustStreamInfo(tb, nc, bus.StreamName, jetstream.WithSubjectFilter(subject)).State.Subjects[subject]
}

// streamMsgs returns how many messages a stream holds; nc is keysd's user.
func streamMsgs(tb testing.TB, nc *nats.Conn, stream string) uint64 {
	tb.Helper()
	return mustStreamInfo(tb, nc, stream).State.Msgs
}

// mustStreamInfo returns the state of stream as nc may see it.
func mustStreamInfo(tb testing.TB, nc *nats.Conn, stream string, opts ...jetstream.StreamInfoOpt) *jetstream.StreamInfo {
	tb.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, stream)
	if err != nil {
		tb.Fatal(err)
	}
	info, err := s.Info(ctx, opts...)
	if err != nil {
		tb.Fatal(err)
	}
	return info
}

// The cascade with 1,000 keys: one KeyDeleted each, caused by the
// InstanceRemoved, data keys destroyed, shared keys untouched; announcing
// the removal again (bus and HTTP) is harmless. Over an authenticated
// external NATS, as the driver, the manager and the audit roles.
func TestCascade(t *testing.T) {
	ns := MustNATSServer(t)
	k := MustStartExternal(t, ns)
	d := newDriver(t, connectExternal(t, ns, bus.RoleDriver))
	manager := newDriver(t, connectExternal(t, ns, bus.RoleManager))
	audit := connectExternal(t, ns, bus.RoleAudit)
	const n = 1000
	inst := "vm-cascade"

	_, pub := genKey(t, "")
	_, ch := d.publish(t, bus.IntakeKeySubject(inst), driverKey(t, map[string]any{"keyName": "pool-key", "scope": "shared", "publicKey": pub}), "")
	if o := outcome(t, ch); o.Outcome != domain.OutcomeCreated {
		t.Fatalf("shared key from the driver: %+v", o)
	}
	// Private halves (a data key each) on a tenth of the keys.
	const private = n / 10
	start := time.Now()
	publishKeys(t, d, inst, n, private)
	eventually(t, 300*time.Second, "1,000 instance keys listed", func() bool { return len(k.instanceKeys(t, inst)) == n })
	t.Logf("intake of %d keys (%d with private halves) into one instance: %s", n, private, time.Since(start))

	start = time.Now()
	_, ch = manager.publish(t, bus.IntakeRemovedSubject(inst), nil, "")
	first := outcome(t, ch)
	if first.Outcome != domain.OutcomeRemoved || first.EventID == "" || first.Duplicate {
		t.Fatalf("removal outcome %+v", first)
	}
	eventually(t, 60*time.Second, "instance keys gone", func() bool { return len(k.instanceKeys(t, inst)) == 0 })
	t.Logf("cascade of %d keys: %s from the InstanceRemoved publish to an empty list", n, time.Since(start))

	// Again on the bus, and over HTTP: the same removal, nothing new.
	_, ch = manager.publish(t, bus.IntakeRemovedSubject(inst), nil, "")
	if again := outcome(t, ch); again.Outcome != domain.OutcomeRemoved || !again.Duplicate || again.OriginalEventID != first.EventID {
		t.Fatalf("second removal outcome %+v, want a duplicate of the first's event %s", again, first.EventID)
	}
	r := k.Admin.Do(t, "DELETE", lmPrefix+"/instances/"+inst, nil)
	if r.StatusCode != http.StatusAccepted || !strings.Contains(string(r.Body), first.EventID) {
		t.Fatalf("DELETE instance: %d %s", r.StatusCode, r.Body)
	}

	removed, secrets := cascadeFacts(t, audit, inst, n)
	if removed != first.EventID {
		t.Fatalf("InstanceRemoved %s, outcome said %s", removed, first.EventID)
	}
	// The cascade's work item: one, recorded with the removal and caused
	// by it, on the subject the cascade consumer alone reads.
	requests := events(t, audit, bus.OwnerSubject(domain.CascadeOwner(inst)))
	if len(requests) != 1 || requests[0].Event.Type != domain.TypeCascadeRequested || requests[0].Event.CausationID != first.EventID {
		t.Fatalf("cascade requests %+v, want one CascadeRequested caused by %s", requests, first.EventID)
	}
	js, err := jetstream.New(connectService(t, ns))
	if err != nil {
		t.Fatal(err)
	}
	cons, err := js.Consumer(context.Background(), bus.StreamName, bus.CascadeConsumer)
	if err != nil {
		t.Fatal(err)
	}
	if cfg := cons.CachedInfo().Config; cfg.FilterSubject+strings.Join(cfg.FilterSubjects, ",") != bus.KindSubjects(domain.OwnerCascade) {
		t.Errorf("the cascade consumer reads %q %v, want only the cascade requests", cfg.FilterSubject, cfg.FilterSubjects)
	}
	if len(secrets) != private {
		t.Fatalf("%d keys had private halves, want %d", len(secrets), private)
	}
	assertShredded(t, ns, secrets)
	if r := k.Admin.Do(t, "GET", lmPrefix+"/shared/pool-key", nil); r.StatusCode != 200 {
		t.Fatalf("the shared key went with the instance: %d %s", r.StatusCode, r.Body)
	}
	// A key for the removed instance is refused; a shared key published
	// for it is not the instance's, and is created (docs/events.md).
	_, pub2 := genKey(t, "")
	_, ch = d.publish(t, bus.IntakeKeySubject(inst), driverKey(t, map[string]any{"keyName": "late", "publicKey": pub2}), "")
	if o := outcome(t, ch); o.Outcome != domain.OutcomeRejected || o.Reason != domain.ReasonInstanceRemoved {
		t.Fatalf("key for a removed instance: %+v", o)
	}
	_, ch = d.publish(t, bus.IntakeKeySubject(inst), driverKey(t, map[string]any{"keyName": "late-shared", "scope": "shared", "publicKey": pub2}), "")
	if o := outcome(t, ch); o.Outcome != domain.OutcomeCreated || o.Scope != domain.ScopeShared {
		t.Fatalf("shared key published for a removed instance: %+v", o)
	}
}

// Drivers publishing keys (many at once) while the resource manager
// removes the instance over HTTP, truly concurrently: the HTTP handler
// and the intake consumer decide against the same instance at the same
// time. Every key is refused or removed, none left orphaned, none deleted
// twice, and every message has exactly one outcome event.
func TestCascadeDriverRemoverRace(t *testing.T) {
	ns := MustNATSServer(t)
	k := MustStartExternal(t, ns)
	d := newDriver(t, connectExternal(t, ns, bus.RoleDriver))
	audit := connectExternal(t, ns, bus.RoleAudit)
	for round := range 3 {
		inst := fmt.Sprintf("vm-race-%d", round)
		const publishers, each = 8, 10
		const n = publishers * each
		bodies := make([][]byte, n)
		for i := range bodies {
			_, pub := genKey(t, "")
			bodies[i] = driverKey(t, map[string]any{"keyName": fmt.Sprintf("k%03d", i), "publicKey": pub})
		}
		msgID := func(i int) string { return fmt.Sprintf("race-%d-%d", round, i) }
		outs := make([]<-chan domain.IntakeOutcome, n)
		go1 := make(chan struct{})
		var wg sync.WaitGroup
		for p := range publishers {
			wg.Go(func() {
				<-go1
				for j := range each {
					i := p*each + j
					_, outs[i] = d.publish(t, bus.IntakeKeySubject(inst), bodies[i], msgID(i))
				}
			})
		}
		var deleteStatus int
		wg.Go(func() {
			<-go1
			// Once a quarter of the keys are in, while the rest are on
			// their way.
			for deadline := time.Now().Add(30 * time.Second); len(k.instanceKeys(t, inst)) < n/4 && time.Now().Before(deadline); {
			}
			deleteStatus = k.Admin.Do(t, "DELETE", lmPrefix+"/instances/"+inst, nil).StatusCode
		})
		close(go1)
		wg.Wait()
		if deleteStatus != http.StatusAccepted {
			t.Fatalf("DELETE instance: %d", deleteStatus)
		}
		created, refused := 0, 0
		for _, ch := range outs {
			switch o := outcome(t, ch); {
			case o.Outcome == domain.OutcomeCreated && !o.Duplicate:
				created++
			case o.Outcome == domain.OutcomeRejected && o.Reason == domain.ReasonInstanceRemoved:
				refused++
			default:
				t.Fatalf("outcome %+v", o)
			}
		}
		eventually(t, 30*time.Second, "no key left", func() bool { return len(k.instanceKeys(t, inst)) == 0 })
		cascadeFacts(t, audit, inst, created)
		causes := map[string]int{}
		for _, r := range events(t, audit) {
			causes[r.Event.CausationID]++
		}
		for i := range n {
			if c := causes[domain.IntakeCause("msg:"+msgID(i))]; c != 1 {
				t.Errorf("message %s has %d outcome events, want 1", msgID(i), c)
			}
		}
		t.Logf("round %d: %d created then cascaded, %d refused", round, created, refused)
	}
}

// A driver publishes while keysd is down (NATS is up): the key is stored
// and processed when keysd is back. While a message waits, the outcome
// request answers it pending by seq (unknown by msgId alone).
func TestIntakeWhileKeysdDown(t *testing.T) {
	ns := MustNATSServer(t)
	k := MustStartExternal(t, ns)
	driverConn := connectExternal(t, ns, bus.RoleDriver)
	d := newDriver(t, driverConn)
	k.Stop(t)

	_, pub := genKey(t, "")
	ack, ch := d.publish(t, bus.IntakeKeySubject("vm-down"), driverKey(t, map[string]any{"keyName": "while-down", "publicKey": pub}), "")
	if ack.Stream != bus.IntakeStream {
		t.Fatalf("stored in %q", ack.Stream)
	}
	select {
	case o := <-ch:
		t.Fatalf("an outcome while keysd is down: %+v", o)
	case <-time.After(200 * time.Millisecond):
	}
	k.start(t)
	k.Admin.base = k.URL
	o := outcome(t, ch)
	if o.Outcome != domain.OutcomeCreated {
		t.Fatalf("outcome after restart: %+v", o)
	}
	if keys := k.instanceKeys(t, "vm-down"); len(keys) != 1 || keys[0]["name"] != "while-down" {
		t.Fatalf("instance keys %+v", keys)
	}
	// Published before the restart, asked for after it, by sequence.
	if r := askOutcome(t, driverConn, map[string]any{"instanceId": "vm-down", "seq": ack.Sequence}); r.EventID != o.EventID {
		t.Fatalf("outcome of seq %d after a restart: %+v, want %+v", ack.Sequence, r, o)
	}

	t.Run("pending", func(t *testing.T) {
		// keysd is up but does not take the message yet: its intake
		// consumer is paused, for a while (resuming it through the API
		// leaves keysd's pull waiting for its next heartbeat, 15 s; the
		// end of a pause wakes it at once).
		js, err := jetstream.New(connectService(t, ns))
		if err != nil {
			t.Fatal(err)
		}
		const pause = 2 * time.Second
		for attempt := 1; ; attempt++ {
			name := fmt.Sprintf("waiting-%d", attempt)
			until := time.Now().Add(pause)
			if _, err := js.PauseConsumer(context.Background(), bus.IntakeStream, bus.IntakeConsumer, until); err != nil {
				t.Fatal(err)
			}
			_, pub := genKey(t, "")
			ack, ch := d.publish(t, bus.IntakeKeySubject("vm-down"), driverKey(t, map[string]any{"keyName": name, "publicKey": pub}), name)
			bySeq := askOutcome(t, driverConn, map[string]any{"instanceId": "vm-down", "seq": ack.Sequence})
			byID := askOutcome(t, driverConn, map[string]any{"instanceId": "vm-down", "msgId": name})
			if time.Now().After(until) && attempt < 3 {
				t.Logf("attempt %d: the pause ended before the answers; again", attempt)
				outcome(t, ch)
				continue
			}
			if bySeq.Outcome != "pending" {
				t.Fatalf("by seq while waiting: %+v, want pending", bySeq)
			}
			if byID.Outcome != "unknown" {
				t.Fatalf("by msgId alone while waiting: %+v, want unknown (docs/events.md)", byID)
			}
			o := outcome(t, ch)
			if o.Outcome != domain.OutcomeCreated {
				t.Fatalf("outcome once the pause ended: %+v", o)
			}
			if r := askOutcome(t, driverConn, map[string]any{"instanceId": "vm-down", "msgId": name}); r.EventID != o.EventID {
				t.Fatalf("by msgId once processed: %+v, want %+v", r, o)
			}
			return
		}
	})
}

// builtBinary is a program built for this test run.
type builtBinary struct {
	once sync.Once
	path string
	err  error
}

// builds holds the programs built for this test run, by package.
var builds sync.Map

// buildOnce builds the program of package pkg once per test run and
// returns its path.
func buildOnce(tb testing.TB, pkg string) string {
	tb.Helper()
	v, _ := builds.LoadOrStore(pkg, &builtBinary{})
	b := v.(*builtBinary)
	b.once.Do(func() {
		dir, err := os.MkdirTemp("", "infrakeys-bin")
		if err != nil {
			b.err = err
			return
		}
		b.path, b.err = testkit.Build(dir, pkg)
	})
	if b.err != nil {
		tb.Fatal(b.err)
	}
	return b.path
}

// buildKeysd builds the keysd binary once per test run.
func buildKeysd(tb testing.TB) string { return buildOnce(tb, testkit.KeysdPackage) }

// startProcess runs the keysd binary with env and waits for /healthz.
func startProcess(tb testing.TB, env map[string]string) (*exec.Cmd, string) {
	tb.Helper()
	addr := freeAddr(tb)
	cmd := exec.Command(buildKeysd(tb))
	cmd.Env = append(os.Environ(), "KEYSD_HTTP_ADDR="+addr)
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	logFile, err := os.Create(filepath.Join(tb.TempDir(), "keysd.log"))
	if err != nil {
		tb.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	url := "http://" + addr
	eventually(tb, 30*time.Second, "keysd process healthy", func() bool {
		resp, err := http.Get(url + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	return cmd, url
}

// A crash mid-cascade: keysd (a process of its own) is killed with
// SIGKILL once the cascade has recorded some KeyDeleted events but not
// all of them; after a restart it finishes, deleting no key twice and
// leaving none behind. The cascade appends 10 KeyDeleted at a time
// (KEYSD_CASCADE_BATCH), so the kill lands between two batches; at the
// default, 1,000, the whole cascade would be one append.
func TestCascadeCrashResumes(t *testing.T) {
	// Mostly waiting (timeouts, expiries, AckWait): it runs beside the
	// other waiting tests once the rest of the package is done.
	t.Parallel()
	ns := MustNATSServer(t)
	env := externalEnv(t, ns)
	env["KEYSD_LOG_LEVEL"] = "info"
	env["KEYSD_CASCADE_BATCH"] = "10"
	cmd, _ := startProcess(t, env)
	d := newDriver(t, connectExternal(t, ns, bus.RoleDriver))
	manager := newDriver(t, connectExternal(t, ns, bus.RoleManager))
	audit := connectExternal(t, ns, bus.RoleAudit)
	service := connectService(t, ns)
	const n, private = 1000, 100
	inst := "vm-crash"
	subject := instanceSubject(inst)
	publishKeys(t, d, inst, n, private)
	eventually(t, 300*time.Second, "every key created", func() bool { return subjectCount(t, audit, subject) == n })
	dataKeys := func() uint64 { return streamMsgs(t, service, bus.DataKeysStream) }
	before := dataKeys()

	if _, err := manager.js.Publish(context.Background(), bus.IntakeRemovedSubject(inst), nil); err != nil {
		t.Fatal(err)
	}
	// n KeyCreated, the InstanceRemoved, then the KeyDeleted: kill at the
	// first KeyDeleted seen. Poll without pausing: batches are quick.
	deadline := time.Now().Add(60 * time.Second)
	for subjectCount(t, audit, subject) <= n+1 {
		if time.Now().After(deadline) {
			t.Fatal("the cascade did not start within 60s")
		}
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	// A batch keysd sent whole before it died is still being stored, and
	// seen half stored: count once the count stops changing.
	deletedAtCrash := subjectCount(t, audit, subject) - n - 1
	for {
		time.Sleep(500 * time.Millisecond)
		now := subjectCount(t, audit, subject) - n - 1
		if now == deletedAtCrash {
			break
		}
		deletedAtCrash = now
	}
	t.Logf("killed keysd with %d of %d KeyDeleted recorded", deletedAtCrash, n)
	if deletedAtCrash == 0 || deletedAtCrash >= n {
		t.Fatalf("the kill did not land mid-cascade: %d of %d KeyDeleted recorded", deletedAtCrash, n)
	}

	startProcess(t, env)
	eventually(t, 60*time.Second, "cascade finished after restart", func() bool { return subjectCount(t, audit, subject) >= 2*n+1 })
	_, secrets := cascadeFacts(t, audit, inst, n)
	if len(secrets) != private {
		t.Fatalf("%d deleted keys had private halves, want %d", len(secrets), private)
	}
	// What the killed keysd did not destroy, the shredder does.
	eventually(t, 60*time.Second, "every data key of the instance destroyed", func() bool { return dataKeys() == before-private })
	assertShredded(t, ns, secrets)
	if c := subjectCount(t, audit, subject); c != 2*n+1 {
		t.Fatalf("the instance has %d events, want %d", c, 2*n+1)
	}
}

// A keysd from before CascadeRequested recorded InstanceRemoved alone and
// found it with a consumer of every instance event ("cascade"). A keysd
// started on such a log cascades the removals that consumer had not
// acknowledged, then deletes it: an upgrade in the middle of a removal
// loses no cascade.
func TestCascadeFinishesAnOlderKeysdsWork(t *testing.T) {
	ns := MustNATSServer(t)
	k := MustStartExternal(t, ns)
	d := newDriver(t, connectExternal(t, ns, bus.RoleDriver))
	audit := connectExternal(t, ns, bus.RoleAudit)
	const n = 5
	inst := "vm-legacy"
	publishKeys(t, d, inst, n, 1)
	eventually(t, 30*time.Second, "instance keys listed", func() bool { return len(k.instanceKeys(t, inst)) == n })
	k.Stop(t)

	// What the older keysd left: its consumer, and a removal it had not
	// handled yet, recorded without a CascadeRequested.
	ctx := context.Background()
	nc := connectService(t, ns)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateConsumer(ctx, bus.StreamName, jetstream.ConsumerConfig{
		Durable: "cascade", FilterSubject: bus.KindSubjects(domain.OwnerInstance), AckPolicy: jetstream.AckExplicitPolicy,
	}); err != nil {
		t.Fatal(err)
	}
	l, err := bus.OpenEventLog(ctx, &bus.Conn{NC: nc, JS: js, Replicas: 1})
	if err != nil {
		t.Fatal(err)
	}
	rs, err := l.ReadOwner(ctx, domain.InstanceOwner(inst), 0)
	if err != nil {
		t.Fatal(err)
	}
	removal := domain.NewEvent(domain.InstanceOwner(inst), domain.InstanceRemoved{InstanceID: inst}, domain.Meta{Actor: "resource-manager"})
	if _, err := l.Append(ctx, domain.InstanceOwner(inst), rs[len(rs)-1].Seq, []domain.Event{removal}); err != nil {
		t.Fatal(err)
	}

	k.start(t)
	k.Admin.base = k.URL
	eventually(t, 30*time.Second, "instance keys gone", func() bool { return len(k.instanceKeys(t, inst)) == 0 })
	if removed, _ := cascadeFacts(t, audit, inst, n); removed != removal.ID {
		t.Errorf("InstanceRemoved %s, want %s", removed, removal.ID)
	}
	eventually(t, 10*time.Second, "the older consumer deleted", func() bool {
		_, err := js.Consumer(ctx, bus.StreamName, "cascade")
		return errors.Is(err, jetstream.ErrConsumerNotFound)
	})
}
