package bus

import (
	"context"
	"sync/atomic"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// LoseNextAck makes the next single-event publish of l fail as if its
// acknowledgement was lost: when stored, the message reaches the stream
// and only the answer goes missing; otherwise the message is lost too.
// then, if not nil, runs after that publish, before Append retries.
func LoseNextAck(l *EventLog, stored bool, then func()) {
	j := &lostAckJetStream{JetStream: l.js, stored: stored, then: then}
	j.pending.Store(1)
	l.js = j
}

// lostAckJetStream is the real client with a fault: acknowledgements that
// go missing. The server behind it is real.
type lostAckJetStream struct {
	jetstream.JetStream
	pending atomic.Int32
	stored  bool
	then    func()
}

func (j *lostAckJetStream) PublishMsg(ctx context.Context, m *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	if j.pending.Add(-1) != 0 {
		return j.JetStream.PublishMsg(ctx, m, opts...)
	}
	if j.stored {
		if _, err := j.JetStream.PublishMsg(ctx, m, opts...); err != nil {
			return nil, err
		}
	}
	if j.then != nil {
		j.then()
	}
	return nil, nats.ErrTimeout
}

// FailNextRead makes the next message read of l's stream fail as if the
// leader could not be reached.
func FailNextRead(l *EventLog) { FailNextReads(l, 1) }

// FailNextReads makes the next n message reads of l's stream fail.
func FailNextReads(l *EventLog, n int32) {
	s := &failingStream{Stream: l.stream}
	s.pending.Store(n)
	l.stream = s
}

// failingStream is the real stream with a fault: a read that times out.
type failingStream struct {
	jetstream.Stream
	pending atomic.Int32
}

func (s *failingStream) GetMsg(ctx context.Context, seq uint64, opts ...jetstream.GetMsgOpt) (*jetstream.RawStreamMsg, error) {
	if s.pending.Add(-1) >= 0 {
		return nil, context.DeadlineExceeded
	}
	return s.Stream.GetMsg(ctx, seq, opts...)
}

func (s *failingStream) GetLastMsgForSubject(ctx context.Context, subject string) (*jetstream.RawStreamMsg, error) {
	if s.pending.Add(-1) >= 0 {
		return nil, context.DeadlineExceeded
	}
	return s.Stream.GetLastMsgForSubject(ctx, subject)
}
