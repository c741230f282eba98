package bus_test

import (
	"context"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/infrakeys/infrakeys/bus"
)

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
