package projections_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/infrakeys/infrakeys/bus"
	"github.com/infrakeys/infrakeys/domain"
	"github.com/infrakeys/infrakeys/projections"
	"github.com/infrakeys/infrakeys/sealing"
)

// An intake message delivered again (keysd crashed after recording its
// outcome, before acknowledging it) finds its outcome and records nothing
// new, whatever the outcome was; the sealed half of a repeated key is not
// left behind.
func TestIntake_DeliveredAgain(t *testing.T) {
	e := MustEnv(t)
	ctx := context.Background()
	infra, err := projections.OpenInfraKeys(ctx, e.conn, e.log, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	dataKeys, err := bus.OpenDataKeys(ctx, e.conn)
	if err != nil {
		t.Fatal(err)
	}
	master, err := sealing.NewMasterKey()
	if err != nil {
		t.Fatal(err)
	}
	svc := &domain.IntakeService{Repo: infra, Sealer: sealing.NewVault(sealing.NewKeyring(master), dataKeys), AppendOnce: e.log.AppendOnce, IntakeEvent: e.log.IntakeEvent}

	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	body := func(v map[string]any) []byte { b, _ := json.Marshal(v); return b }
	messages := []struct {
		id, instance string
		body         []byte
		want         string
	}{
		{"seq:1", "vm-1", body(map[string]any{"keyName": "root", "privateKey": string(pem.EncodeToMemory(block))}), domain.OutcomeCreated},
		{"seq:2", "vm-1", body(map[string]any{"keyName": "pool", "scope": "shared", "privateKey": string(pem.EncodeToMemory(block))}), domain.OutcomeCreated},
		{"seq:3", "vm-1", []byte("not a key"), domain.OutcomeRejected},
		{"seq:4", "bad/instance", body(map[string]any{"keyName": "x"}), domain.OutcomeRejected},
	}
	for _, m := range messages {
		first, err := svc.AddKey(ctx, m.id, m.instance, m.body, domain.Meta{Actor: "driver"})
		if err != nil {
			t.Fatal(err)
		}
		if first.Outcome != m.want {
			t.Fatalf("%s: outcome %+v, want %s", m.id, first, m.want)
		}
		seq, err := e.log.LastSeq(ctx)
		if err != nil {
			t.Fatal(err)
		}
		secrets, err := dataKeys.IDs(ctx)
		if err != nil {
			t.Fatal(err)
		}
		again, err := svc.AddKey(ctx, m.id, m.instance, m.body, domain.Meta{Actor: "driver"})
		if err != nil {
			t.Fatal(err)
		}
		if again.Outcome != first.Outcome || again.EventID != first.EventID {
			t.Errorf("%s delivered again: %+v, first %+v", m.id, again, first)
		}
		if after, _ := e.log.LastSeq(ctx); after != seq {
			t.Errorf("%s delivered again appended %d events", m.id, after-seq)
		}
		if now, _ := dataKeys.IDs(ctx); len(now) != len(secrets) {
			t.Errorf("%s delivered again left %d data keys, had %d", m.id, len(now), len(secrets))
		}
	}
	// Rejections are not kept in the instance's read model: a driver that
	// keeps sending bad messages does not make it grow.
	for i := 0; i < 20; i++ {
		if _, err := svc.AddKey(ctx, fmt.Sprintf("seq:%d", 100+i), "vm-1", []byte("garbage"), domain.Meta{}); err != nil {
			t.Fatal(err)
		}
	}
	in, err := infra.LoadInstance(ctx, "vm-1")
	if err != nil {
		t.Fatal(err)
	}
	if len(in.Intake) != 1 {
		t.Errorf("the instance keeps %d intake records, want 1 (the created key): %v", len(in.Intake), in.Intake)
	}
	// The removal, announced twice by the resource manager.
	r1, err := svc.RemoveInstance(ctx, "seq:5", "vm-1", domain.Meta{})
	if err != nil {
		t.Fatal(err)
	}
	r2, err := svc.RemoveInstance(ctx, "seq:6", "vm-1", domain.Meta{})
	if err != nil {
		t.Fatal(err)
	}
	if r1.EventID == "" || r1.Duplicate || !r2.Duplicate || r2.OriginalEventID != r1.EventID {
		t.Errorf("two announcements: %+v then %+v, want one InstanceRemoved and a duplicate of it", r1, r2)
	}
	var causes []string
	if _, err := e.log.Replay(ctx, bus.ReplayOptions{}, func(r bus.Recorded) error {
		if strings.HasPrefix(r.Event.CausationID, domain.IntakeCausePrefix) {
			causes = append(causes, r.Event.CausationID)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(causes) != 26 {
		t.Errorf("%d outcome events caused by intake, want one for each of 26 messages (the second announcement an IntakeDuplicate): %v", len(causes), causes)
	}
}
