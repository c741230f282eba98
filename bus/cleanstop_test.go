package bus_test

import (
	"context"
	"testing"

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
