package bus_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/infrakeys/infrakeys/bus"
	"github.com/infrakeys/infrakeys/domain"
)

func TestAppend(t *testing.T) {
	ctx := context.Background()
	l := MustEventLog(t)

	t.Run("OK", func(t *testing.T) {
		owner := domain.AccountOwner("first")
		seq, err := l.Append(ctx, owner, 0, testEvents(owner, 1))
		if err != nil {
			t.Fatal(err)
		}
		rs := MustReadOwner(t, l, owner)
		if got, want := len(rs), 1; got != want {
			t.Fatalf("events: got %d, want %d", got, want)
		}
		if got, want := rs[0].Seq, seq; got != want {
			t.Errorf("stored at %d, Append said %d", got, want)
		}
		if got, want := rs[0].Subject, bus.OwnerSubject(owner); got != want {
			t.Errorf("subject = %q, want %q", got, want)
		}
	})

	t.Run("ErrVersionConflict", func(t *testing.T) {
		owner := domain.AccountOwner("stale")
		first := MustAppend(t, l, owner, 0, testEvents(owner, 1))
		MustAppend(t, l, owner, first, testEvents(owner, 1))
		for _, expected := range []uint64{0, first} {
			if _, err := l.Append(ctx, owner, expected, testEvents(owner, 1)); !errors.Is(err, domain.ErrVersionConflict) {
				t.Errorf("append at stale %d: err = %v, want ErrVersionConflict", expected, err)
			}
		}
		if got, want := len(MustReadOwner(t, l, owner)), 2; got != want {
			t.Errorf("events: got %d, want %d", got, want)
		}
	})

	t.Run("ErrVersionConflictAhead", func(t *testing.T) {
		// Expecting a version the owner has not reached is as wrong as
		// expecting one it has left.
		owner := domain.AccountOwner("ahead")
		if _, err := l.Append(ctx, owner, 1000, testEvents(owner, 1)); !errors.Is(err, domain.ErrVersionConflict) {
			t.Errorf("err = %v, want ErrVersionConflict", err)
		}
	})

	// After a lost acknowledgement Append retries; nats-server checks the
	// expected sequence before Nats-Msg-Id, so a retry of a write that
	// landed conflicts with the write itself.
	t.Run("RetryAfterLostAck", func(t *testing.T) {
		owner := domain.AccountOwner("lostack")
		first := MustAppend(t, l, owner, 0, testEvents(owner, 1))
		events := testEvents(owner, 1)
		// The look at the log after the lost acknowledgement fails too
		// (the leader is changing), so Append publishes again.
		bus.LoseNextAck(l, true, func() { bus.FailNextRead(l) })
		seq, err := l.Append(ctx, owner, first, events)
		if err != nil {
			t.Fatalf("append whose acknowledgement was lost: %v", err)
		}
		rs := MustReadOwner(t, l, owner)
		if got, want := eventIDs(rs), []string{rs[0].Event.ID, events[0].ID}; !slices.Equal(got, want) {
			t.Fatalf("events = %v, want %v", got, want)
		}
		if got, want := seq, rs[1].Seq; got != want {
			t.Errorf("Append said %d, stored at %d", got, want)
		}
	})
	t.Run("RetryAfterLostAckThenOtherWriter", func(t *testing.T) {
		// Another writer appends after ours before the retry: ours is no
		// longer the owner's last event, yet it landed.
		owner := domain.AccountOwner("lostackother")
		first := MustAppend(t, l, owner, 0, testEvents(owner, 1))
		events := testEvents(owner, 1)
		var other uint64
		bus.LoseNextAck(l, true, func() { other = MustAppend(t, l, owner, first+1, testEvents(owner, 1)) })
		seq, err := l.Append(ctx, owner, first, events)
		if err != nil {
			t.Fatalf("append whose acknowledgement was lost: %v", err)
		}
		rs := MustReadOwner(t, l, owner)
		if got, want := len(rs), 3; got != want {
			t.Fatalf("events: got %d, want %d", got, want)
		}
		if got, want := rs[1].Event.ID, events[0].ID; got != want {
			t.Errorf("second event = %s, want ours %s", got, want)
		}
		if got, want := seq, rs[1].Seq; got != want || other != rs[2].Seq {
			t.Errorf("Append said %d, stored at %d (other writer at %d)", got, want, other)
		}
	})
	t.Run("ErrOutcomeUnknown", func(t *testing.T) {
		// The acknowledgement is lost and the log cannot be read to find
		// out: the write did land, so the error must say that it may have,
		// and not look like a plain failure.
		owner := domain.AccountOwner("lostackunreadable")
		first := MustAppend(t, l, owner, 0, testEvents(owner, 1))
		bus.LoseNextAck(l, true, func() { bus.FailNextReads(l, 2) })
		_, err := l.Append(ctx, owner, first, testEvents(owner, 1))
		if !errors.Is(err, domain.ErrOutcomeUnknown) {
			t.Fatalf("err = %v, want ErrOutcomeUnknown", err)
		}
		if got, want := domain.ErrorCode(err), domain.EUNAVAILABLE; got != want {
			t.Errorf("code = %s, want %s", got, want)
		}
		if got, want := len(MustReadOwner(t, l, owner)), 2; got != want {
			t.Errorf("events: got %d, want %d", got, want)
		}
	})
	t.Run("ErrVersionConflictAfterLostRequest", func(t *testing.T) {
		// The first attempt never reached the stream and another writer
		// got there first: the retry's conflict is a real one.
		owner := domain.AccountOwner("lostrequest")
		first := MustAppend(t, l, owner, 0, testEvents(owner, 1))
		bus.LoseNextAck(l, false, func() { MustAppend(t, l, owner, first, testEvents(owner, 1)) })
		if _, err := l.Append(ctx, owner, first, testEvents(owner, 1)); !errors.Is(err, domain.ErrVersionConflict) {
			t.Errorf("err = %v, want ErrVersionConflict", err)
		}
		if got, want := len(MustReadOwner(t, l, owner)), 2; got != want {
			t.Errorf("events: got %d, want %d", got, want)
		}
	})

	t.Run("Batch", func(t *testing.T) {
		owner := domain.AccountOwner("batch")
		first := MustAppend(t, l, owner, 0, testEvents(owner, 1))
		// Another owner's event in between: the owner's version is its
		// own last sequence, not the stream's.
		other := domain.AccountOwner("batch-other")
		MustAppend(t, l, other, 0, testEvents(other, 1))
		evs := testEvents(owner, 5)
		last := MustAppend(t, l, owner, first, evs)
		rs := MustReadOwner(t, l, owner)
		if got, want := len(rs), 6; got != want {
			t.Fatalf("events: got %d, want %d", got, want)
		}
		batch := rs[1:]
		if got, want := eventIDs(batch), eventIDs(recorded(evs)); !slices.Equal(got, want) {
			t.Errorf("batch stored as %v, want %v", got, want)
		}
		for i, r := range batch {
			if got, want := r.Seq, last-uint64(len(batch)-1-i); got != want {
				t.Errorf("batch event %d at %d, want %d (contiguous, ending at %d)", i, got, want, last)
			}
		}
	})

	t.Run("BatchErrVersionConflict", func(t *testing.T) {
		owner := domain.AccountOwner("batch-stale")
		first := MustAppend(t, l, owner, 0, testEvents(owner, 1))
		MustAppend(t, l, owner, first, testEvents(owner, 1))
		if _, err := l.Append(ctx, owner, first, testEvents(owner, 4)); !errors.Is(err, domain.ErrVersionConflict) {
			t.Errorf("err = %v, want ErrVersionConflict", err)
		}
		if got, want := len(MustReadOwner(t, l, owner)), 2; got != want {
			t.Errorf("events: got %d, want %d: a refused batch must store none", got, want)
		}
		// The log is still usable for the owner afterwards.
		rs := MustReadOwner(t, l, owner)
		MustAppend(t, l, owner, rs[len(rs)-1].Seq, testEvents(owner, 3))
		if got, want := len(MustReadOwner(t, l, owner)), 5; got != want {
			t.Errorf("events after a good batch: got %d, want %d", got, want)
		}
	})

	t.Run("ErrWrongOwner", func(t *testing.T) {
		// Another owner's events may only follow the owner's: first, or
		// between the owner's, they are refused and nothing is stored.
		owner := domain.AccountOwner("owner")
		intruder := domain.AccountOwner("intruder")
		for name, evs := range map[string][]domain.Event{
			"first":   append(testEvents(intruder, 1), testEvents(owner, 1)...),
			"between": append(append(testEvents(owner, 1), testEvents(intruder, 1)...), testEvents(owner, 1)...),
		} {
			if _, err := l.Append(ctx, owner, 0, evs); err == nil {
				t.Errorf("%s: append of another owner's event succeeded", name)
			}
		}
		if got, want := len(MustReadOwner(t, l, owner)), 0; got != want {
			t.Errorf("events: got %d, want %d", got, want)
		}
		if got, want := len(MustReadOwner(t, l, intruder)), 0; got != want {
			t.Errorf("intruder's events: got %d, want %d", got, want)
		}
	})

	t.Run("FollowingOwner", func(t *testing.T) {
		// The owner's events, then another owner's, recorded together on
		// their own subjects, checked against the owner's version: the
		// InstanceRemoved and its CascadeRequested.
		owner := domain.InstanceOwner("vm-following")
		work := domain.CascadeOwner("vm-following")
		evs := append(testEvents(owner, 2), testEvents(work, 1)...)
		seq := MustAppend(t, l, owner, 0, evs)
		own, other := MustReadOwner(t, l, owner), MustReadOwner(t, l, work)
		if len(own) != 2 || len(other) != 1 {
			t.Fatalf("stored %d of the owner's and %d of the other's, want 2 and 1", len(own), len(other))
		}
		if other[0].Seq != seq || own[1].Seq != seq-1 || own[0].Seq != seq-2 {
			t.Errorf("sequences %d, %d, %d; Append returned %d: want contiguous, ending there", own[0].Seq, own[1].Seq, other[0].Seq, seq)
		}
		// The check is the owner's: a stale version is refused, whatever
		// the other owner's subject holds.
		if _, err := l.Append(ctx, owner, own[0].Seq, append(testEvents(owner, 1), testEvents(work, 1)...)); !errors.Is(err, domain.ErrVersionConflict) {
			t.Errorf("err = %v, want ErrVersionConflict", err)
		}
		if got := len(MustReadOwner(t, l, work)); got != 1 {
			t.Errorf("the other owner has %d events after a refused batch, want 1", got)
		}
	})

	t.Run("ErrNoEvents", func(t *testing.T) {
		if _, err := l.Append(ctx, domain.AccountOwner("none"), 0, nil); err == nil {
			t.Error("append of no events succeeded")
		}
	})
}

