package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/infrakeys/infrakeys/domain"
)

// The event stream. Every change is an event on it; state lives nowhere
// else. Each owner has its own subject, so the per-subject last sequence is
// the owner's version for optimistic concurrency.
const (
	StreamName    = "KEYSD_EVENTS"
	SubjectPrefix = "keysd.events"
)

// Headers set on every event message, so consumers can filter without
// decoding the body.
const (
	HeaderEventType = "Keysd-Event-Type"
	HeaderEventID   = "Keysd-Event-Id"
)

// OwnerSubject is the subject of an owner's events:
// keysd.events.<kind>.<token(id)>.
func OwnerSubject(o domain.Owner) string {
	return SubjectPrefix + "." + o.Kind + "." + Token(o.ID)
}

// KindSubjects is the wildcard subject of every owner of kind.
func KindSubjects(kind string) string { return SubjectPrefix + "." + kind + ".*" }

// Recorded is an event as stored: its envelope and its stream sequence.
type Recorded struct {
	Seq     uint64
	Subject string
	Event   domain.Event
}

// EventLog appends events to the stream and reads them back.
type EventLog struct {
	js     jetstream.JetStream
	nc     *nats.Conn
	stream jetstream.Stream
	obs    AppendObserver
}

// AppendObserver learns how long each append took and how it ended
// (metrics).
type AppendObserver interface {
	Appended(events int, took time.Duration, err error)
}

// Observe makes obs learn of every append. Call it before the log is used.
func (l *EventLog) Observe(obs AppendObserver) { l.obs = obs }

