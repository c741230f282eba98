package bus_test

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/infrakeys/infrakeys/bus"
)

// MustLastUse opens the last-use record on c and runs it until the test
// ends, as a replica of keysd does.
func MustLastUse(tb testing.TB, c *bus.Conn, precision time.Duration) *bus.LastUse {
	tb.Helper()
	u := MustOpenLastUse(tb, c, precision)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = u.Run(ctx) })
	tb.Cleanup(func() { cancel(); wg.Wait() })
	return u
}

// MustOpenLastUse opens the last-use record on c without running it.
func MustOpenLastUse(tb testing.TB, c *bus.Conn, precision time.Duration) *bus.LastUse {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	tb.Cleanup(cancel)
	u, err := bus.OpenLastUse(ctx, c, precision, slog.New(slog.DiscardHandler))
	if err != nil {
		tb.Fatal(err)
	}
	return u
}

// lastUseWrites is how many writes the last-use bucket has taken.
func lastUseWrites(tb testing.TB, c *bus.Conn) uint64 {
	tb.Helper()
	s, err := c.JS.Stream(context.Background(), "KV_"+bus.LastUseBucket)
	if err != nil {
		tb.Fatal(err)
	}
	return s.CachedInfo().State.LastSeq
}

// waitWrites waits until the bucket has taken n writes, then checks
// that no more come for a little while.
func waitWrites(tb testing.TB, c *bus.Conn, n uint64, what string) {
	tb.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for lastUseWrites(tb, c) < n {
		if time.Now().After(deadline) {
			tb.Fatalf("%s: %d writes, want %d", what, lastUseWrites(tb, c), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond) // a write too many would follow at once
	if got := lastUseWrites(tb, c); got != n {
		tb.Fatalf("%s: %d writes, want %d", what, got, n)
	}
}

// waitLastUsed waits until u shows want for id.
func waitLastUsed(tb testing.TB, u *bus.LastUse, id string, want time.Time) {
	tb.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got, ok := u.LastUsed(id)
		if ok && got.Equal(want) {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("LastUsed(%s) = %s, %v; want %s", id, got, ok, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestLastUse(t *testing.T) {
	const precision = time.Hour
	t0 := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)

	t.Run("OneWritePerPrecision", func(t *testing.T) {
		c := MustConnect(t, t.TempDir())
		u := MustLastUse(t, c, precision)
		if _, ok := u.LastUsed("k"); ok {
			t.Fatal("a key never used has a last use")
		}
		for i := range 100 {
			u.Used("k", t0.Add(time.Duration(i)*time.Second))
		}
		waitWrites(t, c, 1, "100 uses within the precision")
		// Noted before the flush, which writes the latest (or sooner).
		if got, _ := u.LastUsed("k"); got.Before(t0) || got.After(t0.Add(99*time.Second)) {
			t.Errorf("LastUsed = %s, want one of the uses", got)
		}
		for i := range 100 {
			u.Used("k", t0.Add(time.Duration(100+i)*time.Second))
		}
		later := t0.Add(precision + 99*time.Second)
		u.Used("k", later)
		waitWrites(t, c, 2, "100 more uses, then one a precision later")
		waitLastUsed(t, u, "k", later)
	})

	t.Run("ReplicasWriteOnce", func(t *testing.T) {
		c := MustConnect(t, t.TempDir())
		// Both note the key before either writes: both try to, and the
		// compare-and-set lets one through.
		a, b := MustOpenLastUse(t, c, precision), MustOpenLastUse(t, c, precision)
		a.Used("k", t0)
		b.Used("k", t0.Add(time.Second))
		var wg sync.WaitGroup
		ctx, cancel := context.WithCancel(context.Background())
		defer func() { cancel(); wg.Wait() }()
		for _, u := range []*bus.LastUse{a, b} {
			wg.Go(func() { _ = u.Run(ctx) })
		}
		deadline := time.Now().Add(5 * time.Second)
		for {
			ta, _ := a.LastUsed("k")
			tb, _ := b.LastUsed("k")
			if ta.Equal(tb) && lastUseWrites(t, c) == 1 {
				break // both show the one write
			}
			if time.Now().After(deadline) {
				t.Fatalf("replicas show %s and %s after %d writes; want one write, shown by both", ta, tb, lastUseWrites(t, c))
			}
			time.Sleep(5 * time.Millisecond)
		}
		if got := lastUseWrites(t, c); got != 1 {
			t.Errorf("%d writes, want 1", got)
		}
	})

	t.Run("LoadedAtOpen", func(t *testing.T) {
		c := MustConnect(t, t.TempDir())
		u := MustLastUse(t, c, precision)
		u.Used("account/alice/SHA256:x/1", t0)
		waitWrites(t, c, 1, "one use")
		// A replica started now reads it without a round trip per read.
		if got, ok := MustOpenLastUse(t, c, precision).LastUsed("account/alice/SHA256:x/1"); !ok || !got.Equal(t0) {
			t.Errorf("a replica opened later shows %s, %v; want %s", got, ok, t0)
		}
	})
}
