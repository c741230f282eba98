package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/infrakeys/infrakeys/domain"
)

// Driver intake: what resource drivers and the resource manager publish.
// The intake stream stores a message before the publisher's ack, so
// nothing is lost while keysd is down; keysd processes each message into
// one outcome event, then erases it (its body may hold a private key in
// plaintext) and acknowledges it.
const (
	IntakeStream   = "KEYSD_INTAKE"
	IntakePrefix   = "keysd.intake"
	IntakeConsumer = "intake"
	// IntakeKeysPrefix + "." + Token(instanceId): a generated key.
	IntakeKeysPrefix = IntakePrefix + ".keys"
	// IntakeRemovedPrefix + "." + Token(instanceId): an instance removed.
	IntakeRemovedPrefix = IntakePrefix + ".instance-removed"
	// OutcomeSubject answers, by request-reply, what became of an intake
	// message.
	OutcomeSubject = "keysd.rpc.intake.outcome"
	// HeaderReplyTo on an intake message names a subject where keysd
	// publishes the outcome once the message is processed.
	HeaderReplyTo = "Keysd-Reply-To"
	// HeaderCorrelationID on an intake message becomes the correlationId
	// of the events it causes.
	HeaderCorrelationID = "Keysd-Correlation-Id"
	// IntakeDuplicateWindow is how long JetStream drops a message whose
	// Nats-Msg-Id it has seen; beyond it keysd recognises the message id.
	IntakeDuplicateWindow = 10 * time.Minute
)

// IntakeKeySubject is where a driver publishes a key for instance id.
func IntakeKeySubject(instanceID string) string { return IntakeKeysPrefix + "." + Token(instanceID) }

// IntakeRemovedSubject is where the resource manager announces that
// instance id was removed.
func IntakeRemovedSubject(instanceID string) string {
	return IntakeRemovedPrefix + "." + Token(instanceID)
}

// IntakeID is the id of an intake message: "msg:" + its Nats-Msg-Id when
// the publisher set one, else "seq:<sequence>@<epoch>": its intake stream
// sequence, in the stream of that epoch (IntakeEpoch).
//
// The sequence alone would not do: the intake stream is a work queue,
// not backed up, that may be deleted and made again (or the event log
// restored into a new cluster), and its sequences then start again at 1.
// A new message would take the id of an old one, find the old one's
// outcome recorded, and its key would never be created.
func IntakeID(msgID, epoch string, seq uint64) string {
	if msgID != "" {
		return "msg:" + msgID
	}
	return "seq:" + strconv.FormatUint(seq, 10) + "@" + epoch
}

// IntakeEpoch names one incarnation of the intake stream: its creation
// time in nanoseconds since 1970 (UTC), which the server keeps with the
// stream and which a stream made again does not share.
func IntakeEpoch(stream jetstream.Stream) string {
	return strconv.FormatInt(stream.CachedInfo().Created.UnixNano(), 10)
}

