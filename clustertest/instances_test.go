package clustertest

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/crypto/ssh"

	"github.com/infrakeys/infrakeys/bus"
	"github.com/infrakeys/infrakeys/domain"
)

// lmInstances is the LM route of an instance's keys.
const lmInstances = "/api/resource-manager/infrastructure-keys/instances/"

// ConnectRole dials the cluster as role (driver, manager, audit) with its
// credentials from deploy/nats/creds, as that party connects.
func (c *cluster) ConnectRole(tb testing.TB, role string) *nats.Conn {
	tb.Helper()
	nc, err := bus.ConnectRole(c.URLs(), role, filepath.Join("../deploy/nats/creds", role+".nk"),
		nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(nc.Close)
	return nc
}

// publishDriverKeys has a resource driver report n keys of instance, each
// with its private half, and waits for the intake stream's acks.
func publishDriverKeys(tb testing.TB, js jetstream.JetStream, instance string, n int) {
	tb.Helper()
	var futures []jetstream.PubAckFuture
	for i := range n {
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			tb.Fatal(err)
		}
		block, err := ssh.MarshalPrivateKey(priv, "")
		if err != nil {
			tb.Fatal(err)
		}
		body, err := json.Marshal(map[string]any{"keyName": fmt.Sprintf("key-%04d", i), "privateKey": string(pem.EncodeToMemory(block))})
		if err != nil {
			tb.Fatal(err)
		}
		f, err := js.PublishAsync(bus.IntakeKeySubject(instance), body)
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

// instanceKeys lists instance's keys through the LM API of r.
func instanceKeys(cl *client, r *replica, instance string) ([]map[string]any, error) {
	status, data, err := cl.Do(r.url, http.MethodGet, lmInstances+instance, nil)
	if err != nil {
		return nil, err
	}
	if status != http.StatusOK {
		return nil, fmt.Errorf("GET %s%s: %d %s", r.url, lmInstances+instance, status, data)
	}
	var keys []map[string]any
	err = json.Unmarshal(data, &keys)
	return keys, err
}

// instanceEvents replays the events of instance from the log.
func instanceEvents(tb testing.TB, nc *nats.Conn, instance string) []bus.Recorded {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	log, err := bus.AttachEventLog(ctx, nc)
	if err != nil {
		tb.Fatal(err)
	}
	var out []bus.Recorded
	_, err = log.Replay(ctx, bus.ReplayOptions{Subjects: []string{bus.OwnerSubject(domain.InstanceOwner(instance))}}, func(r bus.Recorded) error {
		out = append(out, r)
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	return out
}

// countEvents counts the events of instance in the log by type.
func countEvents(tb testing.TB, nc *nats.Conn, instance string) map[string]int {
	tb.Helper()
	counts := map[string]int{}
	for _, r := range instanceEvents(tb, nc, instance) {
		counts[r.Event.Type]++
	}
	return counts
}

// intakeEmpty reports an error until keysd has worked off every message of
// the intake stream (it removes each once recorded).
func intakeEmpty(nc *nats.Conn) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	s, err := js.Stream(ctx, bus.IntakeStream)
	if err != nil {
		return err
	}
	info, err := s.Info(ctx)
	if err != nil {
		return err
	}
	if n := info.State.Msgs; n > 0 {
		return fmt.Errorf("%d intake messages left", n)
	}
	return nil
}

// logged reports whether r has logged a line with message msg about
// instance.
func logged(r *replica, msg, instance string) bool {
	m, id := fmt.Sprintf(`"msg":%q`, msg), fmt.Sprintf(`"instanceId":%q`, instance)
	for line := range strings.Lines(r.stderr.String()) {
		if strings.Contains(line, m) && strings.Contains(line, id) {
			return true
		}
	}
	return false
}