// recorded wraps events so eventIDs can list them.
func recorded(evs []domain.Event) []bus.Recorded {
	rs := make([]bus.Recorded, len(evs))
	for i, e := range evs {
		rs[i].Event = e
	}
	return rs
}

func TestReadOwner(t *testing.T) {
	l := MustEventLog(t)
	a, b := domain.AccountOwner("a"), domain.AccountOwner("b")
	var want []string
	var seqs []uint64
	var lastA, lastB uint64
	for i := range 4 {
		ev := testEvent(a, lastA, 0, i)
		lastA = MustAppend(t, l, a, lastA, []domain.Event{ev})
		want = append(want, ev.ID)
		seqs = append(seqs, lastA)
		lastB = MustAppend(t, l, b, lastB, testEvents(b, 1))
	}

	for _, tc := range []struct {
		name  string
		after uint64
		want  []string
	}{
		{"All", 0, want},
		{"AfterFirst", seqs[0], want[1:]},
		{"AfterGap", seqs[1] + 1, want[2:]},
		{"AfterLast", seqs[3], nil},
		{"AfterEnd", seqs[3] + 100, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rs, err := l.ReadOwner(context.Background(), a, tc.after)
			if err != nil {
				t.Fatal(err)
			}
			if got := eventIDs(rs); !slices.Equal(got, tc.want) {
				t.Errorf("ReadOwner(after %d) = %v, want %v", tc.after, got, tc.want)
			}
			for _, r := range rs {
				if got, want := r.Event.Owner, a; got != want {
					t.Errorf("event at %d belongs to %v, want %v", r.Seq, got, want)
				}
			}
		})
	}

	t.Run("UnknownOwner", func(t *testing.T) {
		rs, err := l.ReadOwner(context.Background(), domain.AccountOwner("nobody"), 0)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := len(rs), 0; got != want {
			t.Errorf("events: got %d, want %d", got, want)
		}
	})
}

