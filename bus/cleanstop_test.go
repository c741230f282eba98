package bus_test

import (
	"context"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/infrakeys/infrakeys/bus"
)

// A store reports a clean stop only after Close stopped its server.
func TestStoppedCleanly(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	for i, want := range []bool{false, true, true} {
		c, err := bus.Connect(ctx, bus.Config{StoreDir: dir})
		if err != nil {
			t.Fatal(err)
		}
		if got := c.StoppedCleanly(); got != want {
			t.Errorf("start %d: StoppedCleanly() = %v, want %v", i, got, want)
		}
		c.Close()
	}
}

// After a start that was not clean, a stop is recorded as clean only once
// every stream flushed asynchronously (the read models' buckets) was
// checked against the log: a run that did not check them, such as a tool
// opening the data directory or a keysd whose start-up failed, must leave
// the next start to re-check.
func TestCleanStopNeedsRecheck(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	connect := func() *bus.Conn {
		t.Helper()
		c, err := bus.Connect(ctx, bus.Config{StoreDir: dir})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	c := connect()
	if _, err := c.JS.CreateStream(ctx, jetstream.StreamConfig{
		Name: "READMODEL", Subjects: []string{"readmodel.>"}, Storage: jetstream.FileStorage,
		PersistMode: jetstream.AsyncPersistMode,
	}); err != nil {
		t.Fatal(err)
	}
	c.Close()

	c = connect()
	if c.StoppedCleanly() {
		t.Fatal("a store with an unchecked asynchronous stream reports a clean stop")
	}
	c.Close() // still not checked

	c = connect()
	if c.StoppedCleanly() {
		t.Fatal("a run that checked nothing recorded a clean stop")
	}
	c.Rechecked("READMODEL")
	c.Close()

	c = connect()
	defer c.Close()
	if !c.StoppedCleanly() {
		t.Error("after every asynchronous stream was checked, the stop is not clean")
	}
}
