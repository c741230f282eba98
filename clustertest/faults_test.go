package clustertest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/infrakeys/infrakeys/bus"
	"github.com/infrakeys/infrakeys/domain"
	"github.com/infrakeys/infrakeys/http/httpsig"
)

// TestFaultsUnderLoad writes keys through both replicas from several
// goroutines, kills the NATS server leading the event stream (SIGKILL),
// then kills a keysd replica with SIGKILL, and requires afterwards that every
// acknowledged write is there exactly once, through the API and in the
// log, that nothing is doubled, and that the survivors serve.
func TestFaultsUnderLoad(t *testing.T) {
	c := MustStartCluster(t)
	nc := c.Connect(t)
	var accounts []*client
	for i := range 3 {
		accounts = append(accounts, c.MustCreateAccount(t, c.replica[i%2], fmt.Sprintf("load%d", i)))
	}
	lb := &balancer{replicas: c.replica, down: make([]atomic.Bool, len(c.replica))}

	stop := make(chan struct{})
	var wg sync.WaitGroup
	for g := range 6 {
		cl := accounts[g%len(accounts)]
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				name := fmt.Sprintf("w%d-%d", g, i)
				key := MustKey(t)
				lb.create(t, cl, g+i, name, AuthorizedKey(t, key, name), httpsig.MD5Fingerprint(MustSSHPublic(t, key)))
			}
		})
	}
	waitAcked := func(more int64, what string) {
		t.Helper()
		target := lb.acked.Load() + more
		Eventually(t, 90*time.Second, what, func() error {
			if n := lb.acked.Load(); n < target {
				return fmt.Errorf("%d acknowledged writes, waiting for %d", n, target)
			}
			return nil
		})
	}

	// The stream leader on the server keysd-a is connected to: its death
	// then moves the leader and makes keysd-a reconnect elsewhere.
	js := jsOf(t, nc)
	Eventually(t, 60*time.Second, "stream leader on "+c.servers[0].Name(), func() error {
		leader := streamLeader(js, bus.StreamName)
		if leader == c.servers[0].Name() {
			return nil
		}
		_, _ = nc.Request("$JS.API.STREAM.LEADER.STEPDOWN."+bus.StreamName, nil, 5*time.Second)
		return fmt.Errorf("leader %q", leader)
	})
	waitAcked(60, "load running")
	leader := streamLeader(js, bus.StreamName)
	i := c.ServerNamed(leader)
	if i < 0 {
		t.Fatalf("no running server leads %s (leader %q)", bus.StreamName, leader)
	}
	// SIGKILL, not a graceful shutdown: a graceful one hands its raft
	// leaderships over first, a crash leaves the others to notice the
	// missed heartbeats and elect.
	t.Logf("killing %s (SIGKILL), leader of %s", leader, bus.StreamName)
	c.servers[i].Kill(t)
	died := time.Now()
	waitAcked(60, "writes after the stream leader's server died")
	t.Logf("60 more writes acknowledged %s after the kill", time.Since(died).Round(100*time.Millisecond))
	if got := streamLeader(jsOf(t, nc), bus.StreamName); got == leader || got == "" {
		t.Errorf("stream leader after the kill: %q", got)
	}

	dead := c.replica[0]
	t.Logf("killing %s", dead.name)
	lb.down[0].Store(true) // the load balancer's health check notices
	dead.Kill(t)
	killed := time.Now()
	waitAcked(60, "writes after a keysd replica died")
	close(stop)
	wg.Wait()

	// The survivor's projection consumers take over what the dead replica
	// held unacknowledged, after the consumers' AckWait.
	Eventually(t, 60*time.Second, "projections caught up on the survivor", func() error { return projectionsIdle(nc) })
	t.Logf("projections caught up %s after the replica died", time.Since(killed).Round(100*time.Millisecond))

	t.Logf("requests %d, acknowledged %d (of which %d recognized after a retry answered 409), retried attempts %d, given up %d, slowest write %s",
		lb.requests.Load(), lb.acked.Load(), lb.recognized.Load(), lb.retries.Load(), lb.failed.Load(), time.Duration(lb.slowest.Load()).Round(time.Millisecond))
	if n := lb.failed.Load(); n > 5 {
		t.Errorf("%d writes given up, want a few at most", n)
	}

	// Every acknowledged write is in the log exactly once, and nothing is
	// doubled: each fingerprint and each name has one KeyCreated.
	state, events := logState(t, nc)
	created := map[string]int{}
	names := map[string]int{}
	for _, r := range events {
		if r.Event.Type != domain.TypeKeyCreated {
			continue
		}
		var p domain.KeyCreated
		if err := r.Event.Decode(&p); err != nil {
			t.Fatal(err)
		}
		created[r.Event.Owner.ID+" "+p.Fingerprint]++
		names[r.Event.Owner.ID+" "+p.Name]++
	}
	for k, n := range created {
		if n != 1 {
			t.Errorf("key %s created %d times in the log", k, n)
		}
	}
	for k, n := range names {
		if n != 1 {
			t.Errorf("name %s created %d times in the log", k, n)
		}
	}
	lb.mu.Lock()
	acked := lb.ackedKeys
	lb.mu.Unlock()
	for _, w := range acked {
		if created[w.login+" "+w.fingerprint] != 1 {
			t.Errorf("acknowledged write %s/%s (%s) is not in the log once", w.login, w.name, w.fingerprint)
		}
	}

	// Through the API of the survivor: every acknowledged key, once, and
	// exactly what the log says.
	survivor := c.replica[1]
	for _, cl := range accounts {
		var keys []keyView
		if err := json.Unmarshal(cl.MustDo(t, survivor.url, http.MethodGet, "/"+cl.login+"/keys", nil, http.StatusOK), &keys); err != nil {
			t.Fatal(err)
		}
		seen := map[string]int{}
		for _, k := range keys {
			seen[k.Name+" "+k.Fingerprint]++
		}
		for _, w := range acked {
			if w.login == cl.login && seen[w.name+" "+w.fingerprint] != 1 {
				t.Errorf("acknowledged write %s/%s: listed %d times", w.login, w.name, seen[w.name+" "+w.fingerprint])
			}
		}
		if got, want := len(keys), len(state[cl.login].Keys); got != want {
			t.Errorf("%s: %d keys listed, the log has %d", cl.login, got, want)
		}
	}
	MustMatchLog(t, nc)

	// The survivors keep serving: a write and a read right after it.
	cl := accounts[0]
	cl.MustDo(t, survivor.url, http.MethodPost, "/"+cl.login+"/keys", map[string]any{"name": "after", "key": AuthorizedKey(t, MustKey(t), "after")}, http.StatusCreated)
	cl.MustDo(t, survivor.url, http.MethodGet, "/"+cl.login+"/keys/after", nil, http.StatusOK)
}

