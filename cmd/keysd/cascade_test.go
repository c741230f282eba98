package main

import (
	"context"
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

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/infrakeys/infrakeys/bus"
	"github.com/infrakeys/infrakeys/domain"
	"github.com/infrakeys/infrakeys/internal/testkit"
	"github.com/infrakeys/infrakeys/sealing"
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
// deleted keys.
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
	return removedID, secrets
}

// assertShredded checks that no data key of secrets remains, once the
// cascade (or the shredder) has had time to destroy them.
func assertShredded(tb testing.TB, url string, secrets []string) {
	tb.Helper()
	deadline := time.Now().Add(30 * time.Second)
	ctx := context.Background()
	c, err := bus.Connect(ctx, bus.Config{URL: url})
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

// The cascade with 1,000 keys: one KeyDeleted each, caused by the
// InstanceRemoved, data keys destroyed, shared keys untouched; announcing
// the removal again (bus and HTTP) is harmless.
func TestCascade(t *testing.T) {
	ns := MustNATSServer(t)
	k := MustStartExternal(t, ns)
	nc := mustConnect(t, ns.ClientURL())
	d := newDriver(t, nc)
	const n = 1000
	inst := "vm-cascade"

	_, pub := genKey(t, "")
	_, ch := d.publish(t, bus.IntakeKeySubject(inst), driverKey(t, map[string]any{"keyName": "pool-key", "scope": "shared", "publicKey": pub}), "")
	if o := outcome(t, ch); o.Outcome != domain.OutcomeCreated {
		t.Fatalf("shared key from the driver: %+v", o)
	}
	// An instance's read model is one document, so the cost of each key
	// grows with the instance: private halves (the bulk of it) on a tenth.
	const private = n / 10
	start := time.Now()
	publishKeys(t, d, inst, n, private)
	eventually(t, 120*time.Second, "1,000 instance keys listed", func() bool { return len(k.instanceKeys(t, inst)) == n })
	t.Logf("intake of %d keys (%d with private halves) into one instance: %s", n, private, time.Since(start))

	start = time.Now()
	_, ch = d.publish(t, bus.IntakeRemovedSubject(inst), nil, "")
	first := outcome(t, ch)
	if first.Outcome != domain.OutcomeRemoved || first.EventID == "" {
		t.Fatalf("removal outcome %+v", first)
	}
	eventually(t, 60*time.Second, "instance keys gone", func() bool { return len(k.instanceKeys(t, inst)) == 0 })
	t.Logf("cascade of %d keys: %s from the InstanceRemoved publish to an empty list", n, time.Since(start))

	// Again on the bus, and over HTTP: the same removal, nothing new.
	_, ch = d.publish(t, bus.IntakeRemovedSubject(inst), nil, "")
	if again := outcome(t, ch); again.Outcome != domain.OutcomeRemoved || !again.Duplicate || again.OriginalEventID != first.EventID {
		t.Fatalf("second removal outcome %+v, want a duplicate of the first's event %s", again, first.EventID)
	}
	r := k.Admin.Do(t, "DELETE", lmPrefix+"/instances/"+inst, nil)
	if r.StatusCode != http.StatusAccepted || !strings.Contains(string(r.Body), first.EventID) {
		t.Fatalf("DELETE instance: %d %s", r.StatusCode, r.Body)
	}

	removed, secrets := cascadeFacts(t, nc, inst, n)
	if removed != first.EventID {
		t.Fatalf("InstanceRemoved %s, outcome said %s", removed, first.EventID)
	}
	if len(secrets) != private {
		t.Fatalf("%d keys had private halves, want %d", len(secrets), private)
	}
	assertShredded(t, ns.ClientURL(), secrets)
	if r := k.Admin.Do(t, "GET", lmPrefix+"/shared/pool-key", nil); r.StatusCode != 200 {
		t.Fatalf("the shared key went with the instance: %d %s", r.StatusCode, r.Body)
	}
	// A key for the removed instance is refused.
	_, pub2 := genKey(t, "")
	_, ch = d.publish(t, bus.IntakeKeySubject(inst), driverKey(t, map[string]any{"keyName": "late", "publicKey": pub2}), "")
	if o := outcome(t, ch); o.Outcome != domain.OutcomeRejected || o.Reason != domain.ReasonInstanceRemoved {
		t.Fatalf("key for a removed instance: %+v", o)
	}
}

// A driver publishing keys while the resource manager removes the
// instance: every key is refused or removed, none left orphaned.
func TestCascadeDriverRemoverRace(t *testing.T) {
	ns := MustNATSServer(t)
	k := MustStartExternal(t, ns)
	nc := mustConnect(t, ns.ClientURL())
	d := newDriver(t, nc)
	for round := 0; round < 3; round++ {
		inst := fmt.Sprintf("vm-race-%d", round)
		const n = 40
		var wg sync.WaitGroup
		outs := make([]<-chan domain.IntakeOutcome, n)
		for i := 0; i < n; i++ {
			wg.Go(func() {
				_, pub := genKey(t, "")
				_, outs[i] = d.publish(t, bus.IntakeKeySubject(inst), driverKey(t, map[string]any{"keyName": fmt.Sprintf("k%d", i), "publicKey": pub}), "")
			})
			if i == n/2 {
				wg.Go(func() { d.publish(t, bus.IntakeRemovedSubject(inst), nil, "") })
			}
		}
		wg.Wait()
		created, refused := 0, 0
		for _, ch := range outs {
			switch o := outcome(t, ch); {
			case o.Outcome == domain.OutcomeCreated:
				created++
			case o.Outcome == domain.OutcomeRejected && o.Reason == domain.ReasonInstanceRemoved:
				refused++
			default:
				t.Fatalf("outcome %+v", o)
			}
		}
		eventually(t, 30*time.Second, "no key left", func() bool { return len(k.instanceKeys(t, inst)) == 0 })
		cascadeFacts(t, nc, inst, created)
		t.Logf("round %d: %d created then cascaded, %d refused", round, created, refused)
	}
}

// A driver publishes while keysd is down (NATS is up): the key is stored
// and processed when keysd is back.
func TestIntakeWhileKeysdDown(t *testing.T) {
	ns := MustNATSServer(t)
	k := MustStartExternal(t, ns)
	d := newDriver(t, mustConnect(t, ns.ClientURL()))
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
	if o := outcome(t, ch); o.Outcome != domain.OutcomeCreated {
		t.Fatalf("outcome after restart: %+v", o)
	}
	if keys := k.instanceKeys(t, "vm-down"); len(keys) != 1 || keys[0]["name"] != "while-down" {
		t.Fatalf("instance keys %+v", keys)
	}
}

var (
	keysdBinOnce sync.Once
	keysdBin     string
	keysdBinErr  error
)

// buildKeysd builds the keysd binary once per test run.
func buildKeysd(tb testing.TB) string {
	tb.Helper()
	keysdBinOnce.Do(func() {
		dir, err := os.MkdirTemp("", "keysd-bin")
		if err != nil {
			keysdBinErr = err
			return
		}
		keysdBin, keysdBinErr = testkit.Build(dir, testkit.KeysdPackage)
	})
	if keysdBinErr != nil {
		tb.Fatal(keysdBinErr)
	}
	return keysdBin
}

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

// A crash mid-cascade: keysd is killed (SIGKILL) once the cascade has
// deleted some keys but not all; after a restart it finishes, deleting no
// key twice and leaving none behind.
func TestCascadeCrashResumes(t *testing.T) {
	ns := MustNATSServer(t)
	mk := filepath.Join(t.TempDir(), "master.key")
	if _, _, err := sealing.LoadOrCreateMasterKeyFile(mk); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"KEYSD_NATS_URL": ns.ClientURL(), "KEYSD_MASTER_KEY_FILE": mk, "KEYSD_LOG_LEVEL": "info"}
	cmd, _ := startProcess(t, env)
	nc := mustConnect(t, ns.ClientURL())
	d := newDriver(t, nc)
	const n = 300 // TestCascade covers 1,000; here the crash is the point
	inst := "vm-crash"
	publishKeys(t, d, inst, n, n)

	js, _ := jetstream.New(nc)
	ctx := context.Background()
	intake, err := js.Stream(ctx, bus.IntakeStream)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 60*time.Second, "intake processed", func() bool {
		info, err := intake.Info(ctx)
		return err == nil && info.State.Msgs == 0
	})
	dks, err := js.Stream(ctx, bus.DataKeysStream)
	if err != nil {
		t.Fatal(err)
	}
	dataKeys := func() uint64 {
		info, err := dks.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return info.State.Msgs
	}
	before := dataKeys()
	subject := instanceSubject(inst)

	if _, err := js.Publish(ctx, bus.IntakeRemovedSubject(inst), nil); err != nil {
		t.Fatal(err)
	}
	// Kill as soon as the cascade has destroyed some data keys: it appends
	// the KeyDeleted events, then destroys the data keys they name.
	// Poll without pausing: the destroys take milliseconds.
	for deadline := time.Now().Add(60 * time.Second); dataKeys() == before; {
		if time.Now().After(deadline) {
			t.Fatal("the cascade did not start within 60s")
		}
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	deletedAtCrash := 0
	for _, r := range events(t, nc, subject) {
		if r.Event.Type == domain.TypeKeyDeleted {
			deletedAtCrash++
		}
	}
	destroyedAtCrash := before - dataKeys()
	t.Logf("killed keysd with %d of %d data keys destroyed and %d KeyDeleted recorded", destroyedAtCrash, n, deletedAtCrash)
	if destroyedAtCrash >= n {
		t.Fatalf("the kill did not land mid-cascade (%d of %d data keys already destroyed)", destroyedAtCrash, n)
	}

	startProcess(t, env)
	eventually(t, 60*time.Second, "cascade finished after restart", func() bool {
		left := 0
		for _, r := range events(t, nc, subject) {
			switch r.Event.Type {
			case domain.TypeKeyCreated:
				left++
			case domain.TypeKeyDeleted:
				left--
			}
		}
		return left == 0
	})
	_, secrets := cascadeFacts(t, nc, inst, n)
	// What the killed keysd did not destroy, the shredder does.
	eventually(t, 60*time.Second, "every data key of the instance destroyed", func() bool { return dataKeys() == before-uint64(n) })
	assertShredded(t, ns.ClientURL(), secrets)
}
