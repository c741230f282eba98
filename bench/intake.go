package main

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"path/filepath"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/crypto/ssh"

	"github.com/infrakeys/infrakeys/bus"
	"github.com/infrakeys/infrakeys/domain"
)

// intakeRound is how many keys the intake phase publishes before it
// waits for their outcomes: the per-key cost is measured per round.
const intakeRound = 100

// measureIntake gives one instance cfg.IntakeKeys keys through the driver
// intake, a round of intakeRound at a time (each key with its private
// half, sealed by keysd), waiting for every outcome of a round before the
// next: per-key cost of the first round against the last, which is flat
// when an instance's read model grows linearly.
func (b *bench) measureIntake(ctx context.Context, rep *report) error {
	natsAddr, err := freeAddr()
	if err != nil {
		return err
	}
	dataDir := b.work + "/intake"
	k, _, err := b.startKeysd(ctx, dataDir, "KEYSD_NATS_LISTEN="+natsAddr)
	if err != nil {
		return err
	}
	defer k.stop()
	nc, err := bus.ConnectRole("nats://"+natsAddr, bus.RoleDriver, bus.SeedFile(filepath.Join(dataDir, "nats"), bus.RoleDriver))
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	// Outcomes come back by request-reply to an inbox of ours.
	inbox := nc.NewRespInbox()
	outcomes := make(chan domain.IntakeOutcome, intakeRound)
	sub, err := nc.Subscribe(inbox, func(m *nats.Msg) {
		var o domain.IntakeOutcome
		if json.Unmarshal(m.Data, &o) == nil {
			outcomes <- o
		}
	})
	if err != nil {
		return err
	}
	defer sub.Unsubscribe()

	const instance = "bench-intake"
	rounds := (b.cfg.IntakeKeys + intakeRound - 1) / intakeRound
	var first, last time.Duration
	b.logf("intake: a driver publishes %d keys for %s, %d at a time", b.cfg.IntakeKeys, instance, intakeRound)
	for r := range rounds {
		bodies := make([][]byte, 0, intakeRound)
		for i := r * intakeRound; i < min((r+1)*intakeRound, b.cfg.IntakeKeys); i++ {
			priv, pub := newKey()
			block, err := ssh.MarshalPrivateKey(priv, "")
			if err != nil {
				return err
			}
			body, _ := json.Marshal(domain.DriverKey{Name: fmt.Sprintf("key%05d", i), PrivateKey: string(pem.EncodeToMemory(block)), PublicKey: authorizedKey(pub)})
			bodies = append(bodies, body)
		}
		start := time.Now()
		for _, body := range bodies {
			m := nats.NewMsg(bus.IntakeKeySubject(instance))
			m.Data = body
			m.Header.Set(bus.HeaderReplyTo, inbox)
			if _, err := js.PublishMsg(ctx, m); err != nil {
				return fmt.Errorf("intake publish: %w", err)
			}
		}
		for range bodies {
			select {
			case o := <-outcomes:
				if o.Outcome != domain.OutcomeCreated {
					return fmt.Errorf("intake outcome %+v", o)
				}
			case <-time.After(2 * time.Minute):
				return fmt.Errorf("round %d: no outcome for 2 minutes", r)
			}
		}
		took := time.Since(start) / time.Duration(len(bodies))
		if r == 0 {
			first = took
		}
		last = took
		if (r+1)%10 == 0 {
			b.logf("intake: %d keys, %s per key in the last round", (r+1)*intakeRound, took.Round(10*time.Microsecond))
		}
	}
	rep.value(fmt.Sprintf("driver intake into one instance: per key, keys 1-%d", intakeRound), first.Round(10*time.Microsecond).String(), "", "")
	q := float64(last) / float64(first)
	rep.check(fmt.Sprintf("driver intake into one instance: per key, the last %d of %d (ratio to the first)", intakeRound, b.cfg.IntakeKeys),
		fmt.Sprintf("%s (%.2f)", last.Round(10*time.Microsecond), q), "flat (<= 1.3)", q <= 1.3)
	return nil
}
