// Package metrics exposes what keysd does in the Prometheus format: HTTP
// requests, event appends, projection lag, the cascade and the driver
// intake. It implements the observer interfaces of the other packages
// (http.RequestObserver, bus.AppendObserver, bus.CascadeObserver,
// bus.IntakeObserver, bus.ExpiryObserver), so they need not know
// Prometheus.
//
// No label ever holds key material or an unbounded value such as a login,
// a key name or an instance id: routes are templates, reasons and outcomes
// come from closed sets.
package metrics

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/infrakeys/infrakeys/domain"
)

// latencyBuckets cover a cached read (well under a millisecond) to a
// write stuck behind a NATS leader election (seconds).
var latencyBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// Metrics holds keysd's metrics and the registry that serves them.
type Metrics struct {
	reg *prometheus.Registry

	requests        *prometheus.CounterVec
	requestDuration *prometheus.HistogramVec
	appendDuration  *prometheus.HistogramVec
	cascadeDeleted  prometheus.Counter
	cascadeDuration prometheus.Histogram
	intakeMessages  *prometheus.CounterVec
	intakeRejected  *prometheus.CounterVec
	certsIssued     *prometheus.CounterVec
	certsRevoked    *prometheus.CounterVec
	keysExpired     prometheus.Counter
}

// New registers every metric of keysd, the Go runtime's and the process's.
// probes are read at each scrape; a nil probe leaves its metric out.
func New(probes Probes, logger *slog.Logger) *Metrics {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keysd_http_requests_total",
			Help: "HTTP requests answered, by method, route template and status code.",
		}, []string{"method", "route", "code"}),
		requestDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "keysd_http_request_duration_seconds",
			Help:    "Time to answer an HTTP request, by method and route template.",
			Buckets: latencyBuckets,
		}, []string{"method", "route"}),
		appendDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "keysd_event_append_duration_seconds",
			Help:    "Time to append events to the log (publish, fsync, acknowledgement), by result: ok, conflict (optimistic check failed) or error.",
			Buckets: latencyBuckets,
		}, []string{"result"}),
		cascadeDeleted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "keysd_cascade_keys_deleted_total",
			Help: "Instance keys deleted by the cascade after an InstanceRemoved.",
		}),
		cascadeDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "keysd_cascade_duration_seconds",
			Help:    "Time to delete every key of one removed instance.",
			Buckets: latencyBuckets,
		}),
		intakeMessages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keysd_intake_messages_total",
			Help: "Driver intake messages processed, by outcome: created, rejected, removed, duplicate (asked for what was already done).",
		}, []string{"outcome"}),
		intakeRejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keysd_intake_rejections_total",
			Help: "Driver intake messages rejected, by reason (docs/events.md, KeyRejected).",
		}, []string{"reason"}),
		certsIssued: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keysd_certificates_issued_total",
			Help: "SSH certificates signed by this replica, by type: user or host.",
		}, []string{"type"}),
		certsRevoked: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keysd_certificates_revoked_total",
			Help: "SSH certificates revoked through this replica, by type: user or host.",
		}, []string{"type"}),
		keysExpired: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "keysd_keys_expired_total",
			Help: "KeyExpired events this replica's expirer recorded (a key another replica expired first is counted there).",
		}),
	}
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.requests, m.requestDuration, m.appendDuration,
		m.cascadeDeleted, m.cascadeDuration, m.intakeMessages, m.intakeRejected,
		m.certsIssued, m.certsRevoked, m.keysExpired,
		&probeCollector{probes: probes, logger: logger},
	)
	// Every outcome and reason appears from the start, at zero, so a rate
	// over them is defined before the first rejection.
	for _, o := range outcomes {
		m.intakeMessages.WithLabelValues(o)
	}
	for _, r := range reasons {
		m.intakeRejected.WithLabelValues(r)
	}
	for _, t := range certTypes {
		m.certsIssued.WithLabelValues(t)
		m.certsRevoked.WithLabelValues(t)
	}
	return m
}

// certTypes are the values of the type label of the certificate metrics.
var certTypes = []string{domain.CertTypeUser, domain.CertTypeHost}

// CertificateIssued implements domain.CertificateObserver.
func (m *Metrics) CertificateIssued(certType string) {
	if slices.Contains(certTypes, certType) {
		m.certsIssued.WithLabelValues(certType).Inc()
	}
}

