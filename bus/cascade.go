package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/infrakeys/infrakeys/domain"
	"github.com/nats-io/nats.go/jetstream"
)

// CascadeConsumer is the durable consumer that deletes the keys of removed
// instances. It reads only the cascade owners' subjects, whose one event
// each is the CascadeRequested recorded with an InstanceRemoved.
const CascadeConsumer = "cascade-requests"

// LegacyCascadeConsumer is the consumer keysd used before CascadeRequested:
// it read every instance event to find the InstanceRemoved among them.
// A keysd that finds it finishes its work and deletes it
// (finishLegacyCascade).
const LegacyCascadeConsumer = "cascade"

// CascadeObserver learns what the cascade does (metrics).
type CascadeObserver interface {
	Cascaded(instanceID string, deleted int, took time.Duration)
}

// ServeCascade deletes every key of each removed instance, one KeyDeleted
// each, caused by the InstanceRemoved, until ctx ends. It reads the
// CascadeRequested events (one per InstanceRemoved, recorded with it) with
// a durable consumer that replicas share, and nothing else: a request is
// acknowledged only when its instance has no key left, so a crash
// mid-cascade delivers it again and the cascade resumes where it stopped
// (the keys already deleted are no longer in the instance).
func ServeCascade(ctx context.Context, l *EventLog, keys *domain.InfraKeyService, obs CascadeObserver, logger *slog.Logger) error {
	c := EventConsumer{
		Name:          CascadeConsumer,
		Description:   "deletes the keys of removed instances",
		Subjects:      []string{KindSubjects(domain.OwnerCascade)},
		Types:         []string{domain.TypeCascadeRequested},
		AckWait:       10 * time.Second,
		MaxAckPending: 256,
		LongRunning:   true,
	}
	cascade := func(ctx context.Context, instanceID string, cause domain.Event) error {
		start := time.Now()
		// Which replica works a removal, for an operator reading the logs
		// of several (and for the cluster test that kills that one).
		logger.Info("cascade: started", "instanceId", instanceID, "cause", cause.ID)
		meta := domain.Meta{Actor: "keysd-cascade", CorrelationID: cause.CorrelationID}
		n, err := keys.Cascade(ctx, instanceID, meta)
		if err != nil {
			return fmt.Errorf("cascade of instance %s (%d keys deleted so far): %w", instanceID, n, err)
		}
		if obs != nil {
			obs.Cascaded(instanceID, n, time.Since(start))
		}
		if n > 0 {
			logger.Info("cascade: instance keys deleted", "instanceId", instanceID, "deleted", n, "cause", cause.ID, "took", time.Since(start).String())
		}
		return nil
	}
	if err := finishLegacyCascade(ctx, l, logger, cascade); err != nil {
		return err
	}
	return ServeEvents(ctx, l, c, logger, func(ctx context.Context, r Recorded) error {
		return cascade(ctx, r.Event.Owner.ID, r.Event)
	})
}

// finishLegacyCascade does what the consumer of a keysd from before
// CascadeRequested left undone, then deletes that consumer: the
// InstanceRemoved events it had not acknowledged (recorded without a
// CascadeRequested) are cascaded here. Cascading is idempotent, so
// replicas that do this at once, or a replica that crashes in the middle
// and does it again, delete nothing twice; the consumer goes only once
// its work is done.
func finishLegacyCascade(ctx context.Context, l *EventLog, logger *slog.Logger, cascade func(context.Context, string, domain.Event) error) error {
	cctx, cancel := withTimeout(ctx)
	defer cancel()
	old, err := l.Stream().Consumer(cctx, LegacyCascadeConsumer)
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("bus: look for the cascade consumer of an older keysd: %w", err)
	}
	info, err := old.Info(cctx)
	if err != nil {
		return fmt.Errorf("bus: the cascade consumer of an older keysd: %w", err)
	}
	var removed []Recorded
	_, err = l.Replay(ctx, ReplayOptions{Subjects: []string{KindSubjects(domain.OwnerInstance)}, StartSeq: info.AckFloor.Stream + 1}, func(r Recorded) error {
		if r.Event.Type == domain.TypeInstanceRemoved {
			removed = append(removed, r)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("bus: read the removals an older keysd left: %w", err)
	}
	for _, r := range removed {
		if err := cascade(ctx, r.Event.Owner.ID, r.Event); err != nil {
			return err
		}
	}
	dctx, dcancel := withTimeout(ctx)
	defer dcancel()
	if err := l.Stream().DeleteConsumer(dctx, LegacyCascadeConsumer); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return fmt.Errorf("bus: delete the cascade consumer of an older keysd: %w", err)
	}
	logger.Info("cascade: finished the removals an older keysd left, and deleted its consumer", "consumer", LegacyCascadeConsumer, "removals", len(removed))
	return nil
}

// CascadeBacklog returns how many instance events the cascade has not
// handled yet.
func CascadeBacklog(ctx context.Context, l *EventLog) (uint64, error) {
	return consumerBacklog(ctx, l, CascadeConsumer)
}

// ShredderBacklog returns how many shared and instance events the shredder
// has not handled yet.
func ShredderBacklog(ctx context.Context, l *EventLog) (uint64, error) {
	return consumerBacklog(ctx, l, ShredderConsumer)
}

// consumerBacklog returns the messages a durable consumer of the log has
// yet to handle: not delivered, or delivered and not acknowledged.
func consumerBacklog(ctx context.Context, l *EventLog, name string) (uint64, error) {
	cctx, cancel := withTimeout(ctx)
	defer cancel()
	c, err := l.Stream().Consumer(cctx, name)
	if err != nil {
		return 0, err
	}
	info, err := c.Info(cctx)
	if err != nil {
		return 0, err
	}
	return info.NumPending + uint64(info.NumAckPending), nil
}
