package bus

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/infrakeys/infrakeys/domain"
)

// CascadeConsumer is the durable consumer that deletes the keys of removed
// instances.
const CascadeConsumer = "cascade"

// CascadeObserver learns what the cascade does (metrics).
type CascadeObserver interface {
	Cascaded(instanceID string, deleted int, took time.Duration)
}

// ServeCascade deletes every key of each removed instance, one KeyDeleted
// each, caused by the InstanceRemoved, until ctx ends. It reads the
// instance events of the log with a durable consumer that replicas share:
// an InstanceRemoved is acknowledged only when its instance has no key
// left, so a crash mid-cascade redelivers it and the cascade resumes where
// it stopped (the keys already deleted are no longer in the instance).
func ServeCascade(ctx context.Context, l *EventLog, keys *domain.InfraKeyService, obs CascadeObserver, logger *slog.Logger) error {
	c := EventConsumer{
		Name:          CascadeConsumer,
		Description:   "deletes the keys of removed instances",
		Subjects:      []string{KindSubjects(domain.OwnerInstance)},
		Types:         []string{domain.TypeInstanceRemoved},
		AckWait:       10 * time.Second,
		MaxAckPending: 256,
		// The events skipped (every other instance event) are most of
		// what it reads: fetch many at a time.
		Batch:       256,
		LongRunning: true,
	}
	return ServeEvents(ctx, l, c, logger, func(ctx context.Context, r Recorded) error {
		start := time.Now()
		// Which replica works a removal, for an operator reading the logs
		// of several (and for the cluster test that kills that one).
		logger.Info("cascade: started", "instanceId", r.Event.Owner.ID, "cause", r.Event.ID)
		meta := domain.Meta{Actor: "keysd-cascade", CorrelationID: r.Event.CorrelationID}
		n, err := keys.Cascade(ctx, r.Event.Owner.ID, meta)
		if err != nil {
			return fmt.Errorf("cascade of instance %s (%d keys deleted so far): %w", r.Event.Owner.ID, n, err)
		}
		if obs != nil {
			obs.Cascaded(r.Event.Owner.ID, n, time.Since(start))
		}
		if n > 0 {
			logger.Info("cascade: instance keys deleted", "instanceId", r.Event.Owner.ID, "deleted", n, "cause", r.Event.ID, "took", time.Since(start).String())
		}
		return nil
	})
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
