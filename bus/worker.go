package bus

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// drainGrace bounds how long a stopping worker waits for the message in
// hand; it is shorter than the consumers' AckWait.
const drainGrace = 8 * time.Second

// work runs handle on every message of a durable consumer until ctx ends.
// It is the one consumer loop of keysd: the intake uses it directly, and
// every consumer of the event log (the projections, the cascade, the
// shredder) through ServeEvents. Replicas that run the same durable share
// its messages; a message not acknowledged (a crash, a Nak) is delivered
// again, to any of them.
//
// When ctx ends, the message in hand is finished, not abandoned halfway
// (an intake message recorded but not yet erased, a cascade between its
// batches): handle runs on a context that outlives ctx by up to
// drainGrace. Messages fetched but not yet started are handed back.
//
// With concurrency above 1, up to that many messages are handled at once,
// in no particular order; stopping waits for them too.
func work(ctx context.Context, stream jetstream.Stream, cfg jetstream.ConsumerConfig, batch, concurrency int, logger *slog.Logger, handle func(context.Context, jetstream.Msg)) error {
	var cons jetstream.Consumer
	for {
		var err error
		cctx, cancel := withTimeout(ctx)
		cons, err = stream.CreateOrUpdateConsumer(cctx, cfg)
		cancel()
		if err == nil {
			break
		}
		logger.Warn("consumer not ready; retrying", "consumer", cfg.Durable, "err", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
	}
	hctx, hcancel := context.WithCancel(context.WithoutCancel(ctx))
	defer hcancel()
	if batch <= 0 {
		batch = 16
	}
	var (
		inFlight sync.WaitGroup
		slots    = make(chan struct{}, max(concurrency, 1))
	)
	cc, err := cons.Consume(func(m jetstream.Msg) {
		if ctx.Err() != nil {
			_ = m.Nak()
			return
		}
		if concurrency <= 1 {
			handle(hctx, m)
			return
		}
		slots <- struct{}{}
		inFlight.Go(func() {
			defer func() { <-slots }()
			handle(hctx, m)
		})
	},
		jetstream.PullMaxMessages(batch),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			if ctx.Err() == nil {
				logger.Debug("consumer", "consumer", cfg.Durable, "err", err)
			}
		}))
	if err != nil {
		return err
	}
	<-ctx.Done()
	cc.Drain()
	finished := make(chan struct{})
	go func() {
		<-cc.Closed()
		inFlight.Wait()
		close(finished)
	}()
	select {
	case <-finished:
	case <-time.After(drainGrace):
		logger.Warn("consumer: work in hand not finished in time; it will be delivered again", "consumer", cfg.Durable)
		hcancel()
		<-finished
	}
	return nil
}

// keepAlive tells JetStream that m is still being worked on, until the
// returned stop is called, so a long piece of work is not redelivered to
// another replica meanwhile.
func keepAlive(m jetstream.Msg, every time.Duration) (stop func()) {
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				_ = m.InProgress()
			}
		}
	}()
	return func() { close(done) }
}

// EventConsumer describes a durable consumer of the event log for
// ServeEvents.
type EventConsumer struct {
	// Name is the durable's name, shared by every replica. It is stable:
	// renaming it makes the new consumer start from the first event.
	Name        string
	Description string
	// Subjects filter the log on the server; empty means every event.
	Subjects []string
	// Types, when set, are the event types handled: other events are
	// acknowledged unread.
	Types []string
	// AckWait is how long an event handed to a replica that never
	// acknowledges it (it died) waits before going to another.
	AckWait time.Duration
	// MaxAckPending bounds the events handed out and not yet acknowledged.
	MaxAckPending int
	// Batch is how many events a replica fetches at a time (default 16).
	Batch int
	// Concurrency, above 1, handles that many events at once, in no
	// particular order: for handlers whose events are independent.
	Concurrency int
	// LongRunning handlers are kept alive (InProgress) while they run, so
	// work longer than AckWait is not handed to another replica meanwhile;
	// their acknowledgement is confirmed by the server before the next
	// event (DoubleAck).
	LongRunning bool
}

// ServeEvents runs handle on every event of the durable consumer c
// describes until ctx ends. handle must be idempotent: an event may be
// delivered more than once, and replicas share the consumer. An event
// handled without error is acknowledged; one whose handling failed is
// delivered again after a second; one that cannot be decoded is logged
// and set aside (Term).
func ServeEvents(ctx context.Context, l *EventLog, c EventConsumer, logger *slog.Logger, handle func(context.Context, Recorded) error) error {
	cfg := jetstream.ConsumerConfig{
		Durable:        c.Name,
		Description:    c.Description,
		FilterSubjects: c.Subjects,
		DeliverPolicy:  jetstream.DeliverAllPolicy,
		AckPolicy:      jetstream.AckExplicitPolicy,
		AckWait:        c.AckWait,
		MaxAckPending:  c.MaxAckPending,
	}
	return work(ctx, l.Stream(), cfg, c.Batch, c.Concurrency, logger, func(ctx context.Context, m jetstream.Msg) {
		if len(c.Types) > 0 && !slices.Contains(c.Types, m.Headers().Get(HeaderEventType)) {
			_ = m.Ack()
			return
		}
		md, err := m.Metadata()
		if err != nil {
			_ = m.Term()
			return
		}
		r, err := Decode(m.Subject(), md.Sequence.Stream, m.Data())
		if err != nil {
			logger.Error("undecodable event; skipped", "consumer", c.Name, "seq", md.Sequence.Stream, "err", err)
			_ = m.Term()
			return
		}
		if c.LongRunning {
			stop := keepAlive(m, c.AckWait/3)
			defer stop()
		}
		if err := handle(ctx, r); err != nil {
			logger.Warn("event not handled; will retry", "consumer", c.Name, "seq", r.Seq, "type", r.Event.Type, "err", err)
			_ = m.NakWithDelay(time.Second)
			return
		}
		if c.LongRunning {
			_ = m.DoubleAck(ctx)
			return
		}
		_ = m.Ack()
	})
}
