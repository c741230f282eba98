package projections

import (
	"context"
	"fmt"
	"sync"

	"github.com/infrakeys/infrakeys/bus"
	"github.com/infrakeys/infrakeys/domain"
)

// kindIndex holds the state of every owner of one kind in memory, for
// lists: a list asks the stream's leader for the last sequence of the
// kind's wildcard subject (one round trip), and when the index has applied
// every event up to it, answers from memory, without a round trip per
// owner. An index that is behind reads the events it misses from the log
// first (readTail). The first list reads the kind from the start of the
// log.
//
// Memory: every owner of the kind, deleted ones included (a deleted
// shared key keeps its name and intake records); about what the kind's
// documents hold in the bucket.
type kindIndex[T any] struct {
	log   *bus.EventLog
	kind  string
	apply func(st *T, e domain.Event, seq uint64) (*T, error)

	mu     sync.Mutex
	states map[string]*T
	last   uint64 // every event of the kind up to here is applied
}

// each calls f with the state of every owner of the kind as of the last
// event of the kind in the log, under the index's lock: f must copy what
// it keeps.
func (x *kindIndex[T]) each(ctx context.Context, f func(id string, st *T)) error {
	subject := bus.KindSubjects(x.kind)
	latest, err := x.log.LastSeqOf(ctx, subject)
	if err != nil {
		return err
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.states == nil {
		x.states = map[string]*T{}
	}
	if latest > x.last {
		if err := x.catchUp(ctx, subject, latest); err != nil {
			return fmt.Errorf("projections: index %s: %w", x.kind, err)
		}
	}
	for id, st := range x.states {
		f(id, st)
	}
	return nil
}

// catchUp applies the kind's events after x.last, read from the log
// (readTail).
func (x *kindIndex[T]) catchUp(ctx context.Context, subject string, latest uint64) error {
	rs, err := readTail(ctx, x.log, subject, x.last)
	if err != nil {
		return err
	}
	for _, r := range rs {
		if err := x.add(r); err != nil {
			return err
		}
	}
	if x.last < latest {
		return fmt.Errorf("read up to %d, the log has %d", x.last, latest)
	}
	return nil
}

// add applies r, which must come after every event applied.
func (x *kindIndex[T]) add(r bus.Recorded) error {
	if r.Seq <= x.last {
		return nil
	}
	st, err := x.apply(x.states[r.Event.Owner.ID], r.Event, r.Seq)
	if err != nil {
		return err
	}
	x.states[r.Event.Owner.ID] = st
	x.last = r.Seq
	return nil
}
