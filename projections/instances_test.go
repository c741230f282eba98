package projections_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"log/slog"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/infrakeys/infrakeys/domain"
	"github.com/infrakeys/infrakeys/projections"
)

// driverKey is an intake message body for a fresh key named name.
func driverKey(tb testing.TB, name string) []byte {
	tb.Helper()
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		tb.Fatal(err)
	}
	b, _ := json.Marshal(map[string]any{"keyName": name, "privateKey": string(pem.EncodeToMemory(block))})
	return b
}

// infraSnapshot returns every entry of the infrastructure keys bucket but
// the marker.
func infraSnapshot(tb testing.TB, e *env) map[string]entry {
	tb.Helper()
	ctx := context.Background()
	kv, err := e.conn.JS.KeyValue(ctx, projections.InfraKeysBucket)
	if err != nil {
		tb.Fatal(err)
	}
	out := map[string]entry{}
	lister, err := kv.ListKeys(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	var keys []string
	for k := range lister.Keys() {
		keys = append(keys, k)
	}
	for _, k := range keys {
		if k == "meta" {
			continue
		}
		v, err := kv.Get(ctx, k)
		if err != nil {
			tb.Fatalf("get %s: %v", k, err)
		}
		out[k] = entry{string(v.Value()), v.Revision()}
	}
	return out
}

// sameInstance reports how got differs from want.
func sameInstance(tb testing.TB, what string, got, want *domain.Instance) {
	tb.Helper()
	if got.Version != want.Version || got.Removed != want.Removed || got.RemovedBy != want.RemovedBy {
		tb.Errorf("%s: version %d removed %v by %q, want %d %v %q", what, got.Version, got.Removed, got.RemovedBy, want.Version, want.Removed, want.RemovedBy)
	}
	if !reflect.DeepEqual(got.Keys, want.Keys) {
		tb.Errorf("%s: keys differ:\n got %+v\nwant %+v", what, got.Keys, want.Keys)
	}
	if len(got.Intake) != len(want.Intake) || (len(want.Intake) > 0 && !reflect.DeepEqual(got.Intake, want.Intake)) {
		tb.Errorf("%s: intake records differ:\n got %v\nwant %v", what, got.Intake, want.Intake)
	}
}

// An instance's read model is one entry per key and per driver message
// plus a head, written by the projection's consumer; a repository with
// nothing in memory (another replica) loads it back to the very state the
// writer computed, whatever the consumer had written when it looked, and
// rebuilding gives the same entries.
func TestInstances_PerKeyLayout(t *testing.T) {
	ctx := context.Background()
	e := MustEnv(t)
	infra, _, svc := MustIntake(t, e)
	for i := range 6 {
		if o, err := svc.AddKey(ctx, fmt.Sprintf("vm-1:%d", i), "vm-1", driverKey(t, fmt.Sprintf("k%d", i)), domain.Meta{Actor: "driver"}); err != nil || o.Outcome != domain.OutcomeCreated {
			t.Fatalf("AddKey = %+v, %v", o, err)
		}
	}
	for i := range 3 {
		if _, err := svc.AddKey(ctx, fmt.Sprintf("vm-2:%d", i), "vm-2", driverKey(t, fmt.Sprintf("k%d", i)), domain.Meta{Actor: "driver"}); err != nil {
			t.Fatal(err)
		}
	}
	// A key of vm-1 expires: its KeyExpired changes a key the event
	// does not carry whole, so the entry is what the key was before it.
	expires := time.Now().Add(time.Hour).UTC().Truncate(time.Second)
	var temp map[string]any
	if err := json.Unmarshal(driverKey(t, "temp"), &temp); err != nil {
		t.Fatal(err)
	}
	temp["expires"] = expires.Format(time.RFC3339)
	body, _ := json.Marshal(temp)
	if o, err := svc.AddKey(ctx, "vm-1:temp", "vm-1", body, domain.Meta{Actor: "driver"}); err != nil || o.Outcome != domain.OutcomeCreated {
		t.Fatalf("AddKey = %+v, %v", o, err)
	}
	if n, err := (&domain.ExpiryService{InfraKeys: infra}).ExpireDue(ctx, domain.InstanceOwner("vm-1"), expires); err != nil || n != 1 {
		t.Fatalf("ExpireDue = %d, %v; want 1 KeyExpired", n, err)
	}
	if _, err := svc.RemoveInstance(ctx, "vm-2:rm", "vm-2", domain.Meta{}); err != nil {
		t.Fatal(err)
	}
	if _, err := (&domain.InfraKeyService{Repo: infra, Sealer: svc.Sealer}).Cascade(ctx, "vm-2", domain.Meta{}); err != nil {
		t.Fatal(err)
	}
	want := map[string]*domain.Instance{}
	for _, id := range []string{"vm-1", "vm-2"} {
		in, err := infra.LoadInstance(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		want[id] = in
	}
	if got := len(want["vm-1"].Keys); got != 7 {
		t.Fatalf("vm-1 has %d keys, want 7", got)
	}
	if k := want["vm-1"].FindKey("temp"); k == nil || !k.Expired || k.PublicKey == "" {
		t.Fatalf("vm-1's key temp after its KeyExpired: %+v", k)
	}
	if got := len(want["vm-2"].Keys); got != 0 || !want["vm-2"].Removed {
		t.Fatalf("vm-2: %d keys, removed %v; want none, removed", got, want["vm-2"].Removed)
	}

	ctxRun, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- infra.Run(ctxRun) }()
	MustSettled(t, e, projections.InfraKeysName)
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	stored := infraSnapshot(t, e)
	keyEntries := 0
	for k, v := range stored {
		if strings.HasPrefix(k, "instance.vm-1.k.") {
			keyEntries++
		}
		// No entry holds more than one key.
		if n := strings.Count(v.value, `"publicKey"`); n > 1 {
			t.Errorf("%s holds %d keys", k, n)
		}
	}
	if keyEntries != 7 {
		t.Errorf("vm-1 has %d key entries, want 7: %v", keyEntries, stored)
	}

	load := func(t *testing.T, what string) {
		t.Helper()
		infra.ForgetStates()
		for id, w := range want {
			got, err := infra.LoadInstance(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			sameInstance(t, what+" "+id, got, w)
		}
	}
	t.Run("ColdLoad", func(t *testing.T) {
		load(t, "cold load")
		// What the bucket holds is what the load starts from.
		kv, err := e.conn.JS.KeyValue(ctx, projections.InfraKeysBucket)
		if err != nil {
			t.Fatal(err)
		}
		forged := strings.Replace(stored["instance.vm-1.k.k1"].value, `"name":"k1"`, `"name":"forged"`, 1)
		if _, err := kv.Put(ctx, "instance.vm-1.k.k1", []byte(forged)); err != nil {
			t.Fatal(err)
		}
		infra.ForgetStates()
		in, err := infra.LoadInstance(ctx, "vm-1")
		if err != nil {
			t.Fatal(err)
		}
		if in.FindKey("forged") == nil {
			t.Errorf("a cold load did not read the key entries: %+v", in.Keys)
		}
		if err := infra.Rebuild(ctx); err != nil {
			t.Fatal(err)
		}
		sameValues(t, infraSnapshot(t, e), stored)
	})

	t.Run("HeadBehindEntries", func(t *testing.T) {
		// The consumer wrote the entries of vm-1's last three keys and
		// died before moving the head: a cold load must neither miss nor
		// repeat them.
		kv, err := e.conn.JS.KeyValue(ctx, projections.InfraKeysBucket)
		if err != nil {
			t.Fatal(err)
		}
		rs, err := e.log.ReadOwner(ctx, domain.InstanceOwner("vm-1"), 0)
		if err != nil {
			t.Fatal(err)
		}
		old, _ := json.Marshal(map[string]any{"id": "vm-1", "version": rs[2].Seq})
		if _, err := kv.Put(ctx, "instance.vm-1", old); err != nil {
			t.Fatal(err)
		}
		load(t, "head behind")
		if err := infra.Rebuild(ctx); err != nil {
			t.Fatal(err)
		}
		sameValues(t, infraSnapshot(t, e), stored)
	})

	t.Run("Rebuild", func(t *testing.T) {
		kv, err := e.conn.JS.KeyValue(ctx, projections.InfraKeysBucket)
		if err != nil {
			t.Fatal(err)
		}
		if err := kv.Purge(ctx, "instance.vm-1.k.k2"); err != nil {
			t.Fatal(err)
		}
		for k, v := range map[string]string{
			"instance.vm-1.k.k4":    `{"seq":1,"key":{"name":"forged"}}`,
			"instance.vm-1.k.ghost": `{"seq":2,"key":{"name":"ghost"}}`,
			"instance.ghost":        `{"id":"ghost","version":1}`,
			"instance.vm-2":         `{not json`,
		} {
			if _, err := kv.Put(ctx, k, []byte(v)); err != nil {
				t.Fatal(err)
			}
		}
		if err := infra.Rebuild(ctx); err != nil {
			t.Fatal(err)
		}
		sameValues(t, infraSnapshot(t, e), stored)
		load(t, "after rebuild")
	})

	t.Run("DeletedBucket", func(t *testing.T) {
		if err := e.conn.JS.DeleteKeyValue(ctx, projections.InfraKeysBucket); err != nil {
			t.Fatal(err)
		}
		if _, err := projections.OpenInfraKeys(ctx, e.conn, e.log, slog.New(slog.DiscardHandler)); err != nil {
			t.Fatal(err)
		}
		sameValues(t, infraSnapshot(t, e), stored)
	})
}

// Drivers adding keys to one instance at once, while others read it: the
// states loads return stay as they were (the next state may share their
// keys' spare capacity, never change what they hold), and every key ends
// up there once.
func TestInstances_ConcurrentIntake(t *testing.T) {
	ctx := context.Background()
	e := MustEnv(t)
	infra, _, svc := MustIntake(t, e)
	if _, err := svc.AddKey(ctx, "first", "vm-1", driverKey(t, "first"), domain.Meta{}); err != nil {
		t.Fatal(err)
	}
	before, err := infra.LoadInstance(ctx, "vm-1")
	if err != nil {
		t.Fatal(err)
	}
	version, keys := before.Version, slices.Clone(before.Keys)

	const writers, each = 4, 6
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				if _, err := infra.LoadInstance(ctx, "vm-1"); err != nil {
					t.Error(err)
				}
				name := fmt.Sprintf("w%d-%d", w, i)
				if o, err := svc.AddKey(ctx, name, "vm-1", driverKey(t, name), domain.Meta{}); err != nil || o.Outcome != domain.OutcomeCreated {
					t.Errorf("AddKey %s = %+v, %v", name, o, err)
				}
			}
		})
	}
	wg.Wait()
	if before.Version != version || !reflect.DeepEqual(before.Keys, keys) {
		t.Errorf("an earlier load changed: version %d, %d keys; want %d, %d", before.Version, len(before.Keys), version, len(keys))
	}
	after, err := infra.LoadInstance(ctx, "vm-1")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, k := range after.Keys {
		seen[k.Name]++
	}
	if got, want := len(after.Keys), 1+writers*each; got != want || len(seen) != want {
		t.Errorf("%d keys, %d names; want %d of each", got, len(seen), want)
	}
	infra.ForgetStates()
	cold, err := infra.LoadInstance(ctx, "vm-1")
	if err != nil {
		t.Fatal(err)
	}
	sameInstance(t, "cold", cold, after)
}
