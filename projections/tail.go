package projections

import (
	"context"

	"github.com/infrakeys/infrakeys/bus"
)

// tailStep is how many events a tail read asks the stream leader for one
// by one before it replays the rest instead.
const tailStep = 16

// readTail returns the events on subject after sequence after, in order,
// as the stream leader has them. A short tail (the usual: none or a few)
// costs a round trip per event plus one; a long one (a cascade's batch of
// a thousand deletions, a lagging document) is read through a replay, one
// consumer that streams it, and then finished from the leader: the
// replay's consumer may run on a replica that lags.
func readTail(ctx context.Context, log *bus.EventLog, subject string, after uint64) ([]bus.Recorded, error) {
	rs, more, err := log.ReadSubject(ctx, subject, after, tailStep)
	if err != nil || !more {
		return rs, err
	}
	last := rs[len(rs)-1].Seq
	if _, err := log.Replay(ctx, bus.ReplayOptions{Subjects: []string{subject}, StartSeq: last + 1}, func(r bus.Recorded) error {
		if r.Seq > last {
			rs = append(rs, r)
			last = r.Seq
		}
		return nil
	}); err != nil {
		return nil, err
	}
	rest, _, err := log.ReadSubject(ctx, subject, last, 0)
	if err != nil {
		return nil, err
	}
	return append(rs, rest...), nil
}
