package bus

import (
	"context"
	"log/slog"
	"time"

	"github.com/infrakeys/infrakeys/domain"
)

// ShredderConsumer is the durable consumer that destroys the data keys of
// deleted and replaced private halves.
const ShredderConsumer = "shredder"

// ServeShredder destroys the data key named by every KeyDeleted, every
// KeyUpdated that replaced a private half and every CAKeyRetired, until
// ctx ends. It is the only
// component that destroys the private half of a key once its deletion is
// recorded (domain.InfraKeyService.Shred): whatever recorded the event (a
// request, the cascade, another replica) and whatever failed after, the
// event stays in the log until the shredder has handled it. Replicas share
// the durable consumer; an event delivered twice destroys nothing more.
func ServeShredder(ctx context.Context, l *EventLog, keys *domain.InfraKeyService, logger *slog.Logger) error {
	c := EventConsumer{
		Name:          ShredderConsumer,
		Description:   "destroys the data keys of deleted and replaced private halves",
		Subjects:      []string{KindSubjects(domain.OwnerShared), KindSubjects(domain.OwnerInstance), KindSubjects(domain.OwnerCA)},
		Types:         []string{domain.TypeKeyDeleted, domain.TypeKeyUpdated, domain.TypeCAKeyRetired},
		AckWait:       10 * time.Second,
		MaxAckPending: 256,
		// A cascade deletes up to thousands of keys at once, and each
		// destruction is a few round trips: they overlap.
		Batch:       256,
		Concurrency: 16,
	}
	return ServeEvents(ctx, l, c, logger, func(ctx context.Context, r Recorded) error {
		return keys.Shred(ctx, []domain.Event{r.Event})
	})
}
