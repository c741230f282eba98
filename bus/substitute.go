package bus

import (
	"context"
	"encoding/json"
	"log/slog"

	"github.com/nats-io/nats.go"
	"github.com/oklog/ulid/v2"

	"github.com/infrakeys/infrakeys/domain"
)

// SubstituteSubject is where the resource manager asks, by NATS
// request-reply, for key properties to be substituted before a request
// goes to a driver. The request carries a token with the keys:private role
// in its Authorization header ("Bearer <token>"), like the HTTP API.
const SubstituteSubject = "keysd.rpc.substitute"

// SubstituteRequest is the body of a substitution request.
type SubstituteRequest struct {
	Properties        map[string]any `json:"properties"`
	PrivateProperties map[string]any `json:"privateProperties,omitempty"`
	InstanceID        string         `json:"instanceId,omitempty"`
}

// SubstituteReply is the answer: the substituted properties, or an error.
type SubstituteReply struct {
	Properties        map[string]any `json:"properties,omitempty"`
	PrivateProperties map[string]any `json:"privateProperties,omitempty"`
	Error             *ReplyError    `json:"error,omitempty"`
}

// ReplyError is an error answered on the bus: the domain code and a
// message safe to show.
type ReplyError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// SubscribeSubstitute answers substitution requests until the returned
// subscription is drained; replicas share the work through a queue group.
// It returns once the server knows the subscription, so a request sent
// after keysd reports ready finds a responder.
func SubscribeSubstitute(ctx context.Context, c *Conn, tokens *domain.TokenService, keys *domain.InfraKeyService, logger *slog.Logger) (*nats.Subscription, error) {
	sub, err := c.NC.QueueSubscribe(SubstituteSubject, "keysd", func(m *nats.Msg) {
		if !replySubject(m.Reply) {
			logger.Warn("substitute: request ignored: its reply subject is not an inbox", "replyTo", m.Reply)
			return
		}
		reply := substitute(ctx, m, tokens, keys, logger)
		data, _ := json.Marshal(reply)
		if err := m.Respond(data); err != nil {
			logger.Warn("substitute: reply failed", "err", err)
		}
	})
	if err != nil {
		return nil, err
	}
	return sub, c.NC.Flush()
}

func substitute(ctx context.Context, m *nats.Msg, tokens *domain.TokenService, keys *domain.InfraKeyService, logger *slog.Logger) SubstituteReply {
	requestID := ulid.Make().String()
	fail := func(err error) SubstituteReply {
		code := domain.ErrorCode(err)
		msg := domain.ErrorMessage(err)
		if code == domain.EINTERNAL || code == domain.EUNAVAILABLE {
			logger.Error("substitute failed", "requestId", requestID, "err", err)
		}
		return SubstituteReply{Error: &ReplyError{Code: code, Message: msg}}
	}
	t, err := authorizeRPC(ctx, tokens, m, domain.RolePrivateRead, "substitution needs")
	if err != nil {
		return fail(err)
	}
	var req SubstituteRequest
	if err := json.Unmarshal(m.Data, &req); err != nil {
		return fail(domain.Errorf(domain.EMALFORMED, "request is not a JSON substitution request"))
	}
	sections := map[string]map[string]any{"properties": req.Properties}
	if req.PrivateProperties != nil {
		sections["privateProperties"] = req.PrivateProperties
	}
	meta := domain.Meta{Actor: "token:" + t.ID + " (" + t.Name + ")", RequestID: requestID}
	done, err := keys.Substitute(ctx, sections, req.InstanceID, meta)
	if err != nil {
		return fail(err)
	}
	out := SubstituteReply{Properties: done["properties"], PrivateProperties: done["privateProperties"]}
	return out
}

// authorizeRPC returns the token a request-reply message carries as a
// bearer token in its Authorization header, once it is known to hold
// role; need says what asks for the role, in the refusal ("substitution
// needs").
func authorizeRPC(ctx context.Context, tokens *domain.TokenService, m *nats.Msg, role, need string) (*domain.Token, error) {
	authz := ""
	if m.Header != nil {
		authz = m.Header.Get("Authorization")
	}
	token, ok := domain.BearerToken(authz)
	if !ok {
		return nil, domain.Errorf(domain.EUNAUTHENTICATED, "a bearer token is required in the Authorization header")
	}
	t, err := tokens.Authenticate(ctx, token)
	if err != nil {
		return nil, err
	}
	if !t.Has(role) {
		return nil, domain.Errorf(domain.EFORBIDDEN, "%s the %s role", need, role)
	}
	return t, nil
}
