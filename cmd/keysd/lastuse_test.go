package main

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/infrakeys/infrakeys/bus"
)

// useWrites counts the writes to the last-use bucket, by entry, from
// the moment it is made: the cost last use puts on NATS.
type useWrites struct {
	mu sync.Mutex
	n  map[string]int
}

// watchUseWrites starts counting the writes to the last-use bucket of
// the keysd replicas on ns.
func watchUseWrites(tb testing.TB, ns *server.Server) *useWrites {
	tb.Helper()
	js, err := jetstream.New(connectService(tb, ns))
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	tb.Cleanup(cancel)
	kv, err := js.KeyValue(ctx, bus.LastUseBucket)
	if err != nil {
		tb.Fatal(err)
	}
	w, err := kv.WatchAll(ctx, jetstream.UpdatesOnly())
	if err != nil {
		tb.Fatal(err)
	}
	u := &useWrites{n: map[string]int{}}
	go func() {
		for e := range w.Updates() {
			if e != nil {
				u.mu.Lock()
				u.n[e.Key()]++
				u.mu.Unlock()
			}
		}
	}()
	return u
}

// of returns the writes to entries whose UseID starts with prefix.
func (u *useWrites) of(prefix string) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	n := 0
	for k, c := range u.n {
		if strings.HasPrefix(k, "use."+bus.Token(prefix)) {
			n += c
		}
	}
	return n
}

// keyUseJSON is the part of a key view that last use adds.
type keyUseJSON struct {
	Name     string     `json:"name"`
	LastUsed *time.Time `json:"lastUsed"`
}

// Keys show when they were last used: an account key from the requests
// it signs, an infrastructure key from the releases of its private half;
// the bucket is written once per key per precision however many
// requests use it on however many replicas, and every replica shows it.
func TestLastUse(t *testing.T) {
	const precision = 3 * time.Second
	ns := MustNATSServer(t)
	ks := MustReplicas(t, ns, 2, map[string]string{"KEYSD_LAST_USE_PRECISION": precision.String()})
	a, b := ks[0], ks[1]
	writes := watchUseWrites(t, ns)
	priv := MustKey(t)
	alice := MustAccountNamedKey(t, a, "alice", "laptop", priv)
	aliceOnB := b.Client(t, "alice", priv)
	lastUsed := func(k *keysd) *time.Time {
		t.Helper()
		var acct struct{ Keys []keyUseJSON }
		k.Admin.Do(t, "GET", "/--admin/accounts/alice", nil).JSON(t, &acct)
		return acct.Keys[0].LastUsed
	}
	if got := lastUsed(a); got != nil {
		t.Fatalf("a key never used shows lastUsed %s", got)
	}

	// The request that reads the key uses it: shown at once.
	before := time.Now().Truncate(time.Second)
	var k keyUseJSON
	alice.Do(t, "GET", "/my/keys/laptop", nil).JSON(t, &k)
	if k.LastUsed == nil || k.LastUsed.Before(before) || k.LastUsed.After(time.Now()) {
		t.Fatalf("lastUsed %v right after a signed request at %s", k.LastUsed, before)
	}
	first := *k.LastUsed

	// Many requests on both replicas within the precision: one write.
	start := time.Now()
	for i := range 20 {
		c := alice
		if i%2 == 1 {
			c = aliceOnB
		}
		wantStatus(t, c.Do(t, "GET", "/my/keys", nil), http.StatusOK)
	}
	burst := time.Since(start)
	eventually(t, 5*time.Second, "the other replica shows the use", func() bool {
		got := lastUsed(b)
		return got != nil && !got.Before(first) && got.Sub(first) < precision
	})
	// The next period: whichever use of the burst was written, it is
	// now more than the precision old.
	time.Sleep(time.Until(start.Add(burst + precision)))
	if got, most := writes.of("account/alice/"), 1+int(burst/precision); got < 1 || got > most {
		t.Fatalf("%d requests in %s made %d writes, want 1 to %d (precision %s)", 21, burst, got, most, precision)
	}
	n := writes.of("account/alice/")

	// A period later, one use on the other replica is one more write,
	// which the first replica shows.
	after := time.Now().Truncate(time.Second)
	wantStatus(t, aliceOnB.Do(t, "GET", "/my/keys", nil), http.StatusOK)
	eventually(t, 5*time.Second, "a second write", func() bool { return writes.of("account/alice/") == n+1 })
	eventually(t, 5*time.Second, "the first replica shows the later use", func() bool {
		got := lastUsed(a)
		return got != nil && !got.Before(after)
	})

	// Infrastructure keys: a release of the private half is a use.
	manager, _ := MustToken(t, a, "manager", "keys:manage", "keys:read", "keys:private")
	onA, onB := a.Bearer(manager), b.Bearer(manager)
	for _, name := range []string{"db", "web", "idle"} {
		wantStatus(t, onA.Do(t, "POST", lmPrefix+"/shared", map[string]any{"name": name, "generate": "ed25519"}), http.StatusCreated)
	}
	infraLastUsed := func(c *client, name string) *time.Time {
		t.Helper()
		var k keyUseJSON
		c.Do(t, "GET", keyPath(name), nil).JSON(t, &k)
		return k.LastUsed
	}
	if got := infraLastUsed(onB, "db"); got != nil {
		t.Fatalf("a key never released shows lastUsed %s", got)
	}
	before = time.Now().Truncate(time.Second)
	onB.Do(t, "GET", keyPath("db")+"?includePrivateKey=true", nil).JSON(t, &k)
	if k.LastUsed == nil || k.LastUsed.Before(before) {
		t.Errorf("lastUsed %v in the answer that released the private half", k.LastUsed)
	}
	wantStatus(t, onA.Do(t, "POST", lmPrefix+"/substitute", map[string]any{
		"properties": map[string]any{"k": map[string]any{"type": "key", "value": "web"}},
	}), http.StatusOK)
	for _, tc := range []struct {
		c    *client
		name string
	}{{onA, "db"}, {onB, "web"}} {
		eventually(t, 5*time.Second, tc.name+"'s release shown on the other replica", func() bool {
			got := infraLastUsed(tc.c, tc.name)
			return got != nil && !got.Before(before)
		})
	}
	if got := infraLastUsed(onA, "idle"); got != nil {
		t.Errorf("a key never released shows lastUsed %s", got)
	}
	if got := writes.of("infra/"); got != 2 {
		t.Errorf("%d writes for two infrastructure keys released once each, want 2", got)
	}
}