// OpenIntake creates or updates the intake stream. It is a work queue: a
// message leaves it once processed.
func OpenIntake(ctx context.Context, c *Conn) (jetstream.Stream, error) {
	cfg := jetstream.StreamConfig{
		Name:        IntakeStream,
		Description: "infrakeys driver intake: generated keys and removed instances, until processed",
		Subjects:    []string{IntakePrefix + ".>"},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.WorkQueuePolicy,
		Replicas:    c.Replicas,
		Duplicates:  IntakeDuplicateWindow,
		MaxMsgSize:  1 << 20,
		Discard:     jetstream.DiscardNew,
	}
	var s jetstream.Stream
	err := retry(ctx, func(ctx context.Context) (err error) {
		s, err = c.JS.CreateOrUpdateStream(ctx, cfg)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("bus: create stream %s: %w", IntakeStream, err)
	}
	return s, nil
}

// IntakeObserver learns the outcome of each intake message (metrics).
type IntakeObserver interface {
	Intake(o domain.IntakeOutcome)
}

// ServeIntake processes intake messages until ctx ends. Replicas share
// the durable consumer. A message whose processing fails (the log is
// unavailable) is delivered again later; one processed again finds its
// outcome already recorded and records nothing new.
func ServeIntake(ctx context.Context, c *Conn, stream jetstream.Stream, svc *domain.IntakeService, obs IntakeObserver, logger *slog.Logger) error {
	cfg := jetstream.ConsumerConfig{
		Durable:       IntakeConsumer,
		Description:   "turns driver messages into key events",
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       10 * time.Second,
		MaxAckPending: 256,
	}
	epoch := IntakeEpoch(stream)
	return work(ctx, stream, cfg, 16, 1, logger, func(ctx context.Context, m jetstream.Msg) {
		md, err := m.Metadata()
		if err != nil {
			_ = m.Term()
			return
		}
		seq := md.Sequence.Stream
		id := IntakeID(m.Headers().Get(jetstream.MsgIDHeader), epoch, seq)
		out, err := processIntake(ctx, svc, id, m)
		if err != nil {
			logger.Warn("intake: not processed; will retry", "intakeId", id, "err", err)
			_ = m.NakWithDelay(time.Second)
			return
		}
		log := logger.Info
		if out.Outcome == domain.OutcomeRejected {
			log = logger.Warn
		}
		log("intake processed", "intakeId", id, "outcome", out.Outcome, "reason", out.Reason,
			"instanceId", out.InstanceID, "name", out.Name, "scope", out.Scope, "eventId", out.EventID, "duplicate", out.Duplicate)
		if obs != nil {
			obs.Intake(out)
		}
		if reply := m.Headers().Get(HeaderReplyTo); reply != "" {
			if !replySubject(reply) {
				logger.Warn("intake: outcome not sent: the reply subject is not an inbox", "intakeId", id, "replyTo", reply)
			} else if c.NC.Publish(reply, OutcomeReply{IntakeOutcome: out}.Encode()) != nil {
				logger.Warn("intake: outcome not sent", "intakeId", id)
			}
		}
		// Erase, not just remove: the body may hold a private key, and a
		// plain delete leaves the bytes in the stream's files.
		cctx, cancel := withTimeout(ctx)
		err = stream.SecureDeleteMsg(cctx, seq)
		cancel()
		if err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) && !strings.Contains(err.Error(), "no message found") {
			// Not acknowledged: an ack would remove the message from the
			// work queue without erasing it. Delivered again, it finds
			// its outcome recorded and is erased then.
			logger.Warn("intake: erase failed; will retry", "intakeId", id, "seq", seq, "err", err)
			_ = m.NakWithDelay(time.Second)
			return
		}
		_ = m.Ack()
	})
}

// replySubject reports whether a publisher's Keysd-Reply-To may be
// answered: an inbox (_INBOX.…), never a subject of the service, where
// keysd's own permissions would let the answer land (the event log!).
func replySubject(s string) bool {
	return strings.HasPrefix(s, "_INBOX.") && !strings.ContainsAny(s, "*> \t\r\n")
}

func processIntake(ctx context.Context, svc *domain.IntakeService, id string, m jetstream.Msg) (domain.IntakeOutcome, error) {
	meta := domain.Meta{Actor: "driver", RequestID: id, CorrelationID: m.Headers().Get(HeaderCorrelationID)}
	kind, tok, _ := strings.Cut(strings.TrimPrefix(m.Subject(), IntakePrefix+"."), ".")
	instanceID, err := Untoken(tok)
	if err != nil || strings.Contains(tok, ".") {
		instanceID = "" // refused as invalid-instance
	}
	switch kind {
	case "keys":
		return svc.AddKey(ctx, id, instanceID, m.Data(), meta)
	case "instance-removed":
		meta.Actor = "resource-manager"
		return svc.RemoveInstance(ctx, id, instanceID, meta)
	default:
		return svc.Reject(ctx, id, instanceID, fmt.Sprintf("%s is not an intake subject (%s.<instanceId> or %s.<instanceId>)", m.Subject(), IntakeKeysPrefix, IntakeRemovedPrefix), meta)
	}
}

// OutcomeRequest asks what became of an intake message: by the publisher's
// Nats-Msg-Id or by the intake stream sequence of its publish ack, for
// the instance of its subject (and the key name, for shared keys).
type OutcomeRequest struct {
	InstanceID string `json:"instanceId"`
	MsgID      string `json:"msgId,omitempty"`
	Seq        uint64 `json:"seq,omitempty"`
	KeyName    string `json:"keyName,omitempty"`
}

// What the outcome request answers for a message that has no outcome (yet).
const (
	// OutcomePending: the message waits in the intake stream.
	OutcomePending = "pending"
	// OutcomeUnknown: no outcome is recorded under the message's id, and
	// no message waits at the sequence asked for.
	OutcomeUnknown = "unknown"
)

// OutcomeReply is what keysd says of an intake message, on both paths: the
// outcome published to the message's Keysd-Reply-To, and the answer to an
// OutcomeRequest (which may also be OutcomePending, OutcomeUnknown or an
// error). Both are written by Encode, so a driver reads them alike.
type OutcomeReply struct {
	domain.IntakeOutcome
	Error *ReplyError `json:"error,omitempty"`
}

