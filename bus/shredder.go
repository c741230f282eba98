package bus

import (
	"context"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/infrakeys/infrakeys/domain"
)

// ShredderConsumer is the durable consumer that destroys the data keys of
// deleted and replaced private halves.
const ShredderConsumer = "shredder"

// ServeShredder destroys the data key named by every KeyDeleted, every
// KeyUpdated that replaced a private half and every CAKeyRetired, until
// ctx ends. Writers destroy
// it themselves right after their event is stored; the shredder makes sure
// of it when a writer crashed in between, so crypto-shredding holds
// whatever fails. Replicas share the durable consumer; destroying twice is
// harmless.
func ServeShredder(ctx context.Context, l *EventLog, keys *domain.InfraKeyService, logger *slog.Logger) error {
	cfg := jetstream.ConsumerConfig{
		Durable:        ShredderConsumer,
		Description:    "destroys the data keys of deleted and replaced private halves",
		FilterSubjects: []string{KindSubjects(domain.OwnerShared), KindSubjects(domain.OwnerInstance), KindSubjects(domain.OwnerCA)},
		DeliverPolicy:  jetstream.DeliverAllPolicy,
		AckPolicy:      jetstream.AckExplicitPolicy,
		AckWait:        10 * time.Second,
		MaxAckPending:  256,
	}
	types := []string{domain.TypeKeyDeleted, domain.TypeKeyUpdated, domain.TypeCAKeyRetired}
	return workEvents(ctx, l, cfg, logger, types, func(ctx context.Context, m jetstream.Msg, r Recorded) {
		if err := keys.Shred(ctx, []domain.Event{r.Event}); err != nil {
			logger.Warn("shredder: destroy failed; will retry", "seq", r.Seq, "err", err)
			_ = m.NakWithDelay(time.Second)
			return
		}
		_ = m.Ack()
	})
}