// OpenEventLog creates or updates the event stream and returns the log.
// Events are kept forever; the stream refuses deletes and purges, because
// an event log that can be edited is no audit trail.
//
// Reads of the log decide writes and must see every acknowledged event,
// so they come from the stream's leader. On a replicated stream direct
// gets could be answered by a follower that lags, so they are off; with
// one replica the only server is the leader, and direct gets (answered in
// the server's message path, not through its JetStream API queue) are
// on: a signed read's check of the owner's last event costs 14% less
// (docs/BENCHMARKS.md).
func OpenEventLog(ctx context.Context, c *Conn) (*EventLog, error) {
	cfg := jetstream.StreamConfig{
		Name:               StreamName,
		Description:        "infrakeys event log: every change to keys, accounts and owners",
		Subjects:           []string{SubjectPrefix + ".>"},
		Storage:            jetstream.FileStorage,
		Retention:          jetstream.LimitsPolicy,
		Replicas:           c.Replicas,
		Duplicates:         2 * time.Minute,
		DenyDelete:         true,
		DenyPurge:          true,
		AllowDirect:        c.Replicas == 1, // see above
		AllowAtomicPublish: true,
	}
	var s jetstream.Stream
	err := retry(ctx, func(ctx context.Context) (err error) {
		s, err = c.JS.CreateOrUpdateStream(ctx, cfg)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("bus: create stream %s: %w", StreamName, err)
	}
	return &EventLog{js: c.JS, nc: c.NC, stream: s}, nil
}

// AttachEventLog opens the existing event stream without creating or
// changing it: for readers such as audit consumers, whose permissions
// allow no more.
func AttachEventLog(ctx context.Context, nc *nats.Conn, opts ...jetstream.JetStreamOpt) (*EventLog, error) {
	js, err := jetstream.New(nc, opts...)
	if err != nil {
		return nil, err
	}
	var s jetstream.Stream
	err = retry(ctx, func(ctx context.Context) (err error) {
		s, err = js.Stream(ctx, StreamName)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("bus: open stream %s: %w", StreamName, err)
	}
	return &EventLog{js: js, nc: nc, stream: s}, nil
}

// Stream returns the underlying JetStream stream.
func (l *EventLog) Stream() jetstream.Stream { return l.stream }

// Append stores events for owner, atomically, provided the owner's last
// event is still at sequence expected (0: the owner has none). It returns
// the sequence of the last event stored, or domain.ErrVersionConflict.
// Events of other owners may follow the owner's, to be recorded with them
// or not at all (the CascadeRequested of an InstanceRemoved): each goes to
// its own owner's subject, and the check is the first event's, owner's.
//
// One event is a plain publish; several are one atomic batch. Either way,
// when the acknowledgement is lost (a timeout, a leader change) Append looks
// at the owner's event after expected: if it is ours, the write happened.
// Otherwise it publishes again. nats-server checks the expected sequence
// before Nats-Msg-Id, so a retry of a write that did land conflicts with
// that write: a conflict on a retry is one only if our events are not there.
func (l *EventLog) Append(ctx context.Context, owner domain.Owner, expected uint64, events []domain.Event) (seq uint64, err error) {
	if l.obs != nil {
		start := time.Now()
		defer func() { l.obs.Appended(len(events), time.Since(start), err) }()
	}
	if len(events) == 0 {
		return 0, errors.New("bus: append of no events")
	}
	subject := OwnerSubject(owner)
	msgs := make([]*nats.Msg, len(events))
	own := 0 // the owner's events come first
	for i, e := range events {
		switch {
		case e.Owner == owner && own == i:
			own++
		case e.Owner == owner || i == 0:
			return 0, fmt.Errorf("bus: event %s of %s after another owner's, or first and not %s's", e.ID, e.Owner, owner)
		}
		data, err := json.Marshal(e)
		if err != nil {
			return 0, fmt.Errorf("bus: marshal event: %w", err)
		}
		m := nats.NewMsg(OwnerSubject(e.Owner))
		m.Data = data
		m.Header.Set(jetstream.MsgIDHeader, e.ID)
		m.Header.Set(HeaderEventType, e.Type)
		m.Header.Set(HeaderEventID, e.ID)
		msgs[i] = m
	}
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		seq, err := l.publish(ctx, expected, msgs)
		if errors.Is(err, domain.ErrVersionConflict) && attempt > 0 {
			seq, ok, lerr := l.landed(ctx, subject, expected, events, own)
			switch {
			case ok:
				return seq, nil
			case lerr != nil:
				// Neither a conflict nor a success can be told.
				return 0, domain.OutcomeUnknown(domain.Errorf(domain.EUNAVAILABLE, "event log unavailable: %v", lerr))
			}
			return 0, err
		}
		if err == nil || errors.Is(err, domain.ErrVersionConflict) {
			return seq, err
		}
		if ctx.Err() != nil {
			// Given up while the publish may have reached the server.
			return 0, domain.OutcomeUnknown(err)
		}
		lastErr = err
		// The outcome is unknown: find out whether our events are there.
		if seq, ok, _ := l.landed(ctx, subject, expected, events, own); ok {
			return seq, nil
		}
	}
	return 0, domain.OutcomeUnknown(domain.Errorf(domain.EUNAVAILABLE, "event log unavailable: %v", lastErr))
}

func (l *EventLog) publish(ctx context.Context, expected uint64, msgs []*nats.Msg) (uint64, error) {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	if len(msgs) == 1 {
		ack, err := l.js.PublishMsg(ctx, msgs[0], jetstream.WithExpectLastSequencePerSubject(expected))
		if err != nil {
			return 0, classify(err)
		}
		return ack.Sequence, nil
	}
	// Atomic batch (server 2.12+): nats.go has no API for it, so it is
	// spoken in headers. Only the first message may carry the expected
	// sequence; the commit message carries the acknowledgement.
	batchID := msgs[0].Header.Get(HeaderEventID)
	for i, m := range msgs {
		m.Header.Set("Nats-Batch-Id", batchID)
		m.Header.Set("Nats-Batch-Sequence", strconv.Itoa(i+1))
		if i == 0 {
			m.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(expected, 10))
		}
		if i < len(msgs)-1 {
			if err := l.nc.PublishMsg(m); err != nil {
				return 0, err
			}
			continue
		}
		m.Header.Set("Nats-Batch-Commit", "1")
		resp, err := l.nc.RequestMsgWithContext(ctx, m)
		if err != nil {
			return 0, err
		}
		var ack struct {
			Seq   uint64 `json:"seq"`
			Error *jetstream.APIError
		}
		if err := json.Unmarshal(resp.Data, &ack); err != nil {
			return 0, fmt.Errorf("bus: batch ack: %w", err)
		}
		if ack.Error != nil {
			return 0, classify(ack.Error)
		}
		return ack.Seq, nil
	}
	panic("unreachable")
}

// classify maps a publish error to ErrVersionConflict when the expected
// sequence did not match. Codes, not strings: R3 streams answer 10164.
func classify(err error) error {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		switch apiErr.ErrorCode {
		case jetstream.JSErrCodeStreamWrongLastSequence, jetstream.JSErrCodeStreamWrongLastSequenceConstant:
			return domain.ErrVersionConflict
		}
	}
	return err
}

// landed reports whether events were stored by a publish that expected
// sequence expected, and the sequence of the last of them. Such a publish
// put the first own of them (those on subject) right after expected,
// whatever other writers appended since, and the rest right after those
// (a batch is contiguous); err is set when the log could not be read.
func (l *EventLog) landed(ctx context.Context, subject string, expected uint64, events []domain.Event, own int) (seq uint64, ok bool, err error) {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	seq = expected
	defer func() {
		if ok {
			seq += uint64(len(events) - own)
		}
	}()
	for _, e := range events[:own] {
		m, err := l.stream.GetMsg(ctx, seq+1, jetstream.WithGetMsgSubject(subject))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return 0, false, nil
		}
		if err != nil {
			return 0, false, err
		}
		if m.Header.Get(HeaderEventID) != e.ID {
			return 0, false, nil
		}
		seq = m.Sequence
	}
	return seq, true, nil
}

