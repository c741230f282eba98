package clustertest

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/infrakeys/infrakeys/bus"
	"github.com/infrakeys/infrakeys/domain"
	"github.com/infrakeys/infrakeys/projections"
)

// TestCluster runs its checks on one cluster: three NATS servers, two
// keysd replicas on different servers. All but the last leave the cluster
// whole; the last kills a replica.
func TestCluster(t *testing.T) {
	c := MustStartCluster(t)
	a, b := c.replica[0], c.replica[1]
	nc := c.Connect(t)

	// KEYSD_REPLICAS=3: every stream and bucket keysd made is on all
	// three servers, so an acknowledged write is on a quorum.
	t.Run("ThreeReplicasOfEveryStream", func(t *testing.T) {
		js := jsOf(t, nc)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		want := []string{bus.StreamName, bus.DataKeysStream, bus.IntakeStream,
			"KV_" + projections.AccountsBucket, "KV_" + projections.InfraKeysBucket, "KV_" + projections.TokensBucket,
			"KV_" + bus.LastUseBucket}
		names := js.StreamNames(ctx)
		var have []string
		for name := range names.Name() {
			have = append(have, name)
		}
		if err := names.Err(); err != nil {
			t.Fatal(err)
		}
		for _, name := range want {
			if !slices.Contains(have, name) {
				t.Errorf("no stream %s (streams: %v)", name, have)
			}
		}
		for _, name := range have {
			if !slices.Contains(want, name) && !strings.HasPrefix(name, "KV_") {
				continue
			}
			s, err := js.Stream(ctx, name)
			if err != nil {
				t.Fatal(err)
			}
			info, err := s.Info(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if got, want := info.Config.Replicas, 3; got != want {
				t.Errorf("%s: %d replicas, want %d", name, got, want)
			}
			if info.Cluster == nil || info.Cluster.Leader == "" || len(info.Cluster.Replicas) != 2 {
				t.Errorf("%s: placed as %+v, want a leader and two followers", name, info.Cluster)
			}
		}
	})

	t.Run("ReadYourWritesAcrossReplicas", func(t *testing.T) {
		alice := c.MustCreateAccount(t, a, "alice")
		for i := range 20 {
			// Alternate which replica writes and which reads.
			w, r := a, b
			if i%2 == 1 {
				w, r = b, a
			}
			name := fmt.Sprintf("key-%d", i)
			var created keyView
			data := alice.MustDo(t, w.url, http.MethodPost, "/alice/keys",
				map[string]any{"name": name, "key": AuthorizedKey(t, MustKey(t), name)}, http.StatusCreated)
			if err := json.Unmarshal(data, &created); err != nil {
				t.Fatal(err)
			}
			var got keyView
			data = alice.MustDo(t, r.url, http.MethodGet, "/alice/keys/"+name, nil, http.StatusOK)
			if err := json.Unmarshal(data, &got); err != nil {
				t.Fatal(err)
			}
			if got.Fingerprint != created.Fingerprint {
				t.Fatalf("%s via %s: fingerprint %s, created %s via %s", name, r.name, got.Fingerprint, created.Fingerprint, w.name)
			}
			if i%3 == 0 {
				alice.MustDo(t, r.url, http.MethodDelete, "/alice/keys/"+name, nil, http.StatusNoContent)
				alice.MustDo(t, w.url, http.MethodGet, "/alice/keys/"+name, nil, http.StatusNotFound)
				alice.MustDo(t, w.url, http.MethodGet, "/alice/keys/"+url.PathEscape(created.Fingerprint), nil, http.StatusNotFound)
			}
		}
	})

	t.Run("ProjectionsConvergeOnTheLog", func(t *testing.T) {
		// Writers on both replicas, several per account, so appends
		// conflict across replicas and both replicas' consumers see events
		// the other wrote.
		var clients []*client
		for i := range 3 {
			clients = append(clients, c.MustCreateAccount(t, c.replica[i%2], fmt.Sprintf("conv%d", i)))
		}
		var wg sync.WaitGroup
		errs := make(chan error, 100)
		for g := range 6 {
			cl := clients[g%len(clients)]
			wg.Go(func() {
				for i := range 15 {
					via := c.replica[(g+i)%2]
					name := fmt.Sprintf("g%d-%d", g, i)
					status, body, err := cl.Do(via.url, http.MethodPost, "/"+cl.login+"/keys",
						map[string]any{"name": name, "key": AuthorizedKey(t, MustKey(t), name)})
					if err != nil || status != http.StatusCreated {
						errs <- fmt.Errorf("create %s via %s: %d %s %v", name, via.name, status, body, err)
						return
					}
					if i%4 == 3 { // delete an earlier key through the other replica
						other := c.replica[(g+i+1)%2]
						old := fmt.Sprintf("g%d-%d", g, i-2)
						if status, body, err := cl.Do(other.url, http.MethodDelete, "/"+cl.login+"/keys/"+old, nil); err != nil || status != http.StatusNoContent {
							errs <- fmt.Errorf("delete %s via %s: %d %s %v", old, other.name, status, body, err)
							return
						}
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		if t.Failed() {
			return
		}
		Eventually(t, 60*time.Second, "projections caught up", func() error { return projectionsIdle(nc) })
		want := MustMatchLog(t, nc)
		// Both replicas answer the same, and what the log says.
		for _, cl := range clients {
			for _, r := range c.replica {
				var keys []keyView
				if err := json.Unmarshal(cl.MustDo(t, r.url, http.MethodGet, "/"+cl.login+"/keys", nil, http.StatusOK), &keys); err != nil {
					t.Fatal(err)
				}
				if got, want := keyNames(keys), accountKeyNames(want[cl.login]); !slices.Equal(got, want) {
					t.Errorf("%s via %s: keys %v, the log says %v", cl.login, r.name, got, want)
				}
			}
		}
	})

	// A read model that lags the log, as a bucket follower that fell
	// behind would serve it. The lag is simulated: the test rewinds the
	// document by compare-and-set to what it was 30 events earlier, because
	// a NATS follower cannot be made to fall behind on demand (stopping one
	// stops it answering, it does not serve old data). What is real: b's
	// server is a follower of the bucket, so b's document reads come from
	// a follower, and the log's tail is read from the stream leader.
	t.Run("ReadsStayConsistentWithARewoundReadModel", func(t *testing.T) {
		js, err := jetstream.New(nc)
		if err != nil {
			t.Fatal(err)
		}
		// Make the server b is connected to a follower of the bucket:
		// b's bucket reads are then served there (direct gets prefer the
		// local replica), and may lag the leader.
		bucket := "KV_" + projections.AccountsBucket
		Eventually(t, 30*time.Second, "bucket leader away from "+b.name+"'s server", func() error {
			leader := streamLeader(js, bucket)
			if leader == "" || leader != c.servers[1].Name() {
				return nil
			}
			_, _ = nc.Request("$JS.API.STREAM.LEADER.STEPDOWN."+bucket, nil, 5*time.Second)
			return fmt.Errorf("leader still %s", leader)
		})

		ctx := context.Background()
		kv, err := js.KeyValue(ctx, projections.AccountsBucket)
		if err != nil {
			t.Fatal(err)
		}
		bob := c.MustCreateAccount(t, a, "bob")
		// The test's own connection may read the bucket from a follower
		// that has not yet applied the account's document.
		var early jetstream.KeyValueEntry
		Eventually(t, 30*time.Second, "bob's document in the read model", func() error {
			early, err = kv.Get(ctx, "account.bob")
			return err
		})
		for i := range 30 {
			name := fmt.Sprintf("lag-%d", i)
			bob.MustDo(t, a.url, http.MethodPost, "/bob/keys", map[string]any{"name": name, "key": AuthorizedKey(t, MustKey(t), name)}, http.StatusCreated)
			bob.MustDo(t, b.url, http.MethodGet, "/bob/keys/"+name, nil, http.StatusOK)
		}

		// Simulated lag: put back the document from before those writes.
		// Reads through either replica still see every write (the log's
		// tail is read from the stream leader), and the next write repairs
		// the document. Let the projection's consumer finish with these
		// events first, so that it does not move the rewound document
		// forward again; a get may still come from a follower a revision
		// behind: rewind by compare-and-set until it takes.
		Eventually(t, 30*time.Second, "projections caught up", func() error { return projectionsIdle(nc) })
		Eventually(t, 30*time.Second, "the read model rewound", func() error {
			current, err := kv.Get(ctx, "account.bob")
			if err != nil {
				return err
			}
			_, err = kv.Update(ctx, "account.bob", early.Value(), current.Revision())
			return err
		})
		for _, r := range c.replica {
			var keys []keyView
			if err := json.Unmarshal(bob.MustDo(t, r.url, http.MethodGet, "/bob/keys", nil, http.StatusOK), &keys); err != nil {
				t.Fatal(err)
			}
			if got, want := len(keys), 31; got != want {
				t.Errorf("via %s with a lagging read model: %d keys, want %d", r.name, got, want)
			}
		}
		bob.MustDo(t, b.url, http.MethodPost, "/bob/keys", map[string]any{"name": "repair", "key": AuthorizedKey(t, MustKey(t), "repair")}, http.StatusCreated)
		Eventually(t, 30*time.Second, "projections caught up", func() error { return projectionsIdle(nc) })
		MustMatchLog(t, nc)
	})

	// A resource driver reports an instance's keys, then its removal; the
	// replica that takes the removal is killed (SIGKILL) mid-cascade. The
	// other gets the removal again when its AckWait (10 s) runs out and
	// finishes: one KeyDeleted per key, none doubled, none missing.
	// Last: it kills a replica.
	t.Run("CascadeSurvivesKillingItsReplica", func(t *testing.T) {
		// The intake records one key at a time per instance, some 65 ms
		// each on this cluster: 100 keys keep the test near 20 s.
		const n = 100
		const inst = "vm-cascade"
		driver := c.ConnectRole(t, bus.RoleDriver)
		djs := jsOf(t, driver)
		publishDriverKeys(t, djs, inst, n)
		admin := newClient(t, "admin", c.admin)
		Eventually(t, 60*time.Second, "the intake worked off", func() error { return intakeEmpty(nc) })
		keys, err := instanceKeys(admin, a, inst)
		if err != nil {
			t.Fatal(err)
		}
		if got := len(keys); got != n {
			t.Fatalf("%d keys of %s through the API, want %d", got, inst, n)
		}

		if _, err := djs.Publish(context.Background(), bus.IntakeRemovedSubject(inst), nil); err != nil {
			t.Fatal(err)
		}
		// Kill the replica that took the removal as soon as it logs so:
		// poll without pausing; the replicas append one KeyDeleted at a
		// time (KEYSD_CASCADE_BATCH=1), so the cascade takes some 100 round
		// trips to the cluster.
		var dead, survivor *replica
		for deadline := time.Now().Add(30 * time.Second); dead == nil; {
			if time.Now().After(deadline) {
				t.Fatal("no replica started the cascade within 30s")
			}
			for i, r := range c.replica {
				if logged(r, "cascade: started", inst) {
					dead, survivor = r, c.replica[1-i]
					break
				}
			}
		}
		dead.Kill(t)
		killed := time.Now()
		done := logged(dead, "cascade: instance keys deleted", inst)
		t.Logf("killed %s working the cascade (it had logged its end: %v); %d KeyDeleted recorded then",
			dead.name, done, countEvents(t, nc, inst)[domain.TypeKeyDeleted])
		if done {
			t.Fatalf("the kill of %s did not land mid-cascade: it had finished", dead.name)
		}

		// The survivor gets the removal again once the dead replica's
		// acknowledgement time runs out (AckWait, 10 s), and finishes.
		Eventually(t, 30*time.Second, "the instance's keys gone through "+survivor.name, func() error {
			keys, err := instanceKeys(admin, survivor, inst)
			if err == nil && len(keys) != 0 {
				err = fmt.Errorf("%d keys left", len(keys))
			}
			return err
		})
		Eventually(t, 30*time.Second, "the cascade acknowledged", func() error { return consumerIdle(nc, bus.CascadeConsumer) })
		t.Logf("cascade finished by %s %s after the kill", survivor.name, time.Since(killed).Round(100*time.Millisecond))
		deleted := map[string]int{}
		counts := map[string]int{}
		for _, r := range instanceEvents(t, nc, inst) {
			counts[r.Event.Type]++
			if r.Event.Type == domain.TypeKeyDeleted {
				var p domain.KeyDeleted
				if err := r.Event.Decode(&p); err != nil {
					t.Fatal(err)
				}
				deleted[p.Name]++
			}
		}
		if got := counts[domain.TypeInstanceRemoved]; got != 1 {
			t.Errorf("%d InstanceRemoved, want 1", got)
		}
		if got, want := counts[domain.TypeKeyDeleted], n; got != want {
			t.Errorf("%d KeyDeleted for %s, want %d", got, inst, want)
		}
		if got, want := len(deleted), n; got != want {
			t.Errorf("%d distinct keys deleted, want %d", got, want)
		}
		for name, k := range deleted {
			if k != 1 {
				t.Errorf("key %s deleted %d times", name, k)
			}
		}
	})
}

// streamLeader returns the name of the server leading stream, or "".
func streamLeader(js jetstream.JetStream, stream string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return ""
	}
	info, err := s.Info(ctx)
	if err != nil || info.Cluster == nil {
		return ""
	}
	return info.Cluster.Leader
}

func keyNames(keys []keyView) []string {
	var out []string
	for _, k := range keys {
		out = append(out, k.Name)
	}
	slices.Sort(out)
	return out
}

func accountKeyNames(a *domain.Account) []string {
	var out []string
	if a != nil {
		for _, k := range a.Keys {
			out = append(out, k.Name)
		}
	}
	slices.Sort(out)
	return out
}
