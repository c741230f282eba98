package bus

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// ReplayOptions select the events Replay delivers.
type ReplayOptions struct {
	// Subjects filter the stream on the server; empty means every event.
	Subjects []string
	// Kinds, when set, deliver only the events of owners of these kinds,
	// filtered here, before decoding, rather than by the server: on a log
	// of many owners the server matches a wildcard filter against every
	// owner subject of a block for each message it delivers, which costs
	// far more than delivering the events of other kinds (docs/BENCHMARKS.md).
	Kinds []string
	// StartSeq is the first sequence to deliver; 0 means from the start.
	StartSeq uint64
	// StartTime, when set (and StartSeq is not), delivers from the first
	// event stored at or after it.
	StartTime time.Time
	// Pending, when set, learns after each event how many are left.
	Pending func(left uint64)
	// Follow keeps delivering new events after catching up, until ctx ends.
	Follow bool
}

// Replay delivers the stream's events in order to f through an ordered
// (ephemeral, flow-controlled) consumer. Without Follow it returns once it
// has delivered every event stored when it started. It returns the sequence
// of the last event it read, delivered or (with Kinds) skipped.
func (l *EventLog) Replay(ctx context.Context, opts ReplayOptions, f func(Recorded) error) (uint64, error) {
	// A short inactive threshold: the server forgets the consumer soon
	// after the replay ends, even when the reader may not delete it.
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: opts.Subjects, DeliverPolicy: jetstream.DeliverAllPolicy, InactiveThreshold: 10 * time.Second}
	switch {
	case opts.StartSeq > 1:
		cfg.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
		cfg.OptStartSeq = opts.StartSeq
	case !opts.StartTime.IsZero():
		cfg.DeliverPolicy = jetstream.DeliverByStartTimePolicy
		t := opts.StartTime
		cfg.OptStartTime = &t
	}
	var cons jetstream.Consumer
	err := retry(ctx, func(ctx context.Context) (err error) {
		cons, err = l.stream.OrderedConsumer(ctx, cfg)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("bus: replay consumer: %w", err)
	}
	defer func() {
		// Free the server-side consumer now; readers that may not delete
		// consumers (audit) rely on the inactive threshold.
		if info := cons.CachedInfo(); info != nil {
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			_ = l.stream.DeleteConsumer(dctx, info.Name)
			cancel()
		}
	}()
	var last uint64
	if !opts.Follow {
		info, err := cons.Info(ctx)
		if err != nil {
			return 0, fmt.Errorf("bus: replay consumer info: %w", err)
		}
		if info.NumPending == 0 {
			return 0, nil
		}
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(1024))
	if err != nil {
		return 0, fmt.Errorf("bus: replay: %w", err)
	}
	defer it.Stop()
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	for {
		m, err := it.Next()
		if err != nil {
			if ctx.Err() != nil {
				return last, ctx.Err()
			}
			if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				return last, nil
			}
			return last, fmt.Errorf("bus: replay: %w", err)
		}
		md, err := m.Metadata()
		if err != nil {
			return last, err
		}
		if len(opts.Kinds) == 0 || ofKind(m.Subject(), opts.Kinds) {
			r, err := Decode(m.Subject(), md.Sequence.Stream, m.Data())
			if err != nil {
				return last, err
			}
			if err := f(r); err != nil {
				return last, err
			}
		}
		last = md.Sequence.Stream
		if opts.Pending != nil {
			opts.Pending(md.NumPending)
		}
		if !opts.Follow && md.NumPending == 0 {
			return last, nil
		}
	}
}

// ofKind reports whether subject is the event subject of an owner of one
// of kinds.
func ofKind(subject string, kinds []string) bool {
	rest, ok := strings.CutPrefix(subject, SubjectPrefix+".")
	if !ok {
		return false
	}
	kind, _, _ := strings.Cut(rest, ".")
	return slices.Contains(kinds, kind)
}
