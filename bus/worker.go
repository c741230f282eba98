package bus

import (
	"context"
	"log/slog"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// drainGrace bounds how long a stopping worker waits for the message in
// hand; it is shorter than the consumers' AckWait.
const drainGrace = 8 * time.Second

// work runs handle on every message of a durable consumer until ctx ends.
// Replicas that run the same durable share its messages; a message not
// acknowledged (a crash, a Nak) is delivered again, to any of them.
//
// When ctx ends, the message in hand is finished, not abandoned halfway
// (an intake message recorded but not yet erased, a cascade between its
// batches): handle runs on a context that outlives ctx by up to
// drainGrace. Messages fetched but not yet started are handed back.
func work(ctx context.Context, stream jetstream.Stream, cfg jetstream.ConsumerConfig, logger *slog.Logger, handle func(context.Context, jetstream.Msg)) error {
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
	cc, err := cons.Consume(func(m jetstream.Msg) {
		if ctx.Err() != nil {
			_ = m.Nak()
			return
		}
		handle(hctx, m)
	},
		jetstream.PullMaxMessages(16),
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
	select {
	case <-cc.Closed():
	case <-time.After(drainGrace):
		logger.Warn("consumer: work in hand not finished in time; it will be delivered again", "consumer", cfg.Durable)
		hcancel()
		<-cc.Closed()
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

// workEvents runs handle on every event of a durable consumer on the event
// log whose type is one of types; other events are acknowledged unread, and
// an event that cannot be decoded is logged and set aside (Term).
func workEvents(ctx context.Context, l *EventLog, cfg jetstream.ConsumerConfig, logger *slog.Logger, types []string, handle func(context.Context, jetstream.Msg, Recorded)) error {
	return work(ctx, l.Stream(), cfg, logger, func(ctx context.Context, m jetstream.Msg) {
		if !slices.Contains(types, m.Headers().Get(HeaderEventType)) {
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
			logger.Error("undecodable event; skipped", "consumer", cfg.Durable, "seq", md.Sequence.Stream, "err", err)
			_ = m.Term()
			return
		}
		handle(ctx, m, r)
	})
}