// ReadOwner returns owner's events stored after sequence after, in order.
// It reads from the stream leader, so it sees every acknowledged write.
func (l *EventLog) ReadOwner(ctx context.Context, owner domain.Owner, after uint64) ([]Recorded, error) {
	rs, _, err := l.ReadSubject(ctx, OwnerSubject(owner), after, 0)
	return rs, err
}

// ReadSubject returns the events on subject (a wildcard is allowed)
// stored after sequence after, in order, at most max of them (0: all);
// more reports that max were read and more may follow. It reads from the
// stream leader, one round trip per event plus one: for short tails (a
// whole kind is cheaper through Replay).
func (l *EventLog) ReadSubject(ctx context.Context, subject string, after uint64, max int) (rs []Recorded, more bool, err error) {
	for max == 0 || len(rs) < max {
		var m *jetstream.RawStreamMsg
		err := retry(ctx, func(ctx context.Context) (err error) {
			m, err = l.stream.GetMsg(ctx, after+1, jetstream.WithGetMsgSubject(subject))
			return err
		})
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return rs, false, nil
		}
		if err != nil {
			return nil, false, domain.Errorf(domain.EUNAVAILABLE, "event log unavailable: %v", err)
		}
		r, err := Decode(m.Subject, m.Sequence, m.Data)
		if err != nil {
			return nil, false, err
		}
		rs = append(rs, r)
		after = m.Sequence
	}
	return rs, true, nil
}

// LastSeqOf returns the sequence of the last event on subject (a wildcard
// is allowed, e.g. KindSubjects), 0 when there is none. One round trip to
// the stream leader (see OpenEventLog on direct gets), so it reflects
// every acknowledged write.
func (l *EventLog) LastSeqOf(ctx context.Context, subject string) (uint64, error) {
	var m *jetstream.RawStreamMsg
	err := retry(ctx, func(ctx context.Context) (err error) {
		m, err = l.stream.GetLastMsgForSubject(ctx, subject)
		return err
	})
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, domain.Errorf(domain.EUNAVAILABLE, "event log unavailable: %v", err)
	}
	return m.Sequence, nil
}

// Decode reads an event message.
func Decode(subject string, seq uint64, data []byte) (Recorded, error) {
	var e domain.Event
	if err := json.Unmarshal(data, &e); err != nil {
		return Recorded{}, fmt.Errorf("bus: decode event at %d: %w", seq, err)
	}
	return Recorded{Seq: seq, Subject: subject, Event: e}, nil
}

// LastSeq returns the sequence of the last event in the stream.
func (l *EventLog) LastSeq(ctx context.Context) (uint64, error) {
	var info *jetstream.StreamInfo
	err := retry(ctx, func(ctx context.Context) (err error) {
		info, err = l.stream.Info(ctx)
		return err
	})
	if err != nil {
		return 0, err
	}
	return info.State.LastSeq, nil
}

// OwnerFromSubject returns the owner an event subject belongs to.
func OwnerFromSubject(subject string) (domain.Owner, error) {
	rest, ok := strings.CutPrefix(subject, SubjectPrefix+".")
	if !ok {
		return domain.Owner{}, fmt.Errorf("bus: %q is not an event subject", subject)
	}
	kind, tok, ok := strings.Cut(rest, ".")
	if !ok {
		return domain.Owner{}, fmt.Errorf("bus: %q is not an event subject", subject)
	}
	id, err := Untoken(tok)
	if err != nil {
		return domain.Owner{}, err
	}
	return domain.Owner{Kind: kind, ID: id}, nil
}

// Retry runs f with a short per-call timeout until it succeeds, a
// definitive error comes back, or ctx ends: for JetStream calls outside
// this package that must ride out a cluster without a leader (at start-up,
// during an election).
func Retry(ctx context.Context, f func(context.Context) error) error { return retry(ctx, f) }

// retry runs f with a short per-call timeout until it succeeds, a
// definitive error comes back, ctx ends, or retryBudget has passed.
func retry(ctx context.Context, f func(context.Context) error) error {
	var err error
	start := time.Now()
	for attempt := 0; ; attempt++ {
		cctx, cancel := withTimeout(ctx)
		err = f(cctx)
		cancel()
		if err == nil || !transient(err) || attempt >= 5 || ctx.Err() != nil || time.Since(start) >= retryBudget {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(time.Duration(attempt+1) * 200 * time.Millisecond):
		}
	}
}

// retryBudget bounds the time retry keeps trying: long enough for a
// JetStream leader election (a few seconds), short enough that a request
// made while NATS is unreachable answers 503 in about 10 s rather than
// after six timeouts (33 s) a client has long stopped waiting for.
const retryBudget = 10 * time.Second

// transient reports whether err may go away on its own: no leader yet, no
// responders during an election, a timeout.
func transient(err error) bool {
	return errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, nats.ErrTimeout) ||
		errors.Is(err, nats.ErrNoResponders) ||
		errors.Is(err, jetstream.ErrNoHeartbeat) ||
		errors.Is(err, nats.ErrConnectionReconnecting) ||
		errors.Is(err, jetstream.ErrJetStreamNotEnabled)
}
