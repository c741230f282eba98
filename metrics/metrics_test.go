package metrics_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/infrakeys/infrakeys/domain"
	"github.com/infrakeys/infrakeys/metrics"
)

func TestLabelsAreBounded(t *testing.T) {
	m := metrics.New(metrics.Probes{}, nil)
	m.ObserveRequest("GET", "/:login/keys", 200, time.Millisecond)
	m.ObserveRequest("BREW", "", 404, time.Millisecond)
	m.Intake(domain.IntakeOutcome{Outcome: domain.OutcomeRejected, Reason: domain.ReasonMismatch})
	m.Intake(domain.IntakeOutcome{Outcome: domain.OutcomeRejected, Reason: "something new"})
	m.Intake(domain.IntakeOutcome{Outcome: domain.OutcomeRejected, Reason: domain.ReasonInvalidExpiry})
	m.KeysExpired(3)
	m.Intake(domain.IntakeOutcome{Outcome: domain.OutcomeCreated})
	m.Intake(domain.IntakeOutcome{Outcome: domain.OutcomeCreated, Duplicate: true})
	m.Intake(domain.IntakeOutcome{Outcome: domain.OutcomeRemoved, Duplicate: true})
	m.Appended(1, time.Millisecond, nil)
	m.Appended(1, time.Millisecond, domain.ErrVersionConflict)
	m.Appended(1, time.Millisecond, errors.New("nats: timeout"))

	want := `
# HELP keysd_http_requests_total HTTP requests answered, by method, route template and status code.
# TYPE keysd_http_requests_total counter
keysd_http_requests_total{code="200",method="GET",route="/:login/keys"} 1
keysd_http_requests_total{code="404",method="OTHER",route="unmatched"} 1
# HELP keysd_intake_messages_total Driver intake messages processed, by outcome: created, rejected, removed, duplicate (asked for what was already done).
# TYPE keysd_intake_messages_total counter
keysd_intake_messages_total{outcome="created"} 1
keysd_intake_messages_total{outcome="duplicate"} 2
keysd_intake_messages_total{outcome="rejected"} 3
keysd_intake_messages_total{outcome="removed"} 0
# HELP keysd_intake_rejections_total Driver intake messages rejected, by reason (docs/events.md, KeyRejected).
# TYPE keysd_intake_rejections_total counter
keysd_intake_rejections_total{reason="duplicate-name"} 0
keysd_intake_rejections_total{reason="instance-removed"} 0
keysd_intake_rejections_total{reason="invalid-expiry"} 1
keysd_intake_rejections_total{reason="invalid-instance"} 0
keysd_intake_rejections_total{reason="invalid-key"} 0
keysd_intake_rejections_total{reason="malformed"} 0
keysd_intake_rejections_total{reason="mismatch"} 1
keysd_intake_rejections_total{reason="other"} 1
# HELP keysd_keys_expired_total KeyExpired events this replica's expirer recorded (a key another replica expired first is counted there).
# TYPE keysd_keys_expired_total counter
keysd_keys_expired_total 3
`
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want), "keysd_http_requests_total", "keysd_intake_messages_total", "keysd_intake_rejections_total", "keysd_keys_expired_total"); err != nil {
		t.Error(err)
	}
	if got, want := testutil.CollectAndCount(m.Registry(), "keysd_event_append_duration_seconds"), 3; got != want {
		t.Errorf("append results = %d, want %d (ok, conflict, error)", got, want)
	}
}

func TestProbes(t *testing.T) {
	t.Run("OK", func(t *testing.T) {
		m := metrics.New(metrics.Probes{
			LastSeq:        func(context.Context) (uint64, error) { return 42, nil },
			ProjectionLag:  func(context.Context) (map[string]uint64, error) { return map[string]uint64{"accounts": 3}, nil },
			CascadeBacklog: func(context.Context) (uint64, error) { return 7, nil },
			EventLogSize:   func(context.Context) (uint64, uint64, error) { return 42, 21504, nil },
		}, nil)
		want := `
# HELP keysd_cascade_backlog Removed instances (CascadeRequested events) whose keys the cascade has not finished deleting.
# TYPE keysd_cascade_backlog gauge
keysd_cascade_backlog 7
# HELP keysd_event_log_bytes Bytes the event log stream stores (on each replica of it).
# TYPE keysd_event_log_bytes gauge
keysd_event_log_bytes 21504
# HELP keysd_event_log_last_sequence Sequence of the last event in the log.
# TYPE keysd_event_log_last_sequence gauge
keysd_event_log_last_sequence 42
# HELP keysd_event_log_messages Events stored in the event log stream.
# TYPE keysd_event_log_messages gauge
keysd_event_log_messages 42
# HELP keysd_metrics_probe_errors Probes that failed during this scrape (their metrics are missing from it).
# TYPE keysd_metrics_probe_errors gauge
keysd_metrics_probe_errors 0
# HELP keysd_projection_lag_events Events in the log that a projection's consumer has not applied yet.
# TYPE keysd_projection_lag_events gauge
keysd_projection_lag_events{projection="accounts"} 3
`
		if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want),
			"keysd_cascade_backlog", "keysd_event_log_last_sequence", "keysd_event_log_messages", "keysd_event_log_bytes", "keysd_metrics_probe_errors", "keysd_projection_lag_events", "keysd_intake_backlog"); err != nil {
			t.Error(err)
		}
	})
	t.Run("ErrUnavailable", func(t *testing.T) {
		m := metrics.New(metrics.Probes{
			LastSeq: func(context.Context) (uint64, error) { return 0, errors.New("nats: timeout") },
		}, nil)
		want := `
# HELP keysd_metrics_probe_errors Probes that failed during this scrape (their metrics are missing from it).
# TYPE keysd_metrics_probe_errors gauge
keysd_metrics_probe_errors 1
`
		if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want), "keysd_event_log_last_sequence", "keysd_metrics_probe_errors"); err != nil {
			t.Error(err)
		}
	})
}
