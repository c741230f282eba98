package bus_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/infrakeys/infrakeys/bus"
)

// TestDataKeysDestroyRace: two shredders (replicas handed the same event
// again) destroy the same data keys at the same time; whichever comes second finds the message
// gone between its read and its delete, and that is no error either.
func TestDataKeysDestroyRace(t *testing.T) {
	ctx := context.Background()
	d, err := bus.OpenDataKeys(ctx, MustConnect(t, t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	const n = 200
	for i := range n {
		if err := d.Create(ctx, fmt.Sprintf("secret-%d", i), []byte("wrapped")); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, 4*n)
	for range 4 {
		wg.Go(func() {
			for i := range n {
				if err := d.Destroy(ctx, fmt.Sprintf("secret-%d", i)); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	failed := 0
	for err := range errs {
		if failed++; failed <= 3 {
			t.Errorf("destroy: %v", err)
		}
	}
	if failed > 3 {
		t.Errorf("... %d destroys failed in all", failed)
	}
	for i := range n {
		if wrapped, _, err := d.Get(ctx, fmt.Sprintf("secret-%d", i)); err != nil || wrapped != nil {
			t.Fatalf("secret-%d after destroy: %q, %v", i, wrapped, err)
		}
	}
}

// TestOpenDataKeysLiftsSubjectLimit opens the data keys stream as an
// older keysd made it, with one message per subject: the limit must go,
// because the server enforces it by removing the replaced data key
// without overwriting it on disk.
func TestOpenDataKeysLiftsSubjectLimit(t *testing.T) {
	c := MustConnect(t, t.TempDir())
	ctx := context.Background()
	_, err := c.JS.CreateStream(ctx, jetstream.StreamConfig{
		Name: bus.DataKeysStream, Subjects: []string{"keysd.datakeys.*"},
		Storage: jetstream.FileStorage, MaxMsgsPerSubject: 1,
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bus.OpenDataKeys(ctx, c); err != nil {
		t.Fatal(err)
	}
	s, err := c.JS.Stream(ctx, bus.DataKeysStream)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := s.CachedInfo().Config.MaxMsgsPerSubject, int64(-1); got != want {
		t.Errorf("MaxMsgsPerSubject = %d, want %d", got, want)
	}
}