// balancer spreads writes over the replicas as a load balancer in front of
// them would, and retries as a careful client does: a request that got no
// answer or a 5xx is sent again, unchanged, to the next replica. A key
// create is idempotent in effect: if an earlier attempt landed, the retry
// answers 409 and the key is there under the same name with the same
// fingerprint; that counts as acknowledged ("recognized"). A 409 on the
// first attempt, or a 409 whose key is not ours, is a failure.
type balancer struct {
	replicas []*replica
	down     []atomic.Bool

	requests, acked, recognized, retries, failed atomic.Int64
	slowest                                      atomic.Int64 // nanoseconds, first attempt to acknowledgement

	mu        sync.Mutex
	ackedKeys []write
}

type write struct{ login, name, fingerprint string }

func (lb *balancer) pick(n int) *replica {
	for range lb.replicas {
		i := n % len(lb.replicas)
		if !lb.down[i].Load() {
			return lb.replicas[i]
		}
		n++
	}
	return lb.replicas[n%len(lb.replicas)]
}

func (lb *balancer) create(tb testing.TB, cl *client, n int, name, key, fingerprint string) {
	body := map[string]any{"name": name, "key": key}
	start := time.Now()
	defer func() {
		took := int64(time.Since(start))
		for old := lb.slowest.Load(); took > old && !lb.slowest.CompareAndSwap(old, took); old = lb.slowest.Load() {
		}
	}()
	deadline := time.Now().Add(60 * time.Second)
	for attempt := 0; time.Now().Before(deadline); attempt++ {
		if attempt > 0 {
			lb.retries.Add(1)
			time.Sleep(time.Duration(min(attempt, 10)) * 50 * time.Millisecond)
		}
		via := lb.pick(n + attempt)
		lb.requests.Add(1)
		status, data, err := cl.Do(via.url, http.MethodPost, "/"+cl.login+"/keys", body)
		switch {
		case err != nil || status >= 500:
			continue
		case status == http.StatusCreated:
			var k keyView
			if err := json.Unmarshal(data, &k); err != nil {
				tb.Errorf("create %s: %v", name, err)
				return
			}
			lb.ack(cl.login, name, k.Fingerprint, false)
			return
		case status == http.StatusConflict && attempt > 0:
			// Did an earlier attempt land? Ask any replica.
			status, data, err := cl.Do(lb.pick(n+attempt+1).url, http.MethodGet, "/"+cl.login+"/keys/"+name, nil)
			if err != nil || status >= 500 {
				continue
			}
			var k keyView
			if status == http.StatusOK && json.Unmarshal(data, &k) == nil && k.Fingerprint == fingerprint {
				lb.ack(cl.login, name, k.Fingerprint, true)
				return
			}
			tb.Errorf("create %s: retry answered 409 but the key is not ours: %d %s", name, status, data)
			lb.failed.Add(1)
			return
		default:
			tb.Errorf("create %s via %s: %d %s", name, via.name, status, data)
			lb.failed.Add(1)
			return
		}
	}
	lb.failed.Add(1)
}

func (lb *balancer) ack(login, name, fingerprint string, recognized bool) {
	lb.acked.Add(1)
	if recognized {
		lb.recognized.Add(1)
	}
	lb.mu.Lock()
	lb.ackedKeys = append(lb.ackedKeys, write{login, name, fingerprint})
	lb.mu.Unlock()
}
