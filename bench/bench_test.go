package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"strings"
	"testing"
)

// TestMain lets the test binary stand in for the bench binary when the
// run re-executes itself as the no-op server.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == noopCommand {
		if err := serveNoop(context.Background(), os.Args[2:], os.Stdout); err != nil {
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestBenchTiny runs every phase in a tiny configuration, so the command
// keeps working; the numbers mean nothing here.
func TestBenchTiny(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs keysd")
	}
	var stdout, stderr bytes.Buffer
	args := []string{"-work-dir", t.TempDir(), "-duration", "200ms", "-concurrency", "2", "-keys", "40", "-keys-per-account", "4", "-cascade-keys", "5", "-intake-keys", "200", "-shared-keys", "20", "-settle", "0s"}
	if err := run(context.Background(), args, &stdout, &stderr); err != nil {
		t.Fatalf("bench: %v\n%s\n%s", err, stdout.String(), stderr.String())
	}
	out := stdout.String()
	for _, want := range []string{
		"GetKey, signed (ed25519) vs no-op Echo handler",
		"ListKeys (10 keys), signed vs no-op Echo handler",
		"CreateKey (read-your-writes) vs raw JetStream publish",
		"CreateKey time, means from keysd's /metrics",
		"projection rebuild into an empty bucket (accounts: 50 events, 10 documents)",
		"projection rebuild re-check of an up-to-date bucket, nothing written",
		"replay of the same events alone",
		"start-up holding 40 keys",
		"resident memory holding 40 keys",
		"cascade: InstanceRemoved to the last of 5 instance keys gone from the API",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("no %q in the report:\n%s", want, out)
		}
	}
	if strings.Contains(out, "failed") {
		t.Errorf("a phase failed:\n%s", out)
	}
}

// TestFailuresCountEachFailure: the raw publish baseline reports how many
// publishes failed, not how many distinct error messages there were.
func TestFailuresCountEachFailure(t *testing.T) {
	var f failures
	for range 3 {
		f.add(errors.New("nats: timeout"))
	}
	f.add(errors.New("nats: no responders"))
	n, msgs := f.result()
	if got, want := n, uint64(4); got != want {
		t.Errorf("failed = %d, want %d", got, want)
	}
	if got, want := strings.Join(msgs, "; "), "nats: no responders; nats: timeout"; got != want {
		t.Errorf("messages = %q, want %q", got, want)
	}
}
