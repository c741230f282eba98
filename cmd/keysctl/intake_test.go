package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/infrakeys/infrakeys/bus"
	"github.com/infrakeys/infrakeys/domain"
)

// MustOutcome decodes what keysctl printed as an intake outcome.
func MustOutcome(tb testing.TB, out string) bus.OutcomeReply {
	tb.Helper()
	var r bus.OutcomeReply
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		tb.Fatalf("outcome %q: %v", out, err)
	}
	return r
}

// fingerprintOf is the MD5 fingerprint of an OpenSSH public key file.
func fingerprintOf(tb testing.TB, pubFile string) string {
	tb.Helper()
	data, err := os.ReadFile(pubFile)
	if err != nil {
		tb.Fatal(err)
	}
	pub, _, _, _, err := ssh.ParseAuthorizedKey(data)
	if err != nil {
		tb.Fatal(err)
	}
	return strings.TrimPrefix(ssh.FingerprintLegacyMD5(pub), "MD5:")
}

// The driver's and the resource manager's verbs against a real keysd, with
// the roles' NKeys, and the roles' refusals.
func TestDriverAndManagerVerbs(t *testing.T) {
	dir := t.TempDir()
	dataDir := filepath.Join(dir, "data")
	natsAddr := freeAddr(t)
	MustRunKeysd(t, []string{"KEYSD_DATA_DIR=" + dataDir, "KEYSD_NATS_LISTEN=" + natsAddr})
	seeds := filepath.Join(dataDir, "nats")
	as := func(role string) map[string]string {
		return map[string]string{"KEYSCTL_NATS_URL": "nats://" + natsAddr, "KEYSCTL_NATS_NKEY": bus.SeedFile(seeds, role)}
	}
	driver, manager := as(bus.RoleDriver), as(bus.RoleManager)

	t.Run("publish-key, JSON form, private half from a file", func(t *testing.T) {
		priv, pub := MustKeyFiles(t, dir, "root")
		out, err := keysctl(t, driver, "driver", "publish-key", "vm-1", "--name", "root", "--private-key", priv, "--msg-id", "vm-1/root")
		if err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		o := MustOutcome(t, out)
		if o.Outcome != domain.OutcomeCreated || o.IntakeID != "msg:vm-1/root" || o.Name != "root" || o.Scope != domain.ScopeInstance || o.Fingerprint != fingerprintOf(t, pub) {
			t.Fatalf("outcome %s", out)
		}
		asked, err := keysctl(t, driver, "driver", "outcome", "vm-1", "--msg-id", "vm-1/root")
		if err != nil || MustOutcome(t, asked) != o {
			t.Fatalf("asked: %v %s, want %s", err, asked, out)
		}
	})
	t.Run("publish-key, LM string form", func(t *testing.T) {
		priv, pub := MustKeyFiles(t, dir, "lm")
		out, err := keysctl(t, driver, "driver", "publish-key", "vm-1", "--name", "lm", "--private-key", priv, "--public-key", pub, "--string-form")
		if err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		if o := MustOutcome(t, out); o.Outcome != domain.OutcomeCreated || o.Name != "lm" || o.Fingerprint != fingerprintOf(t, pub) {
			t.Fatalf("outcome %s", out)
		}
		if out, err := keysctl(t, driver, "driver", "publish-key", "vm-1", "--name", "x", "--public-key", pub, "--string-form", "--scope", "shared"); err == nil || !strings.Contains(err.Error(), "string form") {
			t.Errorf("string form of a shared key: %v %s", err, out)
		}
	})
	t.Run("publish-key, shared scope, asked for by message id alone", func(t *testing.T) {
		_, pub := MustKeyFiles(t, dir, "pool")
		out, err := keysctl(t, driver, "driver", "publish-key", "vm-1", "--name", "pool", "--public-key", pub, "--scope", "shared", "--msg-id", "vm-1/pool")
		if err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		o := MustOutcome(t, out)
		if o.Outcome != domain.OutcomeCreated || o.Scope != domain.ScopeShared {
			t.Fatalf("outcome %s", out)
		}
		asked, err := keysctl(t, manager, "manager", "outcome", "vm-1", "--msg-id", "vm-1/pool")
		if err != nil || MustOutcome(t, asked) != o {
			t.Fatalf("asked: %v %s, want %s", err, asked, out)
		}
	})
	t.Run("a rejection is printed, and fails", func(t *testing.T) {
		bad := filepath.Join(dir, "bad.pub")
		if err := os.WriteFile(bad, []byte("ssh-ed25519 AAAA bad\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := keysctl(t, driver, "driver", "publish-key", "vm-1", "--name", "bad", "--public-key", bad)
		if err == nil || !strings.Contains(err.Error(), "invalid-key") {
			t.Fatalf("got %v %s", err, out)
		}
		if o := MustOutcome(t, out[:strings.LastIndex(out, "}")+1]); o.Outcome != domain.OutcomeRejected || o.Reason != domain.ReasonInvalidKey {
			t.Fatalf("outcome %s", out)
		}
	})
	t.Run("publish-key with an expiry", func(t *testing.T) {
		_, pub := MustKeyFiles(t, dir, "temp")
		expires := time.Now().Add(time.Hour).UTC().Truncate(time.Second).Format(time.RFC3339)
		out, err := keysctl(t, driver, "driver", "publish-key", "vm-1", "--name", "temp", "--public-key", pub, "--expires", expires)
		if err != nil || MustOutcome(t, out).Outcome != domain.OutcomeCreated {
			t.Fatalf("%v: %s", err, out)
		}
		past := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)
		out, err = keysctl(t, driver, "driver", "publish-key", "vm-1", "--name", "late", "--public-key", pub, "--expires", past)
		if err == nil || !strings.Contains(err.Error(), domain.ReasonInvalidExpiry) {
			t.Fatalf("a past expiry: %v %s", err, out)
		}
		if o := MustOutcome(t, out[:strings.LastIndex(out, "}")+1]); o.Reason != domain.ReasonInvalidExpiry || !strings.Contains(o.Message, "expires must be in the future") {
			t.Errorf("outcome %s", out)
		}
	})
	t.Run("outcome of a message never sent", func(t *testing.T) {
		out, err := keysctl(t, driver, "driver", "outcome", "vm-1", "--seq", "9999")
		if err != nil || MustOutcome(t, out).Outcome != bus.OutcomeUnknown {
			t.Fatalf("got %v %s", err, out)
		}
	})
	t.Run("remove-instance, by the manager and again by a driver", func(t *testing.T) {
		out, err := keysctl(t, manager, "manager", "remove-instance", "vm-1")
		if err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		if o := MustOutcome(t, out); o.Outcome != domain.OutcomeRemoved || o.Duplicate {
			t.Fatalf("outcome %s", out)
		}
		out, err = keysctl(t, driver, "driver", "remove-instance", "vm-1")
		if err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		if o := MustOutcome(t, out); o.Outcome != domain.OutcomeRemoved || !o.Duplicate {
			t.Fatalf("outcome %s", out)
		}
	})
	t.Run("ErrManagerPublishesNoKeys", func(t *testing.T) {
		_, pub := MustKeyFiles(t, dir, "sneaky")
		if out, err := keysctl(t, manager, "manager", "publish-key", "vm-2", "--name", "k", "--public-key", pub); err == nil || !strings.Contains(err.Error(), "unknown command") {
			t.Errorf("manager publish-key: %v %s", err, out)
		}
		// The manager's NKey used for the driver's verb: the server refuses.
		out, err := keysctl(t, manager, "driver", "publish-key", "vm-2", "--name", "k", "--public-key", pub)
		if err == nil || !strings.Contains(err.Error(), "Permissions Violation") || !strings.Contains(err.Error(), "driver role") {
			t.Errorf("driver publish-key with the manager's NKey: %v %s", err, out)
		}
	})
	t.Run("ErrAuditAnnouncesNothing", func(t *testing.T) {
		out, err := keysctl(t, as(bus.RoleAudit), "manager", "remove-instance", "vm-2")
		if err == nil || !strings.Contains(err.Error(), "Permissions Violation") {
			t.Errorf("remove-instance with the audit NKey: %v %s", err, out)
		}
	})
	t.Run("ErrNoNKey", func(t *testing.T) {
		out, err := keysctl(t, map[string]string{"KEYSCTL_NATS_URL": "nats://" + natsAddr}, "driver", "outcome", "vm-1", "--seq", "1")
		if err == nil || !strings.Contains(err.Error(), "Authorization Violation") || !strings.Contains(err.Error(), "driver.nk") {
			t.Errorf("got %v %s", err, out)
		}
	})
}

// keysctl's NATS address is its own: KEYSD_NATS_URL configures keysd (an
// external NATS deployment), and keysctl does not read it.
func TestKeysctlIgnoresKeysdNATSURL(t *testing.T) {
	dir := t.TempDir()
	dataDir := filepath.Join(dir, "data")
	natsAddr := freeAddr(t)
	MustRunKeysd(t, []string{"KEYSD_DATA_DIR=" + dataDir, "KEYSD_NATS_LISTEN=" + natsAddr})
	env := map[string]string{"KEYSD_NATS_URL": "nats://" + natsAddr, "KEYSD_NATS_NKEY": bus.SeedFile(filepath.Join(dataDir, "nats"), bus.RoleAudit)}
	out, err := keysctl(t, env, "events", "--nats-url", "nats://127.0.0.1:1")
	if err == nil || !strings.Contains(err.Error(), "nats://127.0.0.1:1") {
		t.Fatalf("--nats-url given: %v %s", err, out)
	}
	var stdout, stderr bytes.Buffer
	err = run(context.Background(), []string{"events", "stats"}, func(n string) string { return env[n] }, &stdout, &stderr)
	if err == nil || !strings.Contains(err.Error(), "nats://127.0.0.1:4222") {
		t.Fatalf("with KEYSD_NATS_URL only, keysctl must use its default address: %v %s", err, stdout.String())
	}
	// The former name of the NKey seed, which keysd does not read, still
	// works, with a warning.
	if !strings.Contains(stderr.String(), "KEYSD_NATS_NKEY is deprecated, set KEYSCTL_NATS_NKEY instead") {
		t.Errorf("stderr %q", stderr.String())
	}
	env["KEYSCTL_NATS_URL"] = env["KEYSD_NATS_URL"]
	stdout.Reset()
	stderr.Reset()
	if err := run(context.Background(), []string{"events", "stats"}, func(n string) string { return env[n] }, &stdout, &stderr); err != nil {
		t.Fatalf("KEYSCTL_NATS_URL with the former KEYSD_NATS_NKEY: %v %s", err, stderr.String())
	}
}