// CertificateRevoked implements domain.CertificateObserver.
func (m *Metrics) CertificateRevoked(certType string) {
	if slices.Contains(certTypes, certType) {
		m.certsRevoked.WithLabelValues(certType).Inc()
	}
}

// Handler serves the metrics in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// Registry is where the metrics are registered, for tests and for adding
// more.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// methods are the HTTP methods that get their own label value; any other
// is counted as OTHER, so a client cannot create label values at will.
var methods = []string{
	http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut,
	http.MethodPatch, http.MethodDelete, http.MethodOptions,
}

// ObserveRequest implements http.RequestObserver. route is the route's
// template ("/:login/keys"), never the path; "" (no route matched) is
// counted as "unmatched".
func (m *Metrics) ObserveRequest(method, route string, status int, took time.Duration) {
	if !slices.Contains(methods, method) {
		method = "OTHER"
	}
	if route == "" {
		route = "unmatched"
	}
	m.requests.WithLabelValues(method, route, strconv.Itoa(status)).Inc()
	m.requestDuration.WithLabelValues(method, route).Observe(took.Seconds())
}

// Appended implements bus.AppendObserver.
func (m *Metrics) Appended(events int, took time.Duration, err error) {
	result := "ok"
	switch {
	case errors.Is(err, domain.ErrVersionConflict):
		result = "conflict"
	case err != nil:
		result = "error"
	}
	m.appendDuration.WithLabelValues(result).Observe(took.Seconds())
}

// Cascaded implements bus.CascadeObserver: the cascade consumer calls it
// once per InstanceRemoved it finished.
func (m *Metrics) Cascaded(_ string, deleted int, took time.Duration) {
	m.cascadeDeleted.Add(float64(deleted))
	m.cascadeDuration.Observe(took.Seconds())
}

// KeysExpired implements bus.ExpiryObserver: the expirer calls it with
// the KeyExpired events it recorded for one owner.
func (m *Metrics) KeysExpired(n int) {
	m.keysExpired.Add(float64(n))
}

// intakeDuplicate labels a message that asked for what was already done
// (an IntakeDuplicate): it created and removed nothing.
const intakeDuplicate = "duplicate"

var outcomes = []string{domain.OutcomeCreated, domain.OutcomeRejected, domain.OutcomeRemoved, intakeDuplicate}

var reasons = []string{
	domain.ReasonMalformed, domain.ReasonInvalidKey, domain.ReasonMismatch,
	domain.ReasonDuplicateName, domain.ReasonInstanceRemoved, domain.ReasonInvalidInstance,
	domain.ReasonInvalidExpiry,
}

// Intake implements bus.IntakeObserver: the intake consumer calls it once
// per message processed.
func (m *Metrics) Intake(o domain.IntakeOutcome) {
	outcome := o.Outcome
	switch {
	case o.Duplicate:
		outcome = intakeDuplicate
	case !slices.Contains(outcomes, outcome):
		outcome = "other"
	}
	m.intakeMessages.WithLabelValues(outcome).Inc()
	if o.Outcome == domain.OutcomeRejected {
		reason := o.Reason
		if !slices.Contains(reasons, reason) {
			reason = "other"
		}
		m.intakeRejected.WithLabelValues(reason).Inc()
	}
}

// Probes read, at each scrape, values kept elsewhere (in NATS). Each may be
// nil.
type Probes struct {
	// LastSeq is the sequence of the last event in the log.
	LastSeq func(ctx context.Context) (uint64, error)
	// EventLogSize is how many events the log stream holds and their size
	// in bytes as stored (one replica's share).
	EventLogSize func(ctx context.Context) (messages, bytes uint64, err error)
	// ProjectionLag is, per projection name, how many events its consumer
	// has yet to apply.
	ProjectionLag func(ctx context.Context) (map[string]uint64, error)
	// CascadeBacklog is how many instance events the cascade has yet to
	// handle.
	CascadeBacklog func(ctx context.Context) (uint64, error)
	// IntakeBacklog is how many driver messages wait in the intake stream.
	IntakeBacklog func(ctx context.Context) (uint64, error)
	// ShredderBacklog is how many key events the shredder has yet to
	// handle (data keys of deleted or replaced private halves).
	ShredderBacklog func(ctx context.Context) (uint64, error)
	// KRL is the size of the revocation list (GET /--krl) in bytes and
	// how many serials and fingerprints it revokes.
	KRL func(ctx context.Context) (bytes, entries uint64, err error)
}

// probeTimeout bounds the NATS calls of one scrape.
const probeTimeout = 2 * time.Second

