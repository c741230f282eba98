package bus_test

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/infrakeys/infrakeys/bus"
	"github.com/infrakeys/infrakeys/domain"
)

// stopOnIntake ends the service's context the moment a message has its
// outcome: a shutdown that arrives between recording the outcome and
// erasing the message.
type stopOnIntake struct {
	stop context.CancelFunc
	seen chan domain.IntakeOutcome
}

func (s stopOnIntake) Intake(o domain.IntakeOutcome) {
	s.stop()
	s.seen <- o
}

// A shutdown while a message is being processed lets that message finish:
// it is erased from the intake stream's files, not left in them as
// plaintext, whatever its fate.
func TestServeIntake_ShutdownFinishesTheMessageInFlight(t *testing.T) {
	dir := t.TempDir()
	c := MustConnect(t, dir)
	l := MustOpenEventLog(t, c)
	stream, err := bus.OpenIntake(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	// Bodies the size of a real key message, with a marker standing in
	// for a private half, on a subject that is no intake subject: they are
	// rejected, with no need of the key services. The shutdown comes while
	// the first is processed; the second waits for the next start.
	secret := bytes.Repeat([]byte("PRIVATE-HALF-MARKER-"), 100)
	waiting := bytes.Repeat([]byte("WAITING-HALF-MARKER-"), 100)
	for i, body := range [][]byte{secret, waiting} {
		msg := nats.NewMsg(bus.IntakePrefix + ".bogus." + bus.Token("i-1"))
		msg.Data = body
		msg.Header.Set(jetstream.MsgIDHeader, fmt.Sprint("m-", i))
		if _, err := c.JS.PublishMsg(context.Background(), msg); err != nil {
			t.Fatal(err)
		}
	}

	svc := &domain.IntakeService{AppendOnce: l.AppendOnce, IntakeEvent: l.IntakeEvent}
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	obs := stopOnIntake{stop: stop, seen: make(chan domain.IntakeOutcome, 1)}
	done := make(chan error, 1)
	go func() {
		done <- bus.ServeIntake(ctx, c, stream, svc, obs, slog.New(slog.DiscardHandler))
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("ServeIntake did not return after its context ended")
	}
	out := <-obs.seen
	if out.Outcome != domain.OutcomeRejected {
		t.Fatalf("outcome %+v, want rejected", out)
	}

	info, err := stream.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 1 || info.State.FirstSeq != 2 {
		t.Fatalf("the intake stream holds %d messages from %d, want the unprocessed one (2) only", info.State.Msgs, info.State.FirstSeq)
	}
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if bytes.Contains(b, secret[:40]) {
			t.Errorf("%s still holds the processed message's body", path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