func TestReplay(t *testing.T) {
	l := MustEventLog(t)
	// A deadline only so that a Replay that never returns fails the test
	// instead of hanging it.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	owners := []domain.Owner{domain.AccountOwner("a"), domain.AccountOwner("b"), {Kind: "other", ID: "c"}}
	var all []string
	var accounts []string
	last := map[domain.Owner]uint64{}
	for i := range 30 {
		o := owners[i%len(owners)]
		evs := testEvents(o, 1+i%3) // single events and batches
		last[o] = MustAppend(t, l, o, last[o], evs)
		for _, e := range evs {
			all = append(all, e.ID)
			if o.Kind == domain.OwnerAccount {
				accounts = append(accounts, e.ID)
			}
		}
	}
	end, err := l.LastSeq(ctx)
	if err != nil {
		t.Fatal(err)
	}

	replay := func(t *testing.T, opts bus.ReplayOptions) ([]string, uint64) {
		t.Helper()
		var got []string
		var prev uint64
		lastSeq, err := l.Replay(ctx, opts, func(r bus.Recorded) error {
			if r.Seq <= prev {
				t.Errorf("event at %d delivered after %d", r.Seq, prev)
			}
			prev = r.Seq
			got = append(got, r.Event.ID)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return got, lastSeq
	}

	t.Run("All", func(t *testing.T) {
		got, lastSeq := replay(t, bus.ReplayOptions{})
		if !slices.Equal(got, all) {
			t.Errorf("replayed %d events, want the %d stored, in order", len(got), len(all))
		}
		if got, want := lastSeq, end; got != want {
			t.Errorf("last = %d, want %d", got, want)
		}
	})

	t.Run("Filtered", func(t *testing.T) {
		got, _ := replay(t, bus.ReplayOptions{Subjects: []string{bus.KindSubjects(domain.OwnerAccount)}})
		if !slices.Equal(got, accounts) {
			t.Errorf("replayed %d events, want the %d account events, in order", len(got), len(accounts))
		}
	})

	t.Run("StartSeq", func(t *testing.T) {
		got, lastSeq := replay(t, bus.ReplayOptions{StartSeq: 11})
		if !slices.Equal(got, all[10:]) {
			t.Errorf("replayed %d events, want the last %d, in order", len(got), len(all)-10)
		}
		if got, want := lastSeq, end; got != want {
			t.Errorf("last = %d, want %d", got, want)
		}
	})

	t.Run("EmptyFilter", func(t *testing.T) {
		got, lastSeq := replay(t, bus.ReplayOptions{Subjects: []string{bus.KindSubjects("nothing")}})
		if len(got) != 0 || lastSeq != 0 {
			t.Errorf("replayed %d events up to %d, want none", len(got), lastSeq)
		}
	})

	t.Run("PastEnd", func(t *testing.T) {
		got, lastSeq := replay(t, bus.ReplayOptions{StartSeq: end + 1})
		if len(got) != 0 || lastSeq != 0 {
			t.Errorf("replayed %d events up to %d, want none", len(got), lastSeq)
		}
	})

	t.Run("ErrFromHandler", func(t *testing.T) {
		stop := errors.New("stop")
		n := 0
		_, err := l.Replay(ctx, bus.ReplayOptions{}, func(bus.Recorded) error {
			n++
			if n == 3 {
				return stop
			}
			return nil
		})
		if !errors.Is(err, stop) {
			t.Errorf("err = %v, want the handler's", err)
		}
		if got, want := n, 3; got != want {
			t.Errorf("delivered %d events, want %d", got, want)
		}
	})

	t.Run("EmptyLog", func(t *testing.T) {
		n := 0
		lastSeq, err := MustEventLog(t).Replay(ctx, bus.ReplayOptions{}, func(bus.Recorded) error { n++; return nil })
		if err != nil {
			t.Fatal(err)
		}
		if n != 0 || lastSeq != 0 {
			t.Errorf("replayed %d events up to %d, want none", n, lastSeq)
		}
	})

	t.Run("Follow", func(t *testing.T) {
		// With Follow, Replay delivers what is appended after it started.
		fctx, cancel := context.WithCancel(ctx)
		defer cancel()
		o := domain.AccountOwner("followed")
		ev := testEvent(o, 0, 0, 0)
		var wg sync.WaitGroup
		wg.Add(1)
		var got []string
		var err error
		go func() {
			defer wg.Done()
			_, err = l.Replay(fctx, bus.ReplayOptions{Follow: true, Subjects: []string{bus.OwnerSubject(o)}}, func(r bus.Recorded) error {
				got = append(got, r.Event.ID)
				cancel()
				return nil
			})
		}()
		MustAppend(t, l, o, 0, []domain.Event{ev})
		wg.Wait()
		if !errors.Is(err, context.Canceled) {
			t.Errorf("err = %v, want context.Canceled", err)
		}
		if want := []string{ev.ID}; !slices.Equal(got, want) {
			t.Errorf("followed %v, want %v", got, want)
		}
	})
}

// TestAppend_Concurrent has writers race to extend one owner's history,
// each deciding against what it read: every append must either land on top
// of exactly what its writer read or be refused, so the history is a chain.
func TestAppend_Concurrent(t *testing.T) {
	const writers, appendsEach = 20, 5
	ctx := context.Background()
	l := MustEventLog(t)
	owner := domain.AccountOwner("contended")

	var wg sync.WaitGroup
	var mu sync.Mutex
	var landed, conflicts int
	for w := range writers {
		wg.Go(func() {
			for n := 0; n < appendsEach; {
				rs, err := l.ReadOwner(ctx, owner, 0)
				if err != nil {
					t.Error(err)
					return
				}
				var expected uint64
				if len(rs) > 0 {
					expected = rs[len(rs)-1].Seq
				}
				evs := []domain.Event{testEvent(owner, expected, w, n)}
				if n%2 == 1 {
					evs = append(evs, testEvent(owner, expected, w, n)) // a batch
				}
				seq, err := l.Append(ctx, owner, expected, evs)
				switch {
				case errors.Is(err, domain.ErrVersionConflict):
					mu.Lock()
					conflicts++
					mu.Unlock()
					continue
				case err != nil:
					t.Errorf("writer %d: append: %v", w, err)
					return
				case seq <= expected:
					t.Errorf("writer %d: appended at %d, not after %d", w, seq, expected)
				}
				mu.Lock()
				landed++
				mu.Unlock()
				n++
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}

	rs := MustReadOwner(t, l, owner)
	if got, want := landed, writers*appendsEach; got != want {
		t.Errorf("appends landed: got %d, want %d", got, want)
	}
	// Odd-numbered appends are batches of two.
	if got, want := len(rs), writers*appendsEach+writers*(appendsEach/2); got != want {
		t.Errorf("events: got %d, want %d", got, want)
	}
	t.Logf("%d appends, %d refused as conflicts", landed, conflicts)

	// Each append was decided against the owner's version just before it:
	// no two appends claim the same version, none skips one. The events of
	// one append share its writer and number, and are contiguous.
	type decision struct{ writer, n int }
	var version uint64
	seen := map[decision]bool{}
	claimed := map[uint64]int{}
	for i := 0; i < len(rs); {
		p := payload(t, rs[i])
		d := decision{p.Writer, p.N}
		if seen[d] {
			t.Errorf("events of writer %d's append %d are not contiguous (again at %d)", d.writer, d.n, rs[i].Seq)
		}
		seen[d] = true
		claimed[p.Expected]++
		if got, want := p.Expected, version; got != want {
			t.Errorf("append at %d was decided at version %d, but the owner was at %d", rs[i].Seq, got, want)
		}
		for ; i < len(rs) && payload(t, rs[i]) == p; i++ {
			version = rs[i].Seq
		}
	}
	for v, n := range claimed {
		if n > 1 {
			t.Errorf("%d appends claim version %d", n, v)
		}
	}
}

// TestStartEmbedded_SyncAlways guards durability: an acknowledged write is
// on disk (without sync-always an OS crash loses acknowledged writes:
// docs/operations.md, "Durability").
func TestStartEmbedded_SyncAlways(t *testing.T) {
	c := MustConnect(t, t.TempDir())
	ns := c.Server()
	if ns == nil {
		t.Fatal("no embedded server")
	}
	cfg := ns.JetStreamConfig()
	if cfg == nil {
		t.Fatal("JetStream is not enabled")
	}
	if !cfg.SyncAlways {
		t.Error("JetStream SyncAlways is off: acknowledged writes may be lost on an OS crash")
	}
}

func TestConnect_Restart(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	owner := domain.AccountOwner("survivor")

	c, err := bus.Connect(ctx, bus.Config{StoreDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	l := MustOpenEventLog(t, c)
	first := testEvents(owner, 1)
	batch := testEvents(owner, 3)
	last := MustAppend(t, l, owner, MustAppend(t, l, owner, 0, first), batch)
	c.Close()

	l = MustOpenEventLog(t, MustConnect(t, dir))
	rs := MustReadOwner(t, l, owner)
	if got, want := eventIDs(rs), eventIDs(recorded(append(first, batch...))); !slices.Equal(got, want) {
		t.Errorf("after restart: events %v, want %v", got, want)
	}
	if got, err := l.LastSeq(ctx); err != nil || got != last {
		t.Errorf("after restart: LastSeq = %d, %v; want %d", got, err, last)
	}
	// The history goes on where it stopped.
	if _, err := l.Append(ctx, owner, last-1, testEvents(owner, 1)); !errors.Is(err, domain.ErrVersionConflict) {
		t.Errorf("append at a stale version after restart: err = %v, want ErrVersionConflict", err)
	}
	MustAppend(t, l, owner, last, testEvents(owner, 1))
}
