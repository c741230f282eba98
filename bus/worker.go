package bus

import (
	"context"
	"log/slog"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// work runs handle on every message of a durable consumer until ctx ends.
// Replicas that run the same durable share its messages; a message not
// acknowledged (a crash, a Nak) is delivered again, to any of them.
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
	cc, err := cons.Consume(func(m jetstream.Msg) { handle(ctx, m) },
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
	<-cc.Closed()
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
