package bus

import (
	"context"
	"encoding/json"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/oklog/ulid/v2"

	"github.com/infrakeys/infrakeys/domain"
)

// HostCertificateSubject is where drivers and the resource manager ask, by
// NATS request-reply, for a host certificate for an instance's key. The
// request carries a token with the hosts:sign role in its Authorization
// header ("Bearer <token>"), like the HTTP API.
const HostCertificateSubject = "keysd.rpc.host-certificate"

// HostCertificateRequest is the body of a host certificate request: the
// instance's key and the host names to certify (validity as in the HTTP
// API: a duration such as "720h", or validBefore; both optional).
type HostCertificateRequest struct {
	InstanceID  string    `json:"instanceId"`
	KeyName     string    `json:"keyName"`
	Principals  []string  `json:"principals"`
	Validity    string    `json:"validity,omitempty"`
	ValidBefore time.Time `json:"validBefore,omitzero"`
}

// HostCertificateReply is the answer: the certificate, or an error.
type HostCertificateReply struct {
	Certificate         string      `json:"certificate,omitempty"`
	Serial              uint64      `json:"serial,omitempty"`
	KeyID               string      `json:"keyId,omitempty"`
	CAFingerprintSHA256 string      `json:"caFingerprintSHA256,omitempty"`
	Principals          []string    `json:"principals,omitempty"`
	ValidAfter          time.Time   `json:"validAfter,omitzero"`
	ValidBefore         time.Time   `json:"validBefore,omitzero"`
	Error               *ReplyError `json:"error,omitempty"`
}

// SubscribeHostCertificates answers host certificate requests until the
// returned subscription is drained; replicas share the work through a
// queue group. It returns once the server knows the subscription.
func SubscribeHostCertificates(ctx context.Context, c *Conn, tokens *domain.TokenService, certs *domain.CertificateService, logger *slog.Logger) (*nats.Subscription, error) {
	sub, err := c.NC.QueueSubscribe(HostCertificateSubject, "keysd", func(m *nats.Msg) {
		if !replySubject(m.Reply) {
			logger.Warn("host certificate: request ignored: its reply subject is not an inbox", "replyTo", m.Reply)
			return
		}
		data, _ := json.Marshal(signHost(ctx, m, tokens, certs, logger))
		if err := m.Respond(data); err != nil {
			logger.Warn("host certificate: reply failed", "err", err)
		}
	})
	if err != nil {
		return nil, err
	}
	return sub, c.NC.Flush()
}

func signHost(ctx context.Context, m *nats.Msg, tokens *domain.TokenService, certs *domain.CertificateService, logger *slog.Logger) HostCertificateReply {
	requestID := ulid.Make().String()
	fail := func(err error) HostCertificateReply {
		code := domain.ErrorCode(err)
		if code == domain.EINTERNAL || code == domain.EUNAVAILABLE {
			logger.Error("host certificate failed", "requestId", requestID, "err", err)
		}
		return HostCertificateReply{Error: &ReplyError{Code: code, Message: domain.ErrorMessage(err)}}
	}
	t, err := authorizeRPC(ctx, tokens, m, domain.RoleHostsSign, "host certificates need")
	if err != nil {
		return fail(err)
	}
	var req HostCertificateRequest
	if err := json.Unmarshal(m.Data, &req); err != nil {
		return fail(domain.Errorf(domain.EMALFORMED, "request is not a JSON host certificate request"))
	}
	cr := domain.CertRequest{Principals: req.Principals, ValidBefore: req.ValidBefore}
	if req.Validity != "" {
		if cr.Validity, err = time.ParseDuration(req.Validity); err != nil {
			return fail(domain.Errorf(domain.EINVALID, "validity must be a duration such as \"720h\""))
		}
	}
	meta := domain.Meta{Actor: "token:" + t.ID + " (" + t.Name + ")", RequestID: requestID}
	issued, err := certs.SignHostCertificate(ctx, req.InstanceID, req.KeyName, cr, meta)
	if err != nil {
		return fail(err)
	}
	return HostCertificateReply{
		Certificate: issued.Certificate, Serial: issued.Serial, KeyID: issued.KeyID,
		CAFingerprintSHA256: issued.CAFingerprintSHA256, Principals: issued.Principals,
		ValidAfter: issued.ValidAfter, ValidBefore: issued.ValidBefore,
	}
}
