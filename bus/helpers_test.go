package bus_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/infrakeys/infrakeys/bus"
	"github.com/infrakeys/infrakeys/domain"
)

// MustConnect embeds a server storing under dir and connects to it; the
// connection is closed when the test ends.
func MustConnect(tb testing.TB, dir string) *bus.Conn {
	tb.Helper()
	c, err := bus.Connect(context.Background(), bus.Config{StoreDir: dir})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(c.Close)
	return c
}

// MustEventLog opens the event log on a fresh embedded server.
func MustEventLog(tb testing.TB) *bus.EventLog {
	tb.Helper()
	return MustOpenEventLog(tb, MustConnect(tb, tb.TempDir()))
}

// MustOpenEventLog opens the event log on c.
func MustOpenEventLog(tb testing.TB, c *bus.Conn) *bus.EventLog {
	tb.Helper()
	l, err := bus.OpenEventLog(context.Background(), c)
	if err != nil {
		tb.Fatal(err)
	}
	return l
}

// testAppended is the payload of the events these tests append: the
// version the writer expected, so the log shows what each writer decided
// against.
type testAppended struct {
	Expected uint64 `json:"expected"`
	Writer   int    `json:"writer"`
	N        int    `json:"n"`
}

// EventType declares testAppended as an event type of its own, which no
// projection knows.
func (testAppended) EventType() domain.EventType {
	return domain.EventType{Name: "TestAppended", Version: 1}
}

// testEvent returns an event for owner that records expected.
func testEvent(owner domain.Owner, expected uint64, writer, n int) domain.Event {
	return domain.NewEvent(owner, testAppended{Expected: expected, Writer: writer, N: n}, domain.Meta{Actor: "test"})
}

// testEvents returns n events for owner.
func testEvents(owner domain.Owner, n int) []domain.Event {
	evs := make([]domain.Event, n)
	for i := range evs {
		evs[i] = testEvent(owner, 0, 0, i)
	}
	return evs
}

// MustAppend appends events and returns the last sequence.
func MustAppend(tb testing.TB, l *bus.EventLog, owner domain.Owner, expected uint64, events []domain.Event) uint64 {
	tb.Helper()
	seq, err := l.Append(context.Background(), owner, expected, events)
	if err != nil {
		tb.Fatalf("append %d events to %s at %d: %v", len(events), owner, expected, err)
	}
	return seq
}

// MustReadOwner returns every event of owner.
func MustReadOwner(tb testing.TB, l *bus.EventLog, owner domain.Owner) []bus.Recorded {
	tb.Helper()
	rs, err := l.ReadOwner(context.Background(), owner, 0)
	if err != nil {
		tb.Fatal(err)
	}
	return rs
}

// eventIDs lists the IDs of recorded events.
func eventIDs(rs []bus.Recorded) []string {
	ids := make([]string, len(rs))
	for i, r := range rs {
		ids[i] = r.Event.ID
	}
	return ids
}

// payload decodes a test event's payload.
func payload(tb testing.TB, r bus.Recorded) testAppended {
	tb.Helper()
	var p testAppended
	if err := json.Unmarshal(r.Event.Data, &p); err != nil {
		tb.Fatal(err)
	}
	return p
}
