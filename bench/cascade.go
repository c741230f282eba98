package main

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"path/filepath"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/crypto/ssh"

	"github.com/infrakeys/infrakeys/bus"
	"github.com/infrakeys/infrakeys/domain"
)

const instancesPath = "/api/resource-manager/infrastructure-keys/instances/"

// measureCascade gives one instance cfg.CascadeKeys keys through the
// driver intake, as drivers do (each with its private half, sealed by
// keysd), then announces the instance removed and measures the time from
// that request to the API listing none of its keys.
func (b *bench) measureCascade(ctx context.Context) (time.Duration, error) {
	natsAddr, err := freeAddr()
	if err != nil {
		return 0, err
	}
	dataDir := b.work + "/cascade"
	k, _, err := b.startKeysd(ctx, dataDir, "KEYSD_NATS_LISTEN="+natsAddr)
	if err != nil {
		return 0, err
	}
	defer k.stop()

	nc, err := bus.ConnectRole("nats://"+natsAddr, bus.RoleDriver, bus.SeedFile(filepath.Join(dataDir, "nats"), bus.RoleDriver))
	if err != nil {
		return 0, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return 0, err
	}
	const instance = "bench-vm"
	b.logf("cascade: a driver publishes %d keys for %s", b.cfg.CascadeKeys, instance)
	for i := range b.cfg.CascadeKeys {
		priv, pub := newKey()
		block, err := ssh.MarshalPrivateKey(priv, "")
		if err != nil {
			return 0, err
		}
		body, _ := json.Marshal(domain.DriverKey{Name: fmt.Sprintf("key%d", i), PrivateKey: string(pem.EncodeToMemory(block)), PublicKey: authorizedKey(pub)})
		if _, err := js.Publish(ctx, bus.IntakeKeySubject(instance), body); err != nil {
			return 0, fmt.Errorf("intake publish: %w", err)
		}
	}
	count := func() (int, error) {
		data, err := mustDo(ctx, b.admin, "GET", k.URL+instancesPath+instance, nil, http.StatusOK)
		if err != nil {
			return 0, err
		}
		var keys []json.RawMessage
		err = json.Unmarshal(data, &keys)
		return len(keys), err
	}
	for deadline := time.Now().Add(5 * time.Minute); ; {
		n, err := count()
		if err != nil {
			return 0, err
		}
		if n == b.cfg.CascadeKeys {
			break
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("the instance has %d keys after 5 minutes, want %d", n, b.cfg.CascadeKeys)
		}
		time.Sleep(100 * time.Millisecond)
	}

	b.logf("cascade: removing %s", instance)
	start := time.Now()
	if _, err := mustDo(ctx, b.admin, "DELETE", k.URL+instancesPath+instance, nil, http.StatusAccepted); err != nil {
		return 0, err
	}
	for deadline := start.Add(time.Minute); ; {
		n, err := count()
		if err != nil {
			return 0, err
		}
		if n == 0 {
			return time.Since(start), nil
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("the instance still has %d keys a minute after its removal", n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