var (
	lastSeqDesc = prometheus.NewDesc("keysd_event_log_last_sequence",
		"Sequence of the last event in the log.", nil, nil)
	logMessagesDesc = prometheus.NewDesc("keysd_event_log_messages",
		"Events stored in the event log stream.", nil, nil)
	logBytesDesc = prometheus.NewDesc("keysd_event_log_bytes",
		"Bytes the event log stream stores (on each replica of it).", nil, nil)
	projectionLagDesc = prometheus.NewDesc("keysd_projection_lag_events",
		"Events in the log that a projection's consumer has not applied yet.", []string{"projection"}, nil)
	cascadeBacklogDesc = prometheus.NewDesc("keysd_cascade_backlog",
		"Removed instances (CascadeRequested events) whose keys the cascade has not finished deleting.", nil, nil)
	intakeBacklogDesc = prometheus.NewDesc("keysd_intake_backlog",
		"Driver messages waiting in the intake stream.", nil, nil)
	shredderBacklogDesc = prometheus.NewDesc("keysd_shredder_backlog",
		"Key events the shredder has not handled yet (data keys of deleted or replaced private halves still to destroy).", nil, nil)
	krlBytesDesc = prometheus.NewDesc("keysd_krl_bytes",
		"Size of the OpenSSH revocation list (GET /--krl) in bytes.", nil, nil)
	krlEntriesDesc = prometheus.NewDesc("keysd_krl_entries",
		"Certificate serials and key fingerprints the revocation list revokes.", nil, nil)
	probeErrorsDesc = prometheus.NewDesc("keysd_metrics_probe_errors",
		"Probes that failed during this scrape (their metrics are missing from it).", nil, nil)
)

// probeCollector reads the probes when scraped: gauges of state that
// lives in NATS, never stale.
type probeCollector struct {
	probes Probes
	logger *slog.Logger
}

func (c *probeCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- lastSeqDesc
	ch <- logMessagesDesc
	ch <- logBytesDesc
	ch <- projectionLagDesc
	ch <- cascadeBacklogDesc
	ch <- intakeBacklogDesc
	ch <- shredderBacklogDesc
	ch <- krlBytesDesc
	ch <- krlEntriesDesc
	ch <- probeErrorsDesc
}

func (c *probeCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
	defer cancel()
	failed := 0
	fail := func(probe string, err error) {
		failed++
		c.logger.Warn("metrics probe failed", "probe", probe, "err", err)
	}
	gauge := func(probe string, desc *prometheus.Desc, f func(context.Context) (uint64, error)) {
		if f == nil {
			return
		}
		v, err := f(ctx)
		if err != nil {
			fail(probe, err)
			return
		}
		ch <- prometheus.MustNewConstMetric(desc, prometheus.GaugeValue, float64(v))
	}
	gauge("lastSeq", lastSeqDesc, c.probes.LastSeq)
	if f := c.probes.EventLogSize; f != nil {
		if msgs, bytes, err := f(ctx); err != nil {
			fail("eventLogSize", err)
		} else {
			ch <- prometheus.MustNewConstMetric(logMessagesDesc, prometheus.GaugeValue, float64(msgs))
			ch <- prometheus.MustNewConstMetric(logBytesDesc, prometheus.GaugeValue, float64(bytes))
		}
	}
	gauge("cascadeBacklog", cascadeBacklogDesc, c.probes.CascadeBacklog)
	gauge("intakeBacklog", intakeBacklogDesc, c.probes.IntakeBacklog)
	gauge("shredderBacklog", shredderBacklogDesc, c.probes.ShredderBacklog)
	if f := c.probes.KRL; f != nil {
		if size, entries, err := f(ctx); err != nil {
			fail("krl", err)
		} else {
			ch <- prometheus.MustNewConstMetric(krlBytesDesc, prometheus.GaugeValue, float64(size))
			ch <- prometheus.MustNewConstMetric(krlEntriesDesc, prometheus.GaugeValue, float64(entries))
		}
	}
	if f := c.probes.ProjectionLag; f != nil {
		lags, err := f(ctx)
		if err != nil {
			fail("projectionLag", err)
		}
		for name, lag := range lags {
			ch <- prometheus.MustNewConstMetric(projectionLagDesc, prometheus.GaugeValue, float64(lag), name)
		}
	}
	ch <- prometheus.MustNewConstMetric(probeErrorsDesc, prometheus.GaugeValue, float64(failed))
}