// Encode is the one JSON encoding of an OutcomeReply.
func (r OutcomeReply) Encode() []byte {
	if r.Error != nil {
		// An error is all the answer: no empty outcome beside it.
		data, _ := json.Marshal(struct {
			Error *ReplyError `json:"error"`
		}{r.Error})
		return data
	}
	data, _ := json.Marshal(r)
	return data
}

// SubscribeOutcomes answers outcome requests until the returned
// subscription is drained. It returns once the server knows the
// subscription, so a request sent after keysd reports ready finds a
// responder.
func SubscribeOutcomes(ctx context.Context, c *Conn, stream jetstream.Stream, svc *domain.IntakeService, logger *slog.Logger) (*nats.Subscription, error) {
	epoch := IntakeEpoch(stream)
	sub, err := c.NC.QueueSubscribe(OutcomeSubject, "keysd", func(m *nats.Msg) {
		if !replySubject(m.Reply) {
			logger.Warn("intake outcome: request ignored: its reply subject is not an inbox", "replyTo", m.Reply)
			return
		}
		var reply OutcomeReply
		var req OutcomeRequest
		if err := json.Unmarshal(m.Data, &req); err != nil {
			reply.Error = &ReplyError{Code: domain.EMALFORMED, Message: "the request is not a valid JSON outcome request: " + err.Error()}
		} else if req.MsgID == "" && req.Seq == 0 {
			reply.Error = &ReplyError{Code: domain.EMISSING, Message: "msgId or seq is required"}
		} else {
			id := IntakeID(req.MsgID, epoch, req.Seq)
			out, found, err := svc.Outcome(ctx, id, req.InstanceID, req.KeyName)
			switch {
			case err != nil:
				reply.Error = &ReplyError{Code: domain.ErrorCode(err), Message: domain.ErrorMessage(err)}
			case found:
				reply.IntakeOutcome = out
			case req.Seq != 0 && pending(ctx, stream, req.Seq):
				reply.IntakeOutcome = domain.IntakeOutcome{IntakeID: id, Outcome: OutcomePending, InstanceID: req.InstanceID}
			default:
				reply.IntakeOutcome = domain.IntakeOutcome{IntakeID: id, Outcome: OutcomeUnknown, InstanceID: req.InstanceID}
			}
		}
		if err := m.Respond(reply.Encode()); err != nil {
			logger.Warn("intake outcome: reply failed", "err", err)
		}
	})
	if err != nil {
		return nil, err
	}
	return sub, c.NC.Flush()
}

// pending reports whether intake message seq still waits to be processed.
func pending(ctx context.Context, stream jetstream.Stream, seq uint64) bool {
	cctx, cancel := withTimeout(ctx)
	defer cancel()
	_, err := stream.GetMsg(cctx, seq)
	return err == nil
}

// IntakeBacklog returns how many intake messages wait to be processed.
func IntakeBacklog(ctx context.Context, stream jetstream.Stream) (uint64, error) {
	cctx, cancel := withTimeout(ctx)
	defer cancel()
	info, err := stream.Info(cctx)
	if err != nil {
		return 0, err
	}
	return info.State.Msgs, nil
}

// AppendOnce appends e as the only event of its owner: if the owner has an
// event already (e was recorded before, by an earlier attempt), that one
// is returned and nothing is appended.
func (l *EventLog) AppendOnce(ctx context.Context, e domain.Event) (domain.Event, error) {
	_, err := l.Append(ctx, e.Owner, 0, []domain.Event{e})
	if !errors.Is(err, domain.ErrVersionConflict) {
		return e, err
	}
	rs, err := l.ReadOwner(ctx, e.Owner, 0)
	if err != nil {
		return domain.Event{}, err
	}
	if len(rs) == 0 {
		return domain.Event{}, domain.Errorf(domain.EUNAVAILABLE, "event log: %s has no event after a conflict", e.Owner)
	}
	return rs[0].Event, nil
}

// IntakeEvent returns the only event of an intake message's owner (its
// KeyRejected or IntakeDuplicate), or nil.
func (l *EventLog) IntakeEvent(ctx context.Context, intakeID string) (*domain.Event, error) {
	var m *jetstream.RawStreamMsg
	err := retry(ctx, func(ctx context.Context) (err error) {
		m, err = l.stream.GetLastMsgForSubject(ctx, OwnerSubject(domain.IntakeOwner(intakeID)))
		return err
	})
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, domain.Errorf(domain.EUNAVAILABLE, "event log unavailable: %v", err)
	}
	r, err := Decode(m.Subject, m.Sequence, m.Data)
	if err != nil {
		return nil, err
	}
	return &r.Event, nil
}
