package bus_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/infrakeys/infrakeys/bus"
	"github.com/infrakeys/infrakeys/domain"
	"github.com/infrakeys/infrakeys/projections"
	"github.com/infrakeys/infrakeys/sealing"
)

// TestSubstituteOverNATS asks for a substitution by request-reply, as the
// resource manager does on the bus.
func TestSubstituteOverNATS(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c, err := bus.Connect(ctx, bus.Config{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	log, err := bus.OpenEventLog(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	infra, err := projections.OpenInfraKeys(ctx, c, log, logger)
	if err != nil {
		t.Fatal(err)
	}
	tokens, err := projections.OpenTokens(ctx, c, log, logger)
	if err != nil {
		t.Fatal(err)
	}
	dk, err := bus.OpenDataKeys(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	mk, err := sealing.NewMasterKey()
	if err != nil {
		t.Fatal(err)
	}
	keys := &domain.InfraKeyService{Repo: infra, Sealer: sealing.NewVault(sealing.NewKeyring(mk), dk)}
	tokenSvc := &domain.TokenService{Repo: tokens}
	sub, err := bus.SubscribeSubstitute(ctx, c, tokenSvc, keys, logger)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Drain() })

	k, err := keys.CreateShared(ctx, "vm-key", "", domain.KeyMaterial{Generate: "ed25519"}, domain.Meta{Actor: "test"})
	if err != nil {
		t.Fatal(err)
	}
	private, _, err := tokenSvc.Create(ctx, "rm", []string{domain.RolePrivateRead}, domain.Meta{Actor: "test"})
	if err != nil {
		t.Fatal(err)
	}
	reader, _, err := tokenSvc.Create(ctx, "reader", []string{domain.RoleKeysRead}, domain.Meta{Actor: "test"})
	if err != nil {
		t.Fatal(err)
	}

	ask := func(t *testing.T, token string, req bus.SubstituteRequest) bus.SubstituteReply {
		t.Helper()
		data, _ := json.Marshal(req)
		m := nats.NewMsg(bus.SubstituteSubject)
		m.Data = data
		switch {
		case strings.Contains(token, " "): // a whole Authorization value
			m.Header.Set("Authorization", token)
		case token != "":
			m.Header.Set("Authorization", "Bearer "+token)
		}
		var resp *nats.Msg
		for attempt := 0; ; attempt++ { // the responder subscribes asynchronously
			resp, err = c.NC.RequestMsg(m, 5*time.Second)
			if err == nil || attempt > 50 {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if err != nil {
			t.Fatal(err)
		}
		var out bus.SubstituteReply
		if err := json.Unmarshal(resp.Data, &out); err != nil {
			t.Fatal(err)
		}
		return out
	}
	props := map[string]any{
		"ssh":   map[string]any{"type": "key", "value": "vm-key"},
		"other": map[string]any{"type": "string", "value": "x"},
	}
	t.Run("OK", func(t *testing.T) {
		out := ask(t, private, bus.SubstituteRequest{Properties: props})
		if out.Error != nil {
			t.Fatalf("error %+v", out.Error)
		}
		got, _ := out.Properties["ssh"].(map[string]any)
		if got["keyName"] != "vm-key" || got["publicKey"] != k.PublicKey || !strings.Contains(got["privateKey"].(string), "PRIVATE KEY") || got["value"] != "vm-key" {
			t.Errorf("substituted %v", got)
		}
		if other, _ := out.Properties["other"].(map[string]any); other["value"] != "x" {
			t.Errorf("other property changed: %v", out.Properties["other"])
		}
	})
	t.Run("ErrMissingNames", func(t *testing.T) {
		out := ask(t, private, bus.SubstituteRequest{Properties: map[string]any{
			"a": map[string]any{"type": "key", "value": "nope1"},
			"b": map[string]any{"type": "key", "value": "vm-key"},
			"c": map[string]any{"type": "key", "value": "nope2"},
		}})
		if out.Error == nil || out.Error.Code != domain.ENOTFOUND || !strings.Contains(out.Error.Message, "nope1, nope2") || out.Properties != nil {
			t.Errorf("got %+v", out)
		}
	})
	t.Run("SchemeCaseInsensitive", func(t *testing.T) {
		// RFC 7235: the scheme name is case-insensitive.
		for _, scheme := range []string{"bearer", "BEARER", "bEaReR"} {
			if out := ask(t, scheme+" "+private, bus.SubstituteRequest{Properties: props}); out.Error != nil {
				t.Errorf("%s: %+v", scheme, out.Error)
			}
		}
	})
	t.Run("ErrOtherScheme", func(t *testing.T) {
		if out := ask(t, "Basic "+private, bus.SubstituteRequest{Properties: props}); out.Error == nil || out.Error.Code != domain.EUNAUTHENTICATED {
			t.Errorf("got %+v", out)
		}
	})
	t.Run("ErrNoToken", func(t *testing.T) {
		if out := ask(t, "", bus.SubstituteRequest{Properties: props}); out.Error == nil || out.Error.Code != domain.EUNAUTHENTICATED {
			t.Errorf("got %+v", out)
		}
	})
	t.Run("ErrWrongRole", func(t *testing.T) {
		if out := ask(t, reader, bus.SubstituteRequest{Properties: props}); out.Error == nil || out.Error.Code != domain.EFORBIDDEN {
			t.Errorf("got %+v", out)
		}
	})
}
